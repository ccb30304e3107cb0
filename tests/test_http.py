"""outreach.gateways.http: every branch of the error mapping against real loopback servers,
Retry-After, URL checks and the session factory; and the adapter bugs the shared transport
fixed (TLS failures before the request counted as "maybe sent", plain-http credentials...)."""

from __future__ import annotations

import contextlib
import datetime as dt
import email.utils
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from outreach.ledger.db import Database
from outreach.gateways import base, http
from outreach.gateways.base import OutboundMessage
from outreach.gateways.twilio import TwilioGateway
from outreach.gateways.zalo import ZaloGateway
from outreach.ledger.models import Base
from tests.fakes import isolate
from tests.fakes.twilio_server import FakeTwilio, blackhole, closed_port

NOW = dt.datetime(2024, 7, 30, 8, 0, 0, tzinfo=dt.timezone.utc)
TO = "+84912345678"


@pytest.fixture(autouse=True)
def _loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    isolate(monkeypatch)


# -- a raw loopback server: one behaviour per connection -------------------------------------


def read_request(conn: socket.socket) -> bytes:
    """Read one HTTP request (headers and a Content-Length body) from ``conn``."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


class Raw:
    """A TCP server on 127.0.0.1 running ``behaviour(conn, server)`` for every connection."""

    def __init__(self, behaviour: Callable[[socket.socket, Raw], None]) -> None:
        self.behaviour = behaviour
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.connections = 0
        self.requests: list[bytes] = []
        self.release = threading.Event()
        self._threads: list[threading.Thread] = []
        self._accept = threading.Thread(target=self._serve, daemon=True)
        self._accept.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            t = threading.Thread(target=self._one, args=(conn,), daemon=True)
            t.start()
            self._threads.append(t)

    def _one(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            self.behaviour(conn, self)
        with contextlib.suppress(OSError):
            conn.close()

    def close(self) -> None:
        self.release.set()
        self.listener.close()
        for t in self._threads:
            t.join(timeout=5)


@contextlib.contextmanager
def raw(behaviour: Callable[[socket.socket, Raw], None]) -> Iterator[Raw]:
    server = Raw(behaviour)
    try:
        yield server
    finally:
        server.close()


def drop_after_request(conn: socket.socket, server: Raw) -> None:
    server.requests.append(read_request(conn))  # read it all, answer nothing, close


def stall(conn: socket.socket, server: Raw) -> None:
    server.requests.append(read_request(conn))
    server.release.wait(10)


def silent(conn: socket.socket, server: Raw) -> None:
    server.release.wait(10)  # accept, never read nor answer (a TLS handshake stalls)


def not_tls(conn: socket.socket, server: Raw) -> None:
    conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")  # to a ClientHello


def reset_while_body_arrives(conn: socket.socket, server: Raw) -> None:
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(65536)
    server.requests.append(data)
    # close with RST (linger 0) while the client is still writing the body
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def answer(status: int, headers: dict[str, str] | None = None,
           body: bytes = b"{}") -> Callable[[socket.socket, Raw], None]:
    def behaviour(conn: socket.socket, server: Raw) -> None:
        server.requests.append(read_request(conn))
        lines = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}",
                 "Content-Type: application/json", "Connection: close",
                 *(f"{k}: {v}" for k, v in (headers or {}).items())]
        conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    return behaviour


def connect_ok_then_close(conn: socket.socket, server: Raw) -> None:
    """A proxy that accepts CONNECT and then hangs up before the TLS handshake."""
    server.requests.append(read_request(conn))
    conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")


def post(session: requests.Session, url: str, **kw: object) -> requests.Response:
    return session.post(url + "/Messages.json", data={"To": TO, "Body": "Thông báo"},
                        timeout=kw.pop("timeout", (1.0, 0.3)), allow_redirects=False, **kw)


def mapped(fn: Callable[[], object], *, sending: bool = True,
           read_timeout: float | None = 0.3) -> tuple[base.GatewayError, requests.RequestException]:
    with pytest.raises(requests.RequestException) as info:
        fn()
    exc = info.value
    return http.map_error(exc, provider="Twilio", sending=sending, read_timeout=read_timeout), exc


# -- the mapping, branch by branch -----------------------------------------------------------


class TestMapping:
    def test_connection_refused_is_not_sent(self) -> None:
        s = http.new_session()
        err, exc = mapped(lambda: post(s, f"http://127.0.0.1:{closed_port()}"))
        assert type(err) is base.UnavailableError
        assert (err.reason, exc.request_sent) == ("connect-failed", False)
        assert err.detail == "could not connect to Twilio (ConnectionError)"

    def test_connect_timeout_is_not_sent(self) -> None:
        s = http.new_session()
        with blackhole() as port:
            err, exc = mapped(lambda: post(s, f"http://127.0.0.1:{port}", timeout=(0.3, 1.0)))
        assert isinstance(exc, requests.ConnectTimeout)
        assert type(err) is base.UnavailableError and err.reason == "connect-failed"

    def test_accepted_then_dropped_is_maybe_sent(self) -> None:
        s = http.new_session()
        with raw(drop_after_request) as server:
            err, exc = mapped(lambda: post(s, server.url))
        assert len(server.requests) == 1 and b"Body=" in server.requests[0]
        assert type(err) is base.OutcomeUnknownError
        assert (err.reason, exc.request_sent) == ("connection-lost", True)
        assert "lost after the request was sent (ConnectionError)" in err.detail

    def test_stalled_past_the_read_timeout_is_maybe_sent(self) -> None:
        s = http.new_session()
        with raw(stall) as server:
            started = time.monotonic()
            err, exc = mapped(lambda: post(s, server.url))
            assert time.monotonic() - started < 2
        assert isinstance(exc, requests.ReadTimeout) and len(server.requests) == 1
        assert type(err) is base.OutcomeUnknownError and err.reason == "read-timeout"
        assert err.detail.startswith("no answer from Twilio within 0.3 s after sending")

    def test_reset_while_writing_the_body_is_maybe_sent(self) -> None:
        """A write error: the headers (and part of the body) left before the reset."""
        s = http.new_session()
        big = "x" * 8_000_000
        with raw(reset_while_body_arrives) as server:
            with pytest.raises(requests.RequestException) as info:
                s.post(server.url + "/Messages.json", data={"Body": big}, timeout=(1, 2))
        err = http.map_error(info.value, provider="Zalo", sending=True)
        assert info.value.request_sent is True
        assert type(err) is base.OutcomeUnknownError and err.reason == "connection-lost"

    def test_a_read_that_may_have_left_is_only_unavailable(self) -> None:
        s = http.new_session()
        with raw(drop_after_request) as server:
            err, _ = mapped(lambda: s.get(server.url + "/status", timeout=(1, 1)), sending=False)
        assert type(err) is base.UnavailableError
        assert (err.reason, err.detail) == ("network", "request to Twilio failed: ConnectionError")
        with raw(stall) as server:
            err, _ = mapped(lambda: s.get(server.url, timeout=(1, 0.2)), sending=False)
        assert type(err) is base.UnavailableError and err.reason == "network"

    def test_tls_handshake_refused_is_not_sent(self) -> None:
        s = http.new_session()
        with raw(not_tls) as server:
            err, exc = mapped(lambda: post(s, f"https://127.0.0.1:{server.port}"))
        assert isinstance(exc, requests.exceptions.SSLError) and exc.request_sent is False
        assert type(err) is base.UnavailableError and err.reason == "connect-failed"

    def test_tls_handshake_stalled_is_not_sent(self) -> None:
        """urllib3 reports a handshake that times out as a *read* timeout; nothing of the
        request had left."""
        s = http.new_session()
        with raw(silent) as server:
            err, exc = mapped(lambda: post(s, f"https://127.0.0.1:{server.port}"))
        assert isinstance(exc, requests.ReadTimeout) and exc.request_sent is False
        assert type(err) is base.UnavailableError and err.reason == "connect-failed"

    def test_a_proxy_connect_is_not_the_request(self) -> None:
        """The CONNECT to a proxy is written through the same connection; it must not count as
        our request having left."""
        s = http.new_session(trust_env=False)
        with raw(connect_ok_then_close) as proxy:
            err, exc = mapped(lambda: post(s, "https://127.0.0.1:9", proxies={
                "https": proxy.url}))
        assert proxy.requests and proxy.requests[0].startswith(b"CONNECT 127.0.0.1:9")
        assert exc.request_sent is False
        assert type(err) is base.UnavailableError and err.reason == "connect-failed"

    def test_a_proxy_that_refuses_is_not_sent(self) -> None:
        s = http.new_session(trust_env=False)
        err, exc = mapped(lambda: post(s, "http://127.0.0.1:9", proxies={
            "http": f"http://127.0.0.1:{closed_port()}"}))
        assert isinstance(exc, requests.exceptions.ProxyError)
        assert type(err) is base.UnavailableError and err.reason == "connect-failed"

    def test_invalid_url_is_refused_before_any_connection(self) -> None:
        err, _ = mapped(lambda: http.new_session().get("http://"))
        assert type(err) is base.UnavailableError and err.reason == "bad-request"

    def test_other_sessions_fall_back_to_the_exception_type(self) -> None:
        """Without the write notes, only an unmistakable connect failure is "not sent"; a TLS
        error may follow the request, so it is maybe sent."""
        s = requests.Session()
        s.trust_env = False
        err, exc = mapped(lambda: post(s, f"http://127.0.0.1:{closed_port()}"))
        assert not hasattr(exc, "request_sent")
        assert err.reason == "connect-failed"
        with raw(not_tls) as server:
            err, _ = mapped(lambda: post(s, f"https://127.0.0.1:{server.port}"))
        assert type(err) is base.OutcomeUnknownError and err.reason == "connection-lost"
        with raw(stall) as server:
            err, _ = mapped(lambda: post(s, server.url))
        assert err.reason == "read-timeout"

    def test_texts_never_quote_the_url(self, monkeypatch: pytest.MonkeyPatch) -> None:
        s = http.new_session()
        err, exc = mapped(lambda: s.get(f"http://127.0.0.1:{closed_port()}/x",
                                        params={"access_token": "tok-SECRET-123", "to": TO}))
        assert "tok-SECRET-123" in str(exc)
        assert "tok-SECRET-123" not in str(err) and "912345678" not in str(err)


# -- Retry-After -----------------------------------------------------------------------------


class TestRetryAfter:
    @pytest.mark.parametrize("value, seconds", [
        ("120", 120.0), (" 7 ", 7.0), ("1.5", 1.5), ("0", 0.0), ("-5", 0.0),
        ("Tue, 30 Jul 2024 08:00:09 GMT", 9.0),               # IMF-fixdate
        ("Tuesday, 30-Jul-24 08:01:00 GMT", 60.0),            # RFC 850
        ("Tue Jul 30 08:00:30 2024", 30.0),                   # asctime, no zone: UTC
        ("Tue, 30 Jul 2024 07:00:00 GMT", 0.0),               # in the past
        ("99999999", http.MAX_RETRY_AFTER),                  # capped
        ("Wed, 30 Jul 2025 08:00:00 GMT", http.MAX_RETRY_AFTER),
    ])
    def test_seconds_and_dates(self, value: str, seconds: float) -> None:
        assert http.parse_retry_after(value, NOW) == seconds

    @pytest.mark.parametrize("value", [None, "", "soon", "nan", "inf", "-inf", "30 Jul"])
    def test_unreadable_is_none(self, value: str | None) -> None:
        assert http.parse_retry_after(value, NOW) is None

    def test_cap_and_naive_now(self) -> None:
        assert http.parse_retry_after("600", NOW, cap=60) == 60.0
        naive = NOW.replace(tzinfo=None)
        assert http.parse_retry_after("Tue, 30 Jul 2024 08:00:09 GMT", naive) == 9.0

    def test_default_now_is_the_system_clock(self) -> None:
        later = email.utils.format_datetime(dt.datetime.now(dt.timezone.utc)
                                            + dt.timedelta(seconds=30), usegmt=True)
        assert 25 <= http.parse_retry_after(later) <= 30

    @pytest.mark.parametrize("status, header, seconds", [
        (429, "3", 3.0), (503, "120", 120.0),
        (429, "Tue, 30 Jul 2024 08:00:42 GMT", 42.0),
        (503, "Tue, 30 Jul 2024 08:02:00 GMT", 120.0),
    ])
    def test_from_a_real_answer(self, status: int, header: str, seconds: float) -> None:
        s = http.new_session()
        with raw(answer(status, {"Retry-After": header})) as server:
            resp = s.get(server.url, timeout=2)
        assert resp.status_code == status
        assert http.parse_retry_after(resp.headers.get("Retry-After"), NOW) == seconds


# -- URLs ------------------------------------------------------------------------------------


class TestCheckUrl:
    @pytest.mark.parametrize("value, expected", [
        ("https://api.twilio.com/", "https://api.twilio.com"),
        ("  https://business.openapi.zalo.me  ", "https://business.openapi.zalo.me"),
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080"),
        ("http://[::1]:8080", "http://[::1]:8080"),
        ("http://localhost:9", "http://localhost:9"),
    ])
    def test_good(self, value: str, expected: str) -> None:
        assert http.check_url(value, "OPT", carries_secret=True) == expected

    @pytest.mark.parametrize("value, message", [
        ("ftp://127.0.0.1", "OPT must be an http(s) URL with a host, got 'ftp://127.0.0.1'"),
        ("api.twilio.com", "OPT must be an http(s) URL with a host, got 'api.twilio.com'"),
        ("https://", "OPT must be an http(s) URL with a host, got 'https:'"),
        ("https://api.twilio.com:44a", "OPT has a bad port: 'https://api.twilio.com:44a'"),
        ("https://ACxx:tok3n@api.twilio.com", "OPT must not carry credentials (user:password@)"),
        ("https://user@api.twilio.com", "OPT must not carry credentials (user:password@)"),
    ])
    def test_bad(self, value: str, message: str) -> None:
        with pytest.raises(base.ConfigurationError) as info:
            http.check_url(value, "OPT")
        assert (str(info.value), info.value.reason) == (message, "bad-url")
        assert "tok3n" not in str(info.value)

    def test_plain_http_only_for_loopback_when_a_secret_travels(self) -> None:
        assert http.check_url("http://hooks.example.vn", "OPT") == "http://hooks.example.vn"
        with pytest.raises(base.ConfigurationError, match="OPT must use https"):
            http.check_url("http://api.example.vn", "OPT", carries_secret=True)
        with pytest.raises(base.ConfigurationError, match="must use https"):
            http.check_url("http://127.0.0.1.example.vn", "OPT", carries_secret=True)


# -- the session -----------------------------------------------------------------------------


class TestSession:
    def test_never_retries_a_dropped_request(self) -> None:
        s = http.new_session()
        with raw(drop_after_request) as server:
            with pytest.raises(requests.ConnectionError):
                post(s, server.url)
        assert (server.connections, len(server.requests)) == (1, 1)

    def test_never_retries_a_5xx(self) -> None:
        s = http.new_session()
        with raw(answer(503, {"Retry-After": "1"})) as server:
            assert post(s, server.url).status_code == 503
        assert len(server.requests) == 1


    def test_pool_size_and_no_retry_settings(self) -> None:
        s = http.new_session(pool_size=48)
        for scheme in ("http://x", "https://x"):
            adapter = s.get_adapter(scheme)
            assert adapter.poolmanager.connection_pool_kw["maxsize"] == 48
            retry = adapter.max_retries
            assert (retry.total, retry.connect, retry.read, retry.redirect, retry.status,
                    retry.other) == (0, 0, False, 0, 0, 0)
        with pytest.raises(base.ConfigurationError):
            http.new_session(pool_size=0)

    def test_environment_read_once(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:3128")
        monkeypatch.setenv("NO_PROXY", "")
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
        s = http.new_session(environment_for="https://api.twilio.com")
        assert s.trust_env is False
        assert s.proxies == {"https": "http://127.0.0.1:3128"}
        assert s.verify == "/etc/ssl/certs/ca-certificates.crt"
        assert http.new_session().trust_env is True
        assert http.new_session(trust_env=False).proxies == {}

    def test_loopback_only_refuses_other_hosts_before_connecting(
            self, monkeypatch: pytest.MonkeyPatch) -> None:
        connects: list[object] = []
        real = socket.socket.connect
        monkeypatch.setattr(socket.socket, "connect",
                            lambda sock, addr: (connects.append(addr), real(sock, addr))[1])
        s = http.new_session(loopback_only=True, trust_env=False)
        with pytest.raises(base.ConfigurationError) as info:
            s.get("https://api.twilio.com/2010-04-01")
        assert info.value.reason == "not-loopback"
        assert str(info.value) == ("refused a request to api.twilio.com: this session may "
                                   "only reach 127.0.0.1 (loopback_only)")
        with pytest.raises(base.ConfigurationError, match="proxy.example.vn"):
            s.get("http://127.0.0.1:9/", proxies={"http": "http://proxy.example.vn:3128"})
        assert connects == []
        with raw(answer(200)) as server:
            assert s.get(server.url, timeout=2).status_code == 200
        # without the option the same session factory goes anywhere (isolate() stops it here)
        with pytest.raises(AssertionError, match="leave 127.0.0.1"):
            http.new_session(trust_env=False).get("http://192.0.2.1:9/", timeout=1)

    def test_reason_codes_of_the_send_path_have_vietnamese_wording(self) -> None:
        from outreach.reporting.official import REASON_VI
        for reason in ("connect-failed", "bad-request", "read-timeout", "connection-lost"):
            assert REASON_VI[reason].startswith(("Không", "Mất", "Yêu cầu"))


# -- the adapters on the shared transport: bugs it fixed -------------------------------------


def sms() -> OutboundMessage:
    return OutboundMessage(delivery_id=42, campaign_id="c", channel="sms", to=TO, body="Thông báo")


class TestTwilioOnTheTransport:
    def test_tls_handshake_failure_is_not_sent(self) -> None:
        """Was OutcomeUnknownError ("connection-lost"): a delivery that never left became
        unknown and waited for an operator."""
        with raw(not_tls) as server:
            gw = TwilioGateway(**FakeTwilio().gateway_options(
                api_url=f"https://127.0.0.1:{server.port}", timeout=1))
            with pytest.raises(base.UnavailableError) as info:
                gw.send(sms())
        assert info.value.reason == "connect-failed"

    def test_tls_handshake_stall_is_not_sent(self) -> None:
        """Was OutcomeUnknownError ("read-timeout"): urllib3 calls a stalled handshake a read
        timeout."""
        with raw(silent) as server:
            gw = TwilioGateway(**FakeTwilio().gateway_options(
                api_url=f"https://127.0.0.1:{server.port}", timeout=0.3))
            with pytest.raises(base.UnavailableError) as info:
                gw.send(sms())
        assert info.value.reason == "connect-failed"
        assert not isinstance(info.value, base.OutcomeUnknownError)

    @pytest.mark.parametrize("url, message", [
        # was accepted: the auth token would have gone over plain HTTP
        ("http://api.example.vn", "api_url (OUTREACH_TWILIO_API_URL) must use https"),
        # was accepted: every send then failed in requests (InvalidURL) and became unknown
        ("https://api.twilio.com:44a", "api_url (OUTREACH_TWILIO_API_URL) has a bad port"),
    ])
    def test_api_url_rules(self, url: str, message: str) -> None:
        with pytest.raises(base.ConfigurationError, match=message.replace("(", r"\(")
                           .replace(")", r"\)")) as info:
            TwilioGateway(**FakeTwilio().gateway_options(api_url=url))
        assert info.value.reason == "bad-url"

    def test_loopback_only_option(self) -> None:
        gw = TwilioGateway(**FakeTwilio().gateway_options(
            api_url="https://api.twilio.com", loopback_only=True))
        with pytest.raises(base.ConfigurationError, match="loopback_only"):
            gw.send(sms())


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'http.db'}")
    Base.metadata.create_all(database.engine)
    yield database
    database.dispose()


def zalo(db: Database, url: str, **kw: object) -> ZaloGateway:
    gw = ZaloGateway(db=db, app_id="1234567890", secret_key="app-secret-xyz", zns_api_url=url,
                     oa_api_url=url, oauth_url=url, trust_env=False, environ={},
                     read_timeout=0.5, **kw)
    gw.tokens.set_tokens("access-tok", "refresh-tok", 90000)
    return gw


def zns() -> OutboundMessage:
    return OutboundMessage(delivery_id=7, campaign_id="c", channel="zalo", to=TO, body="x",
                           template_id="301234", template_data={"ho_ten": "Nguyễn Văn A"})


class TestZaloOnTheTransport:
    def test_429_retry_after_as_an_http_date(self, db: Database) -> None:
        """Was 60 s (the default): Zalo's adapter read Retry-After in seconds only."""
        from outreach.clock import FakeClock
        clock = FakeClock(NOW)
        with raw(answer(429, {"Retry-After": "Tue, 30 Jul 2024 08:00:45 GMT"})) as server:
            gw = zalo(db, server.url, clock=clock)
            with pytest.raises(base.ThrottledError) as info:
                gw.send(zns())
        assert info.value.retry_after == 45.0

    def test_503_retry_after_seconds(self, db: Database) -> None:
        with raw(answer(503, {"Retry-After": "12"})) as server:
            with pytest.raises(base.UnavailableError) as info:
                zalo(db, server.url).send(zns())
        assert (info.value.retry_after, info.value.provider_code) == (12.0, "503")

    def test_stall_and_drop_after_sending_are_unknown_with_the_shared_reasons(
            self, db: Database) -> None:
        with raw(stall) as server:
            with pytest.raises(base.OutcomeUnknownError) as info:
                zalo(db, server.url).send(zns())
        assert info.value.reason == "read-timeout"
        assert len(server.requests) == 1 and b'"phone": "84912345678"' in server.requests[0]
        with raw(drop_after_request) as server:
            with pytest.raises(base.OutcomeUnknownError) as info:
                zalo(db, server.url).send(zns())
        assert info.value.reason == "connection-lost"

    def test_urls_with_credentials_are_refused(self, db: Database) -> None:
        """Was accepted, and ``gateways check`` prints the ZNS URL."""
        with pytest.raises(base.ConfigurationError,
                           match="OUTREACH_ZALO_ZNS_API_URL must not carry credentials"):
            ZaloGateway(db=db, app_id="1", secret_key="s", environ={},
                        zns_api_url="https://u:pw@business.openapi.zalo.me")


