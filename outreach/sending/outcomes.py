"""Outcomes of sends and the one place that writes them: a batch's deliveries moved to their
outcome through :mod:`outreach.ledger.states`, provider opt-outs added to the suppression list."""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, select, update
from sqlalchemy.exc import SQLAlchemyError

from outreach.i18n import _
from outreach.ledger import runstates, states, suppression
from outreach.clock import Clock
from outreach.ledger.db import Database, retry_write
from outreach.gateways import base as gw
from outreach.ledger.models import Delivery, PendingReceipt, Run

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    """What one send came to: ``kind`` is ``sent``, ``failed``, ``opted_out``, ``unknown`` or
    ``not_sent`` (the request never left: the row goes back to the queue)."""

    delivery_id: int
    kind: str
    result: gw.SendResult | None = None
    error: gw.GatewayError | None = None
    attempts: int = 1


def write_outcomes(conn: Connection, run_id: int, batch: list[dict[str, Any]],
               outcomes: list[Outcome], *, gateway_names: Iterable[str],
               now: dt.datetime) -> None:
    """Move every delivery of a sent batch to its outcome, in the caller's transaction:
    accepted sends through :func:`states.record_accepted`, the rest through
    :func:`states.apply`; provider opt-outs join the suppression list (source
    ``gateway:<names>``); receipts that arrived before the send was recorded are applied."""
    accepted: list[states.Accepted] = []
    changes: list[states.Change] = []
    opted: list[str] = []
    by_id = {r["id"]: r for r in batch}
    for o in outcomes:
        e = o.error
        if o.kind == "sent":
            r = o.result
            assert r is not None
            accepted.append((o.delivery_id, r.status if r.status in
                             (states.SENT, states.DELIVERED) else states.SENT,
                             r.provider_message_id, r.provider_status, r.segments or None,
                             r.price_vnd))
        elif o.kind == "not_sent":
            changes.append(states.Change(o.delivery_id, states.QUEUED,
                                         detail="not sent: run halted before this request",
                                         backward="not-sent"))
        else:
            assert e is not None
            new = {"failed": states.FAILED, "opted_out": states.OPTED_OUT,
                   "unknown": states.UNKNOWN}[o.kind]
            changes.append(states.Change(o.delivery_id, new,
                                         {"error_code": e.provider_code,
                                          "error_reason": e.reason},
                                         detail=e.detail or str(e), error_code=e.provider_code))
            if o.kind == "opted_out":
                opted.append(by_id[o.delivery_id]["address"])
    if any(c.new_status == states.QUEUED for c in changes) and conn.execute(
            select(Run.status).where(Run.id == run_id)).scalar_one() == runstates.CANCELLED:
        # the operator cancelled the run while this batch was out: what was not sent is
        # skipped like the rest of the queue was (ops.cancel), not left queued
        changes += [states.Change(c.delivery_id, states.SKIPPED, {"error_reason": "cancelled"})
                    for c in changes if c.new_status == states.QUEUED]
    applied = states.record_accepted(conn, accepted, source="dispatcher", now=now)
    states.apply(conn, changes, source="dispatcher", now=now, lock=False)
    late_ids = [(a[2], a[0]) for a in accepted if not applied[a[0]]]
    if late_ids:
        # a receipt overtook us (delivered before we stored the provider id): keep the
        # id so later receipts and syncs still match this delivery
        conn.execute(update(Delivery).where(
            Delivery.id == bindparam("b_id"), Delivery.provider_message_id.is_(None))
            .values(provider_message_id=bindparam("b_sid")),
            [{"b_id": i, "b_sid": sid} for sid, i in late_ids])
    if opted:
        suppression.add(conn, opted, reason="provider-opt-out",
                        source=f"gateway:{','.join(gateway_names)}",
                        now=now, log=False)
    from outreach.receipts import writer as receipts  # receipts import the ledger, not the send path

    if conn.execute(select(PendingReceipt.id).where(
            PendingReceipt.applied_at.is_(None)).limit(1)).first() is not None:
        receipts.apply_pending(
            conn, now=now, delivery_ids=[o.delivery_id for o in outcomes],
            provider_ids=[o.result.provider_message_id for o in outcomes if o.result])



class RecordFailed(Exception):
    """Starts or outcomes could not be written within the writer's deadline: the sender must
    stop so that the rows (still ``sending``) are reconciled as after a crash."""


