"""A fake Telegram Bot API on 127.0.0.1: the methods Teller uses, queued updates, recorded calls."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request

BOT_USER = {
    "id": 999,
    "is_bot": True,
    "first_name": "Teller",
    "username": "teller_test_bot",
    "can_join_groups": True,
    "can_read_all_group_messages": False,
    "supports_inline_queries": False,
}
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
}


class FakeTelegram:
    def __init__(self) -> None:
        self.updates: list[dict[str, Any]] = []
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._next_message = 1000
        self.app = self._build()

    # ---------------------------------------------------------------------------- test side

    def push(self, *updates: dict[str, Any]) -> None:
        with self._lock:
            self.updates.extend(updates)

    def sent(self, method: str = "sendMessage") -> list[dict[str, Any]]:
        with self._lock:
            return [params for name, params in self.calls if name == method]

    def wait_for(self, method: str, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.sent(method)
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"expected {count} {method} calls, got {self.sent(method)}")

    # ---------------------------------------------------------------------------- server side

    def _message(self, chat_id: Any, text: str, markup: Any = None) -> dict[str, Any]:
        with self._lock:
            self._next_message += 1
            number = self._next_message
        message = {
            "message_id": number,
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private"},
            "from": BOT_USER,
            "text": text,
        }
        if markup:
            message["reply_markup"] = markup
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

    def _build(self) -> FastAPI:
        app = FastAPI()

        @app.post("/bot{token}/{method}")
        async def method(token: str, method: str, request: Request) -> dict[str, Any]:
            # python-telegram-bot posts form-encoded fields; non-string values are JSON-encoded.
            params: dict[str, Any] = {}
            for key, value in parse_qsl((await request.body()).decode()):
                params[key] = json.loads(value) if key in JSON_FIELDS else value
            with self._lock:
                self.calls.append((method, params))
            if method == "getMe":
                result: Any = BOT_USER
            elif method == "getUpdates":
                result = await self._get_updates(params)
            elif method == "sendMessage":
                result = self._message(params["chat_id"], params["text"], params.get("reply_markup"))
            elif method in ("editMessageText", "editMessageReplyMarkup"):
                result = self._message(
                    params.get("chat_id", 1), params.get("text", ""), params.get("reply_markup")
                )
            elif method in ("answerCallbackQuery", "setWebhook", "deleteWebhook"):
                result = True
            else:
                return {
                    "ok": False,
                    "error_code": 404,
                    "description": f"Not Found: method {method} not found",
                }
            return {"ok": True, "result": result}

        return app


# ------------------------------------------------------------------------------------ updates


def user(user_id: int, name: str = "Ann") -> dict[str, Any]:
    return {"id": user_id, "is_bot": False, "first_name": name}


def message(update_id: int, chat_id: int, message_id: int, **content: Any) -> dict[str, Any]:
    body = {
        "message_id": message_id,
        "date": int(time.time()),
        "chat": {"id": chat_id, "type": content.pop("chat_type", "private"), "first_name": "Ann"},
        "from": user(chat_id),
        **content,
    }
    return {"update_id": update_id, "message": body}


def text(update_id: int, chat_id: int, message_id: int, words: str) -> dict[str, Any]:
    extra: dict[str, Any] = {"text": words}
    if words.startswith("/"):
        extra["entities"] = [{"type": "bot_command", "offset": 0, "length": len(words.split()[0])}]
    return message(update_id, chat_id, message_id, **extra)


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


def edited(update_id: int, chat_id: int, message_id: int, words: str) -> dict[str, Any]:
    update = text(update_id, chat_id, message_id, words)
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
