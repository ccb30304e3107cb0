"""Twilio Messaging over the official SDK; errors classified by ``twilio_errors.json``."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import threading
import time
import unicodedata
from collections.abc import Callable, Mapping
from functools import lru_cache
from importlib import resources
from typing import Any, ClassVar
from urllib.parse import urlsplit

import requests
from twilio.base.exceptions import (TwilioException, TwilioRestException,
                                     TwilioServiceException)
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from outreach.i18n import _
from outreach.gateways import base, http
from outreach.input import text as textmod
from outreach.gateways.base import (ConfigurationError, Gateway, OutboundMessage, SendResult,
                                    StatusUpdate)

log = logging.getLogger(__name__)
#: What the SDK raises for an answer with an error status (legacy and RFC 9457 bodies).
_ERROR_ANSWERS = (TwilioRestException, TwilioServiceException)

DEFAULT_API_URL = "https://api.twilio.com"
#: VND per USD used to convert Twilio's ``price`` (USD) to ``SendResult.price_vnd``; override with
#: ``price_vnd_per_usd=`` / ``TWILIO_PRICE_VND_PER_USD``. An estimate for reports, not accounting.
DEFAULT_VND_PER_USD = 25_000.0
DEFAULT_TIMEOUT = 15.0
#: seconds Twilio may take to list a message it accepted (see lookup_horizon_seconds)
DEFAULT_LISTING_MARGIN = 60.0
#: Connections kept per host by the HTTP session: must be >= the requests in flight, or threads
#: wait for a connection (the SDK's default is min(32, cpu+4), and only for https).
DEFAULT_POOL_SIZE = 64
#: Twilio's limits: ValidityPeriod 1–36000 s (Message resource docs).
VALIDITY_MIN, VALIDITY_MAX = 1, 36_000
#: How many messages to one number :meth:`TwilioGateway.lookup` reads before giving up.
LOOKUP_LIMIT = 200
#: Slack around the lookup window, for clock differences between us and Twilio.
LOOKUP_SLACK = dt.timedelta(minutes=5)

_ACCOUNT_SID = re.compile(r"^AC[0-9a-fA-F]{32}$")
_API_KEY_SID = re.compile(r"^SK[0-9a-fA-F]{32}$")
_SERVICE_SID = re.compile(r"^MG[0-9a-fA-F]{32}$")
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
# Twilio alphanumeric sender ID: up to 11 of A-Z a-z 0-9 and space, at least one letter
# (https://help.twilio.com/articles/223181348). Vietnamese operators require a registered
# brandname of at most 11 characters without diacritics.
_ALPHA_SENDER = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}$")
# "+84912345678", URL-encoded "%2B84912345678", or a national "0912345678".
_PHONE_IN_TEXT = re.compile(r"(?<![\w%])(?:(?:\+|%2B)\d{8,15}|0\d{9,10})(?!\d)")

#: Twilio message status -> ours. ``None``: not an outbound status (inbound messages).
STATUS_MAP: dict[str, str | None] = {
    "accepted": "sent", "scheduled": "sent", "queued": "sent", "sending": "sent", "sent": "sent",
    "delivered": "delivered", "read": "delivered",
    "undelivered": "undelivered",
    "failed": "failed", "canceled": "failed",
    # MMS/group status; for SMS it never occurs. No final claim.
    "partially_delivered": "sent",
    "receiving": None, "received": None,
}


def map_status(twilio_status: str | None) -> str | None:
    """Twilio ``status`` / ``MessageStatus`` -> our delivery status, or None when not outbound.

    Source: https://www.twilio.com/docs/messaging/api/message-resource#message-status-values.
    Unknown future statuses map to ``sent`` (no final claim).
    """
    if not twilio_status:
        return None
    return STATUS_MAP.get(twilio_status.lower(), "sent")


# ---------------------------------------------------------------------------------------------
# Error table


@lru_cache(maxsize=1)
def error_table() -> dict[str, Any]:
    """The parsed ``twilio_errors.json``: ``{"codes": {code: entry}, "http": {status: entry}}``.

    Every entry is ``{"class": <name in outreach.gateways.base>, "reason", "description"}``;
    a class name that does not exist raises ``ConfigurationError`` at first use.
    """
    raw = resources.files("outreach.gateways").joinpath("twilio_errors.json").read_text("utf-8")
    table = json.loads(raw)
    for section in ("codes", "http"):
        for key, entry in table[section].items():
            cls = getattr(base, entry["class"], None)
            if not (isinstance(cls, type) and issubclass(cls, base.GatewayError)):
                raise ConfigurationError(f"twilio_errors.json: {section}/{key}: unknown class "
                                         f"{entry['class']!r}")
    return table


@lru_cache(maxsize=1)
def limits() -> dict[str, Any]:
    """The parsed ``twilio_limits.json``: ``body_max_characters`` (1600, error 21617) and
    ``recommended_max_segments`` (10), each with its source."""
    raw = resources.files("outreach.gateways").joinpath("twilio_limits.json").read_text("utf-8")
    return json.loads(raw)


def classify(code: int | str | None, http_status: int | None = None
             ) -> tuple[type[base.GatewayError], str, str]:
    """(error class, reason, description) for a Twilio error code and/or HTTP status.

    A known code wins; then the HTTP status (401, 403, 429), then its family (4xx, 5xx).
    An unknown code with no status is a :class:`PermanentError` with reason ``"rejected"``.
    """
    table = error_table()
    entry = table["codes"].get(str(code)) if code is not None else None
    if entry is None and http_status is not None:
        entry = (table["http"].get(str(http_status))
                 or table["http"].get("5xx" if http_status >= 500 else "4xx"))
    if entry is None:
        entry = table["http"]["4xx"]
    return getattr(base, entry["class"]), entry["reason"], entry["description"]


def error_reason(code: int | str | None) -> str | None:
    """The stable reason for an ErrorCode seen in a receipt (``"30007"`` -> ``"carrier-filtered"``),
    or None when the code is empty or not in the table."""
    if code in (None, "", "0", 0):
        return None
    entry = error_table()["codes"].get(str(code))
    return entry["reason"] if entry else None


#: Re-exported: ``Retry-After`` parsing lives in :mod:`outreach.gateways.http`.
parse_retry_after = http.parse_retry_after


def _mask_number(number: str) -> str:
    try:
        from outreach.input.phones import mask
    except ImportError:  # pragma: no cover - phones is part of the package
        digits = re.sub(r"\D", "", number)
        return digits[:3] + "*" * max(len(digits) - 6, 0) + digits[-3:]
    return mask(number)


def scrub(text: str | None, *secrets: str | None) -> str:
    """``text`` with phone numbers masked and the given secrets removed (for details and logs)."""
    if not text:
        return ""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return _PHONE_IN_TEXT.sub(lambda m: _mask_number(m.group(0).replace("%2B", "+")), text)


class _MaskNumbersFilter(logging.Filter):
    """Masks phone numbers in records of urllib3's connection pool, which logs request lines
    (``GET ...Messages.json?To=%2B849...``) at DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        masked = scrub(text)
        if masked != text:
            record.msg, record.args = masked, None
        return True


