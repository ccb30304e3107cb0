"""The dispatcher: claims queued deliveries, sends them through gateways, records every outcome.

Crash safety comes from the order of writes: a batch is marked ``sending`` (with a lease) and
committed *before* any request leaves; outcomes are committed after. A process killed in
between leaves ``sending`` rows whose owner is gone: :func:`recover` turns them into
``unknown`` and reconciles them with the gateway, and nothing ``unknown`` is ever resent
automatically.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import itertools
import random
import socket
import sys
import threading
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, and_, bindparam, func, or_, select, update
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from outreach import runs, states, suppression
from outreach import text as textmod
from outreach.campaigns import CampaignSpec
from outreach.clock import SYSTEM_CLOCK, Clock
from outreach.db import Database, retry_write
from outreach.gateways import base as gw
from outreach.models import Delivery, Run, Suppression

log = logging.getLogger(__name__)

LEASE_SECONDS = 300


class RateLimiter:
    """At most ``rate`` units (messages or segments) in any one-second window.

    A sliding log of the last second's sends (not a token bucket, which allows a burst of
    twice the rate across a window boundary). ``block_until`` holds every sender back, e.g.
    for a provider's Retry-After. ``rate`` 0 means unlimited. Thread-safe.
    """

    #: The window is a little longer than one second: a thread may be descheduled between
    #: taking its slot and its request leaving, so without a margin two requests that were a
    #: second apart here could arrive less than a second apart at the provider.
    WINDOW = 1.05

    def __init__(self, rate: float, clock: Clock = SYSTEM_CLOCK) -> None:
        self.rate = rate
        self.clock = clock
        self._log: deque[tuple[float, int]] = deque()
        self._used = 0
        self._blocked_until = 0.0
        self._lock = threading.Lock()

    def block_until(self, t: float) -> None:
        with self._lock:
            self._blocked_until = max(self._blocked_until, t)

    def acquire(self, units: int = 1) -> None:
        while True:
            with self._lock:
                now = self.clock.monotonic()
                wait = self._blocked_until - now
                if wait <= 0:
                    if not self.rate:
                        return
                    while self._log and self._log[0][0] <= now - self.WINDOW:
                        self._used -= self._log.popleft()[1]
                    units_eff = min(units, int(self.rate)) or 1
                    if self._used + units_eff <= self.rate:
                        self._log.append((now, units_eff))
                        self._used += units_eff
                        return
                    wait = self._log[0][0] + self.WINDOW - now
            self.clock.sleep(max(wait, 0.0005))


@dataclass
class Outcome:
    delivery_id: int
    kind: str  # sent | failed | opted_out | unknown | not_sent | stop
    result: gw.SendResult | None = None
    error: gw.GatewayError | None = None
    attempts: int = 1


@dataclass
class DispatchReport:
    """What one dispatcher call did. ``stopped`` says why it returned early (``paused``,
    ``cancelled``, ``window``, ``late``, ``interrupted``, ``error-rate``, ``gateway``,
    ``daily-cap``, ``awaiting-receipts``), None when the run completed."""

    run_id: int
    counts: dict[str, int] = field(default_factory=dict)
    stopped: str | None = None
    reason: str | None = None
    resume_at: dt.datetime | None = None
    reconciled: dict[str, int] = field(default_factory=dict)


#: Inode of Linux's initial PID namespace (``PROC_PID_INIT_INO`` in the kernel).
_INIT_PID_NS = 0xEFFFFFFC


def node_name() -> str:
    """This machine as lease owners name it: the host name, plus ``~<PID namespace>`` inside a
    container.

    Containers that share a host name (host networking) have separate PID namespaces, where a
    process id means nothing; qualifying the node keeps :func:`lease_orphaned` from judging a
    living process of another container dead. At most 40 characters (a long host name is cut
    and a hash of the whole added), so an owner id fits ``deliveries.lease_owner`` (64).
    """
    name = socket.gethostname()
    try:
        ns = os.stat("/proc/self/ns/pid").st_ino
    except OSError:  # no /proc (not Linux)
        ns = _INIT_PID_NS
    if ns != _INIT_PID_NS:
        name = f"{name}~{ns}"
    if len(name) > 40:
        name = f"{name[:27]}~{hashlib.sha1(name.encode()).hexdigest()[:12]}"
    return name


def owner_id() -> str:
    """``<node>:<pid>:<random>``: who holds a delivery's lease (``deliveries.lease_owner``)."""
    return f"{node_name()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def lease_orphaned(owner: str | None, expires_at: dt.datetime | None, now: dt.datetime) -> bool:
    """True when the owner of a ``sending`` row can no longer record its outcome.

    On this node (same host and PID namespace) the process id decides at once: a dead process
    is orphaned whatever its lease says, a living one never is (a worker renews its lease while
    it sends; an in-process dispatcher may take longer than its lease on a slow gateway). Owners
    in this very process, and on other nodes, are orphaned only once their lease has expired
    (``expires_at`` before ``now``, both aware UTC). A row without an owner is orphaned.
    """
    expired = expires_at is None or expires_at < now
    if not owner:
        return True
    pid = local_pid(owner)
    if pid is None or pid == os.getpid():
        return expired
    return not pid_alive(pid)


