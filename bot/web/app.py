"""FastAPI application: the web chat page at ``/``, the REST API under ``/api``, health and docs.

Customers are who their session says (:mod:`bot.web.sessions`): the page gets a signed cookie, API
clients a bearer token from ``POST /api/sessions``, and a bank's backend may vouch for its own
customers. Every read, message, feedback and handoff is the session's conversation; an id that is
unknown and one that is somebody else's get the same 404. Abuse limits (:mod:`bot.abuse`) answer
429 with ``Retry-After``; bodies over 64 KB get a 413 before they are read (1 MB for Slack's
signed payloads); errors never echo what was sent.
"""

from __future__ import annotations

import asyncio
import functools
import html
import logging
import re
import unicodedata
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from time import perf_counter
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, StrictBool, field_validator
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders

from bot.channels import Channel, Service
from bot.choices import ChoiceKind
from bot.core import MAX_TEXT, Incoming, Outgoing, TellerCore
from bot.errors import Conflict, InputError, NotFound, RateLimited, ShuttingDown, TellerError
from bot.service import TellerService
from bot.settings import STARTER_BANK, bank_possessive
from bot.stages import collecting
from bot.stages import current as current_stage_times
from bot.storage import HUMAN_ROUTE, StoreError
from bot.storage.conversations import MESSAGE_ID_PATTERN
from bot.storage.outcomes import BACKEND_SOURCE
from bot.text import clean, has_surrogates
from bot.web.security import (
    API_ACTOR,
    HEADERS,
    JsonBodies,
    OnResponseStart,
    OperatorKey,
    SecurityHeaders,
    WellFormedJson,
    add_docs,
    send_json,
)
from bot.web.sessions import (
    SECURE_SESSION_COOKIE,
    SESSION_COOKIE,
    Identities,
    WebCustomer,
    personal_segment,
    stored_user_id,
)

if TYPE_CHECKING:
    from bot.privacy.erasure import ErasureReceipt

log = logging.getLogger(__name__)
STATIC = Path(__file__).resolve().parent / "static"
WEB_CHANNEL = "web"
#: Who an erasure asked for from the web chat is recorded as (never the customer's id: the audit
#: entry names them by pseudonym).
CUSTOMER_ACTOR = "web:customer"
#: What a customer who erased themselves is told stays (the operators' receipt says it in detail).
CUSTOMER_KEPT_STAFF = (
    "Copies our staff received while helping you (in their team chat) are removed by us, not here."
)
CUSTOMER_KEPT_BACKUPS = "Backups keep what they hold until they expire."
CUSTOMER_KEPT_KB = (
    "Your words may remain as an example question in our help answers; our staff have been told to "
    "review them."
)


def _text(value: str) -> str:
    """Inputs a person could have typed: no lone surrogate (422), control characters dropped."""
    if has_surrogates(value):
        raise ValueError("contains an invalid character (a lone UTF-16 surrogate)")
    return clean(value)


#: A text field of a request body or query, checked by :func:`_text`.
Text = Annotated[str, AfterValidator(_text)]


def _identifier(value: str) -> str:
    """An id as given (no cleaning: a cleaned id could name someone else): refused (422) when it holds
    a control or format character, or U+FFFD (bytes that were not UTF-8)."""
    if has_surrogates(value) or any(
        ch == "\ufffd" or unicodedata.category(ch) in ("Cc", "Cf") for ch in value
    ):
        raise ValueError("contains a control character or bytes that are not UTF-8")
    return value


#: An identifier in a path (a customer's id to erase): refused rather than cleaned.
Identifier = Annotated[str, AfterValidator(_identifier)]


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("is blank")
    return value


#: A customer's id in a path: as :data:`Identifier`, and not only spaces (422, as ``teller forget``
#: refuses it, rather than an audited receipt of zeros).
CustomerId = Annotated[str, AfterValidator(_identifier), AfterValidator(_not_blank)]
#: Largest request body accepted (bytes): a message is at most 4,000 characters (24 KB as JSON
#: escapes at worst). Slack's interaction payloads carry the whole message a button is on (up to 50
#: blocks), so its signed events route takes up to ``MAX_SLACK_BODY_BYTES``.
MAX_BODY_BYTES = 64 * 1024
MAX_SLACK_BODY_BYTES = 1024 * 1024
#: Largest message text a request may carry (characters): :data:`bot.core.MAX_TEXT`, checked once
#: in the service; this bound only keeps the validator from reading megabytes first.
MAX_TEXT_FIELD = 10_000


