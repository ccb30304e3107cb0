"""Sending a claimed batch: each message through its gateway, under the rate limit and the send
window, with retries of transient errors, and the halts that pause a run."""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import random
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from outreach.i18n import N_, _
from outreach.sending import outbound, reasons
from outreach.input.campaigns import CampaignSpec
from outreach.clock import Clock
from outreach.gateways import base as gw
from outreach.sending.leases import Lease, LeaseLost
from outreach.sending.outcomes import LedgerWriter, Outcome, RecordFailed

log = logging.getLogger(__name__)


class AbortBatch(Exception):  # noqa: N818 - a control signal, not an error of a message
    """Raised through a gateway to abandon the whole batch at once, leaving its rows as a crash
    would (``sending``, for reconciliation). Any other unexpected exception from a gateway
    makes that one delivery ``unknown`` and pauses the run."""


class _Halted(Exception):
    pass


class _Health:
    """The error rate over the last ``window`` sends; an opted-out or invalid number is the
    recipient's fact, not the gateway's health."""

    def __init__(self, window: int) -> None:
        self.window = window
        self._recent: deque[bool] = deque(maxlen=window)
        self._bad = 0
        self._lock = threading.Lock()

    def note(self, healthy: bool) -> float | None:
        """Record one send; the failure share once enough sends were seen, else None."""
        with self._lock:
            recent = self._recent
            if len(recent) == recent.maxlen and not recent[0]:
                self._bad -= 1
            recent.append(healthy)
            if not healthy:
                self._bad += 1
            if len(recent) < min(self.window, 20):
                return None
            return self._bad / len(recent)

    def note_healthy(self, n: int) -> None:
        """Record ``n`` healthy sends at once (what ``n`` calls of :meth:`note` with True
        record; the share they return is never higher than the first one's)."""
        with self._lock:
            recent = self._recent
            drop = len(recent) + n - (recent.maxlen or 0)
            if drop >= len(recent):
                self._bad = 0
            elif drop > 0:
                self._bad -= sum(1 for i in range(drop) if not recent[i])
            recent.extend(itertools.repeat(True, min(n, recent.maxlen or 0)))

    def __len__(self) -> int:
        return len(self._recent)


#: A run whose first sends all fail with one content-level code pauses after this many: the
#: provider refuses the message itself (Twilio 21617, Zalo -112, SMPP ESME_RINVMSGLEN...; the
#: ``"content": true`` entries of each adapter's code table), so every recipient would fail.
CONTENT_PAUSE_AFTER = 5


