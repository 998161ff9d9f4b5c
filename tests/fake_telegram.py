"""A fake Telegram Bot API on 127.0.0.1: the methods Teller uses, queued updates, recorded calls.

It speaks the Bot API's dialect where tests depend on it:

- limits (https://core.telegram.org/bots/api#sendmessage, #inlinekeyboardbutton): message text
  1-4096 characters after entity parsing, counted in UTF-16 code units and after trimming
  whitespace (400 ``Bad Request: message is too long`` / ``message text is empty``); captions
  0-1024 (``message caption is too long``); ``callback_data`` 1-64 bytes of UTF-8
  (``Bad Request: BUTTON_DATA_INVALID``);
- failures as the Bot API server sends them (https://core.telegram.org/bots/api#making-requests,
  #responseparameters): ``{"ok": false, "error_code": N, "description": ...}`` with HTTP status N;
  a 429 carries ``parameters.retry_after`` (whole seconds) and a ``Retry-After`` header, which
  python-telegram-bot turns into ``telegram.error.RetryAfter``; a 5xx is Telegram's nginx answering
  (``502 Bad Gateway``, JSON or an HTML page), which it turns into ``NetworkError``;
- injected failures: a random share ``fail_rate`` of calls to :data:`SENDING_METHODS` (half 429,
  half 5xx; ``seed`` for a repeatable run) and forced ones (:meth:`FakeTelegram.fail_next`,
  :meth:`FakeTelegram.fail_chat`). A rejected call is in :attr:`FakeTelegram.attempts` and never in
  :attr:`FakeTelegram.calls`, so :meth:`FakeTelegram.sent` counts what was delivered, exactly.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

BOT_USER = {
    "id": 999,
    "is_bot": True,
    "first_name": "Teller",
    "username": "teller_test_bot",
    "can_join_groups": True,
    "can_read_all_group_messages": False,
    "supports_inline_queries": False,
}
BOT_MENTION = f"@{BOT_USER['username']}"
#: Form fields python-telegram-bot JSON-encodes (everything that is not a string); others stay text.
JSON_FIELDS = {
    "reply_markup",
    "allowed_updates",
    "offset",
    "limit",
    "timeout",
    "chat_id",
    "message_id",
    "show_alert",
    "drop_pending_updates",
    "message_thread_id",
    "direct_messages_topic_id",
    "reply_parameters",
    "reply_to_message_id",
    "allow_sending_without_reply",
    "entities",
    "caption_entities",
    "link_preview_options",
    "disable_web_page_preview",
    "disable_notification",
    "protect_content",
    "allow_paid_broadcast",
    "show_caption_above_media",
    "has_spoiler",
    "disable_content_type_detection",
    "cache_time",
    "max_connections",
}

#: Limits from the Bot API reference (sendMessage ``text``, send* ``caption``, InlineKeyboardButton).
MAX_TEXT = 4096
MAX_CAPTION = 1024
MAX_CALLBACK_DATA_BYTES = 64

#: Methods that send or change what a user sees: the ones failure injection picks by default.
SENDING_METHODS = frozenset(
    {
        "sendMessage",
        "editMessageText",
        "editMessageReplyMarkup",
        "answerCallbackQuery",
        "sendDocument",
        "sendPhoto",
    }
)

TOO_LONG = "Bad Request: message is too long"
EMPTY = "Bad Request: message text is empty"
CAPTION_TOO_LONG = "Bad Request: message caption is too long"
BUTTON_DATA_INVALID = "Bad Request: BUTTON_DATA_INVALID"
REPLY_NOT_FOUND = "Bad Request: message to be replied not found"
#: ``description`` of a forced failure with this status, unless the test gives one.
DESCRIPTIONS = {
    400: "Bad Request: chat not found",
    403: "Forbidden: bot was blocked by the user",
    409: "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}
#: What Telegram's nginx front answers when the Bot API server behind it is away.
NGINX_PAGE = (
    "<html>\r\n<head><title>{status} {phrase}</title></head>\r\n<body>\r\n"
    "<center><h1>{status} {phrase}</h1></center>\r\n<hr><center>nginx/1.18.0</center>\r\n"
    "</body>\r\n</html>\r\n"
)


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units: how Telegram counts text and entity offsets."""
    return len(text.encode("utf-16-le")) // 2