def local_pid(owner: str) -> int | None:
    """The process id in an owner id ``node:pid:nonce`` when the owner is on this node (same
    host and PID namespace), else None (another node, or not an owner id)."""
    try:
        node, pid_text, _ = owner.split(":")
        pid = int(pid_text)
    except ValueError:
        return None
    return pid if node == node_name() else None


def pid_alive(pid: int) -> bool:
    """True if process ``pid`` exists on this node (another user's process counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_switching_lock = threading.Lock()
_switching_users = 0
_switching_saved = 0.005


def _fast_switching(on: bool) -> None:
    """A 1 ms GIL switch interval while at least one dispatcher in this process is sending
    (see :meth:`Dispatcher.run`); the interval found before the first is restored after the
    last, so dispatchers running side by side (the scheduler) never leave it lowered."""
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


class Dispatcher:
    """Sends one run. ``gateways`` maps a channel (``sms``, ``zalo``) to a gateway instance.

    Rate per channel: the channel's ``rate_per_second`` (messages or segments per second, from
    the campaign file) or the gateway's default; ``concurrency`` requests in flight. Transient
    errors are retried with exponential backoff and jitter, honouring Retry-After, at most
    ``max_attempts`` times, then the delivery fails with the last reason (``rate-limited``...).
    A :class:`~outreach.gateways.base.StopRunError` or an error rate above
    ``error_rate_threshold`` over the last ``error_window`` results pauses the run.
    """

    def __init__(self, db: Database, spec: CampaignSpec, run_id: int,
                 gateways: dict[str, gw.Gateway], *, clock: Clock = SYSTEM_CLOCK,
                 batch_size: int = 500, max_attempts: int = 5, override_window: bool = False,
                 allow_late: bool = False, error_rate_threshold: float = 0.5,
                 error_window: int = 200, progress: Callable[[int, int], None] | None = None,
                 stop_event: threading.Event | None = None, owner: str | None = None,
                 limiters: dict[str, Any] | None = None, backoff_initial: float = 0.5,
                 backoff_max: float = 30.0, shared_rate: bool = False,
                 lease_seconds: float = LEASE_SECONDS) -> None:
        self.db, self.spec, self.run_id, self.gateways = db, spec, run_id, gateways
        self.clock = clock
        self.batch_size = batch_size
        self.max_attempts = max_attempts
        self.override_window = override_window
        self.allow_late = allow_late
        self.error_rate_threshold = error_rate_threshold
        self.error_window = error_window
        self.progress = progress
        self.stop_event = stop_event or threading.Event()
        self.owner = owner or owner_id()
        self.lease_seconds = lease_seconds
        self.backoff_initial, self.backoff_max = backoff_initial, backoff_max
        self._recent: deque[bool] = deque(maxlen=error_window)
        self._recent_bad = 0
        self._recent_lock = threading.Lock()
        self._parts: dict[str, tuple[str, str | None, str | None, dict[str, str]]] = {}
        self._opted_now: set[str] = set()  # addresses a provider reported opted out in this run
        self._window_closes: dt.datetime | None = None
        self._halt = threading.Event()
        self._window_shut = threading.Event()
        self._enforce_window = (not override_window
                                and any(g.reaches_phones for g in gateways.values()))
        self._halt_reason: tuple[str, str] | None = None
        self.limiters: dict[str, Any] = limiters or {}
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
            self.concurrency[ch.channel] = (ch.concurrency if configured and ch.concurrency
                                            else g.concurrency)
            if ch.channel not in self.limiters:
                if shared_rate and db.engine.dialect.name == "postgresql" and rate:
                    from outreach.ratelimit import SharedRateLimiter

                    self.limiters[ch.channel] = SharedRateLimiter(db, g.name, rate, clock=clock)
                else:
                    self.limiters[ch.channel] = RateLimiter(rate or 0, clock)

    # -- the loop ---------------------------------------------------------------------------
    def run(self) -> DispatchReport:
        report = DispatchReport(run_id=self.run_id)
        report.reconciled = retry_write(recover)(self.db, self.spec, self.run_id, self.gateways,
                                                 clock=self.clock)
        if self._start(report):
            return report
        total = sum(self._counts().values())
        done = total - self._counts().get(states.QUEUED, 0)
        # The outcomes of batch i are written by a writer thread while batch i+1 is being sent
        # (the next claim waits for that write: SQLite has one writer, and waiting here is
        # cheaper than its busy handler). Whatever stops the loop writes what is still pending.
        pending: tuple[list[dict[str, Any]], list[Outcome]] | None = None
        recording: Future[None] | None = None

        def settle() -> None:
            nonlocal recording
            if recording is not None:
                f, recording = recording, None
                f.result()

        # The writer thread spends its time in SQLite with the GIL released, and needs it back
        # after each statement; with Python's default 5 ms switch interval it waits up to 5 ms
        # each time behind the sending threads. 1 ms while sending (restored after).
        _fast_switching(True)
        with ThreadPoolExecutor(max_workers=max(self.concurrency.values() or [1])) as pool, \
                ThreadPoolExecutor(max_workers=1, thread_name_prefix="outreach-record") as writer:
            try:
                while True:
                    settle()  # on SQLite even a read transaction waits for the writer
                    stop = self._should_stop()
                    if stop:
                        report.stopped, report.reason, report.resume_at = stop
                        break
                    batch = self._claim()
                    if pending is not None:
                        recording = writer.submit(self._record, *pending)
                        pending = None
                    if not batch:
                        settle()
                        waiting = self._after_queue_empty()
                        if waiting:
                            report.stopped, report.reason, report.resume_at = waiting
                            break
                        if self._claimable():
                            continue
                        complete_if_done(self.db, self.run_id, now=self.clock.now())
                        break
                    outcomes = self._send_batch(pool, batch)
                    pending = (batch, outcomes)
                    self._window_shut.clear()
                    done += len(batch)
                    if self.progress:
                        self.progress(done, total)
                    if self._halt.is_set() and self._halt_reason:
                        settle()
                        self._record(*pending)
                        pending = None
                        kind, why = self._halt_reason
                        with self.db.engine.begin() as conn:
                            runs.set_status(conn, self.run_id, "paused", why, now=self.clock.now())
                        report.stopped, report.reason = kind, why
                        break
            finally:
                _fast_switching(False)
                try:
                    settle()
                finally:
                    if pending is not None:
                        self._record(*pending)
        report.counts = self._counts()
        return report

    @retry_write
    def _start(self, report: DispatchReport) -> bool:
        """Mark the run running; True (and ``report`` filled) if it must not be sent: finished,
        cancelled, or a scheduled run past its lateness limit."""
        with self.db.engine.begin() as conn:
            run = runs.get_run(conn, self.run_id)
            assert run is not None
            if run.status in ("completed", "cancelled", "missed"):
                report.counts = runs.remaining(conn, self.run_id)
                report.stopped = run.status if run.status != "completed" else None
                return True
            late = self._lateness(run)
            if late:
                runs.set_status(conn, self.run_id, "expired", late, now=self.clock.now())
                report.stopped, report.reason = "late", late
                report.counts = runs.remaining(conn, self.run_id)
                return True
            runs.set_status(conn, self.run_id, "running", None, now=self.clock.now())
        return False

    def _lateness(self, run: Run) -> str | None:
        if self.allow_late or run.started_at is not None or run.kind != "scheduled":
            return None
        limit = dt.timedelta(minutes=self.spec.window.lateness_limit_minutes)
        late_by = self.clock.now() - run.due_at
        if late_by > limit:
            return (f"the run was due at {run.due_at.astimezone(self.spec.window.tz):%Y-%m-%d %H:%M} "
                    f"and is {int(late_by.total_seconds() // 60)} min late, past the lateness limit "
                    f"of {self.spec.window.lateness_limit_minutes} min; not sent late silently "
                    "(resume with --allow-late to send anyway)")
        return None

    @retry_write  # between batches: another process's long write must not stop the run
    def _should_stop(self) -> tuple[str, str | None, dt.datetime | None] | None:
        now = self.clock.now()
        if self.stop_event.is_set():
            with self.db.engine.begin() as conn:
                runs.set_status(conn, self.run_id, "paused", "interrupted by the operator",
                                now=now)
            return "interrupted", "interrupted: in-flight sends finished and were recorded", None
        return self._check_run(now)

    def _check_run(self, now: dt.datetime) -> tuple[str, str | None, dt.datetime | None] | None:
        """Paused or cancelled by the operator, window closed, daily cap reached: (kind, reason,
        resume at) and the run's status updated; None when the run may go on."""
        with self.db.engine.connect() as conn:
            status, reason = conn.execute(select(Run.status, Run.status_reason)
                                          .where(Run.id == self.run_id)).one()
        if status in ("paused", "cancelled"):
            return status, reason, None
        if self._enforce_window and not self.spec.window.is_open(now):
            why = self.spec.window.closed_reason(now)
            nxt = self.spec.window.next_open(now)
            with self.db.engine.begin() as conn:
                if nxt is None:
                    runs.set_status(conn, self.run_id, "paused",
                                    f"send window closed for good: {why}", now=now)
                else:
                    runs.set_status(conn, self.run_id, "waiting", f"send window closed: {why}",
                                    now=now)
            return "window", why, nxt
        cap = self.spec.schedule.daily_cap
        if cap:
            # read, close, then write: on SQLite every transaction is BEGIN IMMEDIATE, so a
            # write opened while this read is open waits for itself until "database is locked"
            with self.db.engine.connect() as conn:
                reached = runs.sent_today(conn, self.spec.id, now) >= cap
            if reached:
                local = now.astimezone(self.spec.window.tz)
                nxt = self.spec.window.next_open(dt.datetime.combine(
                    local.date() + dt.timedelta(days=1), dt.time(0), tzinfo=self.spec.window.tz))
                with self.db.engine.begin() as c2:
                    runs.set_status(c2, self.run_id, "waiting",
                                    f"daily cap of {cap} messages reached", now=now)
                return "daily-cap", f"daily cap of {cap} reached", nxt
        return None

    def _after_queue_empty(self) -> tuple[str, str, dt.datetime | None] | None:
        """With channel fallback: create fallback deliveries, or wait for receipts."""
        if len(self.spec.channels) < 2:
            return None
        from outreach import fallback

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
            runs.set_status(conn, self.run_id, "waiting",
                            f"awaiting delivery receipts before falling back, until "
                            f"{wait_until.astimezone(self.spec.window.tz):%Y-%m-%d %H:%M}", now=now)
        return "awaiting-receipts", "waiting for receipts before channel fallback", wait_until

    @retry_write
    def _claimable(self) -> bool:
        with self.db.engine.connect() as conn:
            return conn.execute(select(Delivery.id).where(
                Delivery.run_id == self.run_id, Delivery.status == states.QUEUED).limit(1)).first() is not None

    @retry_write
    def _counts(self) -> dict[str, int]:
        with self.db.engine.connect() as conn:
            return runs.remaining(conn, self.run_id)

    # -- claim, send, record ----------------------------------------------------------------
    @retry_write
    def _claim(self) -> list[dict[str, Any]]:
        """Claim the next batch: ``sending`` under this owner's lease."""
        now = self.clock.now()
        lease = now + dt.timedelta(seconds=LEASE_SECONDS)
        with self.db.engine.begin() as conn:
            # opt-outs are checked again just before sending: queued rows whose number joined
            # the suppression list since the run was created become opted_out. Only the head of
            # the queue (the next batch_size rows in id order) is looked at, so the check costs
            # the same for the millionth batch as for the first; the claim below skips suppressed
            # numbers further on, and each is moved once it reaches the head.
            head = (select(Delivery.id).where(Delivery.run_id == self.run_id,
                                              Delivery.status == states.QUEUED)
                    .order_by(Delivery.id).limit(self.batch_size))
            blocked = conn.execute(
                select(Delivery.id).where(Delivery.id.in_(head.scalar_subquery()),
                                          Delivery.address.in_(select(Suppression.e164)))
            ).scalars().all()
            if blocked:
                states.apply(conn, [states.Change(i, states.OPTED_OUT,
                                                  {"error_reason": "suppressed"})
                                    for i in blocked], source="dispatcher", now=now)
            limit = self.batch_size
            cap = self.spec.schedule.daily_cap
            if cap:
                # never claim past the day's cap (checked between batches, it let a whole
                # batch through); none left: the next check stops the run until tomorrow
                limit = min(limit, cap - runs.sent_today(conn, self.spec.id, now))
                if limit <= 0:
                    return []
            return states.claim(conn, self.run_id, limit=limit, owner=self.owner,
                                lease_expires=lease, now=now)

    def _channel_parts(self, channel: str) -> tuple[str, str | None, str | None, dict[str, str]]:
        """(body, sender, template id, template data) of a channel, computed once."""
        parts = self._parts.get(channel)
        if parts is None:
            ch = self.spec.channel(channel)
            body = textmod.analyse(self.spec.text, unaccented=self.spec.unaccented or ch.unaccented,
                                   gsm_safe=self.spec.gsm_safe or ch.gsm_safe).text
            parts = self._parts[channel] = (body, ch.sender, ch.template_id,
                                            dict(ch.template_fields))
        return parts

    def _message(self, row: dict[str, Any]) -> gw.OutboundMessage:
        channel, address = row["channel"], row["address"]
        body, sender, template_id, template_data = self._channel_parts(channel)
        if row["body"] is not None:
            body = row["body"]  # personalised
        zalo_uid = None
        if channel == "zalo" and not address.startswith("+"):
            zalo_uid = address
        return gw.OutboundMessage(
            delivery_id=row["id"], campaign_id=self.spec.id, channel=channel, to=address,
            body=body, segments=row["segments"] or 1, sender=sender, zalo_user_id=zalo_uid,
            template_id=template_id, template_data=dict(template_data),
            receipt_token=row.get("receipt_token"))

    def _send_batch(self, pool: ThreadPoolExecutor, batch: list[dict[str, Any]]) -> list[Outcome]:
        """Send a batch: with concurrency ``k`` > 1, ``k`` threads take the messages in order
        from one shared counter (no future per message). Outcomes in the batch's order."""
        msgs = [self._message(r) for r in batch]
        self._window_closes = self._window_close(self.clock.now())
        width = min(len(msgs), max((self.concurrency.get(m.channel, 1) for m in msgs), default=1))
        if width <= 1:
            return [self._send_one(m) for m in msgs]
        out: list[Outcome | None] = [None] * len(msgs)
        counter = itertools.count()  # next() on it is atomic under the GIL
        n = len(msgs)
        send_one = self._send_one

        def work() -> None:
            while True:
                i = next(counter)
                if i >= n:
                    return
                out[i] = send_one(msgs[i])

        for f in [pool.submit(work) for _ in range(width)]:
            f.result()
        return out  # type: ignore[return-value]

    def _window_close(self, now: dt.datetime) -> dt.datetime | None:
        """When the send window open at ``now`` closes (the day's end or the campaign's last
        day), so each send compares one instant; None when no window applies."""
        if not self._enforce_window:
            return None
        w = self.spec.window
        if not w.is_open(now):
            return now  # closed already: every send of the batch stops
        local = now.astimezone(w.tz)
        return dt.datetime.combine(local.date(), w.daily_end, tzinfo=w.tz)

    def _backoff(self, attempt_number: int, exc: BaseException | None) -> float:
        """Exponential backoff with jitter (seconds), never shorter than the provider's
        Retry-After."""
        backoff = min(self.backoff_max, self.backoff_initial * 2 ** (attempt_number - 1))
        backoff = random.uniform(backoff / 2, backoff)
        retry_after = getattr(exc, "retry_after", None) or 0.0
        return max(backoff, retry_after)

    def _wait_after(self, first: BaseException) -> Callable[[RetryCallState], float]:
        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            return self._backoff(state.attempt_number + 1, exc or first)

        return wait

    def _send_one(self, msg: gw.OutboundMessage) -> Outcome:
        if self._halt.is_set() or self.stop_event.is_set() or self._window_shut.is_set():
            return Outcome(msg.delivery_id, "not_sent")
        if msg.to in self._opted_now:
            # a provider said this number opted out earlier in this run; the suppression list
            # gets it when that batch is written, which may be after this batch was claimed
            return Outcome(msg.delivery_id, "opted_out", error=gw.OptedOutError(
                "opted out earlier in this run", reason="suppressed"))
        gateway = self.gateways[msg.channel]
        limiter = self.limiters[msg.channel]
        units = msg.segments if self.units.get(msg.channel) == "segments" else 1
        attempts = 0

        def attempt() -> gw.SendResult:
            nonlocal attempts
            if self._halt.is_set() or self._window_shut.is_set():
                raise _Halted()
            limiter.acquire(units)
            closes = self._window_closes
            if closes is not None and self.clock.now() >= closes:
                # the window closed while this batch was under way: the rest waits for the
                # next window (the loop records the run as waiting)
                self._window_shut.set()
                raise _Halted()
            attempts += 1
            try:
                return gateway.send(msg)
            except gw.TransientError as exc:
                if exc.retry_after:
                    limiter.block_until(self.clock.monotonic() + exc.retry_after)
                log.info("delivery %s: transient %s (%s), will retry", msg.delivery_id,
                         exc.reason, exc.provider_code)
                raise

        try:
            try:
                result = attempt()  # the common case, without the retry machinery
            except gw.TransientError as first:
                if self.max_attempts <= 1:
                    raise
                retrying = Retrying(stop=stop_after_attempt(self.max_attempts - 1),
                                    wait=self._wait_after(first),
                                    retry=retry_if_exception_type(gw.TransientError),
                                    sleep=self.clock.sleep, reraise=True)
                self.clock.sleep(self._backoff(1, first))
                result = retrying(attempt)
        except _Halted:
            return Outcome(msg.delivery_id, "not_sent", attempts=attempts)
        except gw.OptedOutError as exc:
            self._opted_now.add(msg.to)
            return self._note(Outcome(msg.delivery_id, "opted_out", error=exc, attempts=attempts))
        except gw.PermanentError as exc:
            return self._note(Outcome(msg.delivery_id, "failed", error=exc, attempts=attempts), False)
        except gw.TransientError as exc:
            return self._note(Outcome(msg.delivery_id, "failed", error=exc, attempts=attempts), False)
        except gw.OutcomeUnknownError as exc:
            return self._note(Outcome(msg.delivery_id, "unknown", error=exc, attempts=attempts), False)
        except gw.StopRunError as exc:
            self._halt_with("gateway", f"{gateway.name}: {exc.reason} — {exc.detail or exc}"
                            f"{f' (code {exc.provider_code})' if exc.provider_code else ''}; "
                            "fix the gateway configuration, then `outreach campaign resume`")
            return Outcome(msg.delivery_id, "not_sent", error=exc, attempts=attempts)
        except gw.GatewayError as exc:
            return self._note(Outcome(msg.delivery_id, "failed", error=exc, attempts=attempts), False)
        except AbortBatch:
            raise
        except Exception as exc:  # noqa: BLE001 - a defect in an adapter, not a provider's answer
            # The request may have left before the adapter failed: unknown (never resent
            # automatically), and the run pauses rather than meeting the same defect for
            # every recipient.
            log.exception("delivery %s: %s.send raised %s", msg.delivery_id, gateway.name,
                          type(exc).__name__)
            self._halt_with("gateway", f"{gateway.name}: unexpected {type(exc).__name__} in the "
                            f"gateway adapter ({exc}); the delivery is recorded as unknown — see "
                            "the log, then `outreach campaign resume`")
            return Outcome(msg.delivery_id, "unknown", attempts=attempts,
                           error=gw.OutcomeUnknownError(f"{type(exc).__name__}: {exc}",
                                                        reason="adapter-error"))
        return self._note(Outcome(msg.delivery_id, "sent", result=result, attempts=attempts))

    def _note(self, outcome: Outcome, ok: bool = True) -> Outcome:
        # an opted-out or invalid number is the recipient's fact, not the gateway's health
        healthy = ok or isinstance(outcome.error, gw.PermanentError)
        with self._recent_lock:
            recent = self._recent
            if len(recent) == recent.maxlen and not recent[0]:
                self._recent_bad -= 1
            recent.append(healthy)
            if not healthy:
                self._recent_bad += 1
            if len(recent) < min(self.error_window, 20):
                return outcome
            bad = self._recent_bad / len(recent)
        if bad > self.error_rate_threshold:
            self._halt_with("error-rate",
                            f"{bad:.0%} of the last {len(self._recent)} sends failed "
                            f"(threshold {self.error_rate_threshold:.0%}); the run is paused "
                            "instead of burning through the list — check the gateway, then "
                            "`outreach campaign resume`")
        return outcome

    def _halt_with(self, kind: str, why: str) -> None:
        if not self._halt.is_set():
            self._halt_reason = (kind, why)
            self._halt.set()
            log.error("run %s paused: %s", self.run_id, why)

    @retry_write
    def _record(self, batch: list[dict[str, Any]], outcomes: list[Outcome]) -> None:
        """Write the outcomes of a batch in their own transaction."""
        with self.db.engine.begin() as conn:
            self._write_outcomes(conn, batch, outcomes)

    def _write_outcomes(self, conn: Connection, batch: list[dict[str, Any]],
                        outcomes: list[Outcome]) -> None:
        """Move every delivery of a sent batch to its outcome, in the caller's transaction:
        accepted sends through :func:`states.record_accepted`, the rest through
        :func:`states.apply`; provider opt-outs join the suppression list."""
        now = self.clock.now()
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
                select(Run.status).where(Run.id == self.run_id)).scalar_one() == "cancelled":
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
                            source=f"gateway:{','.join(g.name for g in self.gateways.values())}",
                            now=now, log=False)
        from outreach import receipts
        from outreach.models import PendingReceipt

        if conn.execute(select(PendingReceipt.id).where(
                PendingReceipt.applied_at.is_(None)).limit(1)).first() is not None:
            receipts.apply_pending(
                conn, now=now, delivery_ids=[o.delivery_id for o in outcomes],
                provider_ids=[o.result.provider_message_id for o in outcomes if o.result])