class BatchSender:
    """Sends the messages of claimed batches for one run and says how each ended
    (:class:`~outreach.sending.outcomes.Outcome`), never raising for a provider's answer.

    ``gateways``/``limiters``/``units``/``concurrency`` are per channel. Transient errors are
    retried at most ``max_attempts`` times with exponential backoff and jitter (``backoff_initial``
    to ``backoff_max`` seconds, never shorter than a Retry-After, during which the limiter holds
    every sender back). A :class:`~outreach.gateways.base.StopRunError`, an unexpected adapter
    exception, or more than ``error_rate_threshold`` failures over the last ``error_window``
    sends set :attr:`halted` with (kind, reason); so do the first ``content_pause_after``
    sends (5) of this sender all failing with the same content-level code
    (:attr:`outreach.gateways.base.GatewayError.content`: the message itself is refused,
    kind ``content``); later sends come back ``not_sent``. With
    ``enforce_window`` no request leaves once the campaign's send window has closed
    (:attr:`window_shut`). Each request's start is committed through ``writer`` just before it
    leaves, and each outcome handed to it as it comes. Raises
    :class:`~outreach.sending.leases.LeaseLost` (the lease could not be renewed),
    :class:`~outreach.sending.outcomes.RecordFailed` and :class:`AbortBatch` through, abandoning the
    batch.
    """

    def __init__(self, spec: CampaignSpec, gateways: dict[str, gw.Gateway], *,
                 limiters: dict[str, Any], units: dict[str, str], concurrency: dict[str, int],
                 clock: Clock, lease: Lease, writer: LedgerWriter, stop_event: threading.Event,
                 enforce_window: bool,
                 max_attempts: int = 5, backoff_initial: float = 0.5, backoff_max: float = 30.0,
                 error_rate_threshold: float = 0.5, error_window: int = 200,
                 content_pause_after: int = CONTENT_PAUSE_AFTER) -> None:
        self.spec, self.gateways, self.clock, self.lease = spec, gateways, clock, lease
        self.content_pause_after = content_pause_after
        self._early: list[tuple[str | None, str]] = []  # the first sends' content-level codes
        self._early_over = content_pause_after <= 0
        self._early_lock = threading.Lock()
        self.writer = writer
        self.limiters, self.units, self.concurrency = limiters, units, concurrency
        self.stop_event = stop_event
        self.max_attempts = max_attempts
        self.backoff_initial, self.backoff_max = backoff_initial, backoff_max
        self.error_rate_threshold = error_rate_threshold
        self._enforce_window = enforce_window
        self._health = _Health(error_window)
        self._parts: outbound.ChannelParts = {}
        self._opted_now: set[str] = set()  # addresses a provider reported opted out in this run
        self._window_closes: dt.datetime | None = None
        self._halt = threading.Event()
        self._halt_reason: tuple[str, str] | None = None
        self.window_shut = threading.Event()
        width = max(concurrency.values() or [1])
        self._pool = ThreadPoolExecutor(max_workers=width, thread_name_prefix="outreach-send")

    @property
    def halted(self) -> tuple[str, str] | None:
        """(kind, reason) once a send halted the run (``gateway``, ``error-rate``), else None."""
        return self._halt_reason if self._halt.is_set() else None

    def close(self, *, wait: bool = True) -> None:
        self._pool.shutdown(wait=wait)

    def send_batch(self, batch: list[dict[str, Any]]) -> list[Outcome]:
        """Send a batch (claimed rows, in order); outcomes in the batch's order.

        With concurrency ``k`` > 1, ``k`` threads take the messages in order from one shared
        counter (no future per message). A number that occurs twice in the batch (two
        deliveries by phone) is sent the second time only after the first answer is in, so a
        provider's opt-out on the first stops the second.
        """
        msgs = [outbound.message(self.spec, r, self._parts) for r in batch]
        self.writer.begin(batch)
        self._window_closes = self._window_close(self.clock.now())
        together = self._together(msgs)
        if together is not None:
            return self._send_together(msgs, together)
        width = min(len(msgs), max((self.concurrency.get(m.channel, 1) for m in msgs), default=1))
        if width <= 1:
            return [self._send_one(m) for m in msgs]
        out: list[Outcome | None] = [None] * len(msgs)
        seen: set[str] = set()
        firsts: list[int] = []
        repeats: list[int] = []
        for i, m in enumerate(msgs):
            (repeats if m.to in seen else firsts).append(i)
            seen.add(m.to)
        for order in (firsts, repeats):
            self._send_parallel(msgs, order, out, width)
            repeats_left = [i for i in repeats if out[i] is None]
            if order is firsts and repeats_left and len(set(msgs[i].to for i in repeats_left)) \
                    < len(repeats_left):
                # a number three times or more: one by one
                for i in repeats_left:
                    out[i] = self._send_one(msgs[i])
                break
        return out  # type: ignore[return-value]

    def _together(self, msgs: list[gw.OutboundMessage]) -> gw.Gateway | None:
        """The gateway that takes this whole batch in one :meth:`~outreach.gateways.base.Gateway.send_many`
        — a batched gateway (the outbox, the CLI's mock) of one channel, with no rate limit,
        every number once in the batch — else None (message by message). A send window is
        checked once, just before the batch's one request."""
        if not msgs:
            return None
        channel = msgs[0].channel
        gateway = self.gateways.get(channel)
        limiter = self.limiters.get(channel)
        if gateway is None or not gateway.batched or getattr(limiter, "rate", None) != 0:
            return None
        if any(m.channel != channel for m in msgs) or len({m.to for m in msgs}) < len(msgs):
            return None
        return gateway

    def _send_together(self, msgs: list[gw.OutboundMessage], gateway: gw.Gateway) -> list[Outcome]:
        """The batch in one request: the starts of all its rows committed first (one
        transaction), then one ``send_many``, then the outcomes handed to the writer. The same
        guarantees as one by one: nothing leaves before its start is committed; an error of the
        request makes every row of it ``unknown`` (reconciliation asks the gateway) and pauses
        the run."""
        out: list[Outcome] = []
        todo: list[gw.OutboundMessage] = []
        for m in msgs:
            if self._halt.is_set() or self.stop_event.is_set():
                out.append(Outcome(m.delivery_id, "not_sent"))
            elif m.to in self._opted_now:
                out.append(Outcome(m.delivery_id, "opted_out", error=gw.OptedOutError(
                    "opted out earlier in this run", reason="suppressed")))
            else:
                todo.append(m)
        if todo:
            self.limiters[todo[0].channel].acquire(1)  # no rate: only a provider's hold
            closes = self._window_closes
            if closes is not None and self.clock.now() >= closes:
                # the send window has closed: the batch waits for the next one, as the rest of
                # a batch sent one by one does (the run is recorded as waiting)
                self.window_shut.set()
                out += [Outcome(m.delivery_id, "not_sent") for m in todo]
                todo = []
        if todo:
            self.lease.check()
            self.writer.start(todo[-1].delivery_id)  # every row up to the last one
            if self._halt.is_set() or self.stop_event.is_set():
                out += [Outcome(m.delivery_id, "not_sent") for m in todo]
                todo = []
        if todo:
            try:
                results = gateway.send_many(todo)
                if len(results) != len(todo):
                    raise gw.OutcomeUnknownError(
                        f"{len(results)} answers for {len(todo)} messages", reason="adapter-error")
                sent = [Outcome(m.delivery_id, "sent", result=r) for m, r in zip(todo, results)]
                self._note_sent(sent)
                out += sent
            except (AbortBatch, LeaseLost, RecordFailed):
                raise
            except Exception as exc:  # noqa: BLE001 - the whole request's outcome is unknown
                log.error(_("{n} deliveries: {gateway}.send_many raised {kind}").format(
                    n=len(todo), gateway=gateway.name, kind=type(exc).__name__),
                    exc_info=log.isEnabledFor(logging.DEBUG))  # the traceback with -vv
                self._halt_with("gateway", reasons.english(
                    N_("{gateway}: {kind} while writing a batch ({error}); its {n} deliveries are "
                       "recorded as unknown — `outreach campaign resume` reconciles them"),
                    gateway=gateway.name, kind=type(exc).__name__, error=exc, n=len(todo)))
                out += [Outcome(m.delivery_id, "unknown", error=gw.OutcomeUnknownError(
                    f"{type(exc).__name__}: {exc}", reason="adapter-error")) for m in todo]
        if [o.delivery_id for o in out] == [m.delivery_id for m in msgs]:
            ordered = out  # the usual case: nothing was set aside before the request
        else:
            by_id = {o.delivery_id: o for o in out}
            ordered = [by_id[m.delivery_id] for m in msgs]
        self.writer.outcomes(ordered)
        return ordered

    def _send_parallel(self, msgs: list[gw.OutboundMessage], order: list[int],
                       out: list[Outcome | None], width: int) -> None:
        counter = itertools.count()  # next() on it is atomic under the GIL
        n = len(order)
        send_one = self._send_one

        def work() -> None:
            while True:
                k = next(counter)
                if k >= n:
                    return
                i = order[k]
                out[i] = send_one(msgs[i])

        for f in [self._pool.submit(work) for _ in range(min(width, n))]:
            f.result()

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
        outcome = self._try_one(msg)
        self.writer.outcome(outcome)  # written in the writer's next group commit
        return outcome

    def _try_one(self, msg: gw.OutboundMessage) -> Outcome:
        if self._halt.is_set() or self.stop_event.is_set() or self.window_shut.is_set():
            return Outcome(msg.delivery_id, "not_sent")
        if msg.to in self._opted_now:
            # a provider said this number opted out earlier in this run; the suppression list
            # gets it when that batch is written, which may be after this batch was claimed
            return Outcome(msg.delivery_id, "opted_out", error=gw.OptedOutError(
                "opted out earlier in this run", reason="suppressed"))
        gateway = self.gateways[msg.channel]
        limiter = self.limiters[msg.channel]
        units = msg.segments if self.units.get(msg.channel) == "segments" else 1
        lease = self.lease
        attempts = 0

        def attempt() -> gw.SendResult:
            nonlocal attempts
            if self._halt.is_set() or self.window_shut.is_set():
                raise _Halted()
            limiter.acquire(units)
            closes = self._window_closes
            if closes is not None and self.clock.now() >= closes:
                # the window closed while this batch was under way: the rest waits for the
                # next window (the run is recorded as waiting)
                self.window_shut.set()
                raise _Halted()
            # a holder whose lease may have been taken over must not send any more
            lease.check()
            if not attempts:
                # the start is committed before the request leaves: a crash from here on
                # leaves this delivery unknown, before it the row is simply queued again
                self.writer.start(msg.delivery_id)
                if self._halt.is_set() or self.stop_event.is_set():
                    raise _Halted()  # stopped while waiting for the commit: not sent
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
        except gw.StopRunError as exc:
            if exc.provider_code:
                why = reasons.english(
                    N_("{gateway}: {reason} — {detail} (code {code}); fix the gateway "
                       "configuration, then `outreach campaign resume`"), gateway=gateway.name,
                    reason=exc.reason, detail=exc.detail or exc, code=exc.provider_code)
            else:
                why = reasons.english(
                    N_("{gateway}: {reason} — {detail}; fix the gateway configuration, then "
                       "`outreach campaign resume`"), gateway=gateway.name, reason=exc.reason,
                    detail=exc.detail or exc)
            self._halt_with("gateway", why)
            return Outcome(msg.delivery_id, "not_sent", error=exc, attempts=attempts)
        except gw.PermanentError as exc:
            return self._note(Outcome(msg.delivery_id, "failed", error=exc, attempts=attempts), False)
        except gw.OutcomeUnknownError as exc:
            return self._note(Outcome(msg.delivery_id, "unknown", error=exc, attempts=attempts), False)
        except gw.GatewayError as exc:  # transient past the cap, and any other provider error
            return self._note(Outcome(msg.delivery_id, "failed", error=exc, attempts=attempts), False)
        except (AbortBatch, LeaseLost, RecordFailed):
            raise
        except Exception as exc:  # noqa: BLE001 - a defect in an adapter, not a provider's answer
            # The request may have left before the adapter failed: unknown (never resent
            # automatically), and the run pauses rather than meeting the same defect for
            # every recipient.
            log.error(_("delivery {id}: {gateway}.send raised {kind}").format(
                id=msg.delivery_id, gateway=gateway.name, kind=type(exc).__name__),
                exc_info=log.isEnabledFor(logging.DEBUG))  # the traceback with -vv
            self._halt_with("gateway", reasons.english(
                N_("{gateway}: unexpected {kind} in the gateway adapter ({error}); the delivery "
                   "is recorded as unknown — see the log, then `outreach campaign resume`"),
                gateway=gateway.name, kind=type(exc).__name__, error=exc))
            return Outcome(msg.delivery_id, "unknown", attempts=attempts,
                           error=gw.OutcomeUnknownError(f"{type(exc).__name__}: {exc}",
                                                        reason="adapter-error"))
        return self._note(Outcome(msg.delivery_id, "sent", result=result, attempts=attempts))

    def _note(self, outcome: Outcome, ok: bool = True) -> Outcome:
        if not self._early_over:
            self._note_early(outcome)
        healthy = ok or isinstance(outcome.error, gw.PermanentError)
        bad = self._health.note(healthy)
        if bad is not None and bad > self.error_rate_threshold:
            self._halt_with("error-rate", reasons.english(
                N_("{percent} of the last {n} sends failed (threshold {threshold}); the run is "
                   "paused instead of burning through the list — check the gateway, then "
                   "`outreach campaign resume`"), percent=f"{bad:.0%}", n=len(self._health),
                threshold=f"{self.error_rate_threshold:.0%}"))
        return outcome

    def _note_sent(self, sent: list[Outcome]) -> None:
        """:meth:`_note` of each of a batch's accepted sends, at the cost of one: after the
        first, each healthy send only lowers the failure share, so the first is the only one
        that can halt the run."""
        if sent:
            self._note(sent[0])
            self._health.note_healthy(len(sent) - 1)

    def _note_early(self, outcome: Outcome) -> None:
        """Watch the first sends: all ``content_pause_after`` failing with one content-level
        code halts the run (kind ``content``); any other outcome ends the watch."""
        err = outcome.error
        content = (outcome.kind == "failed" and isinstance(err, gw.PermanentError)
                   and getattr(err, "content", False))
        with self._early_lock:
            if self._early_over:
                return
            if not content:
                self._early_over = True
                return
            assert err is not None
            self._early.append((err.provider_code, err.reason))
            if len(self._early) < self.content_pause_after:
                return
            self._early_over = True
            if len(set(self._early)) != 1:
                return
        code, reason = self._early[0]
        self._halt_with("content", reasons.english(
            N_("the first {n} sends all failed with code {code} ({reason}: {detail}): the "
               "provider refuses the message itself, so every recipient would fail; the run is "
               "paused instead — fix the campaign's text or template (`outreach campaign "
               "check` shows the limits), then `outreach campaign resume`"),
            n=len(self._early), code=code, reason=reason, detail=err.detail or err))

    def _halt_with(self, kind: str, why: str) -> None:
        if not self._halt.is_set():
            self._halt_reason = (kind, why)
            self._halt.set()
            log.error(_("campaign {id} paused: {why}").format(id=self.spec.id, why=why))


__all__ = ["BatchSender", "AbortBatch"]
