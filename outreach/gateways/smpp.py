"""SMPP 3.4 gateway: straight to a carrier's SMSC or a brandname aggregator.

Built on ``smpplib`` (python-smpplib, LGPL, the PDU codec and the socket framing); this module
adds what a broadcaster needs around it:

* **one bound session shared by the sender's threads** (:class:`SmppSession`): bind as
  transceiver (or transmitter), a reader thread that answers ``enquire_link``, sends its own
  every ``enquire_link`` seconds of silence, matches responses to requests by sequence number
  and hands ``deliver_sm`` to the receipt writer; a *window* of at most ``window`` outstanding
  requests (default 10, the gateway's ``concurrency``); reconnection with exponential backoff
  (0.5 s doubling to 30 s); ``unbind`` on :meth:`SmppGateway.close`;
* **addressing** (SMPP 3.4 §5.2.5–5.2.6): an alphanumeric brandname as TON 5 / NPI 0 (at most
  11 characters, no diacritics), a numeric sender as TON 1 / NPI 1 (international) or, up to 8
  digits, TON 3 / NPI 0 (short code); destinations as TON 1 / NPI 1, ``84…``;
* **text**: split by :func:`outreach.input.text.analyse` (the same parts the preview billed), GSM-7 as
  ``data_coding`` 0 (or the SMSC's default alphabet as configured) one septet per octet, UCS-2
  as ``data_coding`` 8 (UTF-16BE); parts joined by UDH concatenation (esm_class 0x40,
  3GPP TS 23.040 §9.2.3.24.1), SAR TLVs (§5.3.2.22–24) or one ``message_payload`` TLV
  (§5.3.2.32), as configured per SMSC;
* **errors** from ``smpp_errors.json`` (command_status, §5.1.3) to the gateway error tree; a
  connection lost after a ``submit_sm`` left and before its response is *outcome unknown*;
* **receipts** (``deliver_sm`` with esm_class 0x04, Appendix B): ``receipted_message_id`` TLV or
  the ``id:`` field, ``stat`` mapped by the table; a message of several segments is delivered
  when all its segments are (:func:`apply_receipts`, through :mod:`outreach.receipts.writer`, so early,
  duplicated and out-of-order receipts are handled as webhook receipts are). Mobile-originated
  ``deliver_sm`` are stored in ``smpp_inbound``. Each ``deliver_sm_resp`` is sent only once the
  receipt is committed, so a crash never loses one (the SMSC sends it again).

Configuration (environment; the password is never printed or logged): ``OUTREACH_SMPP_HOST``,
``OUTREACH_SMPP_PORT`` (2775), ``OUTREACH_SMPP_SYSTEM_ID``, ``OUTREACH_SMPP_PASSWORD``,
``OUTREACH_SMPP_SYSTEM_TYPE`` (empty), ``OUTREACH_SMPP_TLS`` (0/1), ``OUTREACH_SMPP_SOURCE``
(the brandname), ``OUTREACH_SMPP_BIND`` (``transceiver``/``transmitter``),
``OUTREACH_SMPP_WINDOW`` (10), ``OUTREACH_SMPP_JOIN`` (``udh``/``sar``/``payload``),
``OUTREACH_SMPP_GSM_CODING`` (0: the data_coding used for GSM-7 text), ``OUTREACH_SMPP_RATE``
(messages per second the account allows, 50), ``OUTREACH_SMPP_ENQUIRE_LINK`` (30 s),
``OUTREACH_SMPP_TIMEOUT`` (response timeout, 10 s). Keyword options of the same names in lower
case (``host=``, ``window=``...) override them.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import queue
import re
import socket
import ssl
import struct
import threading
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import smpplib.client
import smpplib.consts
import smpplib.exceptions
import smpplib.smpp

from outreach.i18n import _
from outreach.input import text as textmod
from outreach.gateways.base import (AuthenticationError, ConfigurationError, Gateway,
                                    GatewayError, InvalidAddressError, OptedOutError,
                                    OutboundMessage, OutcomeUnknownError, PermanentError,
                                    Refusal, SendResult, StatusUpdate, StopRunError,
                                    ThrottledError, UnavailableError)

log = logging.getLogger(__name__)

TABLE: dict[str, Any] = json.loads((Path(__file__).with_name("smpp_errors.json")).read_text("utf-8"))
_CODES = {int(k, 16): v for k, v in TABLE["command_status"].items()}
_LIMITS: dict[str, Any] = json.loads((Path(__file__).with_name("smpp_limits.json"))
                                     .read_text("utf-8"))


def limits() -> dict[str, Any]:
    """The parsed ``smpp_limits.json``: the default ``max_segments`` (255) and its source."""
    return _LIMITS
STAT_TO_STATUS: dict[str, str] = TABLE["stat"]
_MESSAGE_STATE = {int(k): v for k, v in TABLE["message_state"].items()}
_CLASSES: dict[str, type[GatewayError]] = {
    "throttled": ThrottledError, "unavailable": UnavailableError,
    "invalid_address": InvalidAddressError, "rejected": PermanentError,
    "opted_out": OptedOutError, "authentication": AuthenticationError, "stop": StopRunError}
_FINAL_ORDER = {"delivered": 0, "undelivered": 1, "failed": 2}

JOIN_MODES = ("udh", "sar", "payload")
_BRAND = re.compile(r"^[A-Za-z0-9 ._&'-]{1,11}$")
_GSM_CODE = {ch: (i if i < 0x1B else i + 1) for i, ch in enumerate(textmod.GSM7_BASIC)}
_GSM_EXT = {"\f": 0x0A, "^": 0x14, "{": 0x28, "}": 0x29, "\\": 0x2F, "[": 0x3C, "~": 0x3D,
            "]": 0x3E, "|": 0x40, "€": 0x65}
_GSM_DECODE = {v: k for k, v in _GSM_CODE.items()}
_GSM_EXT_DECODE = {v: k for k, v in _GSM_EXT.items()}


def gsm7_bytes(s: str) -> bytes:
    """``s`` in the GSM-7 default alphabet (3GPP TS 23.038 §6.2.1), one septet per octet
    (unpacked, as SMPP carries it with data_coding 0); extension characters as ESC + code.
    Raises ValueError for a character outside both tables."""
    out = bytearray()
    for ch in s:
        code = _GSM_CODE.get(ch)
        if code is not None:
            out.append(code)
        elif ch in _GSM_EXT:
            out += bytes((0x1B, _GSM_EXT[ch]))
        else:
            raise ValueError(f"{ch!r} is not in the GSM-7 alphabet")
    return bytes(out)


def gsm7_text(data: bytes) -> str:
    """The inverse of :func:`gsm7_bytes` (unknown codes become ``?``)."""
    out, esc = [], False
    for b in data:
        if esc:
            out.append(_GSM_EXT_DECODE.get(b, "?"))
            esc = False
        elif b == 0x1B:
            esc = True
        else:
            out.append(_GSM_DECODE.get(b, "?"))
    return "".join(out)


def decode_text(data: bytes, data_coding: int) -> str:
    """Text of a short_message: UCS-2 (8) as UTF-16BE, Latin-1 (3), else GSM-7; NFC."""
    if data_coding == 8:
        s = data.decode("utf-16-be", errors="replace")
    elif data_coding == 3:
        s = data.decode("latin-1")
    else:
        s = gsm7_text(data)
    return unicodedata.normalize("NFC", s)


def error_for(status: int, detail: str = "") -> GatewayError:
    """The gateway error for an SMPP ``command_status`` (``smpp_errors.json``; unknown codes are
    permanent rejections, so a code we have never seen is never retried blindly)."""
    entry = _CODES.get(status) or {**TABLE["default"], "name": f"0x{status:08X}"}
    cls = _CLASSES[entry["class"]]
    text = f"{entry['name']} (0x{status:08X}){': ' + detail if detail else ''}"
    kw: dict[str, Any] = {"reason": entry["reason"], "provider_code": entry["name"],
                          "content": bool(entry.get("content"))}
    if issubclass(cls, ThrottledError) or issubclass(cls, UnavailableError):
        return cls(text, retry_after=entry.get("retry_after"), **kw)
    return cls(text, **kw)


# -- receipts ----------------------------------------------------------------------------------

_RECEIPT_FIELD = re.compile(r"(id|sub|dlvrd|submit date|done date|stat|err):\s*(\S*)", re.I)


@dataclass(frozen=True)
class SmppReceipt:
    """A delivery receipt as read from a ``deliver_sm``: the SMSC's ``message_id`` of one
    segment, its ``stat`` (DELIVRD, UNDELIV...) and ``err`` code."""

    message_id: str
    stat: str
    error_code: str | None = None
    raw: str | None = None


def parse_receipt(pdu: Any) -> SmppReceipt | None:
    """The receipt in a ``deliver_sm`` PDU (smpplib), or None when it is not a receipt.

    The message id comes from the ``receipted_message_id`` TLV (§5.3.2.12) when present, else
    from the ``id:`` field of the text (Appendix B); the state from ``message_state``
    (§5.3.2.35) when present, else ``stat:``."""
    esm = pdu.esm_class or 0
    if not esm & 0x04 and not esm & 0x20:  # SMSC delivery receipt / intermediate notification
        return None
    raw = (pdu.short_message or b"").decode("latin-1")
    fields = {k.lower(): v for k, v in _RECEIPT_FIELD.findall(raw)}
    mid = pdu.receipted_message_id
    if isinstance(mid, bytes):
        mid = mid.decode("latin-1")
    mid = (mid or fields.get("id") or "").strip("\0 ")
    stat = (fields.get("stat") or "").upper()
    if pdu.message_state:
        stat = _MESSAGE_STATE.get(int(pdu.message_state), stat)
    if not mid:
        return None
    return SmppReceipt(mid, stat or "UNKNOWN", fields.get("err"), raw)


def apply_receipts(conn: Any, account: str, items: list[SmppReceipt], *, now: dt.datetime,
                   gateway: str = "smpp") -> list[StatusUpdate]:
    """Apply SMPP delivery receipts in the caller's transaction; returns the
    :class:`StatusUpdate` handed to :func:`outreach.receipts.writer.apply_updates`.

    A receipt for a segment of a concatenated message (a row of ``smpp_segments``) updates that
    segment (a final stat is never replaced by a later non-final one); the message moves when
    its segments decide it: ``delivered`` once every segment is DELIVRD, ``undelivered`` or
    ``failed`` as soon as one segment ends so. A receipt for a one-part message (or a segment
    not recorded yet) goes to :func:`outreach.receipts.writer.apply_updates` by message id, which keeps
    it pending until the delivery's provider id is stored. Raises what SQLAlchemy raises.
    """
    from sqlalchemy import bindparam, select, update

    from outreach.receipts import writer as receipts
    from outreach.ledger.models import SmppSegment

    _lock_segments(conn)
    updates: list[StatusUpdate] = []
    t = SmppSegment.__table__
    wanted = sorted({r.message_id for r in items})
    segs: dict[str, dict[str, Any]] = {}
    for i in range(0, len(wanted), 900):  # one read for the whole group
        for row in conn.execute(select(t.c.id, t.c.message_id, t.c.stat, t.c.delivery_id,
                                       t.c.first_message_id).where(
                t.c.account == account, t.c.message_id.in_(wanted[i:i + 900]))).mappings():
            segs[row["message_id"]] = dict(row)
    seg_writes: dict[int, dict[str, Any]] = {}
    touched: dict[int, tuple[str, str | None]] = {}  # delivery id -> (first id, raw)
    for r in items:  # in arrival order
        status = STAT_TO_STATUS.get(r.stat, "sent")
        seg = segs.get(r.message_id)
        if seg is None:
            updates.append(StatusUpdate(status=status, provider_message_id=r.message_id,
                                        provider_status=r.stat, error_code=r.error_code,
                                        raw=r.raw))
            continue
        if seg["stat"] and STAT_TO_STATUS.get(seg["stat"], "sent") != "sent" and status == "sent":
            continue  # a late ENROUTE after the final receipt
        seg["stat"] = r.stat
        seg_writes[seg["id"]] = {"b_id": seg["id"], "b_stat": r.stat, "b_err": r.error_code}
        if seg["delivery_id"] is not None:
            touched[seg["delivery_id"]] = (seg["first_message_id"], r.raw)
    if seg_writes:
        conn.execute(update(t).where(t.c.id == bindparam("b_id")).values(
            stat=bindparam("b_stat"), error_code=bindparam("b_err"), receipt_at=now),
            list(seg_writes.values()))
    ids = sorted(touched)
    by_delivery: dict[int, list[Any]] = {}
    for i in range(0, len(ids), 900):
        for row in conn.execute(select(t.c.delivery_id, t.c.stat, t.c.error_code, t.c.parts)
                                .where(t.c.delivery_id.in_(ids[i:i + 900]),
                                       t.c.account == account)):
            by_delivery.setdefault(row.delivery_id, []).append(row)
    for did in ids:
        first, raw = touched[did]
        upd = _decide(by_delivery.get(did, []), did, first, raw)
        if upd is not None:
            updates.append(upd)
    if updates:
        receipts.apply_updates(conn, updates, gateway=gateway, source="smpp", now=now)
    return updates


def _lock_segments(conn: Any) -> None:
    """Serialise segment bookkeeping between sessions (PostgreSQL; SQLite transactions here
    already hold the write lock)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(770018)")


