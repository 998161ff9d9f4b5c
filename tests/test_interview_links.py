"""The full interview's optional per-need questions (#16, item 1): Teller's suggested links for each
need, confirmed with Enter/"ok" or edited; per-need competitor coverage, resolution rules and an
entered M; lines that name a need by its number; answers tied to needs that changed asked again.
The quick interview asks only for the links. Every intent, entry and route a link names is checked
against what Teller knows (passed in by the caller): an unknown one is refused with the closest known
ones, and the PM types the lines again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.storage import Store
from positioning.engine import COMPLETED, QUICK, InterviewEngine, Suggestion, Turn
from positioning.errors import PositioningError
from positioning.needs import KnownIds, NeedLink, check_link
from positioning.script import DEFAULT_SCRIPT, QUICK_LIMIT, load_script
from positioning.session import InterviewService
from tests.test_interview import ANSWERS

OPTIONAL = ["need_links", "resolution", "need_coverage", "market_match"]
SUGGESTED = [
    "track a card that hasn't arrived | intent:card_arrival",
    "understand a fee | kb:overdraft_fee",
    "investment advice | ",
]


class Suggester:
    """A caller's suggestion: links for each need, counting its calls."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[dict[str, Any]] = []
        self.fail = fail

    def __call__(self, key: str, answers: dict[str, Any]) -> Suggestion | None:
        if key != "links":  # the target users' segments: nothing to suggest here
            return None
        self.calls.append(dict(answers))
        if self.fail:
            raise RuntimeError("the classifier is down")
        needs = [n.split("|")[0].strip() for n in answers["needs"]]
        lines = [line for line in SUGGESTED if line.split("|")[0].strip() in needs]
        lines += [f"{n} | " for n in needs if not any(line.startswith(n + " |") for line in lines)]
        return Suggestion(lines, "why: card arrival answered 4 of 5 logged messages like it")


def to_links(engine: InterviewEngine) -> Turn:
    turn = engine.start("iv_links", "pm")
    while turn.prompt is not None and turn.prompt.question.id != "need_links":
        turn = engine.answer(turn.state, ANSWERS[turn.prompt.question.id])
        assert turn.error is None, turn.error
    return turn


def test_full_interview_asks_the_optional_questions_and_quick_only_the_links() -> None:
    script = load_script(DEFAULT_SCRIPT)
    full = [q.id for q in script.ordered("full")]
    assert full[9:13] == OPTIONAL  # after the market questions, the numbers before them unchanged
    assert all(not script.question(q).required for q in OPTIONAL)
    quick = [q.id for q in script.ordered(QUICK)]
    # The quick interview asks the links and (in place of one market-wide rating, #16) every
    # need's competitor coverage, required there.
    assert set(OPTIONAL) & set(quick) == {"need_links", "need_coverage"} and len(quick) <= QUICK_LIMIT == 12
    assert script.question("need_coverage").required_for(QUICK)
    assert not script.question("need_coverage").required_for("full")


def test_teller_s_links_are_shown_per_need_and_ok_confirms_them() -> None:
    suggest = Suggester()
    engine = InterviewEngine(load_script(DEFAULT_SCRIPT), suggest=suggest)
    turn = to_links(engine)
    prompt = turn.prompt
    assert (
        prompt is not None and prompt.suggestion == [line.rstrip() for line in SUGGESTED] and prompt.multiline
    )
    text = prompt.render()
    assert "Teller suggests:\n  track a card that hasn't arrived | intent:card_arrival\n" in text
    assert "1. track a card that hasn't arrived; 2. understand a fee; 3. investment advice" in text
    assert "(why: card arrival answered 4 of 5 logged messages like it)" in text
    assert "Type ok (or press Enter) to confirm it" in text and "Optional: 'skip'" in text
    assert len(suggest.calls) == 1 and set(suggest.calls[0]) >= {"needs", "gap_size"}
    kept = engine.answer(turn.state, "ok")
    assert kept.error is None and kept.state.answers["need_links"] == [line.rstrip() for line in SUGGESTED]
    assert kept.prompt is not None and kept.prompt.question.id == "resolution"
    # Back to it: the answer is shown line by line and the suggestion is not worked out again.
    back = engine.back(kept.state)
    assert back.prompt is not None and "Current answer:\n  track a card" in back.prompt.render()
    assert len(suggest.calls) == 1


def test_the_pm_edits_links_by_need_name_or_number() -> None:
    engine = InterviewEngine(load_script(DEFAULT_SCRIPT), suggest=Suggester())
    turn = to_links(engine)
    edited = engine.answer(
        turn.state, "2 | kb:overdraft_fee, intent:card_payment_fee_charged\nINVESTMENT ADVICE | route:advice"
    )
    assert edited.error is None
    assert edited.state.answers["need_links"] == [
        "understand a fee | kb:overdraft_fee, intent:card_payment_fee_charged",
        "investment advice | route:advice",
    ]
    for bad, message in [
        ("open a safe box | kb:x", "'open a safe box' is not one of the needs (1. track a card"),
        ("7 | kb:x", "'7' is not one of the needs"),
        ("understand a fee | colour:red", "'colour:red' is not intent:, kb:, route: or example:"),
        ("understand a fee", "expected 'need | intent:NAME, kb:ID'"),
        ("2 | kb:a\nunderstand a fee | kb:b", "'understand a fee' is given twice"),
    ]:
        refused = engine.answer(turn.state, bad)
        assert refused.error is not None and message in refused.error, (bad, refused.error)
        assert refused.state == turn.state


