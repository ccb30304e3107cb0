"""A gateway's rate limit shared by every worker on one database (``rate_windows`` table)."""

from __future__ import annotations

import datetime as dt
import logging
import math
import random
import threading

from sqlalchemy import delete, select, text
from sqlalchemy.dialects import postgresql, sqlite

from outreach.clock import SYSTEM_CLOCK, Clock
from outreach.db import Database
from outreach.models import RateWindow

log = logging.getLogger(__name__)

#: Windows older than this many seconds are deleted (they only serve inspection).
KEEP_SECONDS = 600
#: How often (seconds) one limiter prunes old windows.
PRUNE_EVERY_SECONDS = 60.0
#: A token is only used if it was granted at least this long (seconds) before its window ends.
GRANT_MARGIN_SECONDS = 0.05

_UPSERT = """
ON CONFLICT (gateway, second) DO UPDATE SET used = rate_windows.used + :n
WHERE rate_windows.used + :n <= :limit
RETURNING used"""
_TAKE = text("INSERT INTO rate_windows (gateway, second, used) VALUES (:g, :s, :n)" + _UPSERT)
_TAKE_PG = text("INSERT INTO rate_windows (gateway, second, used) SELECT :g, :s, :n "
                "FROM (SELECT set_config('synchronous_commit', 'off', true)) AS relaxed" + _UPSERT)


class SharedRateLimiter:
    """At most ``rate`` units (messages or segments) per gateway in each one-second window,
    counted for all processes and machines together in the ``rate_windows`` table.

    Window ``s`` is the epoch second ``floor(clock.now().timestamp())``; the hosts' clocks are
    assumed NTP-synchronised (the leases make the same assumption). Taking ``units`` is one
    atomic statement, so two workers can never both take the last token::

        INSERT INTO rate_windows (gateway, second, used) VALUES (:g, :s, :n)
        ON CONFLICT (gateway, second) DO UPDATE SET used = rate_windows.used + :n
          WHERE rate_windows.used + :n <= :limit
        RETURNING used

    On PostgreSQL the statement runs on its own (autocommit) with ``synchronous_commit`` off
    for that one transaction: one round trip, no wait for the WAL flush. No row returned
    means the window is full: the caller sleeps until the next second (plus a few
    milliseconds of jitter so the workers do not all retry at the same instant) and tries
    again. A token granted within ``GRANT_MARGIN_SECONDS`` of its window's end (a slow round
    trip) is given up and the message waits for the next window, so that a message counted in
    one second does not reach the provider in the next. Like
    :class:`outreach.dispatch.RateLimiter`, a message larger than the whole limit takes the
    whole limit, so it still goes out alone in its second.

    Fixed one-second windows, not a sliding log: a one-second span that straddles a window
    boundary can see up to twice ``rate`` (the end of one window, the start of the next).

    ``block_until(t)`` (``t`` on ``clock.monotonic()``, seconds) holds back this process and,
    through the table, every other one: the seconds up to ``t`` are filled to the limit, which
    is how a provider's Retry-After reaches all workers. ``rate`` must be > 0 (0 means
    unlimited and needs no limiter). Works on PostgreSQL and SQLite ≥ 3.35. Database errors
    propagate (SQLAlchemy exceptions). Thread-safe: each call uses its own connection.
    """

    def __init__(self, db: Database, gateway: str, rate: float, *,
                 clock: Clock = SYSTEM_CLOCK) -> None:
        if rate <= 0:
            raise ValueError("a shared rate limit needs a rate above 0 (units per second)")
        self.db = db
        self.gateway = gateway
        self.rate = rate
        self.limit = max(int(rate), 1)
        self.clock = clock
        self._blocked_until = 0.0
        self._next_prune = 0.0
        self._lock = threading.Lock()
        self._postgresql = db.engine.dialect.name == "postgresql"
        self._insert = postgresql.insert if self._postgresql else sqlite.insert

    # -- taking tokens ----------------------------------------------------------------------
    def acquire(self, units: int = 1) -> None:
        """Block until ``units`` fit into the current window of this gateway, then take them."""
        n = min(max(units, 1), self.limit)
        while True:
            with self._lock:
                wait = self._blocked_until - self.clock.monotonic()
            if wait > 0:
                self.clock.sleep(wait)
                continue
            self._maybe_prune()  # now, not between the grant and the send
            now = self.clock.now().timestamp()
            second = math.floor(now)
            if now < second + 1 - GRANT_MARGIN_SECONDS and self._take(second, n):
                if self.clock.now().timestamp() < second + 1 - GRANT_MARGIN_SECONDS:
                    return
                # granted too late to go out within its second: the token is given up rather
                # than spent in the next window, which may be full
                continue
            self.clock.sleep(second + 1 - now + random.uniform(0.0005, 0.005))

    def _take(self, second: int, n: int) -> bool:
        params = {"g": self.gateway, "s": second, "n": n, "limit": self.limit}
        if self._postgresql:
            # one round trip, committed by itself without waiting for the WAL flush: a token
            # count lost in a server crash is harmless, and the flush cost 4× the statement
            with self.db.engine.connect() as conn:
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")
                return conn.execute(_TAKE_PG, params).first() is not None
        with self.db.engine.begin() as conn:
            return conn.execute(_TAKE, params).first() is not None

    # -- holding every worker back ------------------------------------------------------------
    def block_until(self, t: float) -> None:
        """Send nothing through this gateway before monotonic time ``t`` (seconds), here and in
        every other worker (the windows up to then are marked full)."""
        with self._lock:
            self._blocked_until = max(self._blocked_until, t)
        now = self.clock.now().timestamp()
        until = now + max(t - self.clock.monotonic(), 0.0)
        seconds = range(math.floor(now), math.ceil(until))
        if not seconds:
            return
        stmt = self._insert(RateWindow).values(
            [{"gateway": self.gateway, "second": s, "used": self.limit} for s in seconds])
        stmt = stmt.on_conflict_do_update(index_elements=[RateWindow.gateway, RateWindow.second],
                                          set_={"used": self.limit})
        with self.db.engine.begin() as conn:
            conn.execute(stmt)

    # -- housekeeping -----------------------------------------------------------------------
    def _maybe_prune(self) -> None:
        mono = self.clock.monotonic()
        with self._lock:
            if mono < self._next_prune:
                return
            self._next_prune = mono + PRUNE_EVERY_SECONDS
        oldest = math.floor(self.clock.now().timestamp()) - KEEP_SECONDS
        with self.db.engine.begin() as conn:
            gone = conn.execute(delete(RateWindow).where(
                RateWindow.gateway == self.gateway, RateWindow.second < oldest)).rowcount
        if gone:
            log.debug("pruned %d rate windows of %s", gone, self.gateway)

    def usage(self, since: dt.datetime | None = None) -> dict[int, int]:
        """Epoch second -> units taken, for this gateway (inspection and tests)."""
        stmt = select(RateWindow.second, RateWindow.used).where(RateWindow.gateway == self.gateway)
        if since is not None:
            stmt = stmt.where(RateWindow.second >= math.floor(since.timestamp()))
        with self.db.engine.connect() as conn:
            return {s: u for s, u in conn.execute(stmt.order_by(RateWindow.second))}


__all__ = ["SharedRateLimiter", "KEEP_SECONDS"]
