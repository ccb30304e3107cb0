"""Runs: a campaign synced to the database, and one delivery row per eligible recipient."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Float, String, and_, case, func, insert, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite

from outreach.i18n import _
from outreach.ledger import runstates, states, suppression
from outreach.input import text as textmod
from outreach.input.adminunits import REFORM_DATE
from outreach.input.campaigns import CampaignSpec
from outreach.clock import vn_today
from outreach.ledger.models import (Campaign, Delivery, ListMember, Recipient, Run, Suppression,
                                    UTCDateTime)



class RunError(Exception):
    """An operator-facing refusal (no traceback): text changed, run already active..."""


@dataclass
class RunPlan:
    """What a new run holds. ``by_status`` counts the new delivery rows (queued, opted_out,
    skipped); segments and cost are per channel of the first attempt. Units: segments, VND."""

    run_id: int | None
    created: int = 0
    already_had_delivery: int = 0
    by_status: Counter[str] = field(default_factory=Counter)
    by_carrier: Counter[str] = field(default_factory=Counter)
    segments: int = 0
    cost_vnd: float = 0.0
    encoding: Counter[str] = field(default_factory=Counter)
    skipped_reasons: Counter[str] = field(default_factory=Counter)
    deferred_by_cap: int = 0
    sample: str | None = None
    sample_analysis: dict[str, Any] | None = None


def sync_campaign(conn: Connection, spec: CampaignSpec, *, now: dt.datetime,
                  accept_new_text: bool = False) -> None:
    """Store or update the campaign row. Refuses (RunError) a text whose hash differs from the
    one this campaign already sent with, unless ``accept_new_text``."""
    row = conn.execute(select(Campaign.text_sha256, Campaign.status)
                       .where(Campaign.id == spec.id)).first()
    from pathlib import Path

    file_path = str(Path(spec.file).resolve()) if spec.file else None
    values = dict(name=spec.name, source_ref=spec.source.reference(), text=spec.text,
                  text_sha256=spec.text_sha256, file_path=file_path, definition=spec.to_json(),
                  updated_at=now)
    if row is None:
        conn.execute(insert(Campaign).values(id=spec.id, status="active", created_at=now, **values))
        return
    if row.status == "purged":
        raise RunError(_(
            "campaign {id} was purged (its numbers replaced by keyed hashes): sending it again "
            "would message everyone anew; create a new campaign id for a new send").format(
                id=spec.id))
    if row.text_sha256 != spec.text_sha256:
        sent = conn.execute(select(func.count()).select_from(Delivery).where(
            Delivery.campaign_id == spec.id)).scalar_one()
        if sent and not accept_new_text:
            raise RunError(_(
                "campaign {id}: the message text changed since it was last sent (was {old}…, "
                "now {new}…). A campaign's recipients must all get the same approved text; "
                "create a new campaign id, or pass --accept-new-text to continue with the new "
                "text.").format(id=spec.id, old=row.text_sha256[:12], new=spec.text_sha256[:12]))
    conn.execute(update(Campaign).where(Campaign.id == spec.id).values(**values))


def active_run(conn: Connection, campaign_id: str) -> Run | None:
    r = conn.execute(select(Run.__table__).where(Run.campaign_id == campaign_id,
                                                 Run.status.in_(runstates.ACTIVE))
                     .order_by(Run.id.desc())).mappings().first()
    return _run_obj(r)


def get_run(conn: Connection, run_id: int) -> Run | None:
    return _run_obj(conn.execute(select(Run.__table__).where(Run.id == run_id)).mappings().first())


def _run_obj(r: Any) -> Run | None:
    if r is None:
        return None
    run = Run()
    for k, v in r.items():
        setattr(run, k, v)
    return run


def create_run(conn: Connection, spec: CampaignSpec, *, kind: str, gateway_names: dict[str, str],
               now: dt.datetime, run_key: str | None = None, due_at: dt.datetime | None = None,
               operator: str | None = None, daily_cap: int | None = None,
               resend_statuses: tuple[str, ...] | None = None, run_date: dt.date | None = None,
               check: Callable[[str, str, Mapping[str, str] | None], str | None] | None = None,
               progress: Callable[[int, int], None] | None = None) -> RunPlan:
    """Create a run and its delivery rows, in the caller's transaction.

    Eligible recipients are the members of the campaign's list. For a ``once`` campaign each
    recipient gets at most one delivery per channel in the whole campaign (dedupe key ``once``);
    for ``repeat`` one per ``repeat_every_days`` (key ``day:YYYY-MM-DD``); a resend
    (``resend_statuses`` given) targets recipients whose latest delivery ended in one of those
    statuses and who were never delivered (key ``resend:<run id>``). Suppressed numbers get an
    ``opted_out`` row, recipients missing a personalisation field a ``skipped`` row with the
    reason. ``daily_cap`` limits how many rows this run creates (the rest wait for later runs).

    Personalisation (:func:`personalise`): ``{{name}}``, ``{{district}}``, ``{{ward}}`` in the
    text and, for a Zalo (ZNS) channel, in its ``template_fields`` values are filled per
    recipient (NFC); the ZNS data is stored in the row's ``template_data`` (JSON). ``check``
    (:func:`outreach.sending.limits.recipient_checker`) is asked about each personalised
    message: a reason makes the row ``skipped`` with that reason (what the provider would
    refuse is never sent).

    The rows are written by the database where it can: a text that is the same for everyone
    is analysed once and the rows go in by ``INSERT … SELECT`` (price by carrier and
    suppression as SQL ``CASE``; one statement per slice of 50,000 recipient ids); a personalised text (or ZNS template data) is rendered in pages of :data:`BATCH`
    recipients, each distinct text analysed once. Nothing per recipient is held in Python
    across the run, so memory does not grow with the list. The plan's figures are read back
    with one grouped query. ``progress(done, total)`` (rows of this run) is called with
    ``(0, total)`` before the first row, then after each slice or page.

    Returns the plan; ``run_id`` is None when no recipient needed a delivery (nothing is
    written then).
    """
    run_date = run_date or vn_today(now)
    first = spec.channels[0]
    gw = gateway_names[first.channel]
    run_id = conn.execute(insert(Run).values(
        campaign_id=spec.id, run_key=run_key or f"{kind}:{now.isoformat()}", kind=kind,
        run_date=run_date, status=runstates.CREATED, gateway=gw, text_sha256=spec.text_sha256,
        due_at=due_at or now, created_at=now, operator=operator,
        options={"gateways": gateway_names})).inserted_primary_key[0]
    if resend_statuses:
        dedupe = f"resend:{run_id}"
    elif spec.schedule.mode == "repeat" and kind == "scheduled":
        dedupe = f"day:{run_date.isoformat()}"
    else:
        dedupe = "once"

    # a campaign from the 2025 reform on reports by the current province and commune
    # (outreach.input.adminunits.REFORM_DATE); an earlier one by the list's districts and wards
    if spec.window.start_date >= REFORM_DATE:
        district_col, ward_col = Recipient.new_province, Recipient.new_ward
    else:
        district_col, ward_col = Recipient.district, Recipient.ward
    members = (select(Recipient.id, Recipient.e164, Recipient.carrier, Recipient.name,
                      district_col.label("district"), ward_col.label("ward"),
                      Recipient.zalo_user_id,
                      # the same id as the list's index holds it: slices of the run's rows are
                      # taken and ordered on it, so SQLite reads them in index order and sorts
                      # nothing (ordered on recipients.id it built a temporary B-tree per slice)
                      ListMember.recipient_id.label("member_id"))
               .join(ListMember, ListMember.recipient_id == Recipient.id)
               .where(ListMember.list_name == spec.list_name))
    existing = select(Delivery.id).where(Delivery.campaign_id == spec.id,
                                         Delivery.recipient_id == Recipient.id)
    if resend_statuses:
        from sqlalchemy.orm import aliased

        d_last, d_max, d_any = aliased(Delivery), aliased(Delivery), aliased(Delivery)
        latest_id = (select(func.max(d_max.id)).where(d_max.campaign_id == spec.id,
                                                      d_max.recipient_id == Recipient.id)
                     .correlate(Recipient).scalar_subquery())
        latest_status = (select(d_last.status).where(d_last.id == latest_id)
                         .correlate(Recipient).scalar_subquery())
        reached = select(d_any.id).where(
            d_any.campaign_id == spec.id, d_any.recipient_id == Recipient.id,
            d_any.status.in_((states.DELIVERED, states.OPTED_OUT, states.SENT,
                              states.SENDING, states.QUEUED) + (
                                  () if states.UNKNOWN in resend_statuses else (states.UNKNOWN,)))
        ).correlate(Recipient)
        members = members.where(latest_status.in_(resend_statuses), ~reached.exists())
    elif dedupe == "once":
        members = members.where(~existing.where(Delivery.dedupe_key == "once").exists())
    else:
        every = spec.schedule.repeat_every_days
        since = run_date - dt.timedelta(days=every - 1)
        recent = [f"day:{(since + dt.timedelta(days=i)).isoformat()}" for i in range(every)]
        members = members.where(~existing.where(Delivery.dedupe_key.in_(recent)).exists())
    plan = RunPlan(run_id=run_id)
    in_list = conn.execute(
        select(func.count()).select_from(ListMember).where(ListMember.list_name == spec.list_name)
    ).scalar_one()
    eligible = conn.execute(select(func.count()).select_from(members.subquery())).scalar_one()
    take = min(eligible, daily_cap) if daily_cap else eligible
    plan.deferred_by_cap = eligible - take
    plan.already_had_delivery = in_list - eligible

    fixed = dict(spec=spec, run_id=run_id, dedupe=dedupe, channel=first.channel, gateway=gw,
                 unaccented=spec.unaccented or first.unaccented,
                 gsm_safe=spec.gsm_safe or first.gsm_safe, now=now)
    if take and progress is not None:
        progress(0, take)  # the phase begins: its rate counts from here
    if take and not is_personalised(spec, first):
        plan.created = _insert_same_text(conn, members, take, progress=progress, **fixed)
    elif take:
        plan.created = _insert_personalised(conn, members, take, progress=progress, chan=first,
                                            check=check, **fixed)
    _tally(conn, plan, run_id, spec.text, fixed["unaccented"], fixed["gsm_safe"])
    if plan.created == 0:
        conn.execute(Run.__table__.delete().where(Run.id == run_id))
        plan.run_id = None
    return plan


def recipient_fields(r: Any) -> dict[str, str | None]:
    """The personalisation fields of a recipient row (its list's columns): ``name``,
    ``district``, ``ward``."""
    return {"name": r.name, "district": r.district, "ward": r.ward}


def is_personalised(spec: CampaignSpec, channel: Any) -> bool:
    """True when the text, or (Zalo) a ``template_fields`` value, has a ``{{field}}``."""
    if textmod.placeholders(spec.text):
        return True
    return channel.channel == "zalo" and any(textmod.placeholders(v)
                                             for v in channel.template_fields.values())


def personalise(spec: CampaignSpec, channel: Any, fields: Mapping[str, str | None]
                ) -> tuple[str | None, dict[str, str] | None]:
    """(text, ZNS template data) for one recipient: the campaign text with its placeholders
    filled (None when it has none) and, for a Zalo channel whose ``template_fields`` use
    placeholders, every value rendered (None otherwise). The same ``{{field}}`` syntax and
    strictness as the text (:func:`outreach.input.text.render`: NFC, a missing or blank field
    raises :class:`~outreach.input.text.MissingFieldError`)."""
    body = textmod.render(spec.text, fields) if textmod.placeholders(spec.text) else None
    data = None
    if channel.channel == "zalo" and any(textmod.placeholders(v)
                                         for v in channel.template_fields.values()):
        data = {k: textmod.render(v, fields) if textmod.placeholders(v) else textmod.nfc(v)
                for k, v in channel.template_fields.items()}
    return body, data


#: Rows per statement where Python must compute each row (personalised texts): memory stays
#: bounded by this, whatever the list's size.
BATCH = 5000


def _insert_same_text(conn: Connection, members: Any, take: int, *, spec: CampaignSpec,
                      run_id: int, dedupe: str, channel: str, gateway: str, unaccented: bool,
                      gsm_safe: bool, now: dt.datetime,
                      progress: Callable[[int, int], None] | None = None) -> int:
    """Every delivery row of a text that is the same for everyone by ``INSERT … SELECT``: the
    text is analysed once (encoding, segments), the price is a ``CASE`` on the carrier (the
    campaign's ``[pricing]`` table), a suppressed number gets ``opted_out`` with reason
    ``suppressed``. One statement per :data:`SLICE` recipient ids, so ``progress`` can say
    how far it is. Returns the rows inserted (a row that already exists is left alone)."""
    analysis = textmod.analyse(spec.text, unaccented=unaccented, gsm_safe=gsm_safe)
    segments = 1 if channel == "zalo" else analysis.segments
    table = spec.pricing.get(channel, {})
    default = segments * spec.price_per_segment(channel, None)
    m = members.subquery()
    cost: Any = literal(default, Float)
    priced = {c: segments * spec.price_per_segment(channel, c) for c in table if c != "default"}
    if priced:
        cost = case(*((m.c.carrier == c, literal(v, Float)) for c, v in priced.items()),
                    else_=literal(default, Float))
    suppressed = m.c.e164.in_(select(Suppression.e164).where(
        suppression.applies_to(channel)))
    ts = literal(now, UTCDateTime())
    cols = ["campaign_id", "run_id", "recipient_id", "dedupe_key", "channel", "gateway", "address",
            "district", "ward", "carrier", "status", "body", "encoding", "segments", "cost_vnd",
            "error_reason", "attempts", "queued_at", "updated_at", "final_at"]
    ins = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(Delivery)
    # the ends of the list's ids from its unique index (list_name, recipient_id): two index
    # lookups, where the ends of the eligible members scanned the whole list (PostgreSQL,
    # 1,000,000: 1.1 s); the slices between them skip who is not eligible. One aggregate per
    # subquery, so SQLite's min/max optimisation applies to each
    in_list = ListMember.list_name == spec.list_name
    low, high = conn.execute(select(
        select(func.min(ListMember.recipient_id)).where(in_list).scalar_subquery(),
        select(func.max(ListMember.recipient_id)).where(in_list).scalar_subquery())).one()
    created = 0
    start = low
    while start is not None and start <= high and created < take:
        sel = (select(
            literal(spec.id), literal(run_id), m.c.id, literal(dedupe), literal(channel),
            literal(gateway), m.c.e164, m.c.district, m.c.ward, m.c.carrier,
            case((suppressed, literal(states.OPTED_OUT)), else_=literal(states.QUEUED)),
            literal(None, String),
            literal(analysis.encoding if channel == "sms" else None, String),
            literal(segments), cost, case((suppressed, literal("suppressed")), else_=None),
            literal(0), ts, ts, case((suppressed, ts), else_=None))
            .where(m.c.member_id >= start, m.c.member_id < start + SLICE)
            .order_by(m.c.member_id).limit(take - created))
        created += conn.execute(ins.from_select(cols, sel).on_conflict_do_nothing()).rowcount
        start += SLICE
        if progress is not None:
            progress(created, take)
    return created


#: Recipient ids per ``INSERT … SELECT`` of :func:`_insert_same_text`. SQLite materialises
#: each slice's rows before inserting them (the SELECT reads ``deliveries`` too): 10,000 rows
#: keep that near 10 MB (50,000 held 30 MB more) at the same speed (benchmarks/city_1m.py)
SLICE = 10_000


def _insert_personalised(conn: Connection, members: Any, take: int, *, spec: CampaignSpec,
                         run_id: int, dedupe: str, channel: str, gateway: str, unaccented: bool,
                         gsm_safe: bool, now: dt.datetime,
                         progress: Callable[[int, int], None] | None, chan: Any,
                         check: Callable[[str, str, Mapping[str, str] | None], str | None] | None
                         ) -> int:
    """Delivery rows of a personalised text or ZNS template data (:func:`personalise` for
    channel ``chan``), in pages of :data:`BATCH` recipients (keyset on the recipient id: nothing
    of the list is held across pages). Each distinct text is analysed once (a bounded cache); a
    recipient missing a field gets a ``skipped`` row with reason ``missing-field:<name>``, a
    message ``check`` refuses a ``skipped`` row with its reason, a suppressed number
    ``opted_out``."""
    analyses: dict[str, textmod.MessageAnalysis] = {}
    prices: dict[str | None, float] = {}
    created = done = 0
    last = 0
    while done < take:
        page = conn.execute(members.where(Recipient.id > last).order_by(Recipient.id)
                            .limit(min(BATCH, take - done))).all()
        if not page:
            break
        last = page[-1].id
        done += len(page)
        suppressed = suppression.suppressed_among(conn, [r.e164 for r in page], channel=channel)
        text_personalised = bool(textmod.placeholders(spec.text))
        batch: list[dict[str, Any]] = []
        for r in page:
            status, reason, body, tdata, text = states.QUEUED, None, None, None, spec.text
            try:
                body, tdata = personalise(spec, chan, recipient_fields(r))
                text = body if body is not None else spec.text
            except textmod.MissingFieldError as exc:
                status, reason, body = states.SKIPPED, f"missing-field:{exc.field}", None
            analysis = analyses.get(text)
            if analysis is None:
                if len(analyses) >= 10_000:
                    analyses.clear()
                analysis = analyses[text] = textmod.analyse(text, unaccented=unaccented,
                                                            gsm_safe=gsm_safe)
            if status == states.QUEUED and text_personalised:
                body = analysis.text
            if status == states.QUEUED and check is not None:
                refused = check(channel, analysis.text, tdata)
                if refused:
                    status, reason = states.SKIPPED, refused
            if r.e164 in suppressed:
                status, reason = states.OPTED_OUT, "suppressed"
            segments = 1 if channel == "zalo" else analysis.segments
            price = prices.get(r.carrier)
            if price is None:
                price = prices[r.carrier] = spec.price_per_segment(channel, r.carrier)
            batch.append({
                "campaign_id": spec.id, "run_id": run_id, "recipient_id": r.id,
                "dedupe_key": dedupe, "channel": channel, "gateway": gateway, "address": r.e164,
                "district": r.district, "ward": r.ward, "carrier": r.carrier, "status": status,
                "body": body,
                "template_data": (json.dumps(tdata, ensure_ascii=False) if tdata is not None
                                  else None),
                "encoding": analysis.encoding if channel == "sms" else None,
                "segments": segments, "cost_vnd": segments * price, "error_reason": reason,
                "attempts": 0, "queued_at": now, "updated_at": now,
                "final_at": now if status in states.FINAL_STATES else None})
        created += _insert_deliveries(conn, batch)
        if progress is not None:
            progress(created, take)
    return created


def _tally(conn: Connection, plan: RunPlan, run_id: int, text: str, unaccented: bool,
           gsm_safe: bool) -> None:
    """The plan's counts from the rows just written (grouped reads, nothing per row):
    statuses, reasons, carriers, segments, cost and encodings of the queued rows, and the first
    queued message as the sample.

    Grouped over slices of :data:`TALLY_SLICE` delivery ids: SQLite groups by sorting, and one
    GROUP BY over a million-row run sorted every row in a temporary B-tree (50 MB more
    memory); a slice sorts at most that many rows, whatever the run's size."""
    low, high = conn.execute(select(func.min(Delivery.id), func.max(Delivery.id))
                             .where(Delivery.run_id == run_id)).one()
    rows: list[Any] = []
    start = low
    while start is not None and start <= high:
        rows.extend(conn.execute(
            select(Delivery.status, Delivery.error_reason, Delivery.carrier, Delivery.encoding,
                   func.count(), func.sum(Delivery.segments), func.sum(Delivery.cost_vnd))
            .where(Delivery.run_id == run_id, Delivery.id >= start,
                   Delivery.id < start + TALLY_SLICE)
            .group_by(Delivery.status, Delivery.error_reason, Delivery.carrier,
                      Delivery.encoding)).all())
        start += TALLY_SLICE
    default_encoding = textmod.analyse(text, unaccented=unaccented, gsm_safe=gsm_safe).encoding
    for status, reason, carrier, encoding, n, segs, cost in rows:
        plan.by_status[status] += n
        if reason:
            plan.skipped_reasons[reason] += n
        if status == states.QUEUED:
            plan.by_carrier[carrier or "unknown"] += n
            plan.segments += int(segs or 0)
            plan.cost_vnd += float(cost or 0.0)
            plan.encoding[encoding or default_encoding] += n
    if plan.by_status.get(states.QUEUED):
        body = conn.execute(select(Delivery.body).where(
            Delivery.run_id == run_id, Delivery.status == states.QUEUED)
            .order_by(Delivery.id).limit(1)).scalar()
        analysis = textmod.analyse(body if body is not None else text, unaccented=unaccented,
                                   gsm_safe=gsm_safe)
        plan.sample = analysis.text
        plan.sample_analysis = analysis.to_dict()


#: Delivery ids per grouped read of :func:`_tally`
TALLY_SLICE = 50_000


def _insert_deliveries(conn: Connection, rows: list[dict[str, Any]]) -> int:
    if not rows:
        return 0
    ins = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(Delivery)
    before = _count_run(conn, rows[0]["run_id"])
    conn.execute(ins.on_conflict_do_nothing(), rows)
    return _count_run(conn, rows[0]["run_id"]) - before


def _count_run(conn: Connection, run_id: int) -> int:
    return conn.execute(select(func.count()).select_from(Delivery)
                        .where(Delivery.run_id == run_id)).scalar_one()


def remaining(conn: Connection, run_id: int) -> dict[str, int]:
    """Status -> count for one run."""
    rows = conn.execute(select(Delivery.status, func.count()).where(Delivery.run_id == run_id)
                        .group_by(Delivery.status)).all()
    return {s: n for s, n in rows}


def sent_today(conn: Connection, campaign_id: str, now: dt.datetime) -> int:
    """Deliveries of the campaign that went to a gateway on today's Vietnamese calendar day."""
    from outreach.clock import VN_TZ

    local = now.astimezone(VN_TZ)
    start = dt.datetime.combine(local.date(), dt.time(0), tzinfo=VN_TZ)
    return conn.execute(select(func.count()).select_from(Delivery).where(and_(
        Delivery.campaign_id == campaign_id, Delivery.sending_at >= start,
        Delivery.sending_at < start + dt.timedelta(days=1)))).scalar_one()