class LedgerWriter:
    """The one writer of a run's sends, in group commits on its own thread.

    Two kinds of write, in the same transactions:

    * **starts** — :meth:`start` blocks until the delivery's ``sending_at`` (the instant its
      request leaves) is committed. A claimed row whose start was never committed certainly
      never left, so after a crash it goes straight back to the queue; only started rows can be
      ``unknown``. With ``lookahead`` > 0 the writer also marks that many further rows of the
      batch (in claim order) so a fast gateway never waits for a commit; the lookahead doubles
      (up to ``max_lookahead``) each time a sender had to wait. Gateways that cannot be asked
      about a message (:attr:`~outreach.gateways.base.Gateway.can_confirm`) use none, so after
      a crash at most the requests in flight are ``unknown``;
    * **outcomes** — :meth:`outcome` queues a send's outcome (no wait); the writer moves the
      row with :func:`write_outcomes` in the next group.

    With ``claimed_started`` every batch arrives started already (the claim set its
    ``sending_at``: :func:`outreach.ledger.states.claim` with ``started``), so :meth:`start`
    never waits and the writer writes outcomes only.

    :meth:`hold` makes the outcomes queued from then on wait until :meth:`release` (or a
    flush): the engine holds a batch's outcomes until the next batch is claimed, so on SQLite,
    where the two writes take turns at one lock, the claim goes first and the outcomes are
    written while that batch is being sent, instead of the claim waiting behind them and the
    writer idle while it is sent.

    :meth:`flush` waits until everything queued is committed. Database errors are retried
    (SQLite locks always; anything else for up to ``deadline`` seconds when given), then the
    writer fails: :meth:`start` and :meth:`flush` raise :class:`RecordFailed`.
    """

    def __init__(self, db: Database, run_id: int, *, gateway_names: Iterable[str], clock: Clock,
                 owner: str, lookahead: int = 0, max_lookahead: int = 4096,
                 deadline: float | None = None,
                 on_recorded: Callable[[int], None] | None = None,
                 claimed_started: bool = False) -> None:
        self.db, self.run_id, self.clock, self.owner = db, run_id, clock, owner
        self.claimed_started = claimed_started
        #: called from the writer thread after each commit with the number of sends whose
        #: outcome it recorded (requests never sent, returned to the queue, not counted)
        self.on_recorded = on_recorded
        self.gateway_names = list(gateway_names)
        self.lookahead, self.max_lookahead = lookahead, max_lookahead
        # with marks ahead, outcomes wait longer for company (a crash meanwhile leaves them to
        # reconciliation, which such a gateway answers); without, every start writes them
        self.linger = self.LINGER_SECONDS * (5 if lookahead else 1)
        self.deadline = deadline
        self._cond = threading.Condition()
        self._order: list[int] = []          # the batch's delivery ids in claim order
        self._rows: dict[int, dict[str, Any]] = {}
        self._pos: dict[int, int] = {}
        self._wanted = -1                    # highest position a sender asked to start
        self._marked = 0                     # positions [0, _marked) are committed started
        self._marking = 0                    # positions being committed now
        self._generation = 0                 # which batch _order is
        self._outcomes: list[Outcome] = []
        self._held: list[Outcome] | None = None  # outcomes queued while held (None: not held)
        self._released = False               # held outcomes let go: written without lingering
        self._held_since = 0.0               # when the first outcome now held was queued
        self._queued = 0                     # generation of outcomes queued ...
        self._written = 0                    # ... and committed
        self._failed: BaseException | None = None
        self._flushing = 0
        self._stop = False
        self._conn: Connection | None = None  # the writer thread's own
        self._thread = threading.Thread(target=self._loop, name="outreach-ledger", daemon=True)
        self._thread.start()

    #: outcomes are written at least this often (seconds; five times longer with marks ahead)
    #: and at most this many at a time, unless a sender waits for a start (then at once)
    LINGER_SECONDS = 0.02
    MAX_GROUP = 2000
    #: held outcomes (:meth:`hold`) wait at most this long (seconds)
    HOLD_SECONDS = 0.5

    # -- senders' side -------------------------------------------------------------------------
    def begin(self, rows: list[dict[str, Any]]) -> None:
        """A new batch, in the order it will be sent. Outcomes of the previous one may still
        be on their way: they are written with it."""
        with self._cond:
            self._generation += 1
            self._order = [r["id"] for r in rows]
            if not self._outcomes and not self._held:
                self._rows = {}
            self._rows.update((r["id"], r) for r in rows)
            self._pos = {r["id"]: i for i, r in enumerate(rows)}
            self._wanted, self._marked, self._marking = -1, 0, 0
            if self.claimed_started:  # every row's start committed with its claim
                self._wanted = self._marked = self._marking = len(self._order)
            elif self.lookahead:
                self._wanted = 0  # mark the head of the batch before the first sender asks
                self._cond.notify_all()

    def _needs_marks(self) -> bool:
        if self._marking >= len(self._order):
            return False
        if self.lookahead:
            # refill when the senders are half way through what is marked ahead
            return self._wanted + self.lookahead // 2 >= self._marking
        return self._wanted >= self._marking

    def start(self, delivery_id: int) -> None:
        """Block until the start of ``delivery_id``'s request is committed. Raises
        :class:`RecordFailed`."""
        with self._cond:
            pos = self._pos[delivery_id]
            if pos > self._wanted:
                self._wanted = pos
                if self._needs_marks():
                    self._cond.notify_all()
            if pos < self._marked:
                return
            if self.lookahead and self.lookahead < self.max_lookahead:
                self.lookahead = min(self.max_lookahead, self.lookahead * 2)
            self._cond.notify_all()
            while pos >= self._marked:
                if self._failed is not None:
                    raise RecordFailed(str(self._failed)) from self._failed
                self._cond.wait()

    def outcome(self, outcome: Outcome) -> None:
        with self._cond:
            self._queued += 1
            if self._held is not None:
                self._hold([outcome])
                return
            self._outcomes.append(outcome)
            # the first outcome of a group wakes the writer so that it lingers from now (with
            # batches claimed started no start request would wake it before the batch ends)
            if len(self._outcomes) == 1 or len(self._outcomes) >= self.MAX_GROUP:
                self._cond.notify_all()

    def outcomes(self, outcomes: list[Outcome]) -> None:
        """Queue several outcomes at once (a batch sent in one request)."""
        with self._cond:
            self._queued += len(outcomes)
            if self._held is not None:
                self._hold(outcomes)
                return
            self._outcomes.extend(outcomes)
            self._cond.notify_all()

    def hold(self) -> None:
        """Outcomes queued from now on wait for :meth:`release` or :meth:`flush`, or
        :attr:`HOLD_SECONDS` at most (a slow batch's progress is still recorded as it goes)."""
        with self._cond:
            if self._held is None:
                self._held = []

    def _hold(self, outcomes: list[Outcome]) -> None:
        assert self._held is not None
        if not self._held:
            self._held_since = time.monotonic()
            self._cond.notify_all()  # the writer times the hold from now
        self._held.extend(outcomes)

    def release(self) -> None:
        """Let the held outcomes be written (in the next group)."""
        with self._cond:
            self._release()

    def _release(self) -> None:
        held, self._held = self._held, None
        if held:
            self._outcomes.extend(held)
            self._released = True
            self._cond.notify_all()

    def flush(self) -> None:
        """Wait until every outcome queued so far is committed. Raises :class:`RecordFailed`."""
        with self._cond:
            self._release()
            target = self._queued
            self._flushing += 1
            self._cond.notify_all()
            try:
                while self._written < target:
                    if self._failed is not None:
                        raise RecordFailed(str(self._failed)) from self._failed
                    self._cond.wait()
                if self._failed is not None:
                    raise RecordFailed(str(self._failed)) from self._failed
            finally:
                self._flushing -= 1

    def close(self) -> None:
        """Write what is queued, then stop the thread (raises :class:`RecordFailed`)."""
        try:
            self.flush()
        finally:
            with self._cond:
                self._stop = True
                self._cond.notify_all()
            self._thread.join(timeout=30)

    def abandon(self) -> None:
        """Stop without writing what is queued (a lost lease: the rows stay as after a crash)."""
        with self._cond:
            self._outcomes.clear()
            self._held = None
            self._stop = True
            self._cond.notify_all()

    # -- the writer thread ---------------------------------------------------------------------
    def _expire_hold(self) -> float | None:
        """Let go of outcomes held :attr:`HOLD_SECONDS` (holding on for later ones); returns
        the seconds until the held ones are due, None when none are held."""
        if not self._held:
            return None
        left = self._held_since + self.HOLD_SECONDS - time.monotonic()
        if left > 0:
            return left
        self._outcomes.extend(self._held)
        self._held = []
        self._released = True
        return None

    def _due(self, since: float) -> bool:
        return bool(self._outcomes) and (
            self._flushing > 0 or self._stop or self._released
            or len(self._outcomes) >= self.MAX_GROUP or time.monotonic() - since >= self.linger)

    def _loop(self) -> None:
        try:
            self._run()
        finally:
            self._close_conn()

    def _run(self) -> None:
        since = time.monotonic()
        while True:
            with self._cond:
                while True:
                    hold_left = self._expire_hold()
                    if (self._stop and not self._outcomes) or self._needs_marks() \
                            or self._due(since):
                        break
                    waits = [t for t in (self.linger if self._outcomes else None, hold_left)
                             if t is not None]
                    self._cond.wait(min(waits) if waits else None)
                if self._stop and not self._outcomes and not self._needs_marks():
                    return
                start_from = self._marking
                upto = start_from
                if self._needs_marks():
                    upto = min(len(self._order), max(self._wanted, start_from) + 1
                               + self.lookahead)
                starts = self._order[start_from:upto]
                if starts and self.lookahead and not self._due(since):
                    # marks ahead first, on their own: a sender may be about to wait for them
                    outcomes, generation = [], self._written
                else:
                    outcomes, self._outcomes = self._outcomes, []
                    self._released = False
                    # every outcome queued so far but those still held
                    generation = self._queued - len(self._held or ())
                rows = dict(self._rows) if outcomes else self._rows
                batch = self._generation
                self._marking = upto
            if outcomes:
                since = time.monotonic()
            try:
                self._write(starts, outcomes, rows)
            except BaseException as exc:  # noqa: BLE001 - handed to every waiting sender
                log.error(_("run {run}: writing {starts} starts and {outcomes} outcomes failed: "
                            "{error}").format(run=self.run_id, starts=len(starts),
                                              outcomes=len(outcomes), error=exc))
                with self._cond:
                    self._failed = exc
                    self._cond.notify_all()
                return
            with self._cond:
                if batch == self._generation:  # not a batch begun meanwhile
                    self._marked = max(self._marked, upto)
                self._written = max(self._written, generation)
                self._cond.notify_all()
            recorded = sum(1 for o in outcomes if o.kind != "not_sent")
            if recorded and self.on_recorded is not None:
                try:
                    self.on_recorded(recorded)
                except Exception as exc:  # noqa: BLE001 - a progress display never stops the writer
                    log.error(_("the progress display failed: {error}").format(error=exc),
                              exc_info=log.isEnabledFor(logging.DEBUG))

    def _write(self, starts: list[int], outcomes: list[Outcome],
               rows: dict[int, dict[str, Any]]) -> None:
        until = time.monotonic() + self.deadline if self.deadline else None
        delay = 0.2
        while True:
            try:
                retry_write(self._transaction)(starts, outcomes, rows)
                return
            except SQLAlchemyError as exc:
                if until is None or time.monotonic() + delay > until:
                    raise
                log.warning(_("recording sends failed, trying again: {error}").format(error=exc))
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _transaction(self, starts: list[int], outcomes: list[Outcome],
                     rows: dict[int, dict[str, Any]]) -> None:
        now = self.clock.now()
        # one connection kept by the writer thread: a start waits for this commit, and a pool
        # checkout plus the rollback of its return cost about a fifth of a small group's time
        if self._conn is None:
            self._conn = self.db.engine.connect()
        conn = self._conn
        try:
            with conn.begin():
                if starts:
                    states.mark_started(conn, starts, owner=self.owner, now=now)
                if outcomes:
                    write_outcomes(conn, self.run_id, [rows[o.delivery_id] for o in outcomes],
                                   outcomes, gateway_names=self.gateway_names, now=now)
        except BaseException:
            self._close_conn()  # a retry starts on a fresh connection
            raise

    def _close_conn(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception as exc:  # noqa: BLE001 - a broken connection is discarded anyway
                log.debug("closing the writer's connection: %s", exc)


__all__ = ["Outcome", "write_outcomes", "LedgerWriter", "RecordFailed"]
