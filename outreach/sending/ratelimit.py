"""Rate limits: one process's sliding log, and a gateway's limit shared by every worker on one
database (GCRA in the ``rate_limits`` table)."""

from __future__ import annotations

import datetime as dt
import random
import threading
from collections import deque
from typing import Any

from sqlalchemy import select, text

from outreach.clock import SYSTEM_CLOCK, Clock
from outreach.ledger.db import Database
from outreach.ledger.models import RateLimit

_UPSERT = """
ON CONFLICT (gateway) DO UPDATE SET tat_us = {greatest}(rate_limits.tat_us, :now) + :t
WHERE rate_limits.tat_us <= :now + :ahead
RETURNING tat_us"""
_TAKE = text("INSERT INTO rate_limits (gateway, tat_us) VALUES (:g, :now + :t)"
             + _UPSERT.format(greatest="max"))
_TAKE_PG = text("INSERT INTO rate_limits (gateway, tat_us) SELECT :g, :now + :t "
                "FROM (SELECT set_config('synchronous_commit', 'off', true)) AS relaxed"
                + _UPSERT.format(greatest="GREATEST"))
_BLOCK_SQL = ("INSERT INTO rate_limits (gateway, tat_us) VALUES (:g, :until) ON CONFLICT (gateway) "
              "DO UPDATE SET tat_us = {greatest}(rate_limits.tat_us, :until)")
_BLOCK = text(_BLOCK_SQL.format(greatest="max"))
_BLOCK_PG = text(_BLOCK_SQL.format(greatest="GREATEST"))


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


#: how late (µs) after its slot began a send may still use it (see SharedRateLimiter)
LATE_SECONDS_US = 40_000


