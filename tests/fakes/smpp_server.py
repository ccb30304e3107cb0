"""A fault-injecting SMSC on 127.0.0.1, on smpplib's PDU classes (the codec is the library's).

Scripts per destination number use the contract's vocabulary (``accept``, ``invalid``,
``throttled``, ``queue_full``, ``unavailable``, ``lost``: recorded, then the connection is
dropped before the response, ``slow``: recorded, response after ``slow_delay``), consumed one
per ``submit_sm`` (then ``accept``). Every response waits ``delay`` seconds (a single timer
thread, so 10 ms at a thousand submits a second costs no thread each). Receipts: with
``receipts`` set the server sends a ``deliver_sm`` receipt per accepted segment with that stat;
``receipt_mode`` ``after`` (default), ``early`` (the receipt before the ``submit_sm_resp``),
``duplicate`` (each receipt twice), ``held`` (kept until :meth:`release_receipts`, then sent
shuffled). :attr:`messages` are the complete messages (segments joined by UDH, SAR or
payload) as ``(to, text, first message id, segments)``.
"""

from __future__ import annotations

import heapq
import itertools
import random
import socket
import struct
import threading
import time
from collections import defaultdict, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import smpplib.consts as C
import smpplib.smpp

from outreach.gateways.smpp import decode_text

SYSTEM_ID = "outreach-test"
PASSWORD = "Pw8s3crT"  # SMPP 3.4 §4.1.1: at most 8 characters

_STATUS = {"invalid": C.SMPP_ESME_RINVDSTADR, "throttled": C.SMPP_ESME_RTHROTTLED,
           "queue_full": C.SMPP_ESME_RMSGQFUL, "unavailable": C.SMPP_ESME_RSYSERR}


class _Seq:
    def __init__(self) -> None:
        self._c = itertools.count(1)
        self.sequence = 0

    def next_sequence(self) -> int:
        self.sequence = next(self._c)
        return self.sequence


@dataclass
class Submitted:
    to: str
    text: str
    message_id: str
    segments: int
    data_coding: int
    source: str
    source_ton: int
    dest_ton: int


@dataclass
class _Conn:
    sock: socket.socket
    lock: threading.Lock = field(default_factory=threading.Lock)
    seq: _Seq = field(default_factory=_Seq)
    alive: bool = True
    system_id: str | None = None

    def send(self, pdu: Any) -> None:
        data = pdu.generate()
        with self.lock:
            if self.alive:
                try:
                    self.sock.sendall(data)
                except OSError:
                    self.alive = False


