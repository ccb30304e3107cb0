"""Scheduled daily sends: fire times in Vietnam's time, one run per campaign per day, missed days.

Everything here is driven by an explicit clock and the database, never by the server's time
zone or by what an in-memory scheduler remembers, so a restart or a second scheduler process on
the same database changes nothing:

* :func:`fire_times` / :func:`firings`: the daily sends of a campaign as aware UTC instants.
* :func:`due_runs`: which firings are owed at an instant, and which are missed (pure).
* :func:`tick`: the one function a scheduler process calls (every poll and at each firing):
  continues earlier runs, records missed days, creates today's run exactly once and sends it
  with the same send engine as a manual launch (:func:`outreach.sending.engine.send_run`).
* :func:`register`, :func:`set_paused`, :func:`remove`, :func:`list_schedules`: the
  ``outreach schedule`` commands.

Exactly once a day comes from the database: a scheduled run's ``run_key`` is
``day:YYYY-MM-DD`` (the campaign's local date, Asia/Ho_Chi_Minh) under the unique constraint
``(campaign_id, run_key)`` of :class:`~outreach.ledger.models.Run`.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError, OperationalError

from outreach.input import campaigns, recipients
from outreach.ledger import runs, runstates, states
from outreach.reporting import audit
from outreach.i18n import N_, _, number
from outreach.i18n import day as show_day
from outreach.sending import engine, leases, limits, reasons
from outreach.input.campaigns import CampaignError, CampaignSpec
from outreach.clock import SYSTEM_CLOCK, UTC, VN_TZ, Clock
from outreach.ledger.db import Database, is_locked_error, retry_write
from outreach.sending.engine import INTERRUPTED_REASON, RunReport
from outreach.gateways import GatewayCache, gateway_names_for, run_gateway_names
from outreach.gateways import base as gwbase
from outreach.input.listfiles import ListFileError
from outreach.ledger.models import AuditEntry, Campaign, Delivery, Run, Schedule
from outreach.sending.ops import OperatorError
from outreach.sending.reconcile import stale_sending

log = logging.getLogger(__name__)

#: A ``running`` run with no live sender and no delivery activity for this long (seconds) was
#: left by a crashed process and is continued: five delivery leases, so a sender on another
#: host that is only slow (a long Retry-After) is never taken for dead.
ABANDONED_AFTER_SECONDS = 5 * leases.LEASE_SECONDS

#: ``gateways_factory(names)``: channel -> gateway name in, channel -> gateway instance out.
GatewaysFactory = Callable[[dict[str, str]], dict[str, gwbase.Gateway]]


# -- fire times (pure) -----------------------------------------------------------------------
@dataclass(frozen=True)
class Firing:
    """One daily send: ``day`` is the campaign's local calendar date (Asia/Ho_Chi_Minh),
    ``at`` the aware UTC instant of ``schedule.send_time`` on that day, ``key_date`` True on a
    key date of the plan (30 July)."""

    day: dt.date
    at: dt.datetime
    key_date: bool = False

    @property
    def run_key(self) -> str:
        """The unique key of the day's run: ``day:YYYY-MM-DD``."""
        return day_key(self.day)


def day_key(day: dt.date) -> str:
    """``day:YYYY-MM-DD``: the run key of a scheduled run (unique per campaign)."""
    return f"day:{day.isoformat()}"


def _aware(name: str, value: dt.datetime | None) -> None:
    if value is not None and value.tzinfo is None:
        raise ValueError(f"{name} must be an aware datetime (got a naive one: {value})")


def firings(spec: CampaignSpec, start: dt.datetime | None = None,
            end: dt.datetime | None = None) -> list[Firing]:
    """Every daily send of ``spec`` whose instant is within ``[start, end]`` (both aware, both
    optional), in order.

    The days are every date from ``window.start_date`` to ``window.end_date`` plus the
    ``window.key_dates`` (the parser keeps key dates inside the window, so they add a marker,
    not a day). The time is ``schedule.send_time`` in ``window.timezone`` (Asia/Ho_Chi_Minh,
    which has no daylight saving time); the instant is computed from the zone database, never
    from the server's local time zone (``TZ``), so a server in America/Los_Angeles still fires
    a daily 08:00 campaign at 01:00 UTC on both sides of the US clock change. For a ``repeat``
    campaign every day fires too; :func:`outreach.ledger.runs.create_run` picks whose turn it is.
    Raises ValueError for a naive ``start`` or ``end``.
    """
    _aware("start", start)
    _aware("end", end)
    w = spec.window
    days = {w.start_date + dt.timedelta(days=i) for i in range((w.end_date - w.start_date).days + 1)}
    days |= set(w.key_dates)
    keys = set(w.key_dates)
    out: list[Firing] = []
    for day in sorted(days):
        at = dt.datetime.combine(day, spec.schedule.send_time, tzinfo=w.tz).astimezone(UTC)
        if (start is not None and at < start) or (end is not None and at > end):
            continue
        out.append(Firing(day, at, day in keys))
    return out


def fire_times(spec: CampaignSpec, start: dt.datetime | None = None,
               end: dt.datetime | None = None) -> list[dt.datetime]:
    """The aware UTC instants of :func:`firings` (e.g. 92 instants at 01:00 UTC for a daily
    08:00 campaign from 1 July to 30 September)."""
    return [f.at for f in firings(spec, start, end)]


