"""Time: aware UTC instants, Vietnam's calendar, and a clock tests can drive without sleeping."""

from __future__ import annotations

import datetime as dt
import threading
import time
from zoneinfo import ZoneInfo

VN_TZ = ZoneInfo("Asia/Ho_Chi_Minh")
UTC = dt.timezone.utc


class Clock:
    """The real clock. ``now()`` is an aware UTC datetime; ``sleep`` takes seconds."""

    def now(self) -> dt.datetime:
        return dt.datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class FakeClock(Clock):
    """A clock that moves only when told to (``advance``) or when code sleeps on it."""

    def __init__(self, start: dt.datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("FakeClock needs an aware datetime")
        self._now = start.astimezone(UTC)
        self._mono = 0.0
        self._lock = threading.Lock()
        self.sleeps: list[float] = []

    def now(self) -> dt.datetime:
        with self._lock:
            return self._now

    def monotonic(self) -> float:
        with self._lock:
            return self._mono

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += dt.timedelta(seconds=seconds)
            self._mono += seconds

    def set(self, when: dt.datetime) -> None:
        with self._lock:
            delta = (when.astimezone(UTC) - self._now).total_seconds()
            self._now = when.astimezone(UTC)
            self._mono += max(delta, 0.0)

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.sleeps.append(seconds)
            self.advance(seconds)


def vn_today(now: dt.datetime) -> dt.date:
    """The calendar date in Asia/Ho_Chi_Minh at instant ``now``."""
    return now.astimezone(VN_TZ).date()


def vn_datetime(day: dt.date, clock_time: dt.time) -> dt.datetime:
    """The aware instant of ``clock_time`` on ``day`` in Asia/Ho_Chi_Minh (no DST there)."""
    return dt.datetime.combine(day, clock_time, tzinfo=VN_TZ)


SYSTEM_CLOCK = Clock()
