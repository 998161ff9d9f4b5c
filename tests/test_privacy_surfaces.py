"""PII outside the store: uvicorn's error and access logs are redacted like Teller's own, and what a
customer is told is never the redacted copy (replies, the bank's answers, operators' relays)."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from bot.logs import configure_logging, uvicorn_log_config
from tests.servers import free_port

CARD = "4111111111111111"


def test_uvicorn_tracebacks_and_access_lines_are_redacted(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    app = FastAPI()

    @app.get("/boom")
    def boom(user_id: str) -> None:
        raise ValueError(f"could not handle card {CARD} of {user_id}")

    log_file = configure_logging(tmp_path, "INFO")
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=uvicorn_log_config("warning"))
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        response = httpx.get(f"http://127.0.0.1:{port}/boom", params={"user_id": "jane@example.com"})
        assert response.status_code == 500 and CARD not in response.text
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        for handler in logging.getLogger().handlers:
            handler.flush()
    stderr = capfd.readouterr().err
    assert "Traceback" in stderr and "[CARD]" in stderr  # the traceback is there, redacted
    assert CARD not in stderr and "jane@example.com" not in stderr
    lines = [json.loads(line) for line in log_file.read_text(encoding="utf-8").splitlines()]
    text = json.dumps(lines)
    assert CARD not in text and "jane@example.com" not in text and "jane%40example.com" not in text
    access = [line for line in lines if line["logger"] == "uvicorn.access"]
    assert access and "/boom" in access[0]["event"]
    # The client's address as its network only (a trial's finding: customers' IPs were logged whole).
    assert access[0]["event"].startswith("127.0.0.0/24 - ") and "127.0.0.1" not in access[0]["event"]
    assert any("[CARD]" in line.get("exception", "") for line in lines)


def test_log_lines_are_json_and_redacted(tmp_path: Path) -> None:
    path = configure_logging(tmp_path, "INFO")
    logger = logging.getLogger("teller.test")
    logger.info(
        "message from %s",
        "jane@bank.example",
        extra={"fields": {"text": "card 4111111111111111", "nested": ["+44 20 7946 0958"]}},
    )
    for handler in logging.getLogger().handlers:
        handler.flush()
    entry = json.loads(path.read_text().splitlines()[-1])
    assert entry["event"] == "message from [EMAIL]"
    assert entry["text"] == "card [CARD]"
    assert entry["nested"] == ["[PHONE]"]
    assert "4111" not in path.read_text()


def test_tellers_own_secrets_never_reach_the_log_whatever_their_format(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.settings import Settings

    bot_token = "own-format-bot-secret-7Qx2"  # no issuer's format: only the configured value says so
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", bot_token)
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "signing-secret-value-0042")
    monkeypatch.setenv("TELLER_DATABASE_URL", "postgresql://teller:db%40pass-word-99@localhost/teller")
    monkeypatch.setenv("TELLER_LIMITS_STORAGE", "redis://:redis-pass-abcdef123@localhost:6379")
    secrets = Settings().secret_values()  # type: ignore[call-arg]
    assert {bot_token, "signing-secret-value-0042", "db@pass-word-99", "db%40pass-word-99"} <= set(secrets)
    assert "redis-pass-abcdef123" in secrets
    path = configure_logging(tmp_path, "INFO", secrets)
    logger = logging.getLogger("teller.test")
    try:
        try:
            raise ConnectionError(f"POST https://api.example/bot{bot_token}/sendMessage refused")
        except ConnectionError as exc:
            logger.exception(
                "send failed for %s: %s",
                f"https://api.example/bot{bot_token}/x",
                repr(exc)[: repr(exc).index(bot_token) + 15],  # cut inside the token by the code that logs it
                extra={
                    "fields": {
                        "url": "postgresql://teller:db%40pass-word-99@localhost/teller",
                        f"key {bot_token}": 1,
                        "error": exc,
                        "raw": bot_token.encode(),
                        "limits": "redis://:redis-pass-abcdef123@localhost:6379",
                    }
                },
            )
        for handler in logging.getLogger().handlers:
            handler.flush()
        text = path.read_text()
        for secret in (bot_token, "db%40pass-word-99", "redis-pass-abcdef123", bot_token[:12]):
            assert secret not in text
        entry = json.loads(text.splitlines()[-1])
        assert entry["event"].startswith("send failed for https://api.example/bot[CREDENTIAL]/x: ")
        assert entry["event"].endswith("[CREDENTIAL]")
        assert "[CREDENTIAL]" in entry["exception"] and "[CREDENTIAL]" in entry["url"]
        assert "key [CREDENTIAL]" in entry and "[CREDENTIAL]" in entry["error"]
    finally:
        configure_logging(tmp_path, "INFO")  # the next test's logging knows no secrets again


def test_a_new_home_its_database_and_logs_are_its_owner_s_only(tmp_path: Path) -> None:
    """A trial's finding: TELLER_HOME, teller.db and the log were created readable by every local
    user (0755/0644 under the usual umask)."""
    import os
    import stat

    from bot.storage import Store

    home = tmp_path / "home"
    log = configure_logging(home / "logs", "INFO")
    Store(home / "teller.db").close()
    modes = {p.name: stat.S_IMODE(os.stat(p).st_mode) for p in (home, home / "logs", log, home / "teller.db")}
    assert modes == {"home": 0o700, "logs": 0o700, log.name: 0o600, "teller.db": 0o600}


def test_an_upgraded_database_readable_by_others_is_made_its_owner_s_only(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A review's finding: a database an older Teller made 0644 stayed readable by every local user
    after an upgrade. It is its owner's now, the change logged; what it holds is kept."""
    import os
    import stat

    from bot.storage import NewExchange, Store

    path = tmp_path / "teller.db"
    store = Store(path)
    store.conversations.record_exchange(NewExchange("web", "c1", "c1", "hello", "hi", route="smalltalk"))
    store.close()
    os.chmod(path, 0o644)
    with caplog.at_level(logging.WARNING):
        store = Store(path)
    try:
        assert sorted(m.text for m in store.conversations.history()) == ["hello", "hi"]
    finally:
        store.close()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    events = [r.getMessage() for r in caplog.records]
    assert "store_file_mode_tightened" in events


def test_a_database_whose_mode_cannot_be_changed_still_opens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A review's finding: a chmod refused (a mount that does not allow it, or a -wal file SQLite
    removed meanwhile) stopped Teller starting; it is logged and the database opened as it is."""
    import os

    from bot.storage import Store

    path = tmp_path / "teller.db"
    Store(path).close()
    os.chmod(path, 0o644)

    def refused(*_: object) -> None:
        raise PermissionError("Operation not permitted")

    monkeypatch.setattr(os, "chmod", refused)
    with caplog.at_level(logging.WARNING):
        store = Store(path)
    store.close()
    assert "store_file_mode_kept" in [r.getMessage() for r in caplog.records]
