"""In-memory gateway for tests: scriptable outcomes per number, an outbox to read, reconciliation."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import os
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

from outreach.gateways import base
from outreach.gateways.base import (Gateway, OutboundMessage, SendResult, StatusUpdate)

#: Scripted outcomes, by name. ``accept`` sends; ``lost`` raises OutcomeUnknown AFTER recording
#: the message (the provider got it, the answer was lost); the others raise before recording.
OUTCOMES: dict[str, Callable[[], base.GatewayError] | None] = {
    "accept": None,
    "lost": None,
    "unavailable": lambda: base.UnavailableError("503 Service Unavailable", provider_code="503"),
    "throttled": lambda: base.ThrottledError("429 Too Many Requests", provider_code="20429",
                                             retry_after=2.0),
    "invalid": lambda: base.InvalidAddressError("invalid number", provider_code="21211"),
    "opted_out": lambda: base.OptedOutError("unsubscribed recipient", provider_code="21610"),
    "auth": lambda: base.AuthenticationError("authenticate", provider_code="20003"),
    "timeout_before": lambda: base.UnavailableError("connect timeout", reason="connect-failed"),
}


class MockGateway(Gateway):
    """Records every accepted message in ``self.outbox`` (list of OutboundMessage).

    ``script`` maps an address to a list of outcome names consumed one per attempt (then
    ``default``); ``latency`` (seconds) simulates a provider's answer time; ``requests`` counts
    every call of :meth:`send`, accepted or not.

    ``record`` (a file path) shares the mock between processes, for tests with several
    workers: every accepted message is appended as one JSON line ``{"delivery_id", "to",
    "message_id", "t" (epoch seconds when the request arrived), "pid"}`` in a single
    ``O_APPEND`` write, and :meth:`lookup` searches the file, so a killed worker's sends can be
    reconciled by another process. Message ids then carry the process id (``MOCK<pid>-<n>``).

    ``confirm=False`` makes it a gateway that cannot be asked (like Zalo): :meth:`lookup`
    answers None and :attr:`can_confirm` is False.

    ``keep=False`` keeps counts only (:attr:`requests`, :attr:`accepted`), not every message:
    ``outbox`` and ``attempts`` stay empty and memory does not grow with the run (one bit per
    delivery id, for :meth:`lookup`; message ids are then ``MOCKD<delivery id>``). The mock
    that the CLI builds (``--gateway mock``: benchmarks, workers) is such a one, since nobody
    can read its lists; a test that constructs one keeps everything unless it asks.
    """

    name: ClassVar[str] = "mock"
    channel: ClassVar[str] = "sms"
    rate_per_second: ClassVar[float] = 0.0  # unlimited unless configured
    concurrency: ClassVar[int] = 1
    can_confirm: ClassVar[bool] = True
    #: set per instance: a mock that keeps counts only and simulates nothing per message
    #: (no script, no latency, every message accepted) takes a batch in one call
    batched: bool = False  # type: ignore[misc]

    def __init__(self, *, script: dict[str, Iterable[str]] | None = None, default: str = "accept",
                 latency: float = 0.0, channel: str | None = None,
                 sleep: Callable[[float], None] = time.sleep,
                 record: str | os.PathLike[str] | None = None, confirm: bool | str = True,
                 keep: bool | str = True, **_: Any) -> None:
        if default not in OUTCOMES:
            raise base.ConfigurationError(f"unknown mock outcome {default!r}")
        self.script: dict[str, deque[str]] = defaultdict(deque)
        for address, outcomes in (script or {}).items():
            self.script[address].extend(outcomes)
        self.default = default
        self.latency = float(latency)
        if str(confirm).lower() in ("false", "0", "no"):
            self.can_confirm = False  # type: ignore[misc]
        self._sleep = sleep
        if channel:
            self.channel = channel  # type: ignore[misc]
        self.outbox: list[OutboundMessage] = []
        self.attempts: list[tuple[float, OutboundMessage]] = []
        self.requests = 0
        self.accepted = 0
        self.keep = str(keep).lower() not in ("false", "0", "no")
        self._sent_bits = bytearray()  # keep=False: bit per delivery id accepted
        self._ids = itertools.count(1)
        self._by_delivery: dict[int, str] = {}
        self._lock = threading.Lock()
        self.record = os.fspath(record) if record else None
        self._record_fd: int | None = None
        self._record_offset = 0  # how far lookup has indexed the record file
        # the CLI's mock (benchmarks, workers): nothing to simulate per message, so the sender
        # hands it whole batches (send_many) as it does the outbox, and what is measured is
        # the engine and the ledger, not a thread per message of a provider that costs nothing
        self.batched = (not self.keep and not self.script and self.default == "accept"
                        and not self.latency)

    def send(self, message: OutboundMessage) -> SendResult:
        arrived = time.time()
        with self._lock:
            self.requests += 1
            if self.keep:
                self.attempts.append((time.monotonic(), message))
            queue = self.script.get(message.to)
            outcome = queue.popleft() if queue else self.default
        if self.latency:
            self._sleep(self.latency)
        factory = OUTCOMES[outcome]
        if factory is not None:
            raise factory()
        with self._lock:
            self.accepted += 1
            if self.record:
                sid = f"MOCK{os.getpid()}-{next(self._ids):08d}"
            elif self.keep:
                sid = f"MOCK{next(self._ids):08d}"
            else:
                sid = f"MOCKD{message.delivery_id:08d}"
            if self.keep:
                self.outbox.append(message)
                self._by_delivery[message.delivery_id] = sid
            elif not self.record:
                self._mark(message.delivery_id)
            if self.record:
                if self._record_fd is None:
                    self._record_fd = os.open(self.record, os.O_WRONLY | os.O_APPEND | os.O_CREAT,
                                              0o644)
                os.write(self._record_fd, (json.dumps(
                    {"delivery_id": message.delivery_id, "to": message.to, "message_id": sid,
                     "t": arrived, "pid": os.getpid()}) + "\n").encode())
        if outcome == "lost":
            raise base.OutcomeUnknownError("connection dropped after the request was sent")
        return SendResult(provider_message_id=sid, status="sent", provider_status="accepted",
                          segments=message.segments)

    def send_many(self, messages: list[OutboundMessage]) -> list[SendResult]:
        """What :meth:`send` does for each message, under one lock and (``record``) in one
        ``O_APPEND`` write; only for a :attr:`batched` mock, whose every message is accepted.
        Raises OSError (the record file)."""
        if not self.batched:
            return super().send_many(messages)
        arrived = time.time()
        results: list[SendResult] = []
        with self._lock:
            self.requests += len(messages)
            self.accepted += len(messages)
            if self.record:
                pid = os.getpid()
                lines = []
                for m in messages:
                    sid = f"MOCK{pid}-{next(self._ids):08d}"
                    lines.append(json.dumps({"delivery_id": m.delivery_id, "to": m.to,
                                             "message_id": sid, "t": arrived, "pid": pid}))
                    results.append(SendResult(sid, "sent", "accepted", m.segments))
                if self._record_fd is None:
                    self._record_fd = os.open(self.record, os.O_WRONLY | os.O_APPEND | os.O_CREAT,
                                              0o644)
                os.write(self._record_fd, ("\n".join(lines) + "\n").encode())
            else:
                for m in messages:
                    self._mark(m.delivery_id)
                    results.append(SendResult(f"MOCKD{m.delivery_id:08d}", "sent", "accepted",
                                              m.segments))
        return results

    def lookup(self, message: OutboundMessage, since: dt.datetime,
               until: dt.datetime) -> StatusUpdate | bool | None:
        if not self.can_confirm:
            return None
        with self._lock:
            sid = self._by_delivery.get(message.delivery_id)
            if sid is None and not self.keep and not self.record and self._marked(
                    message.delivery_id):
                sid = f"MOCKD{message.delivery_id:08d}"
            if sid is None and self.record:
                self._read_record()
                sid = self._by_delivery.get(message.delivery_id)
        if sid is None:
            return False
        return StatusUpdate(status="sent", provider_message_id=sid, delivery_id=message.delivery_id,
                            provider_status="accepted")

    def _mark(self, delivery_id: int) -> None:
        byte = delivery_id >> 3
        if byte >= len(self._sent_bits):
            self._sent_bits.extend(bytes(max(byte + 1 - len(self._sent_bits), 4096)))
        self._sent_bits[byte] |= 1 << (delivery_id & 7)

    def _marked(self, delivery_id: int) -> bool:
        byte = delivery_id >> 3
        return byte < len(self._sent_bits) and bool(self._sent_bits[byte] >> (delivery_id & 7) & 1)

    def _read_record(self) -> None:
        """Index the record file's lines written since the last call (other processes' too)."""
        assert self.record is not None
        try:
            with open(self.record, "rb") as fh:
                fh.seek(self._record_offset)
                data = fh.read()
        except FileNotFoundError:
            return
        end = data.rfind(b"\n") + 1  # a line still being written is read next time
        for line in data[:end].splitlines():
            rec = json.loads(line)
            self._by_delivery.setdefault(rec["delivery_id"], rec["message_id"])
        self._record_offset += end

    def sent_to(self) -> list[str]:
        return [m.to for m in self.outbox]

    def close(self) -> None:
        with self._lock:
            if self._record_fd is not None:
                os.close(self._record_fd)
                self._record_fd = None