def _message_status(conn: Any, account: str, first: str | None, delivery_id: int | None,
                    raw: str | None = None) -> StatusUpdate | None:
    """The message's status once its segments decide it, else None."""
    from sqlalchemy import select

    from outreach.ledger.models import SmppSegment

    if first is None or delivery_id is None:
        return None
    t = SmppSegment.__table__
    segs = conn.execute(select(t.c.stat, t.c.error_code, t.c.parts).where(
        t.c.delivery_id == delivery_id, t.c.account == account,
        t.c.first_message_id == first)).all()  # by the indexed delivery id
    return _decide(segs, delivery_id, first, raw)


def _decide(segs: list[Any], delivery_id: int, first: str | None,
            raw: str | None) -> StatusUpdate | None:
    """A message's status from its segments' stats (rows with ``stat``, ``error_code``,
    ``parts``): the worst final failure at once, delivered once all are, else None."""
    parts = segs[0].parts if segs else 0
    finals = [(STAT_TO_STATUS.get(s.stat or "", "sent"), s.stat, s.error_code) for s in segs]
    worst = max((f for f in finals if f[0] in ("undelivered", "failed")),
                key=lambda f: _FINAL_ORDER[f[0]], default=None)
    if worst is not None:
        return StatusUpdate(status=worst[0], delivery_id=delivery_id, provider_message_id=first,
                            provider_status=worst[1], error_code=worst[2], raw=raw)
    if parts and len(finals) == parts and all(f[0] == "delivered" for f in finals):
        return StatusUpdate(status="delivered", delivery_id=delivery_id,
                            provider_message_id=first, provider_status="DELIVRD", raw=raw)
    return None


