"""`outreach webhooks serve` limits, through the real command and waitress on 127.0.0.1: a huge
body is refused before it is read (Content-Length) or once it passes the limit (chunked), big
headers are refused, an idle connection is closed; a normal request is unchanged."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import requests

from outreach.receipts import receiver as webhooks

pytestmark = pytest.mark.slow

HUGE = 50 * 1024 * 1024  # what the slow sender announces or would send
PIECE = 8192


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """One real `outreach webhooks serve --timeout 2` for the module (starting it is slow)."""
    env = dict(os.environ, OUTREACH_HOME=str(tmp_path_factory.mktemp("srv")))
    env.pop("OUTREACH_DATABASE_URL", None)
    subprocess.run([sys.executable, "-m", "outreach", "db", "upgrade"], env=env, check=True,
                   capture_output=True, timeout=120)
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "outreach", "webhooks", "serve", "--no-twilio",
                             "--port", str(port), "--timeout", "2"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise AssertionError("webhook server did not start") from None
                time.sleep(0.1)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def slow_send(port: int, *, chunked: bool) -> tuple[int, bytes]:
    """Announce (or stream) a 50 MB body, 8 KB at a time with a pause, reading any answer
    between pieces; returns (body bytes sent when the server answered or hung up, answer).
    The answer is ``b"reset"`` when the server's close reset the connection before its 413
    could be read (under load the RST can overtake the answer in the client's buffer)."""
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"POST /webhooks/twilio/status HTTP/1.1\r\nHost: 127.0.0.1\r\n"
              b"Content-Type: application/x-www-form-urlencoded\r\n"
              + (b"Transfer-Encoding: chunked\r\n\r\n" if chunked
                 else f"Content-Length: {HUGE}\r\n\r\n".encode()))
    s.settimeout(0.01)
    sent, answer = 0, b""
    try:
        while sent < HUGE:
            body = b"a" * PIECE
            s.sendall(b"%x\r\n%s\r\n" % (PIECE, body) if chunked else body)
            sent += PIECE
            try:
                data = s.recv(65536)
            except socket.timeout:
                time.sleep(0.002)
                continue
            answer += data
            if not data or answer:
                break
    except (BrokenPipeError, ConnectionResetError):
        try:
            answer += s.recv(65536)
        except OSError:
            pass
        answer = answer or b"reset"
    finally:
        s.close()
    return sent, answer


def test_content_length_over_the_limit_is_refused_before_the_body(server: int) -> None:
    sent, answer = slow_send(server, chunked=False)
    assert answer.startswith(b"HTTP/1.1 413 ") or answer == b"reset"
    assert b"Connection: close" in answer or answer == b"reset"
    assert sent <= 4 * PIECE  # answered at the headers: the body was never read


def test_chunked_body_is_cut_off_at_the_limit(server: int) -> None:
    sent, answer = slow_send(server, chunked=True)
    assert answer.startswith(b"HTTP/1.1 413 ") or answer == b"reset"
    assert webhooks.MAX_BODY_BYTES <= sent <= webhooks.MAX_BODY_BYTES + 16 * PIECE
    assert sent < HUGE // 100


def test_oversized_headers_are_refused(server: int) -> None:
    r = requests.get(f"http://127.0.0.1:{server}/healthz",
                     headers={"X-Padding": "x" * (webhooks.MAX_HEADER_BYTES + 1)}, timeout=10)
    assert r.status_code == 431


def test_idle_connection_is_closed_after_the_timeout(server: int) -> None:
    s = socket.create_connection(("127.0.0.1", server))
    s.sendall(b"POST /webhooks/twilio/status HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never finished
    s.settimeout(15)
    t0 = time.monotonic()
    assert s.recv(100) == b""  # closed by the server
    assert 1.5 <= time.monotonic() - t0 <= 6
    s.close()


def test_a_normal_request_is_unchanged(server: int) -> None:
    r = requests.get(f"http://127.0.0.1:{server}/healthz", timeout=10)
    assert r.status_code == 200


def test_server_limits_are_waitress_adjustments() -> None:
    assert webhooks.server_limits() == {"max_request_body_size": 262144,
                                        "max_request_header_size": 16384,
                                        "channel_timeout": 30, "cleanup_interval": 15}
    assert webhooks.server_limits(1000, 2000, 2)["cleanup_interval"] == 1
    with pytest.raises(ValueError, match="max_body_bytes must be at least 1"):
        webhooks.server_limits(0)
