"""The bank's name customers see (``TELLER_BANK_NAME``): the starter's fictional bank only with the
starter, the bank's own everywhere Teller names a bank (the web chat, small talk, Telegram's help)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from bot.assistant import bank_name, build_core
from bot.channels.telegram import HELP, help_text
from bot.core import NO_PERSON
from bot.exemplars import SMALLTALK_FILE, load_smalltalk
from bot.settings import Settings, bank_possessive, get_settings
from bot.web.app import chat_page_html, create_app


def test_the_name_defaults_to_the_starters_bank_while_its_entries_are_there(
    teller_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.assistant import bank_name, open_kb
    from retrieval.entry import KBEntry

    monkeypatch.delenv("TELLER_BANK_NAME", raising=False)
    get_settings.cache_clear()
    settings = get_settings()
    kb = open_kb(settings)
    assert any(kb.is_starter(e.id) for e in kb.entries())
    assert bank_name(settings, kb) == "Lumen Bank"
    named = Settings(TELLER_BANK_NAME="  Harbour &  Vale ")
    assert bank_name(named, kb) == "Harbour & Vale"
    # The starter replaced by the bank's own entries (kb sync): no name, whatever TELLER_KB_STARTER says.
    own = KBEntry(id="branches", questions=["Do you have branches?"], answer="One, in Leeds.")
    kb.sync([own])
    assert not any(kb.is_starter(e.id) for e in kb.entries())
    assert bank_name(settings, kb) == ""
    with pytest.raises(ValidationError, match="printable"):
        Settings(TELLER_BANK_NAME="Harbour\nVale")
    with pytest.raises(ValidationError):
        Settings(TELLER_BANK_NAME="x" * 61)


def test_a_named_bank_is_told_when_starter_entries_still_answer_its_customers(
    teller_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.assistant import open_kb, starter_notice
    from retrieval.entry import KBEntry

    monkeypatch.delenv("TELLER_BANK_NAME", raising=False)
    get_settings.cache_clear()
    kb = open_kb(get_settings())
    live = sum(kb.is_starter(e.id) for e in kb.entries())
    assert starter_notice(get_settings(), kb) is None  # no name of its own: the starter is Lumen's
    assert starter_notice(Settings(TELLER_BANK_NAME="lumen  bank"), kb) is None
    notice = starter_notice(Settings(TELLER_BANK_NAME="Harbour & Vale"), kb)
    assert notice is not None and notice.startswith(f"{live} entries of the fictional Lumen Bank")
    assert "Harbour & Vale's customers" in notice and "teller kb sync" in notice
    # No name, but entries of the bank's own beside the starter's (a trial: kb add said nothing).
    kb.add([KBEntry(id="safe_box", questions=["Do you rent safe deposit boxes?"], answer="Yes, from 40.")])
    unnamed = starter_notice(get_settings(), kb)
    assert unnamed is not None and "answer your customers beside your 1 own entries" in unnamed
    kb.sync([KBEntry(id="branches", questions=["Do you have branches?"], answer="One, in Leeds.")])
    assert starter_notice(Settings(TELLER_BANK_NAME="Harbour & Vale"), kb) is None
    assert starter_notice(get_settings(), kb) is None


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
    assert help_text("Rimu Bank", staffed=False).startswith("I'm Teller, Rimu Bank's assistant.")


def test_telegram_help_offers_a_person_only_where_one_can_take_over() -> None:
    """Staffed, /help says what it always did; unstaffed (no ops channel) it offers no /human and
    says where to turn instead, as the unstaffed small talk does."""
    assert help_text("Rimu Bank") == (
        "I'm Teller, Rimu Bank's assistant. Ask me anything about your cards, payments, transfers, "
        "top-ups or account, in your own words.\n\n/human talks to a person\n/help shows this message"
    )
    alone = help_text("Rimu Bank", staffed=False)
    assert "/human" not in alone and "person" not in alone and NO_PERSON in alone
    assert alone.endswith("/help shows this message")


def test_the_chat_page_names_the_bank_escaped() -> None:
    page = chat_page_html("Harbour & Vale <Ltd>")
    assert "<title>Teller · Harbour &amp; Vale &lt;Ltd&gt;</title>" in page
    assert "<small>Harbour &amp; Vale &lt;Ltd&gt;&#x27;s assistant</small>" in page
    assert 'data-greeting="Hello! I&#x27;m Teller, Harbour &amp; Vale &lt;Ltd&gt;&#x27;s assistant.' in page
    assert "Lumen" not in page and "{{" not in page
    odd = chat_page_html("{{greeting}}")  # filled in one pass: a name is never read as a field
    assert "<title>Teller · {{greeting}}</title>" in odd
    unnamed = chat_page_html("")
    assert "<title>Teller</title>" in unnamed and "<small>Your bank&#x27;s assistant</small>" in unnamed
    # The bank's privacy notice (TELLER_PRIVACY_NOTICE), escaped; none: an empty attribute.
    noticed = chat_page_html("X", notice='We keep "this" <30 days>')
    assert 'data-notice="We keep &quot;this&quot; &lt;30 days&gt;"' in noticed
    assert 'data-notice=""' in unnamed


def test_a_served_bank_greets_with_its_own_name(teller_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TELLER_BANK_NAME", "Saltbush Mutual")
    get_settings.cache_clear()
    settings = get_settings()
    core = build_core(settings)
    try:
        client = TestClient(create_app(core, bank=bank_name(settings, core.policy.kb)))
        assert "Saltbush Mutual" in client.get("/").text
        assert client.get("/static/chat.html").status_code == 404  # the template is not served raw
        greeting = core.policy.smalltalk.replies["greeting"]
        assert "Saltbush Mutual's assistant" in greeting
    finally:
        core.close()


def test_the_advice_reply_names_no_bank_number_or_regulator() -> None:
    """Every bank's customers get it: the starter bank's phone number and regulator were in it."""
    import re

    from bot.exemplars import load_advice

    reply = load_advice().replies["advice"]
    assert "adviser" in reply
    assert "Lumen" not in reply and "FCA" not in reply and not re.search(r"\d{3}", reply)


def test_a_running_server_follows_the_name_and_advice_entries_as_the_kb_changes(
    teller_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A trial: after `kb sync` replaced the starter, a running server still greeted as "Lumen Bank's
    assistant" and its page said Lumen until restarted; after `kb add` superseded the starter's
    advice entry, it still took that entry's questions for advice examples (and the reverse after
    `kb restore`), so it answered otherwise than `teller ask`. The served policy now takes both
    from the knowledge base whenever its revision moves, as a fresh process would."""
    from bot.assistant import follow_kb, kb_exemplars
    from bot.policy import ADVICE_TAG
    from retrieval.entry import KBEntry

    monkeypatch.delenv("TELLER_BANK_NAME", raising=False)
    get_settings.cache_clear()
    settings = get_settings()
    core = build_core(settings)
    try:
        policy, kb = core.policy, core.policy.kb
        client = TestClient(create_app(core, bank=lambda: core.policy.bank))
        assert policy.bank == "Lumen Bank" and "Lumen Bank" in client.get("/").text
        before = len(policy.advice.texts)
        pension = KBEntry(
            id="pension-transfer",
            questions=["Should I move my workplace pension to you?"],
            answer="We don't offer pensions; an independent financial adviser can help you decide.",
            tags=(ADVICE_TAG,),
        )
        kb.add([pension])
        follow_kb(policy)  # what the server's re-fit thread runs after any change
        assert "Should I move my workplace pension to you?" in policy.advice.texts
        assert len(policy.advice.texts) == before + 1
        # The starter replaced wholesale: no bank's name is left to say.
        branches = KBEntry(id="branches", questions=["Do you have branches?"], answer="One, in Leeds.")
        kb.sync([branches])
        assert policy.bank == "Lumen Bank"  # not on a message's path: the re-fit thread's work
        follow_kb(policy)
        assert policy.bank == "" and "Lumen" not in policy.smalltalk.replies["greeting"]
        assert "your bank's assistant" in policy.smalltalk.replies["greeting"]
        page = client.get("/").text
        assert "<title>Teller</title>" in page and "Lumen" not in page
        assert "Should I move my workplace pension to you?" not in policy.advice.texts
        # As a fresh process reads the same knowledge base.
        fresh = kb_exemplars(settings, kb)
        assert (fresh.bank, fresh.advice.texts, fresh.smalltalk.replies) == (
            policy.bank,
            policy.advice.texts,
            policy.smalltalk.replies,
        )
        assert policy.follow_kb_exemplars() is False  # nothing moved since
    finally:
        core.close()
