"""The positioning interview engine driven step by step, without Slack: answers, bad answers, back,
skip, edit, follow-ups, cancel, and resume after a restart."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.storage import Store
from positioning.engine import ACTIVE, CANCELLED, COMPLETED, InterviewEngine, parse_answer
from positioning.errors import InterviewClosed, ScriptError
from positioning.script import DEFAULT_SCRIPT, load_script
from positioning.session import InterviewService

ANSWERS = {
    "product": "Teller, a chat assistant for Lumen Bank customers",
    "target_users": "Retail customers of a digital bank, 20-45, mobile first",
    "user_traits": "mobile-first; travels abroad",
    "needs": "track a card that hasn't arrived | 5\nunderstand a fee | 4\ninvestment advice | 2",
    "scenarios": "card lost abroad; payment declined",
    "competitors": "Big-bank phone lines: slow\nGeneric chatbots: shallow",
    "competitor_coverage": "2",
    "gap": "Instant, accurate answers with a human when needed",
    "gap_size": "4",
    "need_links": "track a card that hasn't arrived | intent:card_arrival",
    "resolution": "investment advice | outcome=adviser_call_booked",
    "need_coverage": "1 | 2\nunderstand a fee | 4",
    "market_match": "0.8 | the source article",
    "target_segments": "retail\nweb",
    "model_family": "1",
    "pretraining": "Use a pretrained model as is",
    "adaptation": "2",
    "peft_method": "LoRA, because adapters are small",
    "constraints": "1, 2",
    "domain_data": "Banking77 queries\nFAQ pages",
    "labelled_examples": "10003",
    "labelling": "4",
    "augmentation": "Paraphrasing",
    "evaluation_plan": "Held-out split, accuracy and macro-F1, signed off by the risk team",
    "target_accuracy": "94",
    "application_scenarios": "1,3,5",
    "integration": "REST API, Web chat, Slack",
    "architecture_notes": "CPU only, on premises",
    "target_latency_ms": "1,500",
    "promotion": "In-app banner to existing customers first",
    "feedback_channels": "1, 2",
    "iteration": "Monthly",
    "success_metric": "Containment rate",
    "target_containment": "60",
}


@pytest.fixture(scope="module")
def engine() -> InterviewEngine:
    return InterviewEngine(load_script(DEFAULT_SCRIPT))


def run_through(engine: InterviewEngine, skip_optional: bool = False):  # type: ignore[no-untyped-def]
    turn = engine.start("iv1", "pm1")
    while not turn.finished:
        q = turn.prompt.question
        if skip_optional and not q.required:
            turn = engine.skip(turn.state)
        else:
            turn = engine.answer(turn.state, ANSWERS[q.id])
        assert turn.error is None, (q.id, turn.error)
    return turn


def test_the_default_script_has_the_five_steps(engine: InterviewEngine) -> None:
    titles = [s.title for s in engine.script.steps]
    assert titles == [
        "Market research and personas",
        "Technical architecture",
        "Pre-training and fine-tuning plan",
        "Technical landing and product design",
        "Go-to-market and continuous optimisation",
    ]


def test_a_full_interview_parses_every_answer_type(engine: InterviewEngine) -> None:
    turn = run_through(engine)
    assert turn.state.status == COMPLETED and turn.prompt is None
    answers = engine.answered(turn.state)
    assert answers["needs"] == [
        "track a card that hasn't arrived | 5",
        "understand a fee | 4",
        "investment advice | 2",
    ]
    assert answers["competitor_coverage"] == 2 and answers["labelled_examples"] == 10003.0
    assert answers["model_family"] == "BERT-like encoder"
    assert answers["constraints"] == ["CPU only", "Under 10 ms per message"]
    assert answers["peft_method"].startswith("LoRA")


def test_progress_and_prompts(engine: InterviewEngine) -> None:
    turn = engine.start("iv", "pm")
    assert turn.prompt.progress == "step 1 of 5" and turn.prompt.question.id == "product"
    for qid in (
        "product",
        "target_users",
        "user_traits",
        "needs",
        "scenarios",
        "competitors",
        "competitor_coverage",
        "gap",
        "gap_size",
    ):
        turn = engine.answer(turn.state, ANSWERS[qid])
    for optional in ("need_links", "resolution", "need_coverage", "market_match", "target_segments"):
        assert turn.prompt.question.id == optional and not turn.prompt.question.required
        turn = engine.skip(turn.state)
    assert turn.prompt.progress == "step 2 of 5"
    text = turn.prompt.render()
    assert "1. BERT-like encoder" in text and "step 2 of 5: Technical architecture" in text


@pytest.mark.parametrize(
    ("question", "bad", "message"),
    [
        ("competitor_coverage", "seven", "please answer with a number"),
        ("competitor_coverage", "9", "at most 5"),
        ("competitor_coverage", "2.5", "whole number"),
        ("needs", "fast answers", 'ends with "| 1" to "| 5"'),
        ("model_family", "7", "not one of the options"),
        ("model_family", "1, 2", "pick one option"),
        ("product", "   ", "please type an answer"),
        ("target_accuracy", "150", "at most 100"),
    ],
)
def test_bad_answers_are_explained_and_change_nothing(
    engine: InterviewEngine, question: str, bad: str, message: str
) -> None:
    q = engine.script.question(question)
    with pytest.raises(ValueError, match=message):
        parse_answer(q, bad)
    turn = engine.start("iv", "pm")
    refused = engine.answer(turn.state, "   ")
    assert refused.error == "please type an answer" and refused.state == turn.state


def test_back_skip_and_edit(engine: InterviewEngine) -> None:
    turn = engine.start("iv", "pm")
    turn = engine.answer(turn.state, ANSWERS["product"])
    assert engine.back(turn.state).prompt.question.id == "product"
    assert engine.back(engine.start("iv", "pm").state).error == "this is the first question"
    # back, then a new answer replaces the old one and the interview continues where it was
    back = engine.back(turn.state)
    again = engine.answer(back.state, "Teller v2")
    assert again.state.answers["product"] == "Teller v2" and again.prompt.question.id == "target_users"
    assert engine.skip(again.state).error == "this question is required; it cannot be skipped"
    # edit an earlier answer by number after finishing: the interview completes again with the change
    done = run_through(engine, skip_optional=True)
    assert "constraints" in done.state.skipped and "constraints" not in done.state.answers
    edit = engine.edit(done.state, "9")
    assert edit.state.status == ACTIVE and edit.prompt.question.id == "gap_size"
    assert edit.prompt.previous_answer == 4
    redone = engine.answer(edit.state, "5")
    assert redone.state.status == COMPLETED and redone.state.answers["gap_size"] == 5
    assert engine.edit(done.state, "no_such_question").error.startswith("no question 'no_such_question'")


def test_follow_ups_depend_on_earlier_answers(engine: InterviewEngine) -> None:
    turn = engine.start("iv", "pm")
    while turn.prompt.question.id != "adaptation":
        turn = engine.answer(turn.state, ANSWERS[turn.prompt.question.id])
    full = engine.answer(turn.state, "Full fine-tune")
    assert full.prompt.question.id == "constraints"  # no LoRA question
    peft = engine.answer(turn.state, "Parameter-efficient fine-tune")
    assert peft.prompt.question.id == "peft_method"
    # editing the choice away makes the follow-up's answer stop counting
    answered = engine.answer(peft.state, ANSWERS["peft_method"])
    changed = engine.answer(engine.edit(answered.state, "adaptation").state, "Prompting only")
    assert "peft_method" not in engine.answered(changed.state)


def test_cancel_closes_the_interview(engine: InterviewEngine) -> None:
    cancelled = engine.cancel(engine.start("iv", "pm").state)
    assert cancelled.state.status == CANCELLED and cancelled.prompt is None
    with pytest.raises(InterviewClosed):
        engine.answer(cancelled.state, "anything")


def test_sessions_resume_after_a_restart_and_keep_users_apart(
    engine: InterviewEngine, tmp_path: Path
) -> None:
    store = Store(tmp_path / "p.db")
    service = InterviewService(engine, store.interviews)
    first = service.start_or_resume("alice")
    service.start_or_resume("bob")
    service.handle("alice", ANSWERS["product"])
    service.handle("alice", ANSWERS["target_users"])
    service.handle("bob", "Bob's product")
    assert "Please give at least 1 item" in service.handle("alice", " ; ").text
    # "edit" without a question is a question back, not an answer
    assert service.handle("alice", "edit").text.startswith("Which question?")
    assert "user_traits" not in service.store.active_for("alice").answers  # type: ignore[union-attr]
    store.close()

    restarted = InterviewService(engine, Store(tmp_path / "p.db").interviews)
    resumed = restarted.start_or_resume("alice")
    assert resumed.state.id == first.state.id and "Resuming" in resumed.text
    assert resumed.state.answers == {"product": ANSWERS["product"], "target_users": ANSWERS["target_users"]}
    assert restarted.store.active_for("bob").answers == {"product": "Bob's product"}
    status = restarted.handle("alice", "status").text
    assert "step 1 of 5" in status and "2 answers" in status
    assert "Paused" in restarted.handle("alice", "pause").text
    assert "Type yes to cancel it" in restarted.handle("alice", "cancel").text  # asks first
    assert "cancelled" in restarted.handle("alice", "yes").text
    assert restarted.store.active_for("alice") is None
    # a new interview for the same user does not disturb the old one
    second = restarted.start_or_resume("alice", new=True)
    assert second.state.id != first.state.id and len(restarted.store.for_user("alice")) == 2


def test_broken_scripts_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        "id: x\nsteps:\n  - title: A\n    questions:\n      - {id: a, prompt: 'A', type: colour}\n"
    )
    with pytest.raises(ScriptError, match="unknown type 'colour'"):
        load_script(path)
    path.write_text(
        "id: x\nsteps:\n  - title: A\n    questions:\n      - {id: a, prompt: 'A'}\n"
        "      - {id: b, prompt: 'B', when: {question: c, equals: x}}\n"
    )
    with pytest.raises(ScriptError, match="not an earlier question"):
        load_script(path)


def test_ok_on_a_list_with_nothing_shown_is_not_an_item(engine: InterviewEngine) -> None:
    """ "ok" confirms what a prompt shows; on a list question that shows nothing it is refused
    (never stored as the list's one item), and the interview stays on that question."""
    turn = engine.start("iv", "pm")
    while turn.prompt is not None and turn.prompt.question.id != "user_traits":
        turn = engine.answer(turn.state, ANSWERS[turn.prompt.question.id])
    assert turn.prompt is not None and turn.prompt.suggestion is None
    for raw in ("ok", ["OK"], "okay"):
        refused = engine.answer(turn.state, raw)
        assert refused.error is not None and "nothing to keep" in refused.error
        assert refused.state == turn.state
    kept = engine.answer(turn.state, ["ok-ish traveller", "mobile-first"])
    assert kept.error is None and kept.state.answers["user_traits"] == ["ok-ish traveller", "mobile-first"]
