"""A request's head must arrive in time and within its size, on the server the CLI runs."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from uvicorn.importer import import_from_string

from modelwatch.http_protocol import MAX_HEADER_BYTES, GuardedHttpProtocol
from modelwatch.serving import UVICORN_LIMITS, BackgroundServer
from modelwatch.settings import ENV_HEADER_TIMEOUT_S, Settings
from tests.conftest import free_port

TIMEOUT_S = 0.6


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[BackgroundServer]:
    monkeypatch.setattr(GuardedHttpProtocol, "header_timeout_s", TIMEOUT_S)
    app = FastAPI()

    @app.get("/ping")
    def ping() -> dict[str, bool]:
        return {"ok": True}

    server = BackgroundServer(app, "127.0.0.1", free_port())
    server.start()
    yield server
    server.stop()


def _connect(server: BackgroundServer) -> socket.socket:
    sock = socket.create_connection((server.host, server.port), timeout=10)
    sock.settimeout(10)
    return sock


def _read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _read_response(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a response: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(
        next(
            line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
        ).split(b":")[1]
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head


def test_the_cli_and_background_server_run_the_guarded_protocol() -> None:
    assert import_from_string(UVICORN_LIMITS["http"]) is GuardedHttpProtocol


def test_header_timeout_is_a_documented_setting() -> None:
    assert Settings.from_env({}).header_timeout_s == 10.0
    assert Settings.from_env({ENV_HEADER_TIMEOUT_S: "2.5"}).header_timeout_s == 2.5
    with pytest.raises(ValueError, match=ENV_HEADER_TIMEOUT_S):
        Settings.from_env({ENV_HEADER_TIMEOUT_S: "0"})


def test_headers_sent_a_byte_at_a_time_are_cut_off(server: BackgroundServer) -> None:
    sock = _connect(server)
    sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Slow: ")
    started = time.monotonic()
    answer = b""
    try:
        for _ in range(40):  # a byte every 0.1 s would take 4 s, far past the timeout
            sock.sendall(b"a")
            time.sleep(0.1)
    except (BrokenPipeError, ConnectionResetError):
        pass
    with contextlib.suppress(ConnectionResetError):
        answer = _read_all(sock)
    elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert b"did not arrive within 0.6 s" in answer
    assert elapsed < 4.0


def test_a_connection_that_sends_nothing_is_closed(server: BackgroundServer) -> None:
    sock = _connect(server)
    started = time.monotonic()
    answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert TIMEOUT_S * 0.9 < time.monotonic() - started < TIMEOUT_S + 3


def test_oversized_headers_get_431(server: BackgroundServer) -> None:
    sock = _connect(server)
    big = b"x" * (MAX_HEADER_BYTES + 1)
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Big: " + big + b"\r\n\r\n")
    answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:200]
    assert answer.count(b"HTTP/1.1") == 1  # the parser's own 400 is not sent after it


def test_keep_alive_requests_are_not_cut_by_the_head_timer(server: BackgroundServer) -> None:
    sock = _connect(server)
    request = b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n"
    for _ in range(3):
        sock.sendall(request)
        assert _read_response(sock).startswith(b"HTTP/1.1 200")
        time.sleep(TIMEOUT_S * 1.5)  # idle past the head timeout, within keep-alive
    sock.close()


def test_headers_under_the_limit_and_in_time_are_served(server: BackgroundServer) -> None:
    sock = _connect(server)
    sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"y" * 30_000 + b"\r\n\r\n")
    assert _read_response(sock).startswith(b"HTTP/1.1 200")
    sock.close()
