"""Satisfaction from outcomes, continuous M, and the acceptance checks of the positioning issue.

A generated log with known ground truth: each need has a chosen resolution rate, each customer
conversation is drawn resolved or not, and an unresolved one fails in one of the ways a real one
does (handed off, thumbed down, asked again, answered by something else, followed by a handoff).
The scores must recover exactly the drawn outcomes, and the chosen rate must lie in the printed
Wilson interval.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import pytest

from positioning.brief import render_comparison, write_brief
from positioning.evidence import LoggedExchange, cluster_exchanges, gather
from positioning.needs import (
    Candidate,
    Need,
    NeedLink,
    Resolution,
    Vectors,
    merge_links,
    parse_link,
    parse_needs,
    parse_resolutions,
    suggest_links,
)
from positioning.options import Option, compare
from positioning.outcomes import ASKED_AGAIN, FLAGGED, HANDED_OFF, judge
from positioning.scoring import MarketOverride, parse_market_override, score
from positioning.script import load_script
from positioning.stats import Rate, wilson_interval
from positioning.summary import containment_text
from tests.fakes import HashingEmbedder

EMBED = HashingEmbedder(dim=512).embed


@dataclass(frozen=True)
class Served:
    """How a need is served in the generated log: its intent, entry, phrasings and true rate."""

    need: str
    intent: str
    kb_id: str
    phrasings: tuple[str, ...]
    rate: float
    route: str = "intent"


CARD = Served(
    "track a card that hasn't arrived",
    "card_arrival",
    "card_arrival",
    (
        "where is my new card",
        "my new card has not arrived",
        "still waiting for my new card",
        "new card delivery",
    ),
    0.8,
)
FEE = Served(
    "understand a fee",
    "card_payment_fee_charged",
    "fee_charged",
    (
        "why was i charged this fee",
        "what is this fee on my statement",
        "unexpected fee charged",
        "explain this fee",
    ),
    0.55,
)
TRANSFER = Served(
    "send money abroad",
    "transfer_abroad",
    "international_transfer",
    (
        "how do i send money abroad",
        "transfer money abroad to another country",
        "send money abroad overseas",
        "money abroad",
    ),
    0.35,
)
HUMAN = "i want to talk to a human agent"
CRYPTO = [
    f"bitcoin crypto {w}" for w in ("buy", "sell", "trading", "wallet", "price", "support", "allowed", "app")
]
ADVICE = [
    "shares advice which stock",
    "shares advice best stock",
    "shares advice stock now",
    "shares advice for me",
]


@dataclass
class GroundTruth:
    log: list[LoggedExchange] = field(default_factory=list)
    episodes: dict[str, int] = field(default_factory=dict)
    resolved: dict[str, int] = field(default_factory=dict)


def _exchange(
    s: Served,
    customer: str,
    channel: str,
    text: str,
    route: str | None = None,
    intent: str | None = "",
    kb_id: str | None = "",
    **kw: object,
) -> LoggedExchange:
    """One exchange of a conversation about ``s`` (by default answered by its intent and entry)."""
    route = route or s.route
    intent = s.intent if intent == "" else intent
    kb = (s.kb_id if route in ("intent", "faq") else None) if kb_id == "" else kb_id
    return LoggedExchange(text, route, intent, kb, customer=customer, channel=channel, **kw)  # type: ignore[arg-type]


def generate(seed: int = 7, conversations: int = 300) -> GroundTruth:
    """A log of ``conversations`` customer conversations about three needs with chosen resolution
    rates, plus unrelated traffic (crypto questions handed off, investment-advice refusals)."""
    rng = random.Random(seed)
    truth = GroundTruth()
    clock = 1_700_000_000.0
    needs = [CARD, FEE, TRANSFER]
    for c in range(conversations):
        customer = f"c{c}"
        clock += 3600
        s = needs[c % 3]
        truth.episodes[s.need] = truth.episodes.get(s.need, 0) + 1
        ask = rng.choice(s.phrasings)

        ex = partial(_exchange, s, customer, rng.choice(["web", "slack"]))

        if rng.random() < s.rate:
            truth.resolved[s.need] = truth.resolved.get(s.need, 0) + 1
            if rng.random() < 0.2:  # a clarifying question first, then the answer: still resolved
                truth.log.append(ex(ask, "clarify", s.intent, kb_id=None, at=clock))
                truth.log.append(ex(rng.choice(s.phrasings), at=clock + 30))
            else:
                truth.log.append(ex(ask, at=clock))
            if rng.random() < 0.1:  # the same need again hours later: a new conversation
                truth.episodes[s.need] += 1
                truth.resolved[s.need] += 1
                truth.log.append(ex(rng.choice(s.phrasings), at=clock + 3 * 3600))
            continue
        failure = rng.choice(["handoff", "flagged", "again", "other", "then_human"])
        if failure == "handoff":
            truth.log.append(ex(ask, "handoff", s.intent, at=clock))
        elif failure == "flagged":
            truth.log.append(ex(ask, flagged=True, at=clock))
        elif failure == "again":
            truth.log.append(ex(ask, at=clock))
            truth.log.append(ex(rng.choice(s.phrasings), at=clock + 240))
        elif failure == "other":
            truth.log.append(ex(ask, "intent", "lost_or_stolen_card", kb_id="lost_card", at=clock))
        else:
            truth.log.append(ex(ask, at=clock))
            truth.log.append(ex(HUMAN, "handoff", None, at=clock + 120, handed_off=True))
    for i in range(24):  # unrelated traffic: crypto questions handed off, advice refused
        clock += 600
        text = CRYPTO[i % len(CRYPTO)] if i < 16 else ADVICE[i % len(ADVICE)]
        route = "handoff" if i < 16 else "advice"
        truth.log.append(LoggedExchange(text, route, "fiat_currency_support", customer=f"x{i}", at=clock))
    return truth


TRUTH = generate()
LINKS = [NeedLink(s.need, (s.intent,), (s.kb_id,), status="confirmed") for s in (CARD, FEE, TRANSFER)]


def test_wilson_interval_matches_published_values() -> None:
    # Wilson (1927) score interval at 95 %: 0/10 -> 0-0.278, 5/10 -> 0.237-0.763, 81/263 -> 0.255-0.366.
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson_interval(81, 263) == pytest.approx((0.2553, 0.3662), abs=1e-4)
    assert Rate(0, 0).text() == "no traffic" and Rate(0, 0).value is None
    assert Rate(5, 10).text() == "0.50 (5/10, 95 % CI 0.24-0.76)"
    with pytest.raises(ValueError):
        wilson_interval(3, 0)


def test_generated_log_recovers_each_needs_satisfaction_within_its_interval(tmp_path: Path) -> None:
    """Acceptance (b): known resolution rates, a few hundred conversations."""
    outcomes = judge(TRUTH.log, LINKS, embed=EMBED)
    needs = [Need(s.need, 4, 0.25, "test") for s in (CARD, FEE, TRANSFER)]
    result = score(needs, outcomes)
    text = write_brief(
        tmp_path, load_script(), {"product": "Teller"}, result, gather(TRUTH.log, "t")
    ).markdown
    brief = text.read_text()
    for s, n in zip((CARD, FEE, TRANSFER), result.needs, strict=True):
        # Every drawn outcome is recovered: the same conversations, the same resolved ones.
        assert (n.satisfaction.successes, n.satisfaction.trials) == (
            TRUTH.resolved[s.need],
            TRUTH.episodes[s.need],
        )
        low, high = n.satisfaction.interval or (0, 0)
        assert low <= s.rate <= high, (s.need, s.rate, low, high)
        assert f"| {n.satisfaction.text()} |" in brief  # printed with n and the interval
        assert set(n.by_segment) == {"web", "slack"}
        assert sum(r.trials for r in n.by_segment.values()) == n.satisfaction.trials
    reasons = {r for n in result.needs for r in n.reasons}
    assert {HANDED_OFF, FLAGGED, ASKED_AGAIN, "answered by intent lost or stolen card"} <= reasons
    assert "followed by a handoff" in reasons
    assert "## P(D|U) by customer segment" in brief and set(result.segments) == {"web", "slack"}
    # The three needs take all the need traffic; the unrelated 24 messages belong to none.
    assert sum(n.messages for n in result.needs) == len(TRUTH.log) - 24 - sum(
        e.text == HUMAN for e in TRUTH.log
    )


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_other_draws_are_recovered_exactly(seed: int) -> None:
    truth = generate(seed, conversations=150)
    outcomes = judge(truth.log, LINKS, embed=EMBED)
    for s in (CARD, FEE, TRANSFER):
        measured = outcomes.for_need(s.need)
        assert measured is not None
        assert measured.satisfaction == Rate(truth.resolved.get(s.need, 0), truth.episodes[s.need])


def test_episodes_define_asking_again_by_customer_need_and_window() -> None:
    card = CARD.phrasings
    log = [
        LoggedExchange(card[0], "intent", CARD.intent, customer="a", at=0),
        LoggedExchange(card[1], "intent", CARD.intent, customer="a", at=600),  # within 30 min: asked again
        LoggedExchange(card[0], "intent", CARD.intent, customer="b", at=0),
        LoggedExchange(card[1], "intent", CARD.intent, customer="b", at=7200),  # two hours later: a new one
        LoggedExchange(card[2], "clarify", None, customer="c", at=0),
        LoggedExchange(card[3], "intent", CARD.intent, customer="c", at=20),  # clarify, then answered
    ]
    outcomes = judge(log, LINKS[:1], embed=EMBED)
    verdicts = sorted((ep.customer, ep.resolved, ep.reason) for ep in outcomes.episodes)
    assert verdicts == [
        ("a", False, ASKED_AGAIN),
        ("b", True, "resolved"),
        ("b", True, "resolved"),
        ("c", True, "resolved"),
    ]
    assert outcomes.needs[0].satisfaction == Rate(3, 4)
    # The window decides: at 1 minute a's second question is a new conversation; at 3 hours b's
    # second question is asking again.
    assert judge(log, LINKS[:1], embed=EMBED, repeat_window=60).needs[0].satisfaction == Rate(5, 5)
    assert judge(log, LINKS[:1], embed=EMBED, repeat_window=3 * 3600).needs[0].satisfaction == Rate(1, 3)


def test_a_button_pressed_on_a_clarifying_question_is_the_same_conversation() -> None:
    """Without an encoder, a clarifying question (a suggestion of entries, say) is tied to no need;
    the entry the customer pressed on it answers within the window: one resolved conversation of
    that need, not an unresolved one and a resolved one. A typed message after a clarifying
    question is not a press, and "Something else" pressed makes the conversation a handoff."""
    log = [
        LoggedExchange("card??", "clarify", None, customer="c", at=0),
        LoggedExchange(f"entry:{CARD.kb_id}", "faq", None, CARD.kb_id, customer="c", at=15, pressed=True),
        LoggedExchange("fee??", "clarify", None, customer="d", at=0),
        LoggedExchange("handoff", "handoff", None, customer="d", at=9, handed_off=True, pressed=True),
    ]
    outcomes = judge(log, LINKS[:1])
    assert [(ep.need, ep.customer, ep.resolved) for ep in outcomes.episodes] == [
        (CARD.need, "c", True),
        (None, "d", False),
    ]
    assert outcomes.resolved == Rate(1, 2) and outcomes.needs[0].satisfaction == Rate(1, 1)
    typed = [replace(e, pressed=False) for e in log[:2]]
    assert judge(typed, LINKS[:1]).resolved == Rate(1, 2)  # two conversations: the question's unresolved
    late = [log[0], replace(log[1], at=4000)]
    assert judge(late, LINKS[:1]).resolved == Rate(1, 2)


def test_the_bank_chooses_what_counts_as_resolved() -> None:
    log = [
        LoggedExchange("which shares should i buy", "advice", None, "advice_general", customer="a", at=0),
        LoggedExchange(
            "which shares should i buy", "advice", None, "advice_general", customer="b", at=0,
            handed_off=True, outcomes=frozenset({"adviser_call_booked"}),
        ),
    ]  # fmt: skip
    link = NeedLink("investment advice", kb_ids=("advice_general",))
    default = judge(log, [link]).needs[0]
    assert default.satisfaction == Rate(0, 2)
    assert default.reasons == {"not answered (advice)": 1, HANDED_OFF: 1}
    rules = parse_resolutions(["investment advice | outcome=adviser_call_booked"])
    assert rules["investment advice"] == Resolution(outcome="adviser_call_booked")
    booked = judge(log, [link], rules).needs[0]
    assert booked.satisfaction == Rate(1, 2) and "adviser_call_booked" in booked.resolution
    own = judge(log, [link], {"investment advice": Resolution(check=lambda items: True)}).needs[0]
    assert own.satisfaction == Rate(2, 2)


def test_links_are_suggested_from_the_probe_and_the_log_and_the_pm_edits_them() -> None:
    def probe(need: str) -> list[Candidate]:
        return [
            Candidate("intent", "card_arrival", 0.62, "classifier"),
            Candidate("kb", "lost_card", 0.1, "retrieval"),
        ]

    [card, fee] = suggest_links(
        ["track a card that hasn't arrived", "explain this fee"], probe, TRUTH.log, EMBED
    )
    assert card.intents == ("card_arrival",) and card.status == "suggested"
    assert any("classifier 0.62" in w for w in card.why) and "lost_card" not in card.kb_ids
    # "explain this fee": the classifier's guess is wrong, the log says what answered messages like it.
    assert "card_payment_fee_charged" in fee.intents
    assert any("logged messages like it" in w for w in fee.why)
    edited = parse_link(
        "explain this fee | intent:card_payment_fee_charged, kb:fee_charged, example:why a fee"
    )
    merged = merge_links([card, fee], [edited])
    assert merged[1].kb_ids == ("fee_charged",) and merged[1].status == "confirmed"
    assert merged[1].examples == ("why a fee",)


def test_article_worked_example_scores_non_zero_and_takes_m_08(tmp_path: Path) -> None:
    """Acceptance (a): D = {客户咨询, 理财建议, 投资分析} on a log where they were served; M = 0.8."""
    served = {
        "客户咨询": ("balance", "balance_info", ["what is my balance", "show my account balance"]),
        "理财建议": (
            "savings",
            "savings_options",
            ["which savings account suits me", "savings account options"],
        ),
        "投资分析": ("markets", "market_update", ["how did the markets do today", "market update today"]),
    }
    log = []
    for n, (intent, kb, texts) in enumerate(served.values()):
        for i in range(30):
            ok = i % 10 < 7 - n  # 70 %, 60 %, 50 % resolved
            route = "intent" if n == 0 else "faq"
            log.append(
                LoggedExchange(
                    texts[i % 2],
                    route if ok else "handoff",
                    intent,
                    kb if ok else None,
                    customer=f"{n}-{i}",
                    at=i,
                )
            )
    # The PM names the needs in Chinese; the probe (the classifier and the KB) suggests what serves them.
    candidates = {
        "客户咨询": [Candidate("intent", "balance", 0.7, "classifier")],
        "理财建议": [Candidate("kb", "savings_options", 0.5, "retrieval")],
        "投资分析": [
            Candidate("kb", "market_update", 0.55, "retrieval"),
            Candidate("intent", "lost_card", 0.3, "x"),
        ],
    }
    needs = parse_needs(["客户咨询 | 5 | 2", "理财建议 | 4 | 1", "投资分析 | 3 | 1"])
    links = suggest_links([n.text for n in needs], lambda t: candidates[t], log, EMBED)
    outcomes = judge(log, links, embed=EMBED)
    result = score(needs, outcomes, parse_market_override("0.8 | the source article's market study"))
    assert [n.satisfaction for n in result.needs] == [Rate(21, 30), Rate(18, 30), Rate(15, 30)]
    assert result.p_d_given_u == pytest.approx((5 * 0.7 + 4 * 0.6 + 3 * 0.5) / 12)
    assert result.m == 0.8 and result.m_measured is not None
    assert result.score == pytest.approx(result.p_d_given_u * 0.8)
    files = write_brief(tmp_path, load_script(), {"product": "Teller"}, result, gather(log, "t"))
    brief = files.markdown.read_text()
    assert "`P(D|U) = (5x0.70 + 4x0.60 + 3x0.50) / 12 = 0.62`" in brief
    assert "`M = 0.80, entered (the source article's market study); measured: M = (5x0.33x(1-0.25)" in brief
    assert "**Positioning = P(D|U) x M = 0.62 x 0.80 = 0.49**" in brief
    assert "客户咨询" in brief and "intent balance" in brief
    assert "lost_card" not in brief  # a lukewarm guess alone is not suggested
    print("\n" + brief.split("## Opportunity map")[0])


def test_m_is_continuous_demand_weighted_and_ignores_needs_nobody_asks() -> None:
    outcomes = judge(
        TRUTH.log, [*LINKS, NeedLink("open a safe deposit box", intents=("safe_box",))], embed=EMBED
    )
    needs = [
        Need(CARD.need, 5, 0.25),
        Need(FEE.need, 4, 0.5),
        Need(TRANSFER.need, 3, 0.0),
        Need("open a safe deposit box", 5, 0.0),
    ]
    result = score(needs, outcomes)
    d = {n.need: n.demand for n in result.needs}
    weights = {CARD.need: 5 * d[CARD.need], FEE.need: 4 * d[FEE.need], TRANSFER.need: 3 * d[TRANSFER.need]}
    openness = {CARD.need: 0.75, FEE.need: 0.5, TRANSFER.need: 1.0}
    expected = sum(weights[k] * openness[k] for k in weights) / sum(weights.values())
    assert result.m == pytest.approx(expected) and 0 < expected < 1
    safe = result.needs[3]
    assert safe.satisfaction.text() == "no traffic" and safe.m_weight == 0 and safe.opportunity is None
    assert "no demand: open a safe deposit box" in result.m_formula
    assert "left out, no traffic: open a safe deposit box" in result.p_formula
    assert result.importance_measured == pytest.approx(12 / 17)
    # Raising the unasked need's openness does not move M at all.
    assert score([*needs[:3], Need("open a safe deposit box", 5, 1.0)], outcomes).m == pytest.approx(expected)


def test_an_option_the_bot_cannot_serve_scores_below_one_it_serves() -> None:
    """Acceptance (c): the same evidence, two options."""
    vectors = Vectors(EMBED)
    served = parse_needs([f"{CARD.need} | 5 | 2", f"{FEE.need} | 4 | 3", f"{TRANSFER.need} | 3 | 2"])
    advice = parse_needs(["buy shares advice | 5 | 1", "buy bitcoin | 4 | 1"])
    links = [
        *LINKS,
        NeedLink("buy shares advice", routes=("advice",), examples=tuple(ADVICE)),
        NeedLink("buy bitcoin", examples=("bitcoin crypto",)),
    ]
    outcomes = judge(TRUTH.log, links, embed=vectors)
    a = score(served, outcomes)
    b = score(advice, outcomes)
    assert [n.messages for n in b.needs] == [8, 16]
    assert all(n.satisfaction.successes == 0 for n in b.needs)
    assert b.p_d_given_u == 0.0 and b.m == pytest.approx(1.0)  # a wide-open market Teller does not serve
    assert a.score is not None and b.score is not None and b.score < a.score
    assert any(
        "advice refusal, by design" in idea and "knowledge-base entry" not in idea for idea in b.raise_p
    )
    # The same through the side-by-side comparison, and as the brief shows it.
    both = compare(
        [
            Option("advice-led", tuple(advice), tuple(links[3:])),
            Option("service", tuple(served), tuple(LINKS)),
        ],
        TRUTH.log,
        vectors,
    )
    assert [s.option.name for s in both] == ["service", "advice-led"]
    assert [s.result.score for s in both] == pytest.approx([a.score, b.score])
    table = render_comparison(both)
    assert (
        "| advice-led | everyone | 0.00 (95 % CI 0.00-0.13) | all traffic | 1.00 | 0.00 | 2 of 2 |" in table
    )
    print(f"\nserved option: {a.score_formula}\nadvice option: {b.score_formula}\n{table}")


def test_opportunity_map_marks_under_served_needs(tmp_path: Path) -> None:
    outcomes = judge(TRUTH.log, LINKS, embed=EMBED)
    result = score([Need(CARD.need, 3, 0.5), Need(FEE.need, 4, 0.5), Need(TRANSFER.need, 5, 0.5)], outcomes)
    by_need = {n.need: n for n in result.needs}
    for n in result.needs:
        value = n.satisfaction.value or 0.0
        assert n.opportunity == pytest.approx(2 * n.importance + max(2 * n.importance - 10 * value, 0))
    assert by_need[TRANSFER.need].under_served and not by_need[CARD.need].under_served
    files = write_brief(tmp_path, load_script(), {"product": "Teller"}, result, gather(TRUTH.log, "t"))
    brief = files.markdown.read_text()
    assert re.search(
        r"\| N3 \| send money abroad \| 10 \| \d\.\d \| 1\d\.\d \| [\d.]+-[\d.]+ \| \*\*under-served\*\* \|",
        brief,
    )
    assert files.opportunity_chart is not None and files.opportunity_chart.read_bytes().startswith(b"\x89PNG")


def test_candidate_needs_cluster_all_unresolved_traffic(tmp_path: Path) -> None:
    outcomes = judge(TRUTH.log, LINKS, embed=EMBED)
    evidence = gather(
        TRUTH.log, "t", embed=EMBED, distance=0.6, unresolved=outcomes.unresolved, resolved=outcomes.resolved
    )
    crypto = next(c for c in evidence.candidate_needs if "bitcoin" in c.label)
    assert crypto.messages == 16 and crypto.size == 8 and crypto.routes == (("handoff", 16),)
    assert crypto.guesses == (("fiat currency support", 16),)
    shares = next(c for c in evidence.candidate_needs if "shares" in c.label)
    assert shares.messages == 8 and shares.routes == (("advice", 8),)
    assert evidence.unresolved_messages == len(outcomes.unresolved)
    result = score([Need(s.need, 4, 0.5) for s in (CARD, FEE, TRANSFER)], outcomes)
    brief = write_brief(tmp_path, load_script(), {"product": "Teller"}, result, evidence).markdown.read_text()
    crypto_line = "16 messages (8 distinct; Teller's replies: handoff 16; classifier's guesses: fiat currency support 16)"  # noqa: E501
    assert crypto_line in brief
    assert f"asking again; advice refusals are not contained): {containment_text(outcomes.resolved)}" in brief


def test_direct_clustering_groups_by_meaning() -> None:
    clusters = cluster_exchanges([LoggedExchange(t, "handoff") for t in CRYPTO + ADVICE], EMBED, distance=0.6)
    assert sorted(c.messages for c in clusters) == [4, 8]


def test_market_override_needs_a_figure_and_a_source() -> None:
    assert parse_market_override("80% | study") == MarketOverride(0.8, "study")
    for bad in ("0.8", "1.5 | x", "high | x"):
        with pytest.raises(Exception, match="market match"):
            parse_market_override(bad)
