"""Bolt listeners: Slack events and interactions translated into calls on the application service.

:class:`CustomerListeners` (DMs, mentions, choice and feedback buttons, an interview's checkboxes)
and :class:`OperatorListeners` (replies in handoff threads, the flag reaction, review-queue buttons
and the wrong-answer modal, proposals to confirm or reject in bulk, closing handoffs). Each
listener reads the payload, calls :class:`bot.service.TellerService` and renders the outcome; a
refusal (not an operator, an unknown id) is shown to that person only, by :func:`refusing`.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Callable
from dataclasses import replace
from typing import Any, TypeVar

from slack_bolt import App
from slack_sdk import WebClient
from slack_sdk.errors import SlackClientError

from bot.channels.slack.blocks import (
    CHOICE_ACTION,
    FEEDBACK_ACTION,
    HANDOFF_CLOSE,
    MULTI_PICK_ACTION,
    MULTI_SUBMIT_ACTION,
    PROPOSAL_PICK,
    PROPOSALS_ALL,
    PROPOSALS_NONE,
    PROPOSALS_TICKED,
    REVIEW_CHOOSE,
    REVIEW_CONFIRM,
    REVIEW_WRONG,
    WRONG_ANSWER_VIEW,
    overlaps_note,
    review_blocks,
    settled,
    settled_note,
    ticked,
    ticked_proposals,
    wrong_answer_view,
)
from bot.channels.slack.middleware import edit_by_a_person
from bot.channels.slack.text import readable, unformatted
from bot.channels.slack.transport import CHANNEL, SlackTransport
from bot.choices import parse_choice_ref, press_id
from bot.core import Incoming, Outgoing
from bot.errors import InputError, NotAuthorised, NotTheAsker, sentence
from bot.operators import Actor
from bot.ops_desk import IDLE_ACTOR
from bot.service import FEEDBACK_THANKS, TellerService

log = logging.getLogger(__name__)

_MENTION = re.compile(r"<@[A-Z0-9]+(\|[^>]*)?>")
F = TypeVar("F", bound=Callable[..., None])


def refusing(listener: F) -> F:
    """Show a refusal (:class:`NotAuthorised`, :class:`InputError`) to the person who acted, only
    to them, instead of failing the listener."""

    @functools.wraps(listener)
    def run(self: Any, *args: Any, **kwargs: Any) -> None:
        try:
            listener(self, *args, **kwargs)
        except (NotAuthorised, InputError) as exc:
            body = kwargs.get("body") or {}
            event = body.get("event") or {}
            channel = (
                body.get("channel", {}).get("id")
                or event.get("channel")
                or event.get("item", {}).get("channel", "")
            )
            user = body.get("user", {}).get("id") or event.get("user", "")
            client: WebClient = kwargs["client"]
            client.chat_postEphemeral(channel=channel, user=user, text=sentence(exc))

    return run  # type: ignore[return-value]


def settle(client: WebClient, channel: str, message: dict[str, Any], note: str) -> None:
    """Replace a posted message's buttons by ``note`` (a choice made, an item settled).

    A courtesy, as Telegram's keyboard removal is: when Slack refuses it (``message_not_found``,
    ``cant_update_message``, a 5xx or 429 that outlasts the client's retries) or cannot be reached,
    it is logged (``slack_courtesy_failed``) and the press is still answered; a reviewer found a
    failed update ended the listener, and the customer's pick was neither stored nor answered. The
    buttons then stay: a second press of the same choice is the same press (:func:`press_id`),
    answered once."""
    if not message.get("ts"):
        return
    try:
        client.chat_update(
            channel=channel, ts=message["ts"], text=message.get("text", ""), blocks=settled(message, note)
        )
    except (SlackClientError, OSError) as exc:
        log.info("slack_courtesy_failed", extra={"fields": {"call": "chat.update", "error": repr(exc)[:300]}})


def _named(text: str, bot_user: str | None) -> str | None:
    """``text`` without its mentions of Teller (``bot_user``), or None if it names Teller nowhere."""
    if not bot_user:
        return None
    mention = re.compile(rf"<@{re.escape(bot_user)}(\|[^>]*)?>")
    return mention.sub("", text) if mention.search(text) else None


def actor(body: dict[str, Any]) -> Actor:
    return Actor(CHANNEL, str(body.get("user", {}).get("id") or body.get("user_id") or ""))


class CustomerListeners:
    """Customers' (and product managers') messages and buttons."""

    def __init__(
        self,
        service: TellerService,
        transport: SlackTransport,
        ops_channel: str | None,
        operators: OperatorListeners,
    ) -> None:
        self.service = service
        self.transport = transport
        self.ops_channel = ops_channel
        self.operators = operators

    def register(self, app: App) -> None:
        app.event("message")(self.on_message)
        app.event("app_mention")(self.on_mention)
        app.action(re.compile(f"^{CHOICE_ACTION}"))(self.on_choice)
        app.action(re.compile(f"^{FEEDBACK_ACTION}"))(self.on_feedback)
        app.action(MULTI_PICK_ACTION)(lambda ack: ack())  # ticking a box: wait for Submit
        app.action(MULTI_SUBMIT_ACTION)(self.on_multi_submit)

    def say(self, client: WebClient, channel: str, text: str) -> None:
        """One of the channel's own messages, delivered with retries like any other, not stored."""
        self.service.courier.send(self.transport, channel, Outgoing("", text))

    def answer(
        self,
        client: WebClient,
        channel: str,
        thread: str,
        user: str,
        text: str,
        message_id: str,
        conversation: str,
        pressed: bool = False,
    ) -> None:
        """Answer in the thread of the message (``thread``); unthreaded replies (an interview's next
        question) go to the conversation itself. ``pressed``: ``text`` is a pressed button's value."""
        incoming = Incoming(CHANNEL, conversation, user, message_id, text, pressed=pressed)
        try:
            self.service.message(
                incoming, self.transport, f"{channel}:{thread}", private=channel.startswith("D")
            )
        except InputError as exc:
            client.chat_postMessage(channel=channel, thread_ts=thread, text=sentence(exc))

    def on_message(
        self, event: dict[str, Any], body: dict[str, Any], client: WebClient, context: dict[str, Any]
    ) -> None:
        edited = edit_by_a_person(event)
        if edited is not None:  # only an operator's, in a handoff's thread, is answered (told)
            if event.get("channel") == self.ops_channel and self.service.ops is not None:
                self.service.operator_edited(
                    event["channel"],
                    edited["thread_ts"],
                    Actor(CHANNEL, edited["user"]),
                    deleted=event.get("subtype") == "message_deleted",
                )
            return
        if event.get("channel_type") != "im":
            if event.get("thread_ts") and event.get("channel") == self.ops_channel:
                self.operators.on_thread_reply(event=event, body=body, client=client)
            elif event.get("thread_ts") and event.get("user"):  # (a person's: the middleware's filter)
                self._in_thread(event, client, context.get("bot_user_id"))
            return  # other channel chatter is not a question for Teller
        raw = event.get("text", "")
        bot_user = context.get("bot_user_id")
        named = _named(raw, bot_user)
        if named is not None:
            raw = named  # "@Teller what's the fee?" in a DM asks what the fee is (not "a colleague ...")
        text = readable(raw).strip()
        if text or (named is not None and not event.get("files")):  # named alone: as a mention alone
            self._event(event, client, text, event["channel"])
        if event.get("files"):
            # Teller reads no file; during a handoff the operators are told, and the customer is told
            # to say it in words, or that only their words went on (the service decides).
            self._attachment(client, event, event["channel"], bool(text))

    def _attachment(
        self, client: WebClient, event: dict[str, Any], conversation: str, with_words: bool
    ) -> None:
        """A file the customer shared (in ``conversation``, also where they are told)."""
        user = event.get("user", "")
        said = self.service.attachment(CHANNEL, conversation, user, "a file", with_words=with_words)
        if said:
            self.say(client, conversation, said)

    def _in_thread(self, event: dict[str, Any], client: WebClient, bot_user: str | None) -> None:
        """A message in a channel thread that does not name Teller: the service relays it when the
        thread's conversation is in a handoff (a reviewer's finding: the customer's answers to the
        operator in the thread were dropped unless they named Teller again), and ignores it
        otherwise. One that names Teller is its ``app_mention``'s (Slack sends both)."""
        raw = event.get("text", "")
        if bot_user and f"<@{bot_user}" in raw:
            return
        channel, thread = event["channel"], event["thread_ts"]
        conversation = f"{channel}:{thread}"
        text = readable(_MENTION.sub("", raw)).strip()  # (as its app_mention reads it, if it had one)
        if text:
            incoming = Incoming(CHANNEL, conversation, event["user"], f"{channel}:{event['ts']}", text)
            try:
                self.service.thread_message(incoming, self.transport, conversation)
            except InputError as exc:
                client.chat_postMessage(channel=channel, thread_ts=thread, text=sentence(exc))
        if event.get("files"):
            self._attachment(client, event, conversation, bool(text))

    def on_mention(self, event: dict[str, Any], client: WebClient) -> None:
        if event.get("channel") == self.ops_channel:
            return  # an operator naming Teller in the ops channel (a handoff thread, say): not a customer
        text = readable(_MENTION.sub("", event.get("text", ""))).strip()
        self._event(event, client, text, f"{event['channel']}:{event.get('thread_ts') or event['ts']}")

    def _event(self, event: dict[str, Any], client: WebClient, text: str, conversation: str) -> None:
        thread = event.get("thread_ts") or event["ts"]
        message_id = f"{event['channel']}:{event['ts']}"
        self.answer(client, event["channel"], thread, event.get("user", ""), text, message_id, conversation)

    def on_choice(
        self, ack: Callable[[], None], body: dict[str, Any], action: dict[str, Any], client: WebClient
    ) -> None:
        ack()
        message, channel = body.get("message", {}), body.get("channel", {}).get("id", "")
        thread = message.get("thread_ts") or message.get("ts", "")
        settle(client, channel, message, f"_{action.get('text', {}).get('text', 'Chosen')}_")
        private = body.get("channel", {}).get("name") == "directmessage" or channel.startswith("D")
        value = str(action.get("value", ""))
        if (ref := parse_choice_ref(value)) is not None:  # too long for a button: the reply has it
            try:
                value = self.service.choice_value(*ref)
            except InputError:
                return
        user = body.get("user", {}).get("id", "")
        self.answer(
            client,
            channel,
            thread,
            user,
            value,
            # a double click (two actions, two trigger ids, before the buttons are gone) is one
            # press, answered once (a reviewer's finding)
            press_id(channel, message["ts"], user, value)
            if message.get("ts")
            else f"action:{body.get('trigger_id') or action.get('action_ts')}",
            channel if private else f"{channel}:{thread}",
            pressed=True,
        )

    def on_multi_submit(
        self, ack: Callable[[], None], body: dict[str, Any], action: dict[str, Any], client: WebClient
    ) -> None:
        ack()
        picked = ticked(body)
        message, channel = body.get("message", {}), body.get("channel", {}).get("id", "")
        if picked:
            settle(client, channel, message, "_Submitted_")
        self.answer(
            client,
            channel,
            message.get("thread_ts") or message.get("ts", ""),
            body.get("user", {}).get("id", ""),
            action.get("value", "") + ",".join(picked),
            f"action:{body.get('trigger_id') or action.get('action_ts')}",
            channel,
        )

    def on_feedback(
        self, ack: Callable[[], None], body: dict[str, Any], action: dict[str, Any], client: WebClient
    ) -> None:
        ack()
        helpful = action.get("action_id", "").endswith("_yes")
        channel, user = body.get("channel", {}).get("id", ""), body.get("user", {}).get("id")
        try:
            # Shared: a channel's members all see the answer (a DM's id starts with D).
            shared = not str(channel).startswith("D")
            post = f"{channel}:{body.get('message', {}).get('ts')}"
            self.service.feedback(
                action.get("value", ""), helpful, None, user, CHANNEL, shared=shared, post=post
            )
        except NotTheAsker as exc:  # (in the thread the press was made in, where they look)
            thread = body.get("message", {}).get("thread_ts")
            try:
                client.chat_postEphemeral(
                    channel=channel, user=user or "", text=sentence(exc), thread_ts=thread
                )
            except SlackClientError as err:
                log.warning("slack_courtesy_failed", extra={"fields": {"error": repr(err)[:200]}})
            return
        except InputError:
            return
        note = FEEDBACK_THANKS[helpful]
        settle(client, channel, body.get("message", {}), f"_{note}_")


