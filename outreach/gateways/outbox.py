"""The default gateway: each message it would send becomes one JSON line in a local file."""

from __future__ import annotations

import datetime as dt
import json
import os
import threading
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: one process per outbox folder
    fcntl = None  # type: ignore[assignment]
from typing import Any, ClassVar

from outreach import config, safeio
from outreach.gateways.base import (ConfigurationError, Gateway, OutboundMessage, SendResult,
                                    StatusUpdate)


class OutboxGateway(Gateway):
    """Writes ``{"delivery_id", "campaign", "channel", "to", "sender", "segments", "body", "at",
    "message_id"}`` per line to ``<dir>/<campaign id>.jsonl`` (UTF-8, body in NFC as sent).

    The folder is created 0700 and each file 0600 (whole numbers: personal data).
    Reaches no phone, so a campaign's send window is reported but not enforced. A line is
    written with one ``write`` and flushed before the send returns, so after a crash
    :meth:`lookup` can tell for certain whether a delivery was written. :meth:`send_many`
    writes a whole batch with one buffered ``write`` and one ``fsync`` (a million messages
    cost a few hundred system calls, not millions).

    Every write holds an exclusive ``flock`` on the file (several workers may share one
    outbox), so a file that does not end in a newline was cut short by a writer that died
    (``kill -9`` inside a large ``write``): that torn tail, never a complete send, is cut off
    before the next write, and the file stays whole UTF-8 lines. :meth:`lookup` never counts a
    torn line, so its delivery is written again, whole.
    """

    name: ClassVar[str] = "outbox"
    channel: ClassVar[str] = "sms"
    reaches_phones: ClassVar[bool] = False
    rate_per_second: ClassVar[float] = 0.0
    concurrency: ClassVar[int] = 1
    can_confirm: ClassVar[bool] = True
    batched: ClassVar[bool] = True
    #: a crash leaves at most one batch to reconcile (the outbox confirms it from the file);
    #: 2,000 lines are one 600 kB write (at 500 a million-row send spent 10 % more time in
    #: claims and commits: benchmarks/city_1m.py)
    preferred_batch: ClassVar[int | None] = 2000

    def __init__(self, *, directory: str | os.PathLike[str] | None = None,
                 channel: str | None = None, **_: Any) -> None:
        self.directory = Path(directory) if directory else config.outbox_dir()
        try:
            safeio.private_dir(self.directory)  # 0700 when created: the lines hold numbers
        except OSError as exc:
            raise ConfigurationError(f"cannot create outbox directory {self.directory}: {exc}") from exc
        if channel:
            self.channel = channel  # type: ignore[misc]
        self._files: dict[str, Any] = {}
        self._index: dict[str, tuple[bytearray, int]] = {}  # lookup: ids seen, bytes read
        self._lock = threading.Lock()

    def path_for(self, campaign_id: str) -> Path:
        return self.directory / f"{campaign_id}.jsonl"

    def send(self, message: OutboundMessage) -> SendResult:
        sid = f"outbox-{message.delivery_id}"
        line = json.dumps({
            "delivery_id": message.delivery_id, "campaign": message.campaign_id,
            "channel": message.channel, "to": message.to, "sender": message.sender,
            "segments": message.segments, "body": message.body,
            "template_id": message.template_id, "zalo_user_id": message.zalo_user_id,
            "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "message_id": sid,
        }, ensure_ascii=False) + "\n"
        self._append(message.campaign_id, line.encode("utf-8"), sync=False)
        # a local file bills nothing: the ledger's cost of this delivery becomes 0 VND
        return SendResult(provider_message_id=sid, status="sent", provider_status="written",
                          segments=message.segments, price_vnd=0.0)

    def send_many(self, messages: list[OutboundMessage]) -> list[SendResult]:
        """The batch's lines in one ``write``, flushed and ``fsync``-ed before returning; the
        same lines :meth:`send` writes. Raises OSError (the disk): any line may be written,
        which :meth:`lookup` then tells."""
        if not messages:
            return []
        at = json.dumps(dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
        dumps = json.dumps
        enc: dict[Any, str] = {}  # the same body, sender, template for everyone: encoded once

        def cached(value: Any) -> str:
            key = (type(value), value)
            out = enc.get(key)
            if out is None:
                out = enc[key] = dumps(value, ensure_ascii=False)
            return out

        by_campaign: dict[str, list[str]] = {}
        results: list[SendResult] = []
        for m in messages:
            sid = f"outbox-{m.delivery_id}"
            by_campaign.setdefault(m.campaign_id, []).append(
                f'{{"delivery_id": {m.delivery_id}, "campaign": {cached(m.campaign_id)}, '
                f'"channel": {cached(m.channel)}, "to": {dumps(m.to)}, '
                f'"sender": {cached(m.sender)}, "segments": {m.segments}, '
                f'"body": {cached(m.body)}, "template_id": {cached(m.template_id)}, '
                f'"zalo_user_id": {cached(m.zalo_user_id)}, "at": {at}, '
                f'"message_id": "{sid}"}}\n')
            results.append(SendResult(provider_message_id=sid, status="sent",
                                      provider_status="written", segments=m.segments,
                                      price_vnd=0.0))
        for campaign_id, lines in by_campaign.items():
            self._append(campaign_id, "".join(lines).encode("utf-8"), sync=True)
        return results

    def lookup(self, message: OutboundMessage, since: dt.datetime,
               until: dt.datetime) -> StatusUpdate | bool | None:
        """Whether the file has the delivery's line. The file is indexed once and then from
        where the last lookup stopped (one bit per delivery id, so reconciling thousands of
        rows reads a million-line file once, in constant memory); a line cut short by a crash
        was never a complete send."""
        path = self.path_for(message.campaign_id)
        if not path.exists():
            return False
        with self._lock:
            fh = self._files.get(message.campaign_id)
            if fh is not None:
                fh.flush()
            bits, offset = self._index.get(message.campaign_id, (bytearray(), 0))
            with open(path, "rb") as f:
                f.seek(offset)
                data = f.read()
            end = data.rfind(b"\n") + 1  # a line still being written is read next time
            for line in data[:end].splitlines():
                try:
                    did = int(json.loads(line)["delivery_id"])
                except (ValueError, KeyError, TypeError):
                    continue
                byte = did >> 3
                if byte >= len(bits):
                    bits.extend(bytes(byte + 1 - len(bits) + 4096))
                bits[byte] |= 1 << (did & 7)
            self._index[message.campaign_id] = (bits, offset + end)
            did = message.delivery_id
            found = (did >> 3) < len(bits) and bits[did >> 3] >> (did & 7) & 1
        if found:
            return StatusUpdate(status="sent", provider_message_id=f"outbox-{did}",
                                delivery_id=did, provider_status="written")
        return False

    def _append(self, campaign_id: str, data: bytes, *, sync: bool) -> None:
        """Append ``data`` (whole lines) to the campaign's file under the process's lock and an
        exclusive ``flock``, first cutting off a torn tail; ``sync``: ``fsync`` before the lock
        is released. Raises OSError (the disk)."""
        with self._lock:
            fh = self._open(campaign_id)
            fd = fh.fileno()
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                self._drop_torn_tail(campaign_id, fd)
                fh.write(data)
                fh.flush()
                if sync:
                    os.fsync(fd)
            finally:
                if fcntl is not None:
                    fcntl.flock(fd, fcntl.LOCK_UN)

    def _drop_torn_tail(self, campaign_id: str, fd: int) -> None:
        """Cut the file after its last newline when a dead writer left a line without one
        (caller holds the ``flock``). Reads only the tail: one byte when the file is whole."""
        size = os.fstat(fd).st_size
        if size == 0:
            return
        with open(self.path_for(campaign_id), "rb") as f:
            f.seek(size - 1)
            if f.read(1) == b"\n":
                return
            pos = size
            while pos > 0:
                step = min(pos, 1 << 16)
                pos -= step
                f.seek(pos)
                nl = f.read(step).rfind(b"\n")
                if nl >= 0:
                    pos += nl + 1
                    break
        os.ftruncate(fd, pos)

    def _open(self, campaign_id: str) -> Any:
        """The campaign's file, opened once for appending bytes (caller holds the lock)."""
        fh = self._files.get(campaign_id)
        if fh is None:
            fh = safeio.open_private(self.path_for(campaign_id), "ab")
            self._files[campaign_id] = fh
        return fh

    def close(self) -> None:
        with self._lock:
            for fh in self._files.values():
                fh.close()
            self._files.clear()
