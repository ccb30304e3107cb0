"""Operator actions on campaigns: check, launch, resume, pause, cancel, resend."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from outreach import audit, recipients, runs, states
from outreach import text as textmod
from outreach.campaigns import CampaignSpec
from outreach.clock import SYSTEM_CLOCK, Clock, vn_today
from outreach.db import Database, retry_write
from outreach.dispatch import DispatchReport, Dispatcher, stale_sending
from outreach.gateways import base as gwbase
from outreach.gateways import default_gateway_name, make_gateway
from outreach.models import Delivery, Run


class OperatorError(Exception):
    """A refusal to show the operator as one clear message (the CLI exits 1, no traceback)."""


@dataclass
class LaunchResult:
    """Everything a launch did: the import summary, the run plan and the dispatch report."""

    campaign_id: str
    gateway_names: dict[str, str]
    dry_run: bool
    window_note: str | None
    import_summary: recipients.ImportSummary | None
    plan: runs.RunPlan | None
    report: DispatchReport | None = None
    nothing_new: bool = False
    message: dict[str, Any] = field(default_factory=dict)
    duration_s: float | None = None


def gateway_names_for(spec: CampaignSpec, override: str | None) -> dict[str, str]:
    """Channel -> gateway name: ``--gateway`` (applies to every channel), else the channel's
    ``gateway`` in the campaign file, else the default for that channel."""
    out = {}
    for ch in spec.channels:
        out[ch.channel] = override or ch.gateway or default_gateway_name(ch.channel)
    return out


def build_gateways(names: dict[str, str], db: Database, clock: Clock = SYSTEM_CLOCK,
                   **options: Any) -> dict[str, gwbase.Gateway]:
    """Instantiate each channel's gateway (raises ConfigurationError, no network)."""
    built: dict[str, gwbase.Gateway] = {}
    for channel, name in names.items():
        opts = dict(options.get(name, {}))
        if name in ("mock", "outbox"):
            opts.setdefault("channel", channel)
        if name == "zalo":
            opts.setdefault("db", db)
            opts.setdefault("clock", clock)
        built[channel] = make_gateway(name, **opts)
    return built


def check_window(spec: CampaignSpec, gateways: dict[str, gwbase.Gateway], now: dt.datetime,
                 override: bool) -> str | None:
    """Refuse (OperatorError) a launch outside the window through a gateway that reaches phones.
    Returns a note when the window is closed but the launch may go on (outbox, override)."""
    why = spec.window.closed_reason(now)
    if why is None:
        return None
    reaches = [g.name for g in gateways.values() if g.reaches_phones]
    if reaches and not override:
        raise OperatorError(
            f"campaign {spec.id}: the send window is closed ({why}); gateway "
            f"{', '.join(reaches)} reaches phones, so nothing was sent. Pass "
            "--override-window to send anyway (recorded in the audit log).")
    if reaches:
        return f"send window closed ({why}); sending anyway because --override-window was given"
    return (f"send window closed ({why}); the outbox gateway reaches no phone, so the run "
            "goes ahead and writes the messages to the outbox file")


def estimate_seconds(spec: CampaignSpec, gateways: dict[str, gwbase.Gateway],
                     plan: runs.RunPlan) -> float | None:
    """Duration at the configured rate (seconds): messages or segments over the rate."""
    ch = spec.channels[0]
    g = gateways[ch.channel]
    rate = ch.rate_per_second if ch.rate_per_second is not None else g.rate_per_second
    if not rate:
        return None
    unit = ch.rate_unit or g.rate_unit
    work = plan.segments if unit == "segments" else plan.by_status.get(states.QUEUED, 0)
    return work / rate


