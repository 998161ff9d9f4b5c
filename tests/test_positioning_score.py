"""P(D|U) x M on a fixture log with known numbers, the evidence figures, clustering and the brief."""

from __future__ import annotations

from pathlib import Path

import pytest

from positioning.brief import write_brief
from positioning.errors import PositioningError
from positioning.evidence import LoggedExchange, gather
from positioning.scoring import Coverage, market_match, measured_quality, parse_needs, score
from positioning.script import load_script
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
COVERAGE = {
    "track a card that hasn't arrived": Coverage("intent", "card_arrival", "card_arrival", 0.9, True),
    "know the overdraft fee": Coverage("faq", None, "overdraft_fee", 0.8, True),
    "get investment advice": Coverage("handoff", None, None, 0.3, False),
}


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


def test_unanswered_questions_cluster_into_candidate_needs() -> None:
    evidence = gather(LOG, "fixture", embed=HashingEmbedder(dim=256).embed, distance=0.8)
    sizes = sorted((c.size for c in evidence.candidate_needs), reverse=True)
    assert sizes == [3, 2]
    weather = evidence.candidate_needs[0]
    assert "weather" in weather.label and len(weather.examples) == 3


def test_score_with_known_numbers() -> None:
    evidence = gather(LOG, "fixture")
    needs = parse_needs(
        ["track a card that hasn't arrived | 5", "know the overdraft fee | 3", "get investment advice | 2"]
    )
    quality = measured_quality(evidence, {"card_arrival": 0.95}, faq_accuracy=1.0)
    result = score(needs, COVERAGE.__getitem__, quality, gap_size=4, competitor_coverage=2)
    # card: 0.9 x 0.95 x (1 - 0.2) = 0.684; fee: 0.8 x 1.0 x 1.0 = 0.8; advice: handed off = 0
    assert [n.satisfaction for n in result.needs] == pytest.approx([0.684, 0.8, 0.0])
    assert result.p_d_given_u == pytest.approx((5 * 0.684 + 3 * 0.8) / 10)
    assert result.m == pytest.approx(0.75 * 0.75)
    assert result.score == pytest.approx(0.582 * 0.5625)
    assert "get investment advice" in result.raise_p[0] and "not answered" in result.raise_p[0]
    assert any("flagged" in idea for idea in result.raise_p)
    assert len(result.raise_m) == 2


def test_market_match_bounds_and_bad_needs() -> None:
    assert market_match(5, 1) == 1.0 and market_match(1, 1) == 0.0 and market_match(5, 5) == 0.0
    with pytest.raises(PositioningError):
        market_match(6, 1)
    with pytest.raises(PositioningError, match="no importance"):
        parse_needs(["fast answers"])


def test_brief_shows_the_formula_with_its_numbers_and_the_evidence(tmp_path: Path) -> None:
    evidence = gather(LOG, "last 30 days", embed=HashingEmbedder(dim=256).embed, distance=0.8)
    needs = parse_needs(
        ["track a card that hasn't arrived | 5", "know the overdraft fee | 3", "get investment advice | 2"]
    )
    result = score(needs, COVERAGE.__getitem__, measured_quality(evidence, {"card_arrival": 0.95}, 1.0), 4, 2)
    answers = {"product": "Teller", "needs": [f"{n} | {i}" for n, i in needs], "gap_size": 4}
    files = write_brief(tmp_path, load_script(), answers, result, evidence)
    text = files.markdown.read_text()
    assert f"= {result.p_d_given_u:.2f} x {result.m:.2f} = {result.score:.2f}" in text
    assert "5x0.68 + 3x0.80 + 2x0.00 / 10 = 0.58" in text
    assert "(4 - 1)/4 x (1 - (2 - 1)/4) = 0.56" in text
    assert "Containment (answered without a handoff): 75%" in text
    assert "| card_arrival | 10 | 0% | 20% |" in text
    assert "Candidate new needs" in text and "## What would raise each term" in text
    assert files.chart is not None and files.chart.read_bytes().startswith(b"\x89PNG")
