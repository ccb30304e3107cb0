"""Zalo gateway: ZNS template messages by phone and Official Account messages to followers."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import threading
import time
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any, ClassVar, NoReturn
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import requests

from outreach.i18n import _
from outreach.clock import SYSTEM_CLOCK, Clock
from outreach.gateways import http
from outreach.gateways.base import (AuthenticationError, ConfigurationError, Gateway,
                                    InvalidAddressError, OutboundMessage, OutcomeUnknownError,
                                    PermanentError, Refusal, SendResult, StatusUpdate,
                                    StopRunError,
                                    ThrottledError, UnavailableError)
from outreach.gateways.zalo_tokens import (RefreshNotSent, RefreshOutcomeUnknown, RefreshRejected,
                                           TokenGrant, TokenStore, DEFAULT_EXPIRES_IN)
from outreach.input.phones import mask

log = logging.getLogger(__name__)

#: Environment variables read when an option is not passed to the constructor.
ENV_OA_API_URL = "OUTREACH_ZALO_OA_API_URL"
ENV_ZNS_API_URL = "OUTREACH_ZALO_ZNS_API_URL"
ENV_OAUTH_URL = "OUTREACH_ZALO_OAUTH_URL"
ENV_APP_ID = "ZALO_APP_ID"
ENV_SECRET_KEY = "ZALO_SECRET_KEY"
ENV_CONNECT_TIMEOUT = "OUTREACH_ZALO_CONNECT_TIMEOUT"
ENV_READ_TIMEOUT = "OUTREACH_ZALO_READ_TIMEOUT"
ENV_ZNS_MODE = "OUTREACH_ZALO_ZNS_MODE"
ENV_TEMPLATE_ID = "OUTREACH_ZALO_TEMPLATE_ID"
ENV_BODY_PARAM = "OUTREACH_ZALO_BODY_PARAM"

DEFAULT_OA_API_URL = "https://openapi.zalo.me"
DEFAULT_ZNS_API_URL = "https://business.openapi.zalo.me"
DEFAULT_OAUTH_URL = "https://oauth.zaloapp.com"

#: OA "cs" text limit, characters (domain-facts: "text ≤ 2000 chars").
OA_TEXT_MAX = 2000
#: ZNS ``tracking_id`` limit, characters (domain-facts: "tracking_id (≤48 chars)").
TRACKING_ID_MAX = 48

_E164 = re.compile(r"^\+[1-9]\d{6,14}$")


@lru_cache(maxsize=1)
def error_table() -> dict[str, Any]:
    """The parsed ``zalo_errors.json`` (code -> class/reason, night window, status values)."""
    text = resources.files("outreach.gateways").joinpath("zalo_errors.json").read_text("utf-8")
    return json.loads(text)


@dataclass(frozen=True)
class TemplateParam:
    """One parameter of a ZNS template as Zalo's template information API describes it:
    ``name``, ``required`` (``require``), ``type`` (Zalo's type name), ``max_length`` /
    ``min_length`` in characters (``maxLength`` / ``minLength``; None when not given),
    ``accept_null`` (``acceptNull``)."""

    name: str
    required: bool = True
    type: str = ""
    max_length: int | None = None
    min_length: int | None = None
    accept_null: bool = False


@dataclass(frozen=True)
class TemplateInfo:
    """A ZNS template: ``template_id``, ``status`` (``ENABLE``...), its ``params`` by name."""

    template_id: str
    status: str
    params: dict[str, TemplateParam]


#: (ZNS API URL, template id) -> (monotonic time read, TemplateInfo): one read per template per
#: ``template_info.cache_seconds`` in this process, shared by every gateway instance
_TEMPLATE_CACHE: dict[tuple[str, str], tuple[float, TemplateInfo]] = {}
_TEMPLATE_LOCK = threading.Lock()


def _int_or_none(value: Any) -> int | None:
    try:
        n = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return n if n >= 0 else None


def parse_template_info(template_id: str, data: Mapping[str, Any]) -> TemplateInfo:
    """A :class:`TemplateInfo` from the ``data`` of ``GET /template/info/v2``
    (``listParams``: ``name``, ``require``, ``type``, ``maxLength``, ``minLength``,
    ``acceptNull``; ``status``). Parameters without a name are ignored."""
    params: dict[str, TemplateParam] = {}
    for raw in data.get("listParams") or []:
        if not isinstance(raw, Mapping) or not raw.get("name"):
            continue
        name = str(raw["name"])
        params[name] = TemplateParam(
            name=name, required=bool(raw.get("require", True)), type=str(raw.get("type") or ""),
            max_length=_int_or_none(raw.get("maxLength")),
            min_length=_int_or_none(raw.get("minLength")),
            accept_null=bool(raw.get("acceptNull", False)))
    return TemplateInfo(str(template_id), str(data.get("status") or ""), params)


class _TokenRejected(Exception):
    """Zalo refused the access token (-124/-216/-220): refresh, then retry once."""

    def __init__(self, code: int, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.code, self.reason, self.detail = str(code), reason, detail


def _env(environ: Mapping[str, str], key: str) -> str | None:
    value = environ.get(key)
    return value.strip() if value and value.strip() else None


def _positive(value: Any, option: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigurationError(_("{option} must be a number of seconds, got {value!r}").format(
            option=option, value=value),
                                 reason="bad-timeout") from None
    if not number > 0:
        raise ConfigurationError(_("{option} must be > 0 seconds").format(option=option), reason="bad-timeout")
    return number


class ZaloOAuth:
    """Zalo OAuth v4 refresh: ``POST {oauth}/v4/oa/access_token`` (form ``app_id``,
    ``grant_type=refresh_token``, ``refresh_token``; header ``secret_key``) →
    ``{"access_token", "refresh_token", "expires_in": "90000"}`` (domain-facts "OAuth v4").

    :meth:`refresh` raises :class:`RefreshNotSent` (connect failed), :class:`RefreshRejected`
    (Zalo answered with an error: invalid/used/expired refresh token, wrong app secret) or
    :class:`RefreshOutcomeUnknown` (sent, no usable answer). Error answers look like
    ``{"error": -14014, "error_name", "error_reason", "error_description"}`` ⚠️ (shape
    reported by integrators, not confirmed): any answer without both tokens is a refusal.
    """

    def __init__(self, session: requests.Session, url: str, app_id: str, secret_key: str,
                 timeout: tuple[float, float]) -> None:
        self.session, self.url = session, url
        self.app_id, self._secret_key, self.timeout = app_id, secret_key, timeout

    def refresh(self, refresh_token: str) -> TokenGrant:
        try:
            resp = self.session.post(
                f"{self.url}/v4/oa/access_token",
                data={"app_id": self.app_id, "grant_type": "refresh_token",
                      "refresh_token": refresh_token},
                headers={"secret_key": self._secret_key}, timeout=self.timeout,
                allow_redirects=False)
        except requests.RequestException as exc:
            if http.certainly_not_sent(exc):
                raise RefreshNotSent(f"connect failed: {type(exc).__name__}") from exc
            raise RefreshOutcomeUnknown(f"no answer: {type(exc).__name__}") from exc
        except ConfigurationError as exc:  # a loopback_only session refused the host
            raise RefreshNotSent(str(exc)) from exc
        if resp.status_code >= 500:
            raise RefreshOutcomeUnknown(f"HTTP {resp.status_code}")
        try:
            body = resp.json()
        except ValueError:
            if resp.status_code >= 400:
                raise RefreshRejected(f"HTTP {resp.status_code}") from None
            raise RefreshOutcomeUnknown(f"unreadable answer (HTTP {resp.status_code})") from None
        if not isinstance(body, dict):
            raise RefreshOutcomeUnknown("unreadable answer")
        access, refresh = body.get("access_token"), body.get("refresh_token")
        if access and refresh and resp.status_code < 400:
            try:
                expires_in = int(float(body.get("expires_in", DEFAULT_EXPIRES_IN)))
            except (TypeError, ValueError):
                expires_in = 3600  # unreadable: refresh early rather than late
            if expires_in <= 0:
                expires_in = 3600
            return TokenGrant(str(access), str(refresh), expires_in)
        if access and not refresh:
            raise RefreshOutcomeUnknown("answer without a new refresh token")
        reason = (body.get("error_description") or body.get("error_reason")
                  or body.get("error_name") or body.get("message") or f"HTTP {resp.status_code}")
        raise RefreshRejected(str(reason)[:200], code=body.get("error"))


class ZaloGateway(Gateway):
    """Zalo over ``requests``: ZNS template messages by phone, OA "cs" messages to followers.

    Options (keyword; else environment; else default):

    ================  ==================================  ====================================
    db                —                                    :class:`outreach.ledger.db.Database` holding
                                                           ``gateway_tokens`` (required)
    app_id            ``ZALO_APP_ID``                      required
    secret_key        ``ZALO_SECRET_KEY``                  app secret: OAuth ``secret_key`` header
    oa_api_url        ``OUTREACH_ZALO_OA_API_URL``         ``https://openapi.zalo.me``
    zns_api_url       ``OUTREACH_ZALO_ZNS_API_URL``        ``https://business.openapi.zalo.me``
    oauth_url         ``OUTREACH_ZALO_OAUTH_URL``          ``https://oauth.zaloapp.com``
    connect_timeout   ``OUTREACH_ZALO_CONNECT_TIMEOUT``    5 s
    read_timeout      ``OUTREACH_ZALO_READ_TIMEOUT``       20 s
    development       ``OUTREACH_ZALO_ZNS_MODE=development``  adds ``"mode": "development"``
    template_id       ``OUTREACH_ZALO_TEMPLATE_ID``        ZNS template when the message has none
    body_param        ``OUTREACH_ZALO_BODY_PARAM``         template parameter that receives the
                                                           message text (NFC), if the approved
                                                           template has a free-text parameter
    pool_maxsize      —                                    HTTP connections kept, 16
    trust_env         —                                    read proxy variables (default True)
    loopback_only     —                                    tests: refuse any host but 127.0.0.1
    ================  ==================================  ====================================

    (The webhook secret, ``ZALO_OA_SECRET_KEY`` falling back to ``ZALO_SECRET_KEY``, is read by
    :mod:`outreach.gateways.zalo_webhook`, since which secret Zalo signs with is ambiguous ⚠️.)

    Facts: the OA API allows 4000 requests/minute per app (domain-facts "Rate"): 60 messages/s
    leaves a margin; 16 requests in flight. The constructor validates options and raises
    :class:`ConfigurationError`; it touches no network. Every send reads the body, because Zalo
    reports errors as HTTP 200 with ``error != 0``; codes map to errors via
    ``zalo_errors.json``. Failures below HTTP map as :func:`outreach.gateways.http.map_error`
    says: connect failures raise ``UnavailableError`` (reason ``connect-failed``, not sent);
    read timeouts and dropped connections after sending raise ``OutcomeUnknownError`` (reasons
    ``read-timeout``, ``connection-lost``). HTTP 429 → ``ThrottledError`` (Retry-After in
    seconds or as an HTTP-date, else 60 s); 500/502/503
    → ``UnavailableError``; 504 on a send → ``OutcomeUnknownError`` (a proxy gave up waiting for
    Zalo, which may have accepted it); 401/403 → ``AuthenticationError``; 404/405 →
    ``StopRunError`` (wrong URL). The adapter never retries a request by itself, except one
    retry after refreshing a rejected access token (which Zalo refused before sending anything).
    ``clock`` sets "now" for token expiry and the night-window ``retry_after``.
    """

    name: ClassVar[str] = "zalo"
    channel: ClassVar[str] = "zalo"
    rate_per_second: ClassVar[float] = 60.0
    rate_unit: ClassVar[str] = "messages"
    concurrency: ClassVar[int] = 16

    def __init__(self, *, db: Any = None, app_id: str | None = None,
                 secret_key: str | None = None, oa_api_url: str | None = None,
                 zns_api_url: str | None = None, oauth_url: str | None = None,
                 connect_timeout: float | None = None, read_timeout: float | None = None,
                 development: bool | None = None, template_id: str | None = None,
                 body_param: str | None = None, token_store: TokenStore | None = None,
                 clock: Clock = SYSTEM_CLOCK, session: requests.Session | None = None,
                 trust_env: bool = True, pool_maxsize: int | None = None,
                 loopback_only: bool = False,
                 environ: Mapping[str, str] | None = None, **_ignored: Any) -> None:
        env = os.environ if environ is None else environ
        self.app_id = (app_id or _env(env, ENV_APP_ID) or "").strip()
        if not self.app_id:
            raise ConfigurationError(_("Zalo app id missing: set {var}").format(var=ENV_APP_ID),
                                     reason="app-id")
        if any(ch.isspace() for ch in self.app_id):
            raise ConfigurationError(_("Zalo app id must not contain spaces"), reason="app-id")
        self._secret_key = (secret_key or _env(env, ENV_SECRET_KEY) or "").strip()
        if not self._secret_key:
            raise ConfigurationError(_("Zalo app secret missing: set {var}").format(
                var=ENV_SECRET_KEY),
                                     reason="secret-key")
        # the access token (API) and the app secret (OAuth) travel in headers: plain http
        # only for local fakes
        self.oa_api_url = http.check_url(oa_api_url or _env(env, ENV_OA_API_URL)
                                         or DEFAULT_OA_API_URL, ENV_OA_API_URL,
                                         carries_secret=True)
        self.zns_api_url = http.check_url(zns_api_url or _env(env, ENV_ZNS_API_URL)
                                          or DEFAULT_ZNS_API_URL, ENV_ZNS_API_URL,
                                          carries_secret=True)
        self.oauth_url = http.check_url(oauth_url or _env(env, ENV_OAUTH_URL)
                                        or DEFAULT_OAUTH_URL, ENV_OAUTH_URL, carries_secret=True)
        self.timeout = (
            _positive(connect_timeout if connect_timeout is not None
                      else _env(env, ENV_CONNECT_TIMEOUT) or 5.0, ENV_CONNECT_TIMEOUT),
            _positive(read_timeout if read_timeout is not None
                      else _env(env, ENV_READ_TIMEOUT) or 20.0, ENV_READ_TIMEOUT))
        if development is None:
            development = (_env(env, ENV_ZNS_MODE) or "").lower() == "development"
        self.development = bool(development)
        self.template_id = template_id or _env(env, ENV_TEMPLATE_ID)
        self.body_param = body_param or _env(env, ENV_BODY_PARAM)
        self.clock = clock
        if session is None:
            session = http.new_session(pool_size=pool_maxsize or self.concurrency,
                                       trust_env=trust_env, loopback_only=loopback_only)
        self.session = session
        self.oauth = ZaloOAuth(self.session, self.oauth_url, self.app_id, self._secret_key,
                               self.timeout)
        if token_store is None:
            if db is None:
                raise ConfigurationError("the Zalo gateway keeps its OAuth tokens in the database: "
                                         "pass db=Database(...)", reason="no-database")
            from outreach import secretstore

            secretstore.cipher()  # SecretKeyError (a ConfigurationError) before any send
            token_store = TokenStore(db, "zalo", clock, refresher=self.oauth.refresh,
                                     claim_timeout=sum(self.timeout) + 30.0)
        elif token_store.refresher is None:
            token_store.refresher = self.oauth.refresh
        self.tokens = token_store
        self.last_quota: dict[str, Any] | None = None
        self._lock = threading.Lock()

    # -- sending ------------------------------------------------------------------------------
    def send(self, message: OutboundMessage) -> SendResult:
        """Send one message; returns ``SendResult(provider_message_id=msg_id, status="sent",
        segments=1, raw=data)`` where ``data`` is Zalo's ``data`` object (``msg_id``,
        ``sent_time`` epoch ms, ``quota``...). Raises a :class:`base.GatewayError`.

        ``message.zalo_user_id`` set → OA message ``POST {oa}/v3.0/oa/message/cs``
        ``{"recipient": {"user_id"}, "message": {"text"}}`` (text NFC, ≤ 2000 characters);
        else ZNS ``POST {zns}/message/template`` ``{"phone": "84…" (E.164 without "+"),
        "template_id", "template_data" (NFC strings), "tracking_id": str(delivery_id)}``.
        """
        if message.zalo_user_id:
            url, payload, who = self._oa_request(message)
        else:
            url, payload, who = self._zns_request(message)
        body = self._authorized("POST", url, json_body=payload, sends=True, who=who)
        data = body.get("data") if isinstance(body.get("data"), dict) else {}
        msg_id = data.get("msg_id") or data.get("message_id")
        if not msg_id:
            # accepted (error 0) without an id: receipts still match by tracking_id
            log.warning(_("zalo accepted delivery {id} without a msg_id").format(id=message.delivery_id))
            msg_id = f"zalo-tracking-{message.delivery_id}"
        quota = data.get("quota")
        if isinstance(quota, dict):
            with self._lock:
                self.last_quota = dict(quota)
        return SendResult(provider_message_id=str(msg_id), status="sent",
                          provider_status="accepted", segments=1, raw=data)

    def _zns_request(self, message: OutboundMessage) -> tuple[str, dict[str, Any], str]:
        if not _E164.match(message.to or ""):
            raise InvalidAddressError("not an E.164 number", reason="invalid-phone")
        template_id = message.template_id or self.template_id
        if not template_id:
            raise PermanentError("a ZNS message needs an approved template_id (campaign "
                                 "channels[].template_id)", reason="template-missing")
        template_data = {str(k): unicodedata.normalize("NFC", "" if v is None else str(v))
                         for k, v in (message.template_data or {}).items()}
        if self.body_param and self.body_param not in template_data:
            template_data[self.body_param] = unicodedata.normalize("NFC", message.body or "")
        payload: dict[str, Any] = {
            "phone": message.to[1:],
            "template_id": str(template_id),
            "template_data": template_data,
            "tracking_id": str(message.delivery_id)[:TRACKING_ID_MAX],
        }
        if self.development:
            payload["mode"] = "development"
        return f"{self.zns_api_url}/message/template", payload, mask(message.to)

    def _oa_request(self, message: OutboundMessage) -> tuple[str, dict[str, Any], str]:
        text = unicodedata.normalize("NFC", message.body or "")
        if not text.strip():
            raise PermanentError("empty OA message text", reason="empty-text")
        if len(text) > OA_TEXT_MAX:
            raise PermanentError(f"OA message text is {len(text)} characters (Zalo allows "
                                 f"{OA_TEXT_MAX})", reason="text-too-long")
        payload = {"recipient": {"user_id": str(message.zalo_user_id)},
                   "message": {"text": text}}
        return f"{self.oa_api_url}/v3.0/oa/message/cs", payload, "user:" + str(message.zalo_user_id)[-4:]

    # -- the HTTP layer -----------------------------------------------------------------------
    def _authorized(self, method: str, url: str, *, json_body: Any = None,
                    params: dict[str, str] | None = None, sends: bool, who: str = "") -> dict[str, Any]:
        """One API call with the stored access token; on a token error refresh and retry once."""
        token, version = self.tokens.current()
        try:
            return self._call(method, url, token, json_body=json_body, params=params, sends=sends)
        except _TokenRejected as exc:
            log.info("zalo rejected access token version %d (%s) for %s; refreshing", version,
                     exc.code, who or url)
        token = self.tokens.refresh(version)
        try:
            return self._call(method, url, token, json_body=json_body, params=params, sends=sends)
        except _TokenRejected as exc:
            raise AuthenticationError(
                f"Zalo rejected a freshly refreshed access token (error {exc.code}); check the "
                "app id and that the OA granted this app access", reason=exc.reason,
                provider_code=exc.code) from exc

    def _call(self, method: str, url: str, token: str, *, json_body: Any, params: Any,
              sends: bool) -> dict[str, Any]:
        try:
            resp = self.session.request(method, url, json=json_body, params=params,
                                        headers={"access_token": token}, timeout=self.timeout,
                                        allow_redirects=False)
        except requests.RequestException as exc:
            raise http.map_error(exc, provider="Zalo", sending=sends,
                                 read_timeout=self.timeout[1]) from exc
        status = resp.status_code
        if status == 429:
            raise ThrottledError("HTTP 429 from Zalo", provider_code="429",
                                 retry_after=self._retry_after_header(resp) or 60.0)
        if status == 504 and sends:
            # a proxy gave up waiting for Zalo, which may have accepted the message
            raise OutcomeUnknownError("HTTP 504 from Zalo after sending", provider_code="504")
        if status >= 500:
            raise UnavailableError(f"HTTP {status} from Zalo", provider_code=str(status),
                                   retry_after=self._retry_after_header(resp))
        if status in (401, 403):
            raise AuthenticationError(f"HTTP {status} from Zalo", provider_code=str(status))
        if status in (404, 405):
            raise StopRunError(f"HTTP {status} from {urlsplit(url).netloc}: check "
                               f"{ENV_ZNS_API_URL}/{ENV_OA_API_URL}", reason="bad-endpoint",
                               provider_code=str(status))
        if status >= 300:
            raise PermanentError(f"HTTP {status} from Zalo", reason=f"http-{status}",
                                 provider_code=str(status))
        try:
            body = resp.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or "error" not in body:
            if sends:
                raise OutcomeUnknownError(f"unreadable HTTP {status} answer from Zalo after "
                                          "sending", reason="outcome-unknown")
            raise UnavailableError(f"unreadable HTTP {status} answer from Zalo")
        try:
            code = int(body["error"])
        except (TypeError, ValueError):
            code = None
        if code == 0:
            return body
        if code is None:
            if sends:
                raise OutcomeUnknownError("Zalo answered with an unreadable error field")
            raise UnavailableError("Zalo answered with an unreadable error field")
        self._raise_for_code(code, body)

    def _raise_for_code(self, code: int, body: dict[str, Any]) -> NoReturn:
        table = error_table()
        entry = table["codes"].get(str(code)) or table["unknown"]
        cls, reason = entry["class"], entry["reason"]
        said = str(body.get("message") or "")[:200]
        detail = f"Zalo error {code}: {entry['text']}" + (f" ({said})" if said else "")
        raw = {"error": code, "message": said}
        if cls == "token":
            raise _TokenRejected(code, reason, detail)
        if cls in ("throttled", "unavailable"):
            retry_after = self._retry_after(entry, reason)
            kind = ThrottledError if cls == "throttled" else UnavailableError
            raise kind(detail, reason=reason, provider_code=code, retry_after=retry_after, raw=raw)
        if cls == "invalid-address":
            raise InvalidAddressError(detail, reason=reason, provider_code=code, raw=raw)
        if cls == "stop":
            raise StopRunError(detail, reason=reason, provider_code=code, raw=raw)
        if cls == "authentication":
            raise AuthenticationError(detail, reason=reason, provider_code=code, raw=raw)
        raise PermanentError(detail, reason=reason, provider_code=code, raw=raw,
                             content=bool(entry.get("content")))

    def _retry_after_header(self, resp: requests.Response) -> float | None:
        return http.parse_retry_after(resp.headers.get("Retry-After"), self.clock.now())

    def _retry_after(self, entry: dict[str, Any], reason: str) -> float | None:
        spec = entry.get("retry_after")
        if spec is None:
            return None
        if isinstance(spec, (int, float)):
            return float(spec)
        night = error_table()["night_window"]
        if reason == "night-window":
            return night_retry_after(self.clock.now(), night)
        hhmm = str(spec).partition(" ")[2]
        return seconds_until_local(self.clock.now(), hhmm, night["timezone"])

    # -- provider limits ---------------------------------------------------------------------
    def template_info(self, template_id: str) -> TemplateInfo:
        """The template's parameters from Zalo's template information API,
        ``GET {zns}/template/info/v2?template_id=<id>`` (``zalo_errors.json`` ``template_info``),
        cached ``cache_seconds`` (1 h) per process. Sends no message. Raises the error tree
        (``StopRunError`` for an unknown template id -109, ``AuthenticationError``,
        ``TransientError``...) as every other call."""
        key = (self.zns_api_url, str(template_id))
        ttl = float(error_table()["template_info"]["cache_seconds"])
        with _TEMPLATE_LOCK:
            hit = _TEMPLATE_CACHE.get(key)
        if hit is not None and time.monotonic() - hit[0] < ttl:
            return hit[1]
        body = self._authorized("GET", self.zns_api_url + error_table()["template_info"]["path"],
                                params={"template_id": str(template_id)}, sends=False)
        data = body.get("data") if isinstance(body.get("data"), dict) else {}
        info = parse_template_info(str(template_id), data)
        with _TEMPLATE_LOCK:
            _TEMPLATE_CACHE[key] = (time.monotonic(), info)
        return info

    def refusals(self, message: OutboundMessage) -> list[Refusal]:
        """What Zalo would refuse: an OA text over 2,000 characters; for ZNS, each template
        parameter longer than its ``maxLength`` (Zalo answers -112 for every recipient),
        shorter than its ``minLength``, or required and missing, read from the template
        information API (:meth:`template_info`, cached). Values are compared in NFC, in
        characters. A template that is not ``ENABLE`` is refused as a whole (part
        ``"template_id"``)."""
        if message.zalo_user_id:
            text = unicodedata.normalize("NFC", message.body or "")
            if len(text) > OA_TEXT_MAX:
                return [Refusal("body", len(text), OA_TEXT_MAX, "characters",
                                f"Zalo OA: a text message is at most {OA_TEXT_MAX:,} characters")]
            return []
        template_id = message.template_id or self.template_id
        if not template_id:
            return []
        info = self.template_info(template_id)
        rule = f"Zalo ZNS template {template_id}, from its template information"
        out: list[Refusal] = []
        sendable = error_table()["template_info"]["sendable_status"]
        if info.status and info.status not in sendable:
            out.append(Refusal("template_id", 0, 0, "status",
                               f"{rule}: status {info.status}, only {', '.join(sendable)} "
                               "templates can be sent"))
        data = {str(k): unicodedata.normalize("NFC", "" if v is None else str(v))
                for k, v in (message.template_data or {}).items()}
        if self.body_param and self.body_param not in data:
            data[self.body_param] = unicodedata.normalize("NFC", message.body or "")
        for name, param in info.params.items():
            value = data.get(name)
            if value is None or value == "":
                if param.required and not param.accept_null:
                    out.append(Refusal(f"template_data.{name}", 0, 0, "required", rule,
                                       code="-112"))
                continue
            if param.max_length is not None and len(value) > param.max_length:
                out.append(Refusal(f"template_data.{name}", len(value), param.max_length,
                                   "characters", f"{rule}: maxLength {param.max_length}",
                                   code="-112"))
            elif param.min_length and len(value) < param.min_length:
                out.append(Refusal(f"template_data.{name}", len(value), param.min_length,
                                   "characters", f"{rule}: minLength {param.min_length}",
                                   code="-112"))
        return out

    # -- status, reconciliation, check ------------------------------------------------------
    def lookup(self, message: OutboundMessage, since: dt.datetime,
               until: dt.datetime) -> StatusUpdate | None | bool:
        """Zalo can only be asked by ``msg_id`` (``GET {zns}/message/status?message_id=``), not
        by our ``tracking_id``; a delivery whose outcome is unknown has no stored msg_id, so this
        returns None (the operator decides) unless the message carries a ``provider_message_id``.
        """
        msg_id = getattr(message, "provider_message_id", None)
        if not msg_id:
            return None
        found = self.fetch_statuses([msg_id])
        if not found:
            return None
        upd = found[0]
        return StatusUpdate(status=upd.status, provider_message_id=upd.provider_message_id,
                            delivery_id=message.delivery_id, provider_status=upd.provider_status,
                            occurred_at=upd.occurred_at, raw=upd.raw)

    def fetch_statuses(self, provider_message_ids: list[str]) -> list[StatusUpdate]:
        """Poll ``GET {zns}/message/status?message_id=<id>`` for each id.

        ``data.status`` maps through ``message_status`` in ``zalo_errors.json`` (⚠️ values
        unconfirmed: 1 delivered, 0 sent, -1 undelivered). Ids Zalo refuses (unknown id...) are
        skipped; throttling, outages and token/stop errors raise and end the poll.
        """
        mapping = error_table()["message_status"]
        out: list[StatusUpdate] = []
        for msg_id in provider_message_ids:
            try:
                body = self._authorized("GET", f"{self.zns_api_url}/message/status",
                                        params={"message_id": str(msg_id)}, sends=False)
            except PermanentError as exc:
                log.info("zalo status of %s not available: %s", msg_id, exc.reason)
                continue
            data = body.get("data") if isinstance(body.get("data"), dict) else {}
            raw_status = data.get("status")
            status = mapping.get(str(raw_status), "sent")
            out.append(StatusUpdate(status=status, provider_message_id=str(msg_id),
                                    provider_status=f"status:{raw_status}",
                                    occurred_at=epoch_ms(data.get("delivery_time")), raw=data))
        return out

    def check(self) -> dict[str, Any]:
        """``GET {zns}/message/quota``: validates the stored token (refreshing it if needed)
        and sends nothing. Returns ``{"gateway", "ok", "app_id", "zns_api", "oa_api",
        "daily_quota", "remaining_quota", "token_version", "token_expires_at"}`` (no secret).
        Raises AuthenticationError / StopRunError / TransientError."""
        body = self._authorized("GET", f"{self.zns_api_url}/message/quota", sends=False)
        data = body.get("data") if isinstance(body.get("data"), dict) else {}
        st = self.tokens.status()
        return {"gateway": self.name, "ok": True, "app_id": self.app_id,
                "zns_api": self.zns_api_url, "oa_api": self.oa_api_url,
                "daily_quota": data.get("dailyQuota"), "remaining_quota": data.get("remainingQuota"),
                "token_version": st["version"],
                "token_expires_at": st["expires_at"].isoformat() if st["expires_at"] else None}

    def __repr__(self) -> str:
        return f"ZaloGateway(app_id={self.app_id!r}, zns_api_url={self.zns_api_url!r})"

    def close(self) -> None:
        self.session.close()


def epoch_ms(value: Any) -> dt.datetime | None:
    """Zalo's epoch-milliseconds (int or string) → aware UTC datetime; None if unreadable."""
    try:
        ms = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    if ms <= 0:
        return None
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.timezone.utc)


