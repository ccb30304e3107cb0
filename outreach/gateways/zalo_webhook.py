"""Zalo webhook receiver: signed delivery events (ZNS/OA) applied to the ledger, idempotently."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import json
import logging
import os
from collections.abc import Mapping
from typing import Any

from flask import Blueprint, Response, current_app, request
from sqlalchemy import Connection, select, update

from outreach import receipts
from outreach.clock import SYSTEM_CLOCK
from outreach.gateways.base import StatusUpdate
from outreach.gateways.zalo import epoch_ms
from outreach.models import Delivery, DeliveryEvent, PendingReceipt

log = logging.getLogger(__name__)

blueprint = Blueprint("zalo_webhook", __name__)

SIGNATURE_HEADER = "X-ZEvent-Signature"

#: Events that say a message reached the phone (domain-facts "Webhook ZNS delivery").
#: ``user_seen_message`` implies delivery too; on a delivered row it only adds an event.
DELIVERY_EVENTS = {"user_received_message": "delivered", "user_seen_message": "delivered"}
#: Events recorded in the log only (a follower leaving matters for later OA messages).
LOGGED_EVENTS = frozenset({"follow", "unfollow"})


def compute_signature(app_id: str, raw_body: bytes, timestamp: str, secret: str) -> str:
    """``sha256(app_id + raw body + timestamp + secret)`` as lowercase hex.

    The formula is Zalo's (domain-facts "Webhook": "X-ZEvent-Signature = sha256(app_id + raw
    body + timestamp + secret)", a plain SHA-256, not an HMAC); the header may carry a ``mac=``
    prefix. ``timestamp`` is the ``timestamp`` field of the event body, as sent.
    """
    digest = hashlib.sha256()
    digest.update(app_id.encode("utf-8"))
    digest.update(raw_body)
    digest.update(timestamp.encode("utf-8"))
    digest.update(secret.encode("utf-8"))
    return digest.hexdigest()


def verify_signature(header: str | None, app_id: str, raw_body: bytes, timestamp: str,
                     secret: str) -> bool:
    """Constant-time check of an ``X-ZEvent-Signature`` header (``mac=`` prefix optional)."""
    if not header:
        return False
    given = header.strip()
    if given.lower().startswith("mac="):
        given = given[4:].strip()
    expected = compute_signature(app_id, raw_body, timestamp, secret)
    return hmac.compare_digest(given.lower().encode("ascii", "replace"), expected.encode("ascii"))


def webhook_settings(config: Mapping[str, Any], environ: Mapping[str, str] | None = None
                     ) -> tuple[str | None, str | None]:
    """``(app_id, secret)`` for signature checks.

    App id: ``config["ZALO_APP_ID"]`` → ``$ZALO_APP_ID``. Secret: ``config["ZALO_WEBHOOK_SECRET"]``
    → ``$ZALO_OA_SECRET_KEY`` → ``$ZALO_SECRET_KEY``. ⚠️ Zalo's documentation is ambiguous
    about whether events are signed with the OA secret key or the app secret: the app secret is
    the default and ``ZALO_OA_SECRET_KEY`` overrides it.
    """
    env = os.environ if environ is None else environ
    app_id = config.get("ZALO_APP_ID") or env.get("ZALO_APP_ID")
    secret = (config.get("ZALO_WEBHOOK_SECRET") or env.get("ZALO_OA_SECRET_KEY")
              or env.get("ZALO_SECRET_KEY"))
    return app_id, secret


def parse_event(event: Mapping[str, Any]) -> tuple[list[StatusUpdate], list[str]]:
    """A Zalo event → status updates and their idempotency keys (``<msg_id>:<event_name>``).

    ``user_received_message``: ``{"event_name", "app_id", "timestamp", "sender": {"id"},
    "recipient": {"id"}, "message": {"delivery_time" (epoch ms), "msg_id", "tracking_id"}}``
    → ``delivered``; ``user_seen_message`` (``message.msg_id`` or ``message.msg_ids``) →
    ``delivered`` as well (seen implies received; never a regression). Other events → ``[]``.
    ``tracking_id`` is our delivery id when it is all digits.
    """
    name = str(event.get("event_name") or "")
    status = DELIVERY_EVENTS.get(name)
    if status is None:
        return [], []
    message = event.get("message") if isinstance(event.get("message"), Mapping) else {}
    ids = []
    if message.get("msg_id"):
        ids.append(str(message["msg_id"]))
    for extra in message.get("msg_ids") or []:
        if extra and str(extra) not in ids:
            ids.append(str(extra))
    tracking = str(message.get("tracking_id") or "").strip()
    delivery_id = int(tracking) if tracking.isdigit() and len(tracking) < 19 else None
    when = epoch_ms(message.get("delivery_time")) or epoch_ms(event.get("timestamp"))
    raw = {"event_name": name, "msg_id": message.get("msg_id"),
           "tracking_id": message.get("tracking_id"),
           "delivery_time": message.get("delivery_time"), "timestamp": event.get("timestamp")}
    updates, keys = [], []
    if not ids and delivery_id is not None:
        updates.append(StatusUpdate(status=status, delivery_id=delivery_id, provider_status=name,
                                    occurred_at=when, raw=raw))
        keys.append(f"tracking:{delivery_id}:{name}")
    for msg_id in ids:
        updates.append(StatusUpdate(status=status, provider_message_id=msg_id,
                                    delivery_id=delivery_id if len(ids) == 1 else None,
                                    provider_status=name, occurred_at=when,
                                    raw={**raw, "msg_id": msg_id}))
        keys.append(f"{msg_id}:{name}")
    return updates, keys


def apply_event(conn: Connection, event: Mapping[str, Any], *, now: dt.datetime) -> dict[str, int]:
    """Apply one verified event in the caller's transaction; returns counts
    ``{"applied", "duplicate", "pending", "ignored"}``.

    Idempotent on ``msg_id`` + event name (Zalo retries at 30 s, 5 min, 15 min, 30 min, 1 h):
    an event already recorded for the delivery adds nothing; one whose delivery cannot be found
    yet is kept in ``pending_receipts`` (one row per key) and replayed by
    :func:`outreach.receipts.apply_pending`. A ``tracking_id`` is trusted only when the
    delivery has no msg_id yet or the same one (another system may share the OA).
    """
    counts = {"applied": 0, "duplicate": 0, "pending": 0, "ignored": 0}
    updates, keys = parse_event(event)
    if not updates:
        counts["ignored"] += 1
        return counts
    for upd, key in zip(updates, keys):
        upd = _trusted(conn, upd)
        did = _find(conn, upd)  # the same rule receipts.apply_updates uses
        if did is not None:
            stmt = select(Delivery.id).where(Delivery.id == did)
            if conn.dialect.name == "postgresql":
                stmt = stmt.with_for_update()  # serialise concurrent retries of one event
            conn.execute(stmt)
            seen = conn.execute(select(DeliveryEvent.id).where(
                DeliveryEvent.delivery_id == did, DeliveryEvent.source == "webhook",
                DeliveryEvent.provider_status == upd.provider_status).limit(1)).first()
            if seen is not None:
                counts["duplicate"] += 1
                _mark_pending_done(conn, key, now)
                continue
        outcome = receipts.apply_updates(conn, [upd], gateway="zalo", source="webhook", now=now,
                                         event_keys=[key])[0]
        if outcome.pending:
            counts["duplicate" if outcome.duplicate else "pending"] += 1
            continue
        counts["applied"] += 1
        _mark_pending_done(conn, key, now)
        if outcome.applied and upd.status == "delivered" and upd.occurred_at is not None:
            # Zalo's delivery_time, not our receive time (retries arrive up to ~2 h late)
            conn.execute(update(Delivery).where(Delivery.id == outcome.delivery_id,
                                                Delivery.status == "delivered")
                         .values(delivered_at=min(upd.occurred_at, now)))
    return counts


def _trusted(conn: Connection, upd: StatusUpdate) -> StatusUpdate:
    """Drop the ``tracking_id`` match unless it names one of our Zalo deliveries whose msg_id
    is unknown yet or the same: another system sharing the OA may use small numbers too."""
    if upd.delivery_id is None:
        return upd
    stored = conn.execute(select(Delivery.provider_message_id, Delivery.channel).where(
        Delivery.id == upd.delivery_id)).first()
    if stored is None:
        return upd  # kept pending under our id until the row appears
    msg_id, channel = stored
    if channel == "zalo" and (not msg_id or not upd.provider_message_id
                              or msg_id == upd.provider_message_id):
        return upd
    return StatusUpdate(status=upd.status, provider_message_id=upd.provider_message_id,
                        provider_status=upd.provider_status, occurred_at=upd.occurred_at,
                        raw=upd.raw)


def _find(conn: Connection, upd: StatusUpdate) -> int | None:
    """Our delivery id (from ``tracking_id``) first, then the provider's msg_id."""
    if upd.delivery_id is not None:
        found = conn.execute(select(Delivery.id).where(Delivery.id == upd.delivery_id)).first()
        if found is not None:
            return found[0]
    if upd.provider_message_id:
        found = conn.execute(select(Delivery.id).where(
            Delivery.provider_message_id == upd.provider_message_id)).first()
        if found is not None:
            return found[0]
    return None


