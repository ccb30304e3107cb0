"""The opt-out (suppression) list: applied when a run is created and again just before each send."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping

from sqlalchemy import Connection, delete, select
from sqlalchemy.dialects import postgresql, sqlite

from outreach.reporting import audit
from outreach.ledger.models import Suppression


def add(conn: Connection, numbers: Iterable[str], *, reason: str, source: str,
        operator: str | None = None, now: dt.datetime | None = None, log: bool = True,
        action: str = "optout-add", reasons: Mapping[str, str] | None = None) -> int:
    """Suppress E.164 numbers; returns how many were new. Already suppressed numbers keep their
    first reason and source. ``reasons`` gives a number its own reason (an opt-out file's
    reason column) instead of ``reason``."""
    now = now or dt.datetime.now(dt.timezone.utc)
    reasons = reasons or {}
    rows = [{"e164": n, "reason": reasons.get(n) or reason, "source": source, "created_at": now}
            for n in dict.fromkeys(numbers)]
    if not rows:
        return 0
    before = count(conn)
    ins = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(Suppression)
    conn.execute(ins.on_conflict_do_nothing(), rows)
    added = count(conn) - before
    if log:
        audit.record(conn, action, operator=operator, now=now,
                     details={"numbers": len(rows), "added": added, "reason": reason,
                              "source": source})
    return added


def remove(conn: Connection, numbers: Iterable[str], *, operator: str | None = None,
           now: dt.datetime | None = None) -> int:
    nums = list(dict.fromkeys(numbers))
    n = conn.execute(delete(Suppression).where(Suppression.e164.in_(nums))).rowcount
    audit.record(conn, "optout-remove", operator=operator, now=now,
                 details={"numbers": len(nums), "removed": n})
    return n


def is_suppressed(conn: Connection, e164: str) -> bool:
    return conn.execute(select(Suppression.e164).where(Suppression.e164 == e164)).first() is not None


def suppressed_among(conn: Connection, numbers: Iterable[str]) -> set[str]:
    nums = list(numbers)
    out: set[str] = set()
    for i in range(0, len(nums), 900):
        out.update(conn.execute(select(Suppression.e164).where(
            Suppression.e164.in_(nums[i:i + 900]))).scalars())
    return out


def count(conn: Connection) -> int:
    from sqlalchemy import func

    return conn.execute(select(func.count()).select_from(Suppression)).scalar_one()


def all_entries(conn: Connection) -> list[Suppression]:
    from sqlalchemy.orm import Session

    with Session(bind=conn) as s:
        return list(s.scalars(select(Suppression).order_by(Suppression.created_at)))
