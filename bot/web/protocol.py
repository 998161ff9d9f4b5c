"""HTTP/1.1 for ``teller serve``: uvicorn's httptools protocol with a bound on a request's head and
on how long a request may take to arrive.

uvicorn's httptools protocol (the fast one, taken when httptools is installed) reads request
headers without a size limit and waits for a slow request for ever: a reviewer sent a 161 MB header
and was answered 200 (the server grew by 190 MB for it), and a body declared as 100 bytes of which
one was sent held its connection open for over 100 s. A proxy in front (``deploy/nginx.conf``:
8 KB header buffers, 60 s client timeouts) stops both, but ``teller serve --host 0.0.0.0`` may face
clients directly. :class:`BoundedHttpToolsProtocol` keeps uvicorn's protocol and adds, per request:

- **head** (request line and headers): at most :data:`MAX_HEAD_BYTES`; more gets
  ``431 Request Header Fields Too Large`` and the connection is closed (what the client still sends
  is read and dropped for :data:`LINGER_SECONDS` first);
- **trailers** (header lines after a chunked body): at most :data:`MAX_HEAD_BYTES` too; more and
  the connection is closed;
- **time**: from a request's first byte until its body's last, at most :data:`REQUEST_SECONDS`;
  a request still arriving then gets ``408 Request Timeout`` where nothing is being answered on
  the connection (the application waiting for the body sees the client disconnect; its own answer
  is dropped), and only its connection is closed where an answer is under way.

Only a request's head counts toward its bound, not the body that may arrive with it in one write:
a head is counted as the parser hands its lines over, and one still unfinished after a read is
counted by the bytes received (at most one read over the bound before the refusal). Every byte of
one request is bounded too (:data:`MAX_REQUEST_BYTES`).

Where httptools is missing, uvicorn's h11 protocol runs with h11's own bound on an incomplete head
(:data:`MAX_HEAD_BYTES`) and no request timeout: :func:`http_protocol` says which.
"""

from __future__ import annotations

import logging
from asyncio import TimerHandle
from typing import Any

log = logging.getLogger(__name__)

#: A request's line and headers together, in bytes. nginx reads at most 4 buffers of 8 KB (its
#: ``large_client_header_buffers`` default); a browser's request with cookies is 1-4 KB.
MAX_HEAD_BYTES = 64 * 1024
#: Seconds from a request's first byte to its body's last (nginx's ``client_header_timeout`` and
#: ``client_body_timeout`` default to 60 s each, between two reads).
REQUEST_SECONDS = 30.0
#: Every byte of one request (head, body, trailers): above the largest body a route takes (1 MB,
#: Slack's signed payloads) with room; beyond, the connection is closed.
MAX_REQUEST_BYTES = 2 * 1024 * 1024 + MAX_HEAD_BYTES
#: After a refusal, the client's further bytes are read and dropped for this long before the
#: connection closes (as nginx's ``lingering_close`` does): closed at once with bytes unread, the
#: kernel resets the connection and the client may lose the refusal before reading it.
LINGER_SECONDS = 2.0


class _Refused(Exception):
    """Raised in a parser callback to stop parsing a request refused there."""


def _response(status: bytes, text: str) -> bytes:
    body = text.encode("ascii")
    return b"".join(
        [
            b"HTTP/1.1 " + status + b"\r\n",
            b"content-type: text/plain; charset=utf-8\r\n",
            b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
            b"connection: close\r\n\r\n",
            body,
        ]
    )


TOO_LARGE = _response(b"431 Request Header Fields Too Large", "Request headers too large.")
TOO_SLOW = _response(b"408 Request Timeout", "The request took too long to arrive.")


def http_protocol() -> tuple[Any, dict[str, Any]]:
    """``(http, options)`` for ``uvicorn.run(..., http=http, **options)``: the bounded httptools
    protocol, or uvicorn's h11 with its head limit where httptools is not installed."""
    try:
        return _bounded(), {}
    except ImportError:
        return "h11", {"h11_max_incomplete_event_size": MAX_HEAD_BYTES}


