"""The brief on Teller's own store: outcomes read from the log (who asked, when, thumbs down,
handoffs), links suggested from the classifier and the knowledge base, and the PM's optional answers
(per-need coverage, confirmed links, resolution rules, an entered M)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.assistant import build_core
from bot.core import Incoming
from bot.positioning_desk import OPTIONAL_ANSWERS, PositioningDesk
from bot.settings import get_settings
from positioning.engine import COMPLETED
from tests.test_interview import ANSWERS


def _completed(desk: PositioningDesk, extra: dict[str, object]) -> str:
    """A finished interview with the usual answers, plus ``extra`` answers set directly (questions
    the interview may not ask yet)."""
    turn = desk.engine.start("iv_desk0001", "terminal")
    while not turn.finished and turn.prompt is not None:
        if turn.prompt.question.id in OPTIONAL_ANSWERS:  # set in ``extra`` instead
            turn = desk.engine.skip(turn.state)
            continue
        turn = desk.engine.answer(turn.state, ANSWERS[turn.prompt.question.id])
        assert turn.error is None, turn.error
    state = turn.state
    assert state.status == COMPLETED
    state.answers.update(extra)
    desk.service.store.save(state)
    return state.id


def test_brief_reads_outcomes_from_the_store(teller_env: Path) -> None:
    settings = get_settings()
    core = build_core(settings)
    desk = PositioningDesk(settings, policy=lambda: core.policy, store=core.store)
    try:
        replies = {}
        for user, text in [
            ("u1", "What's the overdraft fee?"),
            ("u2", "What's the overdraft fee?"),
            ("u3", "What's the overdraft fee?"),
            ("u4", "what's the weather in Paris"),
        ]:
            segment = "premier" if user == "u2" else None  # as a bank's backend names it
            replies[user] = core.handle(Incoming("web", user, user, None, text, segment=segment))
        core.feedback(replies["u1"].message_id, False)  # thumbed down: not resolved

        logged = desk.logged_exchanges("2000-01-01T00:00:00")
        assert len(logged) == 4 and len({e.customer for e in logged}) == 4
        assert all(e.at > 1.6e9 and e.channel == "web" for e in logged)
        assert [e.flagged for e in logged] == [True, False, False, False]
        assert [e.segment for e in logged] == [None, "premier", None, None]
        fee_entry = replies["u2"].kb_id or ""

        interview = _completed(
            desk,
            {
                "needs": ["understand a fee | 4 | 2", "investment advice | 2 | 1", "open a safe box | 3 | 1"],
                "need_links": [f"understand a fee | kb:{fee_entry}, intent:{replies['u2'].intent or 'x'}"],
                "resolution": ["investment advice | outcome=adviser_call_booked"],
                "market_match": "0.8 | the source article",
            },
        )
        brief = desk.write_brief(interview, days=30)
        fee, advice, safe = brief.score.needs
        assert fee.link_status == "confirmed"
        assert (fee.satisfaction.successes, fee.satisfaction.trials) == (2, 3)
        assert "outcome 'adviser_call_booked'" in advice.resolution
        assert safe.satisfaction.text() == "no traffic" and safe.opportunity is None
        assert brief.score.m == 0.8 and brief.score.m_source == "entered: the source article"
        text = brief.files.markdown.read_text()
        assert "0.67 (2/3, 95 % CI 0.21-0.94)" in text
        assert "M = 0.80, entered (the source article)" in text
        assert brief.files.opportunity_chart is not None
        kept = core.store.interviews.briefs(interview)
        assert kept[-1].score["needs"][0]["satisfaction"]["trials"] == 3
        print("\n" + text.split("## The interview")[0])
    finally:
        core.close()


def test_the_interview_suggests_links_from_the_store_and_ok_confirms_them(teller_env: Path) -> None:
    settings = get_settings()
    core = build_core(settings)
    desk = PositioningDesk(settings, policy=lambda: core.policy, store=core.store)
    try:
        fee = None
        for user in ("u1", "u2", "u3"):
            fee = core.handle(Incoming("web", user, user, None, "What's the overdraft fee?"))
        assert fee is not None
        turn = desk.engine.start("iv_links01", "slack:UPM1")
        while turn.prompt is not None and turn.prompt.question.id != "need_links":
            turn = desk.engine.answer(turn.state, ANSWERS[turn.prompt.question.id])
        prompt = turn.prompt
        assert prompt is not None and isinstance(prompt.suggestion, list) and len(prompt.suggestion) == 3
        served = fee.kb_id or fee.intent or ""
        fee_line = next(line for line in prompt.suggestion if line.startswith("understand a fee |"))
        assert served and served in fee_line, (served, prompt.suggestion)
        assert "Teller suggests:" in prompt.render() and "why: " in prompt.render()
        # Slack shows a button that confirms the suggestion.
        outgoing = desk._prompt_outgoing(turn.state, prompt)
        confirm = next(c for c in outgoing.choices if c.label == "Confirm Teller's suggestion")
        assert confirm.value.endswith(":need_links:ok")
        kept = desk.engine.answer(turn.state, "ok")
        assert kept.state.answers["need_links"] == prompt.suggestion
        while not kept.finished and kept.prompt is not None:
            kept = (
                desk.engine.skip(kept.state)
                if not kept.prompt.question.required
                else desk.engine.answer(kept.state, ANSWERS[kept.prompt.question.id])
            )
        desk.service.store.save(kept.state)
        brief = desk.write_brief("iv_links01", user_id="slack:UPM1")
        statuses = {n.need: n.link_status for n in brief.score.needs}
        assert statuses["understand a fee"] == "confirmed"
        assert brief.score.needs[1].satisfaction.trials == 3
    finally:
        core.close()


def test_the_persona_is_mapped_to_the_logs_segments(teller_env: Path) -> None:
    """Full interview: Teller suggests the segments the persona names (the log's counts in the note),
    "ok" keeps them, and the brief reports P(D|U) for them beside all traffic. Quick interview: no
    question; the brief maps the persona itself."""
    from positioning.engine import QUICK
    from positioning.segments import MAPPED, NAMED

    settings = get_settings()
    core = build_core(settings)
    desk = PositioningDesk(settings, policy=lambda: core.policy, store=core.store)
    try:
        for user, segment in [("u1", "retail"), ("u2", "retail"), ("u3", "premier")]:
            core.handle(Incoming("web", user, user, None, "What's the overdraft fee?", segment=segment))
        turn = desk.engine.start("iv_segs0001", "slack:UPM1")
        while turn.prompt is not None and turn.prompt.question.id != "target_segments":
            q = turn.prompt.question
            turn = (
                desk.engine.skip(turn.state)
                if not q.required
                else desk.engine.answer(turn.state, ANSWERS[q.id])
            )
        prompt = turn.prompt
        assert prompt is not None and prompt.suggestion == ["retail"]  # "Retail customers of ..."
        assert "retail (2 messages), premier (1 messages)" in (prompt.suggestion_note or "")
        assert "web (3 messages)" in (prompt.suggestion_note or "")
        turn = desk.engine.answer(turn.state, "ok")
        assert turn.state.answers["target_segments"] == ["retail"]
        while not turn.finished and turn.prompt is not None:  # the launch targets are asked too
            turn = desk.engine.answer(turn.state, ANSWERS[turn.prompt.question.id])
            assert turn.error is None, turn.error
        desk.service.store.save(turn.state)
        reply = desk._brief_outgoing("slack:UPM1", "iv_segs0001", 30)
        brief = desk.write_brief("iv_segs0001", user_id="slack:UPM1")
        t = brief.score.target
        assert t is not None and t.segments == ("retail",) and t.source == NAMED
        assert t.conversations == 2 and t.all_conversations == 3
        # The headline is the target users' P(D|U), all traffic beside it (in the chat and the brief).
        assert brief.score.over_target and t.estimate is not None
        assert brief.score.p_d_given_u == pytest.approx(t.estimate.value)
        assert (
            "P(D|U) is over the target users' conversations (retail, named by the PM in the interview; "
            "2 conversations); over all traffic it is " in reply.text
        )
        text = brief.files.markdown.read_text()
        assert "## The target users (U)" in text
        assert "| at most 1500 ms |" in text and "| at least 60 % |" in text  # asked in full mode now

        quick = desk.engine.start("iv_segs0002", "slack:UPM1", QUICK)
        while not quick.finished and quick.prompt is not None:
            qid = quick.prompt.question.id
            typed = "1 | 2\n2 | 4\n3 | 1" if qid == "need_coverage" else ANSWERS.get(qid, "ok")
            quick = desk.engine.answer(quick.state, typed)
            assert quick.error is None, quick.error
        desk.service.store.save(quick.state)
        mapped = desk.write_brief("iv_segs0002", user_id="slack:UPM1").score.target
        assert mapped is not None and mapped.segments == ("retail",) and mapped.source == MAPPED
    finally:
        core.close()


def test_pressed_buttons_are_not_what_customers_asked(teller_env: Path) -> None:
    """A pressed "Book an adviser call" (``handoff``) or "Helpful" is stored like typed text, but it
    is not a customer's question: it stays out of "what customers asked" and the candidate needs."""
    settings = get_settings()
    core = build_core(settings)
    desk = PositioningDesk(settings, policy=lambda: core.policy, store=core.store)
    try:
        for user in ("u1", "u2", "u3"):
            core.handle(Incoming("web", user, user, None, "which shares should I buy"))
            core.handle(Incoming("web", user, user, None, "handoff"))  # the button's value
        core.handle(Incoming("web", "u4", "u4", None, "intent:card_arrival"))
        logged = desk.logged_exchanges("2000-01-01T00:00:00")
        assert sum(e.text == "handoff" for e in logged) == 3
        from bot.positioning_desk import customers_words

        assert [e.text for e in customers_words(logged)] == ["which shares should I buy"] * 3
        interview = _completed(desk, {"needs": ["understand a fee | 4 | 2"]})
        text = desk.write_brief(interview, days=30).files.markdown.read_text()
        asked = text.split("## What customers actually asked")[1].split("## The interview")[0]
        assert "- Messages: 3" in asked
        assert "“handoff”" not in asked and "handoff:" not in asked and "intent:card" not in asked
    finally:
        core.close()


def test_containment_is_one_figure_whatever_the_needs_rules(teller_env: Path) -> None:
    """An adviser booked through the button resolves the advice need when the bank's rule says so,
    but a person takes the call: containment counts it as not contained either way, and the
    launch check, the evidence and the interview's prefill read the same figure."""
    from bot.choices import ADVISER_CHOICE
    from bot.positioning_desk import measured_defaults
    from positioning.stats import Rate
    from positioning.summary import containment_text

    settings = get_settings()
    core = build_core(settings)
    desk = PositioningDesk(settings, policy=lambda: core.policy, store=core.store)
    try:
        routes = []
        for user in ("u1", "u2", "u3"):
            routes.append(core.handle(Incoming("web", user, user, None, "Which stocks should I buy?")).route)
            core.handle(Incoming("web", user, user, None, ADVISER_CHOICE))
        core.handle(Incoming("web", "u4", "u4", None, "What's the overdraft fee?"))
        assert set(routes) == {"advice"}

        def containment(extra: dict[str, object]) -> str:
            interview = _completed(desk, {"needs": ["investment advice | 4 | 1"], **extra})
            text = desk.write_brief(interview, days=30).files.markdown.read_text()
            return next(line for line in text.splitlines() if line.startswith("- Containment"))

        with_rule = containment(
            {
                "need_links": ["investment advice | route:advice"],
                "resolution": ["investment advice | routes=advice; outcome=adviser_call_booked"],
            }
        )
        assert with_rule == containment({"need_links": ["investment advice | route:advice"]})
        # Only the fee question is contained (the button presses are conversations of their own).
        assert with_rule.endswith(containment_text(Rate(1, 7)))
        prefill = measured_defaults(settings, core.store, 30)
        assert (prefill["containment"], prefill["containment_n"]) == (14.3, 7)
    finally:
        core.close()


def test_a_customer_erased_while_the_brief_is_written_is_not_quoted(
    teller_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The brief reads the log, then spends seconds clustering and charting: a customer erased in
    that gap (their erasure committed before the brief is recorded) is not quoted by the row nor by
    the files written after."""
    from bot.privacy.erasure import Eraser

    settings = get_settings()
    core = build_core(settings)
    desk = PositioningDesk(settings, policy=lambda: core.policy, store=core.store)
    gone = "what's the weather in Paris tonight"
    try:
        said = [("u1", gone), ("u2", "what's the weather in Rome"), ("u3", "is it raining in Oslo")]
        for user, text in said:
            core.handle(Incoming("web", user, user, None, text))
        read = desk.logged_exchanges

        def then_erased(since: str) -> list:  # type: ignore[type-arg]
            exchanges = read(since)
            assert any(e.text == gone and e.message_id for e in exchanges)
            Eraser(core.store, settings.briefs_dir).erase("web", "u1", "cli:robin")
            return exchanges

        interview = _completed(desk, {"needs": ["understand a fee | 4 | 2"]})
        monkeypatch.setattr(desk, "logged_exchanges", then_erased)
        brief = desk.write_brief(interview, days=30)
        stored = core.store.interviews.briefs(interview)[-1].markdown
        assert "“[erased]”" in stored.replace("\\", "")  # it was quoted, and went
        page = (brief.files.markdown.parent / "brief.html").read_text(encoding="utf-8")
        for text in (stored, brief.files.markdown.read_text(encoding="utf-8"), page):
            assert "Paris" not in text and "Rome" in text
    finally:
        core.close()
