"""Zalo delivery receipts: the webhook's signature check, timestamp window, event id and
parsing, beside the Zalo sender (:mod:`outreach.gateways.zalo`). Receiving is
:mod:`outreach.receipts.receiver`'s (``POST /webhooks/zalo``), writing :mod:`outreach.receipts.writer`'s.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
from collections.abc import Mapping
from typing import Any

from outreach.gateways.base import StatusUpdate
from outreach.gateways.zalo import epoch_ms
from outreach.i18n import _

SIGNATURE_HEADER = "X-ZEvent-Signature"
#: Default accepted distance between a Zalo event's signed ``timestamp`` and our clock, either
#: side (issue #17: a captured event cannot be replayed later). Zalo retries an unanswered
#: event at 30 s, 5 min, 15 min, 30 min and 1 h with the same body (domain-facts "Webhook ZNS
#: delivery"): retries later than the window are refused, so an outage longer than the window
#: loses those receipts to the webhook (``outreach deliveries sync`` is Twilio-only; widen the
#: window with ``ZALO_WEBHOOK_MAX_SKEW_SECONDS`` if the server may be down longer).
DEFAULT_MAX_SKEW = dt.timedelta(minutes=5)

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


def parse_receipt(event: Mapping[str, Any]) -> list[StatusUpdate]:
    """A Zalo event → ``[StatusUpdate]`` (:func:`parse_event` without the keys)."""
    return parse_event(event)[0]


def max_skew(config: Mapping[str, Any], environ: Mapping[str, str] | None = None
             ) -> dt.timedelta:
    """The timestamp window: ``config["ZALO_WEBHOOK_MAX_SKEW_SECONDS"]`` →
    ``$ZALO_WEBHOOK_MAX_SKEW_SECONDS`` → :data:`DEFAULT_MAX_SKEW`. Raises ValueError naming the
    setting when it is not a positive number of seconds."""
    env = os.environ if environ is None else environ
    value = config.get("ZALO_WEBHOOK_MAX_SKEW_SECONDS") or env.get("ZALO_WEBHOOK_MAX_SKEW_SECONDS")
    if value in (None, ""):
        return DEFAULT_MAX_SKEW
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = -1.0
    if not seconds > 0:
        raise ValueError(_("ZALO_WEBHOOK_MAX_SKEW_SECONDS: {value!r} is not a positive number "
                           "of seconds").format(value=value))
    return dt.timedelta(seconds=seconds)


def timestamp_ok(timestamp: Any, now: dt.datetime, skew: dt.timedelta) -> bool:
    """True when the event's signed ``timestamp`` (epoch ms) is within ``skew`` of ``now``,
    either side; False when it is outside or unreadable."""
    when = epoch_ms(timestamp)
    return when is not None and abs(when - now) <= skew


def event_id(raw_body: bytes) -> str:
    """The id of a signed event for replay checks: ``sha256:`` + the SHA-256 of its raw body.
    Zalo's events carry no id of their own; the body holds the signed timestamp and the
    message ids, so two different events never share it and a replay (or Zalo's own retry,
    which resends the same body) always does."""
    return "sha256:" + hashlib.sha256(raw_body).hexdigest()


#: Zalo OA events carrying a citizen's text message to the Official Account.
TEXT_EVENTS = frozenset({"user_send_text"})


def parse_inbound(event: Mapping[str, Any], *, optout_events: frozenset[str] | set[str] |
                  tuple[str, ...] = ("unfollow",)) -> dict[str, Any] | None:
    """A Zalo OA event from a citizen → ``{"user_id", "text", "event", "key", "oa_id",
    "at"}``, or None for an event that is not one (delivery receipts, anything else).

    ``user_send_text``: ``{"event_name", "app_id", "timestamp", "sender": {"id"},
    "recipient": {"id": OA id}, "message": {"text", "msg_id"}}`` → ``text`` and ``key`` =
    ``msg_id``. ``unfollow`` (and the other ``optout_events``): ``{"event_name", "oa_id",
    "follower": {"id"}, "timestamp", ...}`` → ``event`` = the name, ``key`` =
    ``<event>:<user id>:<timestamp>`` (Zalo's retries resend the same body, so the same key).
    A user id is the ``sender``'s (text) or ``follower``'s (events). Shapes from Zalo's OA
    webhook documentation as captured in integration guides (domain-facts "Webhook") ⚠️."""
    name = str(event.get("event_name") or "")
    if name in TEXT_EVENTS:
        sender = event.get("sender") if isinstance(event.get("sender"), Mapping) else {}
        message = event.get("message") if isinstance(event.get("message"), Mapping) else {}
        uid = str(sender.get("id") or "").strip()
        msg_id = str(message.get("msg_id") or "").strip()
        if not uid:
            return None
        recipient = event.get("recipient") if isinstance(event.get("recipient"), Mapping) else {}
        return {"user_id": uid, "text": str(message.get("text") or ""), "event": None,
                "key": msg_id or f"{name}:{uid}:{event.get('timestamp')}",
                "oa_id": str(recipient.get("id") or "") or None,
                "at": epoch_ms(event.get("timestamp"))}
    if name in optout_events or name == "follow":
        follower = event.get("follower") if isinstance(event.get("follower"), Mapping) else {}
        sender = event.get("sender") if isinstance(event.get("sender"), Mapping) else {}
        uid = str(follower.get("id") or sender.get("id") or "").strip()
        if not uid:
            return None
        return {"user_id": uid, "text": None, "event": name,
                "key": f"{name}:{uid}:{event.get('timestamp')}",
                "oa_id": str(event.get("oa_id") or "") or None,
                "at": epoch_ms(event.get("timestamp"))}
    return None
