"""What every HTTP brandname aggregator (eSMS, SpeedSMS, FPT, Viettel's ``wsCpMt``...) shares.

A subclass of :class:`BrandnameGateway` supplies only its request shapes and its code table
(JSON beside the module): :meth:`~BrandnameGateway.send_request`, :meth:`~BrandnameGateway.
read_send_answer`, :meth:`~BrandnameGateway.status_request`, :meth:`~BrandnameGateway.
read_status_answer`, :meth:`~BrandnameGateway.check_request` and :meth:`~BrandnameGateway.
callback_updates`. Everything below is here once:

**Idempotency.** Each request carries a ``RequestId`` derived from the delivery
(:meth:`BrandnameGateway.request_id`: our delivery id, then a digest of the campaign, the
number, the text and an installation salt; stable across retries, restarts and workers,
at most :attr:`BrandnameGateway.request_id_max` characters). The aggregator refuses a second
request with the same id as a duplicate (eSMS: code 124, "within the day").

**Where "maybe sent" is retried: inside** :meth:`BrandnameGateway.send`. When the request
may have reached the provider (read timeout, connection dropped after a byte was written:
:func:`outreach.gateways.http.map_error` says :class:`OutcomeUnknownError`), the same request
with the same ``RequestId`` is sent again, at most ``idempotent_retries`` times (default 2)
after ``retry_pause`` seconds (1 s, doubling): a few seconds, so well inside the provider's
dedupe period. The answer settles it: *accepted* (the first never arrived), or *duplicate*
(the first was accepted: read as accepted, no second message). Why it is safe: the provider
itself refuses a second message with the same id, and the retry happens seconds after the
first try, never after a restart or on another day, when the dedupe period may be over. Only
when every try was "maybe sent", or a retry after one got an answer that neither accepts nor
names the duplicate, does the delivery become ``unknown`` (never resent automatically).
Reconciliation's :meth:`lookup` is *not* used for this: the aggregators' status queries take
the provider's own message id, which a lost answer never gave us, so :meth:`lookup` answers
None. A send interrupted by the death of its process is sent again by reconciliation under
the same ``RequestId`` while :meth:`BrandnameGateway.idempotent_until` has not passed (the same
Vietnamese day); later the operator decides (``outreach deliveries resolve --resend`` is safe on
the same day for the same reason).

A duplicate answer on a *first* try (a retry by the sender after a transient error, an
operator's resend) is read the same way; when the provider says the earlier request was
rejected, the delivery fails; when it says neither, it is ``unknown``.

**Receipts.** The callback URL is ``<OUTREACH_PUBLIC_BASE_URL>/webhooks/<name>/status/
<delivery id>/<token>``, ``token`` = HMAC-SHA256(callback secret, ``"<name>:<delivery id>"``)
in hex, first 32 characters: a leaked URL cannot be turned into another delivery's, and no
query string of ours collides with the provider's. :func:`verify_token` checks it in
constant time.
"""

from __future__ import annotations

import abc
import datetime as dt
import hashlib
import hmac
import json
import logging
import os
import re
import threading
import time
import unicodedata
from base64 import b32encode
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any, ClassVar

import requests

from outreach.i18n import _
from outreach.clock import VN_TZ
from outreach.gateways import base, http
from outreach.gateways.base import (ConfigurationError, Gateway, OutboundMessage, SendResult,
                                    StatusUpdate)

log = logging.getLogger(__name__)

_E164_VN = re.compile(r"^\+84[1-9][0-9]{8,9}$")
#: A brandname: at most 11 characters, letters without diacritics, digits, space . - _ &
#: (the carriers' rule, as in ``outreach.input.campaigns.SENDER_RE``).
BRANDNAME_RE = re.compile(r"^[A-Za-z0-9 .\-_&]{1,11}$")
_SECRET_IN_QUERY = re.compile(r"((?:ApiKey|SecretKey)=)[^&\s]+", re.IGNORECASE)


class TemplateMismatchError(base.StopRunError):
    """The provider says the text does not match a customer-care template registered with the
    carriers (eSMS 146). Every message of the run has the same text, so the run pauses: fix
    the campaign's ``brandname_template`` / the registration, then resume."""

    reason = "template-mismatch"