def next_firing(spec: CampaignSpec, now: dt.datetime) -> Firing | None:
    """The first firing strictly after ``now``, or None once the campaign's last day has fired."""
    later = firings(spec, now + dt.timedelta(microseconds=1))
    return later[0] if later else None


@dataclass(frozen=True)
class Due:
    """A firing that needs action: ``action`` is ``run`` (create the day's run now) or
    ``missed`` (record the day as missed, send nothing); ``late_by`` is ``now - firing.at``."""

    firing: Firing
    action: str
    late_by: dt.timedelta
    reason: str | None = None


def due_runs(spec: CampaignSpec, now: dt.datetime, *, existing: Collection[str] = (),
             since: dt.datetime | None = None) -> list[Due]:
    """The firings of ``spec`` that need action at ``now``, oldest first.

    ``existing`` holds the run keys the campaign already has (``day:YYYY-MM-DD``); ``since`` is
    when the schedule became active (added or resumed). A firing is owed if it fell after
    ``since`` minus the lateness limit (so a schedule added at 08:30 still sends that day's
    08:00 firing if the limit allows) and has no run yet. Rules (issue #8; RapidPro fails
    messages that waited too long, listmonk sent an 8 am campaign at 1 pm after a restore):

    * only the most recent owed firing may run, and only if ``now - at`` is within
      ``window.lateness_limit_minutes``;
    * every other owed firing is ``missed``: past the limit, or superseded by a later day, so
      several missed days never burst into several runs.
    """
    _aware("now", now)
    _aware("since", since)
    limit = dt.timedelta(minutes=spec.window.lateness_limit_minutes)
    past = firings(spec, since - limit if since is not None else None, now)
    if not past:
        return []
    latest = past[-1]
    tz = spec.window.tz
    out: list[Due] = []
    for f in past:
        if f.run_key in existing:
            continue
        late = now - f.at
        if f is latest and late <= limit:
            out.append(Due(f, "run", late))
        elif late > limit:
            out.append(Due(f, "missed", late, reasons.english(
                N_("not sent: due at {due} {tz}, no scheduler started it within the lateness "
                   "limit of {limit} min (found {late} min late)"),
                due=reasons.local_stamp(f.at, tz), tz=spec.window.timezone,
                limit=spec.window.lateness_limit_minutes, late=_minutes(late))))
        else:
            out.append(Due(f, "missed", late, reasons.english(
                N_("not sent: the firing of {day} came before this day's run started; missed "
                   "days are never sent in a burst"), day=latest.day.isoformat())))
    return out


