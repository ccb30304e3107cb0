"""The send engine: one run's claim → send → record step, shared by every way a run is sent.

A run is sent by one of three thin drivers, all through :class:`RunEngine`:

* the operator's ``campaign launch`` / ``resume`` / ``resend`` (:mod:`outreach.sending.ops`) and the
  scheduler's day run (:mod:`outreach.sending.scheduling`) call :func:`send_run`, which steps the
  engine until the run completes or stops;
* ``outreach worker`` (:mod:`outreach.sending.worker`) calls :meth:`RunEngine.step` once per pass for
  each active run, next to other workers on other machines.

Crash safety comes from the order of writes: a batch is marked ``sending`` under a lease
(:mod:`outreach.sending.leases`) and committed *before* any request leaves; outcomes are committed
after. A process killed in between leaves ``sending`` rows whose holder is gone:
:func:`outreach.sending.reconcile.recover` turns them into ``unknown`` and reconciles them with the
gateway, and nothing ``unknown`` is ever resent automatically.
"""

from __future__ import annotations

import datetime as dt
import logging
import sys
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, text

from outreach.ledger import runs, runstates, states
from outreach.i18n import N_, _
from outreach.sending import leases, ratelimit, reasons, reconcile
from outreach.input.campaigns import CampaignSpec
from outreach.clock import SYSTEM_CLOCK, Clock
from outreach.ledger.db import Database, retry_write
from outreach.gateways import base as gw
from outreach.ledger.models import SUPPRESSED_SQL, Delivery, Run
from outreach.sending.outcomes import LedgerWriter
from outreach.sending.sender import BatchSender

log = logging.getLogger(__name__)

#: The reason recorded when a run is stopped by its stop event (SIGTERM, Ctrl-C): such a run is
#: continued by the next scheduler tick; any other pause waits for the operator.
INTERRUPTED_REASON = N_("interrupted by the operator")


@dataclass(frozen=True)
class SendSettings:
    """How a run is sent (all optional). ``batch_size`` rows per claim (None: the gateways'
    :attr:`~outreach.gateways.base.Gateway.preferred_batch` when they all state one, else 500); ``max_attempts`` per
    message for transient errors (exponential backoff with jitter from ``backoff_initial`` to
    ``backoff_max`` seconds, never shorter than a Retry-After); the run pauses when more than
    ``error_rate_threshold`` of the last ``error_window`` sends failed; ``override_window``
    sends outside the send window; ``allow_late`` sends a scheduled run past its lateness
    limit; ``shared_rate`` takes the rate limit from the database (PostgreSQL workers);
    ``concurrency`` replaces every channel's requests in flight; ``record_deadline`` (seconds)
    keeps trying to record starts and outcomes through database errors that long before giving
    up (:class:`~outreach.sending.outcomes.RecordFailed`); ``lease_seconds`` is the lease of every claimed batch;
    ``pause_on_stop`` records the run as paused (:data:`INTERRUPTED_REASON`) when the stop
    event ends it — a worker leaves it to the other workers instead; ``pipeline`` lets the
    writer finish a batch's outcomes while the next batch is claimed and sent (a worker, which
    serves several runs in turn, records each batch before its step returns)."""

    batch_size: int | None = None
    max_attempts: int = 5
    override_window: bool = False
    allow_late: bool = False
    error_rate_threshold: float = 0.5
    error_window: int = 200
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    shared_rate: bool = False
    concurrency: int | None = None
    record_deadline: float | None = None
    lease_seconds: float = leases.LEASE_SECONDS
    pause_on_stop: bool = True
    pipeline: bool = True


@dataclass
class RunReport:
    """What sending a run did. ``stopped`` says why it returned early (``paused``,
    ``cancelled``, ``window``, ``late``, ``interrupted``, ``error-rate``, ``content``, ``gateway``,
    ``daily-cap``, ``awaiting-receipts``), None when the run completed; ``counts`` are the
    run's deliveries by status afterwards; ``reconciled`` what recovery found first."""

    run_id: int
    counts: dict[str, int] = field(default_factory=dict)
    stopped: str | None = None
    reason: str | None = None
    resume_at: dt.datetime | None = None
    reconciled: dict[str, int] = field(default_factory=dict)


