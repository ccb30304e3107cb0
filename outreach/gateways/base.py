"""The gateway contract: one message in, a provider id or a classified error out.

Error tree (every failure a gateway raises is one of these; adapters map low-level
errors to the most specific class with ``raise ... from exc``)::

    GatewayError
    ├── ConfigurationError      bad or missing options; raised by the constructor, no network touched
    ├── TransientError          not sent; safe to try again later (``retry_after`` seconds if the provider said)
    │   ├── ThrottledError      provider rate limit (HTTP 429, Twilio 20429, Zalo -32)
    │   └── UnavailableError    could not connect, 5xx before acceptance, queue overflow, quota window
    ├── PermanentError          the provider refused this message; never retried
    │   ├── InvalidAddressError invalid, unroutable or landline number; no Zalo account
    │   └── OptedOutError       the recipient has unsubscribed (Twilio 21610): joins the suppression list
    ├── StopRunError            nothing more can be sent until an operator acts: the run pauses
    │   └── AuthenticationError bad credentials or expired token that cannot be refreshed
    └── OutcomeUnknownError     the request may have reached the provider (read timeout, connection
                                dropped after sending): the delivery becomes ``unknown`` and is never
                                resent automatically

The difference between ``UnavailableError`` (connect failed: not sent) and
``OutcomeUnknownError`` (read failed: maybe sent) is the difference between a safe retry and
a possible double send; adapters must keep the two apart (httpx draws the same line between
``ConnectError`` and ``ReadTimeout``). For adapters over HTTP the line is drawn once, in
:func:`outreach.gateways.http.map_error`.
"""

from __future__ import annotations

import abc
import datetime as dt
import os
import re
from dataclasses import dataclass, field
from typing import Any, ClassVar


_SECRET_ENV = ("TWILIO_AUTH_TOKEN", "TWILIO_API_SECRET", "TWILIO_API_KEY", "ZALO_SECRET_KEY",
               "ZALO_OA_SECRET_KEY", "ZALO_ACCESS_TOKEN", "ZALO_REFRESH_TOKEN",
               "OUTREACH_ESMS_API_KEY", "OUTREACH_ESMS_SECRET_KEY", "OUTREACH_ESMS_CALLBACK_SECRET",
               "OUTREACH_ESMS_MO_KEY")
_SID = re.compile(r"\b(AC|SK|MG|PN)([0-9a-fA-F]{28})([0-9a-fA-F]{4})\b")
_BASIC = re.compile(r"(Basic|Bearer)\s+[A-Za-z0-9+/=._-]{8,}")


def redact(text: str) -> str:
    """``text`` with credentials removed: account/key SIDs shortened to their last 4 characters,
    Basic/Bearer authorisation values and the values of credential environment variables
    replaced by ``****``. Applied to every gateway error, so provider messages that echo a
    request (a 401 body, a URL with the account SID) never print or store a secret."""
    if not text:
        return text
    text = _SID.sub(lambda m: f"{m.group(1)}…{m.group(3)}", text)
    text = _BASIC.sub(lambda m: f"{m.group(1)} ****", text)
    for var in _SECRET_ENV:
        value = os.environ.get(var)
        if value and len(value) >= 6:
            text = text.replace(value, "****")
    return text


class GatewayError(Exception):
    """Base of every gateway failure.

    Attributes:
        reason: a short machine-readable reason (``"rate-limited"``, ``"invalid-number"``...).
        provider_code: the provider's own error code as a string (``"21211"``, ``"-118"``), or None.
        detail: the provider's human-readable message, never containing credentials.
        content: True when the provider refused the message *itself* (too long, wrong
            template, a template parameter too long): the same text or template data would be
            refused for every recipient. Set from the ``"content": true`` entries of each
            adapter's code table; the sender pauses a run whose first sends all fail so
            (:class:`outreach.sending.sender.BatchSender`).
    """

    reason: str = "gateway-error"

    def __init__(self, detail: str = "", *, reason: str | None = None,
                 provider_code: str | int | None = None, raw: Any = None,
                 content: bool = False) -> None:
        detail = redact(detail)
        super().__init__(detail or self.reason)
        self.detail = detail
        if reason:
            self.reason = reason
        self.provider_code = None if provider_code is None else str(provider_code)
        self.raw = raw
        self.content = bool(content)


class ConfigurationError(GatewayError):
    reason = "configuration"