class _Halted(Exception):
    pass


class AbortBatch(Exception):  # noqa: N818 - a control signal, not an error of a message
    """Raised through a gateway to abandon the whole batch at once, leaving its rows as a crash
    would (``sending``, for reconciliation): e.g. a worker that can no longer renew its lease
    (:class:`outreach.worker.LeaseLost`). Any other unexpected exception from a gateway makes
    that one delivery ``unknown`` and pauses the run."""


def recover(db: Database, spec: CampaignSpec, run_id: int, gateways: dict[str, gw.Gateway], *,
            clock: Clock = SYSTEM_CLOCK) -> dict[str, int]:
    """Turn ``sending`` rows of dead owners into ``unknown`` and reconcile every ``unknown``.

    An owner is dead as :func:`lease_orphaned` says: on this host when its process no longer
    exists, elsewhere when its lease expired. Reconciliation asks the gateway
    (:meth:`Gateway.lookup`): found → ``sent``/``delivered``; certainly never received → back
    to ``queued`` (safe to send); cannot be asked → stays ``unknown`` for the operator
    (``outreach deliveries resolve``). Safe with several workers recovering the same run at
    once: each decision is re-checked on the locked row before it is applied. Returns counts.
    """
    now = clock.now()
    out = {"orphaned": 0, "found": 0, "requeued": 0, "still_unknown": 0}
    with db.engine.begin() as conn:
        cols = (Delivery.id, Delivery.lease_owner, Delivery.lease_expires_at)
        rows = conn.execute(select(*cols).where(Delivery.run_id == run_id,
                                                Delivery.status == states.SENDING)).all()
        dead = [r.id for r in rows if lease_orphaned(r.lease_owner, r.lease_expires_at, now)]
        if dead and conn.dialect.name == "postgresql":
            # decide again on the locked rows: a lease renewed or an outcome recorded since
            # the first read wins; rows locked by a living owner's record are skipped
            locked = conn.execute(select(*cols).where(Delivery.id.in_(dead),
                                                      Delivery.status == states.SENDING)
                                  .order_by(Delivery.id).with_for_update(skip_locked=True)).all()
            dead = [r.id for r in locked if lease_orphaned(r.lease_owner, r.lease_expires_at, now)]
        if dead:
            states.apply(conn, [states.Change(i, states.UNKNOWN, {"error_reason": "interrupted"},
                                              detail="the sending process stopped before "
                                                     "recording the outcome") for i in dead],
                         source="reconcile", now=now)
        out["orphaned"] = len(dead)
        unknown = conn.execute(select(Delivery.id, Delivery.channel, Delivery.address,
                                      Delivery.body, Delivery.segments, Delivery.recipient_id,
                                      Delivery.carrier, Delivery.sending_at)
                               .where(Delivery.run_id == run_id,
                                      Delivery.status == states.UNKNOWN)).all()
    if not unknown:
        return out
    d = Dispatcher.__new__(Dispatcher)
    d.spec = spec
    d._parts = {}
    changes: list[states.Change] = []
    for r in unknown:
        g = gateways.get(r.channel)
        if g is None:
            out["still_unknown"] += 1
            continue
        msg = Dispatcher._message(d, dict(r._mapping))
        since = (r.sending_at or now) - dt.timedelta(minutes=5)
        try:
            found = g.lookup(msg, since, now + dt.timedelta(minutes=5))
        except gw.GatewayError as exc:
            log.warning("reconciliation of delivery %s failed: %s", r.id, exc)
            found = None
        if found is None:
            out["still_unknown"] += 1
        elif found is False:
            changes.append(states.Change(r.id, states.QUEUED, backward="not-sent",
                                         detail=f"{g.name} confirms it never received this message"))
        else:
            changes.append(states.Change(r.id, found.status if found.status in
                                         (states.SENT, states.DELIVERED, states.UNDELIVERED,
                                          states.FAILED) else states.SENT,
                                         {"provider_message_id": found.provider_message_id,
                                          "provider_status": found.provider_status,
                                          "error_code": found.error_code},
                                         detail=f"reconciled with {g.name}"))
    if changes:
        with db.engine.begin() as conn:
            # another worker may have reconciled (and requeued, and a third claimed) a row
            # meanwhile: only rows still unknown, locked until this commits, are changed
            stmt = select(Delivery.id).where(Delivery.id.in_([c.delivery_id for c in changes]),
                                             Delivery.status == states.UNKNOWN)
            if conn.dialect.name == "postgresql":
                stmt = stmt.order_by(Delivery.id).with_for_update()
            still = set(conn.execute(stmt).scalars())
            changes = [c for c in changes if c.delivery_id in still]
            states.apply(conn, changes, source="reconcile", now=clock.now())
        for c in changes:
            out["requeued" if c.new_status == states.QUEUED else "found"] += 1
    return out


