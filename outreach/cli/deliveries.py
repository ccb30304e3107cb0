"""``outreach deliveries list|lookup|sync|resolve``."""

from __future__ import annotations

import csv
import datetime as dt
import json
from pathlib import Path

import click
from rich.table import Table
from sqlalchemy import select

from outreach import states
from outreach.cli import Ctx, console, pass_ctx
from outreach.models import Delivery


@click.group()
def deliveries() -> None:
    """The delivery ledger: one row per message."""


@deliveries.command("list")
@click.argument("campaign_id")
@click.option("--status", "statuses", multiple=True,
              type=click.Choice(list(states.ALL_STATES) + ["not-reached"]),
              help="Filter by status (repeatable); not-reached = every status but delivered.")
@click.option("--export", "export", type=click.Path(dir_okay=False, writable=True),
              help="Write the selected deliveries as CSV (numbers whole: for the resend list).")
@click.option("--limit", type=int, default=50, show_default=True, help="Rows shown on screen.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@pass_ctx
def list_(c: Ctx, campaign_id: str, statuses: tuple[str, ...], export: str | None, limit: int,
          fmt: str) -> None:
    """Deliveries of a campaign, optionally by status; --export writes them to CSV."""
    wanted = set(statuses)
    if "not-reached" in wanted:
        wanted.discard("not-reached")
        wanted.update(s for s in states.ALL_STATES if s != states.DELIVERED)
    with c.db.engine.connect() as conn:
        stmt = (select(Delivery.id, Delivery.run_id, Delivery.address, Delivery.channel,
                       Delivery.gateway, Delivery.status, Delivery.district, Delivery.ward,
                       Delivery.carrier, Delivery.error_code, Delivery.error_reason,
                       Delivery.provider_message_id, Delivery.updated_at)
                .where(Delivery.campaign_id == campaign_id).order_by(Delivery.id))
        if wanted:
            stmt = stmt.where(Delivery.status.in_(sorted(wanted)))
        rows = conn.execute(stmt).all()
    if export:
        path = Path(export)
        with open(path, "w", encoding="utf-8-sig", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["delivery_id", "run_id", "phone", "channel", "status", "district", "ward",
                        "carrier", "error_code", "error_reason"])
            for r in rows:
                w.writerow([r.id, r.run_id, r.address, r.channel, r.status, r.district or "",
                            r.ward or "", r.carrier or "", r.error_code or "", r.error_reason or ""])
        console.print(f"{len(rows)} deliveries written to {path}")
        return
    data = [{"id": r.id, "run": r.run_id, "phone": c.phone(r.address), "channel": r.channel,
             "gateway": r.gateway, "status": r.status, "district": r.district, "ward": r.ward,
             "carrier": r.carrier, "error_code": r.error_code, "error_reason": r.error_reason,
             "provider_message_id": r.provider_message_id} for r in rows]
    if fmt == "json":
        click.echo(json.dumps(data, ensure_ascii=False, indent=2))
        return
    t = Table(title=f"Deliveries of {campaign_id}: {len(data)}" + (
        f" (first {limit})" if len(data) > limit else ""))
    for col in ("id", "run", "phone", "channel", "status", "district", "error"):
        t.add_column(col)
    for d in data[:limit]:
        t.add_row(str(d["id"]), str(d["run"]), d["phone"], d["channel"], d["status"],
                  d["district"] or "", " ".join(x for x in (d["error_code"], d["error_reason"]) if x))
    console.print(t)


@deliveries.command("lookup")
@click.argument("phone")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@pass_ctx
def lookup(c: Ctx, phone: str, fmt: str) -> None:
    """Delivery history of one number across campaigns (for a citizen's complaint)."""
    from outreach import phones
    from outreach.models import DeliveryEvent

    res = phones.normalise(phone)
    if not res.ok or not res.e164:
        raise click.BadParameter(f"{phone!r} is not a mobile number ({res.reason})")
    with c.db.engine.connect() as conn:
        rows = conn.execute(select(Delivery.id, Delivery.campaign_id, Delivery.run_id,
                                   Delivery.channel, Delivery.status, Delivery.queued_at,
                                   Delivery.sent_at, Delivery.delivered_at, Delivery.error_code,
                                   Delivery.error_reason)
                            .where(Delivery.address == res.e164).order_by(Delivery.id)).all()
        events = conn.execute(select(DeliveryEvent.delivery_id, DeliveryEvent.at,
                                     DeliveryEvent.source, DeliveryEvent.new_status,
                                     DeliveryEvent.applied)
                              .where(DeliveryEvent.delivery_id.in_([r.id for r in rows]))
                              .order_by(DeliveryEvent.id)).all()
    iso = lambda v: v.isoformat() if isinstance(v, dt.datetime) else None  # noqa: E731
    data = {"phone": c.phone(res.e164), "deliveries": [
        {"id": r.id, "campaign": r.campaign_id, "run": r.run_id, "channel": r.channel,
         "status": r.status, "queued_at": iso(r.queued_at), "sent_at": iso(r.sent_at),
         "delivered_at": iso(r.delivered_at), "error_code": r.error_code,
         "error_reason": r.error_reason,
         "events": [{"at": iso(e.at), "source": e.source, "status": e.new_status,
                     "applied": e.applied} for e in events if e.delivery_id == r.id]}
        for r in rows]}
    if fmt == "json":
        click.echo(json.dumps(data, ensure_ascii=False, indent=2))
        return
    console.print(f"history of {data['phone']}: {len(rows)} deliveries")
    for d in data["deliveries"]:
        console.print(f"- {d['campaign']} run #{d['run']} {d['channel']}: [bold]{d['status']}[/bold]"
                      + (f" ({d['error_code'] or ''} {d['error_reason'] or ''})" if d["error_reason"]
                         else ""))
        for e in d["events"]:
            console.print(f"    {e['at'][:19]} {e['source']:<10} → {e['status']}"
                          + ("" if e["applied"] else " (ignored: late or duplicate)"))


@deliveries.command("sync")
@click.argument("campaign_id")
@click.option("--gateway", default="twilio", show_default=True)
@click.option("--batch-size", type=int, default=100, show_default=True)
@pass_ctx
def sync(c: Ctx, campaign_id: str, gateway: str, batch_size: int) -> None:
    """Fetch statuses from the provider for deliveries without a final status (no webhook URL)."""
    from outreach import sync as syncmod
    from outreach.gateways import make_gateway

    g = make_gateway(gateway)
    counts = syncmod.sync_campaign(c.db, campaign_id, g, batch_size=batch_size)
    console.print(", ".join(f"{k} {v}" for k, v in counts.items()))


@deliveries.command("resolve")
@click.argument("delivery_ids", nargs=-1, type=int, required=True)
@click.option("--resend", "action", flag_value="resend",
              help="Requeue: the operator accepts the risk of a double send.")
@click.option("--mark-sent", "action", flag_value="sent", help="Treat as sent (no resend).")
@click.option("--skip", "action", flag_value="skip", help="Do not send again.")
@pass_ctx
def resolve(c: Ctx, delivery_ids: tuple[int, ...], action: str | None) -> None:
    """The operator's explicit decision on deliveries whose outcome is unknown."""
    from outreach import audit
    from outreach.dispatch import resolve_unknown

    if not action:
        raise click.UsageError("choose --resend, --mark-sent or --skip")
    now = dt.datetime.now(dt.timezone.utc)
    with c.db.engine.begin() as conn:
        res = resolve_unknown(conn, list(delivery_ids), action=action, now=now)
        audit.record(conn, "resolve-unknown", operator=c.operator, now=now,
                     details={"deliveries": list(delivery_ids), "action": action})
    ok = [i for i, v in res.items() if v]
    bad = [i for i, v in res.items() if not v]
    console.print(f"{len(ok)} deliveries {action}" + (
        f"; not unknown, left unchanged: {', '.join(map(str, bad))}" if bad else ""))
    if ok and action == "resend":
        console.print("run `outreach campaign resume CAMPAIGN` to send them")