def _bounded() -> type:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class BoundedHttpToolsProtocol(HttpToolsProtocol):
        """uvicorn's :class:`HttpToolsProtocol`, its requests bounded in head size and arrival time
        (see the module's docstring)."""

        #: Bytes received since the current request's first while its head was unfinished.
        _head_bytes = 0
        #: Whether the current request's headers are still arriving.
        _in_head = True
        #: Bytes of the current request's line and headers as the parser hands them over (a head
        #: that ends within a read, or a pipelined request's after another's in one read).
        _parsed_head = 0
        #: Bytes of trailers (header lines after a chunked body) of the current request.
        _trailer_bytes = 0
        #: Every byte received since the current request's first (head, body, trailers).
        _request_bytes = 0
        #: Whether a request has begun and its body is not complete.
        _arriving = False
        _deadline: TimerHandle | None = None
        _refused = False

        def data_received(self, data: bytes) -> None:
            if self._refused:
                return
            if not self._arriving:
                self._arriving = True
                self._arm()
            self._request_bytes += len(data)
            if self._request_bytes > MAX_REQUEST_BYTES:
                # Beyond any body a route takes (bot.web.app's body limits: 1 MB at most): a trailer
                # line that never ends, say, which no callback would ever see.
                self._drop("request too large")
                return
            if self._in_head:
                self._head_bytes += len(data)
            super().data_received(data)
            # A head still unfinished after this read was all head: bounded here, since the parser
            # hands a header line over (to :meth:`_count_head`) only once it ends. A head that ended
            # in this read was counted there, and the body after it is no head's (a reviewer's
            # finding: a head and a large body written at once, as curl does, were refused).
            if self._in_head and self._head_bytes > MAX_HEAD_BYTES and not self._refused:
                self._refuse(TOO_LARGE, "head")

        def on_message_begin(self) -> None:
            self._parsed_head = 0
            super().on_message_begin()

        def on_url(self, url: bytes) -> None:
            self._count_head(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            if not self._in_head:  # a trailer, after a chunked body: bounded as the head is
                self._trailer_bytes += len(name) + len(value) + 4
                if self._trailer_bytes > MAX_HEAD_BYTES:
                    self._drop("trailers")
                    raise _Refused
            else:
                self._count_head(len(name) + len(value) + 4)
            super().on_header(name, value)

        def _count_head(self, size: int) -> None:
            self._parsed_head += size
            if self._parsed_head > MAX_HEAD_BYTES:
                self._refuse(TOO_LARGE, "head")
                raise _Refused  # stops the parser; uvicorn's 400 for it is not sent (below)

        def send_400_response(self, msg: str) -> None:
            if not self._refused:  # a refusal of ours was answered already
                super().send_400_response(msg)

        def on_headers_complete(self) -> None:
            self._in_head = False
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self._disarm()
            self._arriving, self._in_head, self._head_bytes = False, True, 0
            self._trailer_bytes = self._request_bytes = 0
            super().on_message_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(REQUEST_SECONDS, self._too_slow)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _too_slow(self) -> None:
            self._deadline = None
            if self.transport is None or self.transport.is_closing():
                return
            if self.pipeline:
                # An earlier request on this connection is still being answered (uvicorn holds this
                # one, reading paused, until it is): its time is not this request's to run out.
                self._arm()
                return
            cycle = self.cycle
            answering = cycle is not None and not cycle.response_complete
            if answering and cycle is not None and (cycle.response_started or self._in_head):
                # Teller is answering (this request, or the one before it on this connection): nothing
                # may be written here, only the connection goes.
                self._drop("slow")
            elif answering:
                # The application has this request and waits for its body: the 408 goes, and the
                # connection with it at once, so that the application's own answer is dropped
                # (uvicorn drops what is sent on a lost connection) rather than written after it.
                self._refused = True
                log.warning("http_request_refused", extra={"fields": {"reason": "slow"}})
                self.transport.write(TOO_SLOW)
                self.transport.close()
            else:
                self._refuse(TOO_SLOW, "slow")

        def _drop(self, reason: str) -> None:
            self._refused = True
            self._disarm()
            log.warning("http_request_refused", extra={"fields": {"reason": reason}})
            self.transport.close()

        def _refuse(self, response: bytes, reason: str) -> None:
            """Answer ``response`` where nothing of the application's is under way on the connection,
            then read and drop what the client still sends for :data:`LINGER_SECONDS`."""
            cycle = self.cycle
            if cycle is not None and not cycle.response_complete:
                self._drop(reason)  # a request before it is still being answered
                return
            self._refused = True  # what the client still sends is dropped
            self._disarm()
            log.warning("http_request_refused", extra={"fields": {"reason": reason}})
            self.transport.write(response)
            if self.transport.can_write_eof():
                self.transport.write_eof()
            self.loop.call_later(LINGER_SECONDS, self.transport.close)

    return BoundedHttpToolsProtocol