@dataclass(frozen=True)
class Answer:
    """A provider's answer to a send, read by the subclass.

    ``code`` is the provider's result code as a string (``"100"``); ``message_id`` its id for
    the message (None when it gave none, as eSMS on a duplicate); ``send_status`` the state the
    provider reports for the request (eSMS ``SendStatus`` on a duplicate), ``detail`` its text.
    """

    code: str
    message_id: str | None = None
    send_status: str | None = None
    detail: str = ""
    raw: Any = None


@dataclass(frozen=True)
class HttpRequest:
    """One HTTP request: ``method``, ``path`` (after the API base URL), JSON body or query."""

    method: str
    path: str
    json: dict[str, Any] | None = None
    params: dict[str, Any] | None = None


class _RedactQuery(logging.Filter):
    """Removes ``ApiKey=``/``SecretKey=`` values from urllib3's request lines (GET status
    queries carry them in the query string)."""

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        clean = _SECRET_IN_QUERY.sub(r"\1****", text)
        if clean != text:
            record.msg, record.args = clean, None
        return True


_URLLIB3_LOG = logging.getLogger("urllib3.connectionpool")
if not any(isinstance(f, _RedactQuery) for f in _URLLIB3_LOG.filters):
    _URLLIB3_LOG.addFilter(_RedactQuery())


@lru_cache(maxsize=None)
def load_table(package: str, filename: str) -> dict[str, Any]:
    """A provider's code table (JSON in ``package``): ``{"codes": {code: entry}, "http": {...},
    ...}``; each entry's ``class`` is ``accepted``, ``duplicate`` or the name of a
    :class:`~outreach.gateways.base.GatewayError` subclass (here or in ``base``). Raises
    ConfigurationError for an unknown class name."""
    table = json.loads(resources.files(package).joinpath(filename).read_text("utf-8"))
    for section in ("codes", "http"):
        for key, entry in table.get(section, {}).items():
            if entry["class"] in ("accepted", "duplicate"):
                continue
            if _error_class(entry["class"]) is None:
                raise ConfigurationError(f"{filename}: {section}/{key}: unknown class "
                                         f"{entry['class']!r}")
    return table


def _error_class(name: str) -> type[base.GatewayError] | None:
    cls = globals().get(name) or getattr(base, name, None)
    if isinstance(cls, type) and issubclass(cls, base.GatewayError):
        return cls
    return None


def callback_token(secret: str, gateway: str, delivery_id: int) -> str:
    """HMAC-SHA256(``secret``, ``"<gateway>:<delivery_id>"``) as hex, first 32 characters."""
    mac = hmac.new(secret.encode("utf-8"), f"{gateway}:{int(delivery_id)}".encode(),
                   hashlib.sha256)
    return mac.hexdigest()[:32]


def verify_token(secret: str | None, gateway: str, delivery_id: int, token: str | None) -> bool:
    """Constant-time check of a callback URL's token; False without a secret or token."""
    if not secret or not token:
        return False
    return hmac.compare_digest(callback_token(secret, gateway, delivery_id), token)


def _opt(options: Mapping[str, Any], key: str, env: Mapping[str, str], name: str) -> Any:
    value = options.get(key)
    if value not in (None, ""):
        return value
    return env.get(name) or None