def launch(db: Database, spec: CampaignSpec, *, gateway: str | None = None, dry_run: bool = False,
           override_window: bool = False, accept_new_text: bool = False,
           operator: str | None = None, clock: Clock = SYSTEM_CLOCK,
           gateway_options: dict[str, Any] | None = None,
           progress: Callable[[int, int], None] | None = None,
           import_progress: Callable[[int], None] | None = None,
           stop_event: threading.Event | None = None, encoding: str | None = None,
           convert_old_prefixes: bool = False, gateways: dict[str, gwbase.Gateway] | None = None,
           dispatch: bool = True) -> LaunchResult:
    """Validate, import the campaign's lists, create the run and send it.

    With ``dispatch=False`` the run is only created (status ``created``, ``report`` None) and
    ``outreach worker`` processes send it.

    A dry run does all of it but the sending inside one transaction that is rolled back, so
    its figures are exactly those a real launch would store; only an audit entry is written.
    A second launch of a ``once`` campaign creates no delivery for recipients who already have
    one, and says so (``nothing_new``).
    """
    now = clock.now()
    names = gateway_names_for(spec, gateway)
    if gateways is None:
        gateways = build_gateways(names, db, clock, **(gateway_options or {}))
    analysis = textmod.analyse(spec.text, unaccented=spec.unaccented or spec.channels[0].unaccented,
                               gsm_safe=spec.gsm_safe or spec.channels[0].gsm_safe)
    if dry_run:
        note = None
        why = spec.window.closed_reason(now)
        if why:
            note = f"send window closed now ({why})"
    else:
        note = check_window(spec, gateways, now, override_window)
    files = spec.list_files()
    district_map = _district_by_file(spec)
    conn_ctx = db.engine.connect()
    with conn_ctx as conn:
        trans = conn.begin()
        try:
            runs.sync_campaign(conn, spec, now=now, accept_new_text=accept_new_text)
            if not dry_run:  # maker–checker (outreach/approvals.py)
                from outreach.approvals import require_approval
                require_approval(conn, spec, gateways, operator=operator, now=now)
            active = runs.active_run(conn, spec.id)
            if active is not None and not dry_run:
                stale = stale_sending(conn, active.id, now)
                raise OperatorError(
                    f"campaign {spec.id} already has run #{active.id} ({active.status}"
                    f"{': ' + active.status_reason if active.status_reason else ''}"
                    f"{f'; {stale} sends were interrupted' if stale else ''}). "
                    f"Use `outreach campaign resume {spec.id}` to continue it, or "
                    f"`outreach campaign cancel {spec.id}` first.")
            summary = recipients.import_into(
                conn, files, list_name=spec.list_name, encoding=encoding,
                convert_old_prefixes=convert_old_prefixes, district_by_file=district_map,
                operator=operator, progress=import_progress, now=now)
            plan = runs.create_run(conn, spec, kind="launch", gateway_names=names, now=now,
                                   run_key=f"launch:{now.isoformat()}", operator=operator)
            if dry_run:
                trans.rollback()
                trans = conn.begin()
                audit.record(conn, "dry-run", operator=operator, campaign_id=spec.id,
                             text_sha256=spec.text_sha256, now=now,
                             details={"recipients": plan.by_status.get(states.QUEUED, 0),
                                      "segments": plan.segments, "cost_vnd": plan.cost_vnd})
                trans.commit()
                res = LaunchResult(spec.id, names, True, note, summary, plan,
                                   message=analysis.to_dict(), nothing_new=plan.run_id is None)
                res.duration_s = estimate_seconds(spec, gateways, plan)
                return res
            audit.record(conn, "launch", operator=operator, campaign_id=spec.id,
                         text_sha256=spec.text_sha256, now=now,
                         details={"run_id": plan.run_id, "gateways": names,
                                  "override_window": override_window,
                                  "deliveries": plan.created, "window_note": note})
            trans.commit()
        except BaseException:
            if trans.is_active:
                trans.rollback()
            raise
    result = LaunchResult(spec.id, names, False, note, summary, plan, message=analysis.to_dict())
    if plan.run_id is None:
        result.nothing_new = True
        return result
    if not dispatch:
        return result
    result.report = Dispatcher(db, spec, plan.run_id, gateways, clock=clock,
                               override_window=override_window, progress=progress,
                               stop_event=stop_event).run()
    return result


def _district_by_file(spec: CampaignSpec) -> dict[str, str]:
    return dict(spec.district_by_file)


def find_run(db: Database, campaign_id: str, run_id: int | None = None) -> Run:
    with db.engine.connect() as conn:
        if run_id is not None:
            run = runs.get_run(conn, run_id)
            if run is None or run.campaign_id != campaign_id:
                raise OperatorError(f"campaign {campaign_id} has no run #{run_id}")
            return run
        run = runs.active_run(conn, campaign_id)
        if run is None:
            last = conn.execute(select(Run.id, Run.status).where(Run.campaign_id == campaign_id)
                                .order_by(Run.id.desc())).first()
            if last is None:
                raise OperatorError(f"campaign {campaign_id} has never been launched")
            raise OperatorError(f"campaign {campaign_id} has no unfinished run (last: #{last.id}, "
                                f"{last.status})")
        return run


