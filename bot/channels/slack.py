"""Slack, through slack-bolt: HTTP mode on Teller's server (``POST /slack/events``) or Socket Mode.

Direct messages and mentions are answered in a thread; choices and feedback are Block Kit buttons;
``/teller`` is the slash command. Bolt verifies signatures, acknowledges within Slack's 3 seconds
and runs the listeners afterwards in its thread pool. A product manager's interview runs in their
DM: its prompts come from the dispatcher like any reply, with buttons, checkboxes, a progress line
and the brief's files.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections import OrderedDict
from collections.abc import Callable
from threading import Lock
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request, Response
from slack_bolt import App
from slack_bolt.adapter.starlette.handler import to_bolt_request, to_starlette_response
from slack_sdk import WebClient

from bot.channels.slack_text import escape, readable
from bot.core import FEEDBACK_HELPFUL, FEEDBACK_NOT_HELPFUL, Incoming, Outgoing, TellerCore
from bot.dispatch import Dispatcher
from bot.errors import InputError, NotAuthorised
from bot.operators import Actor

if TYPE_CHECKING:
    from bot.positioning_desk import PositioningDesk
    from bot.storage import Handoff, ReviewItem, StoredMessage

log = logging.getLogger(__name__)

CHANNEL = "slack"
EVENTS_PATH = "/slack/events"
CHOICE_ACTION = "teller_choice"
FEEDBACK_ACTION = "teller_feedback"
MULTI_PICK_ACTION = "teller_multi_pick"
MULTI_SUBMIT_ACTION = "teller_multi_submit"
REVIEW_CONFIRM, REVIEW_CHOOSE = "teller_review_confirm", "teller_review_choose"
REVIEW_WRONG, REVIEW_IGNORE = "teller_review_wrong", "teller_review_ignore"
WRONG_ANSWER_VIEW = "teller_wrong_answer"
HANDOFF_CLOSE = "teller_handoff_close"
_MENTION = re.compile(r"<@[A-Z0-9]+(\|[^>]*)?>")
HELP = (
    "*Teller* answers customer questions about cards, payments, transfers, top-ups and accounts.\n"
    "• Send me a direct message, or mention me in a channel: I answer in a thread.\n"
    "• `/teller interview`: a product-positioning interview in a DM (`/teller interview help`).\n"
    "• Operators: `/teller flag <message id> [reason]`, `/teller review` (post the open review items), "
    "`/teller retrain [from-scratch]`; react with the flag emoji on an answer to flag it; reply in a "
    "handoff thread to talk to the customer.\n"
    "• `/teller help`: this message."
)

#: ``/teller <subcommand> [args]`` handlers, given the arguments, the command payload, Bolt's ``ack``
#: (call it at once: Slack waits 3 seconds) and the Web API client.
Subcommand = Callable[[str, dict[str, Any], Callable[..., None], WebClient], None]


#: Message subtypes that are a person writing (with a file, or a thread reply sent to the channel);
#: every other subtype (edits, deletions, joins, bot messages) is not a message for Teller.
HUMAN_SUBTYPES = frozenset({"file_share", "thread_broadcast"})


def written_by_a_person(event: dict[str, Any]) -> bool:
    """Whether a message event is a person's own message (not a bot's, Teller's included, and not
    an edit, a deletion or a notice)."""
    if event.get("bot_id") or event.get("bot_profile"):
        return False
    subtype = event.get("subtype")
    return subtype is None or subtype in HUMAN_SUBTYPES


def blocks(reply: Outgoing) -> list[dict[str, Any]]:
    """The reply as Block Kit: its text, then a row of choice and feedback buttons."""
    elements: list[dict[str, Any]] = []
    for i, choice in enumerate(
        c for c in reply.choices if c.value not in (FEEDBACK_HELPFUL, FEEDBACK_NOT_HELPFUL)
    ):
        elements.append(
            {
                "type": "button",
                "action_id": f"{CHOICE_ACTION}_{i}",
                "value": choice.value[:2000],
                "text": {"type": "plain_text", "text": choice.label[:75]},
            }
        )
    for choice in reply.choices:
        if choice.value in (FEEDBACK_HELPFUL, FEEDBACK_NOT_HELPFUL):
            verdict = "yes" if choice.value == FEEDBACK_HELPFUL else "no"
            elements.append(
                {
                    "type": "button",
                    "action_id": f"{FEEDBACK_ACTION}_{verdict}",
                    "value": reply.message_id,
                    "text": {"type": "plain_text", "text": choice.label},
                }
            )
    out: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": escape(reply.text)[:3000]}}
    ]
    if reply.multi_select is not None:
        multi = reply.multi_select
        out.append(
            {
                "type": "actions",
                "block_id": "teller_multi",
                "elements": [
                    {
                        "type": "checkboxes",
                        "action_id": MULTI_PICK_ACTION,
                        "options": [
                            {"text": {"type": "plain_text", "text": o.label[:75]}, "value": o.value}
                            for o in multi.options[:10]
                        ],
                    },
                    {
                        "type": "button",
                        "action_id": MULTI_SUBMIT_ACTION,
                        "style": "primary",
                        "value": multi.submit_prefix,
                        "text": {"type": "plain_text", "text": multi.submit_label},
                    },
                ],
            }
        )
    if elements:
        out.append({"type": "actions", "block_id": "teller_actions", "elements": elements})
    if reply.note:
        out.append({"type": "context", "elements": [{"type": "mrkdwn", "text": reply.note}]})
    return out


def handoff_blocks(handoff: Handoff, transcript: list[StoredMessage]) -> list[dict[str, Any]]:
    """The start of a handoff thread: who, the conversation so far (redacted), a Close button."""
    lines = [
        f"> *{'Customer' if m.direction == 'in' else 'Teller'}:* {escape(m.text[:300])}" for m in transcript
    ]
    text = (
        f"*Handoff* from a {handoff.channel} customer (`{handoff.id}`). Reply in this thread to talk to "
        "them; they see your replies on their own channel.\n" + "\n".join(lines)
    )
    return [
        {"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}},
        {
            "type": "actions",
            "block_id": f"handoff:{handoff.id}",
            "elements": [
                {
                    "type": "button",
                    "action_id": HANDOFF_CLOSE,
                    "style": "danger",
                    "value": handoff.id,
                    "text": {"type": "plain_text", "text": "Close conversation"},
                }
            ],
        },
    ]


def review_blocks(item: ReviewItem, labels: list[str]) -> list[dict[str, Any]]:
    """A review item: the question, why it is here, the suggestion, and the four actions."""
    s = item.suggestion
    suggested = (
        f"intent `{s.intent}`" if s and s.intent else f"KB entry `{s.kb_id}`" if s and s.kb_id else None
    )
    confidence = f" ({s.confidence:.2f})" if s and s.confidence is not None else ""
    text = (
        f"*Review #{item.id}* · {', '.join(sorted(set(item.reasons)))} · {len(item.message_ids)} message(s)\n"
        f">{escape(item.text[:500])}\n"
        + (f"Suggested: {suggested}{confidence}" if suggested else "No suggestion")
    )
    elements: list[dict[str, Any]] = []
    if suggested:
        elements.append(
            {
                "type": "button",
                "action_id": REVIEW_CONFIRM,
                "style": "primary",
                "value": str(item.id),
                "text": {"type": "plain_text", "text": f"Confirm {suggested.split()[-1].strip('`')}"[:75]},
            }
        )
    if labels:
        elements.append(
            {
                "type": "static_select",
                "action_id": REVIEW_CHOOSE,
                "placeholder": {"type": "plain_text", "text": "Another intent"},
                "options": [
                    {"text": {"type": "plain_text", "text": label[:75]}, "value": label}
                    for label in sorted(labels)[:100]
                ],
            }
        )
    for action_id, label in ((REVIEW_WRONG, "Answer is wrong"), (REVIEW_IGNORE, "Ignore")):
        elements.append(
            {
                "type": "button",
                "action_id": action_id,
                "value": str(item.id),
                "text": {"type": "plain_text", "text": label},
            }
        )
    return [
        {"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}},
        {"type": "actions", "block_id": f"review:{item.id}", "elements": elements},
    ]


def wrong_answer_view(item: ReviewItem, channel: str, ts: str) -> dict[str, Any]:
    """The modal that takes a corrected answer for a review item."""
    return {
        "type": "modal",
        "callback_id": WRONG_ANSWER_VIEW,
        "private_metadata": json.dumps({"item": item.id, "channel": channel, "ts": ts}),
        "title": {"type": "plain_text", "text": f"Correct review #{item.id}"[:24]},
        "submit": {"type": "plain_text", "text": "Save answer"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": f">{escape(item.text[:500])}"}},
            {
                "type": "input",
                "block_id": "answer",
                "label": {"type": "plain_text", "text": "The right answer (becomes a knowledge-base entry)"},
                "element": {"type": "plain_text_input", "action_id": "answer", "multiline": True},
            },
        ],
    }


def settled_note(item: ReviewItem, actor: Actor) -> str:
    what = f": {item.resolution}" if item.resolution else ""
    return f"{item.status.capitalize()} by <@{actor.user_id}>{what}"


def sentence(exc: Exception) -> str:
    """An error message as a sentence to show in Slack."""
    text = str(exc)
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")


def ticked(body: dict[str, Any]) -> list[str]:
    """Values of the checkboxes ticked in the message whose button was pressed."""
    values = body.get("state", {}).get("values", {})
    picked = values.get("teller_multi", {}).get(MULTI_PICK_ACTION, {}).get("selected_options") or []
    return [str(option.get("value", "")) for option in picked]


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
        dispatcher: Dispatcher | None = None,
        ops_channel: str | None = None,
        flag_emoji: str = "x",
    ) -> None:
        self.core = core
        self.dispatcher = dispatcher or Dispatcher(core, desk)
        self._owns_dispatcher = dispatcher is None
        self.ops_channel = ops_channel
        self.flag_emoji = flag_emoji.strip(":")
        self.app_token = app_token
        client = WebClient(token=bot_token, base_url=api_url or WebClient.BASE_URL)
        self.app = App(
            client=client,
            signing_secret=signing_secret,
            process_before_response=False,
            request_verification_enabled=signing_secret is not None,
        )
        self.subcommands: dict[str, Subcommand] = {"help": lambda _args, _cmd, ack, _client: ack(text=HELP)}
        if self.dispatcher.desk is not None:
            self.subcommands |= {"interview": self._interview_command, "brief": self._brief_command}
        if self.dispatcher.ops is not None:
            self.subcommands |= {
                "flag": self._flag_command,
                "review": self._review_command,
                "retrain": self._retrain_command,
            }
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._seen_lock = Lock()
        self._socket: Any = None
        self.app.event("message")(self._on_message)
        self.app.event("app_mention")(self._on_mention)
        self.app.action(re.compile(f"^{CHOICE_ACTION}"))(self._on_choice)
        self.app.action(re.compile(f"^{FEEDBACK_ACTION}"))(self._on_feedback)
        self.app.action(MULTI_PICK_ACTION)(lambda ack: ack())  # ticking a box: wait for Submit
        self.app.action(MULTI_SUBMIT_ACTION)(self._on_multi_submit)
        self.app.action(re.compile("^teller_review_"))(self._on_review_action)
        self.app.view(WRONG_ANSWER_VIEW)(self._on_wrong_answer)
        self.app.action(HANDOFF_CLOSE)(self._on_handoff_close)
        self.app.event("reaction_added")(self._on_reaction)
        self.app.command("/teller")(self._on_command)
        self.app.error(self._on_error)

    # ------------------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self.app_token:
            from slack_bolt.adapter.socket_mode import SocketModeHandler

            self._socket = SocketModeHandler(self.app, self.app_token)
            await asyncio.to_thread(self._socket.connect)
        log.info("slack_started", extra={"fields": {"mode": "socket" if self.app_token else "http"}})

    async def stop(self) -> None:
        if self._socket is not None:
            await asyncio.to_thread(self._socket.close)
        if self._owns_dispatcher:
            self.dispatcher.close()
        log.info("slack_stopped")

    def router(self) -> APIRouter | None:
        if self.app_token:
            return None
        router = APIRouter()

        @router.post(EVENTS_PATH, include_in_schema=False)
        async def events(request: Request) -> Response:
            bolt_request = to_bolt_request(request, await request.body())
            # Bolt verifies the signature, acks, and hands the listener to its thread pool.
            return to_starlette_response(await asyncio.to_thread(self.app.dispatch, bolt_request))

        return router

    # ------------------------------------------------------------------------------ listeners

    def _first_time(self, key: str) -> bool:
        """False for a redelivery (Slack retries an event with the same event_id)."""
        with self._seen_lock:
            if key in self._seen:
                return False
            self._seen[key] = None
            while len(self._seen) > 10_000:
                self._seen.popitem(last=False)
            return True

    def _reply(
        self,
        client: WebClient,
        channel: str,
        thread_ts: str,
        user: str,
        text: str,
        message_id: str,
        conversation: str,
    ) -> None:
        incoming = Incoming(CHANNEL, conversation, user, message_id, text)
        try:
            reply = self.dispatcher.handle(incoming, private=channel.startswith("D"))
        except InputError as exc:
            client.chat_postMessage(channel=channel, thread_ts=thread_ts, text=sentence(exc))
            return
        if reply.duplicate:
            return
        self._post(client, channel, reply, thread_ts)

    def _post(self, client: WebClient, channel: str, reply: Outgoing, thread_ts: str | None = None) -> None:
        """Send a reply: its text and widgets, then any files, in the thread when it is threaded."""
        if reply.silent:
            return
        thread = thread_ts if reply.threaded else None
        posted = client.chat_postMessage(
            channel=channel, thread_ts=thread, text=escape(reply.text), blocks=blocks(reply)
        )
        self.dispatcher.delivered(reply, f"{channel}:{posted.get('ts')}")
        if reply.attachments:
            client.files_upload_v2(
                file_uploads=[{"file": str(path), "title": path.name} for path in reply.attachments],
                channel=channel,
                thread_ts=thread,
            )

    def _answer_event(
        self, event: dict[str, Any], body: dict[str, Any], client: WebClient, text: str, conversation: str
    ) -> None:
        if not self._first_time(str(body.get("event_id") or event.get("client_msg_id") or event["ts"])):
            log.info("slack_duplicate_event", extra={"fields": {"event_id": body.get("event_id")}})
            return
        thread = event.get("thread_ts") or event["ts"]
        self._reply(
            client,
            event["channel"],
            thread,
            event.get("user", ""),
            text,
            f"{event['channel']}:{event['ts']}",
            conversation,
        )

    def _on_message(self, event: dict[str, Any], body: dict[str, Any], client: WebClient) -> None:
        if not written_by_a_person(event):
            return  # bots (Teller included), edits, deletions, joins: not messages for Teller
        if event.get("channel_type") != "im":
            if event.get("thread_ts") and event.get("channel") == self.ops_channel:
                self._operator_reply(event, body, client)
            return  # channel chatter is not a question for Teller
        text = readable(event.get("text", "")).strip()
        if text:  # a file without a caption says nothing to answer
            self._answer_event(event, body, client, text, event["channel"])

    def _on_mention(self, event: dict[str, Any], body: dict[str, Any], client: WebClient) -> None:
        if not written_by_a_person(event):
            return  # another bot mentioning Teller: answering could loop two bots
        text = readable(_MENTION.sub("", event.get("text", ""))).strip()
        thread = event.get("thread_ts") or event["ts"]
        self._answer_event(event, body, client, text, f"{event['channel']}:{thread}")

    def _on_choice(
        self, ack: Callable[[], None], body: dict[str, Any], action: dict[str, Any], client: WebClient
    ) -> None:
        ack()
        message, channel = body.get("message", {}), body.get("channel", {}).get("id", "")
        thread = message.get("thread_ts") or message.get("ts", "")
        self._disable_buttons(client, channel, message, f"_{action.get('text', {}).get('text', 'Chosen')}_")
        conversation = (
            channel
            if body.get("channel", {}).get("name") == "directmessage" or channel.startswith("D")
            else f"{channel}:{thread}"
        )
        self._reply(
            client,
            channel,
            thread,
            body.get("user", {}).get("id", ""),
            action.get("value", ""),
            f"action:{body.get('trigger_id') or action.get('action_ts')}",
            conversation,
        )

    def _on_multi_submit(
        self, ack: Callable[[], None], body: dict[str, Any], action: dict[str, Any], client: WebClient
    ) -> None:
        ack()
        picked = ticked(body)
        message, channel = body.get("message", {}), body.get("channel", {}).get("id", "")
        if picked:
            self._disable_buttons(client, channel, message, "_Submitted_")
        self._reply(
            client,
            channel,
            message.get("thread_ts") or message.get("ts", ""),
            body.get("user", {}).get("id", ""),
            action.get("value", "") + ",".join(picked),
            f"action:{body.get('trigger_id') or action.get('action_ts')}",
            channel,
        )

    def _on_feedback(
        self, ack: Callable[[], None], body: dict[str, Any], action: dict[str, Any], client: WebClient
    ) -> None:
        ack()
        helpful = action.get("action_id", "").endswith("_yes")
        try:
            # Through the dispatcher, as on every channel: "not helpful" is filed for review.
            self.dispatcher.feedback(action.get("value", ""), helpful, None, body.get("user", {}).get("id"))
        except InputError:
            return
        note = "Thanks for the feedback!" if helpful else "Thanks, we'll use this to improve."
        self._disable_buttons(
            client, body.get("channel", {}).get("id", ""), body.get("message", {}), f"_{note}_"
        )

    def _disable_buttons(self, client: WebClient, channel: str, message: dict[str, Any], note: str) -> None:
        if not message.get("ts"):
            return
        kept = [b for b in message.get("blocks", []) if b.get("type") != "actions"]
        kept.append({"type": "context", "elements": [{"type": "mrkdwn", "text": note}]})
        client.chat_update(channel=channel, ts=message["ts"], text=message.get("text", ""), blocks=kept)

    def _on_command(self, ack: Callable[..., None], command: dict[str, Any], client: WebClient) -> None:
        words = (command.get("text") or "").split(maxsplit=1)
        name, args = (words[0].lower(), words[1] if len(words) > 1 else "") if words else ("help", "")
        handler = self.subcommands.get(name)
        if handler is None:
            ack(text=f"Unknown subcommand `{name}`.\n{HELP}")
            return
        handler(args, command, ack, client)

    def _in_dm(self, command: dict[str, Any], ack: Callable[..., None], client: WebClient) -> str:
        """Acknowledge, and return the user's DM with Teller (where interviews happen)."""
        if str(command.get("channel_id", "")).startswith("D"):
            ack()
            return str(command["channel_id"])
        ack(text="I'll continue in a direct message.")
        opened = client.conversations_open(users=command["user_id"])
        return str(opened["channel"]["id"])

    def _interview_command(
        self, args: str, command: dict[str, Any], ack: Callable[..., None], client: WebClient
    ) -> None:
        desk = self.dispatcher.desk
        assert desk is not None
        if args.strip().lower() == "help":
            from bot.positioning_desk import INTERVIEW_USAGE

            ack(text=INTERVIEW_USAGE)
            return
        if not desk.may_interview(CHANNEL, command.get("user_id", "")):
            ack(text=desk.command(CHANNEL, command.get("user_id", ""), args).text)
            return
        channel = self._in_dm(command, ack, client)
        self._post(client, channel, desk.command(CHANNEL, command["user_id"], args))

    def _brief_command(
        self, args: str, command: dict[str, Any], ack: Callable[..., None], client: WebClient
    ) -> None:
        desk = self.dispatcher.desk
        assert desk is not None
        if not args.strip():
            ack(text="Usage: `/teller brief ID` (see `/teller interview list`).")
            return
        channel = self._in_dm(command, ack, client)
        self._post(client, channel, desk.brief_reply(CHANNEL, command["user_id"], args))

    # ------------------------------------------------------------------------------ operators

    def _actor(self, body: dict[str, Any]) -> Actor:
        return Actor(CHANNEL, str(body.get("user", {}).get("id") or body.get("user_id") or ""))

    def _refuse(self, client: WebClient, channel: str, user: str, exc: Exception) -> None:
        """Tell only that user why nothing happened."""
        client.chat_postEphemeral(channel=channel, user=user, text=sentence(exc))

    def _operator_reply(self, event: dict[str, Any], body: dict[str, Any], client: WebClient) -> None:
        ops = self.dispatcher.ops
        if ops is None or not self._first_time(str(body.get("event_id") or event["ts"])):
            return
        try:
            ops.operator_reply(
                event["channel"],
                event["thread_ts"],
                CHANNEL,
                event.get("user", ""),
                readable(event.get("text", "")),
                f"{event['channel']}:{event['ts']}",
            )
        except (NotAuthorised, InputError) as exc:
            self._refuse(client, event["channel"], event.get("user", ""), exc)

    def _on_reaction(self, event: dict[str, Any], body: dict[str, Any], client: WebClient) -> None:
        item, ops = event.get("item", {}), self.dispatcher.ops
        if ops is None or event.get("reaction") != self.flag_emoji or item.get("type") != "message":
            return
        if not self._first_time(str(body.get("event_id") or f"{item.get('ts')}:{event.get('user')}")):
            return
        try:
            ops.flag_post(
                CHANNEL, f"{item.get('channel')}:{item.get('ts')}", Actor(CHANNEL, event.get("user", ""))
            )
        except (NotAuthorised, InputError) as exc:
            self._refuse(client, str(item.get("channel", "")), event.get("user", ""), exc)

    def _flag_command(
        self, args: str, command: dict[str, Any], ack: Callable[..., None], client: WebClient
    ) -> None:
        ops = self.dispatcher.ops
        assert ops is not None
        message_id, _, reason = args.strip().partition(" ")
        if not message_id:
            ack(text="Usage: `/teller flag <message id> [reason]`")
            return
        try:
            item = ops.flag(message_id, reason.strip() or None, self._actor(command))
        except (NotAuthorised, InputError) as exc:
            ack(text=sentence(exc))
            return
        ack(text=f"Flagged; filed as review item #{item.id}.")

    def _review_command(
        self, args: str, command: dict[str, Any], ack: Callable[..., None], client: WebClient
    ) -> None:
        ops = self.dispatcher.ops
        assert ops is not None
        try:
            ops.operators.require(CHANNEL, command.get("user_id", ""), "review the queue")
        except NotAuthorised as exc:
            ack(text=sentence(exc))
            return
        if self.ops_channel is None:
            ack(text="No ops channel is configured (TELLER_OPS_CHANNEL); use `teller review` in a terminal.")
            return
        count = ops.post_open_items()
        ack(text=f"Posting {count} open review item(s) to <#{self.ops_channel}>.")

    def _retrain_command(
        self, args: str, command: dict[str, Any], ack: Callable[..., None], client: WebClient
    ) -> None:
        ops = self.dispatcher.ops
        assert ops is not None
        words = args.split()
        if words not in ([], ["from-scratch"]):
            ack(
                text="Usage: `/teller retrain` (continues from the active model) or "
                "`/teller retrain from-scratch`."
            )
            return
        try:
            ack(text=ops.start_retrain(self._actor(command), "scratch" if words else "continue"))
        except (NotAuthorised, InputError) as exc:
            ack(text=sentence(exc))

    def _on_review_action(
        self, ack: Callable[[], None], body: dict[str, Any], action: dict[str, Any], client: WebClient
    ) -> None:
        ack()
        ops, actor = self.dispatcher.ops, self._actor(body)
        channel, message = body.get("channel", {}).get("id", ""), body.get("message", {})
        if ops is None:
            return
        action_id = action.get("action_id", "")
        item_id = int(action.get("value") or str(action.get("block_id", "")).rpartition(":")[2] or 0)
        try:
            if action_id == REVIEW_WRONG:
                ops.operators.require(actor.channel, actor.user_id, "correct answers")
                client.views_open(
                    trigger_id=body["trigger_id"],
                    view=wrong_answer_view(ops.review.item(item_id), channel, message.get("ts", "")),
                )
                return
            if action_id == REVIEW_CONFIRM:
                resolution = ops.review.confirm(item_id, actor)
            elif action_id == REVIEW_CHOOSE:
                intent = action.get("selected_option", {}).get("value", "")
                resolution = ops.review.choose(item_id, intent, actor)
            else:
                resolution = ops.review.ignore(item_id, actor)
        except (NotAuthorised, InputError) as exc:
            self._refuse(client, channel, actor.user_id, exc)
            return
        self._disable_buttons(client, channel, message, f"_{settled_note(resolution.item, actor)}_")

    def _on_wrong_answer(
        self, ack: Callable[..., None], body: dict[str, Any], view: dict[str, Any], client: WebClient
    ) -> None:
        ops, actor = self.dispatcher.ops, self._actor(body)
        meta = json.loads(view.get("private_metadata") or "{}")
        values = view.get("state", {}).get("values", {})
        answer = values.get("answer", {}).get("answer", {}).get("value") or ""
        if ops is None:
            ack()
            return
        try:
            resolution = ops.review.wrong_answer(int(meta.get("item", 0)), answer, actor)
        except (NotAuthorised, InputError) as exc:
            ack(response_action="errors", errors={"answer": str(exc)[:150]})
            return
        ack()
        item = resolution.item
        original = {
            "ts": meta.get("ts"),
            "text": f"Review item #{item.id}",
            "blocks": review_blocks(item, []),
        }
        note = f"_{settled_note(resolution.item, actor)}_"
        self._disable_buttons(client, meta.get("channel", ""), original, note)

    def _on_handoff_close(
        self, ack: Callable[[], None], body: dict[str, Any], action: dict[str, Any], client: WebClient
    ) -> None:
        ack()
        ops, actor = self.dispatcher.ops, self._actor(body)
        channel, message = body.get("channel", {}).get("id", ""), body.get("message", {})
        if ops is None:
            return
        try:
            ops.close_handoff(action.get("value", ""), actor)
        except (NotAuthorised, InputError) as exc:
            self._refuse(client, channel, actor.user_id, exc)
            return
        self._disable_buttons(client, channel, message, f"_Closed by <@{actor.user_id}>_")

    # ------------------------------------------------------------------------------ ops board

    def open_handoff(self, handoff: Handoff, transcript: list[StoredMessage]) -> str:
        posted = self.app.client.chat_postMessage(
            channel=self.ops_channel or "",
            text=f"Handoff: a {handoff.channel} customer needs a person",
            blocks=handoff_blocks(handoff, transcript),
        )
        return str(posted["ts"])

    def post_in_thread(self, handoff: Handoff, text: str) -> None:
        self.app.client.chat_postMessage(
            channel=handoff.ops_channel or self.ops_channel or "",
            thread_ts=handoff.thread_ts,
            text=f"*Customer:* {escape(text)}",
        )

    def post_review(self, item: ReviewItem, labels: list[str]) -> None:
        self.app.client.chat_postMessage(
            channel=self.ops_channel or "",
            text=f"Review item #{item.id}: {escape(item.text[:100])}",
            blocks=review_blocks(item, labels),
        )

    def announce(self, text: str) -> str:
        posted = self.app.client.chat_postMessage(channel=self.ops_channel or "", text=text)
        return str(posted["ts"])

    def amend(self, message_ref: str, text: str) -> None:
        self.app.client.chat_update(channel=self.ops_channel or "", ts=message_ref, text=text)

    def send(self, address: str, reply: Outgoing) -> None:
        """Deliver a message to a customer's conversation (a DM, or ``channel:thread``)."""
        channel, _, thread = address.partition(":")
        self.app.client.chat_postMessage(
            channel=channel, thread_ts=thread or None, text=escape(reply.text), blocks=blocks(reply)
        )

    def _on_error(self, error: Exception, body: dict[str, Any]) -> None:
        log.error(
            "slack_listener_failed",
            extra={"fields": {"error": repr(error)[:300], "type": body.get("type") if body else None}},
        )
