"""Telegram, through python-telegram-bot (async): long polling by default, or a webhook on Teller's server."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.ext import (
    Application,
    ApplicationHandlerStop,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    TypeHandler,
    filters,
)

from bot.core import FEEDBACK_HELPFUL, FEEDBACK_NOT_HELPFUL, Incoming, Outgoing, TellerCore
from bot.dispatch import Dispatcher
from bot.errors import InputError
from bot.policy import HANDOFF_CHOICE
from bot.storage.database import Lease

log = logging.getLogger(__name__)

CHANNEL = "telegram"
WEBHOOK_PATH = "/telegram/webhook"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
#: Callback data of feedback buttons: "fb:1:<message id>" (helpful) or "fb:0:<message id>".
FEEDBACK_PREFIX = "fb:"
HELP = (
    "I'm Teller, Lumen Bank's assistant. Ask me anything about your cards, payments, transfers, top-ups or "
    "account, in your own words.\n\n/human talks to a person\n/help shows this message"
)
NOT_TEXT = "I can only read text messages for now. Could you type your question?"


def keyboard(reply: Outgoing) -> InlineKeyboardMarkup | None:
    """Choices and feedback as inline buttons (callback data stays under Telegram's 64 bytes)."""
    rows = []
    for choice in reply.choices:
        if choice.value in (FEEDBACK_HELPFUL, FEEDBACK_NOT_HELPFUL):
            flag = "1" if choice.value == FEEDBACK_HELPFUL else "0"
            data = f"{FEEDBACK_PREFIX}{flag}:{reply.message_id}"
        else:
            data = choice.value[:64]
        rows.append([InlineKeyboardButton(choice.label, callback_data=data)])
    feedback = [r[0] for r in rows if str(r[0].callback_data).startswith(FEEDBACK_PREFIX)]
    others = [r for r in rows if not str(r[0].callback_data).startswith(FEEDBACK_PREFIX)]
    layout = others + ([feedback] if feedback else [])
    return InlineKeyboardMarkup(layout) if layout else None


class TelegramChannel:
    """One bot token; polling unless ``webhook_url`` is set."""

    name = CHANNEL

    def __init__(
        self,
        core: TellerCore,
        token: str,
        api_url: str | None = None,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        poll_timeout: float = 10.0,
        dispatcher: Dispatcher | None = None,
        leadership: Callable[[], Lease | None] | None = None,
        lead_interval: float = 2.0,
    ) -> None:
        """``leadership`` (polling mode): tries to take the cluster-wide polling lock, so that
        exactly one replica polls (Telegram allows one ``getUpdates`` consumer per bot); the others
        retry every ``lead_interval`` seconds and take over when the holder dies. Every replica
        can still send (handoff relays)."""
        self.core = core
        self.dispatcher = dispatcher or Dispatcher(core)
        self._loop: asyncio.AbstractEventLoop | None = None
        self.webhook_url = webhook_url
        self.webhook_secret = webhook_secret
        self.poll_timeout = poll_timeout
        self._leadership = leadership
        self.lead_interval = lead_interval
        self._lease: Lease | None = None
        self._leading: asyncio.Task[None] | None = None
        builder = Application.builder().token(token)
        if api_url:
            builder = builder.base_url(api_url)
        if webhook_url:
            builder = builder.updater(None)
        self.app: Application[Any, Any, Any, Any, Any, Any] = builder.build()
        self._seen: OrderedDict[int, None] = OrderedDict()
        self.app.add_handler(TypeHandler(Update, self._drop_duplicates), group=-1)
        self.app.add_handler(CommandHandler(["start", "help"], self._help))
        self.app.add_handler(CommandHandler("human", self._human))
        self.app.add_handler(CallbackQueryHandler(self._button))
        self.app.add_handler(MessageHandler(filters.UpdateType.EDITED, self._ignore))
        self.app.add_handler(MessageHandler(filters.StatusUpdate.ALL, self._ignore))
        self.app.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND, self._text))
        self.app.add_handler(MessageHandler(filters.ALL, self._not_text))
        self.app.add_error_handler(self._error)

    # ------------------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self.app.initialize()
        await self.app.start()
        if self.webhook_url:
            await self.app.bot.set_webhook(
                self.webhook_url, secret_token=self.webhook_secret, allowed_updates=Update.ALL_TYPES
            )
        elif self._leadership is None:
            await self._start_polling()
        else:
            self._leading = asyncio.create_task(self._lead(), name="telegram-leadership")
        log.info("telegram_started", extra={"fields": {"mode": "webhook" if self.webhook_url else "polling"}})

    @property
    def polling(self) -> bool:
        return self.app.updater is not None and self.app.updater.running

    async def _start_polling(self) -> None:
        await self.app.bot.delete_webhook()
        assert self.app.updater is not None
        await self.app.updater.start_polling(timeout=int(self.poll_timeout), allowed_updates=Update.ALL_TYPES)

    async def _lead(self) -> None:
        """Poll while this replica holds the polling lock; keep trying to take it otherwise."""
        assert self._leadership is not None
        while True:
            try:
                if self._lease is None:
                    lease = await asyncio.to_thread(self._leadership)
                    if lease is not None:
                        try:
                            await self._start_polling()
                        except BaseException:
                            # Not polling: let another replica (or the next round) lead.
                            await asyncio.to_thread(lease.release)
                            raise
                        self._lease = lease
                        log.info("telegram_polling_leader", extra={"fields": {"lock": lease.name}})
                elif not await asyncio.to_thread(self._lease.alive):
                    self._lease = None
                    if self.polling:
                        assert self.app.updater is not None
                        await self.app.updater.stop()
                    log.warning("telegram_polling_lost", extra={"fields": {}})
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database or Telegram briefly unreachable: try again
                log.error("telegram_leadership_failed", extra={"fields": {"error": repr(exc)[:300]}})
            await asyncio.sleep(self.lead_interval)

    async def stop(self) -> None:
        if self._leading is not None:
            self._leading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._leading
            self._leading = None
        if self.app.updater is not None and self.app.updater.running:
            await self.app.updater.stop()
        if self._lease is not None:
            lease, self._lease = self._lease, None
            await asyncio.to_thread(lease.release)
        if self.app.running:
            await self.app.stop()
        await self.app.shutdown()
        log.info("telegram_stopped")

    def router(self) -> APIRouter | None:
        if not self.webhook_url:
            return None
        router = APIRouter()

        @router.post(WEBHOOK_PATH, include_in_schema=False)
        async def webhook(request: Request) -> Response:
            if self.webhook_secret and not hmac.compare_digest(
                request.headers.get(SECRET_HEADER, ""), self.webhook_secret
            ):
                log.warning("telegram_webhook_rejected")
                return Response(status_code=403)
            try:
                data = await request.json()
                update = Update.de_json(data, self.app.bot) if isinstance(data, dict) else None
            except (ValueError, TypeError, KeyError, AttributeError):
                update = None
            if update is None or not isinstance(update.update_id, int):
                # Not an update of Telegram's (malformed, or not from Telegram at all): a clear 400.
                log.warning("telegram_webhook_malformed")
                return JSONResponse({"detail": "the body is not a Telegram Update object"}, status_code=400)
            # Queued, not awaited: Telegram gets its 200 at once and the update is handled in order.
            await self.app.update_queue.put(update)
            return Response(status_code=200)

        return router

    # ------------------------------------------------------------------------------ handlers

    async def _drop_duplicates(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        if update.update_id in self._seen:
            log.info("telegram_duplicate_update", extra={"fields": {"update_id": update.update_id}})
            raise ApplicationHandlerStop
        self._seen[update.update_id] = None
        while len(self._seen) > 10_000:
            self._seen.popitem(last=False)

    async def _answer(self, update: Update, text: str, message_id: str | None) -> None:
        chat, user, message = update.effective_chat, update.effective_user, update.effective_message
        if chat is None or message is None:
            return
        incoming = Incoming(CHANNEL, str(chat.id), str(user.id if user else chat.id), message_id, text)
        try:
            reply = await asyncio.to_thread(self.dispatcher.handle, incoming, chat.type == "private")
        except InputError as exc:
            await message.reply_text(str(exc).capitalize() + ".")
            return
        if reply.duplicate or reply.silent:  # answered before, or passed to a person in a handoff
            return
        await chat.send_message(reply.text, reply_markup=keyboard(reply))

    async def _text(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        if message is None or message.text is None or update.effective_chat is None:
            return
        await self._answer(update, message.text, f"{update.effective_chat.id}:{message.message_id}")

    async def _help(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        if update.effective_message is not None:
            await update.effective_message.reply_text(HELP)

    async def _human(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        if message is not None and update.effective_chat is not None:
            await self._answer(update, HANDOFF_CHOICE, f"{update.effective_chat.id}:{message.message_id}")

    async def _not_text(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        chat, message = update.effective_chat, update.effective_message
        if message is not None and chat is not None and chat.type == "private":
            await message.reply_text(NOT_TEXT)

    async def _ignore(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        log.debug("telegram_ignored", extra={"fields": {"update_id": update.update_id}})

    async def _button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        if query is None:
            return
        data = query.data or ""
        if data.startswith(FEEDBACK_PREFIX):
            _, flag, message_id = data.split(":", 2)
            try:
                await asyncio.to_thread(
                    self.dispatcher.feedback, message_id, flag == "1", None, str(query.from_user.id)
                )
            except InputError:
                await query.answer("That answer is no longer on record.")
                return
            await query.answer(
                "Thanks for the feedback!" if flag == "1" else "Thanks, we'll use this to improve."
            )
            await query.edit_message_reply_markup(reply_markup=None)
            return
        await query.answer()
        if query.message is not None:
            await query.edit_message_reply_markup(reply_markup=None)
        await self._answer(update, data, f"callback:{query.id}")

    def send(self, address: str, reply: Outgoing) -> None:
        """Deliver a message to a chat from any thread (e.g. an operator's reply in a handoff)."""
        if self._loop is None:
            raise InputError("Telegram is not running")
        pending = asyncio.run_coroutine_threadsafe(
            self.app.bot.send_message(int(address), reply.text, reply_markup=keyboard(reply)), self._loop
        )
        pending.result(timeout=30)

    async def _error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        log.error("telegram_handler_failed", extra={"fields": {"error": repr(context.error)[:300]}})
