"""A Twilio-compatible Messages API on 127.0.0.1 with scriptable faults, for the real SDK.

Usage::

    with FakeTwilio() as server:              # free port on 127.0.0.1
        server.script("+84912345001", "throttled", "accept")   # per number, one per request
        server.queue("drop_before")           # next Message-create request, whatever the number
        gw = TwilioGateway(**server.gateway_options())
        ...
        server.requests                       # every request: method, path, params, time
        server.messages                       # accepted messages, Twilio's JSON shape

Outcome names (a string, or a :class:`Fault`):

=================  ===========================================================================
``accept``         201 with the Message JSON (status ``queued``, ``accepted`` with a service)
``invalid``        400, code 21211 (the number quoted in the message, as Twilio does)
``opted_out``      400, code 21610
``landline``       400, code 21614
``unroutable``     400, code 21612
``filtered``       400, code 30007
``throttled``      429, code 20429, ``Retry-After: 2``
``unavailable``    503, code 20503; nothing recorded
``server_error``   500, code 20500; nothing recorded
``auth``           401, code 20003 (also the answer to wrong credentials, always)
``drop_before``    request read, NOT recorded, connection reset without an answer
``drop_after``     message recorded (accepted), connection reset without an answer
``lost``           same as ``drop_after``
``slow:N``         message recorded, answer sent after N seconds (float)
``garbage``        message recorded, 201 with an HTML body (a proxy's page, not JSON)
=================  ===========================================================================

``Fault.error(code, status, message, retry_after)`` gives any error answer in Twilio's legacy
body ``{"code", "message", "more_info", "status"}``; ``Fault.problem(code, status)`` the
RFC 9457 body (``type``, ``title``, ``status``, ``code``) some newer Twilio APIs use.

Once the request bytes are written, a client cannot tell ``drop_before`` from ``drop_after``
(urllib3 even swallows a reset while sending, to read an early answer): both are "outcome
unknown", settled by a lookup. The "not sent" cases are a refused connection
(:func:`closed_port`) and a connect timeout (:func:`blackhole`).

Routes (HTTP Basic auth: account SID + auth token, or API key SID + secret):
``POST /2010-04-01/Accounts/{sid}/Messages.json``, ``GET .../Messages/{sid}.json``,
``GET .../Messages.json`` (``To``, ``From``, ``DateSent``, ``DateSent>``, ``DateSent<``,
``PageSize``, ``Page``), ``GET /2010-04-01/Accounts/{sid}.json``.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import email.utils
import json
import math
import re
import socket
import struct
import threading
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from tests.fakes import isolate as _isolate

ACCOUNT_SID = "AC0123456789abcdef0123456789abcdef"
AUTH_TOKEN = "tok3n-d0-not-leak-0123456789abcd"
API_KEY = "SK00112233445566778899aabbccddeeff"
API_SECRET = "s3cret-d0-not-leak-abcdef012345"
SERVICE_SID = "MG0123456789abcdef0123456789abcdef"
API_VERSION = "2010-04-01"


@dataclass(frozen=True)
class Fault:
    """One scripted answer. ``kind``: accept | error | problem | drop_before | drop_after |
    slow | garbage."""

    kind: str
    status: int = 201
    code: int | None = None
    message: str = ""
    retry_after: str | None = None
    seconds: float = 0.0

    @classmethod
    def error(cls, code: int | None, status: int = 400, message: str = "",
              retry_after: str | float | None = None) -> Fault:
        return cls("error", status=status, code=code, message=message,
                   retry_after=None if retry_after is None else f"{retry_after:g}"
                   if isinstance(retry_after, (int, float)) else str(retry_after))

    @classmethod
    def problem(cls, code: int, status: int = 400, title: str = "Bad request") -> Fault:
        return cls("problem", status=status, code=code, message=title)

    @classmethod
    def slow(cls, seconds: float) -> Fault:
        return cls("slow", seconds=seconds)


NAMED: dict[str, Fault] = {
    "accept": Fault("accept"),
    "invalid": Fault.error(21211, message="The 'To' number {to} is not a valid phone number."),
    "opted_out": Fault.error(21610, message="Attempt to send to unsubscribed recipient"),
    "landline": Fault.error(21614, message="'To' number is not a valid mobile number"),
    "unroutable": Fault.error(21612, message="The 'To' phone number is not currently reachable "
                                             "via SMS"),
    "filtered": Fault.error(30007, message="Message filtered"),
    "throttled": Fault.error(20429, status=429, message="Too Many Requests", retry_after=2),
    "unavailable": Fault.error(20503, status=503, message="Service Unavailable"),
    "server_error": Fault.error(20500, status=500, message="Internal Server Error"),
    "auth": Fault.error(20003, status=401, message="Authenticate"),
    "drop_before": Fault("drop_before"),
    "drop_after": Fault("drop_after"),
    "lost": Fault("drop_after"),
    "garbage": Fault("garbage"),
}


def fault(outcome: str | Fault) -> Fault:
    """A Fault from a name in :data:`NAMED`, ``"slow:N"``, or a Fault."""
    if isinstance(outcome, Fault):
        return outcome
    if outcome.startswith("slow:"):
        return Fault.slow(float(outcome.split(":", 1)[1]))
    try:
        return NAMED[outcome]
    except KeyError:
        raise ValueError(f"unknown fake-Twilio outcome {outcome!r}") from None


@dataclass
class Recorded:
    """One request as received: ``params`` are the form (POST) or query (GET) values, first
    value per name; ``time`` is ``time.monotonic()`` at arrival; ``outcome`` what was done."""

    method: str
    path: str
    params: dict[str, str]
    time: float
    at: dt.datetime
    user: str | None
    outcome: str = ""
    route: str = ""


@dataclass
class _State:
    messages: dict[str, dict[str, Any]] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)


def _rfc2822(when: dt.datetime) -> str:
    return email.utils.format_datetime(when.astimezone(dt.timezone.utc), usegmt=True)


def _segments(body: str) -> int:
    """Segments as Twilio counts them on the text as received (no normalisation)."""
    from outreach.input.text import gsm7_septets, is_gsm7, utf16_units

    if not body:
        return 1
    if is_gsm7(body):
        units, single, multi = gsm7_septets(body), 160, 153
    else:
        units, single, multi = utf16_units(body), 70, 67
    return 1 if units <= single else math.ceil(units / multi)


_ROUTES = [
    ("account", "GET", re.compile(r"^/2010-04-01/Accounts/(?P<account>[^/]+)\.json$")),
    ("create", "POST", re.compile(r"^/2010-04-01/Accounts/(?P<account>[^/]+)/Messages\.json$")),
    ("list", "GET", re.compile(r"^/2010-04-01/Accounts/(?P<account>[^/]+)/Messages\.json$")),
    ("fetch", "GET", re.compile(
        r"^/2010-04-01/Accounts/(?P<account>[^/]+)/Messages/(?P<sid>[^/]+)\.json$")),
]


class FakeTwilio:
    """The fake server. Thread-safe; start with ``with FakeTwilio() as server`` or
    :meth:`start`/:meth:`stop`.

    ``latency`` (seconds) delays every answer (100 ms for the throughput benchmark);
    ``create_delay`` (seconds) is how long Twilio takes to create a message before it is
    stored and listed (it is created even if the client has gone meanwhile);
    ``price`` is returned on created messages (Twilio returns null until billed; give
    ``"-0.0450"`` to test conversion); ``account_status`` is the account's ``status``.
    """

    def __init__(self, *, account_sid: str = ACCOUNT_SID, auth_token: str = AUTH_TOKEN,
                 api_keys: dict[str, str] | None = None, latency: float = 0.0,
                 price: str | None = None, price_unit: str = "USD",
                 account_status: str = "active",
                 friendly_name: str = "Sở Y tế Cần Thơ (thử nghiệm)",
                 create_delay: float = 0.0) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.api_keys = dict(api_keys if api_keys is not None else {API_KEY: API_SECRET})
        self.latency = latency
        self.create_delay = create_delay
        self.price = price
        self.price_unit = price_unit
        self.account_status = account_status
        self.friendly_name = friendly_name
        self.requests: list[Recorded] = []
        self._state = _State()
        self._by_number: dict[str, deque[Fault]] = defaultdict(deque)
        self._queue: deque[tuple[str, Fault]] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> FakeTwilio:
        handler = type("Handler", (_Handler,), {"fake": self})
        server = _Server(("127.0.0.1", 0), handler, bind_and_activate=False)
        server.daemon_threads = True
        server.block_on_close = False
        server.request_queue_size = 512  # the default 5 drops SYNs when 64 clients connect
        server.server_bind()
        server.server_activate()
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.01},
                                        name="fake-twilio", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeTwilio:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "server not started"
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def gateway_options(self, **overrides: Any) -> dict[str, Any]:
        """Keyword options for TwilioGateway aimed at this server."""
        opts: dict[str, Any] = {"account_sid": self.account_sid, "auth_token": self.auth_token,
                                "sender": "SYTECANTHO", "environ": {}}
        opts.update(overrides)
        if "api_url" not in opts:
            opts["api_url"] = self.base_url
        return opts

    # -- scripting ---------------------------------------------------------------------------

    def script(self, to: str, *outcomes: str | Fault) -> None:
        """Answers for Message-create requests to ``to``, one per request, then ``accept``."""
        with self._lock:
            self._by_number[to].extend(fault(o) for o in outcomes)

    def queue(self, *outcomes: str | Fault, route: str = "create") -> None:
        """Answers for the next requests on ``route`` (create | fetch | list | account | any),
        taken before any per-number script."""
        with self._lock:
            self._queue.extend((route, fault(o)) for o in outcomes)

    def unused(self) -> list[str]:
        """Scripted answers never consumed (a test that scripts one expects it used)."""
        with self._lock:
            left = [f"{route}:{f.kind}:{f.code}" for route, f in self._queue]
            left += [f"{to}:{f.kind}:{f.code}" for to, q in self._by_number.items() for f in q]
        return left

    def _take(self, route: str, to: str | None) -> Fault:
        with self._lock:
            for i, (r, f) in enumerate(self._queue):
                if r in (route, "any"):
                    del self._queue[i]
                    return f
            if route == "create" and to is not None and self._by_number.get(to):
                return self._by_number[to].popleft()
        return NAMED["accept"]

    # -- state -------------------------------------------------------------------------------

    @property
    def messages(self) -> list[dict[str, Any]]:
        """Accepted messages in order of acceptance (copies of the stored JSON)."""
        with self._lock:
            return [dict(self._state.messages[s]) for s in self._state.order]

    def creates(self) -> list[Recorded]:
        """Every Message-create request received, accepted or not."""
        with self._lock:
            return [r for r in self.requests if r.route == "create"]

    def set_status(self, sid: str, status: str, *, error_code: int | None = None,
                   price: str | None = None) -> None:
        """Move a stored message (as Twilio would after carrier receipts)."""
        now = dt.datetime.now(dt.timezone.utc)
        with self._lock:
            msg = self._state.messages[sid]
            msg["status"] = status
            msg["error_code"] = error_code
            msg["error_message"] = None if error_code is None else f"error {error_code}"
            msg["date_updated"] = _rfc2822(now)
            if status in ("sent", "delivered", "undelivered", "read") and not msg["date_sent"]:
                msg["date_sent"] = _rfc2822(now)
            if price is not None:
                msg["price"] = price

    def add_message(self, to: str, body: str, *, created: dt.datetime | None = None,
                    status: str = "delivered") -> str:
        """Store a message as if sent earlier (for listing tests)."""
        created = created or dt.datetime.now(dt.timezone.utc)
        sid = self._store({"To": to, "Body": body, "From": "SYTECANTHO"}, created)
        with self._lock:
            self._state.messages[sid]["status"] = status
            self._state.messages[sid]["date_sent"] = _rfc2822(created)
        return sid

    def _store(self, params: dict[str, str], now: dt.datetime) -> str:
        sid = "SM" + uuid.uuid4().hex
        service = params.get("MessagingServiceSid")
        body = params.get("Body", "")
        msg = {
            "account_sid": self.account_sid, "api_version": API_VERSION, "body": body,
            "date_created": _rfc2822(now), "date_sent": None, "date_updated": _rfc2822(now),
            "direction": "outbound-api", "error_code": None, "error_message": None,
            "from": params.get("From"), "messaging_service_sid": service,
            "num_media": "0",
            # A Messaging Service picks the sender later: num_segments is "0" until then.
            "num_segments": "0" if service and not params.get("From") else str(_segments(body)),
            "price": self.price, "price_unit": self.price_unit, "sid": sid,
            "status": "accepted" if service else "queued", "to": params.get("To"),
            "uri": f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}.json",
            "subresource_uris": {
                "media": f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}/Media.json"},
            # Not in Twilio's answer; kept for tests (the SDK ignores unknown fields).
            "status_callback": params.get("StatusCallback"),
            "validity_period": params.get("ValidityPeriod"),
        }
        with self._lock:
            self._state.messages[sid] = msg
            self._state.order.append(sid)
        return sid

    def _list(self, query: dict[str, str]) -> dict[str, Any]:
        def parse(value: str) -> tuple[dt.datetime, bool]:
            if len(value) == 10:
                return dt.datetime.fromisoformat(value).replace(tzinfo=dt.timezone.utc), True
            return dt.datetime.fromisoformat(value.replace("Z", "+00:00")), False

        with self._lock:
            rows = [dict(self._state.messages[s]) for s in reversed(self._state.order)]
        out = []
        for m in rows:
            if "To" in query and m["to"] != query["To"]:
                continue
            if "From" in query and m["from"] != query["From"]:
                continue
            sent = (email.utils.parsedate_to_datetime(m["date_sent"]) if m["date_sent"] else None)
            ok = True
            for key, op in (("DateSent", "eq"), ("DateSent>", "ge"), ("DateSent<", "le")):
                if key not in query:
                    continue
                if sent is None:  # Twilio: queued messages have no DateSent, never match
                    ok = False
                    break
                bound, date_only = parse(query[key])
                left: Any = sent.date() if date_only else sent
                right: Any = bound.date() if date_only else bound
                if (op == "eq" and left != right) or (op == "ge" and left < right) or (
                        op == "le" and left > right):
                    ok = False
            if ok:
                out.append(m)
        size = int(query.get("PageSize", 50))
        page = int(query.get("Page", 0))
        chunk = out[page * size:(page + 1) * size]
        path = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages.json"
        keep = {k: v for k, v in query.items() if k not in ("Page", "PageSize", "PageToken")}

        def uri(p: int) -> str:
            return path + "?" + urlencode({**keep, "PageSize": size, "Page": p})

        more = (page + 1) * size < len(out)
        return {"messages": chunk, "end": page * size + len(chunk) - 1, "first_page_uri": uri(0),
                "next_page_uri": uri(page + 1) if more else None, "page": page,
                "page_size": size, "previous_page_uri": uri(page - 1) if page else None,
                "start": page * size, "uri": uri(page)}


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # dropped connections are on purpose


class _Handler(BaseHTTPRequestHandler):
    fake: FakeTwilio
    protocol_version = "HTTP/1.1"  # keep-alive, as api.twilio.com

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def finish(self) -> None:
        try:
            super().finish()
        except (OSError, ValueError):
            pass  # the socket was closed by _drop

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def _handle(self, method: str) -> None:
        fake = self.fake
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if len(raw) < length:
            # the client went away mid-body (killed): a real server never sees this request
            self.close_connection = True
            return
        source = raw.decode("utf-8") if method == "POST" else parts.query
        params = {k: v[0] for k, v in parse_qs(source, keep_blank_values=True).items()}
        user, password = self._credentials()
        rec = Recorded(method, parts.path, params, time.monotonic(),
                       dt.datetime.now(dt.timezone.utc), user)
        with fake._lock:
            fake.requests.append(rec)
        route, match = "unknown", None
        for name, verb, pattern in _ROUTES:
            m = pattern.match(parts.path)
            if m and verb == method:
                route, match = name, m
                break
        rec.route = route
        authorised = ((user == fake.account_sid and password == fake.auth_token)
                      or (user in fake.api_keys and password == fake.api_keys[user]))
        if not authorised:
            rec.outcome = "unauthorised"
            return self._error(401, 20003, "Authenticate")
        if match is None or match.group("account") != fake.account_sid:
            rec.outcome = "not-found"
            return self._error(404, 20404, f"The requested resource {parts.path} was not found")

        f = fake._take(route, params.get("To"))
        rec.outcome = f.kind if f.kind not in ("error", "problem") else f"{f.kind}:{f.code}"
        if f.kind == "drop_before":
            return self._drop()
        if f.kind == "error":
            self._delay(fake.latency)
            message = f.message.format(to=params.get("To", ""))
            headers = {"Retry-After": f.retry_after} if f.retry_after is not None else {}
            return self._error(f.status, f.code, message, headers)
        if f.kind == "problem":
            return self._json(f.status, {"type": f"https://www.twilio.com/docs/errors/{f.code}",
                                         "title": f.message, "status": f.status, "code": f.code,
                                         "detail": f"{f.message} for {params.get('To', '')}"})

        if route == "create" and not params.get("To"):
            rec.outcome = "error:21604"
            return self._error(400, 21604, "A 'To' phone number is required.")
        if route == "create":
            self._delay(fake.create_delay)
            sid = fake._store(params, dt.datetime.now(dt.timezone.utc))
            if f.kind == "drop_after":
                return self._drop()
            if f.kind == "garbage":
                return self._raw(201, b"<html><body>Welcome to the proxy</body></html>",
                                 "text/html")
            self._delay(f.seconds if f.kind == "slow" else 0.0)
            self._delay(fake.latency)
            with fake._lock:
                body = dict(fake._state.messages[sid])
            body.pop("status_callback", None)
            body.pop("validity_period", None)
            return self._json(201, body)
        if f.kind == "drop_after":
            return self._drop()
        self._delay(f.seconds if f.kind == "slow" else 0.0)
        self._delay(fake.latency)
        if route == "account":
            return self._json(200, {
                "sid": fake.account_sid, "friendly_name": fake.friendly_name,
                "status": fake.account_status, "type": "Full",
                "owner_account_sid": fake.account_sid,
                # Twilio returns the auth token in the Account resource: check() must not repeat it.
                "auth_token": fake.auth_token,
                "date_created": _rfc2822(dt.datetime(2024, 1, 2, tzinfo=dt.timezone.utc)),
                "date_updated": _rfc2822(dt.datetime(2024, 1, 2, tzinfo=dt.timezone.utc)),
                "uri": f"/{API_VERSION}/Accounts/{fake.account_sid}.json"})
        if route == "fetch":
            with fake._lock:
                msg = fake._state.messages.get(match.group("sid"))
                msg = dict(msg) if msg else None
            if msg is None:
                return self._error(404, 20404, "The requested resource was not found")
            msg.pop("status_callback", None)
            msg.pop("validity_period", None)
            return self._json(200, msg)
        if route == "list":
            payload = fake._list(params)
            for m in payload["messages"]:
                m.pop("status_callback", None)
                m.pop("validity_period", None)
            return self._json(200, payload)
        return self._error(404, 20404, "not found")

    # -- helpers -----------------------------------------------------------------------------

    def _credentials(self) -> tuple[str | None, str | None]:
        header = self.headers.get("Authorization") or ""
        if not header.startswith("Basic "):
            return None, None
        try:
            user, _, password = base64.b64decode(header[6:]).decode("utf-8").partition(":")
        except Exception:
            return None, None
        return user, password

    def _delay(self, seconds: float) -> None:
        if seconds > 0:
            self.fake._stopping.wait(seconds)

    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._raw(status, json.dumps(payload).encode("utf-8"), "application/json; charset=utf-8",
                  headers)

    def _raw(self, status: int, data: bytes, content_type: str,
             headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        # Head and body in one send: two small writes meet Nagle + delayed ACK (40 ms stalls).
        self._headers_buffer.append(b"\r\n" + data)
        self.flush_headers()

    def _error(self, status: int, code: int | None, message: str,
               headers: dict[str, str] | None = None) -> None:
        self._json(status, {"code": code, "message": message,
                            "more_info": f"https://www.twilio.com/docs/errors/{code}",
                            "status": status}, headers)

    def _drop(self) -> None:
        """Close with a TCP reset and no answer."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass


@contextlib.contextmanager
def blackhole() -> Iterator[int]:
    """A port on 127.0.0.1 whose listen queue is full: connecting times out (a connect
    timeout, the request never leaves). Linux drops SYNs when the accept backlog is full."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(3):
            c = socket.socket()
            c.setblocking(False)
            try:
                c.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
            fillers.append(c)
        time.sleep(0.05)
        yield port
    finally:
        for c in fillers:
            c.close()
        listener.close()


def closed_port() -> int:
    """A port on 127.0.0.1 nobody listens on (connection refused: a connect failure)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- pytest fixtures: import them into a test module
#    (``from tests.fakes.twilio_server import twilio_server``)

_ENV_TO_CLEAR = ("TWILIO_EDGE", "TWILIO_REGION", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY",
                 "http_proxy", "https_proxy", "all_proxy", "TWILIO_ACCOUNT_SID",
                 "TWILIO_AUTH_TOKEN", "TWILIO_API_KEY", "TWILIO_API_SECRET", "TWILIO_FROM",
                 "TWILIO_MESSAGING_SERVICE_SID", "OUTREACH_TWILIO_API_URL",
                 "OUTREACH_PUBLIC_BASE_URL", "TWILIO_VALIDITY_PERIOD")


def isolate(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loopback only, and the environment variables that could aim the client elsewhere
    (edge, region, proxies, credentials) cleared."""
    _isolate(monkeypatch, _ENV_TO_CLEAR)


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """:func:`isolate` as a fixture."""
    isolate(monkeypatch)


@pytest.fixture
def twilio_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeTwilio]:
    """A fresh :class:`FakeTwilio` on 127.0.0.1 for one test, the test isolated by
    :func:`isolate`."""
    isolate(monkeypatch)
    with FakeTwilio() as server:
        yield server