def resolve_unknown(conn: Connection, delivery_ids: list[int], *, action: str,
                    now: dt.datetime) -> dict[int, bool]:
    """The operator's explicit decision on ``unknown`` deliveries: ``resend`` (back to the queue)
    or ``sent`` (treat as sent) or ``skip``."""
    if action == "resend":
        changes = [states.Change(i, states.QUEUED, backward="operator",
                                 detail="operator chose to resend") for i in delivery_ids]
    elif action == "sent":
        changes = [states.Change(i, states.SENT, detail="operator marked as sent")
                   for i in delivery_ids]
    elif action == "skip":
        changes = [states.Change(i, states.SKIPPED, {"error_reason": "operator-skipped"},
                                 backward="operator", detail="operator chose not to resend")
                   for i in delivery_ids]
    else:
        raise ValueError(f"unknown action {action!r}")
    result = states.apply(conn, changes, source="operator", now=now)
    if action == "resend":
        # a finished run with requeued deliveries is open again for `campaign resume`
        run_ids = conn.execute(select(Delivery.run_id).where(
            Delivery.id.in_([i for i, ok in result.items() if ok])).distinct()).scalars().all()
        conn.execute(update(Run).where(Run.id.in_(run_ids), Run.status == "completed")
                     .values(status="paused", status_reason="deliveries requeued by the operator",
                             finished_at=None))
    return result