@dataclass
class Step:
    """What one :meth:`RunEngine.step` did: ``outcomes`` of the batch sent (by kind);
    ``more`` True when the caller should step again at once; ``stopped``/``reason``/
    ``resume_at`` when the run stopped (see :class:`RunReport`); ``completed`` when this step
    completed the run."""

    outcomes: Counter[str] = field(default_factory=Counter)
    more: bool = False
    stopped: str | None = None
    reason: str | None = None
    resume_at: dt.datetime | None = None
    completed: bool = False

    @property
    def sent(self) -> int:
        return sum(self.outcomes.values())


_switching_lock = threading.Lock()
_switching_users = 0
_switching_saved = 0.005


def _fast_switching(on: bool) -> None:
    """A 1 ms GIL switch interval while at least one engine in this process is sending: the
    writer thread spends its time in SQLite with the GIL released and needs it back after each
    statement, and with Python's default 5 ms it waits behind the sending threads. The
    interval found before the first engine is restored after the last."""
    global _switching_users, _switching_saved
    with _switching_lock:
        if on:
            if _switching_users == 0:
                _switching_saved = sys.getswitchinterval()
                sys.setswitchinterval(min(_switching_saved, 0.001))
            _switching_users += 1
        else:
            _switching_users -= 1
            if _switching_users == 0:
                sys.setswitchinterval(_switching_saved)


