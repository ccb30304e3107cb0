"""Delivery receipts (webhook, sync, reconciliation) applied to the ledger, forward only."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite

from outreach import states
from outreach.gateways.base import StatusUpdate
from outreach.models import Delivery, PendingReceipt


@dataclass(frozen=True)
class ReceiptOutcome:
    """What happened to one receipt: ``matched`` (a delivery was found), ``applied`` (its state
    moved), ``pending`` (kept until the delivery row or provider id is stored)."""

    delivery_id: int | None
    matched: bool
    applied: bool
    pending: bool = False
    duplicate: bool = False


def _find(conn: Connection, upd: StatusUpdate) -> int | None:
    if upd.delivery_id is not None:
        row = conn.execute(select(Delivery.id, Delivery.provider_message_id)
                           .where(Delivery.id == upd.delivery_id)).first()
        if row is not None:
            return row[0]
    if upd.provider_message_id:
        row = conn.execute(select(Delivery.id).where(
            Delivery.provider_message_id == upd.provider_message_id)).first()
        if row is not None:
            return row[0]
    return None


# built once: a webhook applies one receipt per request, so statement construction would cost
# more than the statements themselves
_SEL_IDS = select(Delivery.id).where(Delivery.id.in_(bindparam("ids", expanding=True)))
_SEL_SIDS = select(Delivery.provider_message_id, Delivery.id).where(
    Delivery.provider_message_id.in_(bindparam("sids", expanding=True)))
_UPD_SID = (update(Delivery).where(Delivery.id == bindparam("b_id"),
                                   Delivery.provider_message_id.is_(None))
            .values(provider_message_id=bindparam("b_sid")))


def apply_updates(conn: Connection, updates: Sequence[StatusUpdate], *, gateway: str, source: str,
                  now: dt.datetime, event_keys: Sequence[str | None] | None = None
                  ) -> list[ReceiptOutcome]:
    """Apply receipts in the caller's transaction, as a batch (a few statements for many).

    A receipt is matched by our delivery id (carried in the callback URL or ``tracking_id``) or
    by the provider message id. Every receipt becomes a delivery event; the delivery's state
    only moves forward (a late ``sent`` never undoes ``delivered``; a duplicate changes nothing).
    Several receipts for one delivery in a batch are applied in their order. A receipt that
    matches nothing yet is stored in ``pending_receipts`` and replayed by :func:`apply_pending`
    once the delivery row or its provider id is stored. ``event_keys`` (one per update) make
    pending storage idempotent when the provider retries a webhook.
    """
    keys = list(event_keys) if event_keys is not None else [None] * len(updates)
    current: dict[int, str] | None = None  # delivery id -> status, when read here
    no_sid: set[int] = set()  # matched deliveries without a provider id (SQLite path)
    if conn.dialect.name == "sqlite" and states.SQLITE_SET_BASED:
        by_id, by_sid, current, no_sid = _match_sqlite(conn, updates)
    else:
        by_id, by_sid = _match(conn, updates)

    changes: list[states.Change] = []
    matched: list[int | None] = []
    for upd in updates:
        did = upd.delivery_id if upd.delivery_id in by_id else by_sid.get(
            upd.provider_message_id or "")
        matched.append(did)
        if did is None:
            continue
        fields: dict[str, Any] = {"provider_status": upd.provider_status}
        if upd.error_code:
            fields["error_code"] = upd.error_code
        if upd.error_reason:
            fields["error_reason"] = upd.error_reason
        if upd.carrier:
            fields["carrier"] = upd.carrier
        if upd.price_vnd is not None:
            fields["cost_vnd"] = upd.price_vnd
        changes.append(states.Change(delivery_id=did, new_status=upd.status, fields=fields,
                                     detail=upd.raw, provider_status=upd.provider_status,
                                     error_code=upd.error_code))
    applied = (states.apply(conn, changes, source=source, now=now, current=current)
               if changes else {})
    sids = [{"b_id": did, "b_sid": upd.provider_message_id}
            for upd, did in zip(updates, matched) if did is not None and upd.provider_message_id
            and (current is None or did in no_sid)]
    if sids:
        # a provider id learned from the receipt (callback before our own write)
        conn.execute(_UPD_SID, sids)
    outcomes: list[ReceiptOutcome] = []
    for upd, key, did in zip(updates, keys, matched):
        if did is None:
            dup = _store_pending(conn, upd, gateway=gateway, now=now, key=key)
            outcomes.append(ReceiptOutcome(None, matched=False, applied=False, pending=True,
                                           duplicate=dup))
        else:
            outcomes.append(ReceiptOutcome(did, matched=True, applied=applied.get(did, False)))
    return outcomes


def _match(conn: Connection, updates: Sequence[StatusUpdate]
           ) -> tuple[set[int], dict[str, int]]:
    """(delivery ids that exist, provider id -> delivery id) for the receipts' references."""
    by_id: set[int] = set()
    want_ids = [u.delivery_id for u in updates if u.delivery_id is not None]
    for i in range(0, len(want_ids), 900):
        by_id.update(conn.execute(_SEL_IDS, {"ids": want_ids[i:i + 900]}).scalars())
    want_sids = [u.provider_message_id for u in updates
                 if u.provider_message_id and (u.delivery_id is None or u.delivery_id not in by_id)]
    by_sid: dict[str, int] = {}
    for i in range(0, len(want_sids), 900):
        for sid, did in conn.execute(_SEL_SIDS, {"sids": want_sids[i:i + 900]}).all():
            by_sid[sid] = did
    return by_id, by_sid


