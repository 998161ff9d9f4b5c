"""Telegram, through python-telegram-bot (async): long polling by default, or a webhook on Teller's
server.

- :mod:`.channel`: the application, its handlers and its lifecycle (:class:`TelegramChannel`);
- :mod:`.dialect`: which messages are for Teller, their words, and conversation addresses;
- :mod:`.transport`: replies as Telegram messages and Telegram's errors as delivery outcomes.
"""

from bot.channels.telegram.channel import (
    HELP,
    NOT_TEXT,
    SECRET_HEADER,
    WEBHOOK_PATH,
    TelegramChannel,
    help_text,
)
from bot.channels.telegram.transport import TelegramPart, TelegramTransport

__all__ = [
    "HELP",
    "NOT_TEXT",
    "SECRET_HEADER",
    "WEBHOOK_PATH",
    "TelegramChannel",
    "TelegramPart",
    "TelegramTransport",
    "help_text",
]