class SharedRateLimiter:
    """At most ``rate`` units (messages or segments) per gateway in every sliding second, for
    all processes and machines together: GCRA (the generic cell rate algorithm, virtual
    scheduling; ITU-T I.371 annex A) kept in the ``rate_limits`` table.

    The table holds, per gateway, the theoretical arrival time (TAT, epoch microseconds) of
    the next free slot. Taking ``units`` reserves the next ``units × interval`` of it in one
    atomic statement, so two workers can never take the same slot::

        INSERT INTO rate_limits (gateway, tat_us) VALUES (:g, :now + :t)
        ON CONFLICT (gateway) DO UPDATE SET tat_us = max(rate_limits.tat_us, :now) + :t
          WHERE rate_limits.tat_us <= :now + :ahead
        RETURNING tat_us

    The caller then sleeps until its slot begins and sends; a caller that wakes (or hears from
    the database) more than 40 ms after its slot began gives the slot up and takes another, so
    a stalled thread cannot crowd the slots after its own. ``interval`` is
    ``WINDOW / rate`` seconds with the same 5 % margin as :class:`RateLimiter`, so the starts
    of consecutive sends are at least that far apart and any one-second span at the provider
    holds at most ``rate`` of them (``floor(rate / 1.05) + 1 ≤ rate``), across a window
    boundary too — unlike counting fixed one-second windows, which let up to twice the rate
    through. A slot is reserved at most ``AHEAD_SECONDS`` ahead; a caller further back sleeps
    and asks again. A message larger than the whole limit takes one second of slots, so it
    still goes out alone in its second.

    ``block_until(t)`` (``t`` on ``clock.monotonic()``, seconds) moves the TAT to ``t`` for this
    process and, through the table, every other one: how a provider's Retry-After reaches all
    workers. Times come from ``clock.now()``: the hosts' clocks are assumed NTP-synchronised
    (the leases make the same assumption). ``rate`` must be > 0. Works on PostgreSQL and
    SQLite ≥ 3.35. Database errors propagate (SQLAlchemy exceptions). Thread-safe.
    """

    #: how far ahead (seconds) a slot may be reserved; a caller sleeps at most this long
    AHEAD_SECONDS = 0.25

    def __init__(self, db: Database, gateway: str, rate: float, *,
                 clock: Clock = SYSTEM_CLOCK) -> None:
        if rate <= 0:
            raise ValueError("a shared rate limit needs a rate above 0 (units per second)")
        self.db = db
        self.gateway = gateway
        self.rate = rate
        self.limit = max(int(rate), 1)
        self.clock = clock
        self.interval_us = int(RateLimiter.WINDOW / rate * 1_000_000)
        # a slot is used only this close to its start (µs): with every send at most D late,
        # a one-second span holds sends of slots within 1 + D s, at most (1 + D) / interval =
        # (1 + D) × rate / 1.05, fewer than ``rate`` while D < 0.05 s (10 ms kept for the send)
        self.late_us = LATE_SECONDS_US
        self._blocked_until = 0.0
        self._lock = threading.Lock()
        self._postgresql = db.engine.dialect.name == "postgresql"
        self._take_sql = _TAKE_PG if self._postgresql else _TAKE

    def acquire(self, units: int = 1) -> None:
        """Block until a slot of ``units`` is this caller's, then return at its start."""
        n = min(max(units, 1), self.limit)
        t = n * self.interval_us
        ahead = int(self.AHEAD_SECONDS * 1_000_000)
        while True:
            with self._lock:
                wait = self._blocked_until - self.clock.monotonic()
            if wait > 0:
                self.clock.sleep(wait)
                continue
            now = _us(self.clock.now())
            tat = self._take(now, t, ahead)
            if tat is not None:
                start = tat - t  # this slot begins here
                if start > now:
                    self.clock.sleep((start - now) / 1_000_000)
                if _us(self.clock.now()) - start <= self.late_us:
                    return
                # woken (or answered) too late for this slot: sending now would crowd the
                # slots after it, so the slot is given up and another one taken
                continue
            current = self._tat()
            self.clock.sleep(max((current - ahead - now) / 1_000_000, 0.0005)
                             + random.uniform(0, 0.002))

    def _take(self, now: int, t: int, ahead: int) -> int | None:
        params = {"g": self.gateway, "now": now, "t": t, "ahead": ahead}
        if self._postgresql:
            # one round trip, committed by itself without waiting for the WAL flush: a slot
            # lost in a server crash only makes the next sender wait a little less
            with self.db.engine.connect() as conn:
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")
                row = conn.execute(self._take_sql, params).first()
        else:
            with self.db.engine.begin() as conn:
                row = conn.execute(self._take_sql, params).first()
        return None if row is None else int(row[0])

    def _tat(self) -> int:
        with self.db.engine.connect() as conn:
            return int(conn.execute(select(RateLimit.tat_us).where(
                RateLimit.gateway == self.gateway)).scalar() or 0)

    def block_until(self, t: float) -> None:
        """Send nothing through this gateway before monotonic time ``t`` (seconds), here and in
        every other worker (the TAT is moved there)."""
        with self._lock:
            self._blocked_until = max(self._blocked_until, t)
        until = _us(self.clock.now()) + round(max(t - self.clock.monotonic(), 0.0) * 1_000_000)
        params = {"g": self.gateway, "until": until}
        with self.db.engine.begin() as conn:
            conn.execute(_BLOCK_PG if self._postgresql else _BLOCK, params)

    def next_slot(self) -> dt.datetime | None:
        """When the next slot of this gateway begins (aware UTC), None before the first send
        (inspection and tests)."""
        tat = self._tat()
        return dt.datetime.fromtimestamp(tat / 1_000_000, dt.timezone.utc) if tat else None


def _us(when: dt.datetime) -> int:
    return round(when.timestamp() * 1_000_000)


def limiter_for(db: Database, gateway: str, rate: float | None, *, shared: bool,
                clock: Clock = SYSTEM_CLOCK) -> Any:
    """The limiter a sending process uses for one gateway: shared through the database
    (:class:`SharedRateLimiter`) when ``shared`` and the database is PostgreSQL and a rate is
    set, else this process's own :class:`RateLimiter` (``rate`` None or 0: unlimited)."""
    if shared and rate and db.engine.dialect.name == "postgresql":
        return SharedRateLimiter(db, gateway, rate, clock=clock)
    return RateLimiter(rate or 0, clock)


__all__ = ["RateLimiter", "SharedRateLimiter", "limiter_for"]
