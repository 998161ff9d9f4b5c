"""An advice reply is Teller declining to advise, and a link may serve several needs (issue #16).

The reviewer's repro: 理财建议 and 投资分析 both linked to ``route:advice`` and 理财建议 resolved by
``routes=advice``. The advice-led option outscored the service option Teller delivers (0.77 vs
0.16), on 20 advice refusals counted as "resolved", and 投资分析 showed "no traffic" though its
link answered the same 20 conversations.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from positioning.errors import PositioningError
from positioning.evidence import LoggedExchange
from positioning.needs import (
    NeedLink,
    Resolution,
    parse_link,
    parse_needs,
    parse_resolution,
    parse_resolutions,
)
from positioning.options import Option, compare
from positioning.outcomes import NO_OUTCOME, judge
from positioning.scoring import score
from positioning.stats import Rate

ADVICE_LINKS = [parse_link("理财建议 | route:advice"), parse_link("投资分析 | route:advice")]
SERVICE_LINK = NeedLink("客户咨询", intents=("balance",))


def _log(booked: int = 0) -> list[LoggedExchange]:
    """20 advice refusals (the first ``booked`` followed by an adviser call booked) and 20 balance
    questions, 16 answered and 4 handed off, each its own customer."""
    log = [
        LoggedExchange(
            "which fund should i buy",
            "advice",
            customer=f"a{i}",
            at=float(i),
            outcomes=frozenset({"adviser_call_booked"}) if i < booked else frozenset(),
        )
        for i in range(20)
    ]
    log += [
        LoggedExchange(
            "what is my balance", "intent" if i < 16 else "handoff", "balance", customer=f"b{i}", at=float(i)
        )
        for i in range(20)
    ]
    return log


def test_routes_advice_alone_is_refused_with_the_reason_and_the_outcome_form() -> None:
    for text in ("routes=advice", "routes=intent,faq,advice", " routes = advice ; "):
        with pytest.raises(PositioningError, match="declining to advise") as caught:
            parse_resolution(text)
        assert "outcome=adviser_call_booked" in str(caught.value)
    with pytest.raises(PositioningError, match="declining to advise"):
        parse_resolutions(["理财建议 | routes=advice"])
    with pytest.raises(PositioningError, match="declining to advise"):
        Resolution(routes=("intent", "advice"))
    # With an outcome it holds: the outcome decides, whatever the route.
    booked = parse_resolution("routes=advice; outcome=adviser_call_booked")
    assert booked.outcome == "adviser_call_booked"
    assert parse_resolution("outcome=adviser_call_booked") == Resolution(outcome="adviser_call_booked")


def test_an_advice_refusal_never_counts_as_resolved_and_the_advice_led_option_scores_below_service() -> None:
    log = _log()
    rules = parse_resolutions(["理财建议 | routes=advice; outcome=adviser_call_booked"])
    outcomes = judge(log, [*ADVICE_LINKS, SERVICE_LINK], rules)
    wealth, investing, service = outcomes.needs
    assert wealth.satisfaction == Rate(0, 20) and wealth.reasons == {NO_OUTCOME: 20}
    assert investing.satisfaction == Rate(0, 20) and investing.reasons == {"not answered (advice)": 20}
    assert service.satisfaction == Rate(16, 16)  # the 4 handoffs are of no need (no encoder here)

    advice_led = parse_needs(["理财建议 | 5 | 1", "投资分析 | 5 | 1"])
    served = parse_needs(["客户咨询 | 5 | 1"])
    both = compare(
        [
            Option("Advice-led", tuple(advice_led), tuple(ADVICE_LINKS), rules),
            Option("Service", tuple(served), (SERVICE_LINK,)),
        ],
        log,
    )
    assert [s.option.name for s in both] == ["Service", "Advice-led"]
    assert both[1].result.p_d_given_u == 0.0
    assert (both[1].result.score or 0.0) < (both[0].result.score or 0.0)


def test_an_adviser_call_booked_resolves_an_advice_conversation_a_handoff_after_it_does_not_undo_that() -> (
    None
):
    log = _log(booked=5)
    # Customer a0 pressed "Book an adviser call": the press is a handoff right after the advice reply.
    log.append(LoggedExchange("handoff:adviser", "handoff", customer="a0", at=30.0, handed_off=True))
    # Customer a19's booking was recorded by the bank on the press, not on the advice reply.
    log.append(
        LoggedExchange(
            "handoff:adviser",
            "handoff",
            customer="a19",
            at=40.0,
            handed_off=True,
            outcomes=frozenset({"adviser_call_booked"}),
        )
    )
    rules = parse_resolutions(["理财建议 | outcome=adviser_call_booked"])
    wealth = judge(log, ADVICE_LINKS[:1], rules).needs[0]
    assert wealth.satisfaction == Rate(6, 20)
    # Without that rule an advice refusal stays unresolved, booked or not.
    assert judge(log, ADVICE_LINKS[:1]).needs[0].satisfaction == Rate(0, 20)
    result = score(parse_needs(["理财建议 | 5 | 1"]), judge(log, ADVICE_LINKS[:1], rules))
    assert result.needs[0].satisfaction == Rate(6, 20)


def test_a_link_shared_by_two_needs_counts_its_conversations_for_each() -> None:
    log = _log(booked=4)
    rules = parse_resolutions(
        ["理财建议 | outcome=adviser_call_booked", "投资分析 | outcome=adviser_call_booked"]
    )
    outcomes = judge(log, [*ADVICE_LINKS, SERVICE_LINK], rules)
    wealth, investing, service = outcomes.needs
    for need, other in ((wealth, "投资分析"), (investing, "理财建议")):
        assert need.satisfaction == Rate(4, 20) and need.messages == 20
        assert need.shared_with == {other: 20}
        assert f"its link is shared with “{other}” (20 conversations count for both)" in need.resolution
    assert service.shared_with == {} and "shared" not in service.resolution
    # Each conversation counts once overall, and each unresolved message is clustered once.
    assert outcomes.resolved == Rate(4 + 16, 40)
    assert len(outcomes.unresolved) == len(set(map(id, outcomes.unresolved))) == 16 + 4
    assert outcomes.need_of(log[0]) == "理财建议"
    result = score(parse_needs(["理财建议 | 5 | 1", "投资分析 | 3 | 1"]), outcomes)
    assert [n.satisfaction for n in result.needs] == [Rate(4, 20), Rate(4, 20)]
    assert all(n.measured for n in result.needs)


def test_an_advice_worded_need_is_suggested_the_advice_route_and_the_adviser_call_outcome() -> None:
    """#16: a need worded as advice gets ``route:advice`` (every advice-declined reply, not the one
    entry retrieval found) and the resolution ``routes=advice; outcome=adviser_call_booked``."""
    from positioning.needs import ADVICE_RESOLUTION, Candidate, advice_resolutions, format_link, suggest_links

    # 20 advice refusals, 2 of them from the one entry retrieval finds for the wording; 5 booked.
    log = _log(booked=5)
    log = [replace(e, kb_id="advice_where_to_invest") if i < 2 else e for i, e in enumerate(log)]
    probe = {"理财建议": [Candidate("kb", "advice_where_to_invest", 0.8, "retrieval")]}
    links = suggest_links(
        ["理财建议", "客户咨询"], lambda t: probe.get(t, []), log, advice=lambda t: "建议" in t
    )
    advice, service = links
    assert format_link(advice) == "理财建议 | kb:advice_where_to_invest, route:advice"
    assert any("worded as advice" in w and ADVICE_RESOLUTION in w for w in advice.why)
    assert service.routes == ()
    rules = advice_resolutions(links, {})
    assert rules == {"理财建议": parse_resolution("routes=advice; outcome=adviser_call_booked")}
    # The PM's own rule wins.
    assert advice_resolutions(links, {"理财建议": Resolution(outcome="x")})["理财建议"].outcome == "x"
    outcomes = judge(log, links, rules)
    [need, _] = score(parse_needs(["理财建议 | 5 | 1", "客户咨询 | 3 | 1"]), outcomes).needs
    assert need.satisfaction == Rate(5, 20)  # every advice conversation, 5 with an adviser call booked


def test_the_summary_says_what_happened_for_a_need_resolved_by_an_outcome() -> None:
    """#16: "16 % of conversations about X ended with an adviser call booked", not "resolves"."""
    from positioning.summary import outcome_words, positioning_statement

    links = [parse_link("理财建议 | route:advice"), SERVICE_LINK]
    rules = parse_resolutions(["理财建议 | routes=advice; outcome=adviser_call_booked"])
    result = score(
        parse_needs(["理财建议 | 5 | 1", "客户咨询 | 3 | 1"]), judge(_log(booked=16), links, rules)
    )
    value = positioning_statement({"product": "Teller"}, result).value
    assert value == (
        "80 % of conversations about “理财建议” ended with an adviser call booked (16 of 20) and it "
        "resolves 100 % of conversations about “客户咨询” (16 of 16)"
    )
    assert outcome_words(Resolution().describe()) is None
