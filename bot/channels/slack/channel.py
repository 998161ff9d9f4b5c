"""The Slack channel: slack-bolt in HTTP mode on Teller's server (``POST /slack/events``) or in
Socket Mode, wired from its parts.

Direct messages and mentions are answered in a thread; choices and feedback are Block Kit buttons;
``/teller`` is the slash command. Bolt verifies signatures, acknowledges within Slack's 3 seconds
and runs the listeners afterwards in its thread pool. A product manager's interview runs in their
DM: its prompts come from the service like any reply, with buttons, checkboxes, a progress line
and the brief's files.

::

    SlackChannel            lifecycle, HTTP route, Bolt app and its middleware
    ├── middleware          well-formed payloads, people only, first delivery (run once per request)
    ├── CustomerListeners   DMs, mentions, choice/feedback buttons, interview checkboxes
    ├── OperatorListeners   handoff thread replies, flag reactions, review buttons and modal, close
    ├── SlashCommands       /teller help|interview|brief|flag|review|retrain
    ├── SlackOpsBoard       the ops channel (handoff threads, review items, notices)
    └── SlackTransport      replies out: blocks split at Slack's limits, errors mapped for the courier
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from slack_bolt import App
from slack_bolt.adapter.starlette.handler import to_bolt_request, to_starlette_response
from slack_sdk.signature import SignatureVerifier

from bot.channels.slack.board import SlackOpsBoard
from bot.channels.slack.commands import SlashCommands
from bot.channels.slack.listeners import CustomerListeners, OperatorListeners
from bot.channels.slack.middleware import (
    FirstDelivery,
    acknowledge_the_rest,
    people_only,
    problem,
    refusal,
    well_formed,
)
from bot.channels.slack.transport import CHANNEL, SlackTransport, web_client
from bot.core import TellerCore
from bot.service import TellerService

if TYPE_CHECKING:
    from bot.positioning_desk import PositioningDesk

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
#: Bolt's listener threads (its default is 10). Teller's choice; see the App below.
LISTENER_THREADS = 64


class SlackChannel:
    """HTTP mode with ``bot_token`` + ``signing_secret``; Socket Mode with ``app_token``."""

    name = CHANNEL

    def __init__(
        self,
        core: TellerCore,
        bot_token: str | None,
        signing_secret: str | None = None,
        app_token: str | None = None,
        api_url: str | None = None,
        desk: PositioningDesk | None = None,
        service: TellerService | None = None,
        ops_channel: str | None = None,
        flag_emoji: str = "x",
    ) -> None:
        self.service = service or TellerService(core, desk)
        self._owns_service = service is None
        self.ops_channel = ops_channel
        self.app_token = app_token
        client = web_client(bot_token, api_url)
        self.transport = SlackTransport(client)
        self.board = SlackOpsBoard(client, ops_channel)
        self.app = App(
            client=client,
            signing_secret=signing_secret,
            process_before_response=False,
            request_verification_enabled=signing_secret is not None,
            # Listeners answer and deliver on these threads (a delivery waiting out a rate limit
            # sleeps on one): enough that customers Slack keeps refusing leave room for the others
            # and for button presses, which must be acknowledged within 3 seconds.
            listener_executor=ThreadPoolExecutor(LISTENER_THREADS, thread_name_prefix="teller-slack"),
        )
        self._verifier = SignatureVerifier(signing_secret) if signing_secret else None
        self.first_delivery = FirstDelivery()
        self.app.use(well_formed)
        self.app.use(people_only)
        self.app.use(self.first_delivery.__call__)
        operators = OperatorListeners(self.service, flag_emoji)
        CustomerListeners(self.service, self.transport, ops_channel, operators).register(self.app)
        operators.register(self.app)
        self.commands = SlashCommands(self.service, self.transport, ops_channel)
        self.commands.register(self.app)
        acknowledge_the_rest(self.app)  # last: only what no listener above takes
        self.app.error(self._on_error)
        self._socket: Any = None

    async def start(self) -> None:
        if self.app_token:
            from slack_bolt.adapter.socket_mode import SocketModeHandler

            self._socket = SocketModeHandler(self.app, self.app_token)
            await asyncio.to_thread(self._socket.connect)
        log.info("slack_started", extra={"fields": {"mode": "socket" if self.app_token else "http"}})
        problem = await asyncio.to_thread(self.board.check)
        if problem is not None:  # said once, loudly: every handoff would be closed unanswered
            log.error(
                "slack_ops_channel_unreachable",
                extra={
                    "fields": {
                        "channel": self.board.ops_channel,
                        "error": problem,
                        "fix": "invite the app to the ops channel (/invite @<app>) or set "
                        "TELLER_SLACK_OPS_CHANNEL to a channel it is in; until then a customer who "
                        "asks for a person is told no colleague can be reached",
                    }
                },
            )

    async def stop(self) -> None:
        if self._socket is not None:
            await asyncio.to_thread(self._socket.close)
        if self._owns_service:
            self.service.close()
        log.info("slack_stopped")

    def router(self) -> APIRouter | None:
        if self.app_token:
            return None
        router = APIRouter()

        @router.post(EVENTS_PATH, include_in_schema=False)
        async def events(request: Request) -> Response:
            raw = await request.body()
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:  # Slack sends UTF-8 only (and its signature is over text)
                return to_starlette_response(refusal("the body is not UTF-8"))
            if self._verifier is not None and not _signed(self._verifier, raw, dict(request.headers)):
                log.warning("slack_signature_rejected")
                return JSONResponse({"detail": "invalid or missing Slack signature"}, status_code=401)
            # Signed by Slack (or Socket-less test mode) but not what Bolt can read: say so with a
            # 400 (Bolt would fail with a 500 on these).
            try:
                bolt_request = to_bolt_request(request, raw)
            except (ValueError, TypeError, AttributeError, RecursionError):  # not JSON or form data
                return to_starlette_response(refusal("the body is not JSON or form data Slack sends"))
            body = bolt_request.body
            wrong = problem(body) if isinstance(body, dict) else "the payload is not an object"
            if wrong is not None:
                return to_starlette_response(refusal(wrong))
            # Bolt acks, and hands the listener to its thread pool.
            response = await asyncio.to_thread(self.app.dispatch, bolt_request)
            if response.status == 404:
                # No listener kind covers it (``app_rate_limited``: Slack dropping events for an
                # app over its limit); the rest is acknowledged by middleware.acknowledge_the_rest.
                log.warning("slack_unhandled", extra={"fields": {"type": str(body.get("type"))[:50]}})
                return Response(status_code=200)
            if response.status == 500:
                # Bolt's own matching failed on a payload our checks let through (a field of the
                # wrong type deep inside): the payload, not Teller, is at fault.
                return to_starlette_response(refusal("a field has a type Slack does not send"))
            return to_starlette_response(response)

        return router

    def _on_error(self, error: Exception, body: dict[str, Any]) -> None:
        log.error(
            "slack_listener_failed",
            extra={"fields": {"error": repr(error)[:300], "type": body.get("type") if body else None}},
        )


def _signed(verifier: SignatureVerifier, raw: bytes, headers: dict[str, str]) -> bool:
    """Whether Slack signed ``raw`` (slack_sdk's check), False for headers it cannot read: a
    timestamp that is not a whole number ("1e3": ``int`` raised ``ValueError``) and a signature
    that is not ASCII (``hmac.compare_digest`` raised ``TypeError``), both a 500 before."""
    try:
        return bool(verifier.is_valid_request(raw, headers))
    except (ValueError, TypeError):
        return False
