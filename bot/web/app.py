"""FastAPI application: the web chat page at ``/``, the REST API under ``/api``, health and docs."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import AfterValidator, BaseModel, Field, SecretStr

from bot.channels import Channel, Service
from bot.choices import ChoiceKind
from bot.core import Incoming, Outgoing, TellerCore
from bot.errors import InputError, TellerError
from bot.service import TellerService
from bot.storage import HUMAN_ROUTE, StoreError
from bot.text import clean, has_surrogates
from bot.web.security import API_ACTOR, JsonBodies, OperatorKey, SecurityHeaders, add_docs

log = logging.getLogger(__name__)
STATIC = Path(__file__).resolve().parent / "static"
WEB_CHANNEL = "web"


def _text(value: str) -> str:
    """Inputs a person could have typed: no lone surrogate (422), control characters dropped."""
    if has_surrogates(value):
        raise ValueError("contains an invalid character (a lone UTF-16 surrogate)")
    return clean(value)


#: A text field of a request body or query, checked by :func:`_text`.
Text = Annotated[str, AfterValidator(_text)]
#: Largest request body accepted on any route (bytes): a message is at most 10,000 characters
#: (60 KB as JSON escapes at worst); Slack's interaction payloads stay well under this.
MAX_BODY_BYTES = 256 * 1024


class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes gets a 413, whether it says its length
    (refused before reading) or streams it chunked (refused once the count passes the limit)."""

    def __init__(self, app: Any, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            await self._refuse(send)
            return
        received = 0
        started = refused = False

        async def counted() -> Any:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    # Answer now and tell the app the client is gone: it stops reading, and whatever
                    # it would answer is dropped below.
                    if not started and not refused:
                        refused = True
                        await self._refuse(send)
                    return {"type": "http.disconnect"}
            return message

        async def watched(message: Any) -> None:
            nonlocal started
            if refused:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, counted, watched)

    async def _refuse(self, send: Any) -> None:
        body = json.dumps({"detail": f"the request body is larger than {self.limit} bytes"}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


class MessageIn(BaseModel):
    user_id: Text = Field(
        min_length=1, max_length=200, description="Stable id of the customer (one conversation each)."
    )
    text: Text = Field(
        max_length=10_000, description="The customer's message, or the value of a pressed choice."
    )
    client_message_id: Text | None = Field(
        default=None,
        max_length=200,
        pattern=r"^[^:]+$",
        description="Optional id for safe retries: the same id is answered once. No ':'.",
    )


class ChoiceOut(BaseModel):
    """A button: ``value`` is what to send back as the message's text (or, for ``kind``
    ``feedback``, ``helpful`` is what to post to ``/api/feedback``)."""

    label: str
    value: str
    kind: ChoiceKind
    helpful: bool | None = None


class MessageOut(BaseModel):
    reply: str
    choices: list[ChoiceOut]
    route: str
    intent: str | None
    message_id: str


class RelayedOut(BaseModel):
    messages: list[MessageOut] = Field(description="Operators' messages after the given one, oldest first.")
    handoff_open: bool = Field(description="Whether a person is still handling the conversation.")
    closed_notice: str | None = None


class FeedbackIn(BaseModel):
    message_id: Text = Field(min_length=1, max_length=100)
    helpful: bool
    comment: Text | None = Field(default=None, max_length=2000)


class FeedbackOut(BaseModel):
    feedback_id: str
    message_id: str
    helpful: bool


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
) -> FastAPI:
    """The HTTP application around ``core``; ``services`` (e.g. the model swapper), then
    ``channels``, then ``background`` work that needs the channels running (delivery recovery)
    start with it, and stop in the reverse order; channels may add routes.

    With ``owns_core``, shutting the application down also closes the core (and its database).
    ``operator_key`` (``TELLER_OPERATOR_API_KEY``) opens the operator-only endpoints
    (:class:`bot.web.security.OperatorKey`); without it they answer 403.
    ``production`` (``TELLER_ENV=production``): the API docs answer 404 and ``/healthz`` shows only
    its status, except to a request carrying that key.
    """
    service = service or TellerService(core)

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

    app.add_middleware(BodyLimit)
    app.add_middleware(JsonBodies)  # 415 for a non-JSON body under /api/, before it is read
    app.add_middleware(SecurityHeaders)  # outermost: on every response, the refusals above included

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        # Say what is wrong and where, never echo what was sent (it may be huge, or a customer's PII).
        problems = [
            {"loc": ".".join(str(part) for part in error.get("loc", ())), "msg": str(error.get("msg", ""))}
            for error in exc.errors()
        ]
        return JSONResponse({"detail": problems}, status_code=422)

    @app.exception_handler(InputError)
    async def bad_input(request: Request, exc: InputError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(StoreError)
    async def store_down(request: Request, exc: StoreError) -> JSONResponse:
        # Nothing was answered: retrying (with the same client_message_id) is safe.
        log.error("store_unavailable", extra={"fields": {"error": str(exc)[:300]}})
        return JSONResponse(
            {"detail": "Teller cannot store messages right now; please try again shortly."},
            status_code=503,
            headers={"Retry-After": "2"},
        )

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def chat_page() -> str:
        return (STATIC / "chat.html").read_text(encoding="utf-8")

    # The page's script and style (the Content-Security-Policy allows no inline ones).
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.post(
        "/api/messages", response_model=MessageOut, summary="Send a customer message, get Teller's reply"
    )
    def post_message(body: MessageIn) -> MessageOut:
        if not body.text.strip():
            raise HTTPException(status_code=400, detail="text is empty")
        message_id = f"{body.user_id}:{body.client_message_id}" if body.client_message_id else None
        reply = service.handle(Incoming(WEB_CHANNEL, body.user_id, body.user_id, message_id, body.text))
        return message_out(reply)

    @app.get(
        "/api/messages",
        response_model=RelayedOut,
        summary="During a handoff: the operator's messages since the last one the page has",
    )
    def get_messages(
        user_id: Annotated[Text, Query(min_length=1, max_length=200)],
        after: Annotated[Text | None, Query(max_length=100)] = None,
    ) -> RelayedOut:
        relayed = service.relayed(WEB_CHANNEL, user_id, after)
        return RelayedOut(
            messages=[
                MessageOut(reply=m.text, choices=[], route=HUMAN_ROUTE, intent=None, message_id=m.id)
                for m in relayed.messages
            ],
            handoff_open=relayed.handoff_open,
            closed_notice=relayed.notice,
        )

    @app.post(
        "/api/feedback", response_model=FeedbackOut, summary="Mark one of Teller's replies helpful or not"
    )
    def post_feedback(body: FeedbackIn) -> FeedbackOut:
        try:
            entry = service.feedback(body.message_id, body.helpful, body.comment)
        except InputError as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from None
        return FeedbackOut(feedback_id=entry.id, message_id=entry.message_id, helpful=entry.helpful)

    operator = OperatorKey(operator_key)

    def operator_or_development(request: Request) -> bool:
        return not production or operator.admits(request)

    add_docs(app, operator_or_development)

    @app.delete(
        "/api/customers/{channel}/{user_id}",
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
            Text, PathParam(min_length=1, max_length=50, description="web, telegram, slack or terminal")
        ],
        user_id: Annotated[
            Text, PathParam(min_length=1, max_length=200, description="The channel's user id")
        ],
    ) -> JSONResponse:
        """Everything Teller stored about the customer goes, in one transaction recorded in the audit
        log under a pseudonym; returns the receipt (rows removed per kind, caveats). An unknown
        customer gets a receipt of zeros."""
        from bot.privacy.erasure import Eraser

        return JSONResponse(Eraser(core.store).erase(channel, user_id, API_ACTOR).to_dict())

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
