"""A Zalo-compatible ZNS + OA + OAuth v4 server on 127.0.0.1 with scriptable faults.

Usage::

    with FakeZalo() as z:                       # free port on 127.0.0.1
        z.script("+84912345001", "error:-118")  # per phone (or OA user id), one per request
        z.queue("drop_after")                   # next send request, whoever it is for
        z.expire_access_tokens()                # every issued access token now answers -124
        gw = ZaloGateway(db=db, **z.gateway_options())
        z.seed(gw.tokens)                       # store the fake's current tokens in the db
        ...
        z.requests        # every request (method, path, headers, json/form/query, outcome)
        z.sends           # accepted messages: kind, phone/user_id, template data, text, msg_id
        z.refresh_calls   # POSTs to /v4/oa/access_token

Facts it reproduces (domain-facts "Zalo OA API v3 / ZNS"): header ``access_token`` (not
Bearer); errors as HTTP 200 with ``error != 0``; phone ``84…`` without "+"; OAuth v4 refresh
with a SINGLE-USE refresh token (reusing one → an error answer) returning a new pair and
``"expires_in": "90000"``.

Send outcomes (strings):

===================  =========================================================================
``accept``           200 ``{"error": 0, "data": {"msg_id", "sent_time", "quota"...}}``
``error:<code>``     200 ``{"error": <code>, "message": ...}``; nothing recorded
names                ``invalid`` (-108), ``no_zalo`` (-118), ``refuses`` (-114), ``rate`` (-32),
                     ``quota`` (-144), ``night`` (-133), ``template`` (-131), ``balance`` (-115),
                     ``token`` (-124), ``unknown_code`` (-9999)
``http:<status>``    that HTTP status with a JSON body (``http:503``, ``http:429`` adds
                     ``Retry-After: 7``); nothing recorded
``drop_before``      request read, NOT recorded, connection reset without an answer
``drop_after``       message recorded (accepted), connection reset: ``lost`` is the same
``slow:<seconds>``   message recorded, answer after that many seconds
===================  =========================================================================

Templates (:meth:`FakeZalo.template`): ``GET /template/info/v2?template_id=`` answers a
registered template's ``listParams`` (``name``, ``require``, ``type``, ``maxLength``,
``minLength``, ``acceptNull``) and ``status``; an unregistered id answers -109 (template id
invalid). A ZNS send whose ``template_data`` value is longer than its parameter's
``maxLength`` answers -112 (template data invalid), as Zalo does; ``template_reads`` counts
the information requests.

OAuth outcomes (:meth:`FakeZalo.queue_oauth`): ``drop_before``, ``drop_after`` (refresh token
consumed, answer lost), ``http:<status>``, ``reject`` (error answer), ``slow:<seconds>``.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
import struct
import threading
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.fakes import isolate as _isolate

APP_ID = "3962172718436219112"
SECRET_KEY = "zalo-app-s3cret-d0-not-leak"
FIRST_ACCESS_TOKEN = "AT-zalo-0001-d0-not-leak"
FIRST_REFRESH_TOKEN = "RT-zalo-0001-d0-not-leak"

NAMED_ERRORS: dict[str, int] = {
    "invalid": -108, "no_zalo": -118, "refuses": -114, "rate": -32, "quota": -144,
    "night": -133, "template": -131, "balance": -115, "token": -124, "unknown_code": -9999,
}
_MESSAGES = {
    -108: "Phone number is invalid", -118: "Zalo account not existed or inactive",
    -114: "User is inactive, blocked or does not receive messages", -32: "Exceed rate limit",
    -144: "OA has exceeded the daily ZNS quota", -133: "ZNS cannot be sent at night",
    -131: "Template has not been approved", -115: "Insufficient balance",
    -124: "Access token is invalid", -216: "Access token is invalid",
    -220: "Access token has expired", -112: "Template data invalid",
}


@dataclass
class Recorded:
    """One request as received. ``json`` for JSON bodies, ``form`` for OAuth forms, ``query``
    for GETs; ``access_token`` the header value; ``outcome`` what the fake did."""

    method: str
    path: str
    headers: dict[str, str]
    json: Any
    form: dict[str, str]
    query: dict[str, str]
    access_token: str | None
    time: float
    outcome: str = ""


@dataclass
class Sent:
    """A message the fake accepted (recorded before answering, so ``drop_after`` has one)."""

    kind: str  # zns | oa
    msg_id: str
    phone: str | None = None
    user_id: str | None = None
    template_id: str | None = None
    template_data: dict[str, Any] = field(default_factory=dict)
    tracking_id: str | None = None
    text: str | None = None
    access_token: str | None = None
    status: int = 0  # 0 sent, 1 delivered (GET /message/status)
    delivery_time: int | None = None


class FakeZalo:
    """The fake server; thread-safe. ``access_token``/``refresh_token`` are the currently
    valid pair; ``expires_in`` is what OAuth answers (string, as Zalo). ``oauth_delay`` delays
    every OAuth answer; ``token_error_delay`` delays answers to requests with a rejected token
    (to make several workers overlap); ``daily_quota`` is reported by /message/quota."""

    def __init__(self, *, app_id: str = APP_ID, secret_key: str = SECRET_KEY,
                 access_token: str = FIRST_ACCESS_TOKEN, refresh_token: str = FIRST_REFRESH_TOKEN,
                 expires_in: str = "90000", oauth_delay: float = 0.0,
                 token_error_delay: float = 0.0, daily_quota: int = 500) -> None:
        self.app_id, self.secret_key = app_id, secret_key
        self.access_token, self.refresh_token = access_token, refresh_token
        self.expires_in = expires_in
        self.oauth_delay = oauth_delay
        self.token_error_delay = token_error_delay
        self.daily_quota = daily_quota
        self.requests: list[Recorded] = []
        self.sends: list[Sent] = []
        self.templates: dict[str, dict[str, Any]] = {}
        self.template_reads = 0
        self.refresh_calls = 0
        self.refresh_tokens_received: list[str] = []
        self.issued: list[tuple[str, str]] = [(access_token, refresh_token)]
        self.hooks: list[Callable[[Recorded], None]] = []
        self._valid_access: dict[str, bool] = {access_token: True}  # token -> not expired
        self._used_refresh: set[str] = set()
        self._by_key: dict[str, deque[str]] = defaultdict(deque)
        self._queue: deque[str] = deque()
        self._oauth_queue: deque[str] = deque()
        self._read_queue: deque[str] = deque()
        self._counter = itertools.count(2)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> FakeZalo:
        handler = type("Handler", (_Handler,), {"fake": self})
        self._server = _Server(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,),
                                        daemon=True, name="fake-zalo")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> FakeZalo:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the fake first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def gateway_options(self, **overrides: Any) -> dict[str, Any]:
        """Constructor options aiming a ZaloGateway at this fake (no proxies from env)."""
        opts = {"app_id": self.app_id, "secret_key": self.secret_key, "oa_api_url": self.url,
                "zns_api_url": self.url, "oauth_url": self.url, "trust_env": False,
                "environ": {}}
        opts.update(overrides)
        return opts

    def seed(self, store: Any, expires_in: float = 90000) -> int:
        """Store the fake's current token pair with ``store.set_tokens``; returns the version."""
        return store.set_tokens(self.access_token, self.refresh_token, expires_in)

    # -- scripting ---------------------------------------------------------------------------
    def script(self, key: str, *outcomes: str) -> None:
        """Outcomes for sends to ``key`` (E.164 "+84…", "84…", or an OA user id), one per
        authorised request, then ``accept``."""
        with self._lock:
            self._by_key[key.lstrip("+")].extend(outcomes)

    def queue(self, *outcomes: str) -> None:
        """Outcomes for the next authorised send requests, whoever they are for (before the
        per-key script)."""
        with self._lock:
            self._queue.extend(outcomes)

    def queue_reads(self, *outcomes: str) -> None:
        """Outcomes for the next GET /message/status or /message/quota requests: ``drop``,
        ``slow:<seconds>`` or ``http:<status>`` (then the normal answer)."""
        with self._lock:
            self._read_queue.extend(outcomes)

    def template(self, template_id: str, params: dict[str, int] | None = None, *,
                 status: str = "ENABLE", required: bool = True) -> None:
        """Register a ZNS template: ``params`` name -> maxLength (characters)."""
        with self._lock:
            self.templates[str(template_id)] = {
                "templateId": int(template_id) if str(template_id).isdigit() else template_id,
                "templateName": f"Mẫu {template_id}", "status": status,
                "listParams": [{"name": k, "require": required, "type": "STRING",
                                "maxLength": v, "minLength": 0, "acceptNull": False}
                               for k, v in (params or {}).items()]}

    def queue_oauth(self, *outcomes: str) -> None:
        with self._lock:
            self._oauth_queue.extend(outcomes)

    def unused(self) -> list[str]:
        """Scripted outcomes never consumed (a test that scripts one expects it used)."""
        with self._lock:
            return [*self._queue, *(o for q in self._by_key.values() for o in q)]

    def expire_access_tokens(self) -> None:
        """Every access token issued so far now answers -124 (the 25 h lifetime passed)."""
        with self._lock:
            for token in self._valid_access:
                self._valid_access[token] = False

    def deliver(self, msg_id: str, when_ms: int | None = None) -> None:
        """Mark a message delivered for GET /message/status."""
        with self._lock:
            for s in self.sends:
                if s.msg_id == msg_id:
                    s.status = 1
                    s.delivery_time = when_ms or int(time.time() * 1000)

    def _take(self, key: str | None) -> str:
        with self._lock:
            if self._queue:
                return self._queue.popleft()
            q = self._by_key.get((key or "").lstrip("+"))
            return q.popleft() if q else "accept"

    def _token_ok(self, token: str | None) -> bool:
        with self._lock:
            return bool(token) and self._valid_access.get(token or "", False)

    def _refresh(self, refresh_token: str, consume_only: bool = False) -> tuple[str, str] | None:
        with self._lock:
            if refresh_token != self.refresh_token or refresh_token in self._used_refresh:
                return None
            self._used_refresh.add(refresh_token)
            n = next(self._counter)
            access, refresh = f"AT-zalo-{n:04d}-d0-not-leak", f"RT-zalo-{n:04d}-d0-not-leak"
            self.access_token, self.refresh_token = access, refresh
            self._valid_access[access] = True
            self.issued.append((access, refresh))
            return access, refresh

    def _record_send(self, kind: str, body: dict[str, Any], token: str | None) -> Sent:
        msg_id = uuid.uuid4().hex
        if kind == "zns":
            sent = Sent("zns", msg_id, phone=str(body.get("phone")),
                        template_id=str(body.get("template_id")),
                        template_data=dict(body.get("template_data") or {}),
                        tracking_id=body.get("tracking_id"), access_token=token)
        else:
            sent = Sent("oa", msg_id, user_id=str((body.get("recipient") or {}).get("user_id")),
                        text=(body.get("message") or {}).get("text"), access_token=token)
        with self._lock:
            self.sends.append(sent)
        return sent

    def zns(self) -> list[Sent]:
        with self._lock:
            return [s for s in self.sends if s.kind == "zns"]

    def send_requests(self) -> list[Recorded]:
        with self._lock:
            return [r for r in self.requests
                    if r.path in ("/message/template", "/v3.0/oa/message/cs")]


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # dropped connections are on purpose


