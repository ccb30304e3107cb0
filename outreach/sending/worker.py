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
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from outreach.i18n import N_, _, number
from outreach.input import campaigns
from outreach.ledger import runs, runstates, states
from outreach.sending import engine, leases, reasons, reconcile
from outreach.input.campaigns import CampaignSpec
from outreach.clock import SYSTEM_CLOCK, Clock
from outreach.ledger.db import Database
from outreach.gateways import GatewayCache, run_gateway_names
from outreach.gateways import base as gw
from outreach.sending.leases import LEASE_SECONDS, Lease, LeaseLost
from outreach.ledger.models import Campaign, Delivery, Run
from outreach.sending.outcomes import RecordFailed

log = logging.getLogger(__name__)

#: ``waiting`` runs, and runs this worker could not open, are looked at again after this long.
RECHECK_SECONDS = 30.0
#: Exit status when the worker lost its lease or could not record outcomes (systemd restarts it).
EXIT_LEASE_LOST = 75


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
    engine: engine.RunEngine
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
    due. Sending is one :meth:`outreach.sending.engine.RunEngine.step` per run and pass: the
    campaign's channels, retries, suppression check, error-rate pause, send window and daily
    cap; the rate limit is shared by all workers on PostgreSQL.

    Every claimed batch is leased to this worker for ``lease_seconds`` and the lease renewed
    while it is in flight (:class:`outreach.sending.leases.Lease`). Rows of a worker that died are
    turned into ``unknown`` and reconciled with the gateway (:func:`outreach.sending.reconcile.recover`)
    once their owner is known dead (same machine) or their lease expired (another machine);
    nothing that may have gone out is sent again. A run is completed by whichever worker finds
    it without queued or sending rows, exactly once.

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
        self.db = db
        self.campaign_id = campaign_id
        self.gateway = gateway
        self.concurrency = concurrency
        self.batch_size = batch_size
        self.lease_seconds = lease_seconds
        self.idle_seconds = idle_seconds
        self.exit_when_done = exit_when_done
        self.clock = clock
        self.stop_event = stop_event or threading.Event()
        self.lease = Lease(db, owner, lease_seconds, clock)
        self.owner = self.lease.owner
        self.on_run_done = on_run_done
        self.report = WorkerReport(owner=self.owner)
        self._runs: dict[int, _RunState] = {}
        self._gateways = GatewayCache(db, factory=make_gateways, options=gateway_options)
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
        self.lease.start()
        try:
            while not self.stop_event.is_set():
                try:
                    worked = self.step()
                except LeaseLost as exc:
                    log.error(_("{error}; stopping without recording: the other workers reconcile "
                                "this batch").format(error=exc))
                    self.report.exit_status, self.report.reason = EXIT_LEASE_LOST, str(exc)
                    break
                except (RecordFailed, _BatchAborted) as exc:
                    log.error("%s", exc)
                    self.report.exit_status, self.report.reason = EXIT_LEASE_LOST, str(exc)
                    break
                except SQLAlchemyError as exc:
                    log.warning(_("database error, trying again in {seconds} s: {error}").format(
                        seconds=number(self.idle_seconds), error=exc))
                    worked = False
                if worked:
                    continue
                if self.exit_when_done and not self._open_runs():
                    self.report.reason = N_("no run left to send")
                    break
                self.stop_event.wait(self.idle_seconds * random.uniform(0.8, 1.2))
            if self.stop_event.is_set() and not self.report.reason:
                self.report.reason = N_("stopped")
        finally:
            aborted = self.report.exit_status == EXIT_LEASE_LOST
            for st in list(self._runs.values()):
                self._drop(st.run_id, record=not aborted)
            self.lease.stop()
            leases.release_owner(self.owner)
            self._gateways.close()
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
                .where(Run.status.in_(runstates.WORKABLE), Run.due_at <= now).order_by(Run.id))
        if self.campaign_id:
            stmt = stmt.where(Run.campaign_id == self.campaign_id)
        with self.db.engine.connect() as conn:
            return list(conn.execute(stmt))

    def _open_runs(self) -> int:
        """Runs of the selection still created or running that this worker can send."""
        stmt = select(Run.id).where(Run.status.in_((runstates.CREATED, runstates.RUNNING)),
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
        eng = st.engine
        worked = False
        if mono >= st.next_recover:
            st.next_recover = mono + max(self.lease_seconds / 2, 1.0)
            worked = self._recover(st, now)
        if not st.started:
            # created/waiting → running, only from those states so an operator's pause wins;
            # a scheduled run past its lateness limit is not sent late silently
            stopped = eng.start(only_from=runstates.WORKABLE)
            if stopped is not None:
                if stopped.stopped == "late":
                    self._finished(run.id, _("expired: {reason}").format(
                        reason=reasons.run_reason(stopped.reason)))
                self._drop(run.id)
                return worked
            st.started = True
        try:
            step = eng.step()
        except (LeaseLost, RecordFailed):
            raise
        except SQLAlchemyError:
            raise
        except Exception as exc:
            # outcomes of this batch are unknown to us now: stop like a crash would, the
            # other workers reconcile the rows with the gateway
            raise _BatchAborted(reasons.english(
                N_("a batch of run {run} was interrupted by {kind}: {error}; stopping so that "
                   "the other workers reconcile it"), run=run.id, kind=type(exc).__name__,
                error=exc)) from exc
        if step.sent:
            self.report.batches += 1
            self.report.outcomes.update(step.outcomes)
        if step.completed:
            self.report.completed_runs.append(run.id)
            self._finished(run.id, _("completed"))
            self._drop(run.id)
            return True
        if step.stopped:
            log.info("run %s: %s (%s)", run.id, step.stopped, step.reason)
            if step.stopped in (runstates.PAUSED, runstates.CANCELLED, "interrupted"):
                self._drop(run.id)
            elif step.sent:  # paused by the engine after this batch (gateway, error rate)
                self._finished(run.id, _("paused: {reason}").format(
                    reason=reasons.run_reason(step.reason)))
                self._drop(run.id)
            else:  # window, daily cap, awaiting receipts: look again later
                st.not_before = mono + RECHECK_SECONDS
            return worked or bool(step.sent)
        return worked or step.more

    def _open(self, run: Any) -> _RunState | None:
        """Open a run's engine; None (and the run skipped for a while) if this worker cannot
        send it (no gateway credentials here, a definition it cannot read, a changed text)."""
        try:
            with self.db.engine.connect() as conn:
                definition = conn.execute(select(Campaign.definition)
                                          .where(Campaign.id == run.campaign_id)).scalar_one()
            spec = spec_from_definition(definition)
            try:
                engine.check_text(run, spec)
            except runs.RunError as exc:
                self._pause(run.id, str(exc))
                return None
            names = run_gateway_names(run.options, spec, self.gateway)
            if not run.options or not run.options.get("gateways"):
                names = {spec.channels[0].channel: self.gateway or run.gateway}
            gateways = self._gateways.get(names)
        except (gw.GatewayError, campaigns.CampaignError, KeyError, ValueError, TypeError) as exc:
            log.error(_("run {run} of {id} cannot be sent by this worker: {error} (looking again "
                        "in {seconds} s)").format(run=run.id, id=run.campaign_id, error=exc,
                                                  seconds=number(RECHECK_SECONDS)))
            self._skip_until[run.id] = time.monotonic() + RECHECK_SECONDS
            return None
        settings = engine.SendSettings(batch_size=self.batch_size, shared_rate=True,
                                       concurrency=self.concurrency, pipeline=False,
                                       record_deadline=self.lease_seconds / 2,
                                       lease_seconds=self.lease_seconds, pause_on_stop=False)
        eng = engine.RunEngine(self.db, spec, run.id, gateways, settings=settings,
                               clock=self.clock, lease=self.lease, stop_event=self.stop_event)
        st = _RunState(run.id, eng, started=run.status == runstates.RUNNING)
        self._runs[run.id] = st
        return st

    def _recover(self, st: _RunState, now: dt.datetime) -> bool:
        with self.db.engine.connect() as conn:
            stale = reconcile.stale_sending(conn, st.run_id, now)
            unknown = conn.execute(select(func.count()).select_from(Delivery).where(
                Delivery.run_id == st.run_id, Delivery.status == states.UNKNOWN)).scalar_one()
        # unknown rows are looked up once when this worker first sees the run, then only
        # when a worker died again (a gateway that cannot answer is not asked every pass)
        first, st.looked_up = not st.looked_up, True
        if not stale and not (unknown and first):
            return False
        got = st.engine.reconcile()
        self.report.reconciled.update({k: v for k, v in got.items() if v})
        if got.get("orphaned"):
            log.warning(_("run {run}: {n} deliveries of a dead worker reconciled: {found}").format(
                run=st.run_id, n=number(got["orphaned"]), found=dict(got)))
        return bool(got.get("orphaned") or got.get("requeued"))

    def _pause(self, run_id: int, why: str) -> None:
        with self.db.engine.begin() as conn:
            runstates.move(conn, run_id, runstates.PAUSED, why, now=self.clock.now(),
                           only_from=runstates.WORKABLE)
        log.error(_("run {run} paused: {why}").format(run=run_id, why=why))
        self._finished(run_id, _("paused: {reason}").format(reason=reasons.run_reason(why)))

    def _finished(self, run_id: int, what: str) -> None:
        if self.on_run_done:
            self.on_run_done(run_id, what)

    def _drop(self, run_id: int, *, record: bool = True) -> None:
        st = self._runs.pop(run_id, None)
        if st is not None:
            if record:
                st.engine.close()
            else:  # a lost lease: leave the rows to the others, as a crash would
                st.engine.abandon()


class _BatchAborted(Exception):
    pass


__all__ = ["Worker", "WorkerReport", "spec_from_definition", "EXIT_LEASE_LOST"]