def resume(db: Database, spec: CampaignSpec, *, gateway: str | None = None,
           override_window: bool = False, allow_late: bool = False, operator: str | None = None,
           clock: Clock = SYSTEM_CLOCK, run_id: int | None = None,
           gateway_options: dict[str, Any] | None = None,
           progress: Callable[[int, int], None] | None = None,
           stop_event: threading.Event | None = None,
           gateways: dict[str, gwbase.Gateway] | None = None) -> DispatchReport:
    """Continue an unfinished run: interrupted sends are reconciled first, never resent blindly."""
    run = find_run(db, spec.id, run_id)
    if run.text_sha256 != spec.text_sha256:
        raise OperatorError(f"run #{run.id} was created with another text "
                            f"({run.text_sha256[:12]}…) than the campaign file now has "
                            f"({spec.text_sha256[:12]}…); refusing to send a different message")
    names = dict((run.options or {}).get("gateways") or gateway_names_for(spec, gateway))
    if gateway:
        names = {ch: gateway for ch in names}
    if gateways is None:
        gateways = build_gateways(names, db, clock, **(gateway_options or {}))
    now = clock.now()
    with db.engine.begin() as conn:
        from outreach.approvals import require_approval  # maker–checker
        require_approval(conn, spec, gateways, operator=operator, now=now, action="resume")
        runs.set_status(conn, run.id, "running" if run.started_at else "created", None, now=now)
        audit.record(conn, "resume", operator=operator, campaign_id=spec.id,
                     text_sha256=spec.text_sha256, now=now,
                     details={"run_id": run.id, "override_window": override_window,
                              "allow_late": allow_late})
    return Dispatcher(db, spec, run.id, gateways, clock=clock, override_window=override_window,
                      allow_late=allow_late, progress=progress, stop_event=stop_event).run()


@retry_write
def set_run_state(db: Database, campaign_id: str, action: str, *, operator: str | None = None,
                  now: dt.datetime | None = None, text_sha256: str | None = None) -> Run:
    """``pause`` (a running dispatcher stops after its current batch) or ``cancel`` (queued
    deliveries become ``skipped`` with reason ``cancelled``)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    run = find_run(db, campaign_id)
    with db.engine.begin() as conn:
        if action == "pause":
            runs.set_status(conn, run.id, "paused", f"paused by {operator or 'the operator'}",
                            now=now)
        elif action == "cancel":
            ids = conn.execute(select(Delivery.id).where(Delivery.run_id == run.id,
                                                         Delivery.status == states.QUEUED)).scalars().all()
            states.apply(conn, [states.Change(i, states.SKIPPED, {"error_reason": "cancelled"})
                                for i in ids], source="operator", now=now)
            runs.set_status(conn, run.id, "cancelled", f"cancelled by {operator or 'the operator'}",
                            now=now)
        else:
            raise ValueError(action)
        audit.record(conn, action, operator=operator, campaign_id=campaign_id,
                     text_sha256=text_sha256, now=now, details={"run_id": run.id})
    return run


def resend(db: Database, spec: CampaignSpec, *, statuses: tuple[str, ...] = (states.FAILED,
                                                                             states.UNDELIVERED),
           gateway: str | None = None, operator: str | None = None, clock: Clock = SYSTEM_CLOCK,
           override_window: bool = False, gateway_options: dict[str, Any] | None = None,
           progress: Callable[[int, int], None] | None = None,
           gateways: dict[str, gwbase.Gateway] | None = None) -> LaunchResult:
    """A new run only for recipients whose latest delivery failed (never anyone delivered,
    opted out or still in flight)."""
    now = clock.now()
    names = gateway_names_for(spec, gateway)
    if gateways is None:
        gateways = build_gateways(names, db, clock, **(gateway_options or {}))
    note = check_window(spec, gateways, now, override_window)
    with db.engine.begin() as conn:
        runs.sync_campaign(conn, spec, now=now)
        from outreach.approvals import require_approval  # maker–checker
        require_approval(conn, spec, gateways, operator=operator, now=now, action="resend")
        active = runs.active_run(conn, spec.id)
        if active is not None:
            raise OperatorError(f"campaign {spec.id} has unfinished run #{active.id} "
                                f"({active.status}); resume or cancel it before a resend")
        plan = runs.create_run(conn, spec, kind="resend", gateway_names=names, now=now,
                               run_key=f"resend:{now.isoformat()}", operator=operator,
                               resend_statuses=statuses)
        audit.record(conn, "resend", operator=operator, campaign_id=spec.id,
                     text_sha256=spec.text_sha256, now=now,
                     details={"run_id": plan.run_id, "statuses": list(statuses),
                              "deliveries": plan.created})
    result = LaunchResult(spec.id, names, False, note, None, plan)
    if plan.run_id is None:
        result.nothing_new = True
        return result
    result.report = Dispatcher(db, spec, plan.run_id, gateways, clock=clock,
                               override_window=override_window, progress=progress).run()
    return result


def today(clock: Clock = SYSTEM_CLOCK) -> dt.date:
    return vn_today(clock.now())