def _mark_pending_done(conn: Connection, key: str, now: dt.datetime) -> None:
    conn.execute(update(PendingReceipt).where(
        PendingReceipt.gateway == "zalo", PendingReceipt.event_key == key[:255],
        PendingReceipt.applied_at.is_(None)).values(applied_at=now))


@blueprint.post("/webhooks/zalo")
def zalo_event() -> Response | tuple[str, int]:
    """Receive one Zalo event. 403 on a bad signature (nothing changes), 400 on an unreadable
    body, 503 when not configured, 200 otherwise (Zalo wants 200 within 2 s: one short
    transaction, no network call)."""
    raw = request.get_data(cache=False)
    app_id, secret = webhook_settings(current_app.config)
    if not app_id or not secret:
        log.error("zalo webhook: ZALO_APP_ID / webhook secret not configured")
        return "not configured", 503
    try:
        event = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return "unreadable body", 400
    if not isinstance(event, dict):
        return "unreadable body", 400
    timestamp = str(event.get("timestamp") or "")
    if not verify_signature(request.headers.get(SIGNATURE_HEADER), str(app_id), raw, timestamp,
                            str(secret)):
        log.warning("zalo webhook: bad signature from %s", request.remote_addr)
        return "forbidden", 403
    name = str(event.get("event_name") or "")
    if name in LOGGED_EVENTS:
        uid = str((event.get("follower") or event.get("sender") or {}).get("id") or "")
        log.info("zalo webhook: %s by follower …%s", name, uid[-4:])
    if name not in DELIVERY_EVENTS:
        return "ok", 200
    db = current_app.config["OUTREACH_DB"]
    clock = current_app.config.get("OUTREACH_CLOCK", SYSTEM_CLOCK)
    # outreach.webhooks.create_app serialises this process's SQLite writes with one lock
    lock = current_app.extensions.get("outreach_write_lock") or contextlib.nullcontext()
    with lock, db.engine.begin() as conn:
        counts = apply_event(conn, event, now=clock.now())
    log.info("zalo webhook %s: %s", name, counts)
    return "ok", 200
