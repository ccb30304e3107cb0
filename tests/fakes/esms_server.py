"""An eSMS.vn-compatible API on 127.0.0.1 with scriptable faults (the documented shapes of
``SendMultipleMessage_V4_post_json``, ``GetSendStatus``, ``GetBalance_json``; see
``outreach/gateways/brandname/esms_codes.json`` for the sources).

Usage::

    with FakeESMS() as server:                     # free port on 127.0.0.1
        server.script("0912345001", "slow:2", "accept")   # per national number, one per request
        gw = ESMSGateway(**server.gateway_options())
        server.messages          # accepted messages: phone, content, request_id, smsid, ...
        server.requests          # every send request's JSON body (secrets included: tests only)
        server.callback_query(m) # the GET query eSMS would call m["callback_url"] with

Dedupe: a request whose ``RequestId`` was already accepted is answered 124 with
``SendStatus`` 5 and no ``SMSID`` (as eSMS's send docs show), whatever is scripted, and
records nothing. Outcomes (one per request to that number, then ``accept``):

=====================  =======================================================================
``accept``             100 + SMSID; the message is recorded
``code:N``             ``CodeResult`` N (99, 101, 102, 103, 104, 108, 140, 146, 177, 300...),
                       nothing recorded
``invalid``            108; ``opted_out`` 99; ``auth`` 101; ``balance`` 103; ``template`` 146;
                       ``brandname`` 104
``throttled``          HTTP 429 with ``Retry-After: 2``; nothing recorded
``unavailable``        HTTP 503; nothing recorded
``lost``/``drop_after``  recorded, then the connection is reset without an answer
``drop_before``        not recorded, connection reset without an answer
``slow:N``             recorded, the answer (100) sent after N seconds
``dup_unconfirmed``    124 without ``SendStatus``; nothing recorded
``dup_rejected``       124 with ``SendStatus`` 4; nothing recorded
``garbage``            recorded, 200 with an HTML body
=====================  =======================================================================
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from tests.fakes import isolate as _isolate

API_KEY = "esms-api-key-0123456789"
SECRET_KEY = "esms-s3cret-d0-not-leak-abcdef"
CALLBACK_SECRET = "callback-s3cret-0123456789abcdef"
NAMED_CODES = {"invalid": "108", "opted_out": "99", "auth": "101", "balance": "103",
               "template": "146", "brandname": "104"}


class FakeESMS:
    """The fake server. ``latency`` (seconds) delays every send answer (the benchmark's
    100 ms)."""

    def __init__(self, *, latency: float = 0.0) -> None:
        self.latency = latency
        self.messages: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []
        self.status: dict[str, dict[str, Any]] = {}
        self._scripts: dict[str, deque[str]] = defaultdict(deque)
        self._accepted_ids: dict[str, str] = {}  # RequestId -> SMSID
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> FakeESMS:
        fake = self

        class Handler(_Handler):
            server_fake = fake

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        server.request_queue_size = 512
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> FakeESMS:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def gateway_options(self, **overrides: Any) -> dict[str, Any]:
        opts = {"api_key": API_KEY, "secret_key": SECRET_KEY, "api_url": self.base_url,
                "sender": "UBNDCANTHO", "loopback_only": True, "timeout": 5,
                "retry_pause": 0.01}
        opts.update(overrides)
        return opts

    # -- scripting ------------------------------------------------------------------------------

    def script(self, phone: str, *outcomes: str) -> None:
        """Outcomes for the next requests to ``phone`` (national ``09...`` or E.164)."""
        if phone.startswith("+84"):
            phone = "0" + phone[3:]
        with self._lock:
            self._scripts[phone].extend(outcomes)

    def _take(self, phone: str) -> str:
        with self._lock:
            q = self._scripts.get(phone)
            return q.popleft() if q else "accept"

    def set_status(self, smsid: str, send_status: int, success: int = 0, failed: int = 0,
                   price: float = 0.0) -> None:
        self.status[smsid] = {"SendStatus": send_status, "SendSuccess": success,
                              "SendFailed": failed, "TotalPrice": price}

    def callback_query(self, message: dict[str, Any], *, send_status: int = 5, success: int = 1,
                       failed: int = 0, price: float = 850.0, telcoid: int = 1) -> dict[str, str]:
        """The query string eSMS's GET callback carries for ``message`` (callback docs)."""
        return {"SMSID": message["smsid"], "SendFailed": str(failed),
                "SendStatus": str(send_status), "SendSuccess": str(success),
                "TotalPrice": f"{price:.4f}", "TotalReceiver": "1", "TotalSent": "1",
                "RequestId": message["request_id"], "TypeId": "2", "telcoid": str(telcoid),
                "phonenumber": message["phone"], "switchsmsid": ""}

    def callback_path(self, message: dict[str, Any], **kw: Any) -> str:
        """Path + query of the callback (the host is ours: OUTREACH_PUBLIC_BASE_URL)."""
        parts = urlsplit(message["callback_url"])
        return f"{parts.path}?{urlencode(self.callback_query(message, **kw))}"

    # -- the routes -----------------------------------------------------------------------------

    def handle_send(self, body: dict[str, Any]) -> tuple[str, Any]:
        """(action, payload): action ``answer`` (JSON), ``status`` (HTTP error), ``reset``."""
        with self._lock:
            self.requests.append(body)
        if body.get("ApiKey") != API_KEY or body.get("SecretKey") != SECRET_KEY:
            return "answer", {"CodeResult": "101", "CountRegenerate": 0,
                              "ErrorMessage": "Authorize Failed"}
        phone = str(body.get("Phone") or "")
        rid = body.get("RequestId") or ""
        with self._lock:
            if rid and rid in self._accepted_ids:
                return "answer", {"CodeResult": "124", "CountRegenerate": 0,
                                  "ErrorMessage": "Request exist 1", "SendStatus": "5"}
        outcome = self._take(phone)
        if outcome.startswith("code:") or outcome in NAMED_CODES:
            code = NAMED_CODES.get(outcome) or outcome.split(":", 1)[1]
            return "answer", {"CodeResult": code, "CountRegenerate": 0,
                              "ErrorMessage": f"error {code}"}
        if outcome == "throttled":
            return "status", (429, {"Retry-After": "2"})
        if outcome == "unavailable":
            return "status", (503, {})
        if outcome == "drop_before":
            return "reset", None
        if outcome == "dup_unconfirmed":
            return "answer", {"CodeResult": "124", "CountRegenerate": 0,
                              "ErrorMessage": "Request exist 1"}
        if outcome == "dup_rejected":
            return "answer", {"CodeResult": "124", "CountRegenerate": 0,
                              "ErrorMessage": "Request exist 1", "SendStatus": "4"}
        smsid = self._record(body)
        answer = {"CodeResult": "100", "CountRegenerate": 0, "SMSID": smsid}
        if outcome in ("lost", "drop_after"):
            return "reset", None
        if outcome.startswith("slow:"):
            time.sleep(float(outcome.split(":", 1)[1]))
        if outcome == "garbage":
            return "html", None
        return "answer", answer

    def _record(self, body: dict[str, Any]) -> str:
        smsid = uuid.uuid4().hex + "156"
        with self._lock:
            rid = body.get("RequestId") or ""
            if rid:
                self._accepted_ids[rid] = smsid
            self.messages.append({
                "phone": body.get("Phone"), "content": body.get("Content"),
                "brandname": body.get("Brandname"), "sms_type": body.get("SmsType"),
                "is_unicode": body.get("IsUnicode"), "sandbox": body.get("Sandbox"),
                "request_id": rid, "callback_url": body.get("CallbackUrl"), "smsid": smsid})
            self.status[smsid] = {"SendStatus": 7, "SendSuccess": 0, "SendFailed": 0,
                                  "TotalPrice": 0.0}
        return smsid

    def handle_status(self, query: dict[str, str]) -> dict[str, Any]:
        if query.get("ApiKey") != API_KEY or query.get("SecretKey") != SECRET_KEY:
            return {"CodeResponse": "101", "SMSID": query.get("RefId")}
        st = self.status.get(query.get("RefId") or "")
        if st is None:
            return {"CodeResponse": "105", "SMSID": query.get("RefId")}
        return {"CodeResponse": "100", "SMSID": query.get("RefId"), "TotalReceiver": 1,
                "TotalSent": 1, **st}

    def handle_balance(self, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("ApiKey") != API_KEY or body.get("SecretKey") != SECRET_KEY:
            return {"Balance": 0, "CodeResponse": "101", "ErrorMessage": "Authorize Failed"}
        return {"Balance": 36693, "CodeResponse": "100", "UserID": 9999}


class _Handler(BaseHTTPRequestHandler):
    server_fake: FakeESMS
    protocol_version = "HTTP/1.1"
    #: TCP_NODELAY on each connection (socketserver's knob): an answer is written as headers,
    #: then body; with Nagle on, the body waits for the client's delayed ACK (~40 ms on Linux)
    #: and every request looked 40 ms slower than the provider is (the Twilio and Zalo fakes
    #: set the same option)
    disable_nagle_algorithm = True

    def log_message(self, *args: Any) -> None:
        pass

    def _json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        raw = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(raw)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(raw)

    def _reset(self) -> None:
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       struct.pack("ii", 1, 0))
            self.connection.close()
        self.close_connection = True

    def do_POST(self) -> None:  # noqa: N802
        fake = self.server_fake
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        path = urlsplit(self.path).path
        if path == "/MainService.svc/json/SendMultipleMessage_V4_post_json/":
            action, payload = fake.handle_send(body)
            if fake.latency and action != "reset":
                time.sleep(fake.latency)
            if action == "answer":
                self._json(200, payload)
            elif action == "status":
                status, headers = payload
                self._json(status, {"error": "busy"}, headers)
            elif action == "html":
                raw = b"<html>proxy</html>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)
            else:
                self._reset()
        elif path == "/MainService.svc/json/GetBalance_json":
            self._json(200, fake.handle_balance(body))
        else:
            self._json(404, {"error": "not found"})

    def do_GET(self) -> None:  # noqa: N802
        parts = urlsplit(self.path)
        if parts.path == "/MainService.svc/json/GetSendStatus":
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            self._json(200, self.server_fake.handle_status(query))
        else:
            self._json(404, {"error": "not found"})


_ENV_TO_CLEAR = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                 "all_proxy", "OUTREACH_ESMS_API_KEY", "OUTREACH_ESMS_SECRET_KEY",
                 "OUTREACH_ESMS_API_URL", "OUTREACH_ESMS_CALLBACK_SECRET",
                 "OUTREACH_ESMS_BRANDNAME", "OUTREACH_ESMS_REQUEST_SALT",
                 "OUTREACH_PUBLIC_BASE_URL")


def isolate(monkeypatch: pytest.MonkeyPatch) -> None:
    """Loopback only; the variables that could aim the client elsewhere cleared."""
    _isolate(monkeypatch, _ENV_TO_CLEAR)


@pytest.fixture
def esms_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeESMS]:
    """A fresh :class:`FakeESMS` on 127.0.0.1 for one test, the test isolated."""
    isolate(monkeypatch)
    with FakeESMS() as server:
        yield server
