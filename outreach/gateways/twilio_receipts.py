"""Twilio delivery receipts: the status callback's signature check and parsing, beside the
Twilio sender (:mod:`outreach.gateways.twilio`). Receiving is :mod:`outreach.receipts.receiver`'s,
writing :mod:`outreach.receipts.writer`'s.

The callback URL the sender gives Twilio is ``<base>/webhooks/twilio/status/<delivery id>/<receipt
token>`` (:meth:`TwilioGateway.callback_url`); ``<base>/webhooks/twilio/status/<delivery id>``
for a delivery without a token (claimed before migration 0004); ``<base>/webhooks/twilio/status``
for a Messaging Service's own callback URL (matched by ``MessageSid`` only).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from outreach.gateways.base import StatusUpdate

if TYPE_CHECKING:  # the SDK is the `twilio` extra: imported where a receipt is checked
    from twilio.request_validator import RequestValidator
from outreach.input.phones import mask

#: Twilio's signature headers (twilio.request_validator.SIGNATURE_HEADER, …_SETTINGS_HEADER).
SIGNATURE_HEADER = "X-Twilio-Signature"
SIGNATURE_SETTINGS_HEADER = "X-Twilio-Webhooks-Signature-Settings"
STATUS_PATH = "/webhooks/twilio/status"
#: ``STATUS_PATH[/<delivery id>[/<token>]]``; the token as :func:`outreach.ledger.states.claim` makes
#: it (hex; 16 to 32 characters accepted).
STATUS_ROUTE = re.compile(re.escape(STATUS_PATH) + r"(?:/([1-9][0-9]{0,17})(?:/([0-9a-f]{16,32}))?)?")
#: Form fields holding phone numbers: masked in the stored receipt (the ledger has the number).
MASKED_FIELDS = ("To", "From")


class MalformedReceipt(ValueError):
    """A signed callback that is not a status callback (answered 400)."""


def verify_signature(validator: RequestValidator, url: str, params: Mapping[str, str],
                     signature: str | None, settings: str | None) -> bool:
    """True when ``signature`` (``X-Twilio-Signature``) is Twilio's over ``url`` (the URL Twilio
    called: public base + path + ?query) and the form ``params``, with the algorithm named by
    ``settings`` (``X-Twilio-Webhooks-Signature-Settings``). The SDK's ``RequestValidator``
    (constant-time). Source: https://www.twilio.com/docs/usage/security#validating-requests"""
    if not signature:
        return False
    from twilio.request_validator import get_signature_algorithm

    return bool(validator.validate(url, params, signature, get_signature_algorithm(settings)))


def parse_receipt(params: Mapping[str, str], *, delivery_id: int | None,
                  receipt_token: str | None, now: dt.datetime) -> list[StatusUpdate]:
    """A status callback's form → ``[StatusUpdate]`` (empty for an inbound message).

    ``MessageSid`` (or ``SmsSid``) and ``MessageStatus`` (or ``SmsStatus``) are required
    (:class:`MalformedReceipt` otherwise); ``ErrorCode`` ``0`` means none; the status is mapped
    by :func:`~outreach.gateways.twilio.map_status`, the error reason by
    ``twilio_errors.json``. ``delivery_id`` and ``receipt_token`` come from the callback URL;
    ``occurred_at`` is ``now`` (Twilio's callbacks carry no event time). ``To``/``From`` numbers
    are masked in ``raw``. Source: https://www.twilio.com/docs/messaging/guides/track-outbound-message-status
    """
    sid = params.get("MessageSid") or params.get("SmsSid")
    twilio_status = params.get("MessageStatus") or params.get("SmsStatus")
    if not sid or not twilio_status:
        raise MalformedReceipt("MessageSid and MessageStatus are required")
    from outreach.gateways.twilio import error_reason, map_status

    status = map_status(twilio_status)
    if status is None:  # an inbound message, not a receipt
        return []
    code = params.get("ErrorCode") or None
    if code == "0":
        code = None
    raw = {k: params.get(k) for k in params}
    for name in MASKED_FIELDS:
        value = raw.get(name)
        if value and value.startswith("+"):
            raw[name] = mask(value)
    return [StatusUpdate(status=status, provider_message_id=sid, delivery_id=delivery_id,
                         provider_status=twilio_status, error_code=code,
                         error_reason=error_reason(code), occurred_at=now, raw=raw,
                         receipt_token=receipt_token)]


def receipt_key(update: StatusUpdate) -> str:
    """The idempotency key of a receipt (``<sid>:<status>:<error code>``), for pending storage."""
    return f"{update.provider_message_id}:{update.provider_status}:{update.error_code or ''}"
