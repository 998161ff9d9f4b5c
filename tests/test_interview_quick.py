"""The quick interview (#16): at most 12 questions over the five steps, Teller's own figures
prefilled (passed in by the caller) and kept with Enter or "ok", or replaced; Teller's suggested
links of every need confirmed in one question (in place of the gap's size, which the score does not
read); the full interview unchanged; switching between them keeps the answers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.storage import Store
from positioning.engine import _NUMBER_ERROR, COMPLETED, FULL, QUICK, InterviewEngine, Turn
from positioning.errors import PositioningError, ScriptError
from positioning.script import DEFAULT_SCRIPT, QUICK_LIMIT, load_script
from positioning.session import InterviewService
from tests.test_interview import ANSWERS as FULL_ANSWERS

#: The quick interview rates every need's competitor coverage (no overall rating).
ANSWERS = {**FULL_ANSWERS, "need_coverage": "1 | 2\nunderstand a fee | 4\n3 | 1"}

QUICK_QUESTIONS = [
    "product",
    "target_users",
    "needs",
    "competitors",
    "gap",
    "need_links",
    "need_coverage",
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
    # Facts are prefilled; a target only shows the figure it will be checked against.
    assert {q.id: q.prefill for q in quick if q.prefill} == {"model_version": "model_version"}
    shown = {q.id: q.measured for q in quick if q.measured}
    assert shown == {
        "target_accuracy": "accuracy",
        "target_latency_ms": "latency_ms",
        "target_containment": "containment",
    }
    assert not any(engine.script.question(q).required for q in shown)


def run_quick(engine: InterviewEngine, typed: dict[str, str]) -> Turn:
    turn = engine.start("iv", "pm", QUICK, DEFAULTS)
    while not turn.finished:
        q = turn.prompt.question  # type: ignore[union-attr]
        turn = engine.answer(turn.state, typed.get(q.id, ANSWERS.get(q.id, "")))
        assert turn.error is None, (q.id, turn.error)
    return turn


def test_facts_are_prefilled_and_targets_show_the_measured_figure_as_information_only(
    engine: InterviewEngine,
) -> None:
    """The model is prefilled (Enter or "ok" keeps it); a target shows Teller's figure beside it but
    Enter means "no target stated", never the measured figure (else every launch check passes)."""
    turn = engine.start("iv", "pm", QUICK, {**DEFAULTS, "containment_n": 137})
    seen = []
    while not turn.finished:
        prompt = turn.prompt
        assert prompt is not None and prompt.count == 12 and prompt.number == len(seen) + 1
        seen.append(prompt.question.id)
        if prompt.question.id == "target_accuracy":
            text = prompt.render()
            assert prompt.suggestion is None and prompt.takes_empty
            assert "For information, Teller measures: 93.9 (Teller's measured accuracy" in text
            assert "press Enter (or 'skip') to state none" in text and "Prefilled" not in text
            assert engine.answer(turn.state, "ok").error == _NUMBER_ERROR  # "ok" keeps nothing here
            turn = engine.answer(turn.state, "")  # Enter: no target stated
        elif prompt.question.id == "model_version":
            assert prompt.suggestion == DEFAULTS["model_version"]
            turn = engine.answer(turn.state, "OK")
        elif prompt.question.id == "target_latency_ms":
            turn = engine.answer(turn.state, "1,250")  # a target of the PM's own
        elif prompt.question.id == "target_containment":
            assert "Teller measures: 61.5 (" in prompt.render() and "137 conversations)" in prompt.render()
            turn = engine.answer(turn.state, "   ")
        else:
            assert prompt.suggestion is None  # not prefilled: "ok" would be an answer
            turn = engine.answer(turn.state, ANSWERS[prompt.question.id])
        assert turn.error is None
    assert seen == QUICK_QUESTIONS and turn.state.status == COMPLETED
    answers = engine.answered(turn.state)
    assert "target_accuracy" not in answers and "target_containment" not in answers
    assert {"target_accuracy", "target_containment"} <= set(turn.state.skipped)
    assert answers["model_version"] == DEFAULTS["model_version"] and answers["target_latency_ms"] == 1250
    assert answers["needs"] == [
        "track a card that hasn't arrived | 5",
        "understand a fee | 4",
        "investment advice | 2",
    ]
    assert turn.state.defaults["accuracy"] == 93.9  # kept with the interview, shown again on edit


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


def test_a_full_interview_shows_the_figures_too_and_enter_states_no_target(engine: InterviewEngine) -> None:
    turn = engine.start("iv", "pm", FULL, DEFAULTS)
    while turn.prompt is not None and turn.prompt.question.id != "target_accuracy":
        turn = engine.answer(turn.state, ANSWERS[turn.prompt.question.id])
    assert turn.prompt is not None and turn.prompt.suggestion is None and turn.prompt.measured == 93.9
    assert turn.prompt.count == len(ANSWERS)
    enter = engine.answer(turn.state, "")
    assert enter.error is None and "target_accuracy" not in enter.state.answers
    assert engine.answer(turn.state, "95").state.answers["target_accuracy"] == 95


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


def test_the_quick_interview_confirms_teller_s_links_in_one_question() -> None:
    """One question shows Teller's links for every need: Enter or "ok" accepts them all, edited
    lines replace those needs' links; the quick interview still asks 12 questions."""
    from tests.test_interview_links import SUGGESTED, Suggester

    suggest = Suggester()
    engine = InterviewEngine(load_script(DEFAULT_SCRIPT), suggest=suggest)
    turn = engine.start("iv", "pm", QUICK, DEFAULTS)
    while turn.prompt is not None and turn.prompt.question.id != "need_links":
        turn = engine.answer(turn.state, ANSWERS[turn.prompt.question.id])
    prompt = turn.prompt
    assert prompt is not None and prompt.number == 6 and prompt.count == 12
    assert prompt.suggestion == [line.rstrip() for line in SUGGESTED]
    text = prompt.render()
    assert "Teller suggests:\n  track a card that hasn't arrived | intent:card_arrival\n" in text
    assert "Type ok (or press Enter) to confirm it" in text
    assert "gap_size" not in [q.id for q in engine.questions(turn.state)]
    kept = engine.answer(turn.state, "")  # Enter
    assert kept.error is None and kept.state.answers["need_links"] == [line.rstrip() for line in SUGGESTED]
    assert kept.prompt is not None and kept.prompt.question.id == "need_coverage"
    edited = engine.answer(turn.state, "3 | route:advice")
    assert edited.error is None and edited.state.answers["need_links"] == ["investment advice | route:advice"]
    done = edited
    while not done.finished:
        assert done.prompt is not None
        done = engine.answer(
            done.state, "ok" if done.prompt.suggestion is not None else ANSWERS[done.prompt.question.id]
        )
    assert list(engine.answered(done.state)) == QUICK_QUESTIONS