def seconds_until_local(now: dt.datetime, hhmm: str, tz: str) -> float:
    """Seconds from ``now`` to the next ``HH:MM`` wall-clock time in ``tz`` (strictly after)."""
    zone = ZoneInfo(tz)
    hour, minute = (int(x) for x in hhmm.split(":"))
    local = now.astimezone(zone)
    target = local.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if target <= local:
        target = (local + dt.timedelta(days=1)).replace(hour=hour, minute=minute, second=0,
                                                        microsecond=0)
    return (target - local).total_seconds()


def night_retry_after(now: dt.datetime, night: Mapping[str, Any]) -> float:
    """Retry-after for a night-window refusal (-133/-234): seconds until the window ends
    (06:00 Asia/Ho_Chi_Minh by default, domain-facts "Error classes"); if our clock says it is
    daytime (clock skew), ``daytime_retry_after`` seconds."""
    zone = ZoneInfo(night["timezone"])
    local = now.astimezone(zone).time()
    start = dt.time.fromisoformat(night["start"])
    end = dt.time.fromisoformat(night["end"])
    in_night = (local >= start or local < end) if start > end else (start <= local < end)
    if not in_night:
        return float(night.get("daytime_retry_after", 300))
    return seconds_until_local(now, night["end"], night["timezone"])


__all__ = ["ZaloGateway", "ZaloOAuth", "TemplateInfo", "TemplateParam", "parse_template_info",
           "error_table", "epoch_ms", "night_retry_after",
           "seconds_until_local"]
