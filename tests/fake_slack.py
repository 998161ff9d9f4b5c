"""A fake Slack Web API on 127.0.0.1 (auth.test, chat.postMessage, chat.update, views.open,
conversations.open and the two-step file upload), recording calls, and helpers that sign requests the
way Slack does.

It speaks the Web API's dialect where tests depend on it:

- message limits (chat.postMessage, chat.update, chat.postEphemeral), refused with HTTP 200 and
  ``{"ok": false, "error": ...}`` as Slack does: ``no_text`` without text, blocks or attachments;
  ``msg_too_long`` for ``text`` over 40,000 characters; ``invalid_blocks`` (with Slack's
  ``response_metadata.messages``) for more than 50 blocks, a section text over 3,000 characters
  (fields: 10, 2,000 each), a header over 150, an actions block over 25 elements, a context block
  over 10, a button text over 75 / value over 2,000 / action_id over 255 / url over 3,000, a
  block_id over 255, an empty text object, a block without a type; ``invalid_blocks_format`` when
  ``blocks`` is not a JSON array;
- failures as Slack sends them: HTTP 429 with ``Retry-After`` (seconds) and
  ``{"ok": false, "error": "ratelimited"}`` (what slack_sdk's ``RateLimitErrorRetryHandler``
  retries on), and 500/503 with a JSON body (``internal_error`` / ``service_unavailable``);
- injected failures: a random share ``fail_rate`` of calls to :data:`SENDING_METHODS` (half 429,
  half 5xx; ``seed`` for a repeatable run), and forced ones (:meth:`FakeSlack.fail_next`,
  :meth:`FakeSlack.fail_channel`). A refused call is in :attr:`FakeSlack.attempts` and never in
  :attr:`FakeSlack.calls`, so :meth:`FakeSlack.sent` counts what was delivered, exactly.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from slack_sdk.signature import SignatureVerifier

BOT_USER = "UTELLER"
BOT_ID = "BTELLER"

#: Methods that post or change messages: the ones failure injection picks by default
#: (``response_url`` posts may be added to ``fail_methods`` too).
SENDING_METHODS = frozenset({"chat.postMessage", "chat.update", "chat.postEphemeral"})
#: Methods whose message content is checked against Slack's limits.
MESSAGE_METHODS = SENDING_METHODS

#: Limits from Slack's reference: chat.postMessage (text, blocks), Block Kit blocks and elements.
MAX_TEXT = 40_000
MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3000
MAX_SECTION_FIELDS = 10
MAX_FIELD_TEXT = 2000
MAX_HEADER_TEXT = 150
MAX_MARKDOWN_TEXT = 12_000
MAX_ACTIONS_ELEMENTS = 25
MAX_CONTEXT_ELEMENTS = 10
MAX_BUTTON_TEXT = 75
MAX_BUTTON_VALUE = 2000
MAX_ACTION_ID = 255
MAX_BLOCK_ID = 255
MAX_URL = 3000

#: The JSON error of a forced 5xx, unless the test gives one.
SERVER_ERRORS = {
    500: "internal_error",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "request_timeout",
}


@dataclass
class Attempt:
    """One call as the fake received it, accepted or not."""

    method: str
    params: dict[str, Any]
    #: HTTP status of the answer (200 for Slack's own ``ok: false`` errors too).
    status: int
    ok: bool
    #: Slack's ``error`` (``None`` when accepted).
    error: str | None = None
    #: A failure the fake made up (``fail_rate``, ``fail_next``, ``fail_channel``), not a limit.
    injected: bool = False
    at: float = field(default_factory=time.time)

    @property
    def channel(self) -> Any:
        return self.params.get("channel")


@dataclass
class _Rule:
    method: str | None
    channel: str | None
    status: int
    remaining: int | None  # None: until cleared
    retry_after: int | None
    error: str | None

    def matches(self, method: str, params: dict[str, Any]) -> bool:
        if self.method is not None and self.method != method:
            return False
        return self.channel is None or params.get("channel") == self.channel


def _text_of(obj: Any) -> str | None:
    return obj.get("text") if isinstance(obj, dict) else None


def block_errors(blocks: Any) -> list[str]:
    """What Slack says about ``blocks`` (its ``response_metadata.messages``); empty when valid."""
    errors: list[str] = []

    def too_long(value: Any, limit: int, pointer: str) -> None:
        if isinstance(value, str) and len(value) > limit:
            errors.append(f"[ERROR] must be less than {limit + 1} characters [json-pointer:{pointer}]")

    def text_object(obj: Any, limit: int, pointer: str) -> None:
        if obj is None:
            return
        text = _text_of(obj)
        if not isinstance(text, str) or not text:
            errors.append(f"[ERROR] must be more than 0 characters [json-pointer:{pointer}/text]")
            return
        too_long(text, limit, f"{pointer}/text")

    def element(obj: Any, pointer: str) -> None:
        if not isinstance(obj, dict) or "type" not in obj:
            errors.append(f"[ERROR] missing required field: type [json-pointer:{pointer}]")
            return
        too_long(obj.get("action_id"), MAX_ACTION_ID, f"{pointer}/action_id")
        if obj["type"] == "button":
            text_object(obj.get("text"), MAX_BUTTON_TEXT, f"{pointer}/text")
            too_long(obj.get("value"), MAX_BUTTON_VALUE, f"{pointer}/value")
            too_long(obj.get("url"), MAX_URL, f"{pointer}/url")

    def items(values: Any, limit: int, pointer: str) -> list[Any]:
        if not isinstance(values, list):
            return []
        if len(values) > limit:
            errors.append(f"[ERROR] no more than {limit} items allowed [json-pointer:{pointer}]")
        return values

    for i, block in enumerate(items(blocks, MAX_BLOCKS, "/blocks")):
        at = f"/blocks/{i}"
        if not isinstance(block, dict) or "type" not in block:
            errors.append(f"[ERROR] missing required field: type [json-pointer:{at}]")
            continue
        too_long(block.get("block_id"), MAX_BLOCK_ID, f"{at}/block_id")
        kind = block["type"]
        if kind == "section":
            if block.get("text") is None and not block.get("fields"):
                errors.append(f"[ERROR] must provide either text or fields [json-pointer:{at}]")
            text_object(block.get("text"), MAX_SECTION_TEXT, f"{at}/text")
            for j, item in enumerate(items(block.get("fields"), MAX_SECTION_FIELDS, f"{at}/fields")):
                text_object(item, MAX_FIELD_TEXT, f"{at}/fields/{j}")
            if block.get("accessory") is not None:
                element(block["accessory"], f"{at}/accessory")
        elif kind == "header":
            text_object(block.get("text"), MAX_HEADER_TEXT, f"{at}/text")
        elif kind == "markdown":
            too_long(block.get("text"), MAX_MARKDOWN_TEXT, f"{at}/text")
        elif kind == "actions":
            for j, item in enumerate(items(block.get("elements"), MAX_ACTIONS_ELEMENTS, f"{at}/elements")):
                element(item, f"{at}/elements/{j}")
        elif kind == "context":
            items(block.get("elements"), MAX_CONTEXT_ELEMENTS, f"{at}/elements")
    return errors


def message_error(params: dict[str, Any]) -> tuple[str, list[str]] | None:
    """Slack's ``error`` (and its ``response_metadata.messages``) for a message over its limits."""
    blocks = params.get("blocks")
    if isinstance(blocks, str):
        try:
            blocks = json.loads(blocks)
        except ValueError:
            return "invalid_blocks_format", []
    if blocks is not None and not isinstance(blocks, list):
        return "invalid_blocks_format", []
    text = params.get("text")
    if not text and not blocks and not params.get("attachments"):
        return "no_text", []
    if isinstance(text, str) and len(text) > MAX_TEXT:
        return "msg_too_long", []
    if blocks and (errors := block_errors(blocks)):
        return "invalid_blocks", errors
    return None