class BrandnameGateway(Gateway):
    """Brandname SMS through an HTTP aggregator (see the module docstring for the rules).

    Options (keyword, else ``<env_prefix><NAME>`` in the environment; no network touched):

    =======================  ===========================  ==================================
    keyword                  environment                  meaning
    =======================  ===========================  ==================================
    ``api_key``              ``…API_KEY``                 account key (required, secret)
    ``secret_key``           ``…SECRET_KEY``              account secret (required, secret)
    ``api_url``              ``…API_URL``                 base URL (default: the provider's)
    ``sender``               ``…BRANDNAME``               brandname, when the campaign's
                                                          channel has no ``sender``
    ``callback_secret``      ``…CALLBACK_SECRET``         signs callback URLs (≥ 16 chars)
    ``public_base_url``      ``OUTREACH_PUBLIC_BASE_URL`` base of the webhook server
    ``request_salt``         ``…REQUEST_SALT``            makes RequestIds unique per
                                                          installation sharing an account
    ``timeout``              ``…TIMEOUT``                 seconds per HTTP request (15)
    ``idempotent_retries``   ``…IDEMPOTENT_RETRIES``      re-sends of a maybe-sent request
                                                          under the same RequestId (2)
    ``retry_pause``          --                           seconds before the first (1.0)
    ``pool_size``            --                           HTTP connections kept (64)
    ``loopback_only``        --                           tests: 127.0.0.1 only
    =======================  ===========================  ==================================

    Raises ConfigurationError from the constructor for a missing or malformed option.
    """

    channel: ClassVar[str] = "sms"
    rate_unit: ClassVar[str] = "messages"
    #: the provider's display name in messages ("eSMS")
    provider: ClassVar[str] = "aggregator"
    env_prefix: ClassVar[str] = "OUTREACH_BRANDNAME_"
    default_api_url: ClassVar[str] = ""
    #: (package, file name) of the code table
    table_file: ClassVar[tuple[str, str]] = ("", "")
    request_id_max: ClassVar[int] = 50
    #: True for the provider's test mode: nothing reaches a phone, nothing is billed
    sandbox: ClassVar[bool] = False
    #: a repeated ``RequestId`` is refused as a duplicate (eSMS: code 124, "within the day",
    #: the Vietnamese calendar day of the first request)
    idempotent_resend: ClassVar[bool] = True
    #: how long before the end of that day a resend is no longer trusted to be refused (the
    #: provider's clock and ours may differ by a few minutes)
    dedupe_margin: ClassVar[dt.timedelta] = dt.timedelta(minutes=15)

    def __init__(self, *, environ: Mapping[str, str] | None = None,
                 sleep: Callable[[float], None] = time.sleep, **options: Any) -> None:
        env = os.environ if environ is None else environ
        p = self.env_prefix
        self._sleep = sleep
        self._api_key = _opt(options, "api_key", env, p + "API_KEY")
        self._secret_key = _opt(options, "secret_key", env, p + "SECRET_KEY")
        if not self._api_key or not self._secret_key:
            raise ConfigurationError(_("{provider} needs {key} and {secret}").format(
                provider=self.provider, key=p + "API_KEY", secret=p + "SECRET_KEY"),
                                     reason="missing-credentials")
        self._api_key, self._secret_key = str(self._api_key), str(self._secret_key)
        self.api_url = http.check_url(_opt(options, "api_url", env, p + "API_URL")
                                      or self.default_api_url, p + "API_URL",
                                      carries_secret=True)
        self.sender = _opt(options, "sender", env, p + "BRANDNAME")
        if self.sender is not None and not BRANDNAME_RE.match(str(self.sender)):
            raise ConfigurationError(_("{var} must be at most 11 characters: letters without "
                                       "diacritics, digits, space . - _ &").format(
                                         var=p + "BRANDNAME"),
                                     reason="bad-brandname")
        self._callback_secret = _opt(options, "callback_secret", env, p + "CALLBACK_SECRET")
        if self._callback_secret is not None and len(str(self._callback_secret)) < 16:
            raise ConfigurationError(_("{var} must be at least 16 characters").format(
                var=p + "CALLBACK_SECRET"),
                                     reason="bad-callback-secret")
        base_url = _opt(options, "public_base_url", env, "OUTREACH_PUBLIC_BASE_URL")
        self.public_base_url = (http.check_url(base_url, "OUTREACH_PUBLIC_BASE_URL")
                                if base_url else None)
        self.request_salt = str(_opt(options, "request_salt", env, p + "REQUEST_SALT") or "")
        self.timeout = self._number(options, env, "timeout", p + "TIMEOUT", 15.0)
        self.idempotent_retries = int(self._number(options, env, "idempotent_retries",
                                                   p + "IDEMPOTENT_RETRIES", 2, low=0))
        self.retry_pause = float(options.get("retry_pause", 1.0))
        self._session = http.new_session(pool_size=int(options.get("pool_size") or 64),
                                         environment_for=self.api_url,
                                         loopback_only=bool(options.get("loopback_only")))
        self._table = load_table(*self.table_file)
        self._lock = threading.Lock()

    @staticmethod
    def _number(options: Mapping[str, Any], env: Mapping[str, str], key: str, name: str,
                default: float, *, low: float = 1e-9) -> float:
        value = _opt(options, key, env, name)
        if value is None:
            return default
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigurationError(_("{key} ({env}) must be a number").format(
                key=key, env=name), reason="bad-option"
                                     ) from None
        if number < low:
            raise ConfigurationError(_("{key} ({env}) must be ≥ {low}").format(
                key=key, env=name, low=f"{low:g}"), reason="bad-option")
        return number

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} api_url={self.api_url!r} sender={self.sender!r} "
                f"sandbox={self.sandbox} callbacks={bool(self.callback_base())}>")

    # -- what a subclass supplies --------------------------------------------------------------

    @abc.abstractmethod
    def send_request(self, message: OutboundMessage, *, request_id: str, brandname: str,
                     callback_url: str | None) -> HttpRequest:
        """The HTTP request sending ``message``."""

    @abc.abstractmethod
    def read_send_answer(self, data: Any) -> Answer:
        """The provider's JSON answer to a send, read."""

    @abc.abstractmethod
    def status_request(self, message_id: str) -> HttpRequest:
        """The status query for one provider message id."""

    @abc.abstractmethod
    def read_status_answer(self, message_id: str, data: Any
                           ) -> StatusUpdate | None:
        """A status answer -> StatusUpdate, or None when the provider does not know the id."""

    @abc.abstractmethod
    def check_request(self) -> HttpRequest:
        """A request that checks the credentials and sends nothing (a balance query)."""

    @abc.abstractmethod
    def read_check_answer(self, data: Any) -> dict[str, Any]:
        """Non-secret facts from the check's answer; raises the mapped error otherwise."""

    # -- shared --------------------------------------------------------------------------------

    def request_id(self, message: OutboundMessage) -> str:
        """``<delivery id>-<digest>``: the digest (base32 of SHA-256 over the salt, campaign,
        delivery id, number and NFC text, 16 characters) makes two databases' delivery 1 differ
        unless they send the same text to the same number; at most :attr:`request_id_max`
        characters."""
        body = unicodedata.normalize("NFC", message.body)
        raw = "\x1f".join((self.request_salt, message.campaign_id, str(message.delivery_id),
                           message.to, body)).encode("utf-8")
        digest = b32encode(hashlib.sha256(raw).digest()).decode("ascii").lower()[:16]
        rid = f"{int(message.delivery_id)}-{digest}"
        assert len(rid) <= self.request_id_max
        return rid

    def callback_base(self) -> str | None:
        return self.public_base_url if (self.public_base_url and self._callback_secret) else None

    def callback_url(self, delivery_id: int) -> str | None:
        """``<public base>/webhooks/<name>/status/<delivery id>/<token>``, or None when the
        public base URL or the callback secret is not set (then poll: ``deliveries sync``)."""
        base_url = self.callback_base()
        if not base_url or self.sandbox:  # sandbox requests are not stored: no receipt comes
            return None
        token = callback_token(str(self._callback_secret), self.name, delivery_id)
        return f"{base_url}/webhooks/{self.name}/status/{int(delivery_id)}/{token}"

    def verify_callback(self, delivery_id: int, token: str | None) -> bool:
        """True when ``token`` is the one :meth:`callback_url` put in this delivery's URL."""
        return verify_token(self._callback_secret, self.name, delivery_id, token)

    def classify(self, code: str | None, http_status: int | None = None
                 ) -> tuple[str, dict[str, Any]]:
        """(class name, table entry) for a result code, else the HTTP status (``429``,
        ``5xx``, ``4xx``); an unknown code is a PermanentError ``rejected``."""
        entry = self._table["codes"].get(str(code)) if code is not None else None
        if entry is None and http_status is not None and http_status >= 300:
            hs = self._table["http"]
            entry = hs.get(str(http_status)) or hs.get("5xx" if http_status >= 500 else "4xx")
        if entry is None:
            entry = {"class": "PermanentError", "reason": "rejected",
                     "description": f"code {code} is not in the table"}
        return entry["class"], entry

    def _error(self, code: str | None, http_status: int | None, detail: str,
               retry_after: float | None = None) -> base.GatewayError:
        name, entry = self.classify(code, http_status)
        cls = _error_class(name) or base.PermanentError
        text = f"{self.provider} {code or http_status}: {entry.get('description', '')}"
        if detail:
            text += f" ({detail})"
        provider_code = str(code if code is not None else http_status)
        if issubclass(cls, base.TransientError):
            return cls(text, reason=entry["reason"], provider_code=provider_code,
                       retry_after=retry_after)
        return cls(text, reason=entry["reason"], provider_code=provider_code)

    def _call(self, req: HttpRequest, *, sending: bool) -> requests.Response:
        try:
            return self._session.request(req.method, self.api_url + req.path, json=req.json,
                                         params=req.params, timeout=self.timeout,
                                         allow_redirects=False)
        except requests.RequestException as exc:
            raise http.map_error(exc, provider=self.provider, sending=sending,
                                 read_timeout=self.timeout) from exc

    def _json(self, resp: requests.Response) -> Any:
        try:
            return resp.json()
        except ValueError:
            return None

    def send(self, message: OutboundMessage) -> SendResult:
        """Send one message under its ``RequestId``; retries a maybe-sent request under the
        same id (module docstring). Returns a SendResult (``provider_message_id``: the
        provider's id, or ``rid:<RequestId>`` when a duplicate answer gave none; ``price_vnd``
        0 in sandbox mode, else None: the price comes with the receipt).

        Raises InvalidAddressError (not a Vietnamese mobile number in E.164, or the provider's
        code), OptedOutError, PermanentError, ThrottledError / UnavailableError (not sent),
        StopRunError / AuthenticationError / :class:`TemplateMismatchError` (the run pauses),
        OutcomeUnknownError (maybe accepted, and no retry could tell). ConfigurationError when
        neither the channel nor the environment names a brandname.
        """
        if not _E164_VN.match(message.to or ""):
            raise base.InvalidAddressError("not a Vietnamese mobile number in E.164",
                                           reason="invalid-number")
        brandname = message.sender or self.sender
        if not brandname:
            raise base.StopRunError(f"no brandname: set the channel's sender or "
                                    f"{self.env_prefix}BRANDNAME", reason="no-brandname")
        rid = self.request_id(message)
        req = self.send_request(message, request_id=rid, brandname=str(brandname),
                                callback_url=self.callback_url(message.delivery_id))
        maybe_sent: base.GatewayError | None = None
        pause = self.retry_pause
        for attempt in range(self.idempotent_retries + 1):
            last = attempt == self.idempotent_retries
            try:
                resp = self._call(req, sending=True)
            except base.OutcomeUnknownError as exc:
                maybe_sent = exc
                if last:
                    raise
                log.info("delivery %s: %s (%s); sending again under RequestId %s",
                         message.delivery_id, exc.reason, self.provider, rid)
                self._sleep(pause)
                pause *= 2
                continue
            except base.GatewayError as exc:
                if maybe_sent is None:
                    raise
                raise self._still_unknown(maybe_sent, exc.reason) from exc
            try:
                return self._accepted(resp, rid)
            except base.TransientError as exc:
                if maybe_sent is None:
                    raise
                if last:
                    raise self._still_unknown(maybe_sent, exc.reason) from exc
                self._sleep(max(pause, exc.retry_after or 0.0))
                pause *= 2
            except (base.OutcomeUnknownError, base.StopRunError) as exc:
                if maybe_sent is None:
                    raise
                raise self._still_unknown(maybe_sent, exc.reason) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _still_unknown(self, first: base.GatewayError, then: str) -> base.OutcomeUnknownError:
        return base.OutcomeUnknownError(
            f"{first.detail or first}; sent again under the same RequestId, the answer "
            f"({then}) does not say whether the first was accepted", reason=first.reason,
            provider_code=first.provider_code)

    def _accepted(self, resp: requests.Response, rid: str) -> SendResult:
        data = self._json(resp)
        if resp.status_code >= 300 or not isinstance(data, dict):
            if resp.status_code < 300:
                # a 2xx we cannot read (a proxy's page?): the provider may have accepted
                raise base.OutcomeUnknownError(f"unreadable answer from {self.provider}",
                                               reason="bad-answer")
            retry_after = http.parse_retry_after(resp.headers.get("Retry-After"))
            raise self._error(None, resp.status_code, "", retry_after)
        answer = self.read_send_answer(data)
        name, entry = self.classify(answer.code)
        price = 0.0 if self.sandbox else None
        if name == "accepted" and answer.message_id:
            return SendResult(provider_message_id=answer.message_id, status="sent",
                              provider_status=answer.code, price_vnd=price,
                              raw={"code": answer.code, "id": answer.message_id})
        if name == "accepted":
            raise base.OutcomeUnknownError(f"{self.provider} accepted without a message id",
                                           reason="bad-answer", provider_code=answer.code)
        if name == "duplicate":
            accepted = set(self._table.get("duplicate_accepted", ()))
            rejected = set(self._table.get("duplicate_rejected", ()))
            if answer.send_status in accepted:
                return SendResult(provider_message_id=answer.message_id or f"rid:{rid}",
                                  status="sent", provider_status=answer.code, price_vnd=price,
                                  raw={"code": answer.code, "duplicate": True,
                                       "send_status": answer.send_status})
            if answer.send_status in rejected:
                raise base.PermanentError(
                    f"{self.provider} {answer.code}: an earlier request with this RequestId "
                    "was rejected", reason="duplicate-of-rejected", provider_code=answer.code)
            raise base.OutcomeUnknownError(
                f"{self.provider} {answer.code}: a request with this RequestId exists, but the "
                "answer does not say whether it was accepted", reason="duplicate-unconfirmed",
                provider_code=answer.code)
        raise self._error(answer.code, resp.status_code, answer.detail)

    # -- reconciliation, polling, checks --------------------------------------------------------

    def idempotent_until(self, started: dt.datetime) -> dt.datetime | None:
        """The end of the Vietnamese day (Asia/Ho_Chi_Minh) of ``started``, less
        :attr:`dedupe_margin`, in UTC: until then the provider refuses a second request with the
        same ``RequestId`` (eSMS send API, code 124: "a repeated RequestId is refused as a
        duplicate within the day"), so an interrupted send may be sent again."""
        local = started.astimezone(VN_TZ)
        midnight = dt.datetime.combine(local.date() + dt.timedelta(days=1), dt.time(0),
                                       tzinfo=VN_TZ)
        return (midnight - self.dedupe_margin).astimezone(dt.timezone.utc)

    def lookup(self, message: OutboundMessage, since: dt.datetime,
               until: dt.datetime) -> StatusUpdate | None | bool:
        """None: the status query needs the provider's message id, which a lost answer never
        gave (module docstring: the retry happens inside :meth:`send`)."""
        return None

    def fetch_statuses(self, provider_message_ids: list[str]) -> list[StatusUpdate]:
        """One status query per provider id (``rid:`` ids, from duplicate answers, cannot be
        asked and are left out, like ids the provider does not know or that failed on the
        network). Raises AuthenticationError / StopRunError, which concern every id."""
        out: list[StatusUpdate] = []
        for mid in provider_message_ids:
            if not mid or mid.startswith("rid:"):
                continue
            try:
                resp = self._call(self.status_request(mid), sending=False)
            except base.GatewayError as exc:
                log.warning(_("{provider} status of a message not fetched: {error}").format(
                    provider=self.provider, error=exc.reason))
                continue
            data = self._json(resp)
            if resp.status_code >= 300 or not isinstance(data, dict):
                err = self._error(None, resp.status_code, "")
                if isinstance(err, base.StopRunError):
                    raise err
                continue
            update = self.read_status_answer(mid, data)
            if update is not None:
                out.append(update)
        return out

    def check(self) -> dict[str, Any]:
        """The credentials checked with a request that sends nothing; facts without secrets."""
        resp = self._call(self.check_request(), sending=False)
        data = self._json(resp)
        if resp.status_code >= 300 or not isinstance(data, dict):
            raise self._error(None, resp.status_code, "")
        facts = {"gateway": self.name, "ok": True, "api_url": self.api_url,
                 "sender": self.sender, "sandbox": self.sandbox,
                 "callbacks": bool(self.callback_base())}
        facts.update(self.read_check_answer(data))
        return facts

    def close(self) -> None:
        self._session.close()


__all__ = ["Answer", "BrandnameGateway", "HttpRequest", "TemplateMismatchError",
           "callback_token", "load_table", "verify_token"]