def record_segments(conn: Any, account: str, delivery_id: int, message_ids: list[str], *,
                    now: dt.datetime, gateway: str = "smpp") -> None:
    """Record the segments of a concatenated message (their SMSC message ids, in order) so that
    receipts find it; receipts that arrived before (kept pending by message id) are folded in.
    In the caller's transaction."""
    from sqlalchemy import select, update

    from outreach.receipts import writer as receipts
    from outreach.ledger.models import PendingReceipt, SmppSegment

    _lock_segments(conn)
    t = SmppSegment.__table__
    p = PendingReceipt.__table__
    pend = conn.execute(select(p.c.id, p.c.provider_message_id, p.c.payload).where(
        p.c.gateway == gateway, p.c.applied_at.is_(None),
        p.c.provider_message_id.in_(message_ids)).order_by(p.c.id)).all()
    stats = {}
    for row in pend:
        pl = row.payload or {}
        stats[row.provider_message_id] = (pl.get("provider_status"), pl.get("error_code"))
    conn.execute(t.insert(), [{
        "account": account, "message_id": mid, "delivery_id": delivery_id,
        "first_message_id": message_ids[0], "part": i + 1, "parts": len(message_ids),
        "stat": stats.get(mid, (None, None))[0], "error_code": stats.get(mid, (None, None))[1],
        "created_at": now, "receipt_at": now if mid in stats else None}
        for i, mid in enumerate(message_ids)])
    if pend:
        conn.execute(update(p).where(p.c.id.in_([r.id for r in pend])).values(applied_at=now))
        upd = _message_status(conn, account, message_ids[0], delivery_id)
        if upd is not None:
            receipts.apply_updates(conn, [upd], gateway=gateway, source="smpp", now=now)


#: Called in the transaction that stored mobile-originated messages, with ``(conn, ids of the
#: new smpp_inbound rows, now)``; returns the ids of inbound messages whose confirmation reply
#: is to be sent. Set by :mod:`outreach.receipts.inbound` when it is imported (a later stage
#: plugs in here: this module cannot import it). None: replies are only stored.
INBOUND_HOOK: Callable[[Any, list[int], dt.datetime], list[int]] | None = None
#: Called after that commit with ``(gateway, inbound ids)`` to send the confirmations through
#: this gateway (off the receipt thread); set by :mod:`outreach.receipts.inbound` too.
CONFIRM_HOOK: Callable[[Any, list[int]], None] | None = None


def store_inbound(conn: Any, account: str, pdu: Any, *, now: dt.datetime) -> int:
    """Store a mobile-originated ``deliver_sm`` in ``smpp_inbound`` (caller's transaction);
    returns the new row's id."""
    from outreach.ledger.models import SmppInbound

    data = pdu.short_message or b""
    if not data and pdu.message_payload:
        data = pdu.message_payload
    ref = part = parts = None
    if (pdu.esm_class or 0) & 0x40 and len(data) > 5 and data[0] == 5 and data[1] == 0:
        ref, parts, part = data[3], data[4], data[5]
        data = data[6:]
    elif pdu.sar_msg_ref_num:
        ref, parts, part = pdu.sar_msg_ref_num, pdu.sar_total_segments, pdu.sar_segment_seqnum
    src = _text(pdu.source_addr)
    if src.isdigit() and (pdu.source_addr_ton or 0) == 1:
        src = "+" + src
    res = conn.execute(SmppInbound.__table__.insert().values(
        account=account, source=src, destination=_text(pdu.destination_addr),
        text=decode_text(data, pdu.data_coding or 0), data_coding=pdu.data_coding or 0,
        ref=ref, part=part, parts=parts, received_at=now))
    return int(res.inserted_primary_key[0])