def _at_links(tmp_path: Path) -> tuple[InterviewService, Store, Any]:
    from tests.test_interview_links import Suggester

    engine = InterviewEngine(load_script(DEFAULT_SCRIPT), suggest=Suggester())
    store = Store(tmp_path / "links.db")
    service = InterviewService(engine, store.interviews, defaults=lambda: dict(DEFAULTS))
    state = service.start_or_resume("pm", mode=QUICK).state
    while state.current != "need_links":
        state = service.handle("pm", ANSWERS[state.current or ""]).state
    return service, store, state


def test_ok_confirms_a_list_suggestion_at_once_and_commands_work_in_a_continuation(tmp_path: Path) -> None:
    service, store, state = _at_links(tmp_path)
    try:

        def reader(*lines: str) -> Any:
            typed = iter(lines)
            asked: list[str] = []

            def read(prompt: str) -> str:
                asked.append(prompt)
                return next(typed)

            return read, asked

        read, asked = reader("ok", "never read")
        assert service.read_answer(state, read) == "ok" and asked == ["> "]  # no "..." continuation
        assert service.handle("pm", "ok").state.current == "need_coverage"
        state = service.handle("pm", "back").state
        assert state.current == "need_links"
        for command in ("/pause", "cancel", "pause", "/cancel", "/back"):
            read, _ = reader("1 | route:advice", command, "")
            assert service.read_answer(state, read) == command
        read, _ = reader("1 | route:advice", "back", "")  # a bare "back" may be an item: not a command
        assert service.read_answer(state, read) == "1 | route:advice\nback"
    finally:
        store.close()


def test_errors_keep_the_case_of_names(tmp_path: Path) -> None:
    service, store, _state = _at_links(tmp_path)
    try:
        reply = service.handle("pm", "1 | route:adviec")
        assert "is not one of Teller's routes" in reply.text
    finally:
        store.close()


