"""The Telegram channel: python-telegram-bot's Application, polling (one replica at a time) or a
webhook on Teller's server, translating updates into calls of :class:`bot.service.TellerService`.

Every message Teller sends goes through :class:`~bot.channels.telegram.transport.TelegramTransport`
and the service's courier, so it is split at Telegram's limits, retried when Telegram is briefly
unable to take it (paced by python-telegram-bot's ``AIORateLimiter``; a 429 is retried by the
courier, for that conversation alone: :data:`RATE_LIMIT_RETRIES`), and, for a
stored reply, recorded as delivered or failed (a failure joins the review queue).

Each conversation's messages are answered one at a time, in the order they arrived (a "/human"
is handled before the message after it), and a few conversations at once; a handler only queues
the work, so one customer's slow delivery holds up neither python-telegram-bot's update slots nor
another customer. A redelivered update is dropped before any handler (``update_id``); a message
the service has seen before gets its stored reply again, sent only if it never arrived.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import hmac
import json
import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from telegram import Chat, Message, Update, User
from telegram.error import TelegramError
from telegram.ext import (
    AIORateLimiter,
    Application,
    ApplicationHandlerStop,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    TypeHandler,
    filters,
)

from bot.channels.telegram import dialect
from bot.channels.telegram.transport import (
    CHANNEL,
    POST_TIMEOUT,
    TelegramTransport,
    choice_token,
    feedback_token,
    is_token,
)
from bot.choices import ENTRY_ID_PATTERN, HANDOFF_CHOICE, entry_choice, press_id
from bot.core import NO_PERSON, Incoming, Outgoing, TellerCore
from bot.errors import Conflict, InputError, NotRateable, NotTheAsker, sentence
from bot.service import FEEDBACK_THANKS, TellerService
from bot.settings import STARTER_BANK, bank_possessive
from bot.storage.database import Lease

log = logging.getLogger(__name__)

WEBHOOK_PATH = "/telegram/webhook"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


def help_text(bank: str, staffed: bool = True) -> str:
    """What ``/start`` and ``/help`` say, naming ``bank`` (the bank's name customers see, "" for none).
    ``staffed=False`` (no person can take over: :func:`bot.assistant.staffed`, decided by the
    composition root): no ``/human`` offered, :data:`bot.core.NO_PERSON` said instead."""
    intro = (
        f"I'm Teller, {bank_possessive(bank)} assistant. Ask me anything about your cards, payments, "
        "transfers, top-ups or account, in your own words."
    )
    if not staffed:
        return f"{intro} {NO_PERSON}\n\n/help shows this message"
    return f"{intro}\n\n/human talks to a person\n/help shows this message"


#: What ``/start`` and ``/help`` say with the starter's bank (the composition root passes the bank's own).
HELP = help_text(STARTER_BANK)
NOT_TEXT = "I can only read text messages for now. Could you type your question?"
#: A deep link's ``start`` parameter, as Telegram allows it (Bot API, "Deep linking").
DEEP_LINK_PAYLOAD = re.compile(r"[A-Za-z0-9_-]{1,64}")
#: Retries of a request Telegram rate-limited (429) by python-telegram-bot's limiter: none. Its
#: limiter (python-telegram-bot 22) holds *every* request, all chats', while it waits out one
#: chat's ``retry_after``: one group at Telegram's 20 messages a minute delayed every customer's
#: reply by its wait (a platform trial: 5.1-5.3 s instead of 0.04 s for three private chats behind a
#: group's 5 s). The limiter still paces requests (30 a second, 20 a minute per group); a 429 goes
#: to the courier, which waits Telegram's ``retry_after`` for that conversation alone (on its own
#: thread), and a refused courtesy (a press's answer, a keyboard's removal) is not retried at all.
RATE_LIMIT_RETRIES = 0
#: ... but the start-up calls no courier sends (``setWebhook``, ``deleteWebhook``) are retried by it,
#: waiting Telegram's ``retry_after``: replicas starting at once are refused "retry after 1", and one
#: 429 must not leave the channel stopped (a reviewer's finding). Nothing else waits on them.
START_RETRIES = 3
#: Updates python-telegram-bot handles at once (a handler only queues the work: short).
CONCURRENT_UPDATES = 4
#: Conversations answered at once, each on a thread of the channel's own pool while the service
#: answers and delivers (a delivery waiting out a rate limit sleeps on its thread). Teller's
#: choice: enough that customers whose chats Telegram keeps refusing do not hold up the others.
CONVERSATIONS_AT_ONCE = 32
#: Seconds a supergroup's messages wait for its group's conversation to move to it (the move waits
#: behind the group's queued messages: a delivery waits out at most its 120 s part deadline).
MIGRATION_WAIT = 180.0


class TelegramChannel:
    """One bot token; polling unless ``webhook_url`` is set. ``transport`` reaches its customers
    (the ops desk relays operators' replies through it)."""

    name = CHANNEL

    def __init__(
        self,
        core: TellerCore,
        token: str,
        api_url: str | None = None,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        poll_timeout: float = 10.0,
        service: TellerService | None = None,
        leadership: Callable[[], Lease | None] | None = None,
        lead_interval: float = 2.0,
        rate_limit_retries: int = RATE_LIMIT_RETRIES,
        concurrent_updates: int = CONCURRENT_UPDATES,
        post_timeout: float = POST_TIMEOUT,
        help: str | Callable[[], str] = HELP,
    ) -> None:
        """Webhook mode: without ``webhook_secret`` a random one is generated, registered with
        ``setWebhook`` and required of every request (each start registers a new one; a cluster
        needs one explicit secret for all replicas, see :func:`bot.assistant.check_telegram_webhook`).

        ``leadership`` (polling mode): tries to take the cluster-wide polling lock, so that
        exactly one replica polls (Telegram allows one ``getUpdates`` consumer per bot); the others
        retry every ``lead_interval`` seconds and take over when the holder dies. Every replica
        can still send (handoff relays)."""
        self.core = core
        #: What /start and /help say, or what says it when asked (the bank's name follows the
        #: knowledge base).
        self.help = help
        self.service = service or TellerService(core)
        self.webhook_url = webhook_url
        #: Whether the webhook secret was generated here (none was configured).
        self.secret_generated = bool(webhook_url) and not webhook_secret
        self.webhook_secret = generate_secret() if self.secret_generated else webhook_secret
        self.poll_timeout = poll_timeout
        self._leadership = leadership
        self.lead_interval = lead_interval
        self._lease: Lease | None = None
        self._leading: asyncio.Task[None] | None = None
        builder = (
            Application.builder()
            .token(token)
            .rate_limiter(AIORateLimiter(max_retries=rate_limit_retries))
            .concurrent_updates(concurrent_updates)
        )
        if api_url:
            builder = builder.base_url(api_url)
        if webhook_url:
            builder = builder.updater(None)
        self.app: Application[Any, Any, Any, Any, Any, Any] = builder.build()
        self.transport = TelegramTransport(self.app.bot, post_timeout)
        self._seen: dict[int, None] = {}
        self._conversations = _Conversations(CONVERSATIONS_AT_ONCE)
        self._workers = _pool()
        app = self.app
        app.add_handler(TypeHandler(Update, self._drop_duplicates), group=-1)
        # Edits, channel posts and business messages are not questions to Teller.
        app.add_handler(MessageHandler(~filters.UpdateType.MESSAGE, self._ignore))
        # Nor a channel's post Telegram copies into its discussion group, a command included: the
        # bank's announcement naming Teller was answered under it, and its "/human ..." opened a
        # handoff for its own channel (a trial, and a review).
        app.add_handler(MessageHandler(filters.IS_AUTOMATIC_FORWARD, self._ignore))
        # A group upgraded to a supergroup: its conversation goes on under the new chat id.
        app.add_handler(MessageHandler(filters.StatusUpdate.MIGRATE, self._migrated))
        app.add_handler(MessageHandler(filters.StatusUpdate.ALL, self._ignore))
        # Command handlers answer "/help" and "/help@<this bot>", never "/help@another_bot".
        app.add_handler(CommandHandler("start", self._start))
        app.add_handler(CommandHandler("help", self._help))
        app.add_handler(CommandHandler("human", self._human))
        app.add_handler(MessageHandler(filters.COMMAND, self._other_command))
        app.add_handler(MessageHandler(filters.ALL, self._message))
        app.add_handler(CallbackQueryHandler(self._button))
        app.add_error_handler(self._error)

    # ------------------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        await self.app.initialize()
        await self.app.start()
        self.transport.attach(asyncio.get_running_loop())
        if self.webhook_url:
            if self.secret_generated:
                log.warning(
                    "telegram_webhook_secret_generated",
                    extra={"fields": {"hint": "set TELEGRAM_WEBHOOK_SECRET to keep one across restarts"}},
                )
            await self.app.bot.set_webhook(
                self.webhook_url,
                secret_token=self.webhook_secret,
                allowed_updates=Update.ALL_TYPES,
                rate_limit_args=START_RETRIES,
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
        await self.app.bot.delete_webhook(rate_limit_args=START_RETRIES)
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
            await self.app.stop()  # finishes the updates being handled
        await self._conversations.join()  # and the replies they queued
        self.transport.detach()
        self._workers.shutdown(wait=False)
        self._workers = _pool()  # threads start lazily: ready, at no cost, if started again
        await self.app.shutdown()
        log.info("telegram_stopped")

    def router(self) -> APIRouter | None:
        if not self.webhook_url:
            return None
        router = APIRouter()

        @router.post(WEBHOOK_PATH, include_in_schema=False)
        async def webhook(request: Request) -> Response:
            if not self._secret_matches(request.headers.get(SECRET_HEADER, "")):
                # Not from Telegram (a forged update would make Teller message any chat id).
                log.warning("telegram_webhook_rejected")
                return Response(status_code=403)
            try:
                data = json.loads(await request.body())
                # Telegram sends well-formed UTF-8: a lone surrogate ("\ud83d") is not from it.
                json.dumps(data, ensure_ascii=False).encode("utf-8")
                update = Update.de_json(data, self.app.bot) if isinstance(data, dict) else None
            except (ValueError, TypeError, KeyError, AttributeError, RecursionError, OverflowError):
                update = None
            if update is None or not isinstance(update.update_id, int):
                # Not an update of Telegram's (malformed, or not from Telegram at all): a clear 400.
                log.warning("telegram_webhook_malformed")
                return JSONResponse({"detail": "the body is not a Telegram Update object"}, status_code=400)
            # Queued, not awaited: Telegram gets its 200 at once and the update is handled in order.
            await self.app.update_queue.put(update)
            return Response(status_code=200)

        return router

    def _secret_matches(self, given: str) -> bool:
        """Whether a webhook request carries the secret registered with Telegram (always required:
        webhook mode always has one)."""
        if not self.webhook_secret:
            return False
        # Bytes, not str: compare_digest refuses non-ASCII strings (Starlette decodes headers as latin-1).
        return hmac.compare_digest(given.encode("latin-1"), self.webhook_secret.encode("utf-8"))

    # ------------------------------------------------------------------------------ handlers

    @property
    def me(self) -> User:
        """The bot's own user (known once the application is initialised)."""
        return self.app.bot.bot

    async def _drop_duplicates(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        if update.update_id in self._seen:
            log.info("telegram_duplicate_update", extra={"fields": {"update_id": update.update_id}})
            raise ApplicationHandlerStop
        self._seen[update.update_id] = None
        while len(self._seen) > 10_000:
            del self._seen[next(iter(self._seen))]

    async def _message(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Text or a caption: answered when addressed to Teller (always, in a private chat)."""
        message = update.message
        if message is None or not dialect.addressed(message, self.me):
            log.debug("telegram_not_addressed", extra={"fields": {"update_id": update.update_id}})
            return
        words = dialect.words(message, self.me)
        where = dialect.address_of(message)
        if words is None:  # a sticker, a photo without a caption...
            # (during a handoff its operators are told; the service says what the customer reads)
            kind = dialect.attachment_kind(message)
            sender = dialect.sender(message)
            said = await asyncio.to_thread(self.service.attachment, CHANNEL, where, str(sender.id), kind)
            if said != "":  # "": over the abuse limits, nothing is said
                await self._say(where, said or NOT_TEXT)
        elif not words:  # only "@teller_bot"
            await self._say(where, self._help_words())
        else:
            await self._answer(message, words, f"{message.chat.id}:{message.message_id}")
            carried = dialect.attached(message)
            if carried is not None:
                # The words went on as a message; the photo or file did not (the service says what
                # the customer reads, in the conversation's turn: after the words).
                who = str(dialect.sender(message).id)
                self._conversations.submit(where, lambda: self._attached(where, who, carried))

    async def _attached(self, where: str, sender: str, kind: str) -> None:
        said = await asyncio.to_thread(self.service.attachment, CHANNEL, where, sender, kind, True)
        if said:
            await self._notify(where, said)

    def _help_words(self) -> str:
        return self.help() if callable(self.help) else self.help

    async def _help(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        if update.message is not None:
            await self._say(dialect.address_of(update.message), self._help_words())

    async def _start(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """``/start``: the help; ``/start <payload>`` from a deep link the bank published
        (``t.me/<bot>?start=<entry id>``, Telegram's payload: 1-64 of ``A-Z a-z 0-9 _ -``) is the
        knowledge-base entry of that id (:attr:`Incoming.linked`: stored as the customer asking its
        question; an id the knowledge base no longer has is told the option is gone). Any other
        payload (an app's account-linking token, say) is neither stored nor read: the help."""
        message = update.message
        if message is None:
            return
        payload = context.args[0] if context.args and len(context.args) == 1 else ""
        if not DEEP_LINK_PAYLOAD.fullmatch(payload) or not ENTRY_ID_PATTERN.match(payload):
            await self._say(dialect.address_of(message), self._help_words())
            return
        message_id = f"{message.chat.id}:{message.message_id}"
        await self._answer(message, entry_choice("", payload).value, message_id, linked=payload)

    async def _human(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """``/human``: a person is asked for; words after the command ("/human my card was stolen")
        follow as the customer's next message, so the operator reads them (they were dropped)."""
        message = update.message
        if message is None:
            return
        message_id = f"{message.chat.id}:{message.message_id}"
        await self._answer(message, HANDOFF_CHOICE, message_id)
        words = " ".join(context.args or []).strip()
        if words:
            await self._answer(message, words, f"{message_id}:words")

    async def _other_command(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """A command Teller does not have: the help in a private chat, or when it is addressed to
        Teller by name in a group ("/foo" alone in a group is for some other bot)."""
        message = update.message
        if message is None:
            return
        command = dialect.command_target(message)
        target = command[1] if command else None
        mine = target is not None and target.lower() == (self.me.username or "").lower()
        if not dialect.is_group(message.chat) or mine:
            await self._say(dialect.address_of(message), self._help_words())

    async def _migrated(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        """Telegram's service messages of a group's upgrade: ``migrate_to_chat_id`` in the old group,
        ``migrate_from_chat_id`` in the new supergroup (either may come first, or alone); the
        conversation moves once (a reviewer's trial: the supergroup's next message started a new
        conversation, and a handoff open in the group no longer reached its customers)."""
        message = update.effective_message
        if message is None:
            return
        if message.migrate_to_chat_id:
            old, new = message.chat_id, message.migrate_to_chat_id
        elif message.migrate_from_chat_id:
            old, new = message.migrate_from_chat_id, message.chat_id
        else:
            return

        moved = asyncio.Event()

        async def move() -> None:
            try:
                await asyncio.to_thread(self.service.conversation_moved, CHANNEL, str(old), str(new))
            finally:
                moved.set()

        async def after_move() -> None:
            try:  # (bounded: a move stuck behind a dead queue must not hold the supergroup for good)
                await asyncio.wait_for(moved.wait(), MIGRATION_WAIT)
            except TimeoutError:
                log.warning("telegram_migration_wait_timed_out", extra={"fields": {"chat": new}})

        # In its turn after the group's messages still queued (one waiting out a rate limit, say),
        # which would otherwise land after the move under the old id, as a new conversation outside
        # the handoff; and the supergroup's messages wait for it, or the first of them would start
        # a conversation of its own and the move would find the new id taken (both found in review).
        self._conversations.submit(str(old), move)
        self._conversations.submit(str(new), after_move)

    async def _ignore(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        log.debug("telegram_ignored", extra={"fields": {"update_id": update.update_id}})

    async def _button(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        if query is None:
            return
        data = query.data or ""
        user_id = str(query.from_user.id)
        if (feedback := feedback_token(data)) is not None:
            message_id, helpful = feedback
            chat = query.message.chat if query.message is not None else None
            shared = chat is not None and dialect.is_group(chat)
            post = f"{chat.id}:{query.message.message_id}" if chat is not None and query.message else None
            try:
                await asyncio.to_thread(
                    self.service.feedback,
                    message_id,
                    helpful,
                    None,
                    user_id,
                    CHANNEL,
                    shared=shared,
                    speaking_as=str(chat.id) if shared and chat is not None else None,
                    post=post,
                )
            except NotTheAsker as exc:
                await _quietly(query.answer(sentence(exc)))
                return
            except NotRateable:
                await _quietly(query.answer("This reply can't be rated."))
                return
            except Conflict:
                await _quietly(query.answer("You have rated this answer already."))
                return
            except InputError:
                await _quietly(query.answer("That answer is no longer on record."))
                return
            await _quietly(query.answer(FEEDBACK_THANKS[helpful]))
            await _quietly(query.edit_message_reply_markup(reply_markup=None))
            return
        if (token := choice_token(data)) is not None:  # a value too long for the button's data
            try:
                data = await asyncio.to_thread(self.service.choice_value, *token)
            except InputError:
                await _quietly(query.answer("That choice is no longer offered."))
                return
        elif is_token(data) or not data:
            await _quietly(query.answer("That button no longer works."))
            return
        await _quietly(query.answer())
        message = query.message
        if message is None:
            return
        chat = message.chat
        if isinstance(message, Message) and message.is_accessible:
            # (an inaccessible one is not edited either: PTB raises TypeError for it)
            await _quietly(query.edit_message_reply_markup(reply_markup=None))
            where = dialect.address_of(message)
        else:
            # An inaccessible message (older than 48 hours, or deleted; PTB gives it as a Message or
            # an InaccessibleMessage dated 0) names its chat but not its forum topic: the
            # conversation is the one Teller's post was in, from the store, so a customer's press
            # is not answered in the forum's General topic for all to read.
            post = f"{chat.id}:{message.message_id}"
            known = await asyncio.to_thread(self.service.address_of_post, CHANNEL, post)
            where = known or dialect.address(chat.id)
        # One press per person, button and message within ten minutes: a double tap (two queries
        # before the keyboard is gone) is the same message twice, answered once (a reviewer's
        # finding). A post whose keyboard cannot be removed (too old) keeps each press its own: a
        # press days later is a new one.
        if isinstance(message, Message) and message.is_accessible:
            press = press_id(str(chat.id), str(message.message_id), user_id, data)
        else:
            press = f"callback:{query.id}"
        incoming = Incoming(CHANNEL, where, user_id, press, data, pressed=True)
        await self._converse(incoming, chat)

    # ------------------------------------------------------------------------------ replies

    async def _answer(self, message: Message, text: str, message_id: str, linked: str | None = None) -> None:
        sender = dialect.sender(message)
        where = dialect.address_of(message)
        incoming = Incoming(CHANNEL, where, str(sender.id), message_id, text, linked=linked)
        await self._converse(incoming, message.chat, dialect.reply_address(message))

    async def _converse(self, incoming: Incoming, chat: Chat, to: str | None = None) -> None:
        """Queue the message: the service answers and delivers it (in a worker thread: it blocks),
        in its turn in the conversation, to ``to`` (default: the conversation itself)."""
        where = incoming.conversation_id
        to = to or where

        async def job() -> None:
            private = chat.type == Chat.PRIVATE
            try:
                await asyncio.get_running_loop().run_in_executor(
                    self._workers, self.service.message, incoming, self.transport, to, private
                )
            except InputError as exc:
                await self._notify(where, sentence(exc))

        self._conversations.submit(where, job)

    async def _say(self, where: str, text: str) -> None:
        """One of the channel's own messages (help, "text only"), in its turn in the conversation."""
        self._conversations.submit(where, lambda: self._notify(where, text))

    async def _notify(self, where: str, text: str) -> None:
        """Delivered with retries like any other message, but not stored."""
        await asyncio.get_running_loop().run_in_executor(
            self._workers, self.service.courier.send, self.transport, where, Outgoing("", text)
        )

    async def _error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        log.error("telegram_handler_failed", extra={"fields": {"error": repr(context.error)[:300]}})


def generate_secret() -> str:
    """A webhook secret: 256 random bits, URL-safe base64 (43 characters of ``A-Z a-z 0-9 _ -``,
    exactly the alphabet Telegram allows)."""
    return secrets.token_urlsafe(32)


async def _quietly(call: Awaitable[object]) -> None:
    """Answering a button press or removing its keyboard is a courtesy: when Telegram refuses it
    (the query expired, the message is too old to edit), it is logged, not retried."""
    try:
        await call
    except TelegramError as exc:
        log.info("telegram_courtesy_failed", extra={"fields": {"error": str(exc)[:300]}})


def _pool() -> concurrent.futures.ThreadPoolExecutor:
    return concurrent.futures.ThreadPoolExecutor(CONVERSATIONS_AT_ONCE, thread_name_prefix="teller-telegram")


class _Conversations:
    """Each conversation's work in arrival order, one job at a time, with at most ``limit`` jobs
    of all conversations running at once. A handler only queues its job and returns, so a slow
    conversation (a delivery waiting out Telegram's rate limit) holds neither python-telegram-bot's
    update slots nor any other conversation."""

    def __init__(self, limit: int) -> None:
        self._slots = asyncio.Semaphore(limit)
        self._queues: dict[str, collections.deque[Callable[[], Awaitable[None]]]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def submit(self, key: str, job: Callable[[], Awaitable[None]]) -> None:
        queue = self._queues.get(key)
        if queue is not None:  # a worker is draining this conversation: it takes the job in turn
            queue.append(job)
            return
        self._queues[key] = collections.deque([job])
        task = asyncio.create_task(self._drain(key), name=f"telegram-conversation-{key}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _drain(self, key: str) -> None:
        queue = self._queues[key]
        try:
            while queue:
                job = queue.popleft()
                async with self._slots:
                    try:
                        await job()
                    except Exception as exc:  # one failed job must not drop the conversation's next
                        log.error("telegram_job_failed", extra={"fields": {"error": repr(exc)[:300]}})
        finally:
            del self._queues[key]

    async def join(self) -> None:
        """Wait until every queued job has run (the channel is stopping)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
