"""Delivery states and the one function that moves them (forward only, every move an event)."""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select, update

from outreach.models import Delivery, DeliveryEvent

QUEUED = "queued"
SENDING = "sending"
SENT = "sent"
DELIVERED = "delivered"
UNDELIVERED = "undelivered"
FAILED = "failed"
SKIPPED = "skipped"
OPTED_OUT = "opted_out"
UNKNOWN = "unknown"

ALL_STATES = (QUEUED, SENDING, SENT, DELIVERED, UNDELIVERED, FAILED, SKIPPED, OPTED_OUT, UNKNOWN)
FINAL_STATES = frozenset({DELIVERED, UNDELIVERED, FAILED, SKIPPED, OPTED_OUT})
#: Reached the provider (or may have): what "sent" means in a report.
ACCEPTED_STATES = frozenset({SENT, DELIVERED, UNDELIVERED})

#: Allowed moves: new state -> states it may come from. Everything else is ignored (kept as an
#: event with ``applied = False``), which is what makes duplicated and late receipts harmless.
_FORWARD: dict[str, frozenset[str]] = {
    SENDING: frozenset({QUEUED}),
    SENT: frozenset({SENDING, UNKNOWN}),
    DELIVERED: frozenset({SENDING, SENT, UNKNOWN}),
    UNDELIVERED: frozenset({SENDING, SENT, UNKNOWN}),
    FAILED: frozenset({QUEUED, SENDING, SENT, UNKNOWN}),
    UNKNOWN: frozenset({SENDING}),
    SKIPPED: frozenset({QUEUED}),
    OPTED_OUT: frozenset({QUEUED, SENDING}),
    QUEUED: frozenset(),
}
#: The only backward moves, each needing a reason: a request known not to have left
#: (connect failed) goes back to the queue; an operator may requeue an ``unknown``.
_BACKWARD: dict[tuple[str, str], frozenset[str]] = {
    (SENDING, QUEUED): frozenset({"not-sent"}),
    # reconciliation proved the provider never got it, or the operator decided to resend
    (UNKNOWN, QUEUED): frozenset({"not-sent", "operator"}),
    (UNKNOWN, SKIPPED): frozenset({"operator"}),
}

_TIMESTAMP = {SENDING: "sending_at", SENT: "sent_at", DELIVERED: "delivered_at"}
_FIELDS = ("provider_message_id", "provider_status", "error_code", "error_reason", "segments",
           "cost_vnd", "gateway", "lease_owner", "lease_expires_at", "channel")


def may_move(old: str, new: str, *, backward: str | None = None) -> bool:
    """True if a delivery in ``old`` may move to ``new``.

    ``backward`` names the reason for one of the two allowed backward moves
    (``"not-sent"``: the provider certainly never got it; ``"operator"``: an explicit decision).
    """
    if new in _FORWARD and old in _FORWARD[new]:
        return True
    return backward is not None and backward in _BACKWARD.get((old, new), frozenset())


@dataclass
class Change:
    """A requested move of one delivery. ``fields`` may set any of the provider columns.

    ``detail`` is kept with the event (the raw receipt, the error message); ``backward`` allows
    one of the documented backward moves.
    """

    delivery_id: int
    new_status: str
    fields: dict[str, Any] = field(default_factory=dict)
    detail: Any = None
    backward: str | None = None
    provider_status: str | None = None
    error_code: str | None = None


def apply(conn: Connection, changes: Sequence[Change], *, source: str, now: dt.datetime,
          lock: bool = True) -> dict[int, bool]:
    """Apply state changes in the caller's transaction; returns delivery id -> applied.

    Every change appends a :class:`DeliveryEvent` (``applied`` False when the move was not
    allowed: a late ``sent`` after ``delivered``, a duplicate receipt). The delivery row is
    updated only for allowed moves, guarded by its current status so a concurrent writer can
    never be overwritten. ``source`` is ``dispatcher``, ``webhook``, ``sync``, ``reconcile`` or
    ``operator``.
    """
    if not changes:
        return {}
    ids = sorted({c.delivery_id for c in changes})
    current: dict[int, str] = {}
    for chunk_start in range(0, len(ids), 900):
        chunk = ids[chunk_start:chunk_start + 900]
        stmt = select(Delivery.id, Delivery.status).where(Delivery.id.in_(chunk))
        if lock and conn.dialect.name == "postgresql":
            stmt = stmt.with_for_update()
        current.update(dict(conn.execute(stmt).all()))

    result: dict[int, bool] = {}
    updates: dict[tuple[str, str, frozenset[str]], list[dict[str, Any]]] = defaultdict(list)
    events: list[dict[str, Any]] = []
    for c in changes:
        old = current.get(c.delivery_id)
        if old is None:
            raise KeyError(f"delivery {c.delivery_id} does not exist")
        ok = may_move(old, c.new_status, backward=c.backward)
        result[c.delivery_id] = ok
        events.append({
            "delivery_id": c.delivery_id, "at": now, "source": source, "old_status": old,
            "new_status": c.new_status, "applied": ok,
            "provider_status": c.provider_status or c.fields.get("provider_status"),
            "error_code": c.error_code or c.fields.get("error_code"),
            "detail": _detail(c.detail),
        })
        if not ok:
            continue
        current[c.delivery_id] = c.new_status  # a second change in the same call sees the first
        values = {k: v for k, v in c.fields.items() if k in _FIELDS and v is not None}
        if c.new_status == SENDING:
            values["attempts_inc"] = 1
        updates[(old, c.new_status, frozenset(values))].append({"b_id": c.delivery_id, **values})

    for (old, new, keys), rows in updates.items():
        values: dict[str, Any] = {"status": new, "updated_at": now}
        for k in keys:
            if k == "attempts_inc":
                values["attempts"] = Delivery.attempts + 1
            else:
                values[k] = bindparam(k)
        if new in _TIMESTAMP:
            values[_TIMESTAMP[new]] = now
        if new in FINAL_STATES:
            values["final_at"] = now
            values["lease_owner"] = None
        if new in (QUEUED, UNKNOWN):
            values["lease_owner"] = None
        stmt = (update(Delivery).where(Delivery.id == bindparam("b_id"), Delivery.status == old)
                .values(**values))
        for row in rows:
            row.pop("attempts_inc", None)
        conn.execute(stmt.execution_options(synchronize_session=False), rows)
    conn.execute(insert(DeliveryEvent), events)
    return result


def _detail(detail: Any) -> str | None:
    if detail is None:
        return None
    if isinstance(detail, str):
        return detail
    return json.dumps(detail, ensure_ascii=False, default=str, sort_keys=True)


def final(status: str) -> bool:
    return status in FINAL_STATES


def counts_as_reached(status: str) -> bool:
    return status == DELIVERED


def group_by_status(rows: Iterable[tuple[str, int]]) -> dict[str, int]:
    """Status -> count with every state present (zeros included), in lifecycle order."""
    out = {s: 0 for s in ALL_STATES}
    for status, n in rows:
        out[status] = out.get(status, 0) + n
    return out