def test_twilio_reads_proxy_variables_once_for_its_api_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:3128")
    monkeypatch.setenv("NO_PROXY", "")
    gw = TwilioGateway(**FakeTwilio().gateway_options(api_url="https://api.twilio.com"))
    session = gw.client.http_client.session
    assert (session.trust_env, session.proxies) == (False, {"https": "http://127.0.0.1:3128"})
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    gw = TwilioGateway(**FakeTwilio().gateway_options(api_url="http://127.0.0.1:9"))
    assert gw.client.http_client.session.proxies == {}


def test_twilio_and_zalo_sessions_come_from_the_factory(tmp_path: Path) -> None:
    gw = TwilioGateway(**FakeTwilio().gateway_options(api_url="http://127.0.0.1:9", pool_size=24))
    adapter = gw.client.http_client.session.get_adapter("http://127.0.0.1")
    assert isinstance(adapter, type(http.new_session().get_adapter("http://x")))
    assert adapter.poolmanager.connection_pool_kw["maxsize"] == 24
    database = Database(f"sqlite:///{tmp_path / 'z.db'}")
    Base.metadata.create_all(database.engine)
    try:
        z = zalo(database, "http://127.0.0.1:9")
        assert z.session.get_adapter("https://x").poolmanager.connection_pool_kw["maxsize"] == 16
        assert z.session.get_adapter("https://x").max_retries.total == 0
    finally:
        database.dispose()


def test_zalo_refresh_refused_by_loopback_only_is_not_sent(db: Database) -> None:
    """The refused OAuth call never left: the single-use refresh token is kept, not marked
    spent."""
    gw = ZaloGateway(db=db, app_id="1234567890", secret_key="app-secret-xyz", environ={},
                     trust_env=False, loopback_only=True)
    gw.tokens.set_tokens("access-tok", "refresh-tok", 60)  # inside the 5-minute margin
    with pytest.raises(base.UnavailableError, match="loopback_only") as info:
        gw.tokens.current()
    assert info.value.reason == "connect-failed"
    with pytest.raises(base.UnavailableError, match="loopback_only"):
        gw.tokens.current()  # tried again, not "refresh token may be spent"
