"""A fake Slack Web API on 127.0.0.1 (auth.test, chat.postMessage, chat.update, views.open,
conversations.open and the two-step file upload), recording calls, and helpers that sign requests the
way Slack does."""

from __future__ import annotations

import json
import threading
import time
from typing import Any
from urllib.parse import parse_qsl, urlencode

from fastapi import FastAPI, Request
from slack_sdk.signature import SignatureVerifier

BOT_USER = "UTELLER"


class FakeSlack:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        self._ts = 1_700_000_000.0
        #: Where ``apps.connections.open`` sends Socket Mode clients.
        self.socket_url = "ws://127.0.0.1:9/unset"
        #: Uploaded files by name: their bytes, as the upload URL received them.
        self.files: dict[str, bytes] = {}
        self._pending: dict[str, str] = {}
        self.app = self._build()

    def sent(self, method: str = "chat.postMessage") -> list[dict[str, Any]]:
        with self._lock:
            return [params for name, params in self.calls if name == method]

    def wait_for(self, method: str, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(found := self.sent(method)) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"expected {count} {method} calls, got {self.sent(method)}")

    def _build(self) -> FastAPI:
        app = FastAPI()

        @app.post("/api/{method}")
        async def method(method: str, request: Request) -> dict[str, Any]:
            raw = (await request.body()).decode()
            if request.headers.get("content-type", "").startswith("application/json"):
                params: dict[str, Any] = json.loads(raw or "{}")
            else:
                params = dict(parse_qsl(raw))
            with self._lock:
                self.calls.append((method, params))
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
                    "bot_id": "BTELLER",
                }
            if method == "chat.postMessage":
                return {
                    "ok": True,
                    "channel": params.get("channel"),
                    "ts": ts,
                    "message": {"text": params.get("text"), "ts": ts, "bot_id": "BTELLER"},
                }
            if method == "chat.update":
                return {"ok": True, "channel": params.get("channel"), "ts": params.get("ts")}
            if method == "chat.postEphemeral":
                return {"ok": True, "message_ts": ts}
            if method == "views.open":
                return {"ok": True, "view": {"id": "V1"}}
            if method == "apps.connections.open":
                return {"ok": True, "url": self.socket_url}
            if method == "conversations.open":
                return {"ok": True, "channel": {"id": f"D{params.get('users', '')}"}}
            if method == "files.getUploadURLExternal":
                file_id = f"F{len(self._pending) + 1}"
                self._pending[file_id] = str(params.get("filename"))
                return {"ok": True, "file_id": file_id, "upload_url": f"{request.base_url}upload/{file_id}"}
            if method == "files.completeUploadExternal":
                files = json.loads(params["files"]) if isinstance(params["files"], str) else params["files"]
                return {"ok": True, "files": [{"id": f["id"], "title": f.get("title")} for f in files]}
            return {"ok": False, "error": "unknown_method"}

        @app.post("/upload/{file_id}")
        async def upload(file_id: str, request: Request) -> dict[str, Any]:
            data = await request.body()
            with self._lock:
                self.files[self._pending.get(file_id, file_id)] = data
            return {"ok": True}

        @app.post("/response/{key}")
        async def response_url(key: str, request: Request) -> dict[str, Any]:
            with self._lock:
                self.calls.append(("response_url", json.loads(await request.body())))
            return {"ok": True}

        return app


def signed(
    secret: str, body: str, content_type: str, age: float = 0.0, retry: int | None = None
) -> dict[str, str]:
    """Headers Slack would send with ``body``; ``age`` seconds in the past."""
    timestamp = str(int(time.time() - age))
    headers = {
        "X-Slack-Request-Timestamp": timestamp,
        "Content-Type": content_type,
        "X-Slack-Signature": SignatureVerifier(secret).generate_signature(timestamp=timestamp, body=body),
    }
    if retry is not None:
        headers |= {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"}
    return headers


def event_body(event_id: str, event: dict[str, Any]) -> str:
    return json.dumps(
        {
            "token": "x",
            "team_id": "T1",
            "api_app_id": "A1",
            "type": "event_callback",
            "event_id": event_id,
            "event_time": int(time.time()),
            "event": event,
            "authorizations": [{"team_id": "T1", "user_id": BOT_USER, "is_bot": True}],
        }
    )


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
    return urlencode({"payload": json.dumps(payload)})


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


def command_body(text: str, response_url: str, user: str = "UOPS", channel: str = "C1") -> str:
    return urlencode(
        {
            "command": "/teller",
            "text": text,
            "team_id": "T1",
            "user_id": user,
            "channel_id": channel,
            "response_url": response_url,
            "trigger_id": "t1",
            "api_app_id": "A1",
        }
    )