_URLLIB3_LOG = logging.getLogger("urllib3.connectionpool")
if not any(isinstance(f, _MaskNumbersFilter) for f in _URLLIB3_LOG.filters):
    _URLLIB3_LOG.addFilter(_MaskNumbersFilter())


# ---------------------------------------------------------------------------------------------
# HTTP client


class _HttpClient(TwilioHttpClient):
    """The SDK's requests-based client over :func:`outreach.gateways.http.new_session` (a pool
    sized for our concurrency on http and https, no automatic retries: a retried POST could
    send twice; proxy and CA-bundle variables read once), the last response kept per thread
    (Retry-After of a 429 is only in the headers) and request logging without phone numbers."""

    def __init__(self, *, timeout: float, pool_size: int, api_url: str,
                 loopback_only: bool = False) -> None:
        super().__init__(pool_connections=False, timeout=timeout,
                         logger=logging.getLogger("outreach.gateways.twilio.http"))
        self.session = http.new_session(pool_size=pool_size, environment_for=api_url,
                                        loopback_only=loopback_only)
        self._local = threading.local()

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        self._local.last = None
        response = super().request(method, url, *args, **kwargs)
        self._local.last = response
        return response

    @property
    def last_response(self) -> Any:
        """The SDK response (status_code, text, headers) last received by this thread."""
        return getattr(self._local, "last", None)

    def log_request(self, kwargs: dict[str, Any]) -> None:
        # The SDK logs query strings at INFO; ours carry To=+84... on listings.
        self.logger.debug("%s %s", kwargs["method"], urlsplit(kwargs["url"]).path)

    def log_response(self, status_code: int, response: Any) -> None:
        self.logger.debug("answer %s", status_code)