#: One read for a whole batch of receipts on SQLite: the deliveries named by id or by provider
#: id (both lists passed as JSON arrays, each side using its index), with their states.
_SQLITE_MATCH = (
    "SELECT id, status, provider_message_id FROM deliveries "
    "WHERE id IN (SELECT value FROM json_each(?)) "
    "UNION SELECT id, status, provider_message_id FROM deliveries "
    "WHERE provider_message_id IN (SELECT value FROM json_each(?))")


def _match_sqlite(conn: Connection, updates: Sequence[StatusUpdate]
                  ) -> tuple[set[int], dict[str, int], dict[int, str], set[int]]:
    """:func:`_match` on SQLite in one statement that also returns each delivery's state and
    whether it lacks a provider id, so :func:`states.apply` need not read them again and the
    provider id is only written where it is missing. Valid because SQLite transactions here
    begin with ``BEGIN IMMEDIATE`` (:mod:`outreach.db`): the caller holds the write lock, so
    nothing changes between this read and the writes. Returns (ids that exist, provider id ->
    delivery id, delivery id -> status, ids without a provider id)."""
    want_ids = [u.delivery_id for u in updates if u.delivery_id is not None]
    want_sids = {u.provider_message_id for u in updates if u.provider_message_id}
    rows = conn.exec_driver_sql(_SQLITE_MATCH, (json.dumps(want_ids),
                                                json.dumps(sorted(want_sids)))).all()
    wanted = set(want_ids)
    by_id = {did for did, _, _ in rows if did in wanted}
    by_sid = {sid: did for did, _, sid in rows if sid in want_sids}
    current = {did: status for did, status, _ in rows}
    no_sid = {did for did, _, sid in rows if sid is None}
    return by_id, by_sid, current, no_sid


def _store_pending(conn: Connection, upd: StatusUpdate, *, gateway: str, now: dt.datetime,
                   key: str | None) -> bool:
    payload = {"status": upd.status, "provider_message_id": upd.provider_message_id,
               "delivery_id": upd.delivery_id, "provider_status": upd.provider_status,
               "error_code": upd.error_code, "error_reason": upd.error_reason,
               "occurred_at": upd.occurred_at.isoformat() if upd.occurred_at else None,
               "raw": upd.raw, "carrier": upd.carrier, "price_vnd": upd.price_vnd}
    payload = json.loads(json.dumps(payload, default=str))
    key = key or f"{upd.provider_message_id}:{upd.delivery_id}:{upd.status}:{upd.provider_status}"
    ins = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(PendingReceipt)
    res = conn.execute(ins.on_conflict_do_nothing().values(
        gateway=gateway, event_key=key[:255], provider_message_id=upd.provider_message_id,
        delivery_id=upd.delivery_id, payload=payload, received_at=now))
    return res.rowcount == 0


def apply_pending(conn: Connection, *, now: dt.datetime, delivery_ids: Sequence[int] | None = None,
                  provider_ids: Sequence[str] | None = None) -> int:
    """Replay stored receipts whose delivery can now be found; returns how many were applied."""
    t = PendingReceipt.__table__
    stmt = select(t).where(t.c.applied_at.is_(None))
    conds = []
    if delivery_ids:
        conds.append(t.c.delivery_id.in_(list(delivery_ids)))
    if provider_ids:
        conds.append(t.c.provider_message_id.in_(list(provider_ids)))
    if conds:
        from sqlalchemy import or_

        stmt = stmt.where(or_(*conds))
    elif delivery_ids is not None or provider_ids is not None:
        return 0
    rows = conn.execute(stmt.order_by(t.c.id)).mappings().all()
    n = 0
    for pending in rows:
        p = pending["payload"]
        upd = StatusUpdate(status=p["status"], provider_message_id=p.get("provider_message_id"),
                           delivery_id=p.get("delivery_id"), provider_status=p.get("provider_status"),
                           error_code=p.get("error_code"), error_reason=p.get("error_reason"),
                           raw=p.get("raw"), carrier=p.get("carrier"),
                           price_vnd=p.get("price_vnd"))
        if _find(conn, upd) is None:
            continue
        apply_updates(conn, [upd], gateway=pending["gateway"], source="webhook", now=now)
        conn.execute(update(PendingReceipt).where(PendingReceipt.id == pending["id"])
                     .values(applied_at=now))
        n += 1
    return n
