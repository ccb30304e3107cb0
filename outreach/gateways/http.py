"""The one HTTP transport of the gateways that speak HTTP themselves (Twilio, Zalo).

What lives here and nowhere else:

* :func:`map_error` — a low-level ``requests``/urllib3 failure to the gateway error tree of
  :mod:`outreach.gateways.base`; :func:`certainly_not_sent` — the safety-critical line between
  "the request never left" and "maybe sent" that it draws;
* :func:`parse_retry_after` — ``Retry-After`` as delta-seconds or HTTP-date (RFC 9110 §10.2.3);
* :func:`check_url` — the API URLs an operator configures;
* :func:`new_session` — a ``requests.Session`` that never retries on its own.

Adapters keep what is theirs: request shapes, and the tables mapping their answers (HTTP
status, error codes in the body) to the same tree.

How a failure below HTTP maps (``raise map_error(exc, ...) from exc``; model: httpx's
``_exceptions.py``, which draws the same line between ``ConnectError`` and ``ReadTimeout``)::

    requests.RequestException
    │
    ├── the request never left ─────────────────────────────► UnavailableError   (retried)
    │     connection refused, DNS failure, connect timeout,       reason "connect-failed"
    │     proxy unreachable, TLS handshake failed or stalled
    │     (no byte of the request had been handed to the socket)
    │   InvalidURL / MissingSchema / InvalidSchema / InvalidHeader   reason "bad-request"
    │     (refused by requests before any connection)
    │
    └── a byte of the request may have left
          ├── a read (``sending=False``: status poll, check) ──► UnavailableError   (retried)
          │                                                       reason "network"
          └── a send (``sending=True``)
                ├── ReadTimeout: no answer in time ─────────────► OutcomeUnknownError
                │                                                 reason "read-timeout"
                └── reset / dropped / TLS error / write error ──► OutcomeUnknownError
                    after the first byte was written              reason "connection-lost"

Write errors: once the first byte of a request is handed to the socket nobody can say how much
of it the provider read (a broken pipe on the body may follow a complete request the server
already acted on; urllib3 itself swallows EPIPE/ECONNRESET on write and goes on to read the
answer), so a failed write is "maybe sent" like a failed read. "Never left" is known exactly for
sessions made by :func:`new_session`: their connections note, per thread, when the first byte
of the request (not of a TLS handshake or proxy CONNECT) is written, and the adapter attaches
``request_sent`` to the exception. For other sessions the exception type decides, and only
``ConnectTimeout`` or a ``MaxRetryError`` around ``NewConnectionError``/``ConnectTimeoutError``
count as never sent (a TLS error, for instance, may come after the request was written).

Error texts name the provider and the exception type only, never ``str(exc)`` (which quotes
URLs, and with them numbers or tokens); :class:`~outreach.gateways.base.GatewayError` runs
every text through :func:`~outreach.gateways.base.redact` as well.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import ipaddress
import math
import os
import threading
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError
from urllib3.util.retry import Retry

from outreach.i18n import _
from outreach.gateways.base import (ConfigurationError, GatewayError, OutcomeUnknownError,
                                    UnavailableError)

#: Longest wait a provider's ``Retry-After`` can impose, seconds. The dispatcher blocks the
#: provider's rate limiter for that long and sleeps before the retry; a header asking for more
#: (a misconfigured proxy, a date far ahead) is read as one hour. Our rule, not the RFC's.
MAX_RETRY_AFTER = 3600.0
#: Connections kept per host when the caller does not say (``pool_size``).
DEFAULT_POOL_SIZE = 16
#: Hosts a ``loopback_only`` session may reach.
LOOPBACK_NAMES = ("localhost",)

#: Raised by requests before any connection is made: certainly not sent.
_PREFLIGHT = (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema,
              requests.exceptions.InvalidSchema, requests.exceptions.InvalidHeader,
              requests.exceptions.URLRequired)


# ---------------------------------------------------------------------------------------------
# The error mapping


def certainly_not_sent(exc: BaseException) -> bool:
    """True when no byte of the request can have reached the provider, so sending it again
    cannot make a second message; False when it may have (then it must never be resent
    automatically). See the module docstring for the rule and its sources."""
    if isinstance(exc, _PREFLIGHT):
        return True
    sent = getattr(exc, "request_sent", None)
    if sent is not None:
        return not sent
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if isinstance(exc, requests.ConnectionError) and not isinstance(exc, requests.ReadTimeout):
        inner = exc.args[0] if exc.args else None
        # NewConnectionError (refused, DNS) is a ConnectTimeoutError subclass in urllib3
        if isinstance(inner, MaxRetryError) and isinstance(inner.reason, ConnectTimeoutError):
            return True
    return False


def map_error(exc: requests.RequestException, *, provider: str, sending: bool,
              read_timeout: float | None = None) -> GatewayError:
    """The gateway error for a ``requests`` failure (the tree in the module docstring).

    ``provider`` names the service in the text ("Twilio"); ``sending`` is True when the request
    may put a message on a phone (then "maybe sent" is :class:`OutcomeUnknownError`, else a
    retryable :class:`UnavailableError`); ``read_timeout`` (seconds) is quoted in the text of a
    read timeout. Returns the error; the caller raises it ``from exc``.
    """
    kind = type(exc).__name__
    if certainly_not_sent(exc):
        if isinstance(exc, _PREFLIGHT):
            return UnavailableError(f"request to {provider} not sent: {kind}", reason="bad-request")
        return UnavailableError(f"could not connect to {provider} ({kind})",
                                reason="connect-failed")
    if not sending:
        return UnavailableError(f"request to {provider} failed: {kind}", reason="network")
    if isinstance(exc, requests.ReadTimeout):
        within = f" within {read_timeout:g} s" if read_timeout else ""
        return OutcomeUnknownError(f"no answer from {provider}{within} after sending; the "
                                   "message may have been accepted", reason="read-timeout")
    return OutcomeUnknownError(f"connection to {provider} lost after the request was sent "
                               f"({kind}); the message may have been accepted",
                               reason="connection-lost")


# ---------------------------------------------------------------------------------------------
# Retry-After


def parse_retry_after(value: str | None, now: dt.datetime | None = None, *,
                      cap: float = MAX_RETRY_AFTER) -> float | None:
    """``Retry-After`` -> seconds to wait, in ``[0, cap]``; None when absent or unreadable.

    Accepts delta-seconds (``"120"``; decimals too, as some proxies send them) and an HTTP-date
    in any of the three forms RFC 9110 §5.6.7 makes recipients accept (IMF-fixdate, RFC 850,
    asctime), read as UTC when no zone is given. A date in the past is 0; a negative number is
    0; ``nan``/``inf`` are unreadable. ``now`` (aware; default: the system clock) is the instant
    a date is measured from. Source: RFC 9110 §10.2.3; the cap is :data:`MAX_RETRY_AFTER`.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.timezone.utc)
        now = now or dt.datetime.now(dt.timezone.utc)
        if now.tzinfo is None:
            now = now.replace(tzinfo=dt.timezone.utc)
        seconds = (when - now).total_seconds()
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), cap)


