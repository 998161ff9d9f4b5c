"""Closed by default (#15): Telegram's webhook always checks a secret, interviews are for the listed
product managers only, production hides the API docs and health details from anyone without the
operator key, every response carries security headers, and the API takes JSON bodies only.

One core for the module (building one takes seconds); every app around it is cheap."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from bot.assistant import build_channels, build_core, check_telegram_webhook
from bot.channels.slack import SlackChannel
from bot.channels.telegram import SECRET_HEADER, WEBHOOK_PATH, TelegramChannel
from bot.core import Incoming, TellerCore
from bot.errors import ConfigError
from bot.positioning_desk import PositioningDesk
from bot.settings import Settings
from bot.web.app import create_app
from bot.web.security import JSON_ONLY, docs_policy
from positioning.engine import ACTIVE
from tests import fake_slack as sl
from tests import fake_telegram as tg
from tests.servers import serve_in_thread
from tests.test_slack_interview import SECRET, SlackPM
from tests.test_telegram import TOKEN, module_settings

OPERATOR_KEY = "operator-key-0123456789abcdef"
BEARER = {"Authorization": f"Bearer {OPERATOR_KEY}"}
DOCS = ("/docs", "/redoc", "/openapi.json")


@pytest.fixture(scope="module")
def settings(
    tmp_path_factory: pytest.TempPathFactory,
    home_template: Path,
    trained_models_dir: Path,
    embedder_cache: Path,
) -> Settings:
    return module_settings(tmp_path_factory, home_template, trained_models_dir, embedder_cache)


@pytest.fixture(scope="module")
def core(settings: Settings) -> Iterator[TellerCore]:
    core = build_core(settings)
    yield core
    core.close()


def production(core: TellerCore, key: str | None = OPERATOR_KEY) -> TestClient:
    return TestClient(create_app(core, production=True, operator_key=key))


# ------------------------------------------------------------------------------------ Telegram


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_webhook_without_a_secret_generates_one_registers_it_and_refuses_forged_updates(
    core: TellerCore,
) -> None:
    api = tg.FakeTelegram()
    records = _Records()
    logger = logging.getLogger("bot.channels.telegram")
    logger.addHandler(records)
    try:
        with serve_in_thread(api.app) as api_url:
            channel = TelegramChannel(
                core, TOKEN, api_url=f"{api_url}/bot", webhook_url="https://teller.example/telegram/webhook"
            )
            with serve_in_thread(create_app(core, [channel])) as teller:
                [hook] = api.wait_for("setWebhook", 1)
                secret = hook["secret_token"]
                assert secret == channel.webhook_secret and re.fullmatch(r"[A-Za-z0-9_-]{43}", secret)
                # A forged update (no header, a wrong one) is refused before it is queued.
                forged = tg.text(20, 666, 1, "hello")
                assert httpx.post(teller + WEBHOOK_PATH, json=forged).status_code == 403
                wrong = {SECRET_HEADER: "x" * len(secret)}
                assert httpx.post(teller + WEBHOOK_PATH, json=forged, headers=wrong).status_code == 403
                latin = {SECRET_HEADER.encode(): "é".encode("latin-1")}  # compared as bytes, never a 500
                assert httpx.post(teller + WEBHOOK_PATH, json=forged, headers=latin).status_code == 403
                genuine = tg.text(21, 7, 2, "hello")
                response = httpx.post(teller + WEBHOOK_PATH, json=genuine, headers={SECRET_HEADER: secret})
                assert response.status_code == 200
                api.wait_for("sendMessage", 1)  # the genuine update, queued after the forged ones
                assert [m["chat_id"] for m in api.sent()] == [7]
    finally:
        logger.removeHandler(records)
    [generated] = [r for r in records.records if r.getMessage() == "telegram_webhook_secret_generated"]
    assert generated.levelno == logging.WARNING
    assert not any(secret in f"{r.getMessage()} {r.__dict__}" for r in records.records)


def test_a_shared_database_needs_an_explicit_webhook_secret(settings: Settings, core: TellerCore) -> None:
    webhook = settings.model_copy(
        update={
            "telegram_bot_token": SecretStr("123:abc"),
            "telegram_webhook_url": "https://teller.example/telegram/webhook",
            "database_url": "postgresql://teller@db:5432/teller",
        }
    )
    with pytest.raises(ConfigError, match="TELEGRAM_WEBHOOK_SECRET"):
        build_channels(webhook, core)
    check_telegram_webhook(webhook.model_copy(update={"telegram_webhook_secret": SecretStr("s3cret")}))
    check_telegram_webhook(webhook.model_copy(update={"database_url": None}))  # one process: generated
    with pytest.raises(ValueError, match="A-Z, a-z, 0-9"):
        Settings(TELEGRAM_WEBHOOK_SECRET="has spaces", _env_file=None)  # type: ignore[call-arg]
    # Telegram would take "s3cret"; Teller asks for 16 characters, as for its other keys.
    with pytest.raises(ValueError, match="at least 16 characters"):
        Settings(TELEGRAM_WEBHOOK_SECRET="s3cret", _env_file=None)  # type: ignore[call-arg]
    long_enough = "s3cret-s3cret-16"
    assert long_enough in Settings(TELEGRAM_WEBHOOK_SECRET=long_enough, _env_file=None).secret_values()  # type: ignore[call-arg]


# ------------------------------------------------------------------------------------ interviews


def test_with_no_product_managers_nobody_interviews_in_slack(settings: Settings, core: TellerCore) -> None:
    assert settings.product_manager_ids == frozenset()
    desk = PositioningDesk(settings, policy=lambda: core.policy, store=core.store)
    fake = sl.FakeSlack()
    with serve_in_thread(fake.app) as api:
        channel = SlackChannel(core, "xoxb-test", signing_secret=SECRET, api_url=f"{api}/api/", desk=desk)
        with serve_in_thread(create_app(core, [channel])) as teller:
            someone = SlackPM(fake, teller, "UANYONE")
            for command in ("interview", "interview new", "brief iv_1a2b3c4d"):
                refused = someone.command(command)
                assert "limited to product managers" in refused, refused
                assert "TELLER_PRODUCT_MANAGERS is empty" in refused
            assert not fake.sent("conversations.open") and not fake.sent()
    # A pressed interview button is refused too; nothing was started for anyone.
    pressed = desk.converse(Incoming("slack", "DUANYONE", "UANYONE", None, "iv:iv_nope:back"))
    assert "limited to product managers" in pressed.text
    assert desk.service.store.for_user("slack:UANYONE") == []
    # The terminal is an operator's: `teller interview` still runs (tests/test_interview_cli.py).
    assert desk.service.start_or_resume("terminal:local").state.status == ACTIVE


# ------------------------------------------------------------------------------------ production


def test_production_hides_the_docs_and_health_details_without_the_operator_key(core: TellerCore) -> None:
    client = production(core)
    for path in DOCS:
        assert client.get(path).status_code == 404, path
        assert client.get(path, headers={"Authorization": "Bearer wrong-key-0123456789"}).status_code == 404
        assert client.get(path, headers={"Authorization": OPERATOR_KEY}).status_code == 404  # no scheme
        assert client.get(path, headers=BEARER).status_code == 200, path
    assert "/api/messages" in client.get("/openapi.json", headers=BEARER).json()["paths"]
    assert client.get("/healthz").json() == {"status": "ok"}
    detailed = client.get("/healthz", headers=BEARER).json()
    assert detailed["model"] == core.policy.classifier.version and detailed["kb_entries"] == len(
        core.policy.kb
    )
    # Without a key configured, nobody gets them.
    unkeyed = production(core, key=None)
    assert unkeyed.get("/docs", headers=BEARER).status_code == 404
    assert unkeyed.get("/healthz", headers=BEARER).json() == {"status": "ok"}
    # Development (the default) is open as before.
    development = TestClient(create_app(core))
    assert all(development.get(path).status_code == 200 for path in DOCS)
    assert "model" in development.get("/healthz").json()


def test_production_health_still_says_unreachable(core: TellerCore, monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.storage import StoreError

    def down() -> None:
        raise StoreError("teller.db: disk I/O error")

    monkeypatch.setattr(core.store.deployment, "active_model", down)
    health = production(core).get("/healthz")
    assert (health.status_code, health.json()) == (503, {"status": "degraded"})


# ------------------------------------------------------------------------------------ headers


class _Assets(HTMLParser):
    """What a page loads, and anything inline a strict CSP would block."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[str] = []
        self.styles: list[str] = []
        self.inline: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.inline += [f"{tag} {name}" for name, _ in attrs if name.startswith("on") or name == "style"]
        if tag == "script":
            self._in_script = "src" not in values
            if values.get("src"):
                self.scripts.append(str(values["src"]))
        elif tag == "style":
            self.inline.append("<style>")
        elif tag == "link" and values.get("rel") == "stylesheet":
            self.styles.append(str(values["href"]))

    def handle_endtag(self, tag: str) -> None:
        self._in_script = self._in_script and tag != "script"

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline.append("<script>")


