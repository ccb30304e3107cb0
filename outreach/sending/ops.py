"""Operator actions on campaigns: check, launch, resume, pause, cancel, resend."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from outreach.input import recipients
from outreach.ledger import runs, runstates, states
from outreach.reporting import audit
from outreach.sending import engine, limits, reasons, reconcile
from outreach.input import text as textmod
from outreach.input.campaigns import CampaignSpec
from outreach.clock import SYSTEM_CLOCK, Clock, vn_today
from outreach.ledger.db import Database, retry_write
from outreach.sending.engine import RunReport
from outreach.gateways import base as gwbase
from outreach.gateways import build_gateways, gateway_names_for, run_gateway_names
from outreach.ledger.models import Delivery, Run
from outreach.i18n import _, number
from outreach.sending.reconcile import stale_sending

log = logging.getLogger(__name__)


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
    report: RunReport | None = None
    nothing_new: bool = False
    message: dict[str, Any] = field(default_factory=dict)
    duration_s: float | None = None
    #: what a provider advises against in the message (nothing refused): one line each
    advice: list[str] = field(default_factory=list)


def check_window(spec: CampaignSpec, gateways: dict[str, gwbase.Gateway], now: dt.datetime,
                 override: bool) -> str | None:
    """Refuse (OperatorError) a launch outside the window through a gateway that reaches phones.
    Returns a note when the window is closed but the launch may go on (outbox, override)."""
    why = spec.window.closed_reason(now)
    if why is None:
        return None
    reaches = [g.name for g in gateways.values() if g.reaches_phones]
    if reaches and not override:
        raise OperatorError(_(
            "campaign {id}: the send window is closed ({why}); gateway {gateways} reaches "
            "phones, so nothing was sent. Pass --override-window to send anyway (recorded in "
            "the audit log).").format(id=spec.id, why=why, gateways=", ".join(reaches)))
    if reaches:
        return _("send window closed ({why}); sending anyway because --override-window was "
                 "given").format(why=why)
    return _("send window closed ({why}); the outbox gateway reaches no phone, so the run goes "
             "ahead and writes the messages to the outbox file").format(why=why)


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
           create_progress: Callable[[int, int], None] | None = None,
           stop_event: threading.Event | None = None, encoding: str | None = None,
           convert_old_prefixes: bool = False, gateways: dict[str, gwbase.Gateway] | None = None,
           dispatch: bool = True,
           on_plan: Callable[[LaunchResult], None] | None = None) -> LaunchResult:
    """Validate, import the campaign's lists, create the run and send it.

    ``on_plan(result)`` (not for a dry run) is called once the run is created and committed,
    before anything is sent: the CLI prints the plan there when nobody is asked (a gateway
    that reaches no phone, stdin not a terminal), so the lists are read once, not once for a
    plan and again for the launch. An exception it raises stops the launch before sending (the
    run stays ``created``).

    ``import_progress(rows read)``, ``create_progress(rows, total)`` and ``progress(sent,
    total)`` report the three phases (the CLI's progress view).

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
            note = _("send window closed now ({why})").format(why=why)
    else:
        note = check_window(spec, gateways, now, override_window)
    # what a provider would refuse for every recipient: refused here, before the lists are
    # read and before any request (CampaignError names the field, its length and the limit)
    advice = limits.check_campaign(spec, gateways).advice
    checker = limits.recipient_checker(spec, gateways)
    files = spec.list_files()
    district_map = _district_by_file(spec)
    conn_ctx = db.engine.connect()
    with conn_ctx as conn:
        trans = conn.begin()
        try:
            runs.sync_campaign(conn, spec, now=now, accept_new_text=accept_new_text)
            if not dry_run:  # maker–checker (outreach/approvals.py)
                from outreach.sending.approvals import require_approval
                require_approval(conn, spec, gateways, operator=operator, now=now)
            active = runs.active_run(conn, spec.id)
            if active is not None and not dry_run:
                stale = stale_sending(conn, active.id, now)
                state = _(active.status) + (": " + reasons.run_reason(active.status_reason)
                                            if active.status_reason else "")
                if stale:
                    state += _("; {n} sends were interrupted").format(n=number(stale))
                raise OperatorError(_(
                    "campaign {id} already has run #{run} ({state}). Use `outreach campaign "
                    "resume {id}` to continue it, or `outreach campaign cancel {id}` "
                    "first.").format(id=spec.id, run=active.id, state=state))
            summary = recipients.import_into(
                conn, files, list_name=spec.list_name, encoding=encoding,
                convert_old_prefixes=convert_old_prefixes, district_by_file=district_map,
                operator=operator, progress=_interruptible(import_progress, stop_event),
                now=now)
            if stop_event is not None and stop_event.is_set():
                # Ctrl-C while the lists were read: nothing is created, nothing half-written
                raise KeyboardInterrupt
            if import_progress is not None:
                import_progress(summary.rows_read)  # the last count: every row read
            plan = runs.create_run(conn, spec, kind="launch", gateway_names=names, now=now,
                                   run_key=f"launch:{now.isoformat()}", operator=operator,
                                   check=checker, progress=create_progress)
            if dry_run:
                trans.rollback()
                trans = conn.begin()
                audit.record(conn, "dry-run", operator=operator, campaign_id=spec.id,
                             text_sha256=spec.text_sha256, now=now,
                             details={"recipients": plan.by_status.get(states.QUEUED, 0),
                                      "segments": plan.segments, "cost_vnd": plan.cost_vnd})
                trans.commit()
                res = LaunchResult(spec.id, names, True, note, summary, plan,
                                   message=analysis.to_dict(), nothing_new=plan.run_id is None,
                                   advice=advice)
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
    result = LaunchResult(spec.id, names, False, note, summary, plan, message=analysis.to_dict(),
                          advice=advice)
    if plan.run_id is None:
        result.nothing_new = True
    if on_plan is not None:
        result.duration_s = estimate_seconds(spec, gateways, plan)
        on_plan(result)
    if plan.run_id is None:
        return result
    _checkpoint(db)
    if not dispatch:
        return result
    result.report = engine.send_run(db, spec, plan.run_id, gateways, clock=clock,
                                    override_window=override_window, progress=progress,
                                    stop_event=stop_event)
    return result


def _checkpoint(db: Database) -> None:
    """The import and run creation were one transaction: its log is written into the database
    before sending (:meth:`Database.checkpoint`); a busy database only leaves it to the
    automatic checkpoints."""
    try:
        db.checkpoint()
    except OperationalError as exc:
        log.info("WAL checkpoint after the run's creation not done now (%s)", exc)


def _interruptible(progress: Callable[[int], None] | None,
                   stop_event: threading.Event | None) -> Callable[[int], None] | None:
    """An import progress callback that aborts the import (KeyboardInterrupt, the transaction
    rolled back) once ``stop_event`` is set."""
    if stop_event is None:
        return progress

    def check(rows: int) -> None:
        if stop_event.is_set():
            raise KeyboardInterrupt
        if progress is not None:
            progress(rows)

    return check


def _district_by_file(spec: CampaignSpec) -> dict[str, str]:
    return dict(spec.district_by_file)


def find_run(db: Database, campaign_id: str, run_id: int | None = None) -> Run:
    with db.engine.connect() as conn:
        if run_id is not None:
            run = runs.get_run(conn, run_id)
            if run is None or run.campaign_id != campaign_id:
                raise OperatorError(_("campaign {id} has no run #{run}").format(
                    id=campaign_id, run=run_id))
            return run
        run = runs.active_run(conn, campaign_id)
        if run is None:
            last = conn.execute(select(Run.id, Run.status).where(Run.campaign_id == campaign_id)
                                .order_by(Run.id.desc())).first()
            if last is None:
                raise OperatorError(_("campaign {id} has never been launched (`outreach "
                                      "campaign launch {id}`)").format(id=campaign_id))
            raise OperatorError(_("campaign {id} has no unfinished run (last: #{run}, "
                                  "{status})").format(id=campaign_id, run=last.id,
                                                      status=_(last.status)))
        return run


def resume(db: Database, spec: CampaignSpec, *, gateway: str | None = None,
           override_window: bool = False, allow_late: bool = False, operator: str | None = None,
           clock: Clock = SYSTEM_CLOCK, run_id: int | None = None,
           gateway_options: dict[str, Any] | None = None,
           progress: Callable[[int, int], None] | None = None,
           stop_event: threading.Event | None = None,
           gateways: dict[str, gwbase.Gateway] | None = None) -> RunReport:
    """Continue an unfinished run: interrupted sends are reconciled first, never resent blindly.

    With no unfinished run, the latest finished run whose deliveries have an unknown outcome is
    reconciled (a completed run is not a dead end): what the gateway confirms is recorded, what
    it certainly never received is requeued and the run reopened and sent. Raises
    OperatorError when there is nothing to resume."""
    try:
        run = find_run(db, spec.id, run_id)
    except OperatorError:
        run = _finished_with_unknown(db, spec.id) if run_id is None else None
        if run is None:
            raise
    engine.check_text(run, spec)
    names = run_gateway_names(run.options, spec, gateway)
    if gateways is None:
        gateways = build_gateways(names, db, clock, **(gateway_options or {}))
    now = clock.now()
    found: reconcile.Reconciled | None = None
    if run.status == runstates.COMPLETED:
        found = reconcile.recover(db, spec, run.id, gateways, clock=clock)
        with db.engine.begin() as conn:
            audit.record(conn, "resume", operator=operator, campaign_id=spec.id,
                         text_sha256=spec.text_sha256, now=now,
                         details={"run_id": run.id, "reconciled": dict(found)})
            if not found["requeued"] or not runstates.move(
                    conn, run.id, runstates.PAUSED, "reconciled deliveries requeued",
                    now=now, only_from=(runstates.COMPLETED,)):
                rep = RunReport(run_id=run.id, reconciled=found,
                                counts=runs.remaining(conn, run.id))
                return rep
    with db.engine.begin() as conn:
        from outreach.sending.approvals import require_approval  # maker–checker
        require_approval(conn, spec, gateways, operator=operator, now=now, action="resume")
        runstates.move(conn, run.id, runstates.RUNNING if run.started_at else runstates.CREATED,
                       None, now=now)
        audit.record(conn, "resume", operator=operator, campaign_id=spec.id,
                     text_sha256=spec.text_sha256, now=now,
                     details={"run_id": run.id, "override_window": override_window,
                              "allow_late": allow_late})
    rep = engine.send_run(db, spec, run.id, gateways, clock=clock,
                          override_window=override_window, allow_late=allow_late,
                          progress=progress, stop_event=stop_event)
    if found is not None:  # what the reconciliation of the completed run found comes first
        for k, v in rep.reconciled.items():
            found[k] = found.get(k, 0) + v if k != "still_unknown" else v
        found["deferred"] = rep.reconciled.get("deferred", 0)
        found.decide_after = getattr(rep.reconciled, "decide_after", None)
        rep.reconciled = found
    return rep


def _finished_with_unknown(db: Database, campaign_id: str) -> Run | None:
    """The latest completed run of the campaign that still has deliveries of unknown outcome."""
    with db.engine.connect() as conn:
        rid = conn.execute(select(Run.id).where(
            Run.campaign_id == campaign_id, Run.status == runstates.COMPLETED,
            select(Delivery.id).where(Delivery.run_id == Run.id,
                                      Delivery.status == states.UNKNOWN).exists())
            .order_by(Run.id.desc()).limit(1)).scalar()
        return runs.get_run(conn, rid) if rid is not None else None


@retry_write
def set_run_state(db: Database, campaign_id: str, action: str, *, operator: str | None = None,
                  now: dt.datetime | None = None, text_sha256: str | None = None) -> Run:
    """``pause`` (a running dispatcher stops after its current batch) or ``cancel`` (queued
    deliveries become ``skipped`` with reason ``cancelled``)."""
    now = now or dt.datetime.now(dt.timezone.utc)
    run = find_run(db, campaign_id)
    with db.engine.begin() as conn:
        if action == "pause":
            runstates.move(conn, run.id, runstates.PAUSED,
                           (_("paused by {operator}").format(operator=operator) if operator
                            else _("paused by the operator")), now=now)
        elif action == "cancel":
            ids = conn.execute(select(Delivery.id).where(Delivery.run_id == run.id,
                                                         Delivery.status == states.QUEUED)).scalars().all()
            states.apply(conn, [states.Change(i, states.SKIPPED, {"error_reason": "cancelled"})
                                for i in ids], source="operator", now=now)
            runstates.move(conn, run.id, runstates.CANCELLED,
                           (_("cancelled by {operator}").format(operator=operator) if operator
                            else _("cancelled by the operator")), now=now)
        else:
            raise ValueError(action)
        audit.record(conn, action, operator=operator, campaign_id=campaign_id,
                     text_sha256=text_sha256, now=now, details={"run_id": run.id})
    return run


def resend(db: Database, spec: CampaignSpec, *, statuses: tuple[str, ...] = (
               states.FAILED, states.UNDELIVERED),
           gateway: str | None = None, operator: str | None = None, clock: Clock = SYSTEM_CLOCK,
           override_window: bool = False, gateway_options: dict[str, Any] | None = None,
           progress: Callable[[int, int], None] | None = None,
           gateways: dict[str, gwbase.Gateway] | None = None) -> LaunchResult:
    """A new run only for recipients whose latest delivery ended in ``statuses`` (the CLI's
    ``--failed`` adds ``skipped``: a cancelled run, an operator's skip) — never anyone delivered, sent,
    opted out or still in flight)."""
    now = clock.now()
    names = gateway_names_for(spec, gateway)
    if gateways is None:
        gateways = build_gateways(names, db, clock, **(gateway_options or {}))
    note = check_window(spec, gateways, now, override_window)
    advice = limits.check_campaign(spec, gateways).advice
    checker = limits.recipient_checker(spec, gateways)
    with db.engine.begin() as conn:
        runs.sync_campaign(conn, spec, now=now)
        from outreach.sending.approvals import require_approval  # maker–checker
        require_approval(conn, spec, gateways, operator=operator, now=now, action="resend")
        active = runs.active_run(conn, spec.id)
        if active is not None:
            raise OperatorError(_(
                "campaign {id} has unfinished run #{run} ({status}); resume or cancel it "
                "before a resend").format(id=spec.id, run=active.id, status=_(active.status)))
        plan = runs.create_run(conn, spec, kind="resend", gateway_names=names, now=now,
                               run_key=f"resend:{now.isoformat()}", operator=operator,
                               resend_statuses=statuses, check=checker)
        audit.record(conn, "resend", operator=operator, campaign_id=spec.id,
                     text_sha256=spec.text_sha256, now=now,
                     details={"run_id": plan.run_id, "statuses": list(statuses),
                              "deliveries": plan.created})
    result = LaunchResult(spec.id, names, False, note, None, plan, advice=advice)
    if plan.run_id is None:
        result.nothing_new = True
        return result
    result.report = engine.send_run(db, spec, plan.run_id, gateways, clock=clock,
                                    override_window=override_window, progress=progress)
    return result


def today(clock: Clock = SYSTEM_CLOCK) -> dt.date:
    return vn_today(clock.now())
