"""Loopback fakes of the providers (127.0.0.1 only) so tests exercise the real SDKs over HTTP."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterable, Iterator
from typing import Any

import pytest

LOOPBACK = ("127.0.0.1", "::1", "localhost")


def isolate(monkeypatch: pytest.MonkeyPatch, env: Iterable[str] = ()) -> None:
    """Refuse any TCP connection not aimed at 127.0.0.1 / ::1, and clear the environment
    variables ``env`` (proxies, provider settings) that could aim a client elsewhere."""
    for name in env:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    real_connect = socket.socket.connect

    def connect(sock: socket.socket, address: Any) -> Any:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in LOOPBACK:
            raise AssertionError(f"test tried to leave 127.0.0.1: {address[0]}")
        return real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)


@contextlib.contextmanager
def waitress_on_loopback(app: Any, *, threads: int) -> Iterator[int]:
    """Serve the WSGI ``app`` with waitress (``threads`` workers) on 127.0.0.1 from a
    background thread; yields the port, and stops and closes the server on exit."""
    import waitress
    from waitress import wasyncore

    server = waitress.create_server(app, host="127.0.0.1", port=0, threads=threads)
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            wasyncore.loop(timeout=0.05, map=server._map, count=1)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield server.effective_port
    finally:
        stop.set()
        thread.join()
        server.close()