class TransientError(GatewayError):
    """Not sent; may be retried. ``retry_after`` is in seconds (None: use backoff)."""

    reason = "unavailable"

    def __init__(self, detail: str = "", *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(detail, **kw)
        self.retry_after = retry_after


class ThrottledError(TransientError):
    reason = "rate-limited"


class UnavailableError(TransientError):
    reason = "unavailable"


class PermanentError(GatewayError):
    reason = "rejected"


class InvalidAddressError(PermanentError):
    reason = "invalid-address"


class OptedOutError(PermanentError):
    reason = "opted-out"


class StopRunError(GatewayError):
    reason = "stop"


class AuthenticationError(StopRunError):
    reason = "authentication"


class OutcomeUnknownError(GatewayError):
    reason = "outcome-unknown"


@dataclass(slots=True)
class OutboundMessage:
    """One message to one recipient, as the dispatcher hands it to a gateway, which reads it
    and never changes it (not frozen only because a frozen dataclass costs four times as much
    to build, and the send path builds one per recipient: benchmarks/city_1m.py).

    ``to`` is an E.164 number (``+84912345678``) for SMS and ZNS; ``zalo_user_id`` is set for
    Official Account messages to followers. ``segments`` is the count the dispatcher computed
    (GSM-7 / UCS-2 rules in :mod:`outreach.input.text`). ``delivery_id`` is our own id: adapters pass it
    to the provider (status-callback URL, ``tracking_id``) so receipts find their delivery.
    ``receipt_token`` is the delivery's unguessable receipt token (``deliveries.receipt_token``,
    set at claim): adapters whose receipts come to a URL of ours put it in that URL, so a
    receipt proves which delivery it was created for (issue #15). None: no token (legacy URL).
    """

    delivery_id: int
    campaign_id: str
    channel: str
    to: str
    body: str
    segments: int = 1
    sender: str | None = None
    zalo_user_id: str | None = None
    template_id: str | None = None
    template_data: dict[str, str] = field(default_factory=dict)
    receipt_token: str | None = None


@dataclass(slots=True)
class SendResult:
    """What a provider said when it accepted a message (read, never changed: not frozen for
    the same reason as :class:`OutboundMessage`).

    ``status`` is already in our vocabulary (``sent`` or ``delivered``); ``price_vnd`` is the
    provider's price converted to VND when it returns one.
    """

    provider_message_id: str
    status: str = "sent"
    provider_status: str | None = None
    segments: int | None = None
    price_vnd: float | None = None
    raw: Any = None


@dataclass(frozen=True)
class StatusUpdate:
    """A delivery receipt or polled status, from a webhook, a sync or a reconciliation.

    ``status`` is ours (``sent``/``delivered``/``undelivered``/``failed``); ``delivery_id`` is set
    when the provider echoed our own id (callback URL, ``tracking_id``), ``receipt_token`` when
    the callback URL carried the delivery's token. A receipt only applies to the delivery whose
    provider message id (and token, when either side has one) matches
    (:func:`outreach.receipts.writer.apply_updates`).
    when the provider echoed our own id (callback URL, ``tracking_id``). ``carrier`` (the
    network the provider says the number is on: eSMS ``telcoid``, in :mod:`outreach.input.phones`'
    names) and ``price_vnd`` (the provider's price, VND), when given, replace the delivery's
    own on an applied move.
    """

    status: str
    provider_message_id: str | None = None
    delivery_id: int | None = None
    provider_status: str | None = None
    error_code: str | None = None
    error_reason: str | None = None
    occurred_at: dt.datetime | None = None
    raw: Any = None
    receipt_token: str | None = None
    carrier: str | None = None
    price_vnd: float | None = None


@dataclass(frozen=True)
class Refusal:
    """What a provider would refuse in one message, found before any request.

    ``part`` names the part of the message: ``"body"`` (the text), or
    ``"template_data.<param>"`` (a ZNS template parameter). ``length`` and ``limit`` are in
    ``unit`` (``"characters"`` or ``"segments"``); ``rule`` says whose limit it is and where it
    is published (e.g. ``"Twilio: Body at most 1,600 characters (error 21617)"``). ``code`` is
    the provider's code for this refusal when it has one."""

    part: str
    length: int
    limit: int
    unit: str
    rule: str
    code: str | None = None
    #: a recommendation, not a refusal: reported by the check, nothing is refused for it
    advisory: bool = False

    def describe(self) -> str:
        """``"1,650 characters, over the limit of 1,600 (Twilio: ...)"``; a required parameter
        that is missing reads ``"missing, required (...)"``. In the interface's language; the
        rule (a provider's documentation, quoted) as written in the limits file."""
        from outreach.i18n import _, ngettext, number

        n, limit, rule = number(self.length), number(self.limit), self.rule
        if self.unit == "required":
            return _("missing, required ({rule})").format(rule=rule)
        if self.unit == "status":
            return _("cannot be sent ({rule})").format(rule=rule)
        if self.unit == "characters":
            size = ngettext("{n} character", "{n} characters", self.length).format(n=n)
        elif self.unit == "segments":
            size = ngettext("{n} segment", "{n} segments", self.length).format(n=n)
        else:
            size = f"{n} {self.unit}"
        if self.advisory:
            return _("{size}, more than the recommended {limit} ({rule})").format(
                size=size, limit=limit, rule=rule)
        if self.length < self.limit:
            return _("{size}, under the minimum of {limit} ({rule})").format(
                size=size, limit=limit, rule=rule)
        return _("{size}, over the limit of {limit} ({rule})").format(
            size=size, limit=limit, rule=rule)


class Gateway(abc.ABC):
    """A transport to phones (or, for ``outbox``, to a local file).

    Class attributes state facts about the service. Constructors take keyword options,
    validate them, raise :class:`ConfigurationError` and touch no network.

    ``rate_per_second`` and ``rate_unit`` (``"messages"`` or ``"segments"``) set the default
    throughput limit; ``concurrency`` the default number of requests in flight.
    ``reaches_phones`` is False only for gateways that deliver nothing to a person (outbox),
    for which the campaign send window is reported but not enforced. ``can_confirm`` and
    :attr:`lookup_horizon_seconds` say what reconciliation may conclude from :meth:`lookup`.
    """

    name: ClassVar[str] = "base"
    channel: ClassVar[str] = "sms"
    reaches_phones: ClassVar[bool] = True
    rate_per_second: ClassVar[float] = 10.0
    rate_unit: ClassVar[str] = "messages"
    concurrency: ClassVar[int] = 8
    #: True when :meth:`lookup` can say for certain that the provider never received a message
    #: (``False``), once :attr:`lookup_horizon_seconds` have passed since its request started
    can_confirm: ClassVar[bool] = False
    #: True when sending a message again under the same request id cannot make a second one
    #: while :meth:`idempotent_until` has not passed (the provider refuses the repeat as a
    #: duplicate: the brandname aggregators' ``RequestId``)
    idempotent_resend: ClassVar[bool] = False

    def idempotent_until(self, started: dt.datetime) -> dt.datetime | None:
        """Until when (aware UTC) a message whose request started at ``started`` (aware) may be
        sent again without any risk of a second message, because the provider refuses a
        repeated request id as a duplicate; None (the default) when a resend is never known to
        be safe. Reconciliation requeues an interrupted send of such a gateway before then."""
        return None

    @property
    def lookup_horizon_seconds(self) -> float:
        """How long after a request started (seconds) a :meth:`lookup` that does not find the
        message proves it was never received: the client's timeout plus the time the provider
        may take to list a message it is still creating. Before that, "not listed yet" proves
        nothing and reconciliation waits. 0 for a gateway that records synchronously."""
        return 0.0

    #: True when :meth:`send_many` takes a whole batch in one operation (the outbox: one
    #: buffered write and one fsync); the sender then hands it each claimed batch at once
    #: when no rate limit or send window applies
    batched: ClassVar[bool] = False
    #: rows per claim that suit this gateway when the run sets no batch size (None: the
    #: engine's default, 500)
    preferred_batch: ClassVar[int | None] = None

    @abc.abstractmethod
    def send(self, message: OutboundMessage) -> SendResult:
        """Send one message. Returns a :class:`SendResult` or raises a :class:`GatewayError`."""

    def send_many(self, messages: list[OutboundMessage]) -> list[SendResult]:
        """Send several messages in one operation; results in the order given. All or nothing
        as far as the caller knows: an exception means any of them may have been received
        (reconciliation asks :meth:`lookup`). The default sends them one by one."""
        return [self.send(m) for m in messages]

    def lookup(self, message: OutboundMessage, since: dt.datetime,
               until: dt.datetime) -> StatusUpdate | None | bool:
        """Reconcile a delivery whose outcome is unknown.

        Returns a :class:`StatusUpdate` if the provider has the message, ``False`` if the
        provider can say for certain it never received it, and ``None`` if this gateway
        cannot be asked (the operator decides).
        """
        return None

    def refusals(self, message: OutboundMessage) -> list[Refusal]:
        """What the provider would refuse in ``message``, from its published limits (data next
        to each adapter), without sending it: an empty list when nothing. ``campaign check``,
        ``launch --dry-run`` and every launch call it before any send request
        (:mod:`outreach.sending.limits`). May read provider metadata (Zalo: the template's
        parameters, cached) but never sends. The default knows no limit."""
        return []

    def fetch_statuses(self, provider_message_ids: list[str]) -> list[StatusUpdate]:
        """Poll current statuses for accepted messages (for operators without a webhook URL)."""
        return []

    def check(self) -> dict[str, Any]:
        """Validate configuration and credentials without sending a message.

        Returns a dict of non-secret facts (account name, sender...). Raises
        :class:`ConfigurationError` or :class:`AuthenticationError`.
        """
        return {"gateway": self.name, "ok": True}

    def close(self) -> None:
        """Release connections and files."""