class ServerTiming(OnResponseStart):
    """ASGI middleware (``TELLER_SERVER_TIMING``): each HTTP response carries a ``Server-Timing``
    header (W3C Server Timing) with the request's stage times (:mod:`bot.stages`, milliseconds) and
    ``app``, from the request reaching the application to its response starting."""

    async def call(self, scope: Any, receive: Any, send: Any) -> None:
        with collecting():
            await self.app(scope, receive, send)

    def started(self, headers: MutableHeaders) -> None:
        times = current_stage_times()
        if times is not None:
            times.add("app", perf_counter() - times.started)
            headers.append("server-timing", times.header())


class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes gets a 413, whether it says its length
    (refused before reading) or streams it chunked (refused once the count passes the limit)."""

    def __init__(
        self, app: Any, limit: int = MAX_BODY_BYTES, larger: tuple[tuple[str, int], ...] = ()
    ) -> None:
        self.app = app
        self.limit = limit
        #: ``(path prefix, limit)`` pairs for routes that take more (Slack's payloads).
        self.larger = larger

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = next((n for prefix, n in self.larger if scope["path"].startswith(prefix)), self.limit)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            await self._refuse(send, limit)
            return
        received = 0
        started = refused = False

        async def counted() -> Any:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # Answer now and tell the app the client is gone: it stops reading, and whatever
                    # it would answer is dropped below.
                    if not started and not refused:
                        refused = True
                        await self._refuse(send, limit)
                    return {"type": "http.disconnect"}
            return message

        async def watched(message: Any) -> None:
            nonlocal started
            if refused:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, counted, watched)

    async def _refuse(self, send: Any, limit: int) -> None:
        await send_json(send, 413, f"the request body is larger than {limit:,} bytes")


class MessageIn(BaseModel):
    """A customer's message. Who sent it is the session's business: a ``user_id`` field is refused
    (422), since a client-chosen id is no identity."""

    model_config = ConfigDict(extra="forbid")

    text: Text = Field(
        description="The customer's message (at most 4,000 characters), or the value of a pressed choice. "
        "A feedback value (`feedback:helpful`, `feedback:not_helpful`) is the customer's verdict on Teller's "
        "latest answer in this conversation that offered feedback buttons, recorded as `POST /api/feedback` "
        "records it and acknowledged with route `feedback` (its `message_id` is the reply rated; nothing "
        "is stored as a message): 404 before such an answer, 409 when that reply has feedback already, "
        "400 for any other `feedback:<word>`.",
    )
    client_message_id: Text | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Optional id for safe retries: the same id from the same session is answered once; "
        "sent again with other words (another message, or a message after a feedback value) it is "
        "refused with 409. Stored only as a keyed digest.",
    )

    @field_validator("text", mode="before")
    @classmethod
    def _not_huge(cls, value: object) -> object:
        """Far over the limit: refused before anything reads it, naming the real limit (the service
        checks the 4,000 characters on the text as cleaned)."""
        if isinstance(value, str) and len(value) > MAX_TEXT_FIELD:
            raise ValueError(f"the message is longer than the {MAX_TEXT:,} characters Teller reads")
        return value

    segment: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_.-]{1,50}$",
        description="The customer's segment (e.g. retail, premier), from a bank's backend only (with the "
        "backend key; a customer token names it in its `segment` claim): positioning measures what "
        "each segment gets.",
    )

    @field_validator("segment")
    @classmethod
    def _segment_is_no_personal_data(cls, value: str | None) -> str | None:
        if value is not None and personal_segment(value):
            raise ValueError(
                "looks like personal data (a card number, an IBAN, an e-mail address or an identity "
                "number), not a segment"
            )
        return value


class SessionOut(BaseModel):
    token: str = Field(description="Send it as 'Authorization: Bearer <token>' on every call.")
    token_type: str = "bearer"
    expires_in: int = Field(description="Seconds the session lasts.")


class ChoiceOut(BaseModel):
    """A button: ``value`` is what to send back as the message's text (for ``kind`` ``feedback``,
    the verdict on the reply it came with, recorded on the latest reply; or post ``helpful`` to
    ``/api/feedback`` with the reply's ``message_id``)."""

    label: str
    value: str
    kind: ChoiceKind
    helpful: bool | None = None


