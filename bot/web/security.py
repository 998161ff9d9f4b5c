"""The operator credential of the REST API: one bearer key (``TELLER_OPERATOR_API_KEY``).

:class:`OperatorKey` is a FastAPI dependency; put it on any route only operators may call::

    @app.delete("/api/customers/{channel}/{user_id}", dependencies=[Depends(operator_key)])

- the key is not configured: **403**, the endpoint is off until it is;
- no ``Authorization: Bearer …`` header, or the wrong key: **401** (``WWW-Authenticate: Bearer``);
- the right key: the route runs.

Keys are compared in constant time (:func:`hmac.compare_digest`). Refusals are logged without the
presented value. :meth:`OperatorKey.admits` asks the same question without refusing, for routes
that show everyone else less (``/healthz``) or nothing (the API docs, in production).

The rest of the web app's hardening ("closed by default") is here too:

- :class:`SecurityHeaders`: every response gets a Content-Security-Policy (the chat page loads its
  script and style from ``/static``, nothing inline; no framing), ``X-Content-Type-Options:
  nosniff``, ``Referrer-Policy: no-referrer``, ``X-Frame-Options: DENY`` and ``Cache-Control:
  no-store`` (unless the route set its own);
- :class:`JsonBodies`: a request with a body under ``/api/`` must say ``Content-Type:
  application/json`` (415 otherwise), so a cross-site form cannot post to the API without a CORS
  preflight; the Slack and Telegram webhooks, outside ``/api/``, keep their own formats;
- :class:`WellFormedJson`: such a body that is not UTF-8, names a key twice in one object, or holds
  a number too long to read is refused saying which (400 / 422), where FastAPI said only "There
  was an error parsing the body" or kept a repeated key's last value without a word (a proxy or
  audit log reading the first would see another message than Teller answered);
- :func:`add_docs`: ``/docs``, ``/redoc`` and ``/openapi.json``, each answering 404 to a request the
  given check refuses (in production: one without the operator credential).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param
from pydantic import SecretStr
from starlette.datastructures import MutableHeaders

from bot.logs import loggable_path
from retrieval.loaders import RepeatedKey, unique_keys

log = logging.getLogger(__name__)

#: The actor operator API calls are recorded under (the key names no person).
API_ACTOR = "api:operator"

_bearer = HTTPBearer(auto_error=False, description="TELLER_OPERATOR_API_KEY", scheme_name="operator")


class OperatorKey:
    """A FastAPI dependency admitting requests that carry the operator key as a bearer token."""

    def __init__(self, key: SecretStr | str | None) -> None:
        raw = key.get_secret_value() if isinstance(key, SecretStr) else key
        self._key = raw.encode() if raw else None

    @property
    def configured(self) -> bool:
        return self._key is not None

    def admits(self, request: Request) -> bool:
        """Whether ``request`` carries the key (``Authorization: Bearer <key>``); never raises.
        False while no key is configured."""
        if self._key is None:
            return False
        scheme, token = get_authorization_scheme_param(request.headers.get("authorization"))
        presented = token.encode() if scheme.lower() == "bearer" else b""
        return bool(presented) and hmac.compare_digest(presented, self._key)

    async def __call__(
        self,
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)] = None,
    ) -> str:
        """The actor to record (:data:`API_ACTOR`); raises the 403 or 401 described above. In a module
        with ``from __future__ import annotations``, put an instance made inside a function in the
        route's ``dependencies``: a parameter's annotation is resolved from the module's globals."""
        if self._key is None:
            raise HTTPException(
                status_code=403,
                detail="operator endpoints are off: set TELLER_OPERATOR_API_KEY on the server to turn "
                "them on",
            )
        presented = credentials.credentials.encode() if credentials is not None else b""
        if not presented or not hmac.compare_digest(presented, self._key):
            log.warning(
                "operator_key_refused",
                extra={
                    "fields": {
                        "path": loggable_path(request.url.path),
                        "method": request.method,
                        "reason": "wrong key" if presented else "no bearer credential",
                    }
                },
            )
            raise HTTPException(
                status_code=401,
                detail="an operator bearer credential is required (Authorization: Bearer <key>)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        return API_ACTOR


# ---------------------------------------------------------------------------------- headers

#: The policy of every response but the docs pages: the chat page's script and style are files of
#: its own origin (``/static/chat.js``, ``/static/chat.css``), nothing inline, no framing.
PAGE_POLICY = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
HEADERS = (
    ("content-security-policy", PAGE_POLICY),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "DENY"),
    # Replies quote customers: no browser or proxy keeps a copy.
    ("cache-control", "no-store"),
)


