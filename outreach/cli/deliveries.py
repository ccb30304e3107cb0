"""``outreach deliveries list|lookup|sync|resolve``."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import click
from rich import box
from rich.table import Table
from sqlalchemy import case, select

from outreach import safeio
from outreach.ledger import states
from outreach.cli import OUT_FILE, Ctx, console, pass_ctx
from outreach.i18n import N_, _, current, ngettext, number, vi_sort_key, when
from outreach.ledger.models import Delivery
from outreach.sending import reasons


@click.group()
def deliveries() -> None:
    """The delivery ledger: one row per message."""


#: Latest states that make a recipient "not reached" in the export (opted_out excluded: the
#: person asked not to be contacted; queued/sending/sent excluded: the outcome is still coming).
NOT_REACHED_STATES = (states.FAILED, states.UNDELIVERED, states.UNKNOWN, states.SKIPPED)


@deliveries.command("list")
@click.argument("campaign_id")
@click.option("--status", "statuses", multiple=True,
              type=click.Choice(list(states.ALL_STATES) + ["not-reached"]),
              help="Deliveries in these states (repeatable); not-reached = the same as "
                   "--not-reached.")
@click.option("--not-reached", is_flag=True,
              help="One row per recipient never delivered in this campaign whose latest delivery "
                   "failed, was undelivered, is unknown or was skipped; opted-out and suppressed "
                   "numbers are left out.")
@click.option("--export", "export", type=OUT_FILE,
              help="Write the rows to this CSV file (UTF-8 with BOM) with whole phone numbers: "
                   "for a resend list. The screen always masks them.")
@click.option("--limit", type=int, default=50, show_default=True, help="Rows shown on screen.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@pass_ctx
def list_(c: Ctx, campaign_id: str, statuses: tuple[str, ...], not_reached: bool,
          export: str | None, limit: int, fmt: str) -> None:
    """Deliveries of a campaign by status, or the recipients not reached; --export writes CSV."""
    wanted = set(statuses)
    if "not-reached" in wanted:
        wanted.discard("not-reached")
        not_reached = True
    if not_reached and wanted:
        raise click.UsageError(_("--not-reached lists recipients; do not combine it with "
                                 "--status"))
    with c.db.engine.connect() as conn:
        from outreach.cli.campaign import require_campaign

        require_campaign(conn, campaign_id)
        if not_reached:
            rows = not_reached_rows(conn, campaign_id)
        else:
            stmt = (select(Delivery.id.label("delivery_id"), Delivery.run_id,
                           Delivery.recipient_id, Delivery.address.label("phone"),
                           Delivery.channel, Delivery.gateway, Delivery.status, Delivery.district,
                           Delivery.ward, Delivery.carrier, Delivery.error_code,
                           Delivery.error_reason, Delivery.provider_message_id,
                           Delivery.updated_at)
                    .where(Delivery.campaign_id == campaign_id).order_by(Delivery.id))
            if wanted:
                stmt = stmt.where(Delivery.status.in_(sorted(wanted)))
            rows = [dict(r._mapping) for r in conn.execute(stmt)]
    columns = NOT_REACHED_COLUMNS if not_reached else DELIVERY_COLUMNS
    if export:
        path = Path(export)
        with safeio.open_private(path, "w", encoding="utf-8-sig", newline="") as fh:
            w = safeio.csv_writer(fh)
            w.writerow([_(COLUMN_HEADERS[col]) for col in columns])
            for r in rows:
                w.writerow([_csv_value(r.get(col)) for col in columns])
        from outreach.reporting import audit

        with c.db.engine.begin() as conn:  # whole numbers left the database: say who and why
            audit.record(conn, "export", operator=c.operator, campaign_id=campaign_id,
                         details={"what": "not-reached" if not_reached else "deliveries",
                                  "statuses": sorted(wanted), "rows": len(rows),
                                  "file": str(path.resolve())})
        what = (ngettext("{n} recipient not reached", "{n} recipients not reached", len(rows))
                if not_reached else ngettext("{n} delivery", "{n} deliveries", len(rows)))
        console.print(_("{what} written to {path} (whole phone numbers: keep the file safe and "
                        "delete it after use)").format(what=what.format(n=number(len(rows))),
                                                        path=path), soft_wrap=True)
        return
    data = [{col: _json_value(c.phone(r[col]) if col == "phone" else r.get(col))
             for col in columns} for r in rows]
    if fmt == "json":
        click.echo(json.dumps(data, ensure_ascii=False, indent=2))
        return
    title = (_("Recipients not reached of {id}: {n}") if not_reached
             else _("Deliveries of {id}: {n}")).format(id=campaign_id, n=number(len(data)))
    if len(data) > limit:
        title += _(" (first {n})").format(n=number(limit))
    t = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    shown = (("recipient_id", "phone", "district", "status", "channel", "deliveries")
             if not_reached else ("delivery_id", "run_id", "phone", "channel", "status", "district"))
    heads = {"recipient_id": N_("recipient"), "delivery_id": N_("id"), "run_id": N_("run"),
             "deliveries": N_("msgs"), "phone": N_("phone"), "district": N_("district"),
             "status": N_("status"), "channel": N_("channel")}
    for col in shown:
        t.add_column(_(heads[col]), no_wrap=col != "district")
    t.add_column(_("error"))
    for d in data[:limit]:
        t.add_row(*((_(d[col]) if col == "status" else str(d[col])) if d[col] is not None
                    else "" for col in shown),
                  " ".join(x for x in (d["error_code"], reasons.label(d["error_reason"])) if x))
    console.print(t)


DELIVERY_COLUMNS = ("delivery_id", "run_id", "recipient_id", "phone", "channel", "gateway",
                    "status", "district", "ward", "carrier", "error_code", "error_reason",
                    "provider_message_id", "updated_at")
NOT_REACHED_COLUMNS = ("recipient_id", "phone", "district", "ward", "carrier", "status",
                       "channel", "gateway", "error_code", "error_reason", "deliveries",
                       "last_attempt_at", "delivery_id")
#: The exported CSV's header of each column (msgids: English keeps the column names).
COLUMN_HEADERS = {
    "delivery_id": N_("delivery_id"), "run_id": N_("run_id"), "recipient_id": N_("recipient_id"),
    "phone": N_("phone"), "channel": N_("channel"), "gateway": N_("gateway"),
    "status": N_("status"), "district": N_("district"), "ward": N_("ward"),
    "carrier": N_("carrier"), "error_code": N_("error_code"), "error_reason": N_("error_reason"),
    "provider_message_id": N_("provider_message_id"), "updated_at": N_("updated_at"),
    "deliveries": N_("deliveries"), "last_attempt_at": N_("last_attempt_at"),
}


def not_reached_query(campaign_id: str) -> Any:
    """Recipients of ``campaign_id`` never delivered, one row each with their latest delivery
    (highest id) in :data:`NOT_REACHED_STATES`, numbers on the suppression list left out.

    Columns: :data:`NOT_REACHED_COLUMNS` (``phone`` whole E.164; ``last_attempt_at`` the latest
    ``sending_at``, else ``queued_at``, UTC).
    """
    from sqlalchemy import func

    from outreach.ledger.models import Suppression

    per = (select(Delivery.recipient_id.label("rid"), func.max(Delivery.id).label("last_id"),
                  func.count().label("n"),
                  func.max(func.coalesce(Delivery.sending_at, Delivery.queued_at)).label("last_at"),
                  func.max(case((Delivery.status == states.DELIVERED, 1), else_=0)).label("hit"))
           .where(Delivery.campaign_id == campaign_id).group_by(Delivery.recipient_id).subquery())
    return (select(per.c.rid.label("recipient_id"), Delivery.address.label("phone"),
                   Delivery.district, Delivery.ward, Delivery.carrier, Delivery.status,
                   Delivery.channel, Delivery.gateway, Delivery.error_code, Delivery.error_reason,
                   per.c.n.label("deliveries"), per.c.last_at.label("last_attempt_at"),
                   Delivery.id.label("delivery_id"))
            .join(Delivery, Delivery.id == per.c.last_id)
            .where(per.c.hit == 0, Delivery.status.in_(NOT_REACHED_STATES),
                   ~select(Suppression.e164).where(Suppression.e164 == Delivery.address).exists())
            .order_by(Delivery.district, Delivery.ward, per.c.rid))


def not_reached_rows(conn: Any, campaign_id: str) -> list[dict[str, Any]]:
    """The rows of :func:`not_reached_query`, by district and ward in Vietnamese alphabetical
    order (:func:`outreach.i18n.vi_sort_key`; SQL orders by code point), then recipient."""
    rows = [dict(r._mapping) for r in conn.execute(not_reached_query(campaign_id))]
    rows.sort(key=lambda r: (vi_sort_key(r["district"]), vi_sort_key(r["ward"]),
                             r["recipient_id"]))
    return rows


def _csv_value(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, dt.datetime):
        return v.isoformat(timespec="seconds")
    return v


def _json_value(v: Any) -> Any:
    if isinstance(v, dt.datetime):
        return v.isoformat(timespec="seconds")
    return v


@deliveries.command("lookup")
@click.argument("phone")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@click.option("--key-env", metavar="VAR",
              help="Also find deliveries purged by `outreach privacy purge` (numbers replaced "
                   "by keyed hashes): the name of the variable holding the purge key.")
@pass_ctx
def lookup(c: Ctx, phone: str, fmt: str, key_env: str | None) -> None:
    """Delivery history of one number across campaigns (for a citizen's complaint).

    The number is masked on screen unless --show-numbers is given before the command.
    """
    from outreach.input import phones
    from outreach.reporting import audit
    from outreach.ledger.models import DeliveryEvent

    res = phones.normalise(phone)
    if not res.ok or not res.e164:
        from outreach.cli.optout import shown_raw
        from outreach.input.reasons import label

        raise click.BadParameter(_("{phone!r} is not a mobile number ({reason})").format(
            phone=shown_raw(c, phone), reason=label(res.reason)))
    addresses = [res.e164]
    if key_env:
        from outreach.reporting import privacy

        try:
            key = privacy.key_from_env(key_env)
        except privacy.PrivacyError as exc:
            raise click.ClickException(str(exc)) from None
        addresses.append(privacy.hash_number(key, res.e164))
    with c.db.engine.connect() as conn:
        rows = conn.execute(select(Delivery.id, Delivery.campaign_id, Delivery.run_id,
                                   Delivery.channel, Delivery.status, Delivery.queued_at,
                                   Delivery.sent_at, Delivery.delivered_at, Delivery.error_code,
                                   Delivery.error_reason, Delivery.address)
                            .where(Delivery.address.in_(addresses)).order_by(Delivery.id)).all()
        events = conn.execute(select(DeliveryEvent.delivery_id, DeliveryEvent.at,
                                     DeliveryEvent.source, DeliveryEvent.new_status,
                                     DeliveryEvent.applied)
                              .where(DeliveryEvent.delivery_id.in_([r.id for r in rows]))
                              .order_by(DeliveryEvent.id)).all()
    with c.db.engine.begin() as conn:  # who looked at whose history (the number masked)
        audit.record(conn, "lookup", operator=c.operator,
                     details={"phone": phones.mask(res.e164), "deliveries": len(rows),
                              "with_key": bool(key_env), "shown_whole": c.show_numbers})
    iso = lambda v: v.isoformat() if isinstance(v, dt.datetime) else None  # noqa: E731
    data = {"phone": c.phone(res.e164), "deliveries": [
        {"id": r.id, "campaign": r.campaign_id, "run": r.run_id, "channel": r.channel,
         "status": r.status, "queued_at": iso(r.queued_at), "sent_at": iso(r.sent_at),
         "delivered_at": iso(r.delivered_at), "error_code": r.error_code,
         "error_reason": r.error_reason, "purged": r.address != res.e164,
         "events": [{"at": iso(e.at), "source": e.source, "status": e.new_status,
                     "applied": e.applied} for e in events if e.delivery_id == r.id]}
        for r in rows]}
    if fmt == "json":
        click.echo(json.dumps(data, ensure_ascii=False, indent=2))
        return
    console.print(ngettext("history of {phone}: {n} delivery", "history of {phone}: {n} deliveries",
                           len(rows)).format(phone=data["phone"], n=number(len(rows))))
    for d in data["deliveries"]:
        console.print(_("- {campaign} run #{run} {channel}: [bold]{status}[/bold]").format(
            campaign=d["campaign"], run=d["run"], channel=d["channel"], status=_(d["status"]))
            + (" ({})".format(" ".join(x for x in (d["error_code"],
                                                    reasons.label(d["error_reason"])) if x))
               if d["error_reason"] else "") + (_(" (number purged)") if d["purged"] else ""))
        for e in d["events"]:
            at = (when(dt.datetime.fromisoformat(e["at"])) if current() == "vi"
                  else e["at"][:19])
            console.print(f"    {at} {event_source(e['source']):<10} → {_(e['status'])}"
                          + ("" if e["applied"] else _(" (ignored: late or duplicate)")))


#: Who wrote a delivery event (``delivery_events.source``), as the console shows it
#: (``event|<source>``: translated in Vietnamese, the code itself in English).
EVENT_SOURCES = {"dispatcher": N_("event|dispatcher"), "webhook": N_("event|webhook"),
                 "sync": N_("event|sync"), "reconcile": N_("event|reconcile"),
                 "operator": N_("event|operator"), "scheduler": N_("event|scheduler")}


def event_source(source: str) -> str:
    """The writer of a delivery event in the interface language (:data:`EVENT_SOURCES`); a
    source without a label is shown as stored."""
    from outreach.i18n import label

    key = EVENT_SOURCES.get(source)
    return label(key) if key else source


#: The counts of ``deliveries sync`` as the console shows them (``sync|<count>``); the final
#: statuses (delivered, undelivered, failed) read as the states they are.
SYNC_COUNTS = {"checked": N_("sync|checked"), "fetched": N_("sync|fetched"),
               "missing": N_("sync|missing"), "unchanged": N_("sync|unchanged"),
               "applied": N_("sync|applied"), "batches": N_("sync|batches")}


def syncable_gateways() -> list[str]:
    """The registered gateways whose provider can be asked for delivery statuses (their class
    has its own ``fetch_statuses``); a gateway whose optional extra is missing here is listed
    too (every real provider can be asked)."""
    from outreach.gateways import REGISTRY, gateway_class
    from outreach.gateways.base import ConfigurationError, Gateway

    out = []
    for name in sorted(REGISTRY):
        try:
            cls = gateway_class(name)
        except ConfigurationError:
            out.append(name)
            continue
        if cls.fetch_statuses is not Gateway.fetch_statuses:
            out.append(name)
    return out


@deliveries.command("sync")
@click.argument("campaign_id")
@click.option("--gateway", default="twilio", show_default=True)
@click.option("--batch-size", type=int, default=100, show_default=True)
@pass_ctx
def sync(c: Ctx, campaign_id: str, gateway: str, batch_size: int) -> None:
    """Fetch statuses from the provider for deliveries without a final status (no webhook URL)."""
    # refused (exit 1) before any gateway is configured: a campaign not in the database (the
    # known ones named), a gateway that has no provider to ask (outbox, mock)
    from outreach.cli.campaign import require_campaign
    from outreach.gateways import gateway_class, make_gateway
    from outreach.gateways.base import Gateway
    from outreach.i18n import label
    from outreach.receipts import sync as syncmod
    from outreach.sending.ops import OperatorError

    with c.db.engine.connect() as conn:
        require_campaign(conn, campaign_id)
    if gateway_class(gateway).fetch_statuses is Gateway.fetch_statuses:
        raise OperatorError(_("the {gateway} gateway has no provider to ask for delivery "
                              "statuses: nothing to sync (gateways that can be synced: "
                              "{able})").format(gateway=gateway,
                                                able=", ".join(syncable_gateways())))
    g = make_gateway(gateway)
    try:
        counts = syncmod.sync_campaign(c.db, campaign_id, g, batch_size=batch_size)
    finally:
        g.close()
    console.print(", ".join(
        f"{label(SYNC_COUNTS[k]) if k in SYNC_COUNTS else _(k)} {number(v)}"
        for k, v in counts.items() if isinstance(v, int)))


ACTIONS = {"resend": N_("requeued"), "sent": N_("marked sent"), "skip": N_("skipped"),
           "fallback": N_("left to the next channel")}


#: The decisions of ``deliveries resolve``: option -> action.
DECISIONS = {"--resend": "resend", "--mark-sent": "sent", "--skip": "skip",
             "--fallback": "fallback"}


@deliveries.command("resolve")
@click.argument("delivery_ids", nargs=-1, type=int, required=True)
@click.option("--resend", is_flag=True,
              help="Requeue: the operator accepts the risk of a double send.")
@click.option("--mark-sent", is_flag=True, help="Treat as sent (no resend).")
@click.option("--skip", is_flag=True, help="Do not send again.")
@click.option("--fallback", is_flag=True,
              help="Let the campaign's next channel (SMS after Zalo) take over; the person may "
                   "get both if the first did arrive.")
@pass_ctx
def resolve(c: Ctx, delivery_ids: tuple[int, ...], resend: bool, mark_sent: bool, skip: bool,
            fallback: bool) -> None:
    """The operator's explicit decision on deliveries whose outcome is unknown."""
    from outreach.reporting import audit
    from outreach.sending.reconcile import resolve_unknown

    given = [opt for opt, on in zip(DECISIONS, (resend, mark_sent, skip, fallback)) if on]
    if len(given) > 1:  # one flag each, so that two are seen (a shared flag keeps the last)
        raise click.UsageError(_("{first} and {second} are two different decisions: give "
                                 "one").format(first=given[0], second=given[1]))
    if not given:
        raise click.UsageError(_("choose --resend, --mark-sent, --skip or --fallback"))
    action = DECISIONS[given[0]]
    from outreach.ledger.models import Campaign

    now = dt.datetime.now(dt.timezone.utc)
    with c.db.engine.begin() as conn:
        owners = conn.execute(select(Delivery.id, Delivery.campaign_id, Campaign.text_sha256)
                              .join(Campaign, Campaign.id == Delivery.campaign_id)
                              .where(Delivery.id.in_(delivery_ids))).all()
        missing = sorted(set(delivery_ids) - {r.id for r in owners})
        if missing:
            raise click.ClickException(ngettext("no delivery {ids}", "no deliveries {ids}",
                                                len(missing)).format(
                                                    ids=", ".join(map(str, missing))))
        res = resolve_unknown(conn, list(delivery_ids), action=action, now=now)
        # one entry per campaign, with the text hash of the message concerned
        for campaign_id, text_sha256 in sorted({(r.campaign_id, r.text_sha256) for r in owners}):
            ids = [r.id for r in owners if r.campaign_id == campaign_id]
            audit.record(conn, "resolve-unknown", operator=c.operator, now=now,
                         campaign_id=campaign_id, text_sha256=text_sha256,
                         details={"deliveries": ids, "action": action,
                                  "changed": [i for i in ids if res.get(i)]})
    ok = [i for i, v in res.items() if v]
    bad = [i for i, v in res.items() if not v]
    line = ngettext("{n} delivery: {action}", "{n} deliveries: {action}", len(ok)).format(
        n=number(len(ok)), action=_(ACTIONS[action]))
    if bad:
        line += _("; not unknown, left unchanged: {ids}").format(ids=", ".join(map(str, bad)))
    console.print(line)
    if ok and action in ("resend", "fallback"):
        campaigns_ = sorted({r.campaign_id for r in owners if r.id in ok})
        console.print(_("to send them: {commands}").format(commands="; ".join(
            f"`outreach campaign resume {cid}`" for cid in campaigns_)))
