"""Delivery states and the one function that moves them (forward only, every move an event)."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, bindparam, select

from outreach.ledger.models import SUPPRESSED_SQL, Delivery

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
           "cost_vnd", "gateway", "lease_owner", "lease_expires_at", "channel", "carrier")


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
    #: when the provider says the move happened (Zalo's ``delivery_time``): the state's
    #: timestamp column (``sent_at``, ``delivered_at``) gets it, never later than ``now``
    occurred_at: dt.datetime | None = None


_SEL_STATUS = select(Delivery.id, Delivery.status).where(
    Delivery.id.in_(bindparam("ids", expanding=True)))
_SEL_STATUS_LOCKED = _SEL_STATUS.with_for_update()


def db_time(conn: Connection, when: dt.datetime) -> Any:
    """``when`` as the driver stores it in a :class:`~outreach.ledger.models.UTCDateTime` column.

    The hot path binds values with plain SQL (no per-row type processing): naive UTC, and on
    SQLite the ISO text SQLAlchemy's DateTime type writes.
    """
    naive = when.astimezone(dt.timezone.utc).replace(tzinfo=None)
    if conn.dialect.name == "sqlite":
        return naive.isoformat(sep=" ", timespec="microseconds")
    return naive


def apply(conn: Connection, changes: Sequence[Change], *, source: str, now: dt.datetime,
          lock: bool = True, current: dict[int, str] | None = None) -> dict[int, bool]:
    """Apply state changes in the caller's transaction; returns delivery id -> applied.

    Every change appends a :class:`DeliveryEvent` (``applied`` False when the move was not
    allowed: a late ``sent`` after ``delivered``, a duplicate receipt). The delivery row is
    updated only for allowed moves, guarded by its current status so a concurrent writer can
    never be overwritten. ``source`` is ``dispatcher``, ``webhook``, ``sync``, ``reconcile`` or
    ``operator``. On PostgreSQL the rows are locked (``FOR UPDATE``) while deciding unless
    ``lock`` is False (the caller already holds them through its lease).

    ``current`` (delivery id -> status) saves the read of the states when the caller has just
    read them in the same transaction *and* nobody else can write them until it commits (on
    SQLite: the transaction began with ``BEGIN IMMEDIATE``, so it holds the write lock). It must
    hold every id in ``changes``; it is updated in place as the moves are applied.

    Raises KeyError for a delivery id that does not exist.
    """
    if not changes:
        return {}
    ids = sorted({c.delivery_id for c in changes})
    if len(ids) < len(changes):
        # several changes for one delivery: apply them in order, in rounds of distinct ids
        out: dict[int, bool] = {}
        pending = list(changes)
        while pending:
            seen: set[int] = set()
            rnd, rest = [], []
            for c in pending:
                (rest if c.delivery_id in seen else rnd).append(c)
                seen.add(c.delivery_id)
            for k, v in apply(conn, rnd, source=source, now=now, lock=lock,
                              current=current).items():
                out[k] = out.get(k, False) or v
            pending = rest
        return out
    if current is None:
        current = {}
        pg = conn.dialect.name == "postgresql"
        stmt = _SEL_STATUS_LOCKED if (lock and pg) else _SEL_STATUS
        for chunk_start in range(0, len(ids), 900):
            current.update(dict(conn.execute(stmt, {"ids": ids[chunk_start:chunk_start + 900]}
                                             ).all()))

    ts = db_time(conn, now)
    result: dict[int, bool] = {}
    updates: dict[tuple[str, str, tuple[str, ...]], list[dict[str, Any]]] = defaultdict(list)
    events: list[dict[str, Any]] = []
    for c in changes:
        old = current.get(c.delivery_id)
        if old is None:
            raise KeyError(f"delivery {c.delivery_id} does not exist")
        new = c.new_status
        ok = may_move(old, new, backward=c.backward)
        result[c.delivery_id] = ok
        f = c.fields
        events.append({
            "d": c.delivery_id, "at": ts, "src": source, "old": old, "new": new, "ok": ok,
            "ps": c.provider_status or f.get("provider_status"),
            "ec": c.error_code or f.get("error_code"), "det": _detail(c.detail)})
        if not ok:
            continue
        current[c.delivery_id] = new  # a second change in the same call sees the first
        values = {k: v for k, v in f.items() if v is not None and k in _FIELDS}
        if "lease_expires_at" in values:
            values["lease_expires_at"] = db_time(conn, values["lease_expires_at"])
        values["b_id"] = c.delivery_id
        values["b_at"] = (db_time(conn, min(c.occurred_at, now))
                          if c.occurred_at is not None and new in _TIMESTAMP else ts)
        updates[(old, new, tuple(sorted(values)))].append(values)

    ph = "?" if conn.dialect.name == "sqlite" else "%s"
    for (old, new, keys), rows in updates.items():
        cols = [k for k in keys if k not in ("b_id", "b_at")]
        sets = [f"status = {ph}", f"updated_at = {ph}"] + [f"{k} = {ph}" for k in cols]
        if new == SENDING:
            sets.append("attempts = attempts + 1")
        stamps = ([_TIMESTAMP[new]] if new in _TIMESTAMP else []) + (
            ["final_at"] if new in FINAL_STATES else [])
        sets += [f"{col} = {ph}" for col in stamps]
        if (new in FINAL_STATES or new in (QUEUED, UNKNOWN)) and "lease_owner" not in keys:
            sets.append("lease_owner = NULL")
        # plain driver SQL: the column names come from the fixed whitelist _FIELDS
        sql = f"UPDATE deliveries SET {', '.join(sets)} WHERE id = {ph} AND status = {ph}"
        # the state's own timestamp may be the provider's time; final_at is always ours
        conn.exec_driver_sql(sql, [(new, ts, *(r[k] for k in cols),
                                    *((r["b_at"] if col != "final_at" else ts) for col in stamps),
                                    r["b_id"], old)
                                   for r in rows])
    conn.exec_driver_sql(
        "INSERT INTO delivery_events (delivery_id, at, source, old_status, new_status, applied, "
        f"provider_status, error_code, detail) VALUES ({', '.join([ph] * 9)})",
        [(e["d"], e["at"], e["src"], e["old"], e["new"], e["ok"], e["ps"], e["ec"], e["det"])
         for e in events])
    return result


def _detail(detail: Any) -> str | None:
    if detail is None:
        return None
    if isinstance(detail, str):
        return detail
    return json.dumps(detail, ensure_ascii=False, default=str, sort_keys=True)


def group_by_status(rows: Iterable[tuple[str, int]]) -> dict[str, int]:
    """Status -> count with every state present (zeros included), in lifecycle order."""
    out = {s: 0 for s in ALL_STATES}
    for status, n in rows:
        out[status] = out.get(status, 0) + n
    return out


def claim(conn: Connection, run_id: int, *, limit: int, owner: str, lease_expires: dt.datetime,
          now: dt.datetime, started: bool = False, after: int = 0,
          gateways: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """Move up to ``limit`` queued deliveries of a run to ``sending`` under a lease, set-based.

    ``sending_at`` is cleared: it is set by :func:`mark_started` when the request is about to
    leave, so a claimed row without it certainly never reached a provider. With ``started``
    it is set to ``now`` in the claim itself, as if :func:`mark_started` had marked the whole
    batch at once: only for gateways that can confirm what they never received (the outbox,
    the mock), where a crash costs one lookup per row and the claim saves an UPDATE of every
    row (the engine decides: :class:`outreach.sending.engine.RunEngine`).

    The same rules as :func:`apply` (``queued → sending`` only, one event per move), written as
    one UPDATE … RETURNING and one INSERT … SELECT so a large batch costs a few statements.
    Suppressed numbers are skipped here (an entry for the row's address that stops its
    channel: :data:`outreach.ledger.models.SUPPRESSED_SQL`); the caller moves them to ``opted_out``. On PostgreSQL
    the rows are taken with ``FOR UPDATE SKIP LOCKED`` so workers never claim the same row.
    A row claimed for the first time gets its ``receipt_token`` (kept on later claims).
    Returns the claimed rows (id, channel, address, body, segments, recipient_id, carrier,
    receipt_token, template_data).

    ``after``: only rows with a higher id (the highest this claimer took before; the caller
    claims from 0 again when nothing is left after it, for a row put back in the queue).
    Whatever plan PostgreSQL's statistics lead it to, a claim then reads the rows of its batch
    and what other workers hold, never every row already sent before them.

    ``gateways`` (channel -> gateway name): the gateways that will send the batch, written in
    each claimed row's ``gateway`` (the ledger records who really sent a message: a worker's or
    a resume's ``--gateway`` replaces the one the run was created with); a channel not in it
    keeps its row's gateway.
    """
    pg = conn.dialect.name == "postgresql"
    ph = "%s" if pg else "?"
    ts, lease = db_time(conn, now), db_time(conn, lease_expires)
    # from ``after`` on: read from the queue's start, PostgreSQL's planner, whose statistics
    # still say every row is queued right after an enqueue, walked the primary key past every
    # row already sent, so each claim cost more than the last (benchmarks/city_1m.py: four
    # workers at a third of their speed on a million rows)
    lock = " FOR UPDATE SKIP LOCKED" if pg else ""
    heads = (f"run_id = {ph} AND status = 'queued' AND id > {ph} AND NOT {SUPPRESSED_SQL} "
             f"ORDER BY id LIMIT {ph}{lock}")
    params = (run_id, after, limit)
    names = sorted((gateways or {}).items())
    sets_gateway = ("gateway = CASE channel " + " ".join(f"WHEN {ph} THEN {ph}" for _ in names)
                    + " ELSE gateway END, ") if names else ""
    result = conn.exec_driver_sql(
        f"UPDATE deliveries SET status = 'sending', updated_at = {ph}, "
        f"sending_at = {ph if started else 'NULL'}, {sets_gateway}"
        f"lease_owner = {ph}, lease_expires_at = {ph}, attempts = attempts + 1, "
        f"receipt_token = COALESCE(receipt_token, {_NEW_TOKEN[conn.dialect.name]}) "
        f"WHERE id IN (SELECT id FROM deliveries WHERE {heads}) "
        "RETURNING id, channel, address, body, segments, recipient_id, carrier, receipt_token, "
        "template_data",
        (ts, *((ts,) if started else ()), *(x for pair in names for x in pair), owner, lease,
         *params))
    # the driver's tuples, not a Row object per claimed row (a batch is thousands of rows and
    # the claim is on the send path: benchmarks/city_1m.py)
    rows = result.cursor.fetchall()
    result.close()
    if rows:
        ids = [r[0] for r in rows]
        # one event per claimed row (the ids just returned: no need to read the rows again)
        if conn.dialect.name == "sqlite" and SQLITE_SET_BASED:
            conn.exec_driver_sql(
                "INSERT INTO delivery_events (delivery_id, at, source, old_status, new_status, "
                "applied) SELECT value, ?, 'dispatcher', 'queued', 'sending', 1 "
                "FROM json_each(?)", (ts, json.dumps(ids)))
        elif conn.dialect.name == "sqlite":
            for i in range(0, len(ids), 900):
                chunk = ids[i:i + 900]
                conn.exec_driver_sql(
                    "INSERT INTO delivery_events (delivery_id, at, source, old_status, "
                    "new_status, applied) SELECT id, ?, 'dispatcher', 'queued', 'sending', 1 "
                    f"FROM deliveries WHERE id IN ({', '.join('?' * len(chunk))})", (ts, *chunk))
        else:
            conn.exec_driver_sql(
                "INSERT INTO delivery_events (delivery_id, at, source, old_status, new_status, "
                "applied) SELECT unnest(%s::bigint[]), %s, 'dispatcher', 'queued', 'sending', true",
                (ids, ts))
    rows.sort()
    return [dict(zip(_CLAIMED, r)) for r in rows]


_CLAIMED = ("id", "channel", "address", "body", "segments", "recipient_id", "carrier",
            "receipt_token", "template_data")
#: A fresh receipt token in SQL, 24 hex characters from the database's cryptographic random
#: source (SQLite ``randomblob``; PostgreSQL 13+ ``gen_random_uuid``, 122 random bits hashed
#: to 96): written in the claim's own UPDATE, so a token costs no statement of its own.
_NEW_TOKEN = {"sqlite": "lower(hex(randomblob(12)))",
              "postgresql": "substr(md5(gen_random_uuid()::text), 1, 24)"}


def mark_started(conn: Connection, delivery_ids: Sequence[int], *, owner: str,
                 now: dt.datetime) -> int:
    """Record that the requests of these claimed deliveries are about to leave: ``sending_at``
    = ``now`` on rows still ``sending`` under ``owner``'s lease, in the caller's transaction;
    returns how many rows. Not a state move (no event): the row stays ``sending``; what the
    mark decides is what a crash leaves behind — a claimed row without it is put back in the
    queue, one with it is ``unknown`` until reconciled."""
    if not delivery_ids:
        return 0
    ts = db_time(conn, now)
    if conn.dialect.name == "sqlite" and SQLITE_SET_BASED:
        return conn.exec_driver_sql(
            "UPDATE deliveries SET sending_at = ? WHERE id IN (SELECT value FROM json_each(?)) "
            "AND status = 'sending' AND lease_owner = ?",
            (ts, json.dumps(list(delivery_ids)), owner)).rowcount
    if conn.dialect.name == "sqlite":
        n = 0
        for i in range(0, len(delivery_ids), 900):
            chunk = list(delivery_ids[i:i + 900])
            n += conn.exec_driver_sql(
                f"UPDATE deliveries SET sending_at = ? WHERE id IN ({', '.join('?' * len(chunk))}) "
                "AND status = 'sending' AND lease_owner = ?", (ts, *chunk, owner)).rowcount
        return n
    return conn.exec_driver_sql(
        "UPDATE deliveries SET sending_at = %s WHERE id = ANY(%s::bigint[]) "
        "AND status = 'sending' AND lease_owner = %s", (ts, list(delivery_ids), owner)).rowcount


#: ``(delivery_id, new_status, provider_message_id, provider_status, segments, cost_vnd)``: a
#: send the provider accepted, as :func:`record_accepted` takes it.
Accepted = tuple[int, str, str, "str | None", "int | None", "float | None"]


def record_accepted(conn: Connection, accepted: Sequence[Accepted], *, source: str,
                    now: dt.datetime) -> dict[int, bool]:
    """Record sends a provider accepted (``sent``, or ``delivered`` when it says so at once),
    in the caller's transaction; returns delivery id -> applied.

    The dispatcher's hot path: the same rules and rows as :func:`apply` with
    ``Change(id, new_status, {provider_message_id, provider_status, segments, cost_vnd})``
    (forward moves only, guarded by the current status, one event per delivery, ``segments``
    and ``cost_vnd`` kept when the provider gave none), without building a change object per
    message: one read of the current states, one UPDATE per target state and one INSERT of
    the events, each with every row of the batch. On PostgreSQL the rows are locked while
    deciding, so a receipt arriving at the same moment waits and then sees the move.
    ``delivery_id`` values must be distinct. Raises KeyError for an id that does not exist.
    """
    if not accepted:
        return {}
    ids = [a[0] for a in accepted]
    if len(set(ids)) != len(ids):
        raise ValueError("record_accepted takes each delivery once")
    bad = {a[1] for a in accepted} - {SENT, DELIVERED}
    if bad:
        raise ValueError(f"record_accepted records sent or delivered, not {sorted(bad)}")
    ts = db_time(conn, now)
    if conn.dialect.name == "postgresql" or SQLITE_SET_BASED:
        return _record_accepted_set(conn, accepted, source=source, ts=ts)
    return _record_accepted_rows(conn, accepted, source=source, ts=ts)


def _record_accepted_rows(conn: Connection, accepted: Sequence[Accepted], *, source: str,
                          ts: Any) -> dict[int, bool]:
    """:func:`record_accepted` row by row: read the states, decide in Python, write."""
    ids = [a[0] for a in accepted]
    sqlite = conn.dialect.name == "sqlite"
    if sqlite:
        current = dict(conn.exec_driver_sql(
            "SELECT id, status FROM deliveries WHERE id IN (SELECT value FROM json_each(?))",
            (json.dumps(ids),)).all())
    else:
        current = dict(conn.exec_driver_sql(
            "SELECT id, status FROM deliveries WHERE id = ANY(%s) ORDER BY id FOR UPDATE",
            (sorted(ids),)).all())
    ph = "?" if sqlite else "%s"
    result: dict[int, bool] = {}
    updates: dict[tuple[str, str], list[tuple[Any, ...]]] = defaultdict(list)
    events: list[tuple[Any, ...]] = []
    for delivery_id, new, sid, provider_status, segments, cost in accepted:
        old = current.get(delivery_id)
        if old is None:
            raise KeyError(f"delivery {delivery_id} does not exist")
        ok = old in _FORWARD[new]
        result[delivery_id] = ok
        events.append((delivery_id, ts, source, old, new, ok, provider_status))
        if ok:
            updates[(old, new)].append((new, ts, sid, provider_status, segments, cost,
                                        delivery_id, old))
    if not sqlite:
        return _write_accepted_pg(conn, updates, events, source=source, ts=ts, result=result)
    for (old, new), rows in updates.items():
        stamps = _accepted_stamps(new)
        sets = "".join(f", {col} = {ph}" for col in stamps)
        if new in FINAL_STATES:
            sets += ", lease_owner = NULL"
        conn.exec_driver_sql(
            f"UPDATE deliveries SET status = {ph}, updated_at = {ph}, provider_message_id = {ph}, "
            f"provider_status = COALESCE({ph}, provider_status), "
            f"segments = COALESCE({ph}, segments), cost_vnd = COALESCE({ph}, cost_vnd){sets} "
            f"WHERE id = {ph} AND status = {ph}",
            [(*r[:6], *(ts,) * len(stamps), *r[6:]) for r in rows])
    conn.exec_driver_sql(
        "INSERT INTO delivery_events (delivery_id, at, source, old_status, new_status, applied, "
        f"provider_status) VALUES ({', '.join([ph] * 7)})", events)
    return result


def _write_accepted_pg(conn: Connection, updates: dict[tuple[str, str], list[tuple[Any, ...]]],
                       events: list[tuple[Any, ...]], *, source: str, ts: Any,
                       result: dict[int, bool]) -> dict[int, bool]:
    """The writes of :func:`_record_accepted_rows` on PostgreSQL, set-based: one UPDATE per
    (old, new) state pair and one INSERT of the events, each over the batch's rows passed as
    arrays (``unnest``). Row by row, ``executemany`` costs one statement per delivery, which
    made a worker's recording most of its time (benchmarks/city_1m.py). The rows are locked
    already (the caller's ``SELECT … FOR UPDATE``), so each UPDATE moves every row it is given;
    the status guard stays as it is on SQLite."""
    for (old, new), rows in updates.items():
        stamps = _accepted_stamps(new)
        sets = "".join(f", {col} = %s" for col in stamps)
        if new in FINAL_STATES:
            sets += ", lease_owner = NULL"
        cols = list(zip(*rows))  # new, ts, sid, provider_status, segments, cost, id, old
        conn.exec_driver_sql(
            "UPDATE deliveries SET status = %s, updated_at = %s, provider_message_id = j.sid, "
            "provider_status = COALESCE(j.ps, deliveries.provider_status), "
            "segments = COALESCE(j.seg, deliveries.segments), "
            f"cost_vnd = COALESCE(j.cost, deliveries.cost_vnd){sets} "
            "FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::integer[], "
            "%s::double precision[]) AS j(id, sid, ps, seg, cost) "
            "WHERE deliveries.id = j.id AND deliveries.status = %s",
            (new, ts, *(ts,) * len(stamps), list(cols[6]), list(cols[2]), list(cols[3]),
             list(cols[4]), list(cols[5]), old))
    ev = list(zip(*events))  # id, ts, source, old, new, applied, provider_status
    conn.exec_driver_sql(
        "INSERT INTO delivery_events (delivery_id, at, source, old_status, new_status, applied, "
        "provider_status) SELECT j.id, %s, %s, j.old, j.new, j.ok, j.ps FROM unnest(%s::bigint[], "
        "%s::text[], %s::text[], %s::boolean[], %s::text[]) AS j(id, old, new, ok, ps)",
        (ts, source, list(ev[0]), list(ev[3]), list(ev[4]), list(ev[5]), list(ev[6])))
    return result


#: Use the set-based statements of :func:`_record_accepted_set` (SQLite 3.38 or newer: JSON
#: functions built in, ``->>``, UPDATE ... FROM, RETURNING). Tests switch it off to check the
#: row-by-row path, which PostgreSQL and older SQLite take, writes the same rows.
SQLITE_SET_BASED = sqlite3.sqlite_version_info >= (3, 38)


def _accepted_stamps(new: str) -> list[str]:
    return [_TIMESTAMP[new]] + (["final_at"] if new in FINAL_STATES else [])


def _record_accepted_set(conn: Connection, accepted: Sequence[Accepted], *, source: str,
                         ts: Any) -> dict[int, bool]:
    """:func:`record_accepted` in two statements over the whole batch, for the usual case where
    every delivery is still ``sending``: one UPDATE … FROM the batch guarded by that state,
    then the events. The batch is one JSON array on SQLite (``json_each``), arrays on
    PostgreSQL (``unnest``, ids in order, so rows are locked in id order as they are moved). If
    the UPDATE moved fewer rows than given (a receipt or a recovery got there first; under
    PostgreSQL's READ COMMITTED the guard is checked again on the row's newest version), it
    is rolled back to a savepoint and the batch takes the row-by-row path, which locks and
    reads each state first. On SQLite the caller's transaction holds the write lock, and few
    statements mean the GIL is released for the whole of each (the dispatcher records a batch
    in a writer thread while the next one is being sent); on PostgreSQL no ``SELECT … FOR
    UPDATE`` of every row comes first, so recording a batch writes each row once, not twice
    (a row lock is a write of the row's header: benchmarks/city_1m.py, workers)."""
    if conn.dialect.name == "postgresql":
        ph, true = "%s", "true"
        cols = [list(c) for c in zip(*sorted(accepted))]  # id, new, sid, ps, segments, cost
        batch = ("unnest(%s::bigint[], %s::text[], %s::text[], %s::text[], %s::integer[], "
                 "%s::double precision[]) AS j(id, new, sid, ps, seg, cost)")
        batch_params: list[Any] = cols
        events = "unnest(%s::bigint[], %s::text[], %s::text[]) AS j(id, new, ps)"
        events_params: list[Any] = [cols[0], cols[1], cols[3]]
    else:
        ph, true = "?", "1"
        payload = json.dumps(accepted)
        batch = ("(SELECT value ->> 0 AS id, value ->> 1 AS new, value ->> 2 AS sid, "
                 "value ->> 3 AS ps, value ->> 4 AS seg, value ->> 5 AS cost "
                 "FROM json_each(?)) AS j")
        batch_params = [payload]
        events = ("(SELECT value ->> 0 AS id, value ->> 1 AS new, value ->> 3 AS ps "
                  "FROM json_each(?)) AS j")
        events_params = [payload]
    conn.exec_driver_sql("SAVEPOINT record_accepted")
    moved = conn.exec_driver_sql(
        f"UPDATE deliveries SET status = j.new, updated_at = {ph}, provider_message_id = j.sid, "
        "provider_status = COALESCE(j.ps, deliveries.provider_status), "
        "segments = COALESCE(j.seg, deliveries.segments), "
        "cost_vnd = COALESCE(j.cost, deliveries.cost_vnd), "
        f"sent_at = CASE WHEN j.new = '{SENT}' THEN {ph} ELSE deliveries.sent_at END, "
        f"delivered_at = CASE WHEN j.new = '{DELIVERED}' THEN {ph} "
        "ELSE deliveries.delivered_at END, "
        f"final_at = CASE WHEN j.new = '{DELIVERED}' THEN {ph} ELSE deliveries.final_at END, "
        f"lease_owner = CASE WHEN j.new = '{DELIVERED}' THEN NULL ELSE deliveries.lease_owner END "
        f"FROM {batch} WHERE deliveries.id = j.id AND deliveries.status = '{SENDING}'",
        (ts, ts, ts, ts, *batch_params)).rowcount
    if moved != len(accepted):
        conn.exec_driver_sql("ROLLBACK TO record_accepted")
        conn.exec_driver_sql("RELEASE record_accepted")
        return _record_accepted_rows(conn, accepted, source=source, ts=ts)
    conn.exec_driver_sql("RELEASE record_accepted")
    conn.exec_driver_sql(
        "INSERT INTO delivery_events (delivery_id, at, source, old_status, new_status, applied, "
        f"provider_status) SELECT j.id, {ph}, {ph}, '{SENDING}', j.new, {true}, j.ps "
        f"FROM {events}", (ts, source, *events_params))
    return dict.fromkeys((a[0] for a in accepted), True)
