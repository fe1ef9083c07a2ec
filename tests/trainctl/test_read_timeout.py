"""A connection whose request stops arriving is closed; one that keeps sending is served."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn

from trainctl.http import read_timeout_protocol

READ_TIMEOUT = 0.5


async def hello(scope: dict, receive: object, send: object) -> None:
    """A minimal ASGI app that reads the whole body, then answers 200 with its length."""
    if scope["type"] != "http":
        return
    size, more = 0, True
    while more:
        message = await receive()  # type: ignore[operator]
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    body = str(size).encode()
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})  # type: ignore[operator]
    await send({"type": "http.response.body", "body": body})  # type: ignore[operator]


@pytest.fixture
def address() -> Iterator[tuple[str, int]]:
    """A real uvicorn server with the read-timeout protocol, in a thread."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        hello, http=read_timeout_protocol(READ_TIMEOUT), log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    yield sock.getsockname()
    server.should_exit = True
    thread.join(timeout=5)


def closed_within(conn: socket.socket, seconds: float) -> bool:
    """Whether the server closes the connection (EOF) within `seconds`, reading whatever it sends."""
    conn.settimeout(seconds)
    try:
        while conn.recv(4096):
            pass
    except TimeoutError:
        return False
    return True


@pytest.mark.parametrize(
    "sent",
    [
        b"",
        b"GET / HTTP/1.1\r\nHost: x\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n12345",
    ],
    ids=["nothing", "half the headers", "half the body"],
)
def test_a_request_that_stops_arriving_is_closed(address: tuple[str, int], sent: bytes) -> None:
    with socket.create_connection(address) as conn:
        conn.sendall(sent)
        started = time.monotonic()
        assert closed_within(conn, 5)
        assert time.monotonic() - started < 3


def test_a_slow_request_that_keeps_sending_is_served(address: tuple[str, int]) -> None:
    with socket.create_connection(address) as conn:
        conn.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\n\r\n")
        for _ in range(8):  # 8 pauses of 0.3 s: the whole request takes far longer than the timeout
            time.sleep(READ_TIMEOUT * 0.6)
            conn.sendall(b"x")
        conn.settimeout(5)
        response = conn.recv(4096)
    assert response.startswith(b"HTTP/1.1 200") and response.endswith(b"\r\n\r\n8")