def _text(v: Any) -> str:
    return v.decode("latin-1") if isinstance(v, bytes) else (v or "")


class ReceiptWriter:
    """Applies the ``deliver_sm`` of a session in group commits on its own thread, then sends
    each ``deliver_sm_resp`` (after the commit). ``db`` None: receipts are only handed to
    ``on_receipt`` (tests, ``check``). ``on_receipt(receipt)`` and ``on_inbound(pdu)`` are called
    after each commit."""

    MAX_GROUP = 500

    def __init__(self, db: Any, account: str, gateway: str = "smpp", *,
                 on_receipt: Callable[[SmppReceipt], None] | None = None,
                 on_confirm: Callable[[list[int]], None] | None = None) -> None:
        self.db, self.account, self.gateway = db, account, gateway
        self.on_receipt = on_receipt
        self.on_confirm = on_confirm
        self._q: queue.Queue[tuple[Any, Callable[[], None]] | None] = queue.Queue()
        self.applied = 0
        self.inbound = 0
        self._thread = threading.Thread(target=self._loop, name="outreach-smpp-receipts",
                                        daemon=True)
        self._thread.start()

    def put(self, pdu: Any, ack: Callable[[], None]) -> None:
        self._q.put((pdu, ack))

    def flush(self, timeout: float = 10) -> None:
        """Wait until everything received so far is written and acknowledged."""
        done = threading.Event()
        self._q.put((None, done.set))
        done.wait(timeout)

    def close(self, timeout: float = 10) -> None:
        self._q.put(None)
        self._thread.join(timeout)

    def _loop(self) -> None:
        stop = False
        while not stop:
            item = self._q.get()
            group = []
            while item is not None:
                group.append(item)
                if len(group) >= self.MAX_GROUP:
                    break
                try:
                    item = self._q.get_nowait()
                except queue.Empty:
                    break
            stop = item is None
            if group:
                self._write(group)

    def _write(self, group: list[tuple[Any, Callable[[], None]]]) -> None:
        recs: list[SmppReceipt] = []
        mos = []
        for pdu, _ack in group:
            if pdu is None:  # a flush marker
                continue
            r = parse_receipt(pdu)
            if r is not None:
                recs.append(r)
            elif not (pdu.esm_class or 0) & 0x3C:
                mos.append(pdu)
        if self.db is not None and (recs or mos):
            from outreach.ledger.db import retry_write

            @retry_write
            def tx() -> list[int]:
                now = dt.datetime.now(dt.timezone.utc)
                with self.db.engine.begin() as conn:
                    if recs:
                        apply_receipts(conn, self.account, recs, now=now, gateway=self.gateway)
                    ids = [store_inbound(conn, self.account, pdu, now=now) for pdu in mos]
                    hook = INBOUND_HOOK
                    return hook(conn, ids, now) if ids and hook is not None else []

            try:
                confirm = tx()
            except Exception as exc:  # noqa: BLE001 - not acknowledged: the SMSC sends it again
                log.error(_("smpp: {n} receipts not stored ({error}); not acknowledged").format(
                    n=len(recs), error=exc))
                return
        else:
            confirm = []
        self.applied += len(recs)
        self.inbound += len(mos)
        if confirm and self.on_confirm is not None:
            try:
                self.on_confirm(confirm)
            except Exception as exc:  # noqa: BLE001 - the rows stay pending; acknowledged anyway
                log.error(_("smpp: confirmations of {what} not started: {error}").format(
                    what=confirm, error=exc), exc_info=log.isEnabledFor(logging.DEBUG))
        for r in recs:
            if self.on_receipt is not None:
                self.on_receipt(r)
        for _pdu, ack in group:
            try:
                ack()
            except Exception:  # noqa: BLE001 - the session is gone; the SMSC resends
                pass


# -- the session -------------------------------------------------------------------------------

class _Client(smpplib.client.Client):
    """smpplib's client with thread-safe sequence numbers and writes (many senders, one reader)."""

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self._wlock = threading.Lock()
        self._slock = threading.Lock()

    def _create_socket(self) -> socket.socket:
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        raw.settimeout(self.timeout)
        # small PDUs answered one by one: without this, Nagle + delayed ACK stall each ~40 ms
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._ssl_context is None:
            return raw
        return self._ssl_context.wrap_socket(raw, server_hostname=self.host)

    def next_sequence(self) -> int:
        with self._slock:
            return super().next_sequence()

    def send_pdu(self, p: Any) -> bool:
        # smpplib's own send_pdu/read_pdu hex-dump every PDU for a debug log line even when
        # debug is off (a third of the CPU per message at 500/s); the same steps without it
        if self.state not in smpplib.consts.COMMAND_STATES[p.command]:
            raise smpplib.exceptions.PDUError(f"Command {p.command} failed: not bound")
        data = p.generate()
        with self._wlock:
            try:
                self._socket.sendall(data)
            except (OSError, AttributeError) as exc:
                raise smpplib.exceptions.ConnectionError() from exc
        return True

    def read_pdu(self) -> Any:
        raw_len = self._recv_exact(4)
        (length,) = struct.unpack(">L", raw_len)
        pdu = smpplib.smpp.parse_pdu(raw_len + self._recv_exact(length - 4), client=self,
                                     allow_unknown_opt_params=True)
        if not pdu.is_error() and pdu.command in smpplib.consts.STATE_SETTERS:
            self.state = smpplib.consts.STATE_SETTERS[pdu.command]
        return pdu

    def __del__(self) -> None:  # smpplib warns about unclosed clients at interpreter exit
        pass