def test_coverage_resolution_and_m_are_checked_per_need() -> None:
    engine = InterviewEngine(load_script(DEFAULT_SCRIPT))
    turn = to_links(engine)
    assert turn.prompt is not None and turn.prompt.suggestion is None  # no suggester: asked plainly
    turn = engine.skip(turn.state)
    assert turn.prompt is not None and turn.prompt.question.id == "resolution"
    bad = engine.answer(turn.state, "3 | outcome")
    assert bad.error is not None and "expected 'routes=a,b' and/or 'outcome=name'" in bad.error
    # A rule holds ";" (one line per need, never split at it).
    turn = engine.answer(turn.state, "3 | routes=intent,advice; outcome=adviser_call_booked")
    assert turn.state.answers["resolution"] == [
        "investment advice | routes=intent,advice; outcome=adviser_call_booked"
    ]
    bad = engine.answer(turn.state, "understand a fee | 9")
    assert bad.error is not None and "a rating is 1 to 5" in bad.error
    turn = engine.answer(turn.state, "1 | 2\nunderstand a fee | 40%")
    assert turn.state.answers["need_coverage"] == [
        "track a card that hasn't arrived | 2",
        "understand a fee | 40%",
    ]
    bad = engine.answer(turn.state, "0.8")
    assert bad.error is not None and "say where the figure comes from" in bad.error
    assert "between 0 and 1" in (engine.answer(turn.state, "1.8 | study").error or "")
    turn = engine.answer(turn.state, "0.8 | the source article's market study")
    assert turn.state.answers["market_match"] == "0.8 | the source article's market study"
    assert turn.prompt is not None and turn.prompt.question.id == "target_segments"
    turn = engine.skip(turn.state)
    assert turn.prompt is not None and turn.prompt.question.id == "model_family"


def test_answers_tied_to_needs_that_changed_are_asked_again() -> None:
    suggest = Suggester()
    engine = InterviewEngine(load_script(DEFAULT_SCRIPT), suggest=suggest)
    turn = to_links(engine)
    turn = engine.answer(turn.state, "ok")
    turn = engine.answer(turn.state, ANSWERS["resolution"])
    turn = engine.answer(turn.state, ANSWERS["need_coverage"])
    turn = engine.answer(turn.state, ANSWERS["market_match"])
    while not turn.finished:
        assert turn.prompt is not None
        turn = engine.answer(turn.state, ANSWERS[turn.prompt.question.id])
    assert turn.state.status == COMPLETED
    # The PM renames a need: links and coverage naming the old wording no longer fit.
    edit = engine.edit(turn.state, "needs")
    changed = engine.answer(edit.state, "track a card that hasn't arrived | 5\nunderstand our fees | 4")
    assert changed.prompt is not None and changed.prompt.question.id == "need_links"
    assert "need_links" not in changed.state.answers and "need_coverage" not in changed.state.answers
    assert "resolution" not in changed.state.answers  # it named "investment advice", gone too
    assert changed.prompt.suggestion == [
        "track a card that hasn't arrived | intent:card_arrival",
        "understand our fees |",
    ]
    assert len(suggest.calls) == 2  # worked out again for the new needs
    again = engine.answer(changed.state, "ok")
    assert again.prompt is not None and again.prompt.question.id == "resolution"


def test_a_failing_suggester_leaves_the_question_plain() -> None:
    engine = InterviewEngine(load_script(DEFAULT_SCRIPT), suggest=Suggester(fail=True))
    turn = to_links(engine)
    assert turn.prompt is not None and turn.prompt.suggestion is None
    assert "Teller suggests" not in turn.prompt.render()
    assert engine.skip(turn.state).prompt.question.id == "resolution"  # type: ignore[union-attr]


def test_the_terminal_confirms_the_suggestion_with_enter_and_reads_edits_line_by_line(tmp_path: Path) -> None:
    store = Store(tmp_path / "p.db")
    try:
        service = InterviewService(
            InterviewEngine(load_script(DEFAULT_SCRIPT), suggest=Suggester()), store.interviews
        )
        state = service.start_or_resume("pm").state
        while state.current != "need_links":
            state = service.handle("pm", ANSWERS[state.current or ""]).state
        typed = iter([""])
        assert service.read_answer(state, lambda _: next(typed)) == ""
        kept = service.handle("pm", "")
        assert kept.state.answers["need_links"][0] == SUGGESTED[0]
        typed = iter(["1 | intent:card_arrival, intent:card_delivery_estimate", "3 | route:advice", ""])
        again = service.handle("pm", "back").state
        text = service.read_answer(again, lambda _: next(typed))
        edited = service.handle("pm", text)
        assert edited.state.answers["need_links"] == [
            "track a card that hasn't arrived | intent:card_arrival, intent:card_delivery_estimate",
            "investment advice | route:advice",
        ]
    finally:
        store.close()