def directives(policy: str) -> dict[str, list[str]]:
    return {d.split()[0]: d.split()[1:] for d in (part.strip() for part in policy.split(";")) if d}


def test_the_page_and_every_response_carry_security_headers(core: TellerCore) -> None:
    client = TestClient(create_app(core))
    page = client.get("/")
    policy = directives(page.headers["content-security-policy"])
    assert policy["default-src"] == ["'self'"] and policy["frame-ancestors"] == ["'none'"]
    assert policy["script-src"] == ["'self'"] and policy["style-src"] == ["'self'"]  # nothing inline
    assets = _Assets()
    assets.feed(page.text)
    assert (
        assets.inline == []
        and assets.scripts == ["/static/chat.js"]
        and assets.styles == ["/static/chat.css"]
    )
    for path, kind in ((assets.scripts[0], "javascript"), (assets.styles[0], "css")):
        served = client.get(path)
        assert served.status_code == 200 and kind in served.headers["content-type"]  # nosniff-proof
    reply = client.post("/api/messages", json={"text": "hello"})  # the page's session cookie
    refused = client.post(
        "/api/messages", content=b"x" * 300_000, headers={"content-type": "application/json"}
    )
    for response in (page, reply, refused, client.get("/healthz"), client.get("/nowhere")):
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "no-referrer"
        assert response.headers["x-frame-options"] == "DENY"
        assert response.headers["cache-control"] == "no-store"
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert refused.status_code == 413


