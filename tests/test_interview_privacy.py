"""A product manager's interview answers are redacted where Teller receives them: personal data
pasted into a free-text answer never reaches the stored interview, its replies or the brief."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.policy import AnswerPolicy
from bot.positioning_desk import PositioningDesk, RedactingInterviewService, redacted_answers
from bot.settings import get_settings
from bot.storage import Store, schema
from positioning.engine import FULL, QUICK

PRODUCT = "Teller; test card 4539 1488 0343 6467, ping pm.jones@bank.example or 07911 123456"
SECRETS = ("4539", "6467", "pm.jones", "07911")


def _no_policy() -> AnswerPolicy:
    raise AssertionError("the interview's first questions need no model")


@pytest.fixture()
def desk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PositioningDesk]:
    monkeypatch.setenv("TELLER_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("TELLER_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    store = Store(tmp_path / "home" / "teller.db")
    yield PositioningDesk(get_settings(), policy=_no_policy, store=store)
    store.close()
    get_settings.cache_clear()


def _stored(desk: PositioningDesk, interview_id: str) -> str:
    i = schema.interviews
    return str(desk.store.database.rows(select(i.c.state).where(i.c.id == interview_id))[0]["state"])


def test_free_text_answers_are_redacted_before_they_are_stored_or_shown(
    desk: PositioningDesk, caplog: pytest.LogCaptureFixture
) -> None:
    assert isinstance(desk.service, RedactingInterviewService)
    state = desk.service.start_or_resume("terminal", new=True, mode=QUICK, defaults={}).state
    with caplog.at_level(logging.INFO, logger="bot.positioning_desk"):
        reply = desk.service.handle("terminal", PRODUCT, interview_id=state.id)
    assert reply.state.answers["product"] == "Teller; test card [CARD], ping [EMAIL] or [PHONE]"
    desk.service.handle("terminal", "Retail customers, write to them at a.b@example.com", state.id)
    listed = desk.service.handle("terminal", "call 07911 123456 back | 5\nunderstand a fee | 4", state.id)
    assert listed.state.answers["needs"] == ["call [PHONE] back | 5", "understand a fee | 4"]
    stored = _stored(desk, state.id)
    assert "[CARD]" in stored and "[EMAIL]" in stored and not any(s in stored for s in (*SECRETS, "a.b@"))
    status = desk.service.handle("terminal", "status", state.id)
    assert not any(s in status.text for s in SECRETS)
    # The log says what was found where, never the values.
    records = [r for r in caplog.records if r.getMessage() == "interview_answer_redacted"]
    assert records and records[0].fields == {  # type: ignore[attr-defined]
        "interview": state.id,
        "question": "product",
        "kinds": ["card", "email", "phone"],
    }
    assert not any(s in json.dumps(r.fields) for r in records for s in SECRETS)  # type: ignore[attr-defined]


def test_figures_and_commands_are_taken_as_typed(desk: PositioningDesk) -> None:
    """A count that looks like an account number is a count; a command is not an answer."""
    state = desk.service.start_or_resume("terminal", new=True, mode=FULL, defaults={}).state
    state.current = "labelled_examples"
    desk.service.store.save(state)
    reply = desk.service.handle("terminal", "12345678", interview_id=state.id)
    assert reply.turn is not None and reply.turn.error is None
    assert reply.state.answers["labelled_examples"] == 12345678
    assert desk.service.handle("terminal", "edit 1", state.id).state.current == "product"


def test_answers_stored_before_are_redacted_for_the_brief() -> None:
    answers = {"product": PRODUCT, "needs": ["call 07911 123456 | 5"], "labelled_examples": 12345678}
    assert redacted_answers(answers) == {
        "product": "Teller; test card [CARD], ping [EMAIL] or [PHONE]",
        "needs": ["call [PHONE] | 5"],
        "labelled_examples": 12345678,
    }


def test_an_answer_decided_on_while_another_moves_the_interview_on_is_still_redacted(
    desk: PositioningDesk, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two quick messages: the first is judged against a scale question (taken as typed), the second
    answers that question meanwhile; the first must not then land, unredacted, on the free-text
    question after it (``gap``)."""
    service = desk.service
    assert isinstance(service, RedactingInterviewService)
    state = service.start_or_resume("terminal", new=True, mode=FULL, defaults={}).state
    state.current = "competitor_coverage"
    service.store.save(state)
    decided, go = threading.Event(), threading.Event()
    original = RedactingInterviewService.redacted

    def slow(self: RedactingInterviewService, user_id: str, text: str, iid: str | None = None) -> str:
        out = original(self, user_id, text, iid)
        if "pm.jones" in text:
            decided.set()
            go.wait(5)
        return out

    monkeypatch.setattr(RedactingInterviewService, "redacted", slow)
    first = threading.Thread(target=service.handle, args=("terminal", "mail pm.jones@bank.example", state.id))
    first.start()
    assert decided.wait(5)
    second = threading.Thread(target=service.handle, args=("terminal", "3", state.id))
    second.start()
    second.join(0.5)  # fixed: waits for the first message's turn
    go.set()
    first.join(5)
    second.join(5)
    assert not first.is_alive() and not second.is_alive()
    assert "pm.jones" not in _stored(desk, state.id)
