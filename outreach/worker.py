"""Workers: processes on any machine that claim leased batches of active runs and send them."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import random
import threading
import time
import types
import typing
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import SQLAlchemyError

from outreach import campaigns, dispatch, runs, states
from outreach.campaigns import CampaignSpec
from outreach.clock import SYSTEM_CLOCK, Clock
from outreach.db import Database
from outreach.gateways import base as gw
from outreach.models import Campaign, Delivery, Run

log = logging.getLogger(__name__)

#: Default lease of a claimed batch (seconds); a living worker renews it every quarter.
LEASE_SECONDS = 60.0
#: Run statuses a worker sends; ``waiting`` runs are looked at again every ``RECHECK_SECONDS``.
WORKABLE_STATUSES = ("created", "running", "waiting")
RECHECK_SECONDS = 30.0
#: Exit status when the worker lost its lease or could not record outcomes (systemd restarts it).
EXIT_LEASE_LOST = 75


class LeaseLost(dispatch.AbortBatch):
    """The worker could not renew its lease in time: it must stop sending and exit, leaving
    its ``sending`` rows to be reconciled by the others as if it had crashed."""


# -- campaign definitions ---------------------------------------------------------------------
def spec_from_definition(definition: dict[str, Any]) -> CampaignSpec:
    """The :class:`CampaignSpec` stored in ``campaigns.definition`` (``CampaignSpec.to_json``).

    Workers on other machines have no campaign file: they send the text, channels and window
    recorded at launch. Raises ``KeyError``/``ValueError`` for a definition that is not one.
    """
    return _from_json(CampaignSpec, definition)


def _from_json(tp: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return _from_json(next(a for a in typing.get_args(tp) if a is not type(None)), value)
    if dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        return tp(**{f.name: _from_json(hints[f.name], value[f.name])
                     for f in dataclasses.fields(tp) if f.name in value})
    if origin is tuple:
        return tuple(_from_json(typing.get_args(tp)[0], v) for v in value)
    if tp is dt.date:
        return dt.date.fromisoformat(value)
    if tp is dt.time:
        return dt.time.fromisoformat(value)
    return value


# -- leases -----------------------------------------------------------------------------------
class LeaseKeeper:
    """Keeps the lease of the batch in flight alive: every ``lease / 4`` seconds its rows get
    ``lease_expires_at = now + lease``.

    :meth:`lost` turns True once no renewal succeeded for half the lease (a stalled process,
    an unreachable database): the worker then stops before another worker may take the rows
    (they become orphaned only when the lease has expired). Rows locked by a record in
    progress are skipped, never waited for, so renewals cannot deadlock with recording.
    """

    def __init__(self, db: Database, owner: str, lease_seconds: float,
                 clock: Clock = SYSTEM_CLOCK) -> None:
        self.db, self.owner, self.lease, self.clock = db, owner, lease_seconds, clock
        self._ids: list[int] = []
        self._last_ok = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="lease-keeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def hold(self, ids: list[int]) -> None:
        """The rows just claimed (their lease was set by the claim)."""
        with self._lock:
            self._ids = list(ids)
            self._last_ok = time.monotonic()

    def release(self) -> None:
        with self._lock:
            self._ids = []

    def lost(self) -> bool:
        with self._lock:
            return bool(self._ids) and time.monotonic() - self._last_ok > self.lease / 2

    def _loop(self) -> None:
        while not self._stop.wait(self.lease / 4):
            try:
                self.renew()
            except SQLAlchemyError as exc:
                log.warning("lease renewal failed: %s", exc)

    def renew(self) -> int:
        """Extend the lease of the held rows still ``sending`` for this owner; returns how many."""
        with self._lock:
            ids = list(self._ids)
        if not ids:
            return 0
        started = time.monotonic()
        until = self.clock.now() + dt.timedelta(seconds=self.lease)
        mine = (select(Delivery.id).where(Delivery.id.in_(ids), Delivery.lease_owner == self.owner,
                                          Delivery.status == states.SENDING))
        with self.db.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                mine = mine.with_for_update(skip_locked=True)
            n = conn.execute(update(Delivery).where(Delivery.id.in_(mine.scalar_subquery()))
                             .values(lease_expires_at=until)
                             .execution_options(synchronize_session=False)).rowcount
        with self._lock:
            if self._ids == ids:
                self._last_ok = max(self._last_ok, started)
        return n


class _FencedGateway:
    """A gateway that refuses to send once the worker's lease is lost (raises LeaseLost just
    before the request would leave); everything else is the wrapped gateway's."""

    def __init__(self, inner: gw.Gateway, keeper: LeaseKeeper) -> None:
        self._inner, self._keeper = inner, keeper

    def send(self, message: gw.OutboundMessage) -> gw.SendResult:
        if self._keeper.lost():
            raise LeaseLost(f"lease of {self._keeper.owner} not renewed for "
                            f"{self._keeper.lease / 2:.0f} s")
        return self._inner.send(message)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