def test_the_docs_pages_allow_only_their_own_inline_scripts(core: TellerCore) -> None:
    client = TestClient(create_app(core))
    for path in ("/docs", "/redoc"):
        page = client.get(path)
        policy = page.headers["content-security-policy"]
        assert policy == docs_policy(page.text) and "frame-ancestors 'none'" in policy
        assert "'unsafe-inline'" not in directives(policy)["script-src"]
    assert directives(client.get("/docs").headers["content-security-policy"])["script-src"][-1].startswith(
        "'sha256-"
    )


# ------------------------------------------------------------------------------------ content type


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/json; charset=latin-1",
        "application/jsonp",
        "text/json",
    ],
)
def test_api_bodies_must_be_json(core: TellerCore, content_type: str | None) -> None:
    client = TestClient(create_app(core))
    stored = core.store.conversations.count()
    headers: dict[str, Any] = {} if content_type is None else {"content-type": content_type}
    for path, body in (
        ("/api/messages", b'{"text": "hello"}'),
        ("/api/feedback", b'{"message_id": "m_1", "helpful": true}'),
    ):
        response = client.post(path, content=body, headers=headers)
        assert (response.status_code, response.json()) == (415, {"detail": JSON_ONLY})
    assert core.store.conversations.count() == stored


def test_json_with_a_charset_is_accepted(core: TellerCore) -> None:
    client = TestClient(create_app(core))
    client.get("/")  # the chat page's session
    for content_type in (
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON;charset=UTF-8",
    ):
        body = b'{"text": "hello"}'
        assert (
            client.post("/api/messages", content=body, headers={"content-type": content_type}).status_code
            == 200
        )