class RunEngine:
    """Sends one run: ``gateways`` maps a channel (``sms``, ``zalo``) to a gateway instance.

    Rate per channel: the channel's ``rate_per_second`` (messages or segments per second, from
    the campaign file) or the gateway's default; ``concurrency`` requests in flight. A
    :class:`~outreach.gateways.base.StopRunError` or an error rate above the threshold pauses
    the run. The public step is :meth:`step`; :meth:`start` opens the run, :meth:`close`
    writes what is pending and releases the lease. Use as a context manager.
    """

    def __init__(self, db: Database, spec: CampaignSpec, run_id: int,
                 gateways: dict[str, gw.Gateway], *, settings: SendSettings | None = None,
                 clock: Clock = SYSTEM_CLOCK, lease: leases.Lease | None = None,
                 progress: Callable[[int, int], None] | None = None,
                 stop_event: threading.Event | None = None,
                 limiters: dict[str, Any] | None = None) -> None:
        self.db, self.spec, self.run_id, self.gateways = db, spec, run_id, gateways
        self.settings = settings or SendSettings()
        self.clock = clock
        self._own_lease = lease is None
        self.lease = lease or leases.Lease(db, seconds=self.settings.lease_seconds, clock=clock)
        self.progress = progress
        self.stop_event = stop_event or threading.Event()
        self._enforce_window = (not self.settings.override_window
                                and any(g.reaches_phones for g in gateways.values()))
        self.limiters: dict[str, Any] = dict(limiters or {})
        self.units: dict[str, str] = {}
        self.concurrency: dict[str, int] = {}
        for ch in spec.channels:
            g = gateways.get(ch.channel)
            if g is None:
                continue
            # the campaign's rate and concurrency are for providers; a gateway that reaches no
            # phone (outbox) runs at its own pace
            configured = g.reaches_phones
            rate = (ch.rate_per_second if configured and ch.rate_per_second is not None
                    else g.rate_per_second)
            self.units[ch.channel] = (ch.rate_unit if configured and ch.rate_unit else g.rate_unit)
            self.concurrency[ch.channel] = (self.settings.concurrency or
                                            (ch.concurrency if configured and ch.concurrency
                                             else g.concurrency))
            if ch.channel not in self.limiters:
                self.limiters[ch.channel] = ratelimit.limiter_for(
                    db, g.name, rate, shared=self.settings.shared_rate, clock=clock)
        st = self.settings
        # a gateway that can confirm at once what it never received (a local file, the mock)
        # may have requests marked started ahead of time: reconciliation sorts them out in one
        # lookup. For the others only what is in flight is started: a row marked ahead would
        # wait out the provider's listing horizon, or the operator, after a crash
        confirm = bool(gateways) and all(g.can_confirm and not g.lookup_horizon_seconds
                                         for g in gateways.values())
        # a gateway whose provider refuses a repeated request id (brandname aggregators) may
        # have a few rows marked ahead too: after a crash they are sent again under the same
        # id the same day (reconcile._decide), so only one mark per request in flight
        idempotent = bool(gateways) and not confirm and all(
            g.idempotent_resend for g in gateways.values())
        #: such a gateway's batch is claimed started (states.claim(started=True)): the claim
        #: sets sending_at, so no second UPDATE of every row marks it
        self._claim_started = confirm
        #: such a gateway's outcomes of one batch are held until the next batch is claimed
        #: (LedgerWriter.hold): on SQLite the claim and the outcomes take turns at one write
        #: lock, and so the outcomes are written while the next batch is sent. Only where a
        #: crash costs a lookup: elsewhere an outcome held is a send made and not recorded,
        #: which would be unknown after a crash, and only what is in flight may be
        self._hold_outcomes = confirm and self.settings.pipeline
        in_flight = max([1, *self.concurrency.values()])
        self.writer = LedgerWriter(
            db, run_id, gateway_names=[g.name for g in gateways.values()], clock=clock,
            owner=self.lease.owner,
            lookahead=max(64, in_flight) if confirm else in_flight if idempotent else 0,
            max_lookahead=4096 if confirm else 2 * in_flight, deadline=st.record_deadline,
            on_recorded=self._recorded, claimed_started=confirm)
        self.sender = BatchSender(
            spec, gateways, limiters=self.limiters, units=self.units,
            concurrency=self.concurrency, clock=clock, lease=self.lease, writer=self.writer,
            stop_event=self.stop_event, enforce_window=self._enforce_window,
            max_attempts=st.max_attempts, backoff_initial=st.backoff_initial,
            backoff_max=st.backoff_max, error_rate_threshold=st.error_rate_threshold,
            error_window=st.error_window)
        preferred = [g.preferred_batch for g in gateways.values()]
        self.batch_size = st.batch_size or (
            min(preferred) if preferred and all(preferred) else 500)  # type: ignore[type-var]
        self._held: list[int] = []
        #: the highest delivery id this engine claimed: the next claim reads the queue from
        #: there (states.claim, PostgreSQL)
        self._claimed_up_to = 0
        self._sending = False
        self._done = 0
        self._total: int | None = None
        self._progress_lock = threading.Lock()
        self._closed = False

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> RunEngine:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def reconcile(self) -> dict[str, int]:
        """Reconcile the run's orphaned and ``unknown`` deliveries with the gateways
        (:func:`outreach.sending.reconcile.recover`); returns its counts."""
        return retry_write(reconcile.recover)(self.db, self.spec, self.run_id, self.gateways,
                                              clock=self.clock)

    @retry_write
    def start(self, *, only_from: tuple[str, ...] | None = None) -> Step | None:
        """Open the run for sending: mark it ``running``. Returns a stopped :class:`Step`
        when it must not be sent — finished or cancelled, a scheduled run past its lateness
        limit (then ``expired``), or not in ``only_from`` any more (an operator's pause won)
        — else None."""
        now = self.clock.now()
        with self.db.engine.begin() as conn:
            run = runs.get_run(conn, self.run_id)
            assert run is not None
            if run.status in (runstates.COMPLETED, runstates.CANCELLED, runstates.MISSED):
                return Step(stopped=run.status if run.status != runstates.COMPLETED else None,
                            reason=run.status_reason)
            late = self.lateness(run)
            if late:
                runstates.move(conn, self.run_id, runstates.EXPIRED, late, now=now)
                return Step(stopped="late", reason=late)
            if not runstates.move(conn, self.run_id, runstates.RUNNING, None, now=now,
                                  only_from=only_from):
                status = conn.execute(select(Run.status).where(Run.id == self.run_id)).scalar()
                return Step(stopped=status or "gone", reason=reasons.english(N_("the run is {status} now"),
                                                                   status=status))
        self.lease.start()
        return None

    def lateness(self, run: Any) -> str | None:
        """Why a scheduled run that never started is too late to send now, or None."""
        if self.settings.allow_late or run.started_at is not None or run.kind != "scheduled":
            return None
        limit = dt.timedelta(minutes=self.spec.window.lateness_limit_minutes)
        late_by = self.clock.now() - run.due_at
        if late_by > limit:
            return reasons.english(
                N_("the run was due at {due} and is {late} min late, past the lateness limit of "
                   "{limit} min; not sent late silently (resume with --allow-late to send "
                   "anyway)"), due=reasons.local_stamp(run.due_at, self.spec.window.tz),
                late=int(late_by.total_seconds() // 60),
                limit=self.spec.window.lateness_limit_minutes)
        return None

    def close(self) -> None:
        """Write the outcomes still pending, stop the lease keeper and the threads."""
        if self._closed:
            return
        self._closed = True
        try:
            self.writer.close()
        finally:
            if self._sending:
                _fast_switching(False)
                self._sending = False
            self.sender.close()
            if self._own_lease:
                self.lease.stop()
                leases.release_owner(self.lease.owner)

    def abandon(self) -> None:
        """Stop without writing anything more: what was claimed stays ``sending`` for
        reconciliation, exactly as after a crash (a holder whose lease is lost)."""
        self._closed = True
        self.writer.abandon()
        if self._sending:
            _fast_switching(False)
            self._sending = False
        self.sender.close(wait=False)
        if self._own_lease:
            self.lease.stop()
            leases.release_owner(self.lease.owner)

    def counts(self) -> dict[str, int]:
        """The run's deliveries by status."""
        return retry_write(self._counts)()

    def _counts(self) -> dict[str, int]:
        with self.db.read() as conn:
            return runs.remaining(conn, self.run_id)

    # -- the step --------------------------------------------------------------------------
    def _recorded(self, n: int) -> None:
        """The writer committed ``n`` outcomes: the progress counts what is recorded, message by
        message as the group commits land (never a claimed batch that may be returned)."""
        with self._progress_lock:
            self._done += n
            done, total = self._done, self._total
        if self.progress and total is not None:
            self.progress(done, total)

    def step(self) -> Step:
        """One batch: check the run may go on, claim a batch under the lease, send it; the
        writer commits each request's start before it leaves and each outcome as it comes, and
        everything is committed before the step returns. Returns what happened; ``more`` says
        whether to step again at once.

        Raises :class:`~outreach.sending.leases.LeaseLost` (the lease could not be renewed: stop as a
        crash would) and :class:`~outreach.sending.outcomes.RecordFailed`.
        """
        if not self._sending:
            _fast_switching(True)
            self._sending = True
        if self._total is None:
            counts = self.counts()
            self._total = sum(counts.values())
            self._done = self._total - counts.get(states.QUEUED, 0)
            if self.progress:  # what was recorded before: the sending rate counts from here
                self.progress(self._done, self._total)
        stop = self._should_stop()
        if stop:
            self.writer.flush()
            return Step(stopped=stop[0], reason=stop[1], resume_at=stop[2])
        batch = self.claim()
        if not batch:
            self.writer.flush()  # everything sent is recorded before the run can complete
            waiting = self._after_queue_empty()
            if waiting:
                return Step(stopped=waiting[0], reason=waiting[1], resume_at=waiting[2])
            if self._claimable():
                return Step(more=True)
            return Step(completed=runstates.complete_if_done(self.db, self.run_id,
                                                             now=self.clock.now()))
        ids = [r["id"] for r in batch]
        self.lease.hold(ids)
        if self._hold_outcomes:
            # the previous batch's outcomes waited for this claim (committed now): they are
            # written while this batch is sent, and this batch's wait for the next claim
            self.writer.release()
            self.writer.hold()
        outcomes = self.sender.send_batch(batch)
        # the writer goes on writing this batch's outcomes while the next one is claimed and
        # sent (held until that claim: see above); the lease keeps covering them until then
        # (renewal skips rows already settled)
        if not self.settings.pipeline:
            self.writer.flush()
        if self._held:
            self.lease.drop(self._held)
        self._held = ids
        self.sender.window_shut.clear()
        step = Step(outcomes=Counter(o.kind for o in outcomes), more=True)
        halted = self.sender.halted
        if halted:
            self.writer.flush()
            kind, why = halted
            with self.db.engine.begin() as conn:
                runstates.move(conn, self.run_id, runstates.PAUSED, why, now=self.clock.now())
            step.more, step.stopped, step.reason = False, kind, why
        return step

    # -- checks between batches --------------------------------------------------------------
    @retry_write  # between batches: another process's long write must not stop the run
    def _should_stop(self) -> tuple[str, str | None, dt.datetime | None] | None:
        now = self.clock.now()
        if self.stop_event.is_set():
            if self.settings.pause_on_stop:
                with self.db.engine.begin() as conn:
                    runstates.move(conn, self.run_id, runstates.PAUSED, INTERRUPTED_REASON,
                                   now=now)
            return "interrupted", N_("interrupted: in-flight sends finished and were recorded"), None
        return self.check(now)

    def check(self, now: dt.datetime) -> tuple[str, str | None, dt.datetime | None] | None:
        """Paused or cancelled by the operator, window closed, daily cap reached: (kind, reason,
        resume at) and the run's status updated; None when the run may go on."""
        with self.db.read() as conn:  # no wait for the writer's commit between batches
            status, reason = conn.execute(select(Run.status, Run.status_reason)
                                          .where(Run.id == self.run_id)).one()
        if status in (runstates.PAUSED, runstates.CANCELLED):
            return status, reason, None
        if self._enforce_window and not self.spec.window.is_open(now):
            why = reasons.window_closed(self.spec.window, now)  # stored: English
            nxt = self.spec.window.next_open(now)
            with self.db.engine.begin() as conn:
                if nxt is None:
                    runstates.move(conn, self.run_id, runstates.PAUSED,
                                   reasons.english(N_("send window closed for good: {why}"),
                                                   why=why), now=now)
                else:
                    runstates.move(conn, self.run_id, runstates.WAITING,
                                   reasons.english(N_("send window closed: {why}"), why=why),
                                   now=now)
            return "window", why, nxt
        cap = self.spec.schedule.daily_cap
        if cap:
            # read, close, then write: a read through Database.read must not write
            with self.db.read() as conn:
                reached = runs.sent_today(conn, self.spec.id, now) >= cap
            if reached:
                local = now.astimezone(self.spec.window.tz)
                nxt = self.spec.window.next_open(dt.datetime.combine(
                    local.date() + dt.timedelta(days=1), dt.time(0), tzinfo=self.spec.window.tz))
                with self.db.engine.begin() as c2:
                    runstates.move(c2, self.run_id, runstates.WAITING,
                                   reasons.english(N_("daily cap of {cap} messages reached"),
                                                   cap=cap), now=now)
                return "daily-cap", reasons.english(N_("daily cap of {cap} reached"), cap=cap), nxt
        return None

    def _after_queue_empty(self) -> tuple[str, str, dt.datetime | None] | None:
        """With channel fallback: create fallback deliveries, or wait for receipts."""
        if len(self.spec.channels) < 2:
            return None
        from outreach.sending import fallback

        now = self.clock.now()
        names = {ch: g.name for ch, g in self.gateways.items()}
        with self.db.engine.begin() as conn:
            fallback.cancel_superseded(conn, self.run_id, now)
            created = fallback.plan_fallbacks(conn, self.spec, self.run_id, now,
                                              gateway_names=names)
            if created:
                return None
            wait_until = fallback.pending_fallback(conn, self.run_id, now)
            if wait_until is None:
                return None
            runstates.move(conn, self.run_id, runstates.WAITING,
                           reasons.english(N_("awaiting delivery receipts before falling back, "
                                              "until {until}"),
                                           until=reasons.local_stamp(wait_until,
                                                                     self.spec.window.tz)),
                           now=now)
        return ("awaiting-receipts", N_("waiting for receipts before channel fallback"),
                wait_until)

    @retry_write
    def _claimable(self) -> bool:
        with self.db.read() as conn:
            # ordered by id, so that PostgreSQL may answer from the queue index
            # (ix_deliveries_queue) once the table is vacuumed; unordered it read the table
            # from the start past every row already sent. Asked only when a claim found nothing
            return conn.execute(select(Delivery.id).where(
                Delivery.run_id == self.run_id,
                Delivery.status == states.QUEUED).order_by(Delivery.id).limit(1)
            ).first() is not None

    # -- claim, send, record ---------------------------------------------------------------
    def claim(self) -> list[dict[str, Any]]:
        """Claim the next batch: ``sending`` under this engine's lease (rows as dicts with
        ``id``, ``channel``, ``address``, ``body``, ``segments``...). The queue is read from
        the highest id this engine claimed before, and from its start when nothing is left
        after that (a row put back in the queue, a row another worker gave up)."""
        rows = self._claim(self._claimed_up_to)
        if not rows and self._claimed_up_to:
            rows = self._claim(0)
        self._claimed_up_to = rows[-1]["id"] if rows else 0
        return rows

    @retry_write
    def _claim(self, after: int) -> list[dict[str, Any]]:
        now = self.clock.now()
        batch_size = self.batch_size
        with self.db.engine.begin() as conn:
            # opt-outs are checked again just before sending: queued rows whose number joined
            # the suppression list since the run was created become opted_out. Only the head of
            # the queue (the next batch_size rows in id order) is looked at, so the check costs
            # the same for the millionth batch as for the first; the claim below skips
            # suppressed numbers further on, and each is moved once it reaches the head.
            head = (select(Delivery.id).where(Delivery.run_id == self.run_id,
                                              Delivery.status == states.QUEUED,
                                              Delivery.id > after)
                    .order_by(Delivery.id).limit(batch_size))
            blocked = conn.execute(
                select(Delivery.id).where(Delivery.id.in_(head.scalar_subquery()),
                                          text(SUPPRESSED_SQL))
            ).scalars().all()
            if blocked:
                states.apply(conn, [states.Change(i, states.OPTED_OUT,
                                                  {"error_reason": "suppressed"})
                                    for i in blocked], source="dispatcher", now=now)
            limit = batch_size
            cap = self.spec.schedule.daily_cap
            if cap:
                # never claim past the day's cap (checked between batches, it let a whole
                # batch through); none left: the next check stops the run until tomorrow
                limit = min(limit, cap - runs.sent_today(conn, self.spec.id, now))
                if limit <= 0:
                    return []
            # each row records the gateway that sends it (a worker's --gateway may replace
            # the run's)
            return states.claim(conn, self.run_id, limit=limit, owner=self.lease.owner,
                                lease_expires=self.lease.until(now), now=now,
                                started=self._claim_started, after=after,
                                gateways={ch: g.name for ch, g in self.gateways.items()})


def check_text(run: Any, spec: CampaignSpec) -> None:
    """Refuse (:class:`outreach.ledger.runs.RunError`) to send run ``run`` with a campaign whose text
    is not the one the run was created with (its ``text_sha256``)."""
    if run.text_sha256 != spec.text_sha256:
        raise runs.RunError(_("run #{id} was created with another text ({old}…) than the "
                              "campaign now has ({new}…); refusing to send a different "
                              "message").format(id=run.id, old=run.text_sha256[:12],
                                                new=spec.text_sha256[:12]))


def send_run(db: Database, spec: CampaignSpec, run_id: int, gateways: dict[str, gw.Gateway], *,
             clock: Clock = SYSTEM_CLOCK, progress: Callable[[int, int], None] | None = None,
             stop_event: threading.Event | None = None, limiters: dict[str, Any] | None = None,
             lease: leases.Lease | None = None, **settings: Any) -> RunReport:
    """Send run ``run_id`` until it completes or stops: reconcile what a previous sender left,
    open the run, step the :class:`RunEngine` while there is more. ``settings`` are
    :class:`SendSettings` fields. The driver of ``campaign launch``/``resume``/``resend`` and
    of the scheduler's day runs. Returns the :class:`RunReport`."""
    report = RunReport(run_id=run_id)
    with RunEngine(db, spec, run_id, gateways, settings=SendSettings(**settings), clock=clock,
                   progress=progress, stop_event=stop_event, limiters=limiters,
                   lease=lease) as engine:
        report.reconciled = engine.reconcile()
        step = engine.start()
        while step is None or step.more:
            step = engine.step()
        report.stopped, report.reason, report.resume_at = step.stopped, step.reason, step.resume_at
    report.counts = engine.counts()
    return report


__all__ = ["RunEngine", "SendSettings", "Step", "RunReport", "send_run", "check_text", "INTERRUPTED_REASON"]