class _Handler(BaseHTTPRequestHandler):
    fake: FakeZalo
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def finish(self) -> None:
        try:
            super().finish()
        except (OSError, ValueError):
            pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def _handle(self, method: str) -> None:
        fake = self.fake
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        ctype = self.headers.get("Content-Type") or ""
        body: Any = None
        form: dict[str, str] = {}
        if raw and "json" in ctype:
            body = json.loads(raw.decode("utf-8"))
        elif raw:
            form = {k: v[0] for k, v in parse_qs(raw.decode("utf-8"), keep_blank_values=True).items()}
        query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        token = self.headers.get("access_token")
        rec = Recorded(method, parts.path, dict(self.headers.items()), body, form, query, token,
                       time.monotonic())
        with fake._lock:
            fake.requests.append(rec)
            hooks = list(fake.hooks)
        for hook in hooks:
            hook(rec)

        if parts.path == "/v4/oa/access_token" and method == "POST":
            return self._oauth(rec)
        routes = {("POST", "/message/template"), ("POST", "/v3.0/oa/message/cs"),
                  ("GET", "/message/status"), ("GET", "/message/quota"),
                  ("GET", "/template/info/v2")}
        if (method, parts.path) not in routes:
            rec.outcome = "not-found"
            return self._json(404, {"error": 404, "message": "not found"})
        if not fake._token_ok(token):
            rec.outcome = "error:-124"
            self._delay(fake.token_error_delay)
            return self._zalo_error(-124)
        if method == "GET":
            with fake._lock:
                fault = fake._read_queue.popleft() if fake._read_queue else None
            if fault == "drop":
                rec.outcome = "drop"
                return self._drop()
            if fault and fault.startswith("http:"):
                rec.outcome = fault
                return self._json(int(fault.split(":", 1)[1]), {"error": -1, "message": "HTTP"})
            if fault and fault.startswith("slow:"):
                self._delay(float(fault.split(":", 1)[1]))
        if parts.path == "/template/info/v2":
            with fake._lock:
                fake.template_reads += 1
                tpl = fake.templates.get(query.get("template_id", ""))
            if tpl is None:
                rec.outcome = "error:-109"
                return self._json(200, {"error": -109, "message": "Template ID invalid"})
            rec.outcome = "template"
            return self._json(200, {"error": 0, "message": "Success", "data": tpl})
        if parts.path == "/message/quota":
            rec.outcome = "quota"
            with fake._lock:
                used = len(fake.sends)
            return self._json(200, {"error": 0, "message": "Success", "data": {
                "dailyQuota": str(fake.daily_quota),
                "remainingQuota": str(max(fake.daily_quota - used, 0))}})
        if parts.path == "/message/status":
            with fake._lock:
                found = next((s for s in fake.sends if s.msg_id == query.get("message_id")), None)
            if found is None:
                rec.outcome = "error:-201"
                return self._json(200, {"error": -201, "message": "message_id is invalid"})
            rec.outcome = "status"
            return self._json(200, {"error": 0, "message": "Success", "data": {
                "delivery_time": str(found.delivery_time or ""), "status": found.status,
                "message": "delivered" if found.status == 1 else "sent"}})

        kind = "zns" if parts.path == "/message/template" else "oa"
        body = body or {}
        key = (str(body.get("phone") or "") if kind == "zns"
               else str((body.get("recipient") or {}).get("user_id") or ""))
        outcome = fake._take(key)
        if kind == "zns" and outcome == "accept":
            with fake._lock:
                tpl = fake.templates.get(str(body.get("template_id")))
            data = body.get("template_data") or {}
            for p in (tpl or {}).get("listParams", []):
                if len(str(data.get(p["name"], ""))) > p["maxLength"]:
                    outcome = "error:-112"
        rec.outcome = outcome
        if outcome in NAMED_ERRORS:
            outcome = f"error:{NAMED_ERRORS[outcome]}"
        if outcome.startswith("error:"):
            return self._zalo_error(int(outcome.split(":", 1)[1]))
        if outcome.startswith("http:"):
            status = int(outcome.split(":", 1)[1])
            headers = {"Retry-After": "7"} if status == 429 else {}
            return self._json(status, {"error": status, "message": "HTTP error"}, headers)
        if outcome == "drop_before":
            return self._drop()
        if outcome not in ("accept", "drop_after", "lost") and not outcome.startswith("slow:"):
            raise AssertionError(f"unknown fake-Zalo outcome {outcome!r}")
        sent = fake._record_send(kind, body, token)
        if outcome in ("drop_after", "lost"):
            return self._drop()
        if outcome.startswith("slow:"):
            self._delay(float(outcome.split(":", 1)[1]))
        now_ms = int(time.time() * 1000)
        with fake._lock:
            remaining = max(fake.daily_quota - len(fake.sends), 0)
        if kind == "zns":
            data = {"msg_id": sent.msg_id, "sent_time": str(now_ms), "sending_mode": "1",
                    "quota": {"dailyQuota": str(fake.daily_quota),
                              "remainingQuota": str(remaining)}}
        else:
            data = {"message_id": sent.msg_id, "user_id": sent.user_id}
        return self._json(200, {"error": 0, "message": "Success", "data": data})

    def _oauth(self, rec: Recorded) -> None:
        fake = self.fake
        with fake._lock:
            fake.refresh_calls += 1
            fake.refresh_tokens_received.append(rec.form.get("refresh_token", ""))
            outcome = fake._oauth_queue.popleft() if fake._oauth_queue else "ok"
        rec.outcome = f"oauth:{outcome}"
        self._delay(fake.oauth_delay)
        if outcome == "drop_before":
            return self._drop()
        if outcome.startswith("http:"):
            return self._json(int(outcome.split(":", 1)[1]), {"error": -1, "message": "HTTP"})
        if outcome.startswith("slow:"):
            self._delay(float(outcome.split(":", 1)[1]))
        form = rec.form
        if (self.headers.get("secret_key") != fake.secret_key
                or form.get("app_id") != fake.app_id
                or form.get("grant_type") != "refresh_token"):
            rec.outcome = "oauth:bad-app"
            return self._json(200, {"error_name": "Invalid parameter",
                                    "error_reason": "app_id or secret_key is invalid",
                                    "error_description": "Invalid app credentials",
                                    "error": -14002})
        pair = None if outcome == "reject" else fake._refresh(form.get("refresh_token", ""))
        if pair is None:
            rec.outcome = "oauth:invalid-refresh-token"
            return self._json(200, {"error_name": "Invalid parameter",
                                    "error_reason": "refresh_token is invalid or used",
                                    "error_description": "Invalid refresh token",
                                    "error": -14014})
        if outcome == "drop_after":
            return self._drop()
        return self._json(200, {"access_token": pair[0], "refresh_token": pair[1],
                                "expires_in": fake.expires_in})

    # -- helpers -----------------------------------------------------------------------------
    def _delay(self, seconds: float) -> None:
        if seconds > 0:
            self.fake._stopping.wait(seconds)

    def _zalo_error(self, code: int) -> None:
        self._json(200, {"error": code, "message": _MESSAGES.get(code, f"error {code}")})

    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self._headers_buffer.append(b"\r\n" + data)
        self.flush_headers()

    def _drop(self) -> None:
        """Close with a TCP reset and no answer."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass


def closed_port() -> int:
    """A port on 127.0.0.1 nobody listens on (connection refused: a connect failure)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_ENV_TO_CLEAR = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                 "all_proxy", "ZALO_APP_ID", "ZALO_SECRET_KEY", "ZALO_OA_SECRET_KEY",
                 "OUTREACH_ZALO_OA_API_URL", "OUTREACH_ZALO_ZNS_API_URL", "OUTREACH_ZALO_OAUTH_URL",
                 "OUTREACH_ZALO_CONNECT_TIMEOUT", "OUTREACH_ZALO_READ_TIMEOUT",
                 "OUTREACH_ZALO_ZNS_MODE", "OUTREACH_ZALO_TEMPLATE_ID", "OUTREACH_ZALO_BODY_PARAM")


def isolate(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loopback only, and the environment variables that could aim the client elsewhere
    (Zalo settings) cleared."""
    _isolate(monkeypatch, _ENV_TO_CLEAR)


@pytest.fixture
def zalo_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeZalo]:
    """A fresh :class:`FakeZalo` on 127.0.0.1 for one test, the test isolated by :func:`isolate`."""
    isolate(monkeypatch)
    with FakeZalo() as server:
        yield server


@contextlib.contextmanager
def running(**options: Any) -> Iterator[FakeZalo]:
    """``with running(oauth_delay=0.3) as z:`` — a FakeZalo with options."""
    with FakeZalo(**options) as server:
        yield server
