"""The served HTTP protocol bounds a request's head and its arrival time (:mod:`bot.web.protocol`).

A reviewer sent `teller serve` (uvicorn with httptools, default settings) a 161 MB header and was
answered 200, and held a connection for over 100 s with a body declared as 100 bytes of which one
was sent. Driven here over real sockets against uvicorn running the protocol `teller serve` runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Iterator

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from bot.web import protocol
from tests.servers import serve_in_thread


async def echo(request: Request) -> PlainTextResponse:
    body = await request.body()
    if body == b"slow":
        await asyncio.sleep(1.0)  # the application's own time is not the client's
    return PlainTextResponse(f"got {len(body)} {len(request.headers)}")


async def unread(request: Request) -> PlainTextResponse:
    await asyncio.sleep(float(request.query_params.get("s", "1")))  # never reads the body
    return PlainTextResponse("done")


APP = Starlette(
    routes=[Route("/echo", echo, methods=["GET", "POST"]), Route("/unread", unread, methods=["POST"])]
)


@pytest.fixture
def address(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, int]]:
    monkeypatch.setattr(protocol, "REQUEST_SECONDS", 0.5)
    http, options = protocol.http_protocol()
    assert not isinstance(http, str)  # httptools is installed: the bounded protocol runs
    with serve_in_thread(APP, http=http, **options) as url:
        host, port = url.removeprefix("http://").split(":")
        yield host, int(port)


def exchange(address: tuple[str, int], *parts: bytes, pause: float = 0.0) -> tuple[bytes, float]:
    """Send ``parts`` (``pause`` seconds apart), read until the server closes; the bytes read and
    the seconds it took."""
    started = time.monotonic()
    with socket.create_connection(address, timeout=10) as sock:
        try:
            for part in parts:
                sock.sendall(part)
                time.sleep(pause)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server refused and closed before the rest was sent
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except ConnectionResetError:
            pass  # closed with bytes of the client's unread: what came before the reset is kept
    return received, time.monotonic() - started


def post(body: bytes, close: bool = True) -> bytes:
    connection = b"Connection: close\r\n" if close else b""
    return (
        b"POST /echo HTTP/1.1\r\nHost: t\r\n"
        + connection
        + b"Content-Length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


def test_ordinary_requests_pass_also_kept_alive_and_pipelined(address: tuple[str, int]) -> None:
    received, _ = exchange(address, post(b"hello", close=False) + post(b"hi there"))
    assert received.count(b"HTTP/1.1 200") == 2 and b"got 5" in received and b"got 8" in received
    # A head just under the bound passes.
    big = b"GET /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\nX-Big: " + b"a" * 60_000 + b"\r\n\r\n"
    received, _ = exchange(address, big)
    assert received.startswith(b"HTTP/1.1 200")


def test_a_head_over_the_bound_gets_431_and_the_server_goes_on(address: tuple[str, int]) -> None:
    head = b"GET /echo HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 200_000 + b"\r\nConnection: close\r\n\r\n"
    received, _ = exchange(address, head)
    assert received.startswith(b"HTTP/1.1 431") and b"too large" in received
    # Sent in small pieces it is counted all the same.
    pieces = [head[i : i + 8192] for i in range(0, len(head), 8192)]
    with socket.create_connection(address, timeout=10) as sock:
        try:
            for piece in pieces:
                sock.sendall(piece)
        except (BrokenPipeError, ConnectionResetError):
            pass  # closed once the bound was passed
        assert sock.recv(65536).startswith(b"HTTP/1.1 431")
    assert exchange(address, post(b"after"))[0].startswith(b"HTTP/1.1 200")


def test_a_request_that_does_not_arrive_in_time_gets_408(address: tuple[str, int]) -> None:
    # A body declared as 100 bytes, of which one is sent.
    received, took = exchange(address, b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n{")
    assert received.startswith(b"HTTP/1.1 408") and took < 5
    # Headers that never end.
    received, took = exchange(address, b"GET /echo HTTP/1.1\r\nHost: t\r\nX-Slow: ")
    assert received.startswith(b"HTTP/1.1 408") and took < 5
    # A trickle that would go on for ever is cut at the bound, not at each read.
    trickle = [b"GET /echo HTTP/1.1\r\n"] + [b"X-%d: 1\r\n" % i for i in range(12)]
    received, took = exchange(address, *trickle, pause=0.1)
    assert received.startswith(b"HTTP/1.1 408") and took < 3


def test_the_applications_own_time_is_not_bounded(address: tuple[str, int]) -> None:
    received, took = exchange(address, post(b"slow"))
    assert received.startswith(b"HTTP/1.1 200") and b"got 4" in received and took >= 1.0
    # A keep-alive connection idle between requests is uvicorn's keep-alive timeout's, not ours.
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(post(b"one", close=False))
        first = sock.recv(65536)
        time.sleep(0.8)  # longer than the bound, shorter than uvicorn's 5 s keep-alive
        sock.sendall(post(b"two"))
        second = b""
        while chunk := sock.recv(65536):
            second += chunk
    assert first.startswith(b"HTTP/1.1 200") and second.startswith(b"HTTP/1.1 200") and b"got 3" in second


def test_a_large_body_sent_with_its_head_in_one_write_is_not_taken_for_a_head(
    address: tuple[str, int],
) -> None:
    """A reviewer's finding: curl and a buffering proxy write the head and the start of the body at
    once, and a 70 KB body was refused as a 431."""
    received, _ = exchange(address, post(b"x" * 300_000))
    assert received.startswith(b"HTTP/1.1 200") and b"got 300000" in received


def test_trailers_are_bounded_as_the_head_is(address: tuple[str, int]) -> None:
    """A chunked body's trailers were appended to the request's headers without a bound (19 MB)."""
    head = b"POST /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n"
    trailers = b"".join(b"X-T%d: %s\r\n" % (i, b"a" * 1000) for i in range(200))
    received, _ = exchange(address, head + b"5\r\nhello\r\n0\r\n" + trailers + b"\r\n")
    assert not received.startswith(b"HTTP/1.1 200")  # the connection was closed
    few = b"X-T: 1\r\n"
    received, _ = exchange(address, head + b"5\r\nhello\r\n0\r\n" + few + b"\r\n")
    assert received.startswith(b"HTTP/1.1 200") and b"got 5" in received


def test_nothing_is_written_over_an_answer_under_way(address: tuple[str, int]) -> None:
    """A reviewer's finding: the deadline's 408 was written while the application held the request
    (it answered later, after the write's end: "Cannot call write() after write_eof()"), and on a
    kept-alive connection a slow next request's 408 went out in place of the answer to the first."""
    # The application holds the request and never reads its body: the 408 goes, and the
    # application's own answer is dropped with the connection.
    received, took = exchange(
        address, b"POST /unread?s=1 HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n{"
    )
    assert received.startswith(b"HTTP/1.1 408") and b"done" not in received and took < 5
    # A next request trickling in while the first is answered: the first's answer is not replaced.
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(
            b"POST /unread?s=0.2 HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\nGET /echo HTTP/1.1\r\n"
        )
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    assert not received.startswith(b"HTTP/1.1 408")


def test_a_big_head_after_another_request_or_blank_lines_in_one_write_is_refused(
    address: tuple[str, int],
) -> None:
    """A reviewer's finding: only the first head's end in a read was counted, so a small request
    followed in the same write by one with a 180 KB header, or a head after blank lines, passed."""
    big = b"GET /echo HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 180_000 + b"\r\nConnection: close\r\n\r\n"
    received, _ = exchange(address, b"GET /echo HTTP/1.1\r\nHost: t\r\n\r\n" + big)
    assert received.count(b"HTTP/1.1 200") == 1 and b"HTTP/1.1 431" in received
    received, _ = exchange(address, b"\r\n\r\n" + big)
    assert received.startswith(b"HTTP/1.1 431")


def test_a_trailer_line_that_never_ends_is_cut(address: tuple[str, int]) -> None:
    """A trailer line that never ends reaches no parser callback: the request's bytes are bounded."""
    head = b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
    started = time.monotonic()
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(head + b"5\r\nhello\r\n0\r\nX-T: ")
        try:
            for _ in range(8):
                sock.sendall(b"a" * 1_000_000)
        except (BrokenPipeError, ConnectionResetError):
            pass
        with contextlib.suppress(ConnectionResetError):
            assert sock.recv(100) == b""  # closed, no answer
    assert time.monotonic() - started < protocol.REQUEST_SECONDS + 5


def test_a_slow_pipelined_request_does_not_replace_the_answer_to_the_one_before(
    address: tuple[str, int],
) -> None:
    """A reviewer's finding: uvicorn holds a pipelined request until the one before is answered;
    its deadline fired meanwhile and its 408 went out in place of that answer."""
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(b"POST /unread?s=1 HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n")
        time.sleep(0.05)
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc")
        time.sleep(0.05)
        received = b""
        sock.settimeout(3)
        try:
            while b"done" not in received and (chunk := sock.recv(65536)):
                received += chunk
        except (TimeoutError, ConnectionResetError):
            pass
    assert received.startswith(b"HTTP/1.1 200") and b"done" in received