class _Pending:
    __slots__ = ("event", "pdu", "error", "delivery_id", "gave_up")

    def __init__(self, delivery_id: int | None) -> None:
        self.gave_up = False
        self.event = threading.Event()
        self.pdu: Any = None
        self.error: str | None = None
        self.delivery_id = delivery_id


class SmppSession:
    """One bound SMPP session shared by threads: see the module docstring.

    :meth:`request` sends a PDU and waits for its response (raises
    :class:`~outreach.gateways.base.UnavailableError` when the request could not be written,
    :class:`~outreach.gateways.base.OutcomeUnknownError` when it was written and the response
    never came). ``on_deliver(pdu, ack)`` receives each ``deliver_sm``; ``ack()`` sends its
    ``deliver_sm_resp``.
    """

    BACKOFF_INITIAL = 0.5
    BACKOFF_MAX = 30.0

    def __init__(self, *, host: str, port: int, system_id: str, password: str,
                 system_type: str = "", tls: bool = False, bind: str = "transceiver",
                 window: int = 10, enquire_link: float = 30.0, timeout: float = 10.0,
                 on_deliver: Callable[[Any, Callable[[], None]], None] | None = None) -> None:
        self.host, self.port, self.tls, self.bind_mode = host, port, tls, bind
        self._system_id, self._password, self._system_type = system_id, password, system_type
        self.window, self.enquire_link, self.timeout = window, enquire_link, timeout
        self.on_deliver = on_deliver
        self._slots = threading.BoundedSemaphore(window)
        self._lock = threading.RLock()
        self._plock = threading.Lock()
        self._client: _Client | None = None
        self._pending: dict[int, _Pending] = {}
        self._reader: threading.Thread | None = None
        self._next_try = 0.0
        self._backoff = self.BACKOFF_INITIAL
        self._closed = False
        self.binds = 0
        self.smsc_system_id: str | None = None
        #: delivery id -> message id of responses that came after their request timed out
        self.late: dict[int, str] = {}

    def __repr__(self) -> str:
        return f"SmppSession({self.host}:{self.port}, system_id={self._system_id!r})"

    @property
    def bound(self) -> bool:
        c = self._client
        return c is not None and c.state in (smpplib.consts.SMPP_CLIENT_STATE_BOUND_TX,
                                             smpplib.consts.SMPP_CLIENT_STATE_BOUND_TRX,
                                             smpplib.consts.SMPP_CLIENT_STATE_BOUND_RX)

    def ensure_bound(self) -> _Client:
        """The bound client, connecting and binding first if needed. Raises
        :class:`AuthenticationError` (bind refused) or :class:`UnavailableError` (no
        connection; ``retry_after`` is the backoff left before the next attempt)."""
        with self._lock:
            if self._closed:
                raise UnavailableError("the SMPP session is closed", reason="closed")
            if self._client is not None and self.bound:
                return self._client
            wait = self._next_try - time.monotonic()
            if wait > 0:
                raise UnavailableError(f"reconnecting to {self.host}:{self.port} in {wait:.1f} s",
                                       retry_after=wait, reason="reconnecting")
            try:
                client = self._connect()
            except AuthenticationError:
                self._fail_backoff()
                raise
            except (OSError, smpplib.exceptions.ConnectionError, socket.timeout) as exc:
                self._fail_backoff()
                raise UnavailableError(f"cannot reach the SMSC at {self.host}:{self.port}: "
                                       f"{type(exc).__name__}", reason="connect",
                                       retry_after=None) from exc
            self._backoff = self.BACKOFF_INITIAL
            self._next_try = 0.0
            return client

    def _fail_backoff(self) -> None:
        self._next_try = time.monotonic() + self._backoff
        self._backoff = min(self.BACKOFF_MAX, self._backoff * 2)

    def _connect(self) -> _Client:
        ctx = ssl.create_default_context() if self.tls else None
        client = _Client(self.host, self.port, timeout=self.timeout, ssl_context=ctx,
                         allow_unknown_opt_params=True,
                         logger_name="outreach.smpp.wire")
        logging.getLogger("outreach.smpp.wire").setLevel(logging.ERROR)  # smpplib chatter
        client.connect()
        try:
            bind = (client.bind_transmitter if self.bind_mode == "transmitter"
                    else client.bind_transceiver)
            resp = bind(system_id=self._system_id, password=self._password,
                        system_type=self._system_type, interface_version=0x34)
        except smpplib.exceptions.PDUError as exc:
            client.disconnect()
            status = exc.args[1] if len(exc.args) > 1 else 0x0D
            err = error_for(status, "bind refused")
            if not isinstance(err, StopRunError):
                err = AuthenticationError(str(err), reason="bind-failed",
                                          provider_code=err.provider_code)
            raise err from None
        except BaseException:
            client.disconnect()
            raise
        self.smsc_system_id = _text(resp.system_id)
        client._socket.settimeout(self.enquire_link)
        self._client = client
        self.binds += 1
        self._reader = threading.Thread(target=self._read_loop, args=(client,), daemon=True,
                                        name="outreach-smpp-reader")
        self._reader.start()
        return client

    def request(self, pdu_name: str, delivery_id: int | None = None, **fields: Any) -> Any:
        """Send one request and return its response PDU (status checked by the caller).

        Holds one window slot from before the request is written until its response (or
        the loss of the session)."""
        client = self.ensure_bound()
        if not self._slots.acquire(timeout=self.timeout):
            raise UnavailableError("SMPP window full for too long", reason="window")
        try:
            p = smpplib.smpp.make_pdu(pdu_name, client=client, **fields)
            pend = _Pending(delivery_id)
            with self._plock:
                self._pending[p.sequence] = pend
            try:
                client.send_pdu(p)
            except (smpplib.exceptions.ConnectionError, OSError, AttributeError) as exc:
                with self._plock:
                    self._pending.pop(p.sequence, None)
                self._drop(client, "write failed")
                # sendall may have written part of the PDU: an SMSC only acts on a whole PDU,
                # and a partial one is never completed on another connection
                raise UnavailableError("the SMPP connection failed while writing the request",
                                       reason="connection-lost") from exc
            if not pend.event.wait(self.timeout):
                with self._plock:
                    pend.gave_up = True
                raise OutcomeUnknownError(f"no {pdu_name}_resp within {self.timeout:g} s",
                                          reason="timeout")
            if pend.error is not None:
                raise OutcomeUnknownError(f"the SMPP connection was lost after the {pdu_name} "
                                          f"was sent ({pend.error})", reason="connection-lost")
            return pend.pdu
        finally:
            self._slots.release()

    def _read_loop(self, client: _Client) -> None:
        while True:
            try:
                pdu = client.read_pdu()
            except socket.timeout:
                try:  # silence for enquire_link seconds: ask whether the SMSC is still there
                    client.send_pdu(smpplib.smpp.make_pdu("enquire_link", client=client))
                    continue
                except Exception:  # noqa: BLE001
                    self._drop(client, "enquire_link failed")
                    return
            except Exception as exc:  # noqa: BLE001 - connection lost or a broken PDU
                self._drop(client, type(exc).__name__)
                return
            try:
                self._dispatch(client, pdu)
            except Exception as exc:  # noqa: BLE001
                log.warning(_("smpp: could not handle {pdu}: {error}").format(
                    pdu=getattr(pdu, "command", "?"), error=exc))

    def _dispatch(self, client: _Client, pdu: Any) -> None:
        cmd = pdu.command
        if cmd == "deliver_sm":
            seq = pdu.sequence

            def ack(status: int = 0) -> None:
                r = smpplib.smpp.make_pdu("deliver_sm_resp", client=client, status=status)
                r.sequence = seq
                client.send_pdu(r)

            if self.on_deliver is None:
                ack()
            else:
                self.on_deliver(pdu, ack)
        elif cmd == "enquire_link":
            r = smpplib.smpp.make_pdu("enquire_link_resp", client=client)
            r.sequence = pdu.sequence
            client.send_pdu(r)
        elif cmd == "unbind":  # the SMSC ends the session
            r = smpplib.smpp.make_pdu("unbind_resp", client=client)
            r.sequence = pdu.sequence
            client.send_pdu(r)
            self._drop(client, "unbound by the SMSC")
        elif cmd == "enquire_link_resp":
            pass
        else:  # submit_sm_resp, query_sm_resp, generic_nack, unbind_resp
            with self._plock:
                pend = self._pending.pop(pdu.sequence, None)
            if pend is not None:
                pend.pdu = pdu
                if pend.gave_up and pend.delivery_id is not None and \
                        cmd == "submit_sm_resp" and not pdu.is_error():
                    self.late[pend.delivery_id] = _text(pdu.message_id)
                pend.event.set()

    def _drop(self, client: _Client, why: str) -> None:
        """The connection ``client`` is gone: fail every request waiting on it."""
        with self._lock:
            if self._client is client:
                self._client = None
                if not self._closed:
                    self._fail_backoff()
                    self._next_try = time.monotonic() + self.BACKOFF_INITIAL / 5
            try:
                client.disconnect()
            except Exception:  # noqa: BLE001
                pass
        with self._plock:
            pending, self._pending = self._pending, {}
        for pend in pending.values():
            pend.error = why
            pend.event.set()
        if not self._closed:
            log.warning(_("smpp: session to {host}:{port} lost ({why})").format(
                host=self.host, port=self.port, why=why))

    def close(self, flush: Callable[[], None] | None = None) -> None:
        """Unbind (waiting up to the response timeout for ``unbind_resp``), then disconnect.
        ``flush()`` is called before the unbind and again after its response, so the
        ``deliver_sm`` received until then are acknowledged on this connection."""
        with self._lock:
            client = self._client
            self._closed = True
        if client is None:
            return
        if flush is not None:
            flush()
        try:
            p = smpplib.smpp.make_pdu("unbind", client=client)
            pend = _Pending(None)
            with self._plock:
                self._pending[p.sequence] = pend
            client.send_pdu(p)
            pend.event.wait(min(self.timeout, 5))
            if flush is not None:
                flush()
        except Exception:  # noqa: BLE001 - closing anyway
            pass
        self._drop(client, "closed")
        if self._reader is not None:
            self._reader.join(2)


