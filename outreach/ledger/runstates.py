"""Run states: the statuses of a run, the moves allowed between them, and the one guarded move.

The delivery states are in :mod:`outreach.ledger.states`; this is their counterpart for a run (issue
#14). Every change of ``runs.status`` after a run was created goes through :func:`move`, which
changes the row only from a status the table allows (a compare-and-set, so two processes
moving one run at once cannot both win, and an operator's cancel is never undone by a
dispatcher finishing its batch).

::

    created ──► running ──► completed
       │  ▲        │ ▲
       │  │        ▼ │
       │  └──── waiting (send window, daily cap, receipts before a fallback)
       ▼           │
    paused ◄───────┘   (operator, interrupt, gateway error, error rate)
       │
       ▼
    cancelled (operator; a cancelled run may be reopened: ``cancelled → paused``)

    expired (a scheduled run found past its lateness limit), missed (a day nobody started)
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Connection, func, select, update

from outreach.i18n import N_
from outreach.ledger import states
from outreach.ledger.db import Database, retry_write
from outreach.ledger.models import Delivery, Run

CREATED = "created"
RUNNING = "running"
WAITING = "waiting"
PAUSED = "paused"
COMPLETED = "completed"
CANCELLED = "cancelled"
EXPIRED = "expired"
MISSED = "missed"

ALL = (CREATED, RUNNING, WAITING, PAUSED, COMPLETED, CANCELLED, EXPIRED, MISSED)
#: A run still to be continued by someone: ``campaign launch`` refuses a second one.
ACTIVE = (CREATED, RUNNING, PAUSED, WAITING, EXPIRED)
#: Runs a sending process takes up by itself (workers, the scheduler).
WORKABLE = (CREATED, RUNNING, WAITING)
#: Finished: nothing more is sent in it.
FINISHED = (COMPLETED, CANCELLED, MISSED)

#: from -> the statuses it may move to. Staying in the same status (a new reason) is allowed
#: for every status but the final ones.
MOVES: dict[str, frozenset[str]] = {
    CREATED: frozenset({RUNNING, WAITING, PAUSED, COMPLETED, CANCELLED, EXPIRED}),
    RUNNING: frozenset({WAITING, PAUSED, COMPLETED, CANCELLED}),
    WAITING: frozenset({RUNNING, PAUSED, COMPLETED, CANCELLED, EXPIRED}),
    PAUSED: frozenset({RUNNING, CREATED, WAITING, COMPLETED, CANCELLED}),
    # deliveries requeued by the operator, or unknown ones reconciled to the queue
    COMPLETED: frozenset({PAUSED}),
    # a cancel is not a dead end: the operator may reopen the run
    CANCELLED: frozenset({PAUSED}),
    EXPIRED: frozenset({PAUSED, CANCELLED, RUNNING, CREATED}),
    MISSED: frozenset(),
}

_SAME_ALLOWED = frozenset({CREATED, RUNNING, WAITING, PAUSED})


class RunStateError(ValueError):
    """A move the table does not allow (a programming error, not an operator's)."""


def sources(to: str) -> tuple[str, ...]:
    """Every status a run may move to ``to`` from (``to`` itself included where a new reason
    is allowed)."""
    if to not in MOVES:
        raise RunStateError(f"unknown run status {to!r}")
    out = [s for s, targets in MOVES.items() if to in targets]
    if to in _SAME_ALLOWED:
        out.append(to)
    return tuple(sorted(out))


def move(conn: Connection, run_id: int, to: str, reason: str | None = None, *,
         now: dt.datetime, only_from: tuple[str, ...] | None = None,
         values: dict[str, Any] | None = None, where: Any = None) -> bool:
    """Move run ``run_id`` to status ``to`` with ``reason``, in the caller's transaction.

    The row changes only if its current status may move to ``to`` (:data:`MOVES`), narrowed
    to ``only_from`` when given (e.g. a worker starting a run only from ``created``/``waiting``,
    so an operator's pause wins). A ``completed`` or ``cancelled`` run is reopened only when
    ``only_from`` names that status: no dispatcher finishing its batch undoes a cancel. ``running`` sets ``started_at`` once; a final status sets
    ``finished_at``; leaving a final status clears it. ``values`` adds columns (e.g.
    ``options``); ``where`` adds a condition (e.g. no delivery left open). Returns True if the
    row moved. Raises :class:`RunStateError` for a status the
    table does not know or an ``only_from`` the table forbids.
    """
    allowed = sources(to)
    if only_from is None:
        # reopening a completed or cancelled run is an explicit decision: the caller names it
        allowed = tuple(s for s in allowed if s not in (COMPLETED, CANCELLED))
    else:
        bad = [s for s in only_from if s not in allowed]
        if bad:
            raise RunStateError(f"a run cannot move from {', '.join(bad)} to {to}")
        allowed = tuple(only_from)
    vals: dict[str, Any] = {"status": to, "status_reason": reason}
    if to == RUNNING:
        vals["started_at"] = func.coalesce(Run.started_at, now)
    if to in FINISHED:
        vals["finished_at"] = now
    elif to in (PAUSED, RUNNING, CREATED, WAITING):
        vals["finished_at"] = None
    vals.update(values or {})
    stmt = update(Run).where(Run.id == run_id, Run.status.in_(allowed))
    if where is not None:
        stmt = stmt.where(where)
    return conn.execute(stmt.values(**vals)).rowcount == 1


@retry_write
def complete_if_done(db: Database, run_id: int, *, now: dt.datetime) -> bool:
    """Mark the run ``completed`` if it is still going (:data:`WORKABLE`) and none of its
    deliveries is ``queued`` or ``sending``; True if this call completed it.

    One conditional UPDATE, so several workers finishing the same run at once complete it
    exactly once (the others match no row), and a run paused or cancelled meanwhile is left
    alone. ``unknown`` deliveries do not hold a run open; the reason says how many there are.
    """
    open_rows = select(Delivery.id).where(Delivery.run_id == run_id,
                                          Delivery.status.in_((states.QUEUED, states.SENDING)))
    with db.engine.begin() as conn:
        unknown = conn.execute(select(func.count()).select_from(Delivery).where(
            Delivery.run_id == run_id, Delivery.status == states.UNKNOWN)).scalar_one()
        return move(conn, run_id, COMPLETED, unknown_reason(unknown), now=now,
                    only_from=WORKABLE, where=~open_rows.exists())


def unknown_reason(unknown: int) -> str | None:
    """The reason a run completes with: how many deliveries have an unknown outcome."""
    return (N_("{unknown} deliveries with unknown outcome: see `outreach deliveries list "
               "--status unknown`").format(unknown=unknown) if unknown else None)


__all__ = ["CREATED", "RUNNING", "WAITING", "PAUSED", "COMPLETED", "CANCELLED", "EXPIRED",
           "MISSED", "ALL", "ACTIVE", "WORKABLE", "FINISHED", "MOVES", "RunStateError",
           "sources", "move", "complete_if_done", "unknown_reason"]
