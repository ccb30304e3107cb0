"""Runs: a campaign synced to the database, and one delivery row per eligible recipient."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, and_, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from outreach.ledger import runstates, states, suppression
from outreach.input import text as textmod
from outreach.input.adminunits import REFORM_DATE
from outreach.input.campaigns import CampaignSpec
from outreach.clock import vn_today
from outreach.ledger.models import Campaign, Delivery, ListMember, Recipient, Run



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
        raise RunError(
            f"campaign {spec.id} was purged (its numbers replaced by keyed hashes): sending it "
            "again would message everyone anew; create a new campaign id for a new send")
    if row.text_sha256 != spec.text_sha256:
        sent = conn.execute(select(func.count()).select_from(Delivery).where(
            Delivery.campaign_id == spec.id)).scalar_one()
        if sent and not accept_new_text:
            raise RunError(
                f"campaign {spec.id}: the message text changed since it was last sent "
                f"(was {row.text_sha256[:12]}…, now {spec.text_sha256[:12]}…). "
                "A campaign's recipients must all get the same approved text; "
                "create a new campaign id, or pass --accept-new-text to continue with the new text.")
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
               ) -> RunPlan:
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
                      Recipient.zalo_user_id)
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
    members = members.order_by(Recipient.id)
    plan = RunPlan(run_id=run_id)
    plan.already_had_delivery = conn.execute(
        select(func.count()).select_from(ListMember).where(ListMember.list_name == spec.list_name)
    ).scalar_one()
    rows = conn.execute(members).all()
    if daily_cap:
        plan.deferred_by_cap = max(len(rows) - daily_cap, 0)
        rows = rows[:daily_cap]
    plan.already_had_delivery -= len(rows) + plan.deferred_by_cap

    unacc = spec.unaccented or first.unaccented
    gsafe = spec.gsm_safe or first.gsm_safe
    personalised = is_personalised(spec, first)
    suppressed = suppression.suppressed_among(conn, [r.e164 for r in rows],
                                             channel=first.channel)
    batch: list[dict[str, Any]] = []
    for r in rows:
        status, reason, body, tdata, text = states.QUEUED, None, None, None, spec.text
        if personalised:
            try:
                body, tdata = personalise(spec, first, recipient_fields(r))
                text = body if body is not None else spec.text
            except textmod.MissingFieldError as exc:
                status, reason = states.SKIPPED, f"missing-field:{exc.field}"
        analysis = textmod.analyse(text, unaccented=unacc, gsm_safe=gsafe)
        if body is not None:
            body = analysis.text
        if status == states.QUEUED and personalised and check is not None:
            refused = check(first.channel, analysis.text, tdata)
            if refused:
                status, reason = states.SKIPPED, refused
        if r.e164 in suppressed:
            status, reason = states.OPTED_OUT, "suppressed"
        if first.channel == "zalo":
            segments = 1
        else:
            segments = analysis.segments
        cost = segments * spec.price_per_segment(first.channel, r.carrier)
        plan.by_status[status] += 1
        if reason:
            plan.skipped_reasons[reason] += 1
        if status == states.QUEUED:
            plan.by_carrier[r.carrier or "unknown"] += 1
            plan.segments += segments
            plan.cost_vnd += cost
            plan.encoding[analysis.encoding] += 1
            if plan.sample is None:
                plan.sample = analysis.text
                plan.sample_analysis = analysis.to_dict()
        batch.append({
            "campaign_id": spec.id, "run_id": run_id, "recipient_id": r.id, "dedupe_key": dedupe,
            "channel": first.channel, "gateway": gw, "address": r.e164, "district": r.district,
            "ward": r.ward, "carrier": r.carrier, "status": status, "body": body,
            "template_data": json.dumps(tdata, ensure_ascii=False) if tdata is not None else None,
            "encoding": analysis.encoding if first.channel == "sms" else None,
            "segments": segments, "cost_vnd": cost, "error_reason": reason, "attempts": 0,
            "queued_at": now, "updated_at": now,
            "final_at": now if status in states.FINAL_STATES else None})
        if len(batch) >= 5000:
            plan.created += _insert_deliveries(conn, batch)
            batch.clear()
    plan.created += _insert_deliveries(conn, batch)
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


def _insert_deliveries(conn: Connection, rows: list[dict[str, Any]]) -> int:
    if not rows:
        return 0
    ins = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(Delivery)
    before = _count(conn)
    conn.execute(ins.on_conflict_do_nothing(), rows)
    return _count(conn) - before


def _count(conn: Connection) -> int:
    return conn.execute(select(func.count()).select_from(Delivery)).scalar_one()


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
