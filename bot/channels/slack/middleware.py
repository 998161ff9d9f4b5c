"""Bolt middleware: what every Slack request goes through once, before any listener.

In order (after Bolt's own signature check and self-event filter):

1. :func:`well_formed`: a signed payload without the fields Bolt's listeners read (an event
   callback without its ``event``, a button press without ``actions`` or ``user``, a slash command
   without ``command``) gets a 400 with a clear message, not a 500 from deep inside a listener.
   Some such payloads break Bolt's own middleware before any of ours runs, so the HTTP route
   checks :func:`problem` too, once the signature is verified.
2. :func:`people_only`: message events that are not a person's own words (any ``bot_id``, bot
   messages, edits, deletions, joins) are acknowledged and dropped, so two bots never loop; a
   person's edit or deletion of a thread message goes on (an operator's, in a handoff's thread, is
   told the customer keeps the message as first sent).
3. :class:`FirstDelivery`: an event Slack delivers again (same ``event_id``, e.g. after a slow
   acknowledgement) is acknowledged and dropped; the store's unique platform ids catch the rest
   across replicas.

After Teller's listeners, :func:`acknowledge_the_rest` acknowledges whatever none of them takes
(Bolt would answer 404, which Slack counts as a failed delivery).
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from collections.abc import Callable
from threading import Lock
from typing import Any

from slack_bolt import App, BoltResponse

log = logging.getLogger(__name__)

#: Message subtypes that are a person writing (with a file, a thread reply sent to the channel, or
#: ``/me`` before the words: a reviewer's DM "/me what's the overdraft fee?" went unanswered); every
#: other subtype (edits, deletions, joins, bot messages) is not a message for Teller.
HUMAN_SUBTYPES = frozenset({"file_share", "thread_broadcast", "me_message"})
#: Events whose text Teller reads (the others, reactions say, have no author text to filter on).
MESSAGE_EVENTS = frozenset({"message", "app_mention"})


def written_by_a_person(event: dict[str, Any]) -> bool:
    """Whether a message event is a person's own message (not a bot's, Teller's included, and not
    an edit, a deletion or a notice)."""
    if event.get("bot_id") or event.get("bot_profile"):
        return False
    subtype = event.get("subtype")
    return subtype is None or subtype in HUMAN_SUBTYPES


def refusal(why: str) -> BoltResponse:
    log.warning("slack_payload_malformed", extra={"fields": {"why": why}})
    return BoltResponse(status=400, body=f"Malformed Slack payload: {why}.")


def problem(body: dict[str, Any]) -> str | None:
    """What a payload lacks for its type, or None when it has what the listeners read."""
    kind = body.get("type")
    if kind == "event_callback":
        event = body.get("event")
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            return "an event callback needs an 'event' object with a 'type'"
        person = event["type"] in MESSAGE_EVENTS and written_by_a_person(event)
        if person and not (isinstance(event.get("channel"), str) and isinstance(event.get("ts"), str)):
            return "a message event needs its 'channel' and 'ts'"
        return None
    if kind in ("block_actions", "view_submission", "shortcut", "message_action"):
        user = body.get("user")
        if not isinstance(user, dict) or not isinstance(user.get("id"), str):
            return f"a {kind} payload needs a 'user' with an 'id'"
        if kind == "block_actions":
            actions = body.get("actions")
            if not isinstance(actions, list) or not actions or not all(isinstance(a, dict) for a in actions):
                return "a block_actions payload needs a non-empty 'actions' list"
            if not all(isinstance(a.get("action_id"), str) for a in actions):
                return "every action needs an 'action_id'"
        if kind == "view_submission" and not isinstance(body.get("view"), dict):
            return "a view_submission payload needs its 'view'"
        return None
    if kind in ("url_verification", "view_closed", "block_suggestion", "app_rate_limited"):
        return None
    if kind is None and "command" not in body and "ssl_check" not in body:
        return "it is neither an event, an interaction nor a slash command"
    if "command" in body and (not isinstance(body.get("command"), str) or not body.get("user_id")):
        return "a slash command needs its 'command' and 'user_id'"
    return None


def well_formed(body: dict[str, Any], next: Callable[[], None]) -> BoltResponse | None:
    wrong = problem(body if isinstance(body, dict) else {})
    if wrong is not None:
        return refusal(wrong)
    next()
    return None


#: Message subtypes that are a person changing what they wrote: dropped, except in the ops channel's
#: threads, where an operator is told the customer keeps the message as first sent (:func:`edit_by_a_person`).
EDIT_SUBTYPES = frozenset({"message_changed", "message_deleted"})


def edit_by_a_person(event: dict[str, Any]) -> dict[str, Any] | None:
    """The message a person's edit (their first of it) or deletion event is about (``message``, or
    for a deletion ``previous_message``), if it is a person's message in a thread; None otherwise
    (Teller updating its own posts sends these events too, and Slack unfurling a link)."""
    if event.get("subtype") not in EDIT_SUBTYPES:
        return None
    changed = event.get("subtype") == "message_changed"
    message = event.get("message") if changed else event.get("previous_message")
    if not isinstance(message, dict) or message.get("bot_id") or message.get("bot_profile"):
        return None
    if changed:
        # Only a person's first edit: Slack also sends ``message_changed`` when it unfurls a link
        # (no ``edited``), and for every later edit (the previous version ``edited`` already); a
        # note for each flooded the thread (found in review).
        before = event.get("previous_message")
        if not isinstance(message.get("edited"), dict) or (isinstance(before, dict) and before.get("edited")):
            return None
    if not (isinstance(message.get("user"), str) and isinstance(message.get("thread_ts"), str)):
        return None
    return message


def people_only(body: dict[str, Any], next: Callable[[], None]) -> BoltResponse | None:
    event = body.get("event") if body.get("type") == "event_callback" else None
    if (
        isinstance(event, dict)
        and event.get("type") in MESSAGE_EVENTS
        and not written_by_a_person(event)
        and edit_by_a_person(event) is None
    ):
        log.debug("slack_not_a_person", extra={"fields": {"subtype": event.get("subtype")}})
        return BoltResponse(status=200, body="")  # acknowledged: Slack does not send it again
    next()
    return None


class FirstDelivery:
    """Drops events already seen by this process (the newest ``size`` event ids)."""

    def __init__(self, size: int = 10_000) -> None:
        self.size = size
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._lock = Lock()

    def first_time(self, key: str) -> bool:
        with self._lock:
            if key in self._seen:
                return False
            self._seen[key] = None
            while len(self._seen) > self.size:
                self._seen.popitem(last=False)
            return True

    def __call__(self, body: dict[str, Any], next: Callable[[], None]) -> BoltResponse | None:
        event_id = body.get("event_id") if body.get("type") == "event_callback" else None
        if event_id and not self.first_time(str(event_id)):
            log.info("slack_duplicate_event", extra={"fields": {"event_id": event_id}})
            return BoltResponse(status=200, body="")
        next()
        return None


#: Matches any event type, action id, callback id or command (:func:`acknowledge_the_rest`).
_ANYTHING = re.compile(".*")


def acknowledge_the_rest(app: App) -> None:
    """Listeners for whatever Teller's own listeners do not take, registered after them (Bolt runs
    the first listener that matches): events (a reaction removed, the App Home opened, a member
    joining), buttons and modals of other apps' or older versions' messages, another slash command
    pointed at Teller, an options request. Each is acknowledged (a 200, or a Socket Mode ack) and
    logged (``slack_unhandled``, its type and name only), where Bolt answers 404 "unhandled request":
    Slack counts a 404 as a failed delivery, delivers it again, and turns event subscriptions off
    for an app that fails too often (a reviewer's finding)."""

    def unhandled(body: dict[str, Any]) -> None:
        event: dict[str, Any] = body["event"] if isinstance(body.get("event"), dict) else {}
        actions: list[Any] = body["actions"] if isinstance(body.get("actions"), list) else []
        first: dict[str, Any] = actions[0] if actions and isinstance(actions[0], dict) else {}
        log.info(
            "slack_unhandled",
            extra={
                "fields": {
                    "type": str(body.get("type") or ("command" if "command" in body else ""))[:50],
                    "name": str(event.get("type") or first.get("action_id") or body.get("command") or "")[
                        :80
                    ],
                }
            },
        )

    def acknowledge(ack: Callable[..., None], body: dict[str, Any]) -> None:
        ack()
        unhandled(body)

    def no_options(ack: Callable[..., None], body: dict[str, Any]) -> None:
        ack(options=[])
        unhandled(body)

    def unknown_command(ack: Callable[..., None], body: dict[str, Any]) -> None:
        ack(text=f"Teller has no command {str(body.get('command', ''))[:50]}. Try /teller help.")
        unhandled(body)

    app.event(_ANYTHING)(acknowledge)
    app.action(_ANYTHING)(acknowledge)
    app.view(_ANYTHING)(acknowledge)
    app.view_closed(_ANYTHING)(acknowledge)
    app.shortcut(_ANYTHING)(acknowledge)
    app.options(_ANYTHING)(no_options)
    app.command(_ANYTHING)(unknown_command)
