"""Leases: who holds a claimed delivery, a run or a token refresh, and whether that holder lives.

One idiom for every claim in outreach (issue #14):

* an **owner id** ``<node>:<pid>:<nonce>`` names the holder (:func:`owner_id`);
* a holder on **this node** (same host and PID namespace) is alive while its process exists
  (:func:`alive`); a holder elsewhere is alive while its **lease** has not expired;
* every claim honours one lease length, :data:`LEASE_SECONDS`, unless the caller passes its own;
* a :class:`Lease` renews the lease of what it holds every quarter of the lease, and says it is
  :meth:`~Lease.lost` once no renewal succeeded for half the lease, so the holder stops before
  anybody else may take its rows over.

Used by the send engine (delivery rows), the scheduler (a run claimed by one scheduler process)
and the Zalo token store (one refresh at a time).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable

from sqlalchemy import select, update
from sqlalchemy.exc import SQLAlchemyError

from outreach.i18n import N_, _
from outreach.ledger import states
from outreach.sending import reasons
from outreach.clock import SYSTEM_CLOCK, Clock
from outreach.ledger.db import Database
from outreach.ledger.models import Delivery

log = logging.getLogger(__name__)

#: The lease of a claimed batch, a claimed run or a token refresh (seconds). A living holder
#: renews it every quarter; a holder on another node is taken over once it has expired.
LEASE_SECONDS = 60.0

#: Inode of Linux's initial PID namespace (``PROC_PID_INIT_INO`` in the kernel).
_INIT_PID_NS = 0xEFFFFFFC

_MINE: set[str] = set()  # owner ids made by this process and still in use
_MINE_LOCK = threading.Lock()


def node_name() -> str:
    """This machine as owners name it: the host name, plus ``~<PID namespace>`` inside a
    container.

    Containers that share a host name (host networking) have separate PID namespaces, where a
    process id means nothing; qualifying the node keeps :func:`alive` from judging a living
    process of another container dead. At most 40 characters (a long host name is cut and a
    hash of the whole added), so an owner id fits ``deliveries.lease_owner`` (64).
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
    """A new ``<node>:<pid>:<nonce>`` for one holder in this process (``deliveries.lease_owner``,
    a run's dispatcher marker, a token refresh claim). Registered as this process's own until
    :func:`release_owner`."""
    owner = f"{node_name()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    with _MINE_LOCK:
        _MINE.add(owner)
    return owner


def release_owner(owner: str) -> None:
    """The holder ``owner`` of this process is done: :func:`alive` no longer counts it."""
    with _MINE_LOCK:
        _MINE.discard(owner)


def local_pid(owner: str) -> int | None:
    """The process id in an owner id when the owner is on this node, else None (another node,
    or not an owner id)."""
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


def alive(owner: str | None) -> bool | None:
    """Whether ``owner`` is provably alive: True or False for a holder on this node (its process
    exists; for this very process, the owner id is still in use — a restarted container reuses
    pids), None when only its lease can tell (another node, or not an owner id)."""
    if not owner:
        return False
    pid = local_pid(owner)
    if pid is None:
        return None
    if pid == os.getpid():
        with _MINE_LOCK:
            return owner in _MINE
    return pid_alive(pid)


def orphaned(owner: str | None, expires_at: dt.datetime | None, now: dt.datetime) -> bool:
    """True when the holder of a lease can no longer act on what it holds.

    On this node the process decides at once: a dead process is orphaned whatever its lease
    says, a living one never is (it renews its lease). Holders in this very process, and on
    other nodes, are orphaned once their lease has expired (``expires_at`` before ``now``, both aware UTC). A claim without an
    owner is orphaned.
    """
    expired = expires_at is None or expires_at < now
    if not owner:
        return True
    pid = local_pid(owner)
    if pid is None or pid == os.getpid():
        # this very process: a holder here may be slower than its lease (an engine on a slow
        # gateway renews it, a test may not), so only an expired lease orphans it
        return expired
    return not pid_alive(pid)


def expiry(now: dt.datetime, seconds: float = LEASE_SECONDS) -> dt.datetime:
    """``now`` + the lease: when a claim made now expires unless renewed (aware UTC)."""
    return now + dt.timedelta(seconds=seconds)


class LeaseLost(Exception):
    """The holder could not renew its lease in time and must stop acting on what it holds,
    leaving it to be taken over as if it had crashed (a worker exits with status 75)."""


class Lease:
    """The lease of the delivery rows one holder has claimed and not yet recorded.

    :meth:`hold` the ids a claim just leased, :meth:`drop` them once their outcomes are written;
    a background thread (:meth:`start`) renews the lease of everything held every
    ``seconds / 4``. :meth:`lost` is True once no renewal succeeded for half the lease (a
    stalled process, an unreachable database): the engine then stops before another holder may
    take the rows over (they become orphaned only when the lease has expired). Rows locked by
    a record in progress are skipped, never waited for, so renewals cannot deadlock with it.
    """

    def __init__(self, db: Database, owner: str | None = None, seconds: float = LEASE_SECONDS,
                 clock: Clock = SYSTEM_CLOCK, monotonic: Callable[[], float] = time.monotonic
                 ) -> None:
        if seconds < 1:
            raise ValueError("the lease must be at least 1 second")
        self.db, self.clock, self.seconds = db, clock, seconds
        self.owner = owner or owner_id()
        self._monotonic = monotonic
        self._ids: set[int] = set()
        self._last_ok = monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def until(self, now: dt.datetime | None = None) -> dt.datetime:
        """When a claim made at ``now`` (default the clock's) expires."""
        return expiry(now or self.clock.now(), self.seconds)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="lease-keeper", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def hold(self, ids: Iterable[int]) -> None:
        """The rows just claimed (their lease was set by the claim)."""
        with self._lock:
            if not self._ids:
                self._last_ok = self._monotonic()
            self._ids.update(ids)

    def drop(self, ids: Iterable[int]) -> None:
        with self._lock:
            self._ids.difference_update(ids)

    def clear(self) -> None:
        with self._lock:
            self._ids.clear()

    def lost(self) -> bool:
        with self._lock:
            return bool(self._ids) and self._monotonic() - self._last_ok > self.seconds / 2

    def check(self) -> None:
        """Raise :class:`LeaseLost` when :meth:`lost`."""
        if self.lost():
            raise LeaseLost(reasons.english(N_("lease of {owner} not renewed for {seconds} s"),
                                            owner=self.owner, seconds=f"{self.seconds / 2:.0f}"))

    def _loop(self) -> None:
        while not self._stop.wait(self.seconds / 4):
            try:
                self.renew()
            except SQLAlchemyError as exc:
                log.warning(_("lease renewal failed: {error}").format(error=exc))

    def renew(self) -> int:
        """Extend the lease of the held rows still ``sending`` for this owner; returns how many."""
        with self._lock:
            ids = sorted(self._ids)
        if not ids:
            return 0
        started = self._monotonic()
        until = self.until()
        mine = (select(Delivery.id).where(Delivery.id.in_(ids), Delivery.lease_owner == self.owner,
                                          Delivery.status == states.SENDING))
        with self.db.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                mine = mine.with_for_update(skip_locked=True)
            n = conn.execute(update(Delivery).where(Delivery.id.in_(mine.scalar_subquery()))
                             .values(lease_expires_at=until)
                             .execution_options(synchronize_session=False)).rowcount
        with self._lock:
            self._last_ok = max(self._last_ok, started)
        return n


__all__ = ["LEASE_SECONDS", "Lease", "LeaseLost", "node_name", "owner_id", "release_owner",
           "local_pid", "pid_alive", "alive", "orphaned", "expiry"]