# -- the gateway -------------------------------------------------------------------------------

def _env(name: str, default: str | None = None) -> str | None:
    v = os.environ.get(f"OUTREACH_SMPP_{name}")
    return v if v not in (None, "") else default


class SmppGateway(Gateway):
    """SMS over SMPP 3.4 (module docstring). ``db`` (a :class:`outreach.ledger.db.Database`) is where
    receipts, segments and inbound messages are written; without it receipts are only handed to
    ``on_receipt``. Raises :class:`ConfigurationError` for missing or invalid settings;
    touches no network until the first send."""

    name: ClassVar[str] = "smpp"
    channel: ClassVar[str] = "sms"
    reaches_phones: ClassVar[bool] = True
    rate_per_second: ClassVar[float] = 50.0
    rate_unit: ClassVar[str] = "segments"
    concurrency: ClassVar[int] = 10  # replaced per instance by the window
    #: ``query_sm`` needs the SMSC's message id, which a lost response never gave us: after a
    #: crash a delivery without one cannot be confirmed unsent (the operator decides), so the
    #: ledger commits each start just before its request and at most the window is unknown
    can_confirm: ClassVar[bool] = False

    def __init__(self, *, host: str | None = None, port: int | str | None = None,
                 system_id: str | None = None, password: str | None = None,
                 system_type: str | None = None, tls: bool | str | None = None,
                 source: str | None = None, bind: str | None = None,
                 window: int | str | None = None, join: str | None = None,
                 gsm_coding: int | str | None = None, rate: float | str | None = None,
                 enquire_link: float | str | None = None, timeout: float | str | None = None,
                 max_segments: int | str | None = None,
                 registered_delivery: int = 1, db: Any = None, channel: str = "sms",
                 account: str | None = None,
                 on_receipt: Callable[[SmppReceipt], None] | None = None) -> None:
        host = host or _env("HOST")
        system_id = system_id or _env("SYSTEM_ID")
        password = password if password is not None else _env("PASSWORD")
        if not host or not system_id or password is None:
            raise ConfigurationError(_("SMPP needs OUTREACH_SMPP_HOST, OUTREACH_SMPP_SYSTEM_ID "
                                       "and OUTREACH_SMPP_PASSWORD"), reason="configuration")
        try:
            self.port = int(port or _env("PORT", "2775"))  # type: ignore[arg-type]
            self.window = int(window or _env("WINDOW", "10"))  # type: ignore[arg-type]
            self.gsm_coding = int(gsm_coding if gsm_coding is not None
                                  else _env("GSM_CODING", "0"))  # type: ignore[arg-type]
            rate_v = float(rate or _env("RATE", "50"))  # type: ignore[arg-type]
            enquire = float(enquire_link or _env("ENQUIRE_LINK", "30"))  # type: ignore[arg-type]
            self.timeout = float(timeout or _env("TIMEOUT", "10"))  # type: ignore[arg-type]
            self.max_segments = int(max_segments or _env(
                "MAX_SEGMENTS", str(limits()["max_segments"])))  # type: ignore[arg-type]
        except ValueError as exc:
            raise ConfigurationError(_("OUTREACH_SMPP_*: not a number ({error})").format(
                error=exc)) from None
        if len(password) > 8 or len(system_id) > 15:
            raise ConfigurationError(_("SMPP 3.4 (§4.1.1) allows a system_id of at most 15 and "
                                       "a password of at most 8 characters; ask the carrier for "
                                       "credentials that fit"), reason="configuration")
        if not 1 <= self.max_segments <= 255:
            raise ConfigurationError(_("OUTREACH_SMPP_MAX_SEGMENTS must be between 1 and 255 "
                                       "(the parts a concatenated SMS can have)"))
        if not 1 <= self.window <= 1000:
            raise ConfigurationError(_("OUTREACH_SMPP_WINDOW must be between 1 and 1000"))
        self.join = (join or _env("JOIN", "udh")).lower()  # type: ignore[union-attr]
        if self.join not in JOIN_MODES:
            raise ConfigurationError(_("OUTREACH_SMPP_JOIN must be one of {modes}").format(
                modes=", ".join(JOIN_MODES)))
        bind = (bind or _env("BIND", "transceiver")).lower()  # type: ignore[union-attr]
        if bind not in ("transceiver", "transmitter"):
            raise ConfigurationError(_("OUTREACH_SMPP_BIND must be transceiver or transmitter"))
        tls_v = tls if tls is not None else _env("TLS", "0")
        self.tls = tls_v is True or str(tls_v).lower() in ("1", "true", "yes")
        self.source = source or _env("SOURCE")
        if self.source:
            self._source_address(self.source)  # validates
        self.host = host
        self.system_id = system_id
        self.channel = channel  # type: ignore[misc]
        self.rate_per_second = rate_v  # type: ignore[misc]
        self.concurrency = self.window  # type: ignore[misc]
        self.registered_delivery = registered_delivery
        self.account = account or f"{system_id}@{host}:{self.port}"
        self.db = db
        self._ref = 0
        self._ref_lock = threading.Lock()
        self.receipts = ReceiptWriter(db, self.account, self.name, on_receipt=on_receipt,
                                      on_confirm=self._confirm)
        self.session = SmppSession(host=host, port=self.port, system_id=system_id,
                                   password=password, system_type=system_type if
                                   system_type is not None else _env("SYSTEM_TYPE", "") or "",
                                   tls=self.tls, bind=bind, window=self.window,
                                   enquire_link=enquire, timeout=self.timeout,
                                   on_deliver=self.receipts.put)

    def __repr__(self) -> str:
        return f"SmppGateway({self.host}:{self.port}, system_id={self.system_id!r})"

    def _confirm(self, inbound_ids: list[int]) -> None:
        """Confirmation replies to citizens' keywords, through this session (:data:`CONFIRM_HOOK`)."""
        hook = CONFIRM_HOOK
        if hook is not None:
            hook(self, inbound_ids)

    @property
    def lookup_horizon_seconds(self) -> float:
        return self.timeout

    # -- addressing and text -------------------------------------------------------------------
    @staticmethod
    def _source_address(source: str) -> tuple[str, int, int]:
        """(address, TON, NPI) of a sender: brandname 5/0, short code 3/0, number 1/1."""
        if source.lstrip("+").isdigit():
            digits = source.lstrip("+")
            return (digits, 3, 0) if len(digits) <= 8 else (digits, 1, 1)
        if not _BRAND.match(source):
            raise ConfigurationError(
                f"SMPP sender {source!r}: a brandname is at most 11 letters, digits or . _ & ' - "
                "without diacritics (TON 5, NPI 0)", reason="invalid-sender")
        return source, 5, 0

    @staticmethod
    def _destination(to: str) -> str:
        digits = to.lstrip("+")
        if not to.startswith("+") or not digits.isdigit() or not 8 <= len(digits) <= 15:
            raise InvalidAddressError(f"not an E.164 number: {to[:4]}…", reason="invalid-number",
                                      provider_code="E164")
        return digits

    def _next_ref(self) -> int:
        with self._ref_lock:
            self._ref = (self._ref + 1) % 256
            return self._ref

    def encode(self, body: str) -> tuple[int, list[bytes]]:
        """(data_coding, the encoded parts) of ``body`` as :func:`outreach.input.text.analyse` splits
        it (its parts are what the preview billed)."""
        a = textmod.analyse(body)
        if a.encoding == textmod.GSM7:
            return self.gsm_coding, [gsm7_bytes(p) for p in a.parts]
        return 8, [p.encode("utf-16-be") for p in a.parts]

    def submits(self, msg: OutboundMessage) -> list[dict[str, Any]]:
        """The ``submit_sm`` fields for ``msg``, one dict per PDU (UDH/SAR: one per segment;
        payload: one). Raises :class:`ConfigurationError` (no sender) or
        :class:`InvalidAddressError`."""
        sender = msg.sender or self.source
        if not sender:
            raise ConfigurationError("no SMPP sender: set OUTREACH_SMPP_SOURCE (the brandname) "
                                     "or the channel's sender in the campaign file")
        src, ston, snpi = self._source_address(sender)
        base = dict(source_addr=src, source_addr_ton=ston, source_addr_npi=snpi,
                    destination_addr=self._destination(msg.to), dest_addr_ton=1,
                    dest_addr_npi=1, registered_delivery=self.registered_delivery)
        coding, parts = self.encode(msg.body)
        base["data_coding"] = coding
        if len(parts) <= 1:
            return [dict(base, short_message=parts[0] if parts else b"")]
        if self.join == "payload":
            return [dict(base, short_message=None, message_payload=b"".join(parts))]
        ref, n = self._next_ref(), len(parts)
        if self.join == "sar":
            return [dict(base, short_message=p, sar_msg_ref_num=ref, sar_total_segments=n,
                         sar_segment_seqnum=i + 1) for i, p in enumerate(parts)]
        return [dict(base, esm_class=0x40, short_message=bytes((5, 0, 3, ref, n, i + 1)) + p)
                for i, p in enumerate(parts)]

    def refusals(self, message: OutboundMessage) -> list[Refusal]:
        """A message of more segments than the configured maximum
        (``OUTREACH_SMPP_MAX_SEGMENTS``, default in ``smpp_limits.json``) is refused: the SMSC
        would answer ESME_RINVMSGLEN for every recipient."""
        segments = textmod.analyse(message.body or "").segments
        if segments > self.max_segments:
            lim = limits()
            return [Refusal("body", segments, self.max_segments, "segments",
                            f"SMPP: this SMSC accepts at most {self.max_segments} segments "
                            "(OUTREACH_SMPP_MAX_SEGMENTS; " + lim["max_segments_source"] + ")",
                            code=lim["max_segments_code"])]
        return []

    # -- the contract --------------------------------------------------------------------------
    def send(self, message: OutboundMessage) -> SendResult:
        """Submit ``message`` (all its segments, one after the other on the shared session);
        the result's ``provider_message_id`` is the first segment's SMSC message id and
        ``segments`` the parts billed. Raises the error tree: a failure of the first segment as
        the table says; a failure after some segments were accepted is permanent
        (``partial``, never resent: the phone may show the first parts) or, if the connection
        was lost, outcome unknown."""
        pdus = self.submits(message)
        ids: list[str] = []
        for i, fields in enumerate(pdus):
            for attempt in range(5 if i else 1):
                try:
                    resp = self.session.request("submit_sm", message.delivery_id, **fields)
                except UnavailableError:
                    if not i:
                        raise
                    if attempt == 4:
                        raise PermanentError(
                            f"SMSC unavailable after {i} of {len(pdus)} segments were accepted",
                            reason="partial", provider_code="partial") from None
                    time.sleep(0.2 * 2 ** attempt)
                    continue
                if resp.command == "generic_nack" or resp.is_error():
                    err = error_for(int(resp.status))
                    if i and isinstance(err, ThrottledError) and attempt < 4:
                        time.sleep(min(2.0, err.retry_after or 0.2))
                        continue
                    if i:
                        raise PermanentError(f"{err} after {i} of {len(pdus)} segments were "
                                             "accepted", reason="partial",
                                             provider_code=err.provider_code)
                    raise err
                ids.append(_text(resp.message_id))
                break
        if len(ids) > 1 and self.db is not None:
            self._record_segments(message.delivery_id, ids)
        return SendResult(provider_message_id=ids[0], status="sent",
                          provider_status="ESME_ROK", segments=message.segments if
                          self.join == "payload" else len(pdus))

    def _record_segments(self, delivery_id: int, ids: list[str]) -> None:
        from outreach.ledger.db import retry_write

        @retry_write
        def tx() -> None:
            with self.db.engine.begin() as conn:
                record_segments(conn, self.account, delivery_id, ids,
                                now=dt.datetime.now(dt.timezone.utc), gateway=self.name)

        tx()

    def lookup(self, message: OutboundMessage, since: dt.datetime,
               until: dt.datetime) -> StatusUpdate | None | bool:
        """A response that came after its request timed out (this process) is found; otherwise
        the SMSC cannot be asked without its message id: None (the operator decides)."""
        mid = self.session.late.get(message.delivery_id)
        if mid:
            return StatusUpdate(status="sent", provider_message_id=mid,
                                delivery_id=message.delivery_id, provider_status="late-resp")
        return None

    def fetch_statuses(self, provider_message_ids: list[str]) -> list[StatusUpdate]:
        """``query_sm`` for each id (§4.8): the message_state mapped by the stat table; ids the
        SMSC does not know (ESME_RQUERYFAIL, ESME_RINVMSGID) are left out."""
        out = []
        src, ston, snpi = self._source_address(self.source or "0")
        for mid in provider_message_ids:
            resp = self.session.request("query_sm", message_id=mid, source_addr=src,
                                        source_addr_ton=ston, source_addr_npi=snpi)
            if resp.command == "generic_nack" or resp.is_error():
                continue
            stat = _MESSAGE_STATE.get(int(resp.message_state or 0), "UNKNOWN")
            out.append(StatusUpdate(status=STAT_TO_STATUS.get(stat, "sent"),
                                    provider_message_id=mid, provider_status=stat,
                                    error_code=str(resp.error_code or "") or None))
        return out

    def check(self) -> dict[str, Any]:
        """Bind (or reuse the bound session): raises AuthenticationError / UnavailableError."""
        self.session.ensure_bound()
        return {"gateway": self.name, "ok": True, "host": self.host, "port": self.port,
                "system_id": self.system_id, "smsc": self.session.smsc_system_id,
                "tls": self.tls, "window": self.window, "join": self.join,
                "source": self.source}

    def close(self) -> None:
        """Write and acknowledge the receipts received so far, unbind, then stop."""
        self.session.close(flush=self.receipts.flush)
        self.receipts.close()


__all__ = ["SmppGateway", "SmppSession", "SmppReceipt", "ReceiptWriter", "apply_receipts",
           "record_segments", "store_inbound", "parse_receipt", "error_for", "gsm7_bytes",
           "decode_text", "STAT_TO_STATUS"]
