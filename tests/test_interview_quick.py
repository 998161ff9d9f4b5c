"""The quick interview (#16): at most 12 questions over the five steps, Teller's own figures
prefilled (passed in by the caller) and kept with Enter or "ok", or replaced; the full interview
unchanged; switching between them keeps the answers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.storage import Store
from positioning.engine import COMPLETED, FULL, QUICK, InterviewEngine, Turn
from positioning.errors import PositioningError, ScriptError
from positioning.script import DEFAULT_SCRIPT, QUICK_LIMIT, load_script
from positioning.session import InterviewService
from tests.test_interview import ANSWERS

QUICK_QUESTIONS = [
    "product",
    "target_users",
    "needs",
    "competitors",
    "competitor_coverage",
    "gap",
    "gap_size",
    "model_version",
    "target_accuracy",
    "target_latency_ms",
    "success_metric",
    "target_containment",
]
DEFAULTS: dict[str, Any] = {
    "model_version": "20261130-085524-c2db79 (tiny-bert, int8, 77 intents)",
    "accuracy": 93.9,
    "latency_ms": 14.2,
    "containment": 61.5,
}


@pytest.fixture(scope="module")
def engine() -> InterviewEngine:
    return InterviewEngine(load_script(DEFAULT_SCRIPT))


@pytest.fixture()
def service(engine: InterviewEngine, tmp_path: Path) -> Iterator[InterviewService]:
    store = Store(tmp_path / "p.db")
    yield InterviewService(engine, store.interviews, defaults=lambda: dict(DEFAULTS))
    store.close()


def test_the_quick_interview_asks_at_most_12_questions_over_the_five_steps(engine: InterviewEngine) -> None:
    quick = engine.script.ordered(QUICK)
    assert [q.id for q in quick] == QUICK_QUESTIONS and len(quick) <= QUICK_LIMIT == 12
    assert {engine.script.step_of[q.id] for q in quick} == {0, 1, 2, 3, 4}
    assert engine.script.modes == (FULL, QUICK)
    # The full interview is the one it was: the quick-only questions are not in it, and keep the
    # full interview's question numbers when every question is listed.
    full = [q.id for q in engine.script.ordered(FULL)]
    assert full == list(ANSWERS) and [q.id for q in engine.script.ordered()][: len(full)] == full
    prefilled = {q.id: q.prefill for q in quick if q.prefill}
    assert prefilled == {
        "model_version": "model_version",
        "target_accuracy": "accuracy",
        "target_latency_ms": "latency_ms",
        "target_containment": "containment",
    }


def run_quick(engine: InterviewEngine, typed: dict[str, str]) -> Turn:
    turn = engine.start("iv", "pm", QUICK, DEFAULTS)
    while not turn.finished:
        q = turn.prompt.question  # type: ignore[union-attr]
        turn = engine.answer(turn.state, typed.get(q.id, ANSWERS.get(q.id, "")))
        assert turn.error is None, (q.id, turn.error)
    return turn


def test_prefilled_questions_show_teller_s_figure_and_keep_it_with_enter_or_ok(
    engine: InterviewEngine,
) -> None:
    turn = engine.start("iv", "pm", QUICK, DEFAULTS)
    seen = []
    while not turn.finished:
        prompt = turn.prompt
        assert prompt is not None and prompt.count == 12 and prompt.number == len(seen) + 1
        seen.append(prompt.question.id)
        if prompt.question.id == "target_accuracy":
            text = prompt.render()
            assert "Prefilled from Teller: 93.9 (Teller's measured accuracy" in text
            assert "Type ok (or press Enter) to keep it" in text
            turn = engine.answer(turn.state, "")  # Enter
        elif prompt.question.id == "model_version":
            assert prompt.suggestion == DEFAULTS["model_version"]
            turn = engine.answer(turn.state, "OK")
        elif prompt.question.id == "target_latency_ms":
            turn = engine.answer(turn.state, "1,250")  # a new value
        elif prompt.question.id == "target_containment":
            turn = engine.answer(turn.state, "ok")
        else:
            assert prompt.suggestion is None  # not prefilled: "ok" would be an answer
            turn = engine.answer(turn.state, ANSWERS[prompt.question.id])
        assert turn.error is None
    assert seen == QUICK_QUESTIONS and turn.state.status == COMPLETED
    answers = engine.answered(turn.state)
    assert list(answers) == QUICK_QUESTIONS
    assert answers["model_version"] == DEFAULTS["model_version"] and answers["target_accuracy"] == 93.9
    assert answers["target_latency_ms"] == 1250 and answers["target_containment"] == 61.5
    assert answers["needs"] == [
        "track a card that hasn't arrived | 5",
        "understand a fee | 4",
        "investment advice | 2",
    ]
    assert turn.state.defaults == DEFAULTS  # kept with the interview, for the brief's checks


def test_back_to_a_prefilled_question_shows_the_answer_and_ok_keeps_it(engine: InterviewEngine) -> None:
    done = run_quick(engine, {"target_accuracy": "95"})
    edit = engine.edit(done.state, "9")  # quick numbering: question 9 is the accuracy
    prompt = edit.prompt
    assert prompt is not None and prompt.question.id == "target_accuracy"
    assert prompt.previous_answer == 95 and prompt.suggestion == 95
    assert "Current answer: 95" in prompt.render() and "Prefilled" not in prompt.render()
    again = engine.answer(edit.state, "ok")
    assert again.state.status == COMPLETED and again.state.answers["target_accuracy"] == 95


def test_without_figures_the_questions_are_asked_plainly(engine: InterviewEngine) -> None:
    turn = engine.start("iv", "pm", QUICK, {"accuracy": None})
    while turn.prompt is not None and turn.prompt.question.id != "model_version":
        turn = engine.answer(turn.state, ANSWERS[turn.prompt.question.id])
    assert turn.prompt is not None and turn.prompt.suggestion is None
    assert "Prefilled" not in turn.prompt.render()
    refused = engine.answer(turn.state, "")
    assert refused.error == "please type an answer"


def test_a_full_interview_is_prefilled_too_where_it_asks_the_same(engine: InterviewEngine) -> None:
    turn = engine.start("iv", "pm", FULL, DEFAULTS)
    while turn.prompt is not None and turn.prompt.question.id != "target_accuracy":
        turn = engine.answer(turn.state, ANSWERS[turn.prompt.question.id])
    assert turn.prompt is not None and turn.prompt.suggestion == 93.9 and turn.prompt.count == len(ANSWERS)
    assert engine.answer(turn.state, "ok").state.answers["target_accuracy"] == 93.9


def test_switching_modes_keeps_the_answers(engine: InterviewEngine) -> None:
    turn = engine.start("iv", "pm")
    for qid in ("product", "target_users", "user_traits"):
        turn = engine.answer(turn.state, ANSWERS[qid])
    quick = engine.set_mode(turn.state, QUICK, DEFAULTS)
    assert quick.prompt is not None and quick.prompt.question.id == "needs" and quick.prompt.number == 3
    assert list(engine.answered(quick.state)) == ["product", "target_users"]  # traits: not asked here
    assert engine.back(quick.state).prompt.question.id == "target_users"  # type: ignore[union-attr]
    full = engine.set_mode(quick.state, FULL)
    assert full.prompt is not None and full.prompt.question.id == "needs"
    assert full.state.answers["user_traits"] == ["mobile-first", "travels abroad"]
    with pytest.raises(PositioningError, match="unknown interview mode 'tiny'"):
        engine.start("iv", "pm", "tiny")


def test_the_service_starts_a_quick_interview_with_the_caller_s_figures(service: InterviewService) -> None:
    first = service.start_or_resume("pm", mode=QUICK)
    assert "(quick: 12 questions)" in first.text and first.state.defaults == DEFAULTS
    # Resuming in the full mode switches; the answers stay; "quick" switches back.
    service.handle("pm", ANSWERS["product"])
    full = service.start_or_resume("pm", mode=FULL)
    assert "to the full interview" in full.text and full.state.mode == FULL
    assert full.state.current == "target_users"
    back = service.handle("pm", "quick")
    assert "to the quick interview (12 questions, 1 answered)" in back.text and back.state.mode == QUICK
    assert "quick interview" in service.status_text(back.state)


def test_a_full_interview_offers_the_quick_one(service: InterviewService) -> None:
    first = service.start_or_resume("pm")
    assert "Type quick for the quick interview (12 questions" in first.text
    assert first.state.mode == FULL and first.state.defaults == DEFAULTS


def test_figures_that_cannot_be_had_leave_the_questions_unfilled(
    engine: InterviewEngine, tmp_path: Path
) -> None:
    def broken() -> dict[str, Any]:
        raise OSError("no model")

    store = Store(tmp_path / "p.db")
    service = InterviewService(engine, store.interviews, defaults=broken)
    reply = service.start_or_resume("pm", mode=QUICK)
    assert reply.state.defaults == {} and reply.turn is not None and reply.turn.prompt is not None
    store.close()


def test_quick_scripts_are_checked(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    many = "".join(f"      - {{id: q{i}, prompt: 'Q', modes: [full, quick]}}\n" for i in range(13))
    path.write_text(f"id: x\nsteps:\n  - title: A\n    questions:\n{many}")
    with pytest.raises(ScriptError, match="asks 13 questions"):
        load_script(path)
    path.write_text(
        "id: x\nsteps:\n  - title: A\n    questions:\n      - {id: a, prompt: 'A', modes: [quick]}\n"
        "  - title: B\n    questions:\n      - {id: b, prompt: 'B'}\n"
    )
    with pytest.raises(ScriptError, match="every step"):
        load_script(path)
    path.write_text(
        "id: x\nsteps:\n  - title: A\n    questions:\n      - {id: a, prompt: 'A', modes: [short]}\n"
    )
    with pytest.raises(ScriptError, match="modes must be among"):
        load_script(path)