def test_quick_mode_rates_each_need_so_m_depends_on_demand(engine: InterviewEngine) -> None:
    """#16: the quick interview asks competitors' coverage of every need (not one market-wide
    rating), so M weighs each need's openness by its measured demand instead of being 1 - coverage."""
    from positioning.needs import parse_needs, with_coverage
    from positioning.outcomes import judge
    from positioning.scoring import score
    from tests.test_positioning_score import LINKS, LOG

    typed = {"needs": "track a card that hasn't arrived | 5\nknow the overdraft fee | 3"}
    turn = engine.start("iv", "pm", QUICK, DEFAULTS)
    while turn.prompt is not None and turn.prompt.question.id != "need_coverage":
        q = turn.prompt.question.id
        turn = engine.answer(turn.state, typed.get(q, ANSWERS[q]))
    prompt = turn.prompt
    assert prompt is not None and prompt.question.required and "Optional" not in prompt.render()
    assert "1. track a card that hasn't arrived; 2. know the overdraft fee" in prompt.render()
    assert engine.skip(turn.state).error == "this question is required; it cannot be skipped"
    partial = engine.answer(turn.state, "1 | 1")
    assert partial.error == "please give a line for every need; missing: 2. know the overdraft fee"
    done = run_quick(engine, {**typed, "need_coverage": "1 | 1\n2 | 5"})
    answers = engine.answered(done.state)
    assert "competitor_coverage" not in answers
    needs = with_coverage(parse_needs(answers["needs"]), answers["need_coverage"], None)
    assert [(n.competitor_coverage, n.coverage_source) for n in needs] == [
        (0.0, "rated per need: 1"),
        (1.0, "rated per need: 5"),
    ]
    links = LINKS[:2]
    # Card: 10 of 20 messages, open (1 - 0); fee: 5 of 20, covered (1 - 1).
    m = score(needs, judge(LOG, links)).m
    assert m == pytest.approx((5 * 10 / 20) / (5 * 10 / 20 + 3 * 5 / 20))
    # More fee traffic (the covered need) lowers M: it depends on demand, not only on coverage.
    more_fees = LOG + [LOG[10]] * 15
    assert score(needs, judge(more_fees, links)).m == pytest.approx(
        (5 * 10 / 35) / (5 * 10 / 35 + 3 * 20 / 35)
    )
    assert score(needs, judge(more_fees, links)).m < m


def _to_needs(engine: InterviewEngine, service: InterviewService) -> Any:
    state = service.start_or_resume("terminal", new=True, mode=QUICK).state
    for key in ("product", "target_users"):
        state = service.handle("terminal", ANSWERS[key], interview_id=state.id).state
    assert state.current == "needs"
    return state


@pytest.mark.parametrize(
    "needs",
    [
        "track a card that hasn't arrived | 5\ntrack a card that hasn't arrived | 2",
        "track a card that hasn't arrived | 5\n  Track a card  that hasn't ARRIVED| 2",
    ],
)
def test_a_need_listed_twice_is_refused_when_the_needs_are_given(
    engine: InterviewEngine, service: InterviewService, needs: str
) -> None:
    """One line per need cannot be answered for a need listed twice (case and spaces aside): the
    list is refused at once, naming the need, instead of every later per-need answer failing."""
    state = _to_needs(engine, service)
    reply = service.handle("terminal", needs, interview_id=state.id)
    assert reply.state.current == "needs" and "needs" not in reply.state.answers
    assert "“track a card that hasn't arrived” is listed twice (items 1 and 2)" in reply.text
    assert "list each one once" in reply.text
    fixed = service.handle("terminal", "track a card that hasn't arrived | 5\nunderstand a fee | 4", state.id)
    assert fixed.state.current == "competitors"
    assert engine.script.question("needs").unique and not engine.script.question("competitors").unique


def test_an_interview_stored_with_a_need_listed_twice_says_how_to_fix_it(
    engine: InterviewEngine, service: InterviewService
) -> None:
    """An interview saved before lists were checked carries the repeated need: its per-need question
    says which need is repeated and which ``edit`` fixes it, instead of refusing every answer."""
    state = _to_needs(engine, service)
    state.answers["needs"] = ["track a card | 5", "track a card | 2"]
    state.current = "need_coverage"
    service.store.save(state)
    reply = service.handle("terminal", "track a card | 2", interview_id=state.id)
    assert "“track a card” is listed twice" in reply.text and "type edit 3 to fix it" in reply.text
    skipped = service.handle("terminal", "skip", interview_id=state.id)
    assert "type edit 3 to fix it" in skipped.text
    edited = service.handle("terminal", "edit 3", interview_id=state.id)
    assert edited.state.current == "needs"