# ---------------------------------------------------------------------------------------------
# URLs


def is_loopback(host: str | None) -> bool:
    """True for ``localhost`` and literal loopback addresses (127.0.0.0/8, ``::1``)."""
    if not host:
        return False
    host = host.strip("[]").lower()
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(value: Any, option: str, *, carries_secret: bool = False) -> str:
    """A configured base URL, stripped of spaces and trailing slashes, or ConfigurationError.

    Rules: scheme ``http`` or ``https``; a host; a numeric port if any; no ``user:password@``
    (credentials come from the environment only, and URLs are printed by ``gateways check``).
    With ``carries_secret`` (the requests carry an auth token or Basic credentials) plain
    ``http`` is only accepted for loopback hosts (local fakes). ``option`` names the setting in
    the message (``"OUTREACH_ZALO_ZNS_API_URL"``); the error's reason is ``"bad-url"``.
    """
    url = str(value).strip().rstrip("/")
    parts = urlsplit(url)
    if "@" in parts.netloc:
        raise ConfigurationError(_("{option} must not carry credentials (user:password@)").format(
            option=option),
                                 reason="bad-url")
    shown = url if "@" not in url else "(a value with '@')"
    try:
        parts.port
    except ValueError:
        raise ConfigurationError(_("{option} has a bad port: {value!r}").format(
            option=option, value=shown), reason="bad-url") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(_("{option} must be an http(s) URL with a host, got "
                                   "{value!r}").format(option=option, value=shown),
                                 reason="bad-url")
    if carries_secret and parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ConfigurationError(_("{option} must use https (plain http only for 127.0.0.1): "
                                   "the requests carry credentials").format(option=option),
                                 reason="bad-url")
    return url