class FakeSmsc:
    def __init__(self) -> None:
        self.scripts: dict[str, deque[str]] = defaultdict(deque)
        self.delay = 0.0
        self.slow_delay = 3.0
        self.receipts: str | None = None  # stat of automatic receipts
        self.receipt_mode = "after"
        self.messages: list[Submitted] = []
        self.submits = 0
        self.binds = 0
        self.enquire_links = 0
        self.unbinds = 0
        self.deliver_acks = 0
        self.inflight_max = 0
        self._inflight = 0
        self._ids = itertools.count(1)
        self._parts: dict[tuple[str, int], dict[int, bytes]] = {}
        self._lost: dict[tuple[Any, Any], bool] = {}
        #: segment number (2, 3...) -> outcomes for that segment of the next messages
        self.segment_faults: dict[int, deque[str]] = defaultdict(deque)
        self._held: list[tuple[_Conn, Any]] = []
        self._conns: list[_Conn] = []
        self._lock = threading.Lock()
        self._heap: list[tuple[float, int, Any]] = []
        self._hcond = threading.Condition()
        self._hc = itertools.count()
        self._stop = False
        self._srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._srv.bind(("127.0.0.1", 0))
        self._srv.listen(16)
        self.port = self._srv.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()
        threading.Thread(target=self._timer, daemon=True).start()

    # -- test side -----------------------------------------------------------------------------
    def script(self, number: str, *outcomes: str) -> None:
        self.scripts[number.lstrip("+")].extend(outcomes)

    def options(self, **kw: Any) -> dict[str, Any]:
        opts = dict(host="127.0.0.1", port=self.port, system_id=SYSTEM_ID, password=PASSWORD,
                    source="STTTTCanTho", timeout=2, enquire_link=30)
        opts.update(kw)
        return opts

    def drop_all(self) -> None:
        """Close every connection (the SMSC restarts)."""
        for c in list(self._conns):
            self._close(c)

    def deliver(self, pdu_fields: dict[str, Any], conn: _Conn | None = None) -> None:
        """Send a deliver_sm to the (last) bound session."""
        conn = conn or next(c for c in reversed(self._conns) if c.alive and c.system_id)
        conn.send(smpplib.smpp.make_pdu("deliver_sm", client=conn.seq, **pdu_fields))

    def receipt(self, message_id: str, stat: str = "DELIVRD", *, tlv: bool = True,
                to: str = "84912345001") -> dict[str, Any]:
        text = (f"id:{message_id} sub:001 dlvrd:{'001' if stat == 'DELIVRD' else '000'} "
                f"submit date:2407011200 done date:2407011201 stat:{stat} err:000 text:")
        f: dict[str, Any] = dict(source_addr=to, source_addr_ton=1, source_addr_npi=1,
                                 destination_addr="STTTTCanTho", esm_class=0x04,
                                 short_message=text.encode("ascii"))
        if tlv:
            f["receipted_message_id"] = message_id
        return f

    def release_receipts(self, shuffle: bool = True, seed: int = 18) -> int:
        with self._lock:
            held, self._held = self._held, []
        if shuffle:
            random.Random(seed).shuffle(held)
        for conn, pdu in held:
            conn.send(pdu)
        return len(held)

    def stop(self) -> None:
        self._stop = True
        self._srv.close()
        self.drop_all()
        with self._hcond:
            self._hcond.notify_all()

    # -- server side ---------------------------------------------------------------------------
    def _accept(self) -> None:
        while not self._stop:
            try:
                s, _ = self._srv.accept()
            except OSError:
                return
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            c = _Conn(s)
            self._conns.append(c)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _close(self, c: _Conn) -> None:
        with c.lock:
            c.alive = False
        try:
            c.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        c.sock.close()

    def _later(self, delay: float, fn: Any) -> None:
        if delay <= 0:
            fn()
            return
        with self._hcond:
            heapq.heappush(self._heap, (time.monotonic() + delay, next(self._hc), fn))
            self._hcond.notify()

    def _timer(self) -> None:
        while not self._stop:
            with self._hcond:
                while not self._heap and not self._stop:
                    self._hcond.wait()
                if self._stop:
                    return
                due, _, fn = self._heap[0]
                wait = due - time.monotonic()
                if wait > 0:
                    self._hcond.wait(wait)
                    continue
                heapq.heappop(self._heap)
            fn()

    def _read(self, c: _Conn) -> Any:
        head = b""
        while len(head) < 4:
            part = c.sock.recv(4 - len(head))
            if not part:
                raise ConnectionError
            head += part
        (length,) = struct.unpack(">L", head)
        body = b""
        while len(body) < length - 4:
            part = c.sock.recv(length - 4 - len(body))
            if not part:
                raise ConnectionError
            body += part
        return smpplib.smpp.parse_pdu(head + body, client=c.seq, allow_unknown_opt_params=True)

    def _resp(self, c: _Conn, name: str, req: Any, status: int = 0, **kw: Any) -> Any:
        r = smpplib.smpp.make_pdu(name, client=c.seq, status=status, **kw)
        r.sequence = req.sequence
        return r

    def _serve(self, c: _Conn) -> None:
        try:
            while c.alive:
                p = self._read(c)
                cmd = p.command
                if cmd in ("bind_transceiver", "bind_transmitter", "bind_receiver"):
                    ok = p.system_id.decode() == SYSTEM_ID and p.password.decode() == PASSWORD
                    self.binds += ok
                    c.system_id = p.system_id.decode() if ok else None
                    c.send(self._resp(c, cmd + "_resp", p, 0 if ok else C.SMPP_ESME_RINVPASWD,
                                      system_id="FAKESMSC"))
                elif cmd == "enquire_link":
                    self.enquire_links += 1
                    c.send(self._resp(c, "enquire_link_resp", p))
                elif cmd == "unbind":
                    self.unbinds += 1
                    c.send(self._resp(c, "unbind_resp", p))
                    self._close(c)
                    return
                elif cmd == "submit_sm":
                    self._submit(c, p)
                elif cmd == "query_sm":
                    mid = p.message_id.decode()
                    known = any(m.message_id == mid for m in self.messages)
                    c.send(self._resp(c, "query_sm_resp", p, 0 if known else
                                      C.SMPP_ESME_RQUERYFAIL, message_id=mid,
                                      message_state=6 if known else None, final_date="",
                                      error_code=0))
                elif cmd == "deliver_sm_resp":
                    self.deliver_acks += 1
        except (OSError, ConnectionError, AttributeError):
            pass
        finally:
            self._close(c)

    def _submit(self, c: _Conn, p: Any) -> None:
        self.submits += 1
        to = p.destination_addr.decode()
        ref, total, part = self._segment(p)
        if part is not None and part > 1:
            # a message's outcome is scripted on its first segment; "lost" hits its last one
            lost = self._lost.get((to, ref)) and part == total
            faults = self.segment_faults.get(part)
            outcome = "lost" if lost else faults.popleft() if faults else "accept"
        else:
            q = self.scripts.get(to)
            outcome = q.popleft() if q else "accept"
            if outcome == "lost" and total and total > 1:
                self._lost[(to, ref)] = True
                outcome = "accept"
        if outcome in _STATUS:
            self._later(self.delay, lambda: c.send(self._resp(c, "submit_sm_resp", p,
                                                              _STATUS[outcome])))
            return
        mid = f"M{next(self._ids):08d}"
        self._record(p, to, mid)
        if outcome == "lost":
            self._close(c)
            return
        with self._lock:
            self._inflight += 1
            self.inflight_max = max(self.inflight_max, self._inflight)
        resp = self._resp(c, "submit_sm_resp", p, message_id=mid)
        receipt = None
        if self.receipts:
            receipt = smpplib.smpp.make_pdu("deliver_sm", client=c.seq,
                                            **self.receipt(mid, self.receipts, to=to))

        def answer() -> None:
            with self._lock:
                self._inflight -= 1
            if receipt is not None and self.receipt_mode == "early":
                c.send(receipt)
            c.send(resp)
            if receipt is not None and self.receipt_mode in ("after", "duplicate"):
                c.send(receipt)
                if self.receipt_mode == "duplicate":
                    again = smpplib.smpp.make_pdu("deliver_sm", client=c.seq,
                                                  **self.receipt(mid, self.receipts, to=to))
                    c.send(again)
            if receipt is not None and self.receipt_mode == "held":
                with self._lock:
                    self._held.append((c, receipt))

        self._later(self.slow_delay if outcome == "slow" else self.delay, answer)

    @staticmethod
    def _segment(p: Any) -> tuple[Any, Any, Any]:
        if (p.esm_class or 0) & 0x40 and p.short_message:
            d = p.short_message
            return d[3], d[4], d[5]
        if p.sar_msg_ref_num:
            return p.sar_msg_ref_num, p.sar_total_segments, p.sar_segment_seqnum
        return None, None, None

    def _record(self, p: Any, to: str, mid: str) -> None:
        data = p.short_message or b""
        dc = p.data_coding or 0
        src = p.source_addr.decode()
        common = dict(source=src, source_ton=p.source_addr_ton or 0, dest_ton=p.dest_addr_ton or 0)
        if p.message_payload:
            self.messages.append(Submitted(to, decode_text(p.message_payload, dc), mid, 1, dc,
                                           **common))
            return
        ref = total = part = None
        if (p.esm_class or 0) & 0x40:
            ref, total, part = data[3], data[4], data[5]
            data = data[6:]
        elif p.sar_msg_ref_num:
            ref, total, part = p.sar_msg_ref_num, p.sar_total_segments, p.sar_segment_seqnum
        if ref is None:
            self.messages.append(Submitted(to, decode_text(data, dc), mid, 1, dc, **common))
            return
        with self._lock:
            parts = self._parts.setdefault((to, ref), {})
            parts[part] = data
            if part == 1:
                parts[0] = mid.encode()
            if len([k for k in parts if k]) == total:
                del self._parts[(to, ref)]
                joined = b"".join(parts[i] for i in range(1, total + 1))
                self.messages.append(Submitted(to, decode_text(joined, dc), parts[0].decode(),
                                               total, dc, **common))


@pytest.fixture
def smsc() -> Iterator[FakeSmsc]:
    s = FakeSmsc()
    yield s
    s.stop()
