"""The ops board: handoff threads, review items and Teller's notices in the Slack ops channel.

Implements :class:`bot.ops_desk.OpsBoard`; rendering only. Posts go through the channel's Web API
client, which retries rate limits and server errors (:func:`bot.channels.slack.transport.web_client`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError

from bot.channels.slack.blocks import (
    SECTIONS_PER_MESSAGE,
    handoff_blocks,
    proposal_blocks,
    review_blocks,
    sections,
)
from bot.channels.slack.text import escape
from bot.channels.slack.transport import delivery_error
from bot.errors import OpsUnreachable

if TYPE_CHECKING:
    from bot.storage import Correction, Handoff, HandoffThread, Proposal, ReviewItem, StoredMessage


#: Slack's errors of a post to the ops channel that no retry mends: the bot is not in the channel,
#: the channel is gone or archived, or the app's token no longer works (Slack's Web API reference
#: of ``chat.postMessage``). A handoff cannot reach anyone until someone fixes the setup.
UNREACHABLE_ERRORS = frozenset(
    {
        "not_in_channel",
        "channel_not_found",
        "is_archived",
        "invalid_auth",
        "not_authed",
        "account_inactive",
        "token_revoked",
        "token_expired",
        "missing_scope",
        "restricted_action",
        "team_access_not_granted",
    }
)


def _error(exc: SlackApiError) -> str:
    """Slack's error code of a refused call (``not_in_channel``), "" when it names none."""
    data = exc.response.data if isinstance(exc.response.data, dict) else {}
    return str(data.get("error") or "")


class SlackOpsBoard:
    """The ops channel ``ops_channel`` as the operators' board."""

    def __init__(self, client: WebClient, ops_channel: str | None) -> None:
        self.client = client
        self.ops_channel = ops_channel

    def open_handoff(self, handoff: Handoff, transcript: list[StoredMessage]) -> str:
        """Raises :class:`OpsUnreachable` when Slack refuses the ops channel for good
        (:data:`UNREACHABLE_ERRORS`); slack_sdk's errors otherwise."""
        with self._reachable():
            posted = self.client.chat_postMessage(
                channel=self.ops_channel or "",
                text=f"Handoff: a {handoff.channel} customer needs a person",
                blocks=handoff_blocks(handoff, transcript),
            )
        return str(posted["ts"])

    def post_in_thread(self, handoff: Handoff, text: str) -> None:
        """The customer's words (escaped: they ping nobody), split over several posts if long.
        Raises as :meth:`open_handoff` (the channel archived, or the bot removed, mid-handoff)."""
        with self._reachable():
            self._thread(handoff.thread, text, "*Customer:* ")

    @contextmanager
    def _reachable(self) -> Iterator[None]:
        """Slack's refusals of :data:`UNREACHABLE_ERRORS` as :class:`OpsUnreachable`."""
        try:
            yield
        except SlackApiError as exc:
            if _error(exc) in UNREACHABLE_ERRORS:
                where = f"the ops channel {self.ops_channel}"
                raise OpsUnreachable(f"Slack refused {where}: {delivery_error(exc).reason}") from exc
            raise

    def check(self) -> str | None:
        """Why Teller cannot post in the ops channel, as Slack says at start-up (``not_in_channel``,
        ``is_archived``, ``channel_not_found``, a revoked token...), or None: it can, or it could not
        tell (``conversations.info`` needs the ``channels:read`` / ``groups:read`` scope; without
        it, or with Slack unreachable, the first handoff finds out, :class:`OpsUnreachable`)."""
        if not self.ops_channel:
            return None
        try:
            info = self.client.conversations_info(channel=self.ops_channel)
        except SlackApiError as exc:  # (without the scope to look, nothing is known)
            known = _error(exc) in UNREACHABLE_ERRORS and _error(exc) != "missing_scope"
            return delivery_error(exc).reason if known else None
        except (SlackClientError, OSError):
            return None
        channel = info.get("channel") or {}
        if channel.get("is_archived"):
            return "is_archived"
        if channel.get("is_member") is False:
            return "not_in_channel"
        return None

    def warn_in_thread(self, thread: HandoffThread, text: str) -> None:
        self._thread(thread, text, ":warning: ")

    def _thread(self, thread: HandoffThread, text: str, prefix: str) -> None:
        blocks = sections(text, prefix, verbatim=True)
        for start in range(0, len(blocks), SECTIONS_PER_MESSAGE):
            group = blocks[start : start + SECTIONS_PER_MESSAGE]
            self.client.chat_postMessage(
                channel=thread.ops_channel or self.ops_channel or "",
                thread_ts=thread.thread_ts,
                text="\n\n".join(b["text"]["text"] for b in group),
                blocks=group,
            )

    def post_review(self, item: ReviewItem, labels: list[str]) -> None:
        self.client.chat_postMessage(
            channel=self.ops_channel or "",
            text=f"Review item #{item.id}: {escape(item.text[:100])}",
            blocks=review_blocks(item, labels),
        )

    def post_proposals(self, correction: Correction, proposals: list[Proposal]) -> None:
        what = correction.label or correction.kb_id or ""
        self.client.chat_postMessage(
            channel=self.ops_channel or "",
            text=f"Correction #{correction.id}: {len(proposals)} stored message(s) may also mean {what}",
            blocks=proposal_blocks(correction, proposals),
        )

    def announce(self, text: str) -> str:
        posted = self.client.chat_postMessage(channel=self.ops_channel or "", text=text)
        return str(posted["ts"])

    def amend(self, message_ref: str, text: str) -> None:
        self.client.chat_update(channel=self.ops_channel or "", ts=message_ref, text=text)