# -- the worker -------------------------------------------------------------------------------
@dataclass
class WorkerReport:
    """What one worker did: outcomes by kind (``sent``, ``failed``, ``unknown``, ``opted_out``,
    ``not_sent``), runs it completed, seconds it ran, and why it stopped."""

    owner: str
    outcomes: Counter[str] = field(default_factory=Counter)
    batches: int = 0
    completed_runs: list[int] = field(default_factory=list)
    reconciled: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    exit_status: int = 0
    reason: str = ""

    @property
    def sent(self) -> int:
        return self.outcomes.get("sent", 0)


@dataclass
class _RunState:
    run_id: int
    dispatcher: dispatch.Dispatcher
    pool: ThreadPoolExecutor
    started: bool = False
    looked_up: bool = False
    next_recover: float = 0.0
    not_before: float = 0.0


class Worker:
    """Claims batches of queued deliveries of every active run (or one campaign's), sends them
    and records the outcomes, next to any number of other workers on any machine.

    Each pass takes one batch (``batch_size`` rows, ``SELECT … FOR UPDATE SKIP LOCKED`` on
    PostgreSQL, so workers never claim the same row) from each workable run in turn: runs
    ``created``, ``running`` or ``waiting`` (looked at again every ``RECHECK_SECONDS``) and
    due. Sending is the :class:`~outreach.dispatch.Dispatcher`'s: the campaign's channels,
    retries, suppression check, error-rate pause, send window and daily cap; the rate limit is
    shared by all workers (:class:`~outreach.ratelimit.SharedRateLimiter`) on PostgreSQL.

    A claimed batch is leased to this worker for ``lease_seconds`` and the lease renewed while
    it is in flight (:class:`LeaseKeeper`). Rows of a worker that died are turned into
    ``unknown`` and reconciled with the gateway (:func:`outreach.dispatch.recover`) once
    their owner is known dead (same machine) or their lease expired (another machine); nothing
    that may have gone out is sent again. A run is completed by whichever worker finds it
    without queued or sending rows, exactly once.

    ``gateway`` replaces every channel's gateway (default: the gateways the run was created
    with); ``gateway_options`` maps gateway name -> constructor options; ``make_gateways``
    (tests) builds the gateways for a channel -> name mapping. ``concurrency`` overrides the
    requests in flight per run. ``stop_event`` ends the loop: sends not yet started are put
    back in the queue, those in flight are recorded. With ``exit_when_done`` the worker
    returns once no ``created``/``running`` run of its selection is left.
    """

    def __init__(self, db: Database, *, campaign_id: str | None = None,
                 gateway: str | None = None, gateway_options: dict[str, Any] | None = None,
                 make_gateways: Callable[[dict[str, str]], dict[str, gw.Gateway]] | None = None,
                 concurrency: int | None = None, batch_size: int = 200,
                 lease_seconds: float = LEASE_SECONDS, idle_seconds: float = 1.0,
                 exit_when_done: bool = False, clock: Clock = SYSTEM_CLOCK,
                 stop_event: threading.Event | None = None, owner: str | None = None,
                 on_run_done: Callable[[int, str], None] | None = None) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if lease_seconds < 1:
            raise ValueError("the lease must be at least 1 second")
        self.db = db
        self.campaign_id = campaign_id
        self.gateway = gateway
        self.gateway_options = gateway_options or {}
        self._make_gateways = make_gateways
        self.concurrency = concurrency
        self.batch_size = batch_size
        self.lease_seconds = lease_seconds
        self.idle_seconds = idle_seconds
        self.exit_when_done = exit_when_done
        self.clock = clock
        self.stop_event = stop_event or threading.Event()
        self.owner = owner or dispatch.owner_id()
        self.on_run_done = on_run_done
        self.keeper = LeaseKeeper(db, self.owner, lease_seconds, clock)
        self.report = WorkerReport(owner=self.owner)
        self._runs: dict[int, _RunState] = {}
        self._gateways: dict[tuple[tuple[str, str], ...], dict[str, gw.Gateway]] = {}
        self._skip_until: dict[int, float] = {}

    # -- the loop -----------------------------------------------------------------------------
    def run(self) -> WorkerReport:
        """Work until ``stop_event`` is set (or, with ``exit_when_done``, nothing is left);
        call it once per Worker.

        Returns the report; ``exit_status`` is ``EXIT_LEASE_LOST`` when the worker stopped
        because it lost its lease or could not record outcomes (its rows are then left to
        the others, exactly as after a crash).
        """
        started = time.monotonic()
        self.keeper.start()
        try:
            while not self.stop_event.is_set():
                try:
                    worked = self.step()
                except LeaseLost as exc:
                    log.error("%s; stopping without recording: the other workers reconcile "
                              "this batch", exc)
                    self.report.exit_status, self.report.reason = EXIT_LEASE_LOST, str(exc)
                    break
                except (_RecordFailed, _BatchAborted) as exc:
                    log.error("%s", exc)
                    self.report.exit_status, self.report.reason = EXIT_LEASE_LOST, str(exc)
                    break
                except SQLAlchemyError as exc:
                    log.warning("database error, trying again in %.0f s: %s",
                                self.idle_seconds, exc)
                    worked = False
                if worked:
                    continue
                if self.exit_when_done and not self._open_runs():
                    self.report.reason = "no run left to send"
                    break
                self.stop_event.wait(self.idle_seconds * random.uniform(0.8, 1.2))
            if self.stop_event.is_set() and not self.report.reason:
                self.report.reason = "stopped"
        finally:
            self.keeper.stop()
            for st in list(self._runs.values()):
                self._drop(st.run_id)
            for gws in self._gateways.values():
                for g in gws.values():
                    g.close()
            self.report.seconds = time.monotonic() - started
        return self.report

    def step(self) -> bool:
        """One pass over the workable runs, one batch each; True if anything was sent,
        recovered or completed (so the next pass should come at once)."""
        now = self.clock.now()
        candidates = self._candidates(now)
        worked = False
        for run in candidates:
            if self.stop_event.is_set():
                break
            worked |= self._serve(run, now)
        for run_id in set(self._runs) - {r.id for r in candidates}:
            self._drop(run_id)
        return worked

    def _candidates(self, now: dt.datetime) -> list[Any]:
        stmt = (select(Run.id, Run.campaign_id, Run.status, Run.kind, Run.due_at, Run.started_at,
                       Run.text_sha256, Run.gateway, Run.options)
                .where(Run.status.in_(WORKABLE_STATUSES), Run.due_at <= now).order_by(Run.id))
        if self.campaign_id:
            stmt = stmt.where(Run.campaign_id == self.campaign_id)
        with self.db.engine.connect() as conn:
            return list(conn.execute(stmt))

    def _open_runs(self) -> int:
        """Runs of the selection still created or running that this worker can send."""
        stmt = select(Run.id).where(Run.status.in_(("created", "running")),
                                    Run.due_at <= self.clock.now())
        if self.campaign_id:
            stmt = stmt.where(Run.campaign_id == self.campaign_id)
        with self.db.engine.connect() as conn:
            ids = set(conn.execute(stmt).scalars())
        mono = time.monotonic()
        return len(ids - {i for i, until in self._skip_until.items() if until > mono})

    # -- one run --------------------------------------------------------------------------------
    def _serve(self, run: Any, now: dt.datetime) -> bool:
        mono = time.monotonic()
        if self._skip_until.get(run.id, 0.0) > mono:
            return False
        st = self._runs.get(run.id) or self._open(run)
        if st is None or st.not_before > mono:
            return False
        d = st.dispatcher
        worked = False
        if mono >= st.next_recover:
            st.next_recover = mono + max(self.lease_seconds / 2, 1.0)
            worked = self._recover(st, now)
        if not st.started and run.started_at is None:
            late = d._lateness(run)
            if late:  # a scheduled run past its lateness limit is not sent late silently
                with self.db.engine.begin() as conn:
                    conn.execute(update(Run).where(Run.id == run.id, Run.status == "created")
                                 .values(status="expired", status_reason=late))
                self._finished(run.id, f"expired: {late}")
                self._drop(run.id)
                return worked
        stop = d._check_run(now)
        if stop:
            kind, why, _resume_at = stop
            log.info("run %s: %s (%s)", run.id, kind, why)
            if kind in ("paused", "cancelled"):
                self._drop(run.id)
            else:
                st.not_before = mono + RECHECK_SECONDS
            return worked
        if not st.started:
            # created/waiting → running, only from those states so an operator's pause wins
            with self.db.engine.begin() as conn:
                conn.execute(update(Run).where(Run.id == run.id,
                                               Run.status.in_(("created", "waiting")))
                             .values(status="running", status_reason=None,
                                     started_at=func.coalesce(Run.started_at, now)))
            st.started = True
        batch = d._claim()
        if not batch:
            return self._queue_empty(st) or worked
        self.keeper.hold([r["id"] for r in batch])
        try:
            try:
                outcomes = d._send_batch(st.pool, batch)
                # as Dispatcher.run does: a window that shut during this batch must not stop
                # the batches sent once it has opened again (the run waits meanwhile)
                d._window_shut.clear()
            except LeaseLost:
                raise
            except Exception as exc:
                # outcomes of this batch are unknown to us now: stop like a crash would, the
                # other workers reconcile the rows with the gateway
                raise _BatchAborted(f"a batch of {len(batch)} deliveries was interrupted by "
                                    f"{type(exc).__name__}: {exc}; stopping so that the other "
                                    "workers reconcile it") from exc
            self._record(d, batch, outcomes)
        finally:
            self.keeper.release()
        self.report.batches += 1
        self.report.outcomes.update(o.kind for o in outcomes)
        if d._halt.is_set() and d._halt_reason:
            kind, why = d._halt_reason
            with self.db.engine.begin() as conn:
                runs.set_status(conn, run.id, "paused", why, now=self.clock.now())
            self._finished(run.id, f"paused: {why}")
            self._drop(run.id)
        return True

    def _open(self, run: Any) -> _RunState | None:
        """Build the dispatcher of a run; None (and the run skipped for a while) if this worker
        cannot send it (no gateway credentials here, a definition it cannot read)."""
        try:
            with self.db.engine.connect() as conn:
                definition = conn.execute(select(Campaign.definition)
                                          .where(Campaign.id == run.campaign_id)).scalar_one()
            spec = spec_from_definition(definition)
            if spec.text_sha256 != run.text_sha256:
                self._pause(run.id, f"run #{run.id} was created with another text "
                            f"({run.text_sha256[:12]}…) than the campaign now has "
                            f"({spec.text_sha256[:12]}…); refusing to send a different message")
                return None
            names = dict((run.options or {}).get("gateways") or
                         {spec.channels[0].channel: run.gateway})
            if self.gateway:
                names = {ch: self.gateway for ch in names}
            gateways = {ch: _FencedGateway(g, self.keeper) for ch, g in
                        self._gateways_for(names).items()}
        except (gw.GatewayError, campaigns.CampaignError, KeyError, ValueError, TypeError) as exc:
            log.error("run %s of %s cannot be sent by this worker: %s (looking again in %.0f s)",
                      run.id, run.campaign_id, exc, RECHECK_SECONDS)
            self._skip_until[run.id] = time.monotonic() + RECHECK_SECONDS
            return None
        d = dispatch.Dispatcher(self.db, spec, run.id, gateways,  # type: ignore[arg-type]
                                clock=self.clock, batch_size=self.batch_size,
                                stop_event=self.stop_event, owner=self.owner, shared_rate=True,
                                lease_seconds=self.lease_seconds)
        if self.concurrency:
            d.concurrency = {ch: self.concurrency for ch in d.concurrency}
        pool = ThreadPoolExecutor(max_workers=max(d.concurrency.values() or [1]),
                                  thread_name_prefix=f"run{run.id}")
        st = _RunState(run.id, d, pool, started=run.status == "running")
        self._runs[run.id] = st
        return st

    def _gateways_for(self, names: dict[str, str]) -> dict[str, gw.Gateway]:
        key = tuple(sorted(names.items()))
        if key not in self._gateways:
            if self._make_gateways is not None:
                self._gateways[key] = self._make_gateways(names)
            else:
                from outreach.ops import build_gateways

                self._gateways[key] = build_gateways(names, self.db, **self.gateway_options)
        return self._gateways[key]

    def _recover(self, st: _RunState, now: dt.datetime) -> bool:
        with self.db.engine.connect() as conn:
            stale = dispatch.stale_sending(conn, st.run_id, now)
            unknown = conn.execute(select(func.count()).select_from(Delivery).where(
                Delivery.run_id == st.run_id, Delivery.status == states.UNKNOWN)).scalar_one()
        # unknown rows are looked up once when this worker first sees the run, then only
        # when a worker died again (a gateway that cannot answer is not asked every pass)
        first, st.looked_up = not st.looked_up, True
        if not stale and not (unknown and first):
            return False
        d = st.dispatcher
        got = dispatch.recover(self.db, d.spec, st.run_id, d.gateways, clock=self.clock)
        self.report.reconciled.update({k: v for k, v in got.items() if v})
        if got.get("orphaned"):
            log.warning("run %s: %s deliveries of a dead worker reconciled: %s", st.run_id,
                        got["orphaned"], got)
        return bool(got.get("orphaned") or got.get("requeued"))

    def _queue_empty(self, st: _RunState) -> bool:
        d = st.dispatcher
        waiting = d._after_queue_empty()
        if waiting:
            st.not_before = time.monotonic() + RECHECK_SECONDS
            return False
        if d._claimable():  # fallback deliveries were just created
            return True
        if dispatch.complete_if_done(self.db, st.run_id, now=self.clock.now()):
            self.report.completed_runs.append(st.run_id)
            self._finished(st.run_id, "completed")
            self._drop(st.run_id)
            return True
        return False

    def _record(self, d: dispatch.Dispatcher, batch: list[dict[str, Any]],
                outcomes: list[dispatch.Outcome]) -> None:
        """Record the outcomes, trying again for up to half the lease; if the database stays
        unreachable the worker must exit (the rows are reconciled by the others)."""
        deadline = time.monotonic() + self.lease_seconds / 2
        delay = 0.2
        while True:
            try:
                d._record(batch, outcomes)
                return
            except SQLAlchemyError as exc:
                if time.monotonic() + delay > deadline:
                    raise _RecordFailed(f"could not record {len(outcomes)} outcomes: {exc}; "
                                        "stopping so that the other workers reconcile them") from exc
                log.warning("recording outcomes failed, trying again: %s", exc)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _pause(self, run_id: int, why: str) -> None:
        with self.db.engine.begin() as conn:
            conn.execute(update(Run).where(Run.id == run_id, Run.status.in_(WORKABLE_STATUSES))
                         .values(status="paused", status_reason=why))
        log.error("run %s paused: %s", run_id, why)
        self._finished(run_id, f"paused: {why}")

    def _finished(self, run_id: int, what: str) -> None:
        if self.on_run_done:
            self.on_run_done(run_id, what)

    def _drop(self, run_id: int) -> None:
        st = self._runs.pop(run_id, None)
        if st is not None:
            st.pool.shutdown(wait=True)


class _RecordFailed(Exception):
    pass


class _BatchAborted(Exception):
    pass


__all__ = ["Worker", "WorkerReport", "LeaseKeeper", "LeaseLost", "spec_from_definition",
           "LEASE_SECONDS", "EXIT_LEASE_LOST"]