class MessageOut(BaseModel):
    reply: str
    choices: list[ChoiceOut]
    route: str
    intent: str | None = Field(
        description="The intent the classifier read in the message (the one answered on route "
        "`intent`); null for small talk, feedback and operators' messages."
    )
    message_id: str


class RelayedOut(BaseModel):
    messages: list[MessageOut] = Field(description="Operators' messages after the given one, oldest first.")
    handoff_open: bool = Field(description="Whether a person is still handling the conversation.")
    closed_notice: str | None = None


class FeedbackIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message_id: Text = Field(min_length=1, max_length=100)
    helpful: StrictBool = Field(description='true or false (JSON booleans only, not "yes" or 1).')
    comment: Text | None = Field(default=None, max_length=2000)


class ErasedOut(BaseModel):
    """What erasing the session's customer removed (rows per kind; the audit log records it under a
    pseudonym, :mod:`bot.privacy.erasure`)."""

    messages: int = Field(description="Messages: the customer's, Teller's replies, relays in handoffs.")
    conversations: int
    feedback: int
    handoffs: int
    at: str = Field(description="When, UTC.")
    kept: list[str] = Field(
        default_factory=list,
        description="What Teller could not delete itself (copies in the bank's operators' tools, "
        "backups): the bank's to remove.",
    )


class FeedbackOut(BaseModel):
    feedback_id: str
    message_id: str
    helpful: bool


class OutcomeIn(BaseModel):
    """A business outcome a bank's backend records on one of Teller's replies."""

    model_config = ConfigDict(extra="forbid")

    outcome: str = Field(
        min_length=1,
        max_length=50,
        description="The outcome's name, a short slug (lower-case letters, digits, underscores; starting "
        "with a letter), e.g. adviser_call_booked: what a need's resolution rule names (outcome=NAME).",
    )
    message_id: Text | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        description="The reply of Teller's the outcome follows (a message_id from POST /api/messages). "
        "Without it, the latest reply to the customer named by X-Teller-Customer.",
    )


class OutcomeOut(BaseModel):
    outcome_id: str
    message_id: str
    outcome: str
    recorded_at: str
    new: bool = Field(
        description="False when this outcome was recorded on this reply before (nothing changed)."
    )


#: An unexpected field's name that is echoed in a 422: a programmer's identifier ("user_id",
#: "userId"), never a customer's words, an e-mail address or a number.
_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z_\-]{0,39}")


def _where(error: Any) -> str:
    """Where a validation error is, without echoing what was sent: an unexpected field is named when
    its name reads as an identifier of a program's (``body.user_id``: an integrator sees which key
    to drop), otherwise only as such (its name is the client's text, and may be anything)."""
    parts = [str(part) for part in error.get("loc", ())]
    if error.get("type") == "extra_forbidden" and not (parts and _FIELD_NAME.fullmatch(parts[-1])):
        parts = [*parts[:-1], "(an unexpected field)"]
    return ".".join(part[:60] for part in parts)


def _problem(error: Any) -> str:
    """A validation error in words for the client: a text's length in characters (pydantic says
    "items" for a length checked after a validator, as every text field here is), invalid JSON as
    such; never the input itself."""
    kind, ctx = error.get("type"), error.get("ctx") or {}
    if kind == "too_short" and "min_length" in ctx:
        least = int(ctx["min_length"])
        return f"must not be empty (at least {least} character{'s' if least != 1 else ''})"
    if kind == "too_long" and "max_length" in ctx:
        return f"too long: at most {int(ctx['max_length']):,} characters"
    if kind == "json_invalid":
        return "the body is not valid JSON" + (f" ({ctx['error']})" if ctx.get("error") else "")
    return str(error.get("msg", ""))[:200]


