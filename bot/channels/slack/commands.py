"""``/teller``: the slash command's subcommands, for operators and product managers.

``help``; ``interview`` and ``brief`` (positioning, in the user's DM); ``flag``, ``review`` and
``retrain`` (operators). Each acknowledges within Slack's 3 seconds, with the answer or a refusal
as the acknowledgement's text (seen only by who typed it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from slack_bolt import App
from slack_sdk import WebClient

from bot.channels.slack.listeners import actor
from bot.channels.slack.transport import CHANNEL, SlackTransport
from bot.core import Outgoing
from bot.errors import InputError, NotAuthorised, sentence
from bot.review import NOTHING_TO_REVIEW
from bot.service import TellerService
from bot.storage import ReviewStatus


def help_text(interviews: bool = True, operators: bool = True) -> str:
    """What ``/teller help`` says: the subcommands of the parts that are running (``interviews``:
    positioning; ``operators``: the ops desk). A Teller with no ops channel lists no operators'
    commands (they would be refused as unknown)."""
    lines = [
        "*Teller* answers customer questions about cards, payments, transfers, top-ups and accounts.",
        "• Send me a direct message, or mention me in a channel: I answer in a thread.",
    ]
    if interviews:
        lines.append(
            "• `/teller interview`: a product-positioning interview in a DM (`/teller interview help`); "
            "`/teller brief ID`: an interview's positioning brief."
        )
    if operators:
        lines.append(
            "• Operators: `/teller flag <message id> [reason]`, `/teller review` (post the open review "
            "items), `/teller retrain [from-scratch]`; react with the flag emoji on an answer to flag "
            "it; reply in a handoff thread to talk to the customer."
        )
    lines.append("• `/teller help`: this message.")
    return "\n".join(lines)


#: The help of a Teller with every part running.
HELP = help_text()

#: ``/teller <subcommand> [args]`` handlers, given the arguments, the command payload, Bolt's ``ack``
#: (call it at once: Slack waits 3 seconds) and the Web API client.
Subcommand = Callable[[str, dict[str, Any], Callable[..., None], WebClient], None]


class SlashCommands:
    """The ``/teller`` command and its subcommands (those of parts that are running)."""

    def __init__(self, service: TellerService, transport: SlackTransport, ops_channel: str | None) -> None:
        self.service = service
        self.transport = transport
        self.ops_channel = ops_channel
        self.help = help_text(service.desk is not None, service.ops is not None)
        self.subcommands: dict[str, Subcommand] = {"help": lambda _a, _c, ack, _client: ack(text=self.help)}
        if service.desk is not None:
            self.subcommands |= {"interview": self.interview, "brief": self.brief}
        if service.ops is not None:
            self.subcommands |= {"flag": self.flag, "review": self.review, "retrain": self.retrain}

    def register(self, app: App) -> None:
        app.command("/teller")(self.on_command)

    def on_command(self, ack: Callable[..., None], command: dict[str, Any], client: WebClient) -> None:
        words = (command.get("text") or "").split(maxsplit=1)
        name, args = (words[0].lower(), words[1] if len(words) > 1 else "") if words else ("help", "")
        handler = self.subcommands.get(name)
        if handler is None:
            ack(text=f"Unknown subcommand `{name[:50]}`.\n{self.help}")
            return
        try:
            handler(args, command, ack, client)
        except (NotAuthorised, InputError) as exc:
            ack(text=sentence(exc))

    def _in_dm(self, command: dict[str, Any], ack: Callable[..., None], client: WebClient) -> str:
        """Acknowledge, and return the user's DM with Teller (where interviews happen)."""
        if str(command.get("channel_id", "")).startswith("D"):
            ack()
            return str(command["channel_id"])
        ack(text="I'll continue in a direct message.")
        opened = client.conversations_open(users=command["user_id"])
        return str(opened["channel"]["id"])

    def _post(self, channel: str, reply: Outgoing) -> None:
        self.service.deliver(reply, self.transport, channel)

    def interview(
        self, args: str, command: dict[str, Any], ack: Callable[..., None], client: WebClient
    ) -> None:
        desk = self.service.desk
        assert desk is not None
        if args.strip().lower() == "help":
            from bot.positioning_desk import INTERVIEW_USAGE

            ack(text=INTERVIEW_USAGE)
            return
        if not desk.may_interview(CHANNEL, command.get("user_id", "")):
            ack(text=desk.command(CHANNEL, command.get("user_id", ""), args).text)
            return
        channel = self._in_dm(command, ack, client)
        self._post(channel, desk.command(CHANNEL, command["user_id"], args))

    def brief(self, args: str, command: dict[str, Any], ack: Callable[..., None], client: WebClient) -> None:
        desk = self.service.desk
        assert desk is not None
        if not args.strip():
            ack(
                text="Usage: `/teller brief ID [compare A: need | 5; … || B: …]` "
                "(see `/teller interview list`)."
            )
            return
        if not desk.may_interview(CHANNEL, command.get("user_id", "")):  # said at once, no DM opened
            ack(text=desk.refusal(CHANNEL, command.get("user_id", ""), "Positioning briefs").text)
            return
        channel = self._in_dm(command, ack, client)
        self._post(channel, desk.brief_reply(CHANNEL, command["user_id"], args))

    def flag(self, args: str, command: dict[str, Any], ack: Callable[..., None], client: WebClient) -> None:
        message_id, _, reason = args.strip().partition(" ")
        if not message_id:
            ack(text="Usage: `/teller flag <message id> [reason]`")
            return
        item = self.service.flag(message_id, reason.strip() or None, actor(command))
        if item is None:
            ack(text=f"Flagged, but {NOTHING_TO_REVIEW}.")
            return
        if item.status != ReviewStatus.OPEN:
            # (a reviewer's finding: it said "filed as review item #1" of an item confirmed already)
            by = f" by {item.resolved_by}" if item.resolved_by else ""
            ack(
                text=f"Flagged, but that answer's review item #{item.id} was {item.status}{by} "
                "already: no new item opened."
            )
            return
        ack(text=f"Flagged; filed as review item #{item.id}.")

    def review(self, args: str, command: dict[str, Any], ack: Callable[..., None], client: WebClient) -> None:
        count = self.service.post_review_queue(actor(command))
        ack(text=f"Posting {count} open review item(s) to <#{self.ops_channel}>.")

    def retrain(
        self, args: str, command: dict[str, Any], ack: Callable[..., None], client: WebClient
    ) -> None:
        words = args.split()
        if words not in ([], ["from-scratch"]):
            ack(
                text="Usage: `/teller retrain` (continues from the active model) or "
                "`/teller retrain from-scratch`."
            )
            return
        ack(text=self.service.retrain(actor(command), "scratch" if words else "continue"))