_HTML_TAG = re.compile(r"<[^>]*>")
_MD_LINK = re.compile(r"\[([^\]]*)\]\([^)]*\)")
_MD_MARK = re.compile(r"\\(.)|```[^\n]*\n?|\|\||[*_~`]")


def visible_text(text: str, parse_mode: str | None) -> str:
    """``text`` as Telegram counts it: after entity parsing (markup gone, escapes resolved).

    HTML is exact enough (tags dropped, character references resolved); Markdown/MarkdownV2 is an
    approximation (links reduced to their text, markup characters dropped, ``\\x`` escapes kept)."""
    mode = (parse_mode or "").lower()
    if mode == "html":
        return html.unescape(_HTML_TAG.sub("", text))
    if mode in ("markdown", "markdownv2"):
        text = _MD_LINK.sub(r"\1", text)
        return _MD_MARK.sub(lambda m: m.group(1) or "", text)
    return text


@dataclass
class Attempt:
    """One call as the fake received it, accepted or not."""

    method: str
    params: dict[str, Any]
    #: HTTP status of the answer (200 when accepted).
    status: int
    ok: bool
    #: The ``description`` of a refusal (``None`` when accepted).
    description: str | None = None
    #: A failure the fake made up (``fail_rate``, ``fail_next``, ``fail_chat``), not a limit.
    injected: bool = False
    at: float = field(default_factory=time.time)

    @property
    def chat_id(self) -> Any:
        return self.params.get("chat_id")


@dataclass
class _Rule:
    method: str | None
    chat_id: Any
    status: int
    remaining: int | None  # None: until cleared
    retry_after: int | None
    description: str | None

    def matches(self, method: str, params: dict[str, Any]) -> bool:
        if self.method is not None and self.method != method:
            return False
        return self.chat_id is None or str(params.get("chat_id")) == str(self.chat_id)