# ---------------------------------------------------------------------------------------------
# Gateway


def _opt(kwargs: Mapping[str, Any], key: str, env: Mapping[str, str], *env_names: str) -> Any:
    value = kwargs.get(key)
    if value not in (None, ""):
        return value
    for name in env_names:
        if env.get(name):
            return env[name]
    return None


class TwilioGateway(Gateway):
    """SMS through Twilio's Messages API (``POST /2010-04-01/Accounts/{sid}/Messages.json``).

    Options (keyword, else the environment variable; nothing is read from the network):

    ==========================  ==================================  ==============================
    keyword                     environment                         meaning
    ==========================  ==================================  ==============================
    ``account_sid``             ``TWILIO_ACCOUNT_SID``              ``AC`` + 32 hex (required)
    ``auth_token``              ``TWILIO_AUTH_TOKEN``               secret; or an API key:
    ``api_key``/``api_secret``  ``TWILIO_API_KEY``/``_API_SECRET``  ``SK`` + 32 hex and its secret
    ``messaging_service_sid``   ``TWILIO_MESSAGING_SERVICE_SID``    ``MG`` + 32 hex
    ``sender``                  ``TWILIO_FROM``                     brandname (<= 11 chars, A-Z
                                                                    a-z 0-9 space) or E.164;
                                                                    one of the two is required
    ``validity_period``         ``TWILIO_VALIDITY_PERIOD``          seconds, 1–36000 (Twilio)
    ``status_callback_base``    ``OUTREACH_PUBLIC_BASE_URL``        public base URL of the webhook
                                                                    app; callbacks go to
                                                                    ``<base>/webhooks/twilio/
                                                                    status/<delivery_id>``
    ``api_url``                 ``OUTREACH_TWILIO_API_URL``         default https://api.twilio.com
    ``price_vnd_per_usd``       ``TWILIO_PRICE_VND_PER_USD``        default 25000
    ``timeout``                 ``OUTREACH_TWILIO_TIMEOUT``         seconds per HTTP request, 15
    ``listing_margin``          ``OUTREACH_TWILIO_LISTING_MARGIN``  seconds Twilio may take to
                                                                    list a message it accepted
                                                                    (reconciliation), 60
    ``pool_size``               --                                  HTTP connections kept, 64
    ``loopback_only``           --                                  tests: refuse any host but
                                                                    127.0.0.1 (never connects)
    ``edge``/``region``         ``TWILIO_EDGE``/``TWILIO_REGION``   Twilio edge/region; ignored
                                                                    when ``api_url`` is set
    --                          ``HTTPS_PROXY``/``NO_PROXY``,       read once, when the gateway
                                ``REQUESTS_CA_BUNDLE``              is built
    ==========================  ==================================  ==============================

    The secret (auth token or API secret) never appears in ``repr``, logs, exception texts or
    :meth:`check` output; phone numbers in Twilio's error messages are masked.

    Raises :class:`ConfigurationError` from the constructor for a missing or malformed option.
    """

    name: ClassVar[str] = "twilio"
    channel: ClassVar[str] = "sms"
    rate_per_second: ClassVar[float] = 10.0  # alphanumeric sender default: 10 segments/s
    rate_unit: ClassVar[str] = "segments"
    concurrency: ClassVar[int] = 16
    can_confirm: ClassVar[bool] = True

    def __init__(self, *, environ: Mapping[str, str] | None = None,
                 sleep: Callable[[float], None] = time.sleep, **options: Any) -> None:
        env = os.environ if environ is None else environ
        self._sleep = sleep
        self.account_sid = _opt(options, "account_sid", env, "TWILIO_ACCOUNT_SID")
        api_key = _opt(options, "api_key", env, "TWILIO_API_KEY")
        api_secret = _opt(options, "api_secret", env, "TWILIO_API_SECRET")
        auth_token = _opt(options, "auth_token", env, "TWILIO_AUTH_TOKEN")
        if not self.account_sid:
            raise ConfigurationError(_("Twilio needs an account SID (TWILIO_ACCOUNT_SID)"),
                                     reason="missing-account-sid")
        if not _ACCOUNT_SID.match(str(self.account_sid)):
            raise ConfigurationError(_("TWILIO_ACCOUNT_SID must be 'AC' followed by 32 hex digits"),
                                     reason="bad-account-sid")
        if api_key or api_secret:
            if not (api_key and api_secret):
                raise ConfigurationError(_("TWILIO_API_KEY and TWILIO_API_SECRET go together"),
                                         reason="missing-credentials")
            if not _API_KEY_SID.match(str(api_key)):
                raise ConfigurationError(_("TWILIO_API_KEY must be 'SK' followed by 32 hex digits"),
                                         reason="bad-api-key")
            self._username, self._secret, self.auth_kind = str(api_key), str(api_secret), "api-key"
        elif auth_token:
            self._username, self._secret = str(self.account_sid), str(auth_token)
            self.auth_kind = "auth-token"
        else:
            raise ConfigurationError(_("Twilio needs TWILIO_AUTH_TOKEN, or TWILIO_API_KEY and "
                                       "TWILIO_API_SECRET"), reason="missing-credentials")

        self.messaging_service_sid = _opt(options, "messaging_service_sid", env,
                                          "TWILIO_MESSAGING_SERVICE_SID")
        if self.messaging_service_sid and not _SERVICE_SID.match(str(self.messaging_service_sid)):
            raise ConfigurationError(_("TWILIO_MESSAGING_SERVICE_SID must be 'MG' followed by 32 "
                                       "hex digits"), reason="bad-messaging-service")
        self.sender = _opt(options, "sender", env, "TWILIO_FROM")
        if self.sender is not None:
            self.sender = str(self.sender).strip()
            if not (_E164.match(self.sender) or _ALPHA_SENDER.match(self.sender)):
                raise ConfigurationError(
                    _("sender (TWILIO_FROM) must be an E.164 number or an alphanumeric sender ID "
                      "of at most 11 characters A-Z, a-z, 0-9 or space with at least one letter "
                      "(Vietnamese brandnames carry no diacritics)"), reason="bad-sender")
        if not self.sender and not self.messaging_service_sid:
            raise ConfigurationError(_("Twilio needs a sender (TWILIO_FROM) or a messaging service "
                                       "(TWILIO_MESSAGING_SERVICE_SID)"), reason="missing-sender")

        self.validity_period = self._int_option(options, env, "validity_period",
                                                "TWILIO_VALIDITY_PERIOD", VALIDITY_MIN,
                                                VALIDITY_MAX)
        base_url = _opt(options, "status_callback_base", env, "OUTREACH_PUBLIC_BASE_URL")
        self.status_callback_base = (
            http.check_url(base_url, "status_callback_base (OUTREACH_PUBLIC_BASE_URL)")
            if base_url else None)
        api_url = _opt(options, "api_url", env, "OUTREACH_TWILIO_API_URL") or DEFAULT_API_URL
        # the auth token travels in every request: plain http only for a local fake
        self.api_url = http.check_url(api_url, "api_url (OUTREACH_TWILIO_API_URL)",
                                      carries_secret=True)
        self.price_vnd_per_usd = self._float_option(options, env, "price_vnd_per_usd",
                                                    "TWILIO_PRICE_VND_PER_USD", DEFAULT_VND_PER_USD)
        self.timeout = self._float_option(options, env, "timeout", "OUTREACH_TWILIO_TIMEOUT",
                                          DEFAULT_TIMEOUT)
        self.listing_margin = self._float_option(options, env, "listing_margin",
                                                 "OUTREACH_TWILIO_LISTING_MARGIN",
                                                 DEFAULT_LISTING_MARGIN)
        pool_size = int(options.get("pool_size") or DEFAULT_POOL_SIZE)
        if pool_size < 1:
            raise ConfigurationError(_("pool_size must be >= 1"), reason="bad-option")
        explicit_url = self.api_url != DEFAULT_API_URL
        # An explicit api_url names the host; the SDK's edge/region rewriting would mangle it.
        self.edge = None if explicit_url else _opt(options, "edge", env, "TWILIO_EDGE")
        self.region = None if explicit_url else _opt(options, "region", env, "TWILIO_REGION")

        self._http = _HttpClient(timeout=self.timeout, pool_size=pool_size, api_url=self.api_url,
                                 loopback_only=bool(options.get("loopback_only")))
        self.client = Client(self._username, self._secret, self.account_sid,
                             region=self.region, edge=self.edge, http_client=self._http)
        # ClientBase falls back to os.environ for these; ours were resolved above.
        self.client.edge, self.client.region = self.edge, self.region
        # Domain.base_url is a plain attribute (twilio/base/domain.py): the documented way to aim
        # the Api domain at a regional endpoint or a test server.
        self.client.api.base_url = self.api_url

    # -- options -----------------------------------------------------------------------------

    @staticmethod
    def _int_option(options: Mapping[str, Any], env: Mapping[str, str], key: str, env_name: str,
                    low: int, high: int) -> int | None:
        value = _opt(options, key, env, env_name)
        if value is None:
            return None
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ConfigurationError(_("{key} ({env}) must be an integer").format(
                key=key, env=env_name), reason="bad-option"
                                     ) from None
        if not low <= number <= high:
            raise ConfigurationError(_("{key} ({env}) must be between {low} and {high}").format(
                key=key, env=env_name, low=low, high=high),
                                     reason="bad-option")
        return number

    @staticmethod
    def _float_option(options: Mapping[str, Any], env: Mapping[str, str], key: str, env_name: str,
                      default: float) -> float:
        value = _opt(options, key, env, env_name)
        if value is None:
            return default
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigurationError(_("{key} ({env}) must be a number").format(
                key=key, env=env_name), reason="bad-option"
                                     ) from None
        if number <= 0:
            raise ConfigurationError(_("{key} ({env}) must be > 0").format(
                key=key, env=env_name), reason="bad-option")
        return number

    def __repr__(self) -> str:
        return (f"<TwilioGateway account={_mask_sid(self.account_sid)} auth={self.auth_kind} "
                f"sender={self.sender!r} service={self.messaging_service_sid!r} "
                f"api_url={self.api_url!r}>")

    def callback_url(self, delivery_id: int, receipt_token: str | None = None) -> str | None:
        """``<status_callback_base>/webhooks/twilio/status/<delivery_id>/<receipt_token>``
        (without ``/<receipt_token>`` when the delivery has none), or None if no base is set.
        The receiver and parser are in :mod:`outreach.gateways.twilio_receipts`."""
        if not self.status_callback_base:
            return None
        url = f"{self.status_callback_base}/webhooks/twilio/status/{int(delivery_id)}"
        return f"{url}/{receipt_token}" if receipt_token else url

    # -- sending -----------------------------------------------------------------------------

    def send(self, message: OutboundMessage) -> SendResult:
        """Create one Message. Returns a SendResult (``status`` "sent", ``provider_status`` as
        Twilio said, ``segments`` from ``num_segments`` when > 0, ``price_vnd`` when Twilio
        returned a USD price).

        Raises (see ``twilio_errors.json``): InvalidAddressError / OptedOutError /
        PermanentError for refused messages, ThrottledError (``retry_after`` from Retry-After)
        and UnavailableError (5xx, connect failed: not sent), AuthenticationError / StopRunError,
        OutcomeUnknownError when the request may have reached Twilio (read timeout, connection
        dropped after sending).
        """
        if not _E164.match(message.to or ""):
            raise base.InvalidAddressError("recipient is not an E.164 number",
                                           reason="invalid-number")
        params: dict[str, Any] = {
            "to": message.to,
            # NFC so the text billed is the text counted (an NFD text costs more segments).
            "body": unicodedata.normalize("NFC", message.body),
        }
        sender = message.sender or self.sender
        if self.messaging_service_sid:
            params["messaging_service_sid"] = self.messaging_service_sid
        if sender:
            params["from_"] = sender
        callback = self.callback_url(message.delivery_id, message.receipt_token)
        if callback:
            params["status_callback"] = callback
        if self.validity_period is not None:
            params["validity_period"] = self.validity_period
        try:
            msg = self.client.messages.create(**params)
        except _ERROR_ANSWERS as exc:
            raise self._rest_error(exc) from exc
        except requests.RequestException as exc:
            raise http.map_error(exc, provider="Twilio", sending=True,
                                 read_timeout=self.timeout) from exc
        except (TwilioException, ValueError) as exc:
            # A 2xx the SDK could not read (not JSON: a proxy's page?): Twilio may have
            # created the message.
            raise base.OutcomeUnknownError("unreadable answer from Twilio",
                                           reason="bad-answer") from exc
        status = getattr(msg, "status", None)
        return SendResult(provider_message_id=msg.sid, status="sent", provider_status=status,
                          segments=_positive_int(getattr(msg, "num_segments", None)),
                          price_vnd=self._price_vnd(getattr(msg, "price", None),
                                                    getattr(msg, "price_unit", None)),
                          raw={"sid": msg.sid, "status": status})

    def refusals(self, message: OutboundMessage) -> list[base.Refusal]:
        """A body over ``body_max_characters`` (1,600: Twilio refuses it with 21617) is refused;
        more segments than ``recommended_max_segments`` (10) is reported as advice
        (``twilio_limits.json``). Characters are counted on the NFC text, as sent."""
        lim = limits()
        body = unicodedata.normalize("NFC", message.body or "")
        out: list[base.Refusal] = []
        if len(body) > lim["body_max_characters"]:
            out.append(base.Refusal("body", len(body), lim["body_max_characters"], "characters",
                                    lim["body_max_source"], code=lim["body_max_code"]))
        segments = textmod.analyse(body).segments
        if segments > lim["recommended_max_segments"]:
            out.append(base.Refusal("body", segments, lim["recommended_max_segments"], "segments",
                                    lim["recommended_max_segments_source"], advisory=True))
        return out

    def _price_vnd(self, price: Any, unit: str | None) -> float | None:
        """Twilio prices are negative strings in ``price_unit`` (``"-0.0450"``, ``"USD"``)."""
        if price in (None, "") or (unit or "USD").upper() != "USD":
            return None
        try:
            return round(abs(float(price)) * self.price_vnd_per_usd, 2)
        except (TypeError, ValueError):
            return None

    def _rest_error(self, exc: TwilioRestException | TwilioServiceException) -> base.GatewayError:
        """An error answer (4xx/5xx with Twilio's JSON body) -> our class from the table."""
        code = exc.code if exc.code not in (None, exc.status) else None
        cls, reason, _description = classify(code, exc.status)
        # Twilio's messages quote the number ("The 'To' number +84... is not valid"): mask it,
        # and mask it in the chained SDK exception too, which tracebacks print.
        field = "msg" if isinstance(exc, TwilioRestException) else "detail"
        raw = getattr(exc, field, None) or getattr(exc, "title", None)
        detail = scrub(str(raw or ""), self._secret)
        setattr(exc, field, detail)
        exc.args = tuple(detail if a == raw else a for a in exc.args)
        provider_code = str(code) if code is not None else str(exc.status)
        content = bool((error_table()["codes"].get(str(code)) or {}).get("content"))
        if issubclass(cls, base.TransientError):
            response = self._http.last_response
            headers = getattr(response, "headers", None) or {}
            retry_after = http.parse_retry_after(headers.get("Retry-After"))
            return cls(detail, reason=reason, provider_code=provider_code, retry_after=retry_after)
        return cls(detail, reason=reason, provider_code=provider_code, content=content)

    # -- reconciliation, polling, checks -----------------------------------------------------

    @property
    def lookup_horizon_seconds(self) -> float:
        """The request timeout plus ``listing_margin``: a message Twilio was still creating
        when the sender died (Twilio sometimes takes seconds) is listed only later, so a
        listing without it proves nothing before then."""
        return self.timeout + self.listing_margin

    def lookup(self, message: OutboundMessage, since: dt.datetime,
               until: dt.datetime) -> StatusUpdate | None | bool:
        """Find a message whose send outcome is unknown by listing messages to its number.

        Lists ``GET Messages.json?To=<number>`` (at most ``LOOKUP_LIMIT`` records) and keeps the
        ones created within ``[since - 5 min, until + 5 min]`` whose body equals ours (NFC).
        DateSent is not used as a filter: a message still queued at Twilio has no DateSent yet.
        The Message resource does not return the StatusCallback URL, so the body is the key.

        Returns a StatusUpdate (one match), False (Twilio's listing was read to the end and has
        no such message: it was never accepted), None (errors, more than ``LOOKUP_LIMIT``
        records, or several matching messages: the operator decides).
        """
        lo, hi = _utc(since) - LOOKUP_SLACK, _utc(until) + LOOKUP_SLACK
        body = unicodedata.normalize("NFC", message.body)
        try:
            records = self.client.messages.list(to=message.to, limit=LOOKUP_LIMIT + 1,
                                                page_size=min(LOOKUP_LIMIT + 1, 1000))
        except (TwilioException, requests.RequestException, ValueError) as exc:
            log.warning(_("twilio lookup for delivery {id} failed: {error}").format(
                id=message.delivery_id, error=type(exc).__name__))
            return None
        if len(records) > LOOKUP_LIMIT:
            return None
        matches = []
        for rec in records:
            created = rec.date_created or rec.date_sent
            if created is None or not lo <= _utc(created) <= hi:
                continue
            if (rec.direction or "outbound-api").startswith("inbound"):
                continue
            if unicodedata.normalize("NFC", rec.body or "") == body:
                matches.append(rec)
        if not matches:
            return False
        if len(matches) > 1:
            return None
        rec = matches[0]
        return self._update_from(rec, delivery_id=message.delivery_id)

    def fetch_statuses(self, provider_message_ids: list[str]) -> list[StatusUpdate]:
        """``GET Messages/{sid}.json`` for each id -> StatusUpdates in our vocabulary.

        Ids Twilio does not know (404) and ids that failed on the network are left out (the
        caller counts them). A 429 is waited out once (Retry-After, at most 30 s) before the
        id is left out. Raises AuthenticationError / StopRunError, which concern every id.
        """
        out: list[StatusUpdate] = []
        for sid in provider_message_ids:
            for attempt in (1, 2):
                try:
                    rec = self.client.messages(sid).fetch()
                except _ERROR_ANSWERS as exc:
                    err = self._rest_error(exc)
                    if isinstance(err, base.StopRunError):
                        raise err from exc
                    if isinstance(err, base.ThrottledError) and attempt == 1:
                        self._sleep(min(err.retry_after or 1.0, 30.0))
                        continue
                    log.warning(_("twilio status of {sid} not fetched: {error}").format(sid=sid, error=err.reason))
                    break
                except (TwilioException, requests.RequestException, ValueError) as exc:
                    log.warning(_("twilio status of {sid} not fetched: {error}").format(
                        sid=sid, error=type(exc).__name__))
                    break
                update = self._update_from(rec)
                if update is not None:
                    out.append(update)
                break
        return out

    def _update_from(self, rec: Any, *, delivery_id: int | None = None) -> StatusUpdate | None:
        ours = map_status(rec.status)
        if ours is None:
            return None
        code = str(rec.error_code) if rec.error_code not in (None, 0) else None
        return StatusUpdate(status=ours, provider_message_id=rec.sid, delivery_id=delivery_id,
                            provider_status=rec.status, error_code=code,
                            error_reason=error_reason(code),
                            occurred_at=rec.date_updated or rec.date_sent or rec.date_created,
                            raw={"sid": rec.sid, "status": rec.status, "error_code": code,
                                 "num_segments": rec.num_segments, "price": rec.price,
                                 "price_unit": rec.price_unit})

    def check(self) -> dict[str, Any]:
        """Fetch the account (``GET Accounts/{sid}.json``) to check the credentials; sends nothing.

        Returns ``{"gateway", "ok", "account", "account_name", "account_status", "auth",
        "sender", "messaging_service_sid", "api_url", "status_callback_base",
        "validity_period"}`` (account SID masked, no secret). Raises AuthenticationError (401,
        403, 20003, or an account that is not active) or UnavailableError.
        """
        try:
            account = self.client.api.v2010.accounts(self.account_sid).fetch()
        except _ERROR_ANSWERS as exc:
            raise self._rest_error(exc) from exc
        except requests.RequestException as exc:
            raise http.map_error(exc, provider="Twilio", sending=False) from exc
        except (TwilioException, ValueError) as exc:
            raise base.UnavailableError(_("unreadable answer from Twilio"), reason="bad-answer"
                                        ) from exc
        status = getattr(account, "status", None)
        if status and status != "active":
            raise base.AuthenticationError(_("Twilio account is {status}").format(status=status),
                                           reason="account-inactive",
                                           provider_code="20005")
        return {"gateway": self.name, "ok": True, "account": _mask_sid(self.account_sid),
                "account_name": getattr(account, "friendly_name", None), "account_status": status,
                "auth": self.auth_kind, "sender": self.sender,
                "messaging_service_sid": self.messaging_service_sid, "api_url": self.api_url,
                "status_callback_base": self.status_callback_base,
                "validity_period": self.validity_period}

    def close(self) -> None:
        if self._http.session is not None:
            self._http.session.close()


def _positive_int(value: Any) -> int | None:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def _utc(value: dt.datetime) -> dt.datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc)


def _mask_sid(sid: str | None) -> str | None:
    if not sid:
        return sid
    return f"{sid[:2]}…{sid[-4:]}"