class OnResponseStart:
    """ASGI middleware base: :meth:`started` edits the headers of every HTTP response as it starts;
    :meth:`call` runs the application (a subclass may run it inside a context of its own)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def edited(message: Any) -> None:
            if message["type"] == "http.response.start":
                self.started(MutableHeaders(scope=message))
            await send(message)

        await self.call(scope, receive, edited)

    async def call(self, scope: Any, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)

    def started(self, headers: MutableHeaders) -> None:
        raise NotImplementedError


class SecurityHeaders(OnResponseStart):
    """ASGI middleware: :data:`HEADERS` on every HTTP response, each unless the route set it."""

    def started(self, headers: MutableHeaders) -> None:
        for name, value in HEADERS:
            headers.setdefault(name, value)


# ---------------------------------------------------------------------------------- content type

JSON_ONLY = "Content-Type must be application/json (optionally with charset=utf-8)"


def is_json(content_type: str) -> bool:
    """``application/json``, with at most a ``charset=utf-8`` parameter (JSON is UTF-8)."""
    media, *parameters = content_type.split(";")
    if media.strip().lower() != "application/json":
        return False
    for parameter in filter(str.strip, parameters):
        name, _, value = parameter.partition("=")
        if name.strip().lower() != "charset" or value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            return False
    return True


class JsonBodies:
    """ASGI middleware: under ``prefix``, a request that carries a body whose Content-Type is not
    JSON gets a 415 before anything reads it."""

    def __init__(self, app: Any, prefix: str = "/api/") -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith(self.prefix):
            headers = [(k.lower(), v) for k, v in scope.get("headers") or []]
            # A request without a body (``POST /api/sessions``) has nothing to misread: no type needed.
            has_body = any(
                k == b"transfer-encoding" or (k == b"content-length" and v.strip() not in (b"", b"0"))
                for k, v in headers
            )
            types = [v.decode("latin-1") for k, v in headers if k == b"content-type"]
            if has_body and not (types and all(is_json(t) for t in types)):
                await send_json(send, 415, JSON_ONLY)
                return
        await self.app(scope, receive, send)


#: A key named in a refusal (the client's own text otherwise stays out of the answer).
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,39}")


def json_body_problem(body: bytes) -> tuple[int, Any] | None:
    """``(status, detail)`` for a JSON body Teller refuses before FastAPI reads it, None for one it
    may read (invalid JSON included: FastAPI's 422 says where it breaks). 400: not UTF-8 (RFC 8259
    wants UTF-8). 422: a key given twice in one object, a number of more digits than Python reads
    (4,300), nesting deeper than the parser goes."""
    if not body.strip():
        return None
    try:
        text = body.decode("utf-8-sig")  # a byte-order mark, which Starlette's reading skips, too
    except UnicodeDecodeError:
        return 400, "the body is not UTF-8 (JSON is sent as UTF-8)"
    try:
        json.loads(text, object_pairs_hook=unique_keys)
    except RepeatedKey as exc:
        key = str(exc)
        named = f"'{key}'" if _PLAIN_KEY.fullmatch(key) else "a field"
        return 422, [{"loc": "body", "msg": f"{named} is given twice in one object; send it once"}]
    except json.JSONDecodeError:
        return None
    except RecursionError:
        return 422, [{"loc": "body", "msg": "the body is nested too deeply"}]
    except ValueError:  # int() of more than sys.get_int_max_str_digits() digits
        return 422, [{"loc": "body", "msg": "a number in the body has too many digits"}]
    return None


class WellFormedJson:
    """ASGI middleware: under ``prefix``, a request's body is read whole (the body limit, outside
    this, has bounded it; :class:`JsonBodies` has made sure a body there is JSON; a request without
    one reads as empty), refused with :func:`json_body_problem`'s answer when it has one, and
    otherwise handed on unchanged."""

    def __init__(self, app: Any, prefix: str = "/api/") -> None:
        self.app = app
        self.prefix = prefix

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left, or the body limit refused it
                await self.app(scope, _replaying(message, receive), send)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        problem = json_body_problem(body)
        if problem is not None:
            await send_json(send, *problem)
            return
        whole = {"type": "http.request", "body": body, "more_body": False}
        await self.app(scope, _replaying(whole, receive), send)


def _replaying(first: Any, receive: Any) -> Callable[[], Any]:
    """A ``receive`` that gives ``first``, then what ``receive`` gives."""
    pending = [first]

    async def replay() -> Any:
        return pending.pop() if pending else await receive()

    return replay


async def send_json(send: Any, status: int, detail: Any) -> None:
    """Answer ``{"detail": detail}`` with ``status`` from ASGI middleware, before the app runs."""
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# ---------------------------------------------------------------------------------- API docs

_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)
_CDN = "https://cdn.jsdelivr.net"


def docs_policy(html: str) -> str:
    """The Content-Security-Policy of a docs page: Swagger UI's or ReDoc's files from their CDN,
    the page's own inline scripts by hash (never any other inline script), inline styles (both
    inject them), and no framing."""
    hashes = [
        "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"
        for script in _INLINE_SCRIPT.findall(html)
    ]
    return "; ".join(
        (
            "default-src 'self'",
            " ".join(["script-src 'self'", _CDN, *hashes]),
            f"style-src 'self' {_CDN} https://fonts.googleapis.com 'unsafe-inline'",
            "font-src 'self' https://fonts.gstatic.com",
            "img-src 'self' data: https://fastapi.tiangolo.com https://cdn.redoc.ly",
            "worker-src 'self' blob:",
            "connect-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        )
    )


def add_docs(app: FastAPI, allowed: Callable[[Request], bool]) -> None:
    """``/openapi.json``, ``/docs`` (Swagger UI) and ``/redoc`` on ``app`` (created with its own
    docs turned off); each answers 404, as if it did not exist, to a request ``allowed`` refuses."""

    def check(request: Request) -> None:
        if not allowed(request):
            raise HTTPException(status_code=404, detail="Not Found")

    def page(html: HTMLResponse) -> HTMLResponse:
        text = bytes(html.body).decode()
        return HTMLResponse(text, headers={"content-security-policy": docs_policy(text)})

    @app.get("/openapi.json", include_in_schema=False)
    def openapi(request: Request) -> JSONResponse:
        check(request)
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False)
    def swagger(request: Request) -> HTMLResponse:
        check(request)
        return page(get_swagger_ui_html(openapi_url="/openapi.json", title=f"{app.title} - Swagger UI"))

    @app.get("/redoc", include_in_schema=False)
    def redoc(request: Request) -> HTMLResponse:
        check(request)
        return page(get_redoc_html(openapi_url="/openapi.json", title=f"{app.title} - ReDoc"))