class OperatorListeners:
    """Operators in the ops channel: thread replies, flags, review buttons, closing handoffs."""

    def __init__(self, service: TellerService, flag_emoji: str) -> None:
        self.service = service
        self.flag_emoji = flag_emoji.strip(":")

    def register(self, app: App) -> None:
        app.action(re.compile("^teller_review_"))(self.on_review_action)
        app.view(WRONG_ANSWER_VIEW)(self.on_wrong_answer)
        app.action(HANDOFF_CLOSE)(self.on_handoff_close)
        app.action(PROPOSAL_PICK)(lambda ack: ack())  # ticking a box: wait for a button
        for action_id in (PROPOSALS_TICKED, PROPOSALS_ALL, PROPOSALS_NONE):
            app.action(action_id)(self.on_proposals)
        app.event("reaction_added")(self.on_reaction)

    @refusing
    def on_thread_reply(self, *, event: dict[str, Any], body: dict[str, Any], client: WebClient) -> None:
        if self.service.ops is None:
            return
        text = unformatted(event.get("text", ""))
        if text.strip() or not event.get("files"):
            self.service.operator_reply(
                event["channel"],
                event["thread_ts"],
                Actor(CHANNEL, event.get("user", "")),
                text,
                f"{event['channel']}:{event['ts']}",
            )
        if event.get("files"):  # not passed on: the operator is told so in the thread
            self.service.operator_attachment(
                event["channel"], event["thread_ts"], Actor(CHANNEL, event.get("user", ""))
            )

    def on_reaction(self, event: dict[str, Any], body: dict[str, Any], client: WebClient) -> None:
        item = event.get("item", {})
        if (
            self.service.ops is None
            or event.get("reaction") != self.flag_emoji
            or item.get("type") != "message"
        ):
            return
        self._flag(event=event, body=body, client=client)

    @refusing
    def _flag(self, *, event: dict[str, Any], body: dict[str, Any], client: WebClient) -> None:
        item = event.get("item", {})
        self.service.flag_post(
            CHANNEL, f"{item.get('channel')}:{item.get('ts')}", Actor(CHANNEL, event.get("user", ""))
        )

    def on_review_action(
        self, ack: Callable[[], None], body: dict[str, Any], action: dict[str, Any], client: WebClient
    ) -> None:
        ack()
        if self.service.ops is not None:
            self._review(body=body, action=action, client=client)

    @refusing
    def _review(self, *, body: dict[str, Any], action: dict[str, Any], client: WebClient) -> None:
        who = actor(body)
        channel, message = body.get("channel", {}).get("id", ""), body.get("message", {})
        action_id = action.get("action_id", "")
        try:
            item_id = int(action.get("value") or str(action.get("block_id", "")).rpartition(":")[2] or 0)
        except ValueError:
            raise InputError("that review item is not one of Teller's") from None
        if action_id == REVIEW_WRONG:
            item = self.service.item_to_correct(item_id, who)
            client.views_open(
                trigger_id=body.get("trigger_id", ""),
                view=wrong_answer_view(item, channel, message.get("ts", "")),
            )
            return
        if action_id == REVIEW_CONFIRM:
            resolution = self.service.confirm(item_id, who)
        elif action_id == REVIEW_CHOOSE:
            resolution = self.service.choose(item_id, action.get("selected_option", {}).get("value", ""), who)
        else:
            resolution = self.service.ignore(item_id, who)
        note = settled_note(resolution.item, who)
        if resolution.not_applied is not None:
            note += f"; {resolution.not_applied}"
        settle(client, channel, message, f"_{note}_")

    def on_proposals(
        self, ack: Callable[[], None], body: dict[str, Any], action: dict[str, Any], client: WebClient
    ) -> None:
        ack()
        if self.service.ops is not None:
            self._proposals(body=body, action=action, client=client)

    @refusing
    def _proposals(self, *, body: dict[str, Any], action: dict[str, Any], client: WebClient) -> None:
        who = actor(body)
        try:
            shown = [int(v) for v in str(action.get("value", "")).split(",") if v.strip()]
        except ValueError:
            raise InputError("those proposals are not Teller's") from None
        action_id = action.get("action_id", "")
        if action_id == PROPOSALS_ALL:
            confirm, reject = shown, []
        elif action_id == PROPOSALS_NONE:
            confirm, reject = [], shown
        else:
            picked = set(ticked_proposals(body))
            if not picked & set(shown):
                raise InputError(
                    "Tick the messages that mean the same first (or press Confirm all or Reject all)."
                )
            confirm = [i for i in shown if i in picked]
            reject = [i for i in shown if i not in picked]
        decided = self.service.decide_proposals(confirm, reject, who)
        note = f"Confirmed {len(decided.confirmed)}, rejected {len(decided.rejected)} by <@{who.user_id}>"
        note += decided.skipped_note(" by someone else")
        settle(client, body.get("channel", {}).get("id", ""), body.get("message", {}), f"_{note}_")

    def on_wrong_answer(
        self, ack: Callable[..., None], body: dict[str, Any], view: dict[str, Any], client: WebClient
    ) -> None:
        who = actor(body)
        try:
            meta = json.loads(view.get("private_metadata") or "{}")
            item_id = int(meta.get("item", 0))
        except (ValueError, TypeError, AttributeError):
            ack(response_action="errors", errors={"answer": "This form is not one of Teller's."})
            return
        values = view.get("state", {}).get("values", {})
        answer = values.get("answer", {}).get("answer", {}).get("value") or ""
        if self.service.ops is None:
            ack()
            return
        try:
            # The overlap check after the acknowledgement: Slack wants one within 3 seconds.
            resolution = self.service.wrong_answer(item_id, answer, who, check_overlaps=False)
        except (NotAuthorised, InputError) as exc:
            ack(response_action="errors", errors={"answer": str(exc)[:150]})
            return
        ack()
        item = resolution.item
        if resolution.kb_entry is not None:
            resolution = replace(resolution, overlaps=self.service.entry_overlaps(resolution.kb_entry))
        original = {
            "ts": meta.get("ts"),
            "text": f"Review item #{item.id}",
            "blocks": review_blocks(item, []),
        }
        note = f"_{settled_note(item, who)}_"
        if resolution.overlaps:
            note += "\nThe new entry, checked as `teller kb add` checks one (nothing superseded):\n"
            note += overlaps_note(resolution.overlaps)
        settle(client, meta.get("channel", ""), original, note)

    def on_handoff_close(
        self, ack: Callable[[], None], body: dict[str, Any], action: dict[str, Any], client: WebClient
    ) -> None:
        ack()
        if self.service.ops is not None:
            self._close(body=body, action=action, client=client)

    @refusing
    def _close(self, *, body: dict[str, Any], action: dict[str, Any], client: WebClient) -> None:
        who = actor(body)
        closed = self.service.close_handoff(action.get("value", ""), who)
        # Who closed it, not who pressed (two operators pressing at once both read "Closed by" themselves).
        closer = closed.closed_by or str(who)
        channel, _, user = closer.partition(":")
        if closer == IDLE_ACTOR:
            note = "_Closed: the customer had gone quiet_"
        else:
            note = f"_Closed by <@{user}>_" if channel == CHANNEL and user else f"_Closed by {closer}_"
        settle(client, body.get("channel", {}).get("id", ""), body.get("message", {}), note)