def stale_sending(conn: Connection, run_id: int, now: dt.datetime) -> int:
    """How many ``sending`` rows of the run have a dead owner (:func:`lease_orphaned`)."""
    rows = conn.execute(select(Delivery.lease_owner, Delivery.lease_expires_at).where(
        Delivery.run_id == run_id, Delivery.status == states.SENDING)).all()
    return sum(1 for r in rows if lease_orphaned(r.lease_owner, r.lease_expires_at, now))


@retry_write
def complete_if_done(db: Database, run_id: int, *, now: dt.datetime) -> bool:
    """Mark the run ``completed`` if it is still going and none of its deliveries is ``queued``
    or ``sending``; True if this call completed it.

    One conditional UPDATE, so several workers finishing the same run at once complete it
    exactly once (the others match no row), and a run paused or cancelled meanwhile is left
    alone. ``unknown`` deliveries do not hold a run open; the reason says how many there are.
    """
    open_rows = select(Delivery.id).where(Delivery.run_id == run_id,
                                          Delivery.status.in_((states.QUEUED, states.SENDING)))
    with db.engine.begin() as conn:
        unknown = conn.execute(select(func.count()).select_from(Delivery).where(
            Delivery.run_id == run_id, Delivery.status == states.UNKNOWN)).scalar_one()
        reason = (f"{unknown} deliveries with unknown outcome: see "
                  "`outreach deliveries list --status unknown`" if unknown else None)
        done = conn.execute(update(Run).where(
            Run.id == run_id, Run.status.in_(("created", "running", "waiting")),
            ~open_rows.exists()).values(status="completed", status_reason=reason,
                                        finished_at=now)).rowcount
    return bool(done)


__all__ = ["Dispatcher", "RateLimiter", "DispatchReport", "AbortBatch", "recover",
           "resolve_unknown", "and_", "or_", "update"]
