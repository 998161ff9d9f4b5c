"""Teller's messages as Telegram messages, and Telegram's answers as delivery outcomes.

:class:`TelegramTransport` is the Telegram side of :mod:`bot.delivery`: the courier asks it for the
parts of a reply and posts them one by one, retrying what it says is transient.

- **Splitting.** A text longer than Telegram's 4,096 characters (counted in UTF-16 code units) is
  split at paragraph, line, sentence or word boundaries, never cut; the buttons go with the last
  part, so they sit under the end of the answer.
- **Buttons.** ``callback_data`` holds at most 64 bytes. Feedback buttons carry
  ``fb:1:<message id>`` / ``fb:0:<message id>``; any other choice carries its own value when it
  fits (and does not look like one of these tokens), else ``ch:<message id>:<index>``, which the
  channel turns back into the value with :meth:`bot.service.TellerService.choice_value`. A value is
  never shortened.
- **Errors**, mapped once: ``RetryAfter`` (what outlasted python-telegram-bot's own rate limiter)
  is transient with Telegram's ``retry_after``; ``TimedOut`` and other ``NetworkError``\\ s (5xx,
  connection failures) are transient; ``BadRequest`` (message too long, chat not found, invalid
  button data), ``Forbidden`` (the customer blocked the bot), ``InvalidToken`` and anything else
  of Telegram's are permanent, with Telegram's own words as the reason.
- **A group upgraded to a supergroup** (``ChatMigrated``: Telegram gives the new chat id) gets the
  part at its new id, once; a second migration is permanent.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dtm
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, ReplyParameters
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)

from bot.channels.telegram.dialect import parse_reply_address
from bot.choices import CHOICE_REF_PREFIX, choice_ref, parse_choice_ref
from bot.core import Outgoing
from bot.delivery import split_text, utf16_length
from bot.errors import DeliveryError

log = logging.getLogger(__name__)

CHANNEL = "telegram"
#: Telegram's limits: characters of a message (UTF-16 code units), bytes of a button's data.
MAX_TEXT = 4096
MAX_CALLBACK_DATA = 64
#: Callback data of feedback buttons: ``fb:1:<message id>`` (helpful) or ``fb:0:<message id>``.
FEEDBACK_PREFIX = "fb:"
#: How long one post may take, rate limiter's waits included, before it counts as timed out.
POST_TIMEOUT = 120.0


@dataclass(frozen=True)
class TelegramPart:
    """One ``sendMessage``: plain text (no parse mode, so a split never breaks markup), the
    inline keyboard, if this part carries it, and the message it replies to (the first part of an
    answer in a group: :func:`bot.channels.telegram.dialect.reply_address`)."""

    text: str
    keyboard: InlineKeyboardMarkup | None = None
    reply_to: int | None = None


def fits(data: str) -> bool:
    return len(data.encode("utf-8")) <= MAX_CALLBACK_DATA


def callback_data(outgoing: Outgoing, index: int) -> str:
    """What the ``index``-th choice of ``outgoing`` sends back when pressed (at most 64 bytes).
    Raises :class:`DeliveryError` if not even a token fits (a message id far longer than Teller's)."""
    choice = outgoing.choices[index]
    if choice.is_feedback:
        data = f"{FEEDBACK_PREFIX}{'1' if choice.helpful else '0'}:{outgoing.message_id}"
    elif fits(choice.value) and not is_token(choice.value):
        data = choice.value
    else:
        data = choice_ref(outgoing.message_id, index)
    if not fits(data):
        raise DeliveryError(f"button data {data!r} is longer than Telegram's {MAX_CALLBACK_DATA} bytes")
    return data


def keyboard(outgoing: Outgoing) -> InlineKeyboardMarkup | None:
    """The choices as inline buttons, one per row, and the feedback buttons side by side last."""
    rows: list[list[InlineKeyboardButton]] = []
    feedback: list[InlineKeyboardButton] = []
    for index, choice in enumerate(outgoing.choices):
        button = InlineKeyboardButton(choice.label, callback_data=callback_data(outgoing, index))
        if choice.is_feedback:
            feedback.append(button)
        else:
            rows.append([button])
    if feedback:
        rows.append(feedback)
    return InlineKeyboardMarkup(rows) if rows else None


def feedback_token(data: str) -> tuple[str, bool] | None:
    """``(message id, helpful)`` of a feedback button's data; None for other data."""
    flag, _, message_id = data.removeprefix(FEEDBACK_PREFIX).partition(":")
    if data.startswith(FEEDBACK_PREFIX) and flag in ("0", "1") and message_id:
        return message_id, flag == "1"
    return None


#: ``(reply id, index)`` of a ``ch:`` token; None for other data (defined in :mod:`bot.choices`).
choice_token = parse_choice_ref


def is_token(data: str) -> bool:
    """Whether ``data`` is in the form of Teller's tokens (a choice value never is)."""
    return data.startswith((FEEDBACK_PREFIX, CHOICE_REF_PREFIX))


def delivery_error(error: BaseException) -> DeliveryError:
    """Telegram's (or python-telegram-bot's) error as a :class:`DeliveryError`, mapped once."""
    if isinstance(error, RetryAfter):
        return DeliveryError(error.message, transient=True, retry_after=_seconds(error))
    if isinstance(error, BadRequest):  # before NetworkError, which it subclasses
        # python-telegram-bot strips Telegram's "Bad Request: " from the description; put it back.
        reason = error.message if error.message.startswith("Bad Request") else f"Bad Request: {error.message}"
        return DeliveryError(reason)
    if isinstance(error, TimedOut | NetworkError):
        return DeliveryError(error.message, transient=True)
    if isinstance(error, Forbidden | InvalidToken | ChatMigrated | TelegramError):
        return DeliveryError(error.message)
    if isinstance(error, TimeoutError):
        return DeliveryError("Telegram did not answer in time", transient=True)
    if isinstance(error, concurrent.futures.CancelledError):
        return DeliveryError("the Telegram channel stopped while sending", transient=True)
    return DeliveryError(f"{type(error).__name__}: {error}")


def _seconds(error: RetryAfter) -> float:
    # The public property warns about its type changing (int → timedelta); the value is the same.
    value: Any = getattr(error, "_retry_after", None)
    if value is None:
        value = error.retry_after
    return value.total_seconds() if isinstance(value, dtm.timedelta) else float(value)


class TelegramTransport:
    """Posts parts with the channel's bot on the channel's event loop, from any other thread.

    ``attach``/``detach`` are called by the channel as it starts and stops; posting while it is
    stopped fails permanently (nothing is sent; the courier records it)."""

    name = CHANNEL

    def __init__(self, bot: Bot, timeout: float = POST_TIMEOUT) -> None:
        self.bot = bot
        self.timeout = timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop, self._loop_thread = loop, threading.get_ident()

    def detach(self) -> None:
        self._loop = self._loop_thread = None

    def parts(self, address: str, outgoing: Outgoing) -> Sequence[TelegramPart]:
        pieces = split_text(outgoing.text, MAX_TEXT, utf16_length)
        if pieces == [""]:
            raise DeliveryError("the message is empty: Telegram takes no empty text")
        try:
            replied = parse_reply_address(address)[2]
        except ValueError:
            raise DeliveryError(f"{address!r} is not a Telegram chat") from None
        markup = keyboard(outgoing)
        return [
            TelegramPart(p, markup if i == len(pieces) - 1 else None, replied if i == 0 else None)
            for i, p in enumerate(pieces)
        ]

    def post(self, address: str, part: TelegramPart) -> str:
        """Send one part to ``address`` (``"<chat_id>"`` or ``"<chat_id>:<topic>"``, either with a
        ``/<message_id>`` the answer replies to); returns ``"<chat_id>:<message_id>"``. Blocks;
        must not be called on the channel's event loop."""
        try:
            chat_id, thread_id, _ = parse_reply_address(address)
        except ValueError:
            raise DeliveryError(f"{address!r} is not a Telegram chat") from None
        loop = self._loop
        if loop is None or loop.is_closed():
            raise DeliveryError("the Telegram channel is not running")
        if threading.get_ident() == self._loop_thread:
            raise RuntimeError("TelegramTransport.post blocks: call it from a worker thread")
        pending = asyncio.run_coroutine_threadsafe(self._send(chat_id, thread_id, part), loop)
        try:
            return pending.result(self.timeout)
        except DeliveryError:
            raise
        except Exception as exc:  # timed out, or the loop went away: the send is abandoned
            pending.cancel()
            raise delivery_error(exc) from exc

    async def _send(
        self, chat_id: int, thread_id: int | None, part: TelegramPart, moved: bool = False
    ) -> str:
        # A reply whose message is gone (deleted meanwhile) is sent all the same, as a plain message.
        replied = (
            ReplyParameters(part.reply_to, allow_sending_without_reply=True)
            if part.reply_to is not None
            else None
        )
        try:
            message = await self.bot.send_message(
                chat_id,
                part.text,
                reply_markup=part.keyboard,
                message_thread_id=thread_id,
                reply_parameters=replied,
            )
        except ChatMigrated as exc:
            if moved or exc.new_chat_id == chat_id:
                raise delivery_error(exc) from exc
            # The group became a supergroup, under a new id (Telegram's ``migrate_to_chat_id``): the
            # part goes there, once, as a plain message (the old group's message ids are not the
            # new one's, and a group had no topics). A reviewer's trial: the reply was recorded
            # failed and filed for review, and nothing reached the supergroup.
            log.info("telegram_chat_migrated", extra={"fields": {"chat": chat_id, "to": exc.new_chat_id}})
            return await self._send(exc.new_chat_id, None, replace(part, reply_to=None), moved=True)
        except TelegramError as exc:
            raise delivery_error(exc) from exc
        return f"{chat_id}:{message.message_id}"
