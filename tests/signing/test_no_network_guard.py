"""The guard in conftest.py really refuses sockets (a guard that never fires proves nothing)."""

from __future__ import annotations

import socket

import pytest


def test_connect_is_refused() -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        with pytest.raises(AssertionError, match="may not connect"):
            s.connect(("192.0.2.1", 443))
        with pytest.raises(AssertionError, match="may not connect"):
            s.connect_ex(("127.0.0.1", 9))
    finally:
        s.close()


def test_create_connection_is_refused() -> None:
    with pytest.raises(AssertionError, match="may not connect"):
        socket.create_connection(("example.com", 443), timeout=1)


@pytest.mark.allow_loopback
def test_loopback_marker_allows_only_loopback() -> None:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    try:
        client = socket.create_connection(server.getsockname(), timeout=2)
        client.close()
        with pytest.raises(AssertionError, match="may not connect"):
            socket.create_connection(("192.0.2.1", 443), timeout=1)
    finally:
        server.close()
