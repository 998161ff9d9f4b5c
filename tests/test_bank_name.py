"""The bank's name customers see (``TELLER_BANK_NAME``): the starter's fictional bank only with the
starter, the bank's own everywhere Teller names a bank (the web chat, small talk, Telegram's help)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from bot.assistant import build_core
from bot.channels.telegram import HELP, help_text
from bot.exemplars import SMALLTALK_FILE, load_smalltalk
from bot.settings import Settings, bank_possessive, get_settings
from bot.web.app import chat_page_html, create_app


def test_the_name_defaults_to_the_starters_bank_only_with_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TELLER_BANK_NAME", raising=False)
    assert Settings(TELLER_KB_STARTER="lumen").bank == "Lumen Bank"
    assert Settings(TELLER_KB_STARTER="none").bank == ""
    assert Settings(TELLER_KB_STARTER="bank.csv").bank == ""
    assert Settings(TELLER_KB_STARTER="lumen", TELLER_BANK_NAME="  Harbour &  Vale ").bank == "Harbour & Vale"
    with pytest.raises(ValidationError, match="printable"):
        Settings(TELLER_BANK_NAME="Harbour\nVale")
    with pytest.raises(ValidationError):
        Settings(TELLER_BANK_NAME="x" * 61)


def test_possessive_forms() -> None:
    assert bank_possessive("Harbour & Vale") == "Harbour & Vale's"
    assert bank_possessive("Barclays") == "Barclays'"
    assert bank_possessive("") == "your bank's"


def test_small_talk_names_the_bank_and_nothing_is_left_of_the_starters() -> None:
    replies = load_smalltalk(bank="Cedar Mutual").replies
    assert "I'm Teller, Cedar Mutual's assistant." in replies["greeting"]
    assert "I'm Teller, Cedar Mutual's virtual assistant" in replies["bot_identity"]
    assert "banking with us" in replies["goodbye"]
    assert not any("Lumen" in reply or "{bank" in reply for reply in replies.values())
    unnamed = load_smalltalk(bank="").replies
    assert "I'm Teller, your bank's assistant." in unnamed["greeting"]
    assert "Lumen" not in SMALLTALK_FILE.read_text(encoding="utf-8")


def test_telegram_help_names_the_bank() -> None:
    assert help_text("Rimu Bank").startswith("I'm Teller, Rimu Bank's assistant.")
    assert "Lumen Bank's" in HELP and "/human" in help_text("")


def test_the_chat_page_names_the_bank_escaped() -> None:
    page = chat_page_html("Harbour & Vale <Ltd>")
    assert "<title>Teller · Harbour &amp; Vale &lt;Ltd&gt;</title>" in page
    assert "<small>Harbour &amp; Vale &lt;Ltd&gt;&#x27;s assistant</small>" in page
    assert 'data-greeting="Hello! I&#x27;m Teller, Harbour &amp; Vale &lt;Ltd&gt;&#x27;s assistant.' in page
    assert "Lumen" not in page and "{{" not in page
    unnamed = chat_page_html("")
    assert "<title>Teller</title>" in unnamed and "<small>Your bank&#x27;s assistant</small>" in unnamed


def test_a_served_bank_greets_with_its_own_name(teller_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELLER_BANK_NAME", "Saltbush Mutual")
    get_settings.cache_clear()
    settings = get_settings()
    core = build_core(settings)
    try:
        client = TestClient(create_app(core, bank=settings.bank))
        assert "Saltbush Mutual" in client.get("/").text
        greeting = core.policy.smalltalk.replies["greeting"]
        assert "Saltbush Mutual's assistant" in greeting
    finally:
        core.close()