async def current_customer(request: Request) -> WebCustomer:
    """FastAPI dependency: the customer of the request (the app's :class:`Identities` resolve it;
    401 when there is no session that holds). A coroutine, run on the event loop: resolving is a few
    HMACs or one JWT check, tens of microseconds, while a sync dependency costs a hand-off to the
    thread pool and back on every request."""
    identities: Identities = request.app.state.identities
    return identities.resolve(request)


@functools.lru_cache(maxsize=4)
def chat_page_html(bank: str, erasure: bool = True, notice: str = "") -> str:
    """The web chat's page naming ``bank`` (HTML-escaped; "" for no name): its title, its header
    and the greeting its script shows first (a data attribute: the page allows no inline script);
    with ``erasure``, its "Delete my conversation" button (``DELETE /api/conversation``); ``notice``
    (``TELLER_PRIVACY_NOTICE``), the line under the form saying what is kept ("" for none)."""
    assistant = f"{bank_possessive(bank)} assistant"
    fields = {
        "title": f"Teller · {bank}" if bank else "Teller",
        "assistant": assistant[:1].upper() + assistant[1:],
        "greeting": f"Hello! I'm Teller, {assistant}. How can I help?",
        "erasure": "on" if erasure else "off",
        "notice": notice,
    }
    # A template beside the package, not under /static: served only filled in.
    page = (Path(__file__).parent / "chat.html").read_text(encoding="utf-8")
    # One pass over the template: a value holding "{{greeting}}" is not filled in again.
    return re.sub(r"\{\{(\w+)\}\}", lambda m: html.escape(fields[m.group(1)], quote=True), page)


def message_out(reply: Outgoing) -> MessageOut:
    return MessageOut(
        reply=reply.text,
        choices=[
            ChoiceOut(label=c.label, value=c.value, kind=c.kind, helpful=c.helpful) for c in reply.choices
        ],
        route=reply.route,
        intent=reply.intent,
        message_id=reply.message_id,
    )