@pytest.mark.parametrize("question", OPTIONAL)
def test_the_optional_questions_can_be_skipped(question: str) -> None:
    engine = InterviewEngine(load_script(DEFAULT_SCRIPT), suggest=Suggester())
    turn = to_links(engine)
    while turn.prompt is not None and turn.prompt.question.id != question:
        turn = engine.skip(turn.state)
    skipped = engine.skip(turn.state)
    assert skipped.error is None and question in skipped.state.skipped


KNOWN = KnownIds(
    frozenset({"card_arrival", "card_delivery_estimate", "lost_or_stolen_card", "exchange_rate"}),
    frozenset({"overdraft_fee", "card_delivery", "whats_the_overdraft_fee"}),
)


def test_links_name_only_ids_teller_knows() -> None:
    assert check_link(
        NeedLink("fees", ("card_arrival",), ("overdraft_fee",), ("advice",)), KNOWN
    ).intents == ("card_arrival",)
    with pytest.raises(PositioningError) as caught:
        check_link(
            NeedLink("track a card", ("card_arival", "weather"), ("overdraft_fe",), ("advise",)), KNOWN
        )
    message = str(caught.value)
    assert message.startswith("track a card: ")
    assert "route:advise is not one of Teller's routes (closest: advice)" in message
    assert "intent:card_arival is not one of the classifier's intents (closest: card_arrival" in message
    assert "intent:weather is not one of the classifier's intents (none is close)" in message
    assert "kb:overdraft_fe is not one of the knowledge base's entries (closest: overdraft_fee" in message
    # Without the ids (the caller cannot say), routes are still checked against Teller's own.
    assert check_link(NeedLink("x", ("anything",), ("any",)), None).kb_ids == ("any",)
    with pytest.raises(PositioningError, match="route:faqs is not one of Teller's routes"):
        check_link(NeedLink("x", routes=("faqs",)), None)


def test_an_unknown_id_is_refused_with_the_closest_and_the_pm_types_it_again() -> None:
    asked = []

    def known() -> KnownIds:
        asked.append(1)
        return KNOWN

    engine = InterviewEngine(load_script(DEFAULT_SCRIPT), suggest=Suggester(), known=known)
    turn = to_links(engine)
    assert turn.prompt is not None and turn.prompt.suggestion is not None  # the suggestion is valid
    calls = len(asked)
    refused = engine.answer(turn.state, "1 | intent:card_arival, kb:card_delivry\n3 | route:advice")
    assert refused.error is not None
    assert (
        "track a card that hasn't arrived: intent:card_arival is not one of the classifier's intents "
        "(closest: card_arrival" in refused.error
    )
    assert (
        "kb:card_delivry is not one of the knowledge base's entries (closest: card_delivery)" in refused.error
    )
    # Nothing is lost: the same question, the same state, Teller's suggestion still shown.
    assert refused.state == turn.state and refused.prompt == turn.prompt
    assert len(asked) == calls + 1  # asked when the links were answered, not before each answer
    bad_route = engine.answer(turn.state, "2 | route:faqs")
    assert bad_route.error is not None and "route:faqs is not one of Teller's routes (closest: faq)" in (
        bad_route.error
    )
    fixed = engine.answer(refused.state, "1 | intent:card_arrival, kb:card_delivery\n3 | route:advice")
    assert fixed.error is None and fixed.state.answers["need_links"] == [
        "track a card that hasn't arrived | intent:card_arrival, kb:card_delivery",
        "investment advice | route:advice",
    ]


def test_a_suggestion_naming_an_unknown_id_is_not_shown_and_unreadable_ids_are_not_checked() -> None:
    stale = InterviewEngine(
        load_script(DEFAULT_SCRIPT),
        suggest=Suggester(),
        known=lambda: KnownIds(frozenset({"lost_or_stolen_card"}), frozenset()),
    )
    turn = to_links(stale)  # "intent:card_arrival" and "kb:overdraft_fee" are unknown here
    assert turn.prompt is not None and turn.prompt.suggestion is None

    def broken() -> KnownIds:
        raise RuntimeError("the model cannot be read")

    engine = InterviewEngine(load_script(DEFAULT_SCRIPT), suggest=Suggester(), known=broken)
    turn = to_links(engine)
    kept = engine.answer(turn.state, "1 | intent:anything_at_all")
    assert kept.error is None
    assert "route:nowhere is not one of Teller's routes" in (
        engine.answer(turn.state, "1 | route:nowhere").error or ""
    )