class FakeTelegram:
    """The fake Bot API. ``fail_rate``: share (0..1) of calls to ``fail_methods`` that fail, half
    429 (``retry_after`` seconds) and half ``server_error_status``; ``seed`` makes the draw
    repeatable; ``server_error_body``: ``"json"``, ``"html"`` (nginx's page) or ``"mixed"``.
    All of these are plain attributes a test may change while the fake runs."""

    def __init__(
        self,
        fail_rate: float = 0.0,
        seed: int | None = None,
        *,
        retry_after: int = 1,
        fail_methods: Iterable[str] = SENDING_METHODS,
        server_error_status: int = 502,
        server_error_body: str = "json",
    ) -> None:
        self.updates: list[dict[str, Any]] = []
        #: Accepted calls only, in order: ``(method, params)``.
        self.calls: list[tuple[str, dict[str, Any]]] = []
        #: Every call, accepted or refused (limits, injected failures), in order.
        self.attempts: list[Attempt] = []
        #: Chats seen in pushed updates, by id: the sent-message echo reuses them (type, title...).
        self.chats: dict[Any, dict[str, Any]] = {}
        self.fail_rate = fail_rate
        self.retry_after = retry_after
        self.fail_methods = set(fail_methods)
        self.server_error_status = server_error_status
        self.server_error_body = server_error_body
        self._random = random.Random(seed)
        self._rules: list[_Rule] = []
        #: Groups upgraded to supergroups: old chat id -> new (:meth:`migrate`).
        self._migrated: dict[str, int] = {}
        self._messages: dict[tuple[str, int], dict[str, Any]] = {}
        #: Users' messages of pushed updates, by chat and id: what a send may reply to, besides
        #: the messages this fake sent.
        self._received: dict[tuple[str, int], dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._next_message = 1000
        self.app = self._build()

    # ---------------------------------------------------------------------------- test side

    def push(self, *updates: dict[str, Any]) -> None:
        """Queue updates for getUpdates (and remember their chats)."""
        self.note_chats(*updates)
        with self._lock:
            self.updates.extend(updates)

    def note_chats(self, *updates: dict[str, Any]) -> None:
        """Remember the chats of ``updates`` without queueing them (for updates a test posts to a
        webhook itself), so messages sent there echo the right chat type."""
        with self._lock:
            for update in updates:
                for key in ("message", "edited_message", "channel_post", "edited_channel_post"):
                    if isinstance(update.get(key), dict) and "chat" in update[key]:
                        self._note_chat(update[key]["chat"])
                        if "message_id" in update[key]:
                            said = update[key]
                            self._received[(str(said["chat"]["id"]), said["message_id"])] = said
                query = update.get("callback_query")
                if isinstance(query, dict) and isinstance(query.get("message"), dict):
                    self._note_chat(query["message"]["chat"])

    def _note_chat(self, chat: dict[str, Any]) -> None:
        known = self.chats.get(chat["id"], {})
        self.chats[chat["id"]] = {**known, **chat}

    def sent(self, method: str = "sendMessage") -> list[dict[str, Any]]:
        """Params of the accepted calls to ``method``: what was delivered."""
        with self._lock:
            return [params for name, params in self.calls if name == method]

    def attempted(self, method: str | None = "sendMessage") -> list[Attempt]:
        """Every call to ``method`` (all methods for ``None``), accepted or refused."""
        with self._lock:
            return [a for a in self.attempts if method is None or a.method == method]

    def rejected(self, method: str | None = None) -> list[Attempt]:
        """The refused calls (limit errors and injected failures) to ``method`` (or any)."""
        return [a for a in self.attempted(method) if not a.ok]

    def duplicates(self, method: str = "sendMessage") -> list[tuple[Any, str]]:
        """``(chat_id, text)`` delivered more than once by ``method``."""
        seen = Counter(
            (str(p.get("chat_id")), p.get("text", p.get("caption", ""))) for p in self.sent(method)
        )
        return [key for key, count in seen.items() if count > 1]

    def wait_for(self, method: str, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.sent(method)
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"expected {count} {method} calls, got {self.sent(method)}")

    def wait_for_attempts(self, method: str, count: int, timeout: float = 30.0) -> list[Attempt]:
        """Wait until ``method`` was called ``count`` times, accepted or not."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(found := self.attempted(method)) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"expected {count} {method} attempts, got {self.attempted(method)}")

    def fail_next(
        self,
        method: str | None = "sendMessage",
        status: int = 429,
        n: int = 1,
        *,
        chat_id: Any = None,
        retry_after: int | None = None,
        description: str | None = None,
    ) -> None:
        """The next ``n`` calls to ``method`` (any method for ``None``; only those to ``chat_id`` if
        given) fail with ``status``: 429 with ``retry_after`` (default: the fake's), 5xx as nginx
        answers, any other with ``description`` (default from :data:`DESCRIPTIONS`)."""
        with self._lock:
            self._rules.append(_Rule(method, chat_id, status, n, retry_after, description))

    def fail_chat(
        self, chat_id: Any, status: int = 403, method: str | None = None, description: str | None = None
    ) -> None:
        """Every call to ``chat_id`` (of ``method``, or any) fails with ``status`` until
        :meth:`clear_failures`: a delivery that can never succeed (default: the user blocked the bot)."""
        with self._lock:
            self._rules.append(_Rule(method, chat_id, status, None, None, description))

    def migrate(self, old: int, new: int) -> None:
        """The group ``old`` became the supergroup ``new``: a send to ``old`` is refused as Telegram
        refuses it (400 "group chat was upgraded to a supergroup chat", ``parameters.migrate_to_chat_id``),
        until :meth:`clear_failures`."""
        with self._lock:
            self._migrated[str(old)] = new

    def clear_failures(self) -> None:
        """Drop forced failures and stop random ones (``fail_rate`` back to 0)."""
        with self._lock:
            self._rules.clear()
            self._migrated.clear()
            self.fail_rate = 0.0

    # ---------------------------------------------------------------------------- server side

    def _message(
        self, chat_id: Any, text: str | None, markup: Any = None, thread_id: Any = None, **content: Any
    ) -> dict[str, Any]:
        with self._lock:
            self._next_message += 1
            number = self._next_message
            chat = dict(self.chats.get(chat_id) or {"id": chat_id, "type": "private"})
        message: dict[str, Any] = {
            "message_id": number,
            "date": int(time.time()),
            "chat": chat,
            "from": BOT_USER,
        }
        if text is not None:
            message["text"] = text
        message.update(content)
        if thread_id is not None:
            message["message_thread_id"] = thread_id
            if chat.get("is_forum"):
                message["is_topic_message"] = True
        if markup:
            message["reply_markup"] = markup
        with self._lock:
            self._messages[(str(chat_id), number)] = message
        return message

    def _replied(self, params: dict[str, Any]) -> dict[str, Any] | str | None:
        """The message a send replies to (``reply_parameters``, or the older
        ``reply_to_message_id``); None when it replies to none, or when the message is unknown and
        ``allow_sending_without_reply`` lets it go as a plain message; :data:`REPLY_NOT_FOUND`
        when it is unknown and must be replied to (Telegram's answer)."""
        reply = params.get("reply_parameters")
        if isinstance(reply, dict):
            target, lenient = reply.get("message_id"), bool(reply.get("allow_sending_without_reply"))
        elif params.get("reply_to_message_id") is not None:
            target, lenient = params["reply_to_message_id"], bool(params.get("allow_sending_without_reply"))
        else:
            return None
        key = (str(params.get("chat_id")), target)
        with self._lock:
            found = self._messages.get(key) or self._received.get(key)
        if found is not None:
            return {k: v for k, v in found.items() if k != "reply_to_message"}
        return None if lenient else REPLY_NOT_FOUND

    def _edited(self, params: dict[str, Any], markup_only: bool) -> Any:
        if "inline_message_id" in params:
            return True
        chat_id = params.get("chat_id", 1)
        with self._lock:
            known = self._messages.get((str(chat_id), int(params.get("message_id") or 0)))
            chat = dict(self.chats.get(chat_id) or {"id": chat_id, "type": "private"})
        if known:
            message = dict(known)
        else:  # a message this fake did not send (a test's own update): echo what Telegram would
            message = {"message_id": 0, "date": int(time.time()), "chat": chat, "from": BOT_USER, "text": ""}
        if "message_id" in params:
            message["message_id"] = params["message_id"]
        if not markup_only:
            message["text"] = params.get("text", "")
        message["edit_date"] = int(time.time())
        message.pop("reply_markup", None)
        if params.get("reply_markup"):
            message["reply_markup"] = params["reply_markup"]
        with self._lock:
            self._messages[(str(chat_id), int(message["message_id"]))] = message
        return message

    async def _get_updates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        offset = int(params.get("offset") or 0)
        deadline = time.monotonic() + min(float(params.get("timeout") or 0), 2.0)
        while True:
            with self._lock:
                pending = [u for u in self.updates if u["update_id"] >= offset]
            if pending or time.monotonic() >= deadline:
                return pending
            await asyncio.sleep(0.05)

    def _injected(self, method: str, params: dict[str, Any]) -> tuple[int, int | None, str | None] | None:
        """The failure to answer this call with, if any: ``(status, retry_after, description)``."""
        with self._lock:
            for rule in self._rules:
                if rule.matches(method, params):
                    if rule.remaining is not None:
                        rule.remaining -= 1
                        if rule.remaining <= 0:
                            self._rules.remove(rule)
                    return rule.status, rule.retry_after, rule.description
            if method in self.fail_methods and self.fail_rate > 0 and self._random.random() < self.fail_rate:
                if self._random.random() < 0.5:
                    return 429, None, None
                return self.server_error_status, None, None
        return None

    def _failure(
        self, status: int, retry_after: int | None = None, description: str | None = None
    ) -> tuple[Response, str]:
        """The HTTP answer Telegram gives for ``status``, and its description."""
        if status == 429:
            seconds = int(retry_after if retry_after is not None else self.retry_after)
            text = description or f"Too Many Requests: retry after {seconds}"
            body = {
                "ok": False,
                "error_code": 429,
                "description": text,
                "parameters": {"retry_after": seconds},
            }
            return JSONResponse(body, status_code=429, headers={"Retry-After": str(seconds)}), text
        text = description or DESCRIPTIONS.get(status, f"Error {status}")
        if status >= 500:
            style = self.server_error_body
            if style == "mixed":
                with self._lock:
                    style = self._random.choice(("json", "html"))
            if style == "html":
                page = NGINX_PAGE.format(status=status, phrase=text)
                return Response(page, status_code=status, media_type="text/html"), text
        body = {"ok": False, "error_code": status, "description": text}
        return JSONResponse(body, status_code=status), text

    @staticmethod
    def _limit_error(method: str, params: dict[str, Any]) -> str | None:
        """The Bad Request Telegram answers for content over its limits, if any."""
        if method in ("sendMessage", "editMessageText"):
            text = visible_text(str(params.get("text", "")), params.get("parse_mode")).strip()
            if not text:
                return EMPTY
            if utf16_len(text) > MAX_TEXT:
                return TOO_LONG
        if method in ("sendDocument", "sendPhoto"):
            caption = visible_text(str(params.get("caption", "")), params.get("parse_mode")).strip()
            if utf16_len(caption) > MAX_CAPTION:
                return CAPTION_TOO_LONG
        markup = params.get("reply_markup")
        if isinstance(markup, dict):
            for row in markup.get("inline_keyboard") or []:
                for button in row:
                    data = button.get("callback_data") if isinstance(button, dict) else None
                    if data is not None and not 1 <= len(str(data).encode()) <= MAX_CALLBACK_DATA_BYTES:
                        return BUTTON_DATA_INVALID
        return None

    @staticmethod
    async def _params(request: Request) -> dict[str, Any]:
        """Form fields (urlencoded, or multipart when python-telegram-bot uploads a file; file parts
        become ``{"filename", "size"}``), JSON fields decoded."""
        raw = await request.body()
        content_type = request.headers.get("content-type", "")
        fields: list[tuple[str, Any]] = []
        if content_type.startswith("multipart/"):
            header = f"Content-Type: {content_type}\r\n\r\n".encode()
            parsed = BytesParser(policy=HTTP).parsebytes(header + raw)
            for part in parsed.iter_parts():
                name = part.get_param("name", header="content-disposition")
                payload = part.get_payload(decode=True)
                if not isinstance(name, str) or not isinstance(payload, bytes):
                    continue
                filename = part.get_filename()
                value: Any = payload.decode(errors="replace")
                if filename is not None:
                    value = {"filename": filename, "size": len(payload)}
                fields.append((name, value))
        elif content_type.startswith("application/json"):
            fields = list((json.loads(raw or b"{}")).items())
        else:
            fields = list(parse_qsl(raw.decode()))
        params: dict[str, Any] = {}
        for key, value in fields:
            if key in JSON_FIELDS and isinstance(value, str):
                with contextlib.suppress(ValueError):  # else a string after all (``"@channel"``)
                    value = json.loads(value)
            params[key] = value
        return params

    @staticmethod
    def _file(value: Any, fallback: str) -> dict[str, Any]:
        size = value.get("size", 0) if isinstance(value, dict) else 0
        name = value.get("filename", fallback) if isinstance(value, dict) else fallback
        return {"file_id": f"f-{name}", "file_unique_id": f"u-{name}", "file_name": name, "file_size": size}

    def _build(self) -> FastAPI:
        app = FastAPI()

        @app.post("/bot{token}/{method}")
        async def method(token: str, method: str, request: Request) -> Any:
            # python-telegram-bot posts form-encoded fields; non-string values are JSON-encoded.
            params = await self._params(request)
            refusal: tuple[Response, str] | None = None
            with self._lock:
                moved = self._migrated.get(str(params.get("chat_id")))
            injected = self._injected(method, params) if moved is None else None
            if moved is not None:
                text = "Bad Request: group chat was upgraded to a supergroup chat"
                body = {"ok": False, "error_code": 400, "description": text}
                body["parameters"] = {"migrate_to_chat_id": moved}
                refusal = JSONResponse(body, status_code=400), text
            elif injected is not None:
                refusal = self._failure(*injected)
            elif (limit := self._limit_error(method, params)) is not None:
                refusal = self._failure(400, description=limit)
            if refusal is not None:
                response, description = refusal
                with self._lock:
                    self.attempts.append(
                        Attempt(
                            method,
                            params,
                            response.status_code,
                            False,
                            description,
                            injected is not None or moved is not None,
                        )
                    )
                return response
            if method == "getMe":
                result: Any = BOT_USER
            elif method == "getUpdates":
                result = await self._get_updates(params)
            elif method == "sendMessage":
                replied = self._replied(params)
                if replied is REPLY_NOT_FOUND:
                    response, description = self._failure(400, description=REPLY_NOT_FOUND)
                    with self._lock:
                        self.attempts.append(Attempt(method, params, 400, False, description))
                    return response
                extra = {"reply_to_message": replied} if isinstance(replied, dict) else {}
                result = self._message(
                    params["chat_id"],
                    params["text"],
                    params.get("reply_markup"),
                    params.get("message_thread_id"),
                    **extra,
                )
            elif method in ("editMessageText", "editMessageReplyMarkup"):
                result = self._edited(params, markup_only=method == "editMessageReplyMarkup")
            elif method == "sendPhoto":
                photo = {**self._file(params.get("photo"), "photo.jpg"), "width": 1280, "height": 720}
                photo.pop("file_name")
                extra: dict[str, Any] = {"photo": [photo]}
                if params.get("caption"):
                    extra["caption"] = params["caption"]
                result = self._message(
                    params["chat_id"],
                    None,
                    params.get("reply_markup"),
                    params.get("message_thread_id"),
                    **extra,
                )
            elif method == "sendDocument":
                extra = {"document": self._file(params.get("document"), "document.bin")}
                if params.get("caption"):
                    extra["caption"] = params["caption"]
                result = self._message(
                    params["chat_id"],
                    None,
                    params.get("reply_markup"),
                    params.get("message_thread_id"),
                    **extra,
                )
            elif method in ("answerCallbackQuery", "setWebhook", "deleteWebhook"):
                result = True
            else:
                description = f"Not Found: method {method} not found"
                with self._lock:
                    self.attempts.append(Attempt(method, params, 404, False, description))
                return JSONResponse({"ok": False, "error_code": 404, "description": description}, 404)
            with self._lock:
                self.calls.append((method, params))
                self.attempts.append(Attempt(method, params, 200, True))
            return {"ok": True, "result": result}

        return app


# ------------------------------------------------------------------------------------ updates


def user(user_id: int, name: str = "Ann") -> dict[str, Any]:
    return {"id": user_id, "is_bot": False, "first_name": name}


def message(update_id: int, chat_id: int, message_id: int, **content: Any) -> dict[str, Any]:
    """An update with a message in ``chat_id``. Besides message fields, ``content`` may hold
    ``chat_type`` (default ``private``), ``from_id`` (the sender; default ``chat_id``, as in a
    private chat), ``chat_title`` (groups) and ``is_forum``."""
    chat_type = content.pop("chat_type", "private")
    from_id = content.pop("from_id", chat_id)
    title = content.pop("chat_title", None)
    is_forum = content.pop("is_forum", None)
    chat: dict[str, Any] = {"id": chat_id, "type": chat_type}
    if chat_type == "private":
        chat["first_name"] = "Ann"
    else:
        chat["title"] = title or "Lumen customers"
    if is_forum:
        chat["is_forum"] = True
    body = {
        "message_id": message_id,
        "date": int(time.time()),
        "chat": chat,
        "from": user(from_id),
        **content,
    }
    return {"update_id": update_id, "message": body}


def text(update_id: int, chat_id: int, message_id: int, words: str, **content: Any) -> dict[str, Any]:
    """A text message; a leading ``/command`` (``/help`` or ``/help@bot``) gets its ``bot_command``
    entity. ``content``: as for :func:`message`."""
    extra: dict[str, Any] = {"text": words}
    if words.startswith("/"):
        extra["entities"] = [{"type": "bot_command", "offset": 0, "length": utf16_len(words.split()[0])}]
    return message(update_id, chat_id, message_id, **extra, **content)


def sticker(update_id: int, chat_id: int, message_id: int) -> dict[str, Any]:
    return message(
        update_id,
        chat_id,
        message_id,
        sticker={
            "file_id": "s1",
            "file_unique_id": "u1",
            "type": "regular",
            "width": 512,
            "height": 512,
            "is_animated": False,
            "is_video": False,
        },
    )


def edited(update_id: int, chat_id: int, message_id: int, words: str, **content: Any) -> dict[str, Any]:
    update = text(update_id, chat_id, message_id, words, **content)
    update["edited_message"] = update.pop("message")
    update["edited_message"]["edit_date"] = int(time.time())
    return update


def joined(update_id: int, chat_id: int, message_id: int) -> dict[str, Any]:
    return message(update_id, chat_id, message_id, chat_type="group", new_chat_members=[user(5, "Bo")])


def pressed(update_id: int, chat_id: int, data: str, query_id: str) -> dict[str, Any]:
    return {
        "update_id": update_id,
        "callback_query": {
            "id": query_id,
            "from": user(chat_id),
            "chat_instance": "ci",
            "data": data,
            "message": {
                "message_id": 1001,
                "date": int(time.time()),
                "chat": {"id": chat_id, "type": "private"},
                "from": BOT_USER,
                "text": "an answer",
            },
        },
    }


# ------------------------------------------------------------------ groups and Telegram's dialect

#: Default group and member for the group builders (group ids are negative; supergroups -100...).
GROUP_ID = -1001234567890
MEMBER_ID = 5


def group_text(
    update_id: int,
    chat_id: int = GROUP_ID,
    message_id: int = 1,
    words: str = "hello",
    *,
    chat_type: str = "supergroup",
    from_id: int = MEMBER_ID,
    **content: Any,
) -> dict[str, Any]:
    """A text message in a group (``chat_type="group"``) or supergroup from member ``from_id``."""
    return text(update_id, chat_id, message_id, words, chat_type=chat_type, from_id=from_id, **content)


def mention(
    update_id: int,
    chat_id: int = GROUP_ID,
    message_id: int = 1,
    words: str = "what's the overdraft fee?",
    *,
    before: str = "",
    chat_type: str = "supergroup",
    from_id: int = MEMBER_ID,
) -> dict[str, Any]:
    """``{before}@teller_test_bot {words}`` in a group, with its ``mention`` entity (offset and length
    in UTF-16 code units, so an emoji in ``before`` counts 2)."""
    entity = {"type": "mention", "offset": utf16_len(before), "length": utf16_len(BOT_MENTION)}
    return message(
        update_id,
        chat_id,
        message_id,
        text=f"{before}{BOT_MENTION} {words}",
        entities=[entity],
        chat_type=chat_type,
        from_id=from_id,
    )


def reply_to_bot(
    update_id: int,
    chat_id: int = GROUP_ID,
    message_id: int = 2,
    words: str = "and for savings?",
    *,
    replied_message_id: int = 1001,
    replied_text: str = "an answer",
    chat_type: str = "supergroup",
    from_id: int = MEMBER_ID,
) -> dict[str, Any]:
    """A reply (in a group by default) to the bot's message ``replied_message_id``."""
    replied = {
        "message_id": replied_message_id,
        "date": int(time.time()) - 60,
        "chat": {"id": chat_id, "type": chat_type}
        | ({"first_name": "Ann"} if chat_type == "private" else {"title": "Lumen customers"}),
        "from": BOT_USER,
        "text": replied_text,
    }
    return text(
        update_id,
        chat_id,
        message_id,
        words,
        chat_type=chat_type,
        from_id=from_id,
        reply_to_message=replied,
    )


def group_command(
    update_id: int,
    chat_id: int = GROUP_ID,
    message_id: int = 1,
    command: str = "help",
    args: str = "",
    *,
    chat_type: str = "supergroup",
    from_id: int = MEMBER_ID,
) -> dict[str, Any]:
    """``/command@teller_test_bot [args]`` in a group: the ``bot_command`` entity covers the
    ``@username`` part, as Telegram sends it."""
    words = f"/{command}{BOT_MENTION}" + (f" {args}" if args else "")
    return text(update_id, chat_id, message_id, words, chat_type=chat_type, from_id=from_id)


def topic_message(
    update_id: int,
    chat_id: int = GROUP_ID,
    message_id: int = 20,
    words: str = "hello",
    thread_id: int = 7,
    *,
    from_id: int = MEMBER_ID,
    topic_name: str = "Support",
) -> dict[str, Any]:
    """A message in forum topic ``thread_id`` of a forum supergroup: ``is_topic_message`` and
    ``message_thread_id``; like Telegram, ``reply_to_message`` is the topic's creation message."""
    created = {
        "message_id": thread_id,
        "date": int(time.time()) - 3600,
        "chat": {"id": chat_id, "type": "supergroup", "title": "Lumen customers", "is_forum": True},
        "from": user(1, "Admin"),
        "message_thread_id": thread_id,
        "forum_topic_created": {"name": topic_name, "icon_color": 7322096},
        "is_topic_message": True,
    }
    return text(
        update_id,
        chat_id,
        message_id,
        words,
        chat_type="supergroup",
        is_forum=True,
        from_id=from_id,
        message_thread_id=thread_id,
        is_topic_message=True,
        reply_to_message=created,
    )


def photo(
    update_id: int,
    chat_id: int,
    message_id: int,
    caption: str | None = None,
    caption_entities: list[dict[str, Any]] | None = None,
    **content: Any,
) -> dict[str, Any]:
    """A photo (three sizes, as Telegram sends them) with an optional caption and its entities;
    ``content`` as for :func:`message` (``chat_type``, ``from_id``...)."""
    sizes = [
        {"file_id": f"p{i}", "file_unique_id": f"pu{i}", "width": w, "height": h, "file_size": s}
        for i, (w, h, s) in enumerate(((90, 51, 1200), (320, 180, 14000), (1280, 720, 98000)))
    ]
    extra: dict[str, Any] = {"photo": sizes}
    if caption is not None:
        extra["caption"] = caption
    if caption_entities:
        extra["caption_entities"] = caption_entities
    return message(update_id, chat_id, message_id, **extra, **content)


def group_edited(
    update_id: int,
    chat_id: int = GROUP_ID,
    message_id: int = 1,
    words: str = "hello (edited)",
    *,
    chat_type: str = "supergroup",
    from_id: int = MEMBER_ID,
) -> dict[str, Any]:
    """An edited message in a group."""
    return edited(update_id, chat_id, message_id, words, chat_type=chat_type, from_id=from_id)