def create_app(
    core: TellerCore,
    channels: Sequence[Channel] = (),
    owns_core: bool = False,
    services: Sequence[Service] = (),
    service: TellerService | None = None,
    background: Sequence[Service] = (),
    operator_key: SecretStr | str | None = None,
    production: bool = False,
    identities: Identities | None = None,
    server_timing: bool = False,
    bank: str | Callable[[], str] = STARTER_BANK,
    briefs_dir: Path | None = None,
    customer_erasure: str = "anonymous",
    privacy_notice: str = "",
) -> FastAPI:
    """The HTTP application around ``core``; ``services`` (e.g. the model swapper), then
    ``channels``, then ``background`` work that needs the channels running (delivery recovery)
    start with it, and stop in the reverse order; channels may add routes.

    With ``owns_core``, shutting the application down also closes the core (and its database).
    ``operator_key`` (``TELLER_OPERATOR_API_KEY``) opens the operator-only endpoints
    (:class:`bot.web.security.OperatorKey`); without it they answer 403.
    ``production`` (``TELLER_ENV=production``): the API docs answer 404 and ``/healthz`` shows only
    its status, except to a request carrying that key.
    ``bank`` (:func:`bot.assistant.bank_name`): the bank's name the chat page shows ("" for none),
    or what reads it for each page (``teller serve``: the served policy's, which follows the
    knowledge base).
    ``server_timing`` (``TELLER_SERVER_TIMING``): every response says where its time went
    (:class:`ServerTiming`), to every client (logged as a warning in production).
    ``identities`` resolve requests to customers (:class:`bot.web.sessions.Identities`; by default
    from the store's generated keys, with no backend key and no customer tokens).
    ``briefs_dir`` (``TELLER_HOME/briefs``): where an erasure rewrites the brief files that quoted
    the customer (None: the database's briefs only, and the receipt says so).
    ``customer_erasure`` (``TELLER_CUSTOMER_ERASURE``): who may erase themselves from the web chat
    (``anonymous``, ``all`` or ``off``; :meth:`erase_own`). ``privacy_notice``
    (``TELLER_PRIVACY_NOTICE``): the chat page's line saying what is kept.
    """
    service = service or TellerService(core)
    identities = identities or Identities.from_store(core.store)
    limits = service.limits

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        started: list[Service] = []
        try:
            for channel in [*services, *channels, *background]:
                await channel.start()
                started.append(channel)
            yield
        finally:
            for channel in reversed(started):
                try:
                    await channel.stop()
                except Exception as exc:  # one failing adapter must not keep the others running
                    log.error(
                        "channel_stop_failed", extra={"fields": {"channel": channel.name, "error": repr(exc)}}
                    )
            if owns_core:
                # In-flight requests have finished by now (uvicorn waits for them): flush and close.
                await asyncio.to_thread(service.close)
                await asyncio.to_thread(core.close)
                log.info("core_closed")

    app = FastAPI(
        title="Teller",
        version="0.1.0",
        lifespan=lifespan,
        description="Customer-service assistant: web chat, REST API, Telegram and Slack webhooks.",
        # Served by add_docs below: open in development, behind the operator key in production.
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )

    identities.secure_only = production
    app.state.identities = identities
    app.add_middleware(WellFormedJson)  # inside the body limit: reads bodies it has bounded
    app.add_middleware(BodyLimit, larger=(("/slack/", MAX_SLACK_BODY_BYTES),))
    app.add_middleware(JsonBodies)  # 415 for a non-JSON body under /api/, before it is read
    app.add_middleware(SecurityHeaders)  # outermost: on every response, the refusals above included
    if server_timing:
        app.add_middleware(ServerTiming)
        if production:
            # Every client, customers included, would see how long each stage took.
            log.warning("server_timing_in_production", extra={"fields": {"setting": "TELLER_SERVER_TIMING"}})

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        # Say what is wrong and where, never echo what was sent (it may be huge, or a customer's PII).
        problems = [{"loc": _where(error), "msg": _problem(error)} for error in exc.errors()[:10]]
        return JSONResponse({"detail": problems}, status_code=422)

    @app.exception_handler(InputError)
    async def bad_input(request: Request, exc: InputError) -> JSONResponse:
        status = 404 if isinstance(exc, NotFound) else 409 if isinstance(exc, Conflict) else 400
        return JSONResponse({"detail": str(exc)}, status_code=status)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        # Starlette answers this outside every middleware: the security headers are put on here.
        return JSONResponse(
            {"detail": "Teller hit an internal error; it is logged. Please try again."},
            status_code=500,
            headers=dict(HEADERS),
        )

    @app.exception_handler(RateLimited)
    async def too_many(request: Request, exc: RateLimited) -> JSONResponse:
        return JSONResponse(
            {"detail": str(exc), "limit": exc.scope, "retry_after": exc.retry_after},
            status_code=429,
            headers={"Retry-After": str(exc.retry_after)},
        )

    @app.exception_handler(ShuttingDown)
    async def shutting_down(request: Request, exc: ShuttingDown) -> JSONResponse:
        # Nothing was answered or stored: sending it again is safe.
        return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": "2"})

    @app.exception_handler(StoreError)
    async def store_down(request: Request, exc: StoreError) -> JSONResponse:
        # Nothing was answered: retrying (with the same client_message_id) is safe.
        log.error("store_unavailable", extra={"fields": {"error": str(exc)[:300]}})
        return JSONResponse(
            {"detail": "Teller cannot store messages right now; please try again shortly."},
            status_code=503,
            headers={"Retry-After": "2"},
        )

    def address(request: Request) -> str | None:
        # Behind a proxy trusted by TELLER_FORWARDED_ALLOW_IPS this is the client's, not the proxy's.
        return request.client.host if request.client is not None else None

    def origin(request: Request, who: WebCustomer) -> str | None:
        # The per-address limits are for browsers: a bank's backend relays all of its customers.
        return None if who.backend else address(request)

    # HEAD too: uptime monitors probe the page so (405 read as "down"); a probe gets no session.
    @app.api_route("/", methods=["GET", "HEAD"], response_class=HTMLResponse, include_in_schema=False)
    def chat_page(request: Request) -> HTMLResponse:
        name = bank() if callable(bank) else bank
        page = HTMLResponse(chat_page_html(name, customer_erasure != "off", privacy_notice))
        if request.method == "HEAD":
            return page
        if identities.page_customer(request) is None:  # first visit, or the session ran out
            try:
                limits.session(address(request))
            except RateLimited as exc:  # a page, not JSON, for a browser
                return HTMLResponse(
                    f"<!doctype html><title>Teller</title><p>{exc}</p>",
                    status_code=429,
                    headers={"Retry-After": str(exc.retry_after)},
                )
            session = identities.issue()
            secure = production or request.url.scheme == "https"
            page.set_cookie(
                SECURE_SESSION_COOKIE if secure else SESSION_COOKIE,
                session.token,
                max_age=session.max_age,
                httponly=True,
                samesite="lax",  # JSON-only POSTs stop cross-site requests; links keep the session
                secure=secure,
                path="/",
            )
        return page

    # The page's script and style (the Content-Security-Policy allows no inline ones).
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    refusals: dict[int | str, dict[str, Any]] = {
        401: {"description": "No session, or one that is invalid or expired"},
        429: {"description": "Over an abuse limit; Retry-After says when to try again"},
    }

    @app.post(
        "/api/sessions",
        response_model=SessionOut,
        status_code=201,
        summary="Start a customer session (API clients): a bearer token for the calls that follow",
        responses={429: refusals[429]},
    )
    def start_session(request: Request) -> SessionOut:
        limits.session(address(request))
        session = identities.issue()
        return SessionOut(token=session.token, expires_in=session.max_age)

    @app.post(
        "/api/messages",
        response_model=MessageOut,
        summary="Send a customer message, get Teller's reply",
        responses={
            **refusals,
            400: {
                "description": "Unusable text: not UTF-8, control characters, or a feedback:<word> value "
                "Teller never offers"
            },
            404: {"description": "A feedback value sent before Teller replied in this conversation"},
            409: {
                "description": "A feedback value on a reply that has feedback already, or a "
                "client_message_id used before for another message"
            },
            503: {
                "description": "Nothing answered or stored (the database is unreachable, or this server "
                "is shutting down); Retry-After says when to send the same message again"
            },
        },
    )
    async def post_message(
        body: MessageIn, request: Request, who: Annotated[WebCustomer, Depends(current_customer)]
    ) -> MessageOut:
        # One hand-off to the thread pool for the blocking part (the store, the models); a sync
        # endpoint would cost a second one, as FastAPI serialises its response there too.
        message_id = identities.platform_id(who, body.client_message_id) if body.client_message_id else None
        if body.segment is not None and not who.backend:
            raise InputError("segment is named by the bank's backend (or in a customer token's claim)")
        segment = body.segment if who.backend else who.segment
        incoming = Incoming(
            WEB_CHANNEL,
            who.user_id,
            who.user_id,
            message_id,
            body.text,
            origin(request, who),
            segment,
            not who.verified,
        )
        return message_out(await run_in_threadpool(service.handle, incoming))

    @app.get(
        "/api/messages",
        response_model=RelayedOut,
        summary="During a handoff: the operator's messages since the last one the page has",
    )
    def get_messages(
        who: Annotated[WebCustomer, Depends(current_customer)],
        after: Annotated[
            str | None,
            Query(
                pattern=MESSAGE_ID_PATTERN + "|^$",
                description="The message_id of the last message the page has (422 if it is not one; "
                "empty or absent: from the start of the latest handoff).",
            ),
        ] = None,
    ) -> RelayedOut:
        relayed = service.relayed(WEB_CHANNEL, who.user_id, after)
        return RelayedOut(
            messages=[
                MessageOut(reply=m.text, choices=[], route=HUMAN_ROUTE, intent=None, message_id=m.id)
                for m in relayed.messages
            ],
            handoff_open=relayed.handoff_open,
            closed_notice=relayed.notice,
        )

    @app.post(
        "/api/feedback",
        response_model=FeedbackOut,
        summary="Mark one of Teller's replies to this session helpful or not (once per reply)",
        responses={
            **refusals,
            404: {"description": "No reply of Teller's with that id in this session's conversation"},
            409: {
                "description": "Feedback on that reply was given already, or the reply offered no "
                "feedback (a clarifying question, a handoff, small talk)"
            },
            429: {"description": "Over a message limit (a verdict counts as a message); see Retry-After"},
        },
    )
    def post_feedback(
        body: FeedbackIn, request: Request, who: Annotated[WebCustomer, Depends(current_customer)]
    ) -> FeedbackOut:
        # A verdict counts one unit of the message limits, as one sent as a message's text does: a
        # flood of them (made-up ids, each a look-up in the store) is refused with 429 like a flood
        # of messages. Counted before anything is looked up, so a refused one records nothing.
        service.limits.message(WEB_CHANNEL, who.user_id, origin(request, who), not who.verified)
        entry = service.feedback(body.message_id, body.helpful, body.comment, who.user_id, WEB_CHANNEL)
        return FeedbackOut(feedback_id=entry.id, message_id=entry.message_id, helpful=entry.helpful)

    @app.post(
        "/api/outcomes",
        response_model=OutcomeOut,
        status_code=201,
        summary="Bank's backend only: record a business outcome (e.g. adviser_call_booked) of one of "
        "Teller's replies",
        responses={
            200: {"description": "That outcome was recorded on that reply before; nothing changed"},
            400: {"description": "A malformed outcome name, or neither message_id nor X-Teller-Customer"},
            401: {"description": "No bearer credential, or not the backend key"},
            403: {"description": "A customer's credential, or TELLER_BACKEND_API_KEY is not set"},
            404: {"description": "Not one of Teller's replies (or not the named customer's)"},
        },
    )
    def post_outcome(body: OutcomeIn, request: Request, response: Response) -> OutcomeOut:
        """Positioning counts a need resolved by an outcome when the bank's rule for the need says so
        (``outcome=NAME``); the "Book an adviser call" button records ``adviser_call_booked`` itself.
        Recorded once per reply and name, in the audit log (``outcome``, actor ``api:backend``)."""
        who = identities.backend(request)
        outcome, new = service.record_outcome(
            body.outcome,
            BACKEND_SOURCE,
            message_id=body.message_id,
            customer=(WEB_CHANNEL, who.user_id) if who is not None else None,
        )
        if not new:
            response.status_code = 200
        return OutcomeOut(
            outcome_id=outcome.id,
            message_id=outcome.message_id,
            outcome=outcome.name,
            recorded_at=outcome.created_at,
            new=new,
        )

    def erase(channel: str, user_id: str, actor: str) -> ErasureReceipt:
        """Erase one customer (:class:`bot.privacy.erasure.Eraser`) and tell the operators in the
        threads of their handoffs that were open."""
        from bot.privacy.erasure import Eraser

        receipt = Eraser(core.store, briefs_dir).erase(channel, user_id, actor)
        if service.ops is not None:
            service.ops.customer_erased(receipt.open_threads)
        return receipt

    @app.delete(
        "/api/conversation",
        response_model=ErasedOut,
        summary="Erase this session's customer: their conversations, feedback and handoffs, as an "
        "operator's erasure does",
        responses={
            **refusals,
            403: {
                "description": "Self-service erasure is off for this customer (TELLER_CUSTOMER_ERASURE): "
                "a verified customer asks the bank, which erases with its operator credential"
            },
        },
    )
    def erase_own(request: Request, who: Annotated[WebCustomer, Depends(current_customer)]) -> ErasedOut:
        """Everything Teller stored about the session's customer goes (:mod:`bot.privacy.erasure`),
        in one transaction audited as ``web:customer`` under a pseudonym. An anonymous customer has
        no other way: no one else can name them. Limited per customer and per address
        (``TELLER_LIMIT_ERASURES``, 429); a customer with nothing stored gets zeros, and nothing is
        audited."""
        if who.backend or customer_erasure == "off" or (customer_erasure == "anonymous" and who.verified):
            refused = "Deleting the conversation here is not available; please ask us to do it."
            raise HTTPException(status_code=403, detail=refused)
        service.limits.erasure(WEB_CHANNEL, who.user_id, origin(request, who), not who.verified)
        if not core.store.conversations.holds_customer(WEB_CHANNEL, who.user_id):
            # Nothing to erase: no transaction, no audit row (each is kept for good), no checkpoint.
            now = core.store.database.clock.now()
            return ErasedOut(messages=0, conversations=0, feedback=0, handoffs=0, at=now)
        receipt = erase(WEB_CHANNEL, who.user_id, CUSTOMER_ACTOR)
        counts = receipt.counts
        if receipt.kb_entries:
            # Operators' entries written from the customer's words: theirs to review (the audit row
            # keeps only how many).
            fields = {"audit_id": receipt.audit_id, "kb_entries": list(receipt.kb_entries)}
            log.warning("erasure_left_kb_entries", extra={"fields": fields})
        return ErasedOut(
            messages=counts.get("messages", 0),
            conversations=counts.get("conversations", 0) + counts.get("conversations_anonymised", 0),
            feedback=counts.get("feedback", 0),
            handoffs=counts.get("handoffs", 0),
            at=receipt.at,
            kept=[
                # staff saw the conversation only through a handoff or the review queue
                *([CUSTOMER_KEPT_STAFF] if counts.get("handoffs") or counts.get("review_sources") else []),
                CUSTOMER_KEPT_BACKUPS,
                *([CUSTOMER_KEPT_KB] if receipt.kb_entries else []),
            ],
        )

    operator = OperatorKey(operator_key)

    def operator_or_development(request: Request) -> bool:
        return not production or operator.admits(request)

    add_docs(app, operator_or_development)

    @app.delete(
        # ``:path``: a customer id may hold "/" ("a/b" is accepted from X-Teller-Customer).
        "/api/customers/{channel}/{user_id:path}",
        # In dependencies, not a parameter: this module's annotations are strings, resolved from its
        # globals, and ``operator`` is local.
        dependencies=[Depends(operator)],
        summary="Operators only: erase one customer's conversations, feedback, review items and handoffs",
        responses={
            401: {"description": "No operator bearer credential, or the wrong one"},
            403: {"description": "Operator endpoints are off (TELLER_OPERATOR_API_KEY is not set)"},
        },
    )
    def erase_customer(
        channel: Annotated[
            Identifier, PathParam(min_length=1, max_length=50, description="web, telegram, slack or terminal")
        ],
        user_id: Annotated[
            CustomerId,
            PathParam(
                min_length=1,
                max_length=200,
                description="The channel's user id; on the web, the bank's customer id of a verified "
                "customer (or a stored w_/c_ id)",
            ),
        ],
    ) -> JSONResponse:
        """Everything Teller stored about the customer goes, in one transaction recorded in the audit
        log under a pseudonym, and their words in positioning briefs read "[erased]" (rows and
        files: ``briefs_rewritten``, ``brief_files_rewritten``); returns the receipt (rows removed
        per kind, caveats). An unknown customer gets a receipt of zeros."""
        if channel.strip().lower() == WEB_CHANNEL:
            user_id = stored_user_id(core.store, user_id)
        return JSONResponse(erase(channel, user_id, API_ACTOR).to_dict())

    @app.get(
        "/healthz",
        summary="Health: the database, the model served against the one the cluster has active, the KB",
        description="In production (TELLER_ENV=production) only `status` is shown, unless the request "
        "carries the operator bearer credential.",
        responses={503: {"description": "The database is unreachable (this replica cannot store replies)"}},
    )
    def healthz(request: Request) -> JSONResponse:
        body, status = health()
        if not operator_or_development(request):
            # Anyone else learns up or down: not the model, the KB's size or the schema revision.
            body = {"status": body["status"]}
        return JSONResponse(body, status_code=status)

    def health() -> tuple[dict[str, Any], int]:
        policy = core.policy
        body: dict[str, Any] = {
            "status": "ok",
            "model": policy.classifier.version,
            "kb_entries": len(policy.kb),
            "kb_revision": policy.kb.revision,
        }
        database = core.store.database
        try:
            active = core.store.deployment.active_model()
            body["database"] = {
                "status": "ok",
                "kind": database.dialect,
                "revision": database.revision(),
                "kb_log_seq": core.store.kb_log.head(),
            }
            body["active_model"] = active or body["model"]
            # Serving another version than the cluster's is normal for a few seconds after an
            # activation; for longer it means this replica cannot load it.
            body["model_current"] = active is None or active == policy.classifier.version
        except TellerError as exc:
            body["status"] = "degraded"
            body["database"] = {"status": "unreachable", "kind": database.dialect, "error": str(exc)[:200]}
            return body, 503
        return body, 200

    for channel in channels:
        router = channel.router()
        if router is not None:
            app.include_router(router)
    return app