class FakeSlack:
    """The fake Web API. ``fail_rate``: share (0..1) of calls to ``fail_methods`` that fail, half
    HTTP 429 (``Retry-After: retry_after``) and half 500 or 503; ``seed`` makes the draw repeatable.
    These are plain attributes a test may change while the fake runs."""

    def __init__(
        self,
        fail_rate: float = 0.0,
        seed: int | None = None,
        *,
        retry_after: int = 1,
        fail_methods: Iterable[str] = SENDING_METHODS,
        server_error_statuses: tuple[int, ...] = (500, 503),
    ) -> None:
        #: Accepted calls only, in order: ``(method, params)``.
        self.calls: list[tuple[str, dict[str, Any]]] = []
        #: Every call, accepted or refused (limits, injected failures), in order.
        self.attempts: list[Attempt] = []
        self.fail_rate = fail_rate
        self.retry_after = retry_after
        self.fail_methods = set(fail_methods)
        self.server_error_statuses = server_error_statuses
        self._random = random.Random(seed)
        self._rules: list[_Rule] = []
        self._lock = threading.Lock()
        self._ts = 1_700_000_000.0
        #: Where ``apps.connections.open`` sends Socket Mode clients.
        self.socket_url = "ws://127.0.0.1:9/unset"
        #: Uploaded files by name: their bytes, as the upload URL received them.
        self.files: dict[str, bytes] = {}
        self._pending: dict[str, str] = {}
        self.app = self._build()

    # ---------------------------------------------------------------------------- test side

    def sent(self, method: str = "chat.postMessage") -> list[dict[str, Any]]:
        """Params of the accepted calls to ``method``: what was delivered."""
        with self._lock:
            return [params for name, params in self.calls if name == method]

    def attempted(self, method: str | None = "chat.postMessage") -> list[Attempt]:
        """Every call to ``method`` (all methods for ``None``), accepted or refused."""
        with self._lock:
            return [a for a in self.attempts if method is None or a.method == method]

    def rejected(self, method: str | None = None) -> list[Attempt]:
        """The refused calls (limit errors and injected failures) to ``method`` (or any)."""
        return [a for a in self.attempted(method) if not a.ok]

    def duplicates(self, method: str = "chat.postMessage") -> list[tuple[Any, Any, str]]:
        """``(channel, thread_ts, text)`` delivered more than once by ``method``."""
        seen = Counter((p.get("channel"), p.get("thread_ts"), str(p.get("text"))) for p in self.sent(method))
        return [key for key, count in seen.items() if count > 1]

    def wait_for(self, method: str, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(found := self.sent(method)) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"expected {count} {method} calls, got {self.sent(method)}")

    def wait_for_attempts(self, method: str, count: int, timeout: float = 20.0) -> list[Attempt]:
        """Wait until ``method`` was called ``count`` times, accepted or not."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(found := self.attempted(method)) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"expected {count} {method} attempts, got {self.attempted(method)}")

    def fail_next(
        self,
        method: str | None = "chat.postMessage",
        status: int = 429,
        n: int = 1,
        *,
        channel: str | None = None,
        retry_after: int | None = None,
        error: str | None = None,
    ) -> None:
        """The next ``n`` calls to ``method`` (any method for ``None``; only those to ``channel`` if
        given) fail: 429 ``ratelimited`` with ``Retry-After`` (``retry_after``, default the fake's),
        a 5xx with a JSON ``error``, or ``status=200`` with ``error`` (Slack's ``ok: false``, e.g.
        ``channel_not_found``)."""
        with self._lock:
            self._rules.append(_Rule(method, channel, status, n, retry_after, error))

    def fail_channel(
        self,
        channel: str,
        error: str = "channel_not_found",
        status: int = 200,
        method: str | None = None,
    ) -> None:
        """Every call to ``channel`` (of ``method``, or any) fails until :meth:`clear_failures`: a
        delivery that can never succeed (default: Slack's ``channel_not_found``)."""
        with self._lock:
            self._rules.append(_Rule(method, channel, status, None, None, error))

    def clear_failures(self) -> None:
        """Drop forced failures and stop random ones (``fail_rate`` back to 0)."""
        with self._lock:
            self._rules.clear()
            self.fail_rate = 0.0

    # ---------------------------------------------------------------------------- server side

    def _injected(self, method: str, params: dict[str, Any]) -> tuple[int, int | None, str | None] | None:
        """The failure to answer this call with, if any: ``(status, retry_after, error)``."""
        with self._lock:
            for rule in self._rules:
                if rule.matches(method, params):
                    if rule.remaining is not None:
                        rule.remaining -= 1
                        if rule.remaining <= 0:
                            self._rules.remove(rule)
                    return rule.status, rule.retry_after, rule.error
            if method in self.fail_methods and self.fail_rate > 0 and self._random.random() < self.fail_rate:
                if self._random.random() < 0.5:
                    return 429, None, None
                return self._random.choice(self.server_error_statuses), None, None
        return None

    def _failure(self, status: int, retry_after: int | None, error: str | None) -> tuple[JSONResponse, str]:
        if status == 429:
            seconds = int(retry_after if retry_after is not None else self.retry_after)
            headers = {"Retry-After": str(seconds)}
            text = error or "ratelimited"
            return JSONResponse({"ok": False, "error": text}, status_code=429, headers=headers), text
        text = error or SERVER_ERRORS.get(status, "internal_error" if status >= 500 else "invalid_request")
        return JSONResponse({"ok": False, "error": text}, status_code=status), text

    def _refuse(
        self, method: str, params: dict[str, Any], response: JSONResponse, error: str, injected: bool
    ) -> JSONResponse:
        with self._lock:
            self.attempts.append(Attempt(method, params, response.status_code, False, error, injected))
        return response

    def _build(self) -> FastAPI:
        app = FastAPI()

        @app.post("/api/{method}")
        async def method(method: str, request: Request) -> Any:
            raw = (await request.body()).decode()
            if request.headers.get("content-type", "").startswith("application/json"):
                params: dict[str, Any] = json.loads(raw or "{}")
            else:
                params = dict(parse_qsl(raw))
            if (injected := self._injected(method, params)) is not None:
                response, error = self._failure(*injected)
                return self._refuse(method, params, response, error, True)
            if method in MESSAGE_METHODS and (refused := message_error(params)) is not None:
                error, messages = refused
                body: dict[str, Any] = {"ok": False, "error": error}
                if messages:
                    body["response_metadata"] = {"messages": messages}
                return self._refuse(method, params, JSONResponse(body), error, False)
            if method not in HANDLED:
                return self._refuse(
                    method,
                    params,
                    JSONResponse({"ok": False, "error": "unknown_method"}),
                    "unknown_method",
                    False,
                )
            with self._lock:
                self.calls.append((method, params))
                self.attempts.append(Attempt(method, params, 200, True))
                self._ts += 1
                ts = f"{self._ts:.6f}"
            if method == "auth.test":
                return {
                    "ok": True,
                    "url": "https://lumen.slack.example/",
                    "team": "Lumen",
                    "user": "teller",
                    "team_id": "T1",
                    "user_id": BOT_USER,
                    "bot_id": BOT_ID,
                }
            if method == "chat.postMessage":
                return {
                    "ok": True,
                    "channel": params.get("channel"),
                    "ts": ts,
                    "message": {"text": params.get("text"), "ts": ts, "bot_id": BOT_ID},
                }
            if method == "chat.update":
                return {"ok": True, "channel": params.get("channel"), "ts": params.get("ts")}
            if method == "chat.postEphemeral":
                return {"ok": True, "message_ts": ts}
            if method == "views.open":
                return {"ok": True, "view": {"id": "V1"}}
            if method == "apps.connections.open":
                return {"ok": True, "url": self.socket_url}
            if method == "conversations.info":  # (a channel the bot is in; fail_channel for others)
                channel = {"id": params.get("channel"), "is_member": True, "is_archived": False}
                return {"ok": True, "channel": channel}
            if method == "conversations.open":
                return {"ok": True, "channel": {"id": f"D{params.get('users', '')}"}}
            if method == "files.getUploadURLExternal":
                file_id = f"F{len(self._pending) + 1}"
                self._pending[file_id] = str(params.get("filename"))
                return {"ok": True, "file_id": file_id, "upload_url": f"{request.base_url}upload/{file_id}"}
            # files.completeUploadExternal
            files = json.loads(params["files"]) if isinstance(params["files"], str) else params["files"]
            return {"ok": True, "files": [{"id": f["id"], "title": f.get("title")} for f in files]}

        @app.post("/upload/{file_id}")
        async def upload(file_id: str, request: Request) -> dict[str, Any]:
            data = await request.body()
            with self._lock:
                self.files[self._pending.get(file_id, file_id)] = data
            return {"ok": True}

        @app.post("/response/{key}")
        async def response_url(key: str, request: Request) -> Any:
            params = json.loads(await request.body())
            if (injected := self._injected("response_url", params)) is not None:
                response, error = self._failure(*injected)
                return self._refuse("response_url", params, response, error, True)
            with self._lock:
                self.calls.append(("response_url", params))
                self.attempts.append(Attempt("response_url", params, 200, True))
            return {"ok": True}

        return app


HANDLED = frozenset(
    {
        "auth.test",
        "chat.postMessage",
        "chat.update",
        "chat.postEphemeral",
        "views.open",
        "apps.connections.open",
        "conversations.open",
        "conversations.info",
        "files.getUploadURLExternal",
        "files.completeUploadExternal",
    }
)


def signed(
    secret: str, body: str, content_type: str, age: float = 0.0, retry: int | None = None
) -> dict[str, str]:
    """Headers Slack would send with ``body``; ``age`` seconds in the past."""
    timestamp = str(int(time.time() - age))
    headers = {
        "X-Slack-Request-Timestamp": timestamp,
        "Content-Type": content_type,
        "X-Slack-Signature": SignatureVerifier(secret).generate_signature(timestamp=timestamp, body=body)
        or "",
    }
    if retry is not None:
        headers |= {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"}
    return headers


def _envelope(event_id: str) -> dict[str, Any]:
    return {
        "token": "x",
        "team_id": "T1",
        "api_app_id": "A1",
        "type": "event_callback",
        "event_id": event_id,
        "event_time": int(time.time()),
        "authorizations": [{"team_id": "T1", "user_id": BOT_USER, "is_bot": True}],
    }


def event_body(event_id: str, event: dict[str, Any]) -> str:
    return json.dumps({**_envelope(event_id), "event": event})


def dm(text: str, ts: str, user: str = "UCUSTOMER", channel: str = "D1") -> dict[str, Any]:
    return {"type": "message", "channel_type": "im", "channel": channel, "user": user, "text": text, "ts": ts}


def mention(text: str, ts: str, channel: str = "C1", user: str = "UCUSTOMER") -> dict[str, Any]:
    return {
        "type": "app_mention",
        "channel": channel,
        "user": user,
        "text": f"<@{BOT_USER}> {text}",
        "ts": ts,
    }


def interaction_body(
    action: dict[str, Any],
    message: dict[str, Any],
    channel: str = "D1",
    user: str = "UCUSTOMER",
    state: dict[str, Any] | None = None,
    block_id: str = "teller_actions",
) -> str:
    return urlencode({"payload": json.dumps(_block_actions(action, message, channel, user, state, block_id))})


def _block_actions(
    action: dict[str, Any],
    message: dict[str, Any],
    channel: str,
    user: str,
    state: dict[str, Any] | None,
    block_id: str,
) -> dict[str, Any]:
    payload = {
        "type": "block_actions",
        "team": {"id": "T1"},
        "user": {"id": user},
        "api_app_id": "A1",
        "trigger_id": f"trigger-{time.monotonic_ns()}",
        "channel": {"id": channel},
        "message": message,
        "container": {"type": "message", "message_ts": message["ts"]},
        "actions": [{**action, "block_id": block_id, "action_ts": str(time.time())}],
    }
    if state is not None:
        payload["state"] = {"values": state}
    return payload


def view_submission_body(view: dict[str, Any], values: dict[str, Any], user: str = "UOPS") -> str:
    """Slack's payload when a modal opened with ``view`` is submitted with ``values``."""
    payload = {
        "type": "view_submission",
        "team": {"id": "T1"},
        "user": {"id": user},
        "api_app_id": "A1",
        "trigger_id": f"trigger-{time.monotonic_ns()}",
        "view": {**view, "id": "V1", "state": {"values": values}},
    }
    return urlencode({"payload": json.dumps(payload)})


def reaction_event(reaction: str, channel: str, ts: str, user: str) -> dict[str, Any]:
    return {
        "type": "reaction_added",
        "user": user,
        "reaction": reaction,
        "item": {"type": "message", "channel": channel, "ts": ts},
        "item_user": BOT_USER,
        "event_ts": str(time.time()),
    }


def _command_fields(text: str, response_url: str, user: str, channel: str) -> dict[str, str]:
    return {
        "command": "/teller",
        "text": text,
        "team_id": "T1",
        "user_id": user,
        "channel_id": channel,
        "response_url": response_url,
        "trigger_id": "t1",
        "api_app_id": "A1",
    }


def command_body(text: str, response_url: str, user: str = "UOPS", channel: str = "C1") -> str:
    return urlencode(_command_fields(text, response_url, user, channel))


# ------------------------------------------------------------------------ Slack's message dialect


def file_share(
    text: str,
    ts: str,
    user: str = "UCUSTOMER",
    channel: str = "D1",
    files: list[dict[str, Any]] | None = None,
    channel_type: str = "im",
) -> dict[str, Any]:
    """A message with a file (``subtype: file_share``), in a DM by default; ``text`` is its comment."""
    shared = files or [
        {
            "id": "F0SHARED",
            "name": "statement.pdf",
            "title": "statement.pdf",
            "mimetype": "application/pdf",
            "filetype": "pdf",
            "size": 48213,
            "user": user,
            "url_private": "https://files.slack.example/files-pri/T1-F0SHARED/statement.pdf",
        }
    ]
    return {
        "type": "message",
        "subtype": "file_share",
        "channel_type": channel_type,
        "channel": channel,
        "user": user,
        "text": text,
        "files": shared,
        "upload": False,
        "display_as_bot": False,
        "ts": ts,
        "event_ts": ts,
    }


def thread_broadcast(
    text: str,
    ts: str,
    thread_ts: str,
    user: str = "UCUSTOMER",
    channel: str = "C1",
    channel_type: str = "channel",
) -> dict[str, Any]:
    """A thread reply also sent to the channel (``subtype: thread_broadcast``)."""
    return {
        "type": "message",
        "subtype": "thread_broadcast",
        "channel_type": channel_type,
        "channel": channel,
        "user": user,
        "text": text,
        "ts": ts,
        "thread_ts": thread_ts,
        "root": {"type": "message", "user": user, "text": "the thread's first message", "ts": thread_ts},
        "event_ts": ts,
    }


def message_changed(
    text: str,
    ts: str,
    previous_text: str,
    user: str = "UCUSTOMER",
    channel: str = "D1",
    channel_type: str = "im",
    edited_ts: str | None = None,
    thread_ts: str | None = None,
) -> dict[str, Any]:
    """An edit of message ``ts`` (``subtype: message_changed``): no top-level ``user``/``text``; the
    edited message is under ``message``, the old one under ``previous_message`` (both in thread
    ``thread_ts``, if given)."""
    event_ts = edited_ts or f"{float(ts) + 30:.6f}"
    threaded = {"thread_ts": thread_ts} if thread_ts else {}
    return {
        "type": "message",
        "subtype": "message_changed",
        "hidden": True,
        "channel_type": channel_type,
        "channel": channel,
        "ts": event_ts,
        "event_ts": event_ts,
        "message": {
            "type": "message",
            "user": user,
            "text": text,
            "ts": ts,
            "edited": {"user": user, "ts": event_ts},
            **threaded,
        },
        "previous_message": {"type": "message", "user": user, "text": previous_text, "ts": ts, **threaded},
    }


def message_deleted(
    deleted_ts: str,
    previous_text: str = "hello",
    user: str = "UCUSTOMER",
    channel: str = "D1",
    channel_type: str = "im",
    ts: str | None = None,
    thread_ts: str | None = None,
) -> dict[str, Any]:
    """A deleted message (``subtype: message_deleted``), with ``deleted_ts`` and ``previous_message``
    (in thread ``thread_ts``, if given)."""
    event_ts = ts or f"{float(deleted_ts) + 60:.6f}"
    threaded = {"thread_ts": thread_ts} if thread_ts else {}
    return {
        "type": "message",
        "subtype": "message_deleted",
        "hidden": True,
        "channel_type": channel_type,
        "channel": channel,
        "ts": event_ts,
        "event_ts": event_ts,
        "deleted_ts": deleted_ts,
        "previous_message": {
            "type": "message",
            "user": user,
            "text": previous_text,
            "ts": deleted_ts,
            **threaded,
        },
    }


def bot_message(
    text: str,
    ts: str,
    bot_id: str = "BOTHER",
    channel: str = "D1",
    channel_type: str = "im",
    username: str = "Other bot",
) -> dict[str, Any]:
    """A message from a bot (``subtype: bot_message``, ``bot_id``, no ``user``): e.g. an integration
    posting in the channel, or Teller's own message echoed back (``bot_id=BOT_ID``)."""
    return {
        "type": "message",
        "subtype": "bot_message",
        "channel_type": channel_type,
        "channel": channel,
        "bot_id": bot_id,
        "username": username,
        "text": text,
        "ts": ts,
        "event_ts": ts,
    }


def bot_mention(
    text: str, ts: str, bot_id: str = "BOTHER", channel: str = "C1", user: str = "UOTHERBOT"
) -> dict[str, Any]:
    """An ``app_mention`` posted by another bot: it carries ``bot_id`` and ``bot_profile``."""
    return {
        **mention(text, ts, channel=channel, user=user),
        "bot_id": bot_id,
        "bot_profile": {"id": bot_id, "app_id": "AOTHER", "name": "Other bot", "team_id": "T1"},
        "event_ts": ts,
    }


# ---------------------------------------------------- signed bodies missing what Bolt expects


def event_body_without_event(event_id: str = "EvNoEvent") -> str:
    """An ``event_callback`` envelope with no ``event`` at all."""
    return json.dumps(_envelope(event_id))


def interaction_body_without(
    missing: str,
    action: dict[str, Any] | None = None,
    message: dict[str, Any] | None = None,
    channel: str = "D1",
    user: str = "UCUSTOMER",
    block_id: str = "teller_actions",
) -> str:
    """A ``block_actions`` payload with field ``missing`` (``actions``, ``user``, ``message``,
    ``channel``...) left out; ``actions=[]`` is ``interaction_body_without("actions_items")``."""
    message = message or {"type": "message", "ts": "1.0", "text": "an answer", "bot_id": BOT_ID}
    action = action or {"type": "button", "action_id": "teller_feedback_no", "value": "x"}
    payload = _block_actions(action, message, channel, user, None, block_id)
    if missing == "actions_items":
        payload["actions"] = []
    else:
        payload.pop(missing)
    return urlencode({"payload": json.dumps(payload)})


def command_body_without(
    missing: str = "command",
    text: str = "help",
    response_url: str = "http://127.0.0.1:9/response/x",
    user: str = "UOPS",
    channel: str = "C1",
) -> str:
    """A slash-command body with field ``missing`` (``command``, ``user_id``, ``response_url``...)
    left out."""
    fields = _command_fields(text, response_url, user, channel)
    fields.pop(missing)
    return urlencode(fields)
