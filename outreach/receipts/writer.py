"""The one receipt writer: delivery receipts of every provider (webhook, sync, reconciliation)
matched to their delivery and applied to the ledger through :mod:`outreach.ledger.states`.

Adapters parse (``outreach.gateways.twilio_receipts``, ``outreach.gateways.zalo_webhook``);
:mod:`outreach.receipts.receiver` receives; this module decides which delivery a receipt belongs to and
writes. The matching rule (issue #15): a receipt applies only to the delivery whose provider
message id matches it (Twilio ``MessageSid``, Zalo ``msg_id``), and, when the delivery has a
receipt token (``deliveries.receipt_token``, set at claim and carried in the callback URL),
only with that token. A receipt that names another message is kept as a rejected receipt
(:class:`~outreach.ledger.models.RejectedReceipt`) and counted, never applied; one that arrives before
the provider id is stored is kept in ``pending_receipts`` and applied only once the send's
provider id is recorded and matches (:func:`apply_pending`, called by the dispatcher after each
batch).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import Connection, bindparam, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from outreach.ledger import states
from outreach.gateways.base import StatusUpdate
from outreach.ledger.models import Delivery, PendingReceipt, RejectedReceipt, WebhookEvent

#: Reasons a signed receipt is refused (``rejected_receipts.reason``).
TOKEN_MISMATCH = "token-mismatch"  # the callback URL's token is not the delivery's
PROVIDER_ID_MISMATCH = "provider-id-mismatch"  # the delivery has another provider message id
UNVERIFIABLE = "unverifiable"  # no provider id to compare with a tokened delivery's


@dataclass(frozen=True)
class ReceiptOutcome:
    """What happened to one receipt: ``matched`` (a delivery was found), ``applied`` (its state
    moved), ``pending`` (kept until the delivery row or provider id is stored; ``duplicate``: a
    pending copy was already kept, or, with ``dedupe``, the event was already recorded),
    ``rejected`` (the reason it names another message: stored, counted, never applied),
    ``replayed`` (a webhook receipt repeating one already applied: for Zalo the same event
    already recorded, for Twilio a status the delivery is already in; a no-op, counted)."""

    delivery_id: int | None
    matched: bool
    applied: bool
    pending: bool = False
    duplicate: bool = False
    rejected: str | None = None
    replayed: bool = False


class _Row(NamedTuple):
    status: str
    provider_message_id: str | None
    receipt_token: str | None
    channel: str


# -- reading the deliveries a batch names (one statement) ------------------------------------

#: SQLite: the deliveries named by id or by provider id (both lists as JSON arrays, each side
#: using its index). The caller's transaction began with BEGIN IMMEDIATE (outreach.ledger.db): it
#: holds the write lock, so nothing changes between this read and the writes.
_SQLITE_MATCH = (
    "SELECT id, status, provider_message_id, receipt_token, channel FROM deliveries "
    "WHERE id IN (SELECT value FROM json_each(?)) "
    "UNION SELECT id, status, provider_message_id, receipt_token, channel FROM deliveries "
    "WHERE provider_message_id IN (SELECT value FROM json_each(?))")
#: Elsewhere: the same rows, locked (PostgreSQL ``FOR UPDATE``) until the caller commits, so a
#: dispatcher recording the provider id at the same moment either commits first (and is seen)
#: or waits and then replays the pending receipt this transaction stores.
_MATCH_PG = ("SELECT id, status, provider_message_id, receipt_token, channel FROM deliveries "
             "WHERE id = ANY(%s) OR provider_message_id = ANY(%s) ORDER BY id FOR UPDATE")


def _read(conn: Connection, updates: Sequence[StatusUpdate]) -> dict[int, _Row]:
    want_ids = sorted({u.delivery_id for u in updates if u.delivery_id is not None})
    want_sids = sorted({u.provider_message_id for u in updates if u.provider_message_id})
    if conn.dialect.name == "postgresql":
        rows = conn.exec_driver_sql(_MATCH_PG, (want_ids, want_sids)).all()
    elif conn.dialect.name == "sqlite" and states.SQLITE_SET_BASED:
        rows = conn.exec_driver_sql(_SQLITE_MATCH, (json.dumps(want_ids),
                                                    json.dumps(want_sids))).all()
    else:  # SQLite without JSON functions: chunks of 900 bound values
        rows = []
        for key, values in (("id", want_ids), ("provider_message_id", want_sids)):
            for i in range(0, len(values), 900):
                chunk = values[i:i + 900]
                rows += conn.exec_driver_sql(
                    "SELECT id, status, provider_message_id, receipt_token, channel "
                    f"FROM deliveries WHERE {key} IN ({', '.join('?' * len(chunk))})",
                    tuple(chunk)).all()
    return {r[0]: _Row(*r[1:]) for r in rows}


# -- the matching rule ------------------------------------------------------------------------

class _Decision(NamedTuple):
    delivery_id: int | None  # the delivery to apply to (None: pending or rejected)
    rejected: str | None = None
    rejected_id: int | None = None  # the delivery the refused receipt named
    learn_sid: bool = False  # store the receipt's provider id (legacy early receipt)


def _trusted(upd: StatusUpdate, rows: dict[int, _Row]) -> StatusUpdate:
    """``upd`` without its delivery id unless that id names one of our Zalo deliveries whose
    msg_id is the receipt's or not known yet: for receipts whose id is only a hint (Zalo's
    ``tracking_id``, a bare number another system sharing the OA may use too)."""
    did, sid = upd.delivery_id, upd.provider_message_id
    row = rows.get(did) if did is not None else None
    if row is None or (row.channel == "zalo" and (
            not row.provider_message_id or not sid or row.provider_message_id == sid)):
        return upd
    return dataclasses.replace(upd, delivery_id=None)


def _decide(upd: StatusUpdate, rows: dict[int, _Row], by_sid: dict[str, int], *,
            tokens: bool, hint: bool) -> _Decision:
    """Which delivery ``upd`` belongs to, under the module's matching rule. ``tokens``: the
    receipt came to a callback URL that carries the receipt token with our id (Twilio's), so a
    tokened delivery named without its token is refused; Zalo's ``tracking_id`` carries none,
    and sync names deliveries from our own rows. ``hint``: the id is not authenticated
    (Zalo's ``tracking_id``, already passed through :func:`_trusted`). With neither, the id
    comes from our own rows (sync, reconciliation) and is trusted."""
    sid = upd.provider_message_id
    did = upd.delivery_id
    named = did is not None  # by a callback URL / tracking id (else by provider id only)
    if did is None or did not in rows:
        if not (sid and sid in by_sid):
            return _Decision(None)  # pending: no such delivery (or provider id) yet
        did = by_sid[sid]  # the provider id wins over an id that does not exist
    row = rows[did]
    token_due = (tokens and row.receipt_token is not None) or upd.receipt_token is not None
    if named and token_due and upd.receipt_token != row.receipt_token:
        return _Decision(None, TOKEN_MISMATCH, did)
    if row.provider_message_id is not None:
        if not sid:
            return (_Decision(did) if row.receipt_token is None
                    else _Decision(None, UNVERIFIABLE, did))
        if sid != row.provider_message_id:
            return _Decision(None, PROVIDER_ID_MISMATCH, did)
        return _Decision(did)
    if row.receipt_token is None or not (tokens or hint):
        # our own id from our own rows (sync, reconciliation: ``trusted``), or a delivery
        # claimed before receipt tokens (migration 0004), whose callback URL / tracking id is
        # all the receipt has: matched by id as before, and its provider id kept
        return _Decision(did, learn_sid=bool(sid))
    return _Decision(None)  # early: kept until the send's provider id is recorded


# -- the writer ----------------------------------------------------------------------------------

_UPD_SID = (update(Delivery).where(Delivery.id == bindparam("b_id"),
                                   Delivery.provider_message_id.is_(None))
            .values(provider_message_id=bindparam("b_sid")))


def apply_updates(conn: Connection, updates: Sequence[StatusUpdate], *, gateway: str, source: str,
                  now: dt.datetime, event_keys: Sequence[str | None] | None = None,
                  dedupe: bool = False, id_is_hint: bool = False, provider_time: bool = False,
                  check_tokens: bool = False) -> list[ReceiptOutcome]:
    """Apply receipts in the caller's transaction, as a batch (a few statements for many);
    returns one :class:`ReceiptOutcome` per update, in order.

    Matching follows the module's rule (provider id, then receipt token; ``id_is_hint`` for
    unauthenticated ids such as Zalo's ``tracking_id``). Every matched receipt becomes a
    delivery event and the delivery's state only moves forward (:func:`states.apply`: a late
    ``sent`` never undoes ``delivered``; a duplicate changes nothing). Several receipts for one
    delivery in a batch are applied in their order. A receipt that matches nothing yet is
    stored in ``pending_receipts`` (``event_keys``, one per update, make that idempotent when
    the provider retries) and replayed by :func:`apply_pending`; a refused one is stored in
    ``rejected_receipts``. ``dedupe``: a receipt whose delivery already has a webhook event with
    the same provider status adds nothing (Zalo retries its events; Twilio's repeats are kept
    as events). ``provider_time``: the state's timestamp (``delivered_at``) is the receipt's
    ``occurred_at`` (the provider's time, e.g. Zalo ``delivery_time``), never later than ``now``.
    ``check_tokens``: the receipts name deliveries by a callback URL that carries the receipt
    token (Twilio webhooks): a tokened delivery named without its token is refused, and one
    named before its provider id is recorded waits in ``pending_receipts``. A token given in a
    receipt is always checked. Without ``check_tokens`` or ``id_is_hint`` the delivery ids are
    our own (sync, reconciliation, tests) and trusted: matched by id, the provider id learned.
    """
    return _apply(conn, updates, gateway=gateway, source=source, now=now, event_keys=event_keys,
                  dedupe=dedupe, id_is_hint=id_is_hint, provider_time=provider_time,
                  check_tokens=check_tokens, store_pending=True)


def _apply(conn: Connection, updates: Sequence[StatusUpdate], *, gateway: str, source: str,
           now: dt.datetime, event_keys: Sequence[str | None] | None, dedupe: bool,
           id_is_hint: bool, provider_time: bool, check_tokens: bool, store_pending: bool
           ) -> list[ReceiptOutcome]:
    keys = list(event_keys) if event_keys is not None else [None] * len(updates)
    rows = _read(conn, updates)
    by_sid = {r.provider_message_id: did for did, r in rows.items() if r.provider_message_id}
    if id_is_hint:
        updates = [_trusted(u, rows) for u in updates]
    decisions = [_decide(u, rows, by_sid, tokens=check_tokens, hint=id_is_hint)
                 for u in updates]
    matched_ids = sorted({d.delivery_id for d in decisions if d.delivery_id is not None})
    # Zalo (dedupe): the webhook events already recorded, one read; Twilio's repeats are
    # recognised from the states just read (a receipt for the state the delivery is in)
    seen = _webhook_events(conn, matched_ids) if matched_ids and dedupe else set()
    before = {did: rows[did].status for did in matched_ids}

    changes: list[states.Change] = []
    replayed: list[bool] = []
    skipped: list[bool] = []
    for upd, d in zip(updates, decisions):
        did = d.delivery_id
        if did is None:
            replayed.append(False)
            skipped.append(False)
            continue
        mark = (did, upd.provider_status, upd.error_code or None)
        if dedupe:
            again = mark in seen
        else:
            again = source == "webhook" and before[did] == upd.status
            if states.may_move(before[did], upd.status):
                before[did] = upd.status  # as states.apply will move it
        replayed.append(again)
        skip = dedupe and again
        skipped.append(skip)
        if skip:
            continue
        seen.add(mark)
        fields: dict[str, Any] = {"provider_status": upd.provider_status}
        if upd.error_code:
            fields["error_code"] = upd.error_code
        if upd.error_reason:
            fields["error_reason"] = upd.error_reason
        if upd.carrier:
            fields["carrier"] = upd.carrier
        if upd.price_vnd is not None:
            fields["cost_vnd"] = upd.price_vnd
        changes.append(states.Change(
            delivery_id=did, new_status=upd.status, fields=fields, detail=upd.raw,
            provider_status=upd.provider_status, error_code=upd.error_code,
            occurred_at=upd.occurred_at if provider_time else None))
    # the rows were read (and on PostgreSQL locked) above: states need not read them again
    current = {did: rows[did].status for did in matched_ids}
    applied = (states.apply(conn, changes, source=source, now=now, current=current)
               if changes else {})
    learn = [{"b_id": d.delivery_id, "b_sid": u.provider_message_id}
             for u, d in zip(updates, decisions) if d.learn_sid]
    if learn:
        # a provider id learned from the receipt (callback before our own write, legacy row)
        conn.execute(_UPD_SID, learn)

    outcomes: list[ReceiptOutcome] = []
    for upd, key, d, again, skip in zip(updates, keys, decisions, replayed, skipped):
        if d.rejected is not None:
            _store_rejected(conn, upd, d, gateway=gateway, now=now)
            outcomes.append(ReceiptOutcome(None, matched=False, applied=False,
                                           rejected=d.rejected))
        elif d.delivery_id is None:
            dup = _store_pending(conn, upd, gateway=gateway, now=now, key=key) \
                if store_pending else False
            outcomes.append(ReceiptOutcome(None, matched=False, applied=False, pending=True,
                                           duplicate=dup))
        else:
            outcomes.append(ReceiptOutcome(d.delivery_id, matched=True,
                                           applied=not skip and applied.get(d.delivery_id, False),
                                           duplicate=skip, replayed=again))
    return outcomes


def _webhook_events(conn: Connection, ids: list[int]) -> set[tuple[int, str | None, str | None]]:
    """(delivery id, provider status, error code) of the webhook receipts already recorded."""
    ph = "?" if conn.dialect.name == "sqlite" else "%s"
    out: set[tuple[int, str | None, str | None]] = set()
    for i in range(0, len(ids), 900):
        chunk = ids[i:i + 900]
        out.update((d, ps, ec or None) for d, ps, ec in conn.exec_driver_sql(
            "SELECT delivery_id, provider_status, error_code FROM delivery_events "
            f"WHERE source = 'webhook' AND delivery_id IN ({', '.join([ph] * len(chunk))})",
            tuple(chunk)).all())
    return out


def _payload(upd: StatusUpdate) -> dict[str, Any]:
    payload = {"status": upd.status, "provider_message_id": upd.provider_message_id,
               "delivery_id": upd.delivery_id, "receipt_token": upd.receipt_token,
               "provider_status": upd.provider_status, "error_code": upd.error_code,
               "error_reason": upd.error_reason,
               "occurred_at": upd.occurred_at.isoformat() if upd.occurred_at else None,
               "raw": upd.raw, "carrier": upd.carrier, "price_vnd": upd.price_vnd}
    result: dict[str, Any] = json.loads(json.dumps(payload, default=str))
    return result


def _store_pending(conn: Connection, upd: StatusUpdate, *, gateway: str, now: dt.datetime,
                   key: str | None) -> bool:
    key = key or f"{upd.provider_message_id}:{upd.delivery_id}:{upd.status}:{upd.provider_status}"
    ins = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(PendingReceipt)
    res = conn.execute(ins.on_conflict_do_nothing().values(
        gateway=gateway, event_key=key[:255], provider_message_id=upd.provider_message_id,
        delivery_id=upd.delivery_id, payload=_payload(upd), received_at=now))
    return res.rowcount == 0


def _store_rejected(conn: Connection, upd: StatusUpdate, d: _Decision, *, gateway: str,
                    now: dt.datetime) -> None:
    conn.execute(RejectedReceipt.__table__.insert().values(
        gateway=gateway, reason=d.rejected, delivery_id=d.rejected_id,
        provider_message_id=upd.provider_message_id, payload=_payload(upd), received_at=now))


def _update_from(payload: dict[str, Any]) -> StatusUpdate:
    when = payload.get("occurred_at")
    return StatusUpdate(status=payload["status"],
                        provider_message_id=payload.get("provider_message_id"),
                        delivery_id=payload.get("delivery_id"),
                        provider_status=payload.get("provider_status"),
                        error_code=payload.get("error_code"),
                        error_reason=payload.get("error_reason"),
                        occurred_at=dt.datetime.fromisoformat(when) if when else None,
                        raw=payload.get("raw"), receipt_token=payload.get("receipt_token"),
                        carrier=payload.get("carrier"), price_vnd=payload.get("price_vnd"))


def apply_pending(conn: Connection, *, now: dt.datetime, delivery_ids: Sequence[int] | None = None,
                  provider_ids: Sequence[str] | None = None) -> int:
    """Replay stored receipts whose delivery can now be decided; returns how many were applied.

    Without filters every pending receipt is tried; with ``delivery_ids`` / ``provider_ids``
    those naming one of them. Each is matched by the same rule as :func:`apply_updates`: one
    that now matches is applied (``applied_at`` set), one that now names another message is
    moved to ``rejected_receipts`` (and leaves ``pending_receipts``), the rest stay pending.
    """
    t = PendingReceipt.__table__
    stmt = select(t).where(t.c.applied_at.is_(None))
    conds = []
    if delivery_ids:
        conds.append(t.c.delivery_id.in_(list(delivery_ids)))
    if provider_ids:
        conds.append(t.c.provider_message_id.in_(list(provider_ids)))
    if conds:
        stmt = stmt.where(or_(*conds))
    elif delivery_ids is not None or provider_ids is not None:
        return 0
    n = 0
    for pending in conn.execute(stmt.order_by(t.c.id)).mappings().all():
        gateway = pending["gateway"]
        zalo = gateway == "zalo"
        [out] = _apply(conn, [_update_from(pending["payload"])], gateway=gateway,
                       source="webhook", now=now, event_keys=None, dedupe=zalo,
                       id_is_hint=zalo, provider_time=zalo, check_tokens=not zalo,
                       store_pending=False)
        if out.rejected is not None:
            conn.execute(t.delete().where(t.c.id == pending["id"]))
        elif out.matched:
            conn.execute(update(PendingReceipt).where(PendingReceipt.id == pending["id"])
                         .values(applied_at=now))
            n += 1
    return n


def mark_pending_done(conn: Connection, *, gateway: str, key: str, now: dt.datetime) -> None:
    """Settle the pending copy of a receipt (same ``gateway`` and event key) now applied."""
    conn.execute(update(PendingReceipt).where(
        PendingReceipt.gateway == gateway, PendingReceipt.event_key == key[:255],
        PendingReceipt.applied_at.is_(None)).values(applied_at=now))


# -- replayed provider events -----------------------------------------------------------------

def first_sight(conn: Connection, *, gateway: str, event_id: str, now: dt.datetime,
                keep: dt.timedelta) -> bool:
    """Record a signed provider event's id; False when it was already recorded (a replay).

    In the caller's transaction (the id is kept only if the receipt's writes commit). Ids older
    than ``keep`` are forgotten at the same time: events that old are refused by their
    timestamp anyway (``keep`` must exceed the timestamp window).
    """
    t = WebhookEvent.__table__
    ins = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(t)
    res = conn.execute(ins.on_conflict_do_nothing().values(
        gateway=gateway, event_id=event_id[:128], received_at=now))
    conn.execute(t.delete().where(t.c.gateway == gateway, t.c.received_at < now - keep))
    return bool(res.rowcount)


def receipt_counts(conn: Connection) -> dict[str, int]:
    """Counts for operators and tests: ``pending`` (kept, not yet matched), ``rejected`` (all
    refused receipts) and ``rejected:<reason>`` per reason; ``replayed`` (webhook receipts that
    repeated one already received for the delivery: no-ops, kept as events)."""
    out: Counter[str] = Counter()
    out["pending"] = conn.execute(select(func.count()).select_from(PendingReceipt).where(
        PendingReceipt.applied_at.is_(None))).scalar_one()
    for reason, n in conn.execute(select(RejectedReceipt.reason, func.count())
                                  .group_by(RejectedReceipt.reason)).all():
        out[f"rejected:{reason}"] = n
        out["rejected"] += n
    out["replayed"] = int(conn.exec_driver_sql(
        "SELECT COALESCE(sum(n - 1), 0) FROM (SELECT count(*) AS n FROM delivery_events "
        "WHERE source = 'webhook' GROUP BY delivery_id, provider_status, error_code) AS g"
    ).scalar_one())
    return dict(out)
