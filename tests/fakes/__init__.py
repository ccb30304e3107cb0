"""Loopback fakes of the providers (127.0.0.1 only) so tests exercise the real SDKs over HTTP."""

from __future__ import annotations

import socket
from collections.abc import Iterable
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
