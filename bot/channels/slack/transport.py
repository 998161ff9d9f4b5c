"""Slack's side of delivery: Web API calls with slack_sdk's retry handlers, errors mapped once.

The :class:`~slack_sdk.WebClient` retries what Slack asks it to (``RateLimitErrorRetryHandler``
waits the ``Retry-After`` of a 429), server errors (``ServerErrorRetryHandler``: 500 and 503) and
dropped connections (``ConnectionErrorRetryHandler``); :func:`delivery_error` maps what still fails
into :class:`bot.errors.DeliveryError`, transient or not, for the courier (:mod:`bot.delivery`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)

from bot.channels.slack.blocks import SlackPart, reply_parts
from bot.core import Outgoing
from bot.errors import DeliveryError

log = logging.getLogger(__name__)

CHANNEL = "slack"
#: Slack errors worth trying again (besides HTTP 429 and 5xx): Slack's own words for a blip.
TRANSIENT_ERRORS = frozenset(
    {"ratelimited", "internal_error", "fatal_error", "service_unavailable", "request_timeout"}
)


def web_client(token: str | None, base_url: str | None = None, retries: int = 3) -> WebClient:
    """A Web API client that retries 429s (after ``Retry-After``), 500/503 and dropped connections
    up to ``retries`` times each."""
    return WebClient(
        token=token,
        base_url=base_url or WebClient.BASE_URL,
        retry_handlers=[
            ConnectionErrorRetryHandler(max_retry_count=retries),
            RateLimitErrorRetryHandler(max_retry_count=retries),
            ServerErrorRetryHandler(max_retry_count=retries),
        ],
    )


def delivery_error(exc: Exception) -> DeliveryError:
    """A slack_sdk failure as a :class:`DeliveryError` (HTTP 429 and 5xx, Slack's blips and
    connection errors are transient; ``invalid_blocks``, ``channel_not_found``… are not)."""
    if isinstance(exc, SlackApiError):
        response = exc.response
        status = int(getattr(response, "status_code", 0) or 0)
        data = response.data if isinstance(response.data, dict) else {}
        error = str(data.get("error") or f"HTTP {status}")
        detail = data.get("response_metadata", {}).get("messages") if isinstance(data, dict) else None
        reason = error + (f" ({'; '.join(map(str, detail))[:200]})" if detail else "")
        retry_after = None
        headers = getattr(response, "headers", {}) or {}
        for key, value in headers.items():
            if key.lower() == "retry-after":
                try:
                    retry_after = float(value if isinstance(value, str) else value[0])
                except (TypeError, ValueError, IndexError):
                    retry_after = None
        transient = status == 429 or status >= 500 or error in TRANSIENT_ERRORS
        return DeliveryError(reason, transient=transient, retry_after=retry_after)
    if isinstance(exc, (SlackClientError, OSError)):
        return DeliveryError(f"no answer from Slack: {exc!r}"[:300], transient=True)
    return DeliveryError(repr(exc)[:300])


def split_address(address: str) -> tuple[str, str | None]:
    """``channel`` or ``channel:thread_ts`` → (channel, thread or None)."""
    channel, _, thread = address.partition(":")
    return channel, thread or None


class SlackTransport:
    """Posts Teller's messages to a conversation: ``address`` is a channel (a DM) or
    ``channel:thread_ts``."""

    name = CHANNEL

    def __init__(self, client: WebClient) -> None:
        self.client = client

    def parts(self, address: str, outgoing: Outgoing) -> Sequence[SlackPart]:
        return reply_parts(outgoing)

    def post(self, address: str, part: SlackPart) -> str:
        channel, thread = split_address(address)
        try:
            if part.files:
                self.client.files_upload_v2(
                    file_uploads=[{"file": str(path), "title": path.name} for path in part.files],
                    channel=channel,
                    thread_ts=thread,
                )
                return f"{channel}:files"
            posted: Any = self.client.chat_postMessage(
                channel=channel, thread_ts=thread, text=part.text, blocks=part.blocks
            )
        except (SlackClientError, OSError) as exc:
            raise delivery_error(exc) from None
        return f"{channel}:{posted.get('ts')}"