# ---------------------------------------------------------------------------------------------
# The session


_written = threading.local()


class _NotesWrites:
    """Connection mix-in: notes in :data:`_written` when the first byte of a request (not of a
    proxy CONNECT or a TLS handshake, which happen inside ``connect``) goes to the socket."""

    def connect(self) -> None:
        try:
            super().connect()  # type: ignore[misc]
        finally:
            _written.sent = False  # a proxy CONNECT went through send(); our request did not

    def send(self, data: Any) -> None:
        if self.sock is None:  # type: ignore[attr-defined]
            self.connect()  # http.client connects lazily here; nothing of ours left yet
        _written.sent = True
        super().send(data)  # type: ignore[misc]


class _HTTPConnection(_NotesWrites, HTTPConnection):
    pass


class _HTTPSConnection(_NotesWrites, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


_POOLS = {"http": _HTTPPool, "https": _HTTPSPool}


class _Adapter(HTTPAdapter):
    """An HTTPAdapter whose connections note writes (for :func:`certainly_not_sent`) and which,
    with ``loopback_only``, refuses any host but loopback before connecting."""

    def __init__(self, *, loopback_only: bool = False, **kwargs: Any) -> None:
        self.loopback_only = loopback_only
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _POOLS

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        manager.pool_classes_by_scheme = _POOLS
        return manager

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any
             ) -> requests.Response:
        if self.loopback_only:
            proxies = kwargs.get("proxies") or {}
            proxy = requests.utils.select_proxy(request.url or "", proxies)
            for url in (request.url, proxy):
                host = urlsplit(url).hostname if url else None
                if url and not is_loopback(host):
                    raise ConfigurationError(f"refused a request to {host}: this session may only "
                                             "reach 127.0.0.1 (loopback_only)",
                                             reason="not-loopback")
        _written.sent = False
        try:
            return super().send(request, *args, **kwargs)
        except requests.RequestException as exc:
            exc.request_sent = bool(getattr(_written, "sent", False))  # type: ignore[attr-defined]
            raise


def new_session(*, pool_size: int = DEFAULT_POOL_SIZE, pool_connections: int = 4,
                trust_env: bool = True, environment_for: str | None = None,
                loopback_only: bool = False) -> requests.Session:
    """A ``requests.Session`` for one gateway.

    * never retries by itself (urllib3 ``Retry`` with every count 0 / False: a retried POST
      could be a second message; the dispatcher decides retries from the mapped error);
      callers pass ``allow_redirects=False`` (a followed 307 would repeat the POST);
    * keeps ``pool_size`` connections per host (>= the requests in flight, or urllib3 opens and
      drops one per request) for ``pool_connections`` hosts, on http and https;
    * ``trust_env``: as requests (proxy and CA-bundle variables read on every request); with
      ``environment_for`` (a base URL) they are read once, now, for that URL — requests scans
      the environment twice per request otherwise (~1 ms of CPU per send);
    * ``loopback_only`` (tests): any request to a host other than 127.0.0.1/::1/localhost
      raises :class:`ConfigurationError` (reason ``not-loopback``) before connecting.

    Raises ConfigurationError for ``pool_size`` < 1.
    """
    if int(pool_size) < 1:
        raise ConfigurationError("pool_size must be >= 1", reason="bad-option")
    session = requests.Session()
    adapter = _Adapter(loopback_only=loopback_only, pool_connections=pool_connections,
                       pool_maxsize=int(pool_size),
                       max_retries=Retry(total=0, connect=0, read=False, redirect=0, status=0,
                                         other=0, raise_on_status=False))
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.trust_env = trust_env
    if trust_env and environment_for:
        session.proxies.update(requests.utils.get_environ_proxies(environment_for))
        session.trust_env = False
        ca_bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        if ca_bundle:
            session.verify = ca_bundle
    return session


__all__ = ["MAX_RETRY_AFTER", "certainly_not_sent", "check_url", "is_loopback", "map_error",
           "new_session", "parse_retry_after"]