def _minutes(delta: dt.timedelta) -> int:
    return int(delta.total_seconds() // 60)


def cron_trigger(spec: CampaignSpec) -> Any:
    """An APScheduler 3 ``CronTrigger`` at ``schedule.send_time`` every day of the window, with
    the campaign's time zone set explicitly (never the server's). The days it yields are those
    of :func:`firings`."""
    from apscheduler.triggers.cron import CronTrigger

    w = spec.window
    return CronTrigger(hour=spec.schedule.send_time.hour, minute=spec.schedule.send_time.minute,
                       second=0, timezone=w.tz,
                       start_date=dt.datetime.combine(w.start_date, dt.time(0), tzinfo=w.tz),
                       end_date=dt.datetime.combine(w.end_date, dt.time(23, 59, 59), tzinfo=w.tz))


# -- the tick --------------------------------------------------------------------------------
#: What :meth:`TickResult.describe` shows for each action (translated when shown).
TICK_ACTIONS = {"created": N_("created"), "taken": N_("taken by another process"),
                "nothing-to-send": N_("nothing to send"), "missed": N_("missed"),
                "continued": N_("continued"), "closed": N_("closed"), "error": N_("error")}

@dataclass
class TickResult:
    """What one :func:`tick` did for one campaign.

    ``action``: ``created`` (this process created the day's run and sent it), ``taken``
    (another scheduler process created it first; nothing done), ``nothing-to-send`` (the day is
    recorded as a completed run without deliveries), ``missed`` (the day is recorded as
    missed), ``continued`` (an earlier run was continued), ``closed`` (an earlier day's run of
    a ``repeat`` campaign was closed), ``error`` (``detail`` says why; retried next tick).
    """

    campaign_id: str
    action: str
    day: dt.date | None = None
    run_id: int | None = None
    report: RunReport | None = None
    detail: str | None = None

    def describe(self) -> str:
        """One line for the operator: campaign, day, run, what happened, delivery counts."""
        from outreach.i18n import when

        parts = [self.campaign_id]
        if self.day:
            parts.append(show_day(self.day))
        if self.run_id:
            parts.append(_("run #{id}").format(id=self.run_id))
        text = " ".join(parts) + ": " + _(TICK_ACTIONS.get(self.action, self.action))
        if self.report is not None:
            counts = {k: v for k, v in sorted(self.report.counts.items()) if v}
            text += " — " + (", ".join(f"{_(k)} {number(v)}" for k, v in counts.items())
                             or _("no deliveries"))
            if self.report.stopped:
                text += _("; stopped ({kind}): {reason}").format(
                    kind=_(self.report.stopped), reason=reasons.run_reason(self.report.reason))
                if self.report.resume_at:
                    text += _(", continues after {time}").format(
                        time=when(self.report.resume_at))
        if self.detail:
            text += f" ({reasons.run_reason(self.detail)})"
        return text


def tick(db: Database, clock: Clock = SYSTEM_CLOCK, *, gateways_factory: GatewaysFactory | None = None,
         now: dt.datetime | None = None, gateway: str | None = None, operator: str | None = None,
         stop_event: threading.Event | None = None,
         campaign_ids: Collection[str] | None = None) -> list[TickResult]:
    """Do, for every registered and not paused schedule, whatever the database says is due.

    Per campaign, reloading the campaign file stored in ``campaigns.file_path``:

    1. earlier scheduled runs are continued when their reason to stop is gone: ``waiting`` for
       the send window or the daily cap (window open again, new day), paused by an interrupt
       (SIGTERM), ``created`` but never dispatched, or ``running`` with a crashed dispatcher
       (no live owner and no activity for :data:`ABANDONED_AFTER_SECONDS`). Interrupted sends
       are reconciled by the dispatcher, never resent blindly. In a ``repeat`` campaign an
       earlier day's run is closed instead (its queued deliveries become ``skipped``), so
       nobody gets two days' messages on one day;
    2. missed days (:func:`due_runs`) are recorded as runs with status ``missed``;
    3. today's firing, when due and within the lateness limit: the campaign's lists are
       imported as a launch does, the run ``day:YYYY-MM-DD`` is created with its deliveries in
       one transaction (a second process gets the unique key's IntegrityError and does nothing)
       and sent by the same Dispatcher as a manual launch (rate limits, send window, lateness,
       daily cap, crash safety). ``schedule.daily_cap`` limits the new deliveries, less those
       still queued from earlier runs; recipients who already had a delivery of this campaign
       sent today (Asia/Ho_Chi_Minh) are ``skipped`` (``already-sent-today``).

    ``now`` (aware, default ``clock.now()``) is the instant decisions are made at; the
    dispatcher keeps time with ``clock``. ``gateways_factory`` builds the gateways (default:
    :func:`outreach.gateways.build_gateways`); ``gateway`` overrides every channel's gateway name;
    ``stop_event`` stops between campaigns and inside a dispatch (in-flight sends finish and are
    recorded). Errors of one campaign (file, list, text changed, gateway configuration, busy
    database) become a ``TickResult`` with action ``error``; other campaigns go on.
    """
    now = now or clock.now()
    _aware("now", now)
    with db.engine.connect() as conn:
        scheds = conn.execute(select(Schedule.campaign_id, Schedule.paused, Schedule.updated_at)
                              .order_by(Schedule.campaign_id)).all()
    results: list[TickResult] = []
    cache = GatewayCache(db, factory=gateways_factory)
    gateways_for = cache.get

    try:
        for s in scheds:
            if s.paused or (campaign_ids is not None and s.campaign_id not in campaign_ids):
                continue
            if stop_event is not None and stop_event.is_set():
                break
            try:
                results.extend(_tick_campaign(db, clock, now, s.campaign_id, s.updated_at,
                                              gateways_for, gateway, operator, stop_event))
            except (CampaignError, runs.RunError, OperatorError, gwbase.GatewayError,
                    ListFileError, OSError) as exc:
                results.append(TickResult(s.campaign_id, "error", detail=str(exc)))
            except OperationalError as exc:
                if not is_locked_error(exc):
                    raise
                results.append(TickResult(s.campaign_id, "error", detail=N_(
                    "database busy; tried again at the next tick")))
            except Exception as exc:  # a bug must not stop the other campaigns or the process
                log.debug("tick of %s failed", s.campaign_id, exc_info=True)
                results.append(TickResult(s.campaign_id, "error",
                                          detail=reasons.english(
                                              N_("internal error: {kind}: {error}"),
                                              kind=type(exc).__name__, error=exc)))
    finally:
        cache.close()
    for r in results:  # INFO: the command line prints each result for the operator itself
        log.info("scheduler: %s", r.describe())
    return results


def _tick_campaign(db: Database, clock: Clock, now: dt.datetime, cid: str,
                   active_since: dt.datetime, gateways_for: GatewaysFactory, gateway: str | None,
                   operator: str | None, stop_event: threading.Event | None) -> list[TickResult]:
    spec = load_scheduled_spec(db, cid)
    out: list[TickResult] = []
    out.extend(_continue_earlier(db, clock, now, spec, gateways_for, gateway, stop_event))
    if stop_event is not None and stop_event.is_set():
        return out
    with db.engine.connect() as conn:
        existing = set(conn.execute(select(Run.run_key).where(
            Run.campaign_id == cid, Run.run_key.like("day:%"))).scalars())
    names = gateway_names_for(spec, gateway)
    for due in due_runs(spec, now, existing=existing, since=active_since):
        if due.action == "missed":
            out.append(_record_missed(db, spec, due, names, now, operator))
            continue
        # a personalised message the provider would refuse is skipped with the reason; the
        # gateways are built only if a personalised row needs asking (after the approval check)
        checker: list[limits.RecipientChecker] = []

        def check(channel: str, body: str, data: Any) -> str | None:
            if not checker:
                checker.append(limits.recipient_checker(spec, gateways_for(names),
                                                        tolerant=True))
            return checker[0](channel, body, data)

        res = _create_day_run(db, spec, due, names, now, operator, check=check)
        out.append(res)
        if res.action == "created" and res.run_id is not None:
            res.report = _claim_and_dispatch(db, clock, now, spec, res.run_id, runstates.CREATED,
                                             gateways_for(names), stop_event)
            if res.report is None:
                res.detail = N_("sent by another scheduler process")
    return out


# -- loading the campaign a schedule points at -------------------------------------------------
def load_scheduled_spec(db: Database, campaign_id: str) -> CampaignSpec:
    """The campaign file of a scheduled campaign, loaded and validated again.

    The path is ``campaigns.file_path`` (absolute when the schedule was added); if that file no
    longer exists (e.g. a later manual launch stored a path relative to another directory), the
    absolute path recorded by the latest ``schedule`` audit entry is used. Raises
    :class:`~outreach.input.campaigns.CampaignError` when neither exists, the file is invalid, or it
    now defines another campaign id.
    """
    with db.engine.connect() as conn:
        stored = conn.execute(select(Campaign.file_path).where(Campaign.id == campaign_id)).scalar()
        registered = None
        for details in conn.execute(select(AuditEntry.details).where(
                AuditEntry.action == "schedule", AuditEntry.campaign_id == campaign_id)
                .order_by(AuditEntry.id.desc()).limit(20)).scalars():
            if isinstance(details, dict) and details.get("file"):
                registered = details["file"]
                break
    candidates = [p for p in (stored, registered) if p]
    for p in candidates:
        if Path(p).is_file():
            spec = campaigns.load(Path(p).resolve())  # stored absolute by the next sync
            if spec.id != campaign_id:
                raise CampaignError(p, "id", f"now defines campaign {spec.id!r}, but the "
                                    f"schedule is for {campaign_id!r}")
            return spec
    raise CampaignError(candidates[0] if candidates else campaign_id, None, (
        f"the campaign file of scheduled campaign {campaign_id} was not found "
        f"(working directory {os.getcwd()}); register it again with "
        "`outreach schedule add <path to the campaign file>`"))


# -- creating a day's run exactly once ----------------------------------------------------------
def _run_id_by_key(conn: Connection, campaign_id: str, key: str) -> int | None:
    return conn.execute(select(Run.id).where(Run.campaign_id == campaign_id,
                                             Run.run_key == key)).scalar()


def _record_missed(db: Database, spec: CampaignSpec, due: Due, names: dict[str, str],
                   now: dt.datetime, operator: str | None) -> TickResult:
    f = due.firing
    try:
        with db.engine.begin() as conn:
            if _run_id_by_key(conn, spec.id, f.run_key) is not None:
                return TickResult(spec.id, "taken", f.day)
            run_id = conn.execute(insert(Run).values(
                campaign_id=spec.id, run_key=f.run_key, kind="scheduled", run_date=f.day,
                status=runstates.MISSED, status_reason=due.reason, gateway=names[spec.channels[0].channel],
                text_sha256=spec.text_sha256, due_at=f.at, created_at=now, finished_at=now,
                operator=operator, options={"gateways": names})).inserted_primary_key[0]
            audit.record(conn, "scheduled-run", operator=operator, campaign_id=spec.id,
                         text_sha256=spec.text_sha256, now=now,
                         details={"run_id": run_id, "day": f.day.isoformat(), "status": "missed",
                                  "late_minutes": _minutes(due.late_by)})
    except IntegrityError:
        return TickResult(spec.id, "taken", f.day)
    return TickResult(spec.id, "missed", f.day, run_id, detail=due.reason)


def _create_day_run(db: Database, spec: CampaignSpec, due: Due, names: dict[str, str],
                    now: dt.datetime, operator: str | None, *, check: Any = None) -> TickResult:
    """Import the lists and create the run ``day:<date>`` with its deliveries, all in one
    transaction: either the whole run exists or nothing does. A second scheduler process
    meets the unique key (or, on SQLite, waits for the write lock and then sees the row) and
    gets ``taken``."""
    f = due.firing
    try:
        with db.engine.connect() as conn, conn.begin():
            existing = _run_id_by_key(conn, spec.id, f.run_key)
            if existing is not None:
                return TickResult(spec.id, "taken", f.day, existing,
                                  detail=N_("another scheduler process created this day's run"))
            runs.sync_campaign(conn, spec, now=now)
            from outreach.sending.approvals import require_approval  # maker–checker
            require_approval(conn, spec, names, operator=operator, now=now, action="scheduled run")
            summary = recipients.import_into(
                conn, spec.list_files(), list_name=spec.list_name,
                district_by_file=dict(spec.district_by_file), operator=operator, now=now)
            cap = spec.schedule.daily_cap
            backlog, backlog_runs = _queued_elsewhere(conn, spec.id)
            plan: runs.RunPlan | None = None
            if cap and backlog >= cap:
                reason = reasons.english(
                    N_("nothing new today: {backlog} deliveries of run {runs} are still queued, "
                       "which fills the daily cap of {cap}"), backlog=backlog,
                    runs=", ".join(f"#{i}" for i in backlog_runs), cap=cap)
            else:
                plan = runs.create_run(conn, spec, kind="scheduled", gateway_names=names, now=now,
                                       run_key=f.run_key, due_at=f.at, operator=operator,
                                       daily_cap=(cap - backlog) if cap else None, run_date=f.day,
                                       check=check)
                queued_in = ", ".join(f"#{i}" for i in backlog_runs)
                if spec.schedule.mode == "repeat":
                    reason = reasons.english(
                        N_("nothing to send: every recipient was sent within the last {days} "
                           "days ({backlog} still queued in run {runs})") if backlog else
                        N_("nothing to send: every recipient was sent within the last {days} "
                           "days"), days=spec.schedule.repeat_every_days, backlog=backlog,
                        runs=queued_in)
                else:
                    reason = reasons.english(
                        N_("nothing to send: every recipient on the lists already has a "
                           "delivery ({backlog} still queued in run {runs})") if backlog else
                        N_("nothing to send: every recipient on the lists already has a "
                           "delivery"), backlog=backlog, runs=queued_in)
            skipped = 0
            if plan is not None and plan.run_id is not None:
                run_id = plan.run_id
                skipped = _skip_already_sent_today(conn, spec.id, run_id, now)
                status = "created"
                detail = reasons.english(
                    (N_("{created} deliveries, {deferred} left for later days by the daily cap, "
                        "{skipped} skipped: already sent today") if skipped else
                     N_("{created} deliveries, {deferred} left for later days by the daily cap"))
                    if plan.deferred_by_cap else
                    (N_("{created} deliveries, {skipped} skipped: already sent today") if skipped
                     else N_("{created} deliveries")),
                    created=plan.created, deferred=plan.deferred_by_cap, skipped=skipped)
            else:
                # create_run writes nothing when nobody needs a delivery; the day still gets
                # its record (and its unique key, so no other process tries again)
                run_id = conn.execute(insert(Run).values(
                    campaign_id=spec.id, run_key=f.run_key, kind="scheduled", run_date=f.day,
                    status=runstates.COMPLETED, status_reason=reason,
                    gateway=names[spec.channels[0].channel], text_sha256=spec.text_sha256,
                    due_at=f.at, created_at=now, started_at=now, finished_at=now,
                    operator=operator, options={"gateways": names})).inserted_primary_key[0]
                status, detail = "nothing-to-send", reason
            audit.record(conn, "scheduled-run", operator=operator, campaign_id=spec.id,
                         text_sha256=spec.text_sha256, now=now, details={
                             "run_id": run_id, "day": f.day.isoformat(), "status": status,
                             "due_at": f.at.isoformat(), "late_minutes": _minutes(due.late_by),
                             "gateways": names, "deliveries": plan.created if plan else 0,
                             "deferred_by_cap": plan.deferred_by_cap if plan else 0,
                             "skipped_already_sent_today": skipped,
                             "imported": summary.imported})
    except IntegrityError:
        with db.engine.connect() as conn:
            existing = _run_id_by_key(conn, spec.id, f.run_key)
        if existing is None:
            raise
        return TickResult(spec.id, "taken", f.day, existing,
                          detail=N_("another scheduler process created this day's run"))
    return TickResult(spec.id, status, f.day, run_id, detail=detail)


def _queued_elsewhere(conn: Connection, campaign_id: str) -> tuple[int, list[int]]:
    """Queued deliveries of the campaign in runs that will still send them (created, running,
    waiting), and those runs' ids."""
    rows = conn.execute(select(Delivery.run_id, func.count()).join(Run, Run.id == Delivery.run_id)
                        .where(Delivery.campaign_id == campaign_id,
                               Delivery.status == states.QUEUED,
                               Run.status.in_(runstates.WORKABLE))
                        .group_by(Delivery.run_id).order_by(Delivery.run_id)).all()
    return sum(n for _, n in rows), [r for r, _ in rows]


def _vn_day_bounds(now: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    day = now.astimezone(VN_TZ).date()
    start = dt.datetime.combine(day, dt.time(0), tzinfo=VN_TZ)
    return start, start + dt.timedelta(days=1)


def _skip_already_sent_today(conn: Connection, campaign_id: str, run_id: int,
                             now: dt.datetime) -> int:
    """Skip the run's queued deliveries to recipients who already had a delivery of this
    campaign sent today (Asia/Ho_Chi_Minh calendar day) or still in flight in another run:
    nobody gets the same campaign twice on one Vietnamese day (issue #8). Returns how many."""
    start, end = _vn_day_bounds(now)
    others = select(Delivery.recipient_id).where(
        Delivery.campaign_id == campaign_id, Delivery.run_id != run_id,
        or_(Delivery.sending_at.between(start, end - dt.timedelta(microseconds=1)),
            Delivery.status == states.SENDING))
    ids = conn.execute(select(Delivery.id).where(
        Delivery.run_id == run_id, Delivery.status == states.QUEUED,
        Delivery.recipient_id.in_(others))).scalars().all()
    if ids:
        states.apply(conn, [states.Change(i, states.SKIPPED, {"error_reason": "already-sent-today"},
                                          detail="this recipient already had this campaign "
                                                 "today (Asia/Ho_Chi_Minh)") for i in ids],
                     source="scheduler", now=now)
    return len(ids)


# -- continuing earlier runs --------------------------------------------------------------------
def _abandoned(conn: Connection, run: Any, now: dt.datetime) -> bool:
    """A ``running`` run nobody is sending: its claiming scheduler is not a live process, none
    of its ``sending`` deliveries has a live owner, and nothing happened to it for
    :data:`ABANDONED_AFTER_SECONDS` (a manual ``campaign resume`` on another host stays safe)."""
    marker = (run.options or {}).get("dispatcher") or {}
    if leases.alive(marker.get("owner")):
        return False
    sending = conn.execute(select(func.count()).select_from(Delivery).where(
        Delivery.run_id == run.id, Delivery.status == states.SENDING)).scalar_one()
    if sending and stale_sending(conn, run.id, now) < sending:
        return False
    times = [run.created_at, run.started_at]
    times.append(conn.execute(select(func.max(Delivery.updated_at))
                              .where(Delivery.run_id == run.id)).scalar())
    claimed = marker.get("claimed_at")
    if claimed:
        times.append(dt.datetime.fromisoformat(claimed))
    last = max(t for t in times if t is not None)
    return (now - last).total_seconds() >= ABANDONED_AFTER_SECONDS


def _continuable(conn: Connection, spec: CampaignSpec, run: Any, now: dt.datetime,
                 reaches_phones: bool) -> bool:
    if run.status == runstates.CREATED:
        return True
    if run.status == runstates.PAUSED:
        return run.status_reason == INTERRUPTED_REASON
    if run.status == runstates.WAITING:
        if (run.status_reason or "").startswith("awaiting delivery receipts"):
            return True  # the dispatcher knows when the fallback wait ends
        if reaches_phones and not spec.window.is_open(now):
            return False
        cap = spec.schedule.daily_cap
        return not (cap and runs.sent_today(conn, spec.id, now) >= cap)
    if run.status == runstates.RUNNING:
        return _abandoned(conn, run, now)
    return False


def _continue_earlier(db: Database, clock: Clock, now: dt.datetime, spec: CampaignSpec,
                      gateways_for: GatewaysFactory, gateway: str | None,
                      stop_event: threading.Event | None) -> list[TickResult]:
    out: list[TickResult] = []
    today = now.astimezone(spec.window.tz).date()
    with db.engine.connect() as conn:
        active = conn.execute(select(Run.__table__).where(
            Run.campaign_id == spec.id, Run.kind == "scheduled",
            Run.status.in_(runstates.WORKABLE + (runstates.PAUSED,)))
            .order_by(Run.id)).all()
    for run in active:
        if stop_event is not None and stop_event.is_set():
            break
        if run.status == runstates.PAUSED and run.status_reason != INTERRUPTED_REASON:
            continue  # paused by the operator or by a gateway error: theirs to resume
        gws = gateways_for(run_gateway_names(run.options, spec, gateway))
        reaches = any(g.reaches_phones for g in gws.values())
        with db.engine.connect() as conn:
            ok = _continuable(conn, spec, run, now, reaches)
        if not ok:
            continue
        try:
            engine.check_text(run, spec)
        except runs.RunError as exc:
            out.append(TickResult(spec.id, "error", run.run_date, run.id, detail=str(exc)))
            continue
        if spec.schedule.mode == "repeat" and run.run_date < today:
            closed = _close_past_repeat_run(db, spec, run, now)
            if closed is not None:
                out.append(TickResult(spec.id, "closed", run.run_date, run.id, detail=closed))
            continue
        rep = _claim_and_dispatch(db, clock, now, spec, run.id, run.status, gws, stop_event)
        if rep is not None:
            out.append(TickResult(spec.id, "continued", run.run_date, run.id, report=rep))
    return out


@retry_write
def _close_past_repeat_run(db: Database, spec: CampaignSpec, run: Any,
                           now: dt.datetime) -> str | None:
    """A repeat campaign's run whose day has passed is closed, not sent on a later day."""
    reason = reasons.english(
        N_("closed: its day {day} has passed; a repeat campaign sends each day's run on its own "
           "day only"), day=run.run_date.isoformat())
    with db.engine.begin() as conn:
        moved = runstates.move(conn, run.id, runstates.COMPLETED, reason, now=now,
                               only_from=(run.status,))
        if not moved:
            return None
        ids = conn.execute(select(Delivery.id).where(Delivery.run_id == run.id,
                                                     Delivery.status == states.QUEUED)).scalars().all()
        states.apply(conn, [states.Change(i, states.SKIPPED, {"error_reason": "day-passed"},
                                          detail=reason) for i in ids],
                     source="scheduler", now=now)
    return reasons.english(N_("{skipped} queued deliveries skipped; {reason}"),
                           skipped=len(ids), reason=reason)


# -- claiming and dispatching -------------------------------------------------------------------
@retry_write
def _claim(db: Database, run_id: int, expected: str, owner: str, now: dt.datetime) -> bool:
    """Hand the run to this process, atomically: only one process wins (a guarded UPDATE of
    the status; SQLite runs it under BEGIN IMMEDIATE, PostgreSQL under a row lock). The winner's
    owner id is stored in ``runs.options["dispatcher"]`` so others can tell it is alive."""
    with db.engine.begin() as conn:
        stmt = select(Run.status, Run.status_reason, Run.options).where(Run.id == run_id)
        if conn.dialect.name == "postgresql":
            stmt = stmt.with_for_update()
        cur = conn.execute(stmt).first()
        if cur is None or cur.status != expected:
            return False
        if expected == runstates.PAUSED and cur.status_reason != INTERRUPTED_REASON:
            return False  # the operator paused it meanwhile
        if expected == runstates.RUNNING:
            row = conn.execute(select(Run.__table__).where(Run.id == run_id)).first()
            if not _abandoned(conn, row, now):
                return False
        opts = dict(cur.options or {})
        opts["dispatcher"] = {"owner": owner, "claimed_at": now.isoformat()}
        return runstates.move(conn, run_id, runstates.RUNNING, f"dispatching ({owner})",
                              now=now, only_from=(expected,), values={"options": opts})


def _claim_and_dispatch(db: Database, clock: Clock, now: dt.datetime, spec: CampaignSpec,
                        run_id: int, expected: str, gws: dict[str, gwbase.Gateway],
                        stop_event: threading.Event | None) -> RunReport | None:
    """Claim the run (None if another process has it) and send it with the send engine."""
    lease = leases.Lease(db, clock=clock)
    try:
        if not _claim(db, run_id, expected, lease.owner, now):
            return None
        try:
            rep = engine.send_run(db, spec, run_id, gws, clock=clock, stop_event=stop_event,
                                  lease=lease)
        except BaseException as exc:
            _pause_after_error(db, run_id, exc, clock.now())
            raise
        _complete_if_drained(db, spec, rep, clock.now())
        return rep
    finally:
        lease.stop()
        leases.release_owner(lease.owner)


def _pause_after_error(db: Database, run_id: int, exc: BaseException, now: dt.datetime) -> None:
    """A dispatcher that died of an unexpected error leaves its run paused with the reason,
    for the operator, instead of ``running`` with nobody behind it."""
    try:
        with db.engine.begin() as conn:
            runstates.move(conn, run_id, runstates.PAUSED, reasons.english(
                N_("scheduler error: {error}; fix the cause, then `outreach campaign resume`"),
                error=f"{type(exc).__name__}: {exc}"), now=now, only_from=(runstates.RUNNING,))
    except Exception:  # the original error is the one to report
        log.debug("could not record the error on run %s", run_id, exc_info=True)


def _complete_if_drained(db: Database, spec: CampaignSpec, rep: RunReport,
                         now: dt.datetime) -> None:
    """The dispatcher checks the daily cap before looking at the queue, so a day's run whose
    last delivery reached the cap is left ``waiting``; with nothing queued (and no fallback
    channel to plan) it is complete."""
    if rep.stopped != "daily-cap" or len(spec.channels) != 1:
        return
    with db.engine.begin() as conn:
        counts = runs.remaining(conn, rep.run_id)
        if counts.get(states.QUEUED) or counts.get(states.SENDING):
            return
        runstates.move(conn, rep.run_id, runstates.COMPLETED,
                       runstates.unknown_reason(counts.get(states.UNKNOWN, 0)), now=now)
    rep.stopped = rep.reason = rep.resume_at = None


# -- registered schedules (outreach schedule ...) -------------------------------------------------
@dataclass
class ScheduleInfo:
    """A registered schedule for ``outreach schedule list``: times are aware (UTC)."""

    campaign_id: str
    name: str
    paused: bool
    active_since: dt.datetime
    file: str | None
    send_time: dt.time | None = None
    timezone: str | None = None
    start_date: dt.date | None = None
    end_date: dt.date | None = None
    next_fire: dt.datetime | None = None
    last_run: dict[str, Any] | None = None
    error: str | None = None


def resolve_campaign_file(db: Database, ref: str) -> Path:
    """A campaign file from a path, an id (``campaigns/<id>.toml``) or the id of a campaign
    already in the database (its stored file path); absolute. Raises CampaignError."""
    try:
        return campaigns.resolve(ref).resolve()
    except CampaignError:
        with db.engine.connect() as conn:
            stored = conn.execute(select(Campaign.file_path).where(Campaign.id == ref)).scalar()
        if stored and Path(stored).is_file():
            return Path(stored).resolve()
        raise


def register(db: Database, spec: CampaignSpec, *, operator: str | None = None,
             now: dt.datetime | None = None) -> tuple[str, Firing | None]:
    """Register (or refresh) the daily schedule of a loaded campaign.

    Stores the campaign row (:func:`outreach.ledger.runs.sync_campaign`, which raises RunError if the
    text changed after sending), creates the ``schedules`` row (active from ``now``) or leaves
    an existing one as it is (paused stays paused), and writes a ``schedule`` audit entry with
    the absolute file path. Returns (``added``/``updated``, the next firing owed: possibly
    today's already-passed firing when it is still within the lateness limit). Raises
    OperatorError when the campaign has no firing left.
    """
    now = now or dt.datetime.now(UTC)
    limit = dt.timedelta(minutes=spec.window.lateness_limit_minutes)
    upcoming = firings(spec, now - limit)
    if not upcoming:
        raise OperatorError(_("campaign {id} ended on {date}: no daily send is left to "
                              "schedule").format(id=spec.id, date=show_day(spec.window.end_date)))
    file = str(Path(spec.file).resolve()) if spec.file else None
    with db.engine.begin() as conn:
        runs.sync_campaign(conn, spec, now=now)
        exists = conn.execute(select(Schedule.campaign_id).where(
            Schedule.campaign_id == spec.id)).first() is not None
        if not exists:
            conn.execute(insert(Schedule).values(campaign_id=spec.id, paused=False,
                                                 created_at=now, updated_at=now))
        action = "updated" if exists else "added"
        audit.record(conn, "schedule", operator=operator, campaign_id=spec.id,
                     text_sha256=spec.text_sha256, now=now, details={
                         "action": "update" if exists else "add", "file": file,
                         "send_time": spec.schedule.send_time.strftime("%H:%M"),
                         "timezone": spec.window.timezone,
                         "start_date": spec.window.start_date.isoformat(),
                         "end_date": spec.window.end_date.isoformat(),
                         "mode": spec.schedule.mode, "daily_cap": spec.schedule.daily_cap})
    return action, upcoming[0]


@retry_write
def set_paused(db: Database, campaign_id: str, paused: bool, *, operator: str | None = None,
               now: dt.datetime | None = None) -> bool:
    """Pause or resume a schedule; returns False when it already was. A paused schedule
    creates no run and continues none; the days it was paused are not recorded as missed
    (resuming makes the schedule active from ``now``). Raises OperatorError if not scheduled."""
    now = now or dt.datetime.now(UTC)
    with db.engine.begin() as conn:
        cur = conn.execute(select(Schedule.paused).where(Schedule.campaign_id == campaign_id)).first()
        if cur is None:
            raise OperatorError(_("campaign {id} has no schedule (see `outreach schedule "
                                  "list`)").format(id=campaign_id))
        if bool(cur.paused) == paused:
            return False
        conn.execute(update(Schedule).where(Schedule.campaign_id == campaign_id)
                     .values(paused=paused, updated_at=now))
        audit.record(conn, "schedule", operator=operator, campaign_id=campaign_id, now=now,
                     details={"action": "pause" if paused else "resume"})
    return True


@retry_write
def remove(db: Database, campaign_id: str, *, operator: str | None = None,
           now: dt.datetime | None = None) -> None:
    """Delete a schedule (its runs stay). Raises OperatorError if not scheduled."""
    now = now or dt.datetime.now(UTC)
    with db.engine.begin() as conn:
        gone = conn.execute(Schedule.__table__.delete().where(
            Schedule.campaign_id == campaign_id)).rowcount
        if not gone:
            raise OperatorError(_("campaign {id} has no schedule (see `outreach schedule "
                                  "list`)").format(id=campaign_id))
        audit.record(conn, "schedule", operator=operator, campaign_id=campaign_id, now=now,
                     details={"action": "remove"})


def list_schedules(db: Database, now: dt.datetime | None = None) -> list[ScheduleInfo]:
    """Every registered schedule with its next firing (from the campaign file, loaded again;
    a file that cannot be loaded is reported in ``error``) and its latest scheduled run."""
    now = now or dt.datetime.now(UTC)
    with db.engine.connect() as conn:
        rows = conn.execute(select(Schedule.campaign_id, Schedule.paused, Schedule.updated_at,
                                   Campaign.name, Campaign.file_path)
                            .join(Campaign, Campaign.id == Schedule.campaign_id)
                            .order_by(Schedule.campaign_id)).all()
        last = {}
        for r in rows:
            lr = conn.execute(select(Run.id, Run.run_date, Run.status, Run.status_reason)
                              .where(Run.campaign_id == r.campaign_id, Run.kind == "scheduled")
                              .order_by(Run.run_date.desc(), Run.id.desc()).limit(1)).first()
            last[r.campaign_id] = dict(lr._mapping) if lr else None
    out = []
    for r in rows:
        info = ScheduleInfo(r.campaign_id, r.name, bool(r.paused), r.updated_at, r.file_path,
                            last_run=last[r.campaign_id])
        try:
            spec = load_scheduled_spec(db, r.campaign_id)
        except CampaignError as exc:
            info.error = str(exc)
        else:
            info.file = spec.file
            info.send_time, info.timezone = spec.schedule.send_time, spec.window.timezone
            info.start_date, info.end_date = spec.window.start_date, spec.window.end_date
            nxt = next_firing(spec, now)
            info.next_fire = nxt.at if nxt else None
        out.append(info)
    return out


__all__ = ["Firing", "Due", "TickResult", "ScheduleInfo", "firings", "fire_times", "next_firing",
           "due_runs", "cron_trigger", "tick", "register", "set_paused", "remove",
           "list_schedules", "load_scheduled_spec", "resolve_campaign_file", "day_key",
           "INTERRUPTED_REASON", "ABANDONED_AFTER_SECONDS"]
