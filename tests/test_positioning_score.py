"""P(D|U) x M on a fixture log with known numbers, the evidence figures, clustering and the brief.

Satisfaction is measured from outcomes (the share of a need's conversations resolved), no longer
from the classifier's confidence on the PM's wording; M is continuous (per-need competitor coverage
weighted by importance x measured demand), no longer the product of two 1-5 ratings.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from positioning.brief import BriefExtras, write_brief
from positioning.errors import PositioningError
from positioning.evidence import LoggedExchange, gather
from positioning.needs import Need, NeedLink, parse_coverage, parse_needs, with_coverage
from positioning.outcomes import judge
from positioning.scoring import score
from positioning.script import load_script
from positioning.stats import Rate
from tests.fakes import HashingEmbedder

LOG = (
    [
        LoggedExchange("where is my card", "intent", "card_arrival", "card_arrival", flagged=i < 2)
        for i in range(10)
    ]
    + [LoggedExchange("overdraft fee?", "faq", "card_payment_fee_charged", "overdraft_fee") for _ in range(5)]
    + [
        LoggedExchange("can you buy me shares in acme", "handoff", "exchange_rate"),
        LoggedExchange("buy shares in acme for me", "handoff", "exchange_rate"),
        LoggedExchange("what's the weather tomorrow", "handoff", None),
        LoggedExchange("will it rain tomorrow, weather", "handoff", None),
        LoggedExchange("weather forecast tomorrow", "handoff", None),
    ]
)
LINKS = [
    NeedLink("track a card that hasn't arrived", intents=("card_arrival",)),
    NeedLink("know the overdraft fee", kb_ids=("overdraft_fee",)),
    NeedLink("get investment advice", examples=("buy shares in acme",)),
]


def test_evidence_figures() -> None:
    evidence = gather(LOG, "fixture")
    assert evidence.messages == 20
    assert evidence.containment_rate == pytest.approx(15 / 20)
    assert evidence.handoff_rate == pytest.approx(5 / 20)
    assert evidence.flag_rate == pytest.approx(2 / 15)
    card = evidence.for_intent("card_arrival")
    assert card is not None and (card.messages, card.flag_rate, card.handoff_rate) == (10, 0.2, 0.0)
    assert evidence.intents[0].intent == "card_arrival"
    exchange = evidence.for_intent("exchange_rate")
    assert exchange is not None and exchange.handoff_rate == 1.0
    assert evidence.entry_flag_rates == {"card_arrival": 0.2, "overdraft_fee": 0.0}


def test_unresolved_questions_cluster_into_candidate_needs() -> None:
    # Handoffs only (the old default): the weather and the share-buying questions.
    handoffs = [e for e in LOG if e.route == "handoff"]
    evidence = gather(LOG, "fixture", embed=HashingEmbedder(dim=256).embed, distance=0.8, unresolved=handoffs)
    assert sorted((c.size for c in evidence.candidate_needs), reverse=True) == [3, 2]
    weather = evidence.candidate_needs[0]
    assert "weather" in weather.label and len(weather.examples) == 3 and weather.messages == 3
    # By default all unresolved traffic: the two thumbed-down card answers make a third group.
    evidence = gather(LOG, "fixture", embed=HashingEmbedder(dim=256).embed, distance=0.8)
    assert evidence.unresolved_messages == 7
    assert sorted(c.messages for c in evidence.candidate_needs) == [2, 2, 3]


def test_score_with_known_numbers() -> None:
    needs = parse_needs(
        [
            "track a card that hasn't arrived | 5 | 2",
            "know the overdraft fee | 3 | 0.5",
            "get investment advice | 2 | 1",
        ]
    )
    outcomes = judge(LOG, LINKS, embed=HashingEmbedder(dim=256).embed)
    result = score(needs, outcomes)
    # card: 8 of 10 resolved (2 thumbed down); fee: 5 of 5; advice: both share questions handed off.
    assert [n.satisfaction for n in result.needs] == [Rate(8, 10), Rate(5, 5), Rate(0, 2)]
    assert result.p_d_given_u == pytest.approx((5 * 0.8 + 3 * 1.0 + 2 * 0.0) / 10)
    # M: importance x demand x (1 - coverage): card 5 x 10/20 x 0.75, fee 3 x 5/20 x 0.5, advice 2 x 2/20 x 1
    weights = [5 * 0.5, 3 * 0.25, 2 * 0.1]
    assert result.m == pytest.approx((weights[0] * 0.75 + weights[1] * 0.5 + weights[2] * 1.0) / sum(weights))
    assert result.score == pytest.approx(result.p_d_given_u * result.m)
    assert "get investment advice" in result.raise_p[0] and "handed off" in result.raise_p[0]
    assert any("thumbed down" in idea or "flagged" in idea for idea in result.raise_p)


def test_coverage_parsing_and_bad_needs() -> None:
    assert parse_coverage("1") == 0.0 and parse_coverage("5") == 1.0 and parse_coverage("3") == 0.5
    assert parse_coverage("0.8") == 0.8 and parse_coverage("20%") == 0.2
    for bad in ("6", "1.5", "lots", "6.0"):
        with pytest.raises(PositioningError):
            parse_coverage(bad)
    # A reviewer's "1.0" on the 1-5 question was read as the share 1 (fully met), the opposite of
    # "1": refused as ambiguous; "4.0" is the rating 4, "100%" the share.
    with pytest.raises(PositioningError, match="ambiguous"):
        parse_coverage("1.0")
    assert parse_coverage("4.0") == 0.75 and parse_coverage("100%") == 1.0 and parse_coverage("0.0") == 0.0
    with pytest.raises(PositioningError, match="no importance"):
        parse_needs(["fast answers"])
    [a, b] = with_coverage(parse_needs(["a | 5", "b | 3 | 0.1"]), ["A | 4"], overall=2)
    assert (a.competitor_coverage, a.coverage_source) == (0.75, "rated per need: 4")
    assert b.competitor_coverage == 0.1
    [c] = with_coverage([Need("c", 2)], overall=2)
    assert (c.competitor_coverage, c.coverage_source) == (0.25, "overall rating 2/5")
    with pytest.raises(PositioningError, match="no competitor coverage"):
        score([Need("c", 2)], judge(LOG, [NeedLink("c")]))


def test_brief_shows_the_formula_with_its_numbers_and_the_evidence(tmp_path: Path) -> None:
    embed = HashingEmbedder(dim=256).embed
    outcomes = judge(LOG, LINKS, embed=embed)
    evidence = gather(
        LOG,
        "last 30 days",
        embed=embed,
        distance=0.8,
        unresolved=outcomes.unresolved,
        resolved=outcomes.resolved,
        need_of=outcomes.need_of,
    )
    needs = parse_needs(
        ["track a card that hasn't arrived | 5", "know the overdraft fee | 3", "get investment advice | 2"]
    )
    result = score(with_coverage(needs, overall=2), outcomes)
    answers = {"product": "Teller", "needs": [f"{n.text} | {n.importance}" for n in needs], "gap_size": 4}
    files = write_brief(tmp_path, load_script(), answers, result, evidence, extras=BriefExtras(asked=LOG))
    text = files.markdown.read_text()
    assert f"= {result.p_d_given_u:.2f} x {result.m:.2f} = {result.score:.2f}" in text
    assert "`P(D|U) = (5x0.80 + 3x1.00 + 2x0.00) / 10 = 0.70`" in text
    assert "0.80 (8/10, 95 % CI 0.49-0.94)" in text and "0.00 (0/2, 95 % CI 0.00-0.66)" in text
    assert "(5x0.50x(1-0.25) + 3x0.25x(1-0.25) + 2x0.10x(1-0.25))" in text
    # One containment figure: the conversations resolved without a person (not the 75 % of messages
    # without a handoff).
    assert "not followed by a handoff or by the customer asking again; advice refusals are not " in text
    assert "): 65.0 % (13/20 conversations, 95 % CI " in text and "75%" not in text
    assert "| card arrival | 10 | 0% | 20% |" in text  # what answered, intents in words
    assert "Candidate new needs" in text and "## What would raise each term" in text
    assert "“where is my card”. Already a listed need: “track a card that hasn't arrived”" in text
    assert "weather forecast tomorrow: 3 messages (3 distinct; Teller's replies: handoff 3); e.g." in text
    assert "## Opportunity map" in text
    assert files.chart is not None and files.chart.read_bytes().startswith(b"\x89PNG")


def test_an_outcome_need_short_of_its_outcome_is_told_what_is_missing_and_twelve_is_under_served() -> None:
    """When the bank already counts an adviser booking as resolved, the idea names the missing
    booking, never "count the booking as resolved" again; an opportunity of exactly 12 (importance
    4, satisfaction 0.4: 8 + 4) is under-served on Ulwick's scale."""
    from positioning.needs import parse_resolution

    advice = [
        LoggedExchange("which shares should i buy", "advice", customer=f"c{i}", at=i * 10_000.0)
        for i in range(4)
    ]
    booked = [
        LoggedExchange(
            "which shares should i buy",
            "advice",
            customer=f"b{i}",
            at=i * 10_000.0,
            outcomes=frozenset({"adviser_call_booked"}),
        )
        for i in range(2)
    ]
    cards = [
        LoggedExchange(
            "where is my card", "intent", "card_arrival", customer=f"k{i}", flagged=i < 3, at=i * 10_000.0
        )
        for i in range(5)
    ]
    links = [
        NeedLink("investment advice", routes=("advice",)),
        NeedLink("track a card", intents=("card_arrival",)),
    ]
    rules = {"investment advice": parse_resolution("routes=advice; outcome=adviser_call_booked")}
    outcomes = judge(advice + booked + cards, links, rules)
    result = score(parse_needs(["investment advice | 5 | 1", "track a card | 4 | 2"]), outcomes)
    advice_idea = next(i for i in result.raise_p if "investment advice" in i)
    assert "4 of 6 conversations ended without the outcome" in advice_idea
    assert "POST /api/outcomes" in advice_idea and "count the adviser booking" not in advice_idea
    card = next(n for n in result.needs if n.need == "track a card")
    assert card.satisfaction == Rate(2, 5) and card.opportunity == pytest.approx(12.0) and card.under_served
