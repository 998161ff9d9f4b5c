"""The brief a PM would show (#16, item 5): an executive summary with a one-sentence positioning
statement from April Dunford's components, launch checks of the PM's targets against Teller's
measured figures, recommendations within the product's rules, the trend since the last runs, and a
self-contained HTML export beside the Markdown and PNG charts."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from positioning.brief import BriefExtras, answered_by, label_offsets, plot_evidence, to_html, write_brief
from positioning.evidence import LoggedExchange, gather
from positioning.needs import Need, NeedLink
from positioning.outcomes import judge
from positioning.rules import TELLER_ADVICE_RULE, Rules, product_rules, rules_from_answers
from positioning.scoring import PositioningScore, score
from positioning.script import load_script
from positioning.stats import Rate
from positioning.summary import (
    CONTAINMENT_MEANS,
    FAIL,
    NO_TARGET,
    NOT_MEASURED,
    PASS,
    launch_checks,
    positioning_statement,
    recommendations,
)
from positioning.trend import run_now, run_of, trend_lines
from tests.test_positioning_outcomes import CARD, CRYPTO, EMBED, FEE, LINKS, TRANSFER, TRUTH

ANSWERS = {
    "product": "Teller, a chat assistant for Lumen Bank customers",
    "target_users": "Retail customers of a digital bank, 20-45, mobile first",
    "competitors": ["Big-bank phone lines: slow", "Generic chatbots: shallow"],
    "gap": "Instant, accurate answers with a human when needed",
    "target_accuracy": 94.0,
    "target_latency_ms": 250,
    "target_containment": 70.0,
    "success_metric": "Containment rate",
    "application_scenarios": ["Answer customer FAQs", "Advice triage to advisers"],
}
MEASURED = {
    "model_version": "v7 (tiny-bert, int8, 77 intents)",
    "accuracy": 93.9,
    "latency_ms": 14.2,
    "containment": 61.5,
}
ADVICE_NEED = "crypto investment advice"


def scored(rules: Rules | None = None) -> PositioningScore:
    """The generated log's three needs plus an advice need whose conversations were all handed off."""
    needs = [Need(s.need, 4, 0.25, "test") for s in (CARD, FEE, TRANSFER)] + [
        Need(ADVICE_NEED, 5, 0.25, "test")
    ]
    links = [*LINKS, NeedLink(ADVICE_NEED, examples=tuple(CRYPTO), status="confirmed")]
    return score(needs, judge(TRUTH.log, links, embed=EMBED), rules=rules)


def test_positioning_statement_from_dunford_s_components() -> None:
    result = scored()
    statement = positioning_statement(ANSWERS, result)
    sentence = statement.sentence()
    assert sentence.startswith(
        "For retail customers of a digital bank, 20-45, mobile first who today turn to Big-bank phone "
        "lines or Generic chatbots, Teller is a chat assistant for Lumen Bank customers that offers "
        "instant, accurate answers with a human when needed, and it resolves "
    )
    card = result.needs[0]
    assert f"{100 * (card.satisfaction.value or 0):.0f} % of conversations about “{CARD.need}”" in sentence
    assert sentence.count(".") == 1 and sentence.endswith(").")  # one sentence
    components = {name: source for name, _, source in statement.components()}
    assert list(components) == [
        "Competitive alternatives",
        "Unique attributes",
        "Value",
        "Best-fit customers",
        "Market category",
    ]
    assert components["Value"] == "measured on Teller's log (resolved conversations)"
    # Without traffic the value is what the product is meant to do, and says so.
    quiet = score([Need("open a safe box", 3, 0.5)], judge([], [NeedLink("open a safe box")]))
    assert "(no traffic measured yet)" in positioning_statement({"product": "Teller"}, quiet).value


def test_launch_checks_hold_the_pm_s_targets_against_teller_s_figures() -> None:
    checks = {c.name: c for c in launch_checks(ANSWERS, MEASURED, scored(), Rate(49, 100))}
    accuracy = checks["Classifier accuracy"]
    assert (accuracy.target, accuracy.measured, accuracy.status) == ("at least 94 %", "93.9 %", FAIL)
    latency = checks["Reply latency (95th percentile)"]
    assert (latency.target, latency.measured, latency.status) == ("at most 250 ms", "14.2 ms", PASS)
    containment = checks["Containment"]
    assert (containment.target, containment.status) == ("at least 70 %", FAIL)
    assert containment.measured == "49.0 % (49/100 conversations, 95 % CI 39.4-58.7 %)"
    assert containment.note == CONTAINMENT_MEANS
    assert checks["Success metric: Containment rate"].status == FAIL
    # No target stated, a figure Teller cannot measure, a metric it does not know.
    other = {c.name: c for c in launch_checks({"success_metric": "NPS"}, {"accuracy": 95.0})}
    assert other["Classifier accuracy"].status == NO_TARGET
    assert other["Reply latency (95th percentile)"].status == NOT_MEASURED
    assert other["Success metric: NPS"].status == NOT_MEASURED
    resolved = {
        c.name: c for c in launch_checks({"success_metric": "First-contact resolution"}, {}, None, Rate(3, 4))
    }
    assert resolved["Success metric: First-contact resolution"].measured.startswith("75.0 % (3/4 conv")


def test_rules_come_from_the_product_and_the_pm_s_own_words() -> None:
    pm = rules_from_answers(
        {
            "architecture_notes": "Teller must not give investment advice; CPU only",
            "gap": "不能提供理财建议",
            "product": "Teller, never quotes exchange rates",
            "needs": ["understand a fee | 4"],
        }
    )
    rules = Rules(tuple(pm))
    assert rules.declines("investment advice") and rules.declines("理财建议")
    assert rules.declines("today's exchange rates")
    assert rules.declines("understand a fee") is None and rules.declines("track a card") is None
    assert "the PM's answer to architecture_notes: “must not give investment advice”" in [
        r.source for r in pm
    ]
    # Teller's own rule covers the source article's worked example, in Chinese or English.
    teller = product_rules({}, (TELLER_ADVICE_RULE,))
    assert all(teller.declines(n) for n in ("理财建议", "投资分析", "investment analysis", "pension advice"))
    assert teller.declines("客户咨询") is None
    scenario = rules_from_answers({"application_scenarios": ["Advice triage to advisers"]})
    assert scenario and scenario[0].covers("financial advice")


def test_recommendations_never_ask_teller_to_serve_what_its_rules_decline() -> None:
    unruled = scored()
    advice = next(n for n in unruled.needs if n.need == ADVICE_NEED)
    assert advice.measured and "handed off" in advice.reasons
    # Scored without the rules, the handoffs read as "add a knowledge-base entry"...
    assert any(ADVICE_NEED in i and "knowledge-base entry" in i for i in unruled.raise_p)
    # ... which the summary leaves out once it knows the rules.
    rules = product_rules(ANSWERS, (TELLER_ADVICE_RULE,))
    summary = recommendations(unruled, [], rules, limit=20)
    assert not any(ADVICE_NEED in i and "knowledge-base entry" in i for i in summary)
    # Scored with them, the idea itself says what the bank may do instead.
    ruled = scored(rules)
    idea = next(i for i in ruled.raise_p if ADVICE_NEED in i)
    assert "Teller must not serve it itself (Teller's answer policy" in idea
    assert "outcome=adviser_call_booked" in idea and "knowledge-base entry" not in idea
    checks = launch_checks(ANSWERS, MEASURED)
    top = recommendations(ruled, checks, rules)
    assert top[0].startswith("Accuracy is 93.9 %, short of the target (at least 94 %)")
    assert len(top) <= 5


def test_the_brief_opens_with_the_summary_and_exports_one_self_contained_html(tmp_path: Path) -> None:
    rules = product_rules(ANSWERS, (TELLER_ADVICE_RULE,))
    result = scored(rules)
    log = [
        *TRUTH.log,
        LoggedExchange("<script>alert(1)</script> where is my refund", "handoff", customer="z"),
    ]
    earlier = run_of(
        "2026-11-23T09:00:00.000000Z", {**result.to_dict(), "p_d_given_u": 0.35, "m": 0.7, "score": 0.29}
    )
    files = write_brief(
        tmp_path,
        load_script(),
        {**ANSWERS, "product": "Teller <img src=x onerror=alert(1)>, a chat assistant"},
        result,
        gather(log, "last 30 days"),
        extras=BriefExtras([earlier], "2026-11-30T09:00:00Z", MEASURED, rules, asked=log),
    )
    text = files.markdown.read_text()
    head = text.split("## How the score is computed")[0]
    assert "## Executive summary" in head and "> For retail customers" in head
    # Not one of the documented forms ("Name, category" with a name before the comma): the whole
    # answer is the category, Teller the name.
    assert "| Market category | Teller &lt;img src=x onerror=alert\\(1\\)&gt;, a chat assistant |" in head
    assert "| Classifier accuracy | at least 94 % | 93.9 % | **fail** |" in head
    assert "**Recommendations**" in head and "Within the product's rules: Teller's answer policy" in head
    assert (
        "## Trend since the last runs" in text
        and "| 2026-11-23 09:00 | 2026-11-30 09:00 (this brief) |" in text
    )
    assert (
        f"| P\\(D\\|U\\) | 0.35 | {result.p_d_given_u:.2f} | {(result.p_d_given_u or 0) - 0.35:+.2f} |"
        in text
    )
    assert files.trend_chart is not None and files.trend_chart.read_bytes().startswith(b"\x89PNG")
    # The HTML: one file, every chart inlined, nothing fetched, customer text inert.
    assert files.html is not None
    page = files.html.read_text()
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page
    assert page.count('src="data:image/png;base64,') == len(files.charts) == 3
    assert not re.search(r'(?:src|href)="(?!data:)', page)
    assert "<script" not in page and "<img src=x" not in page and "&lt;img src=x" in page
    assert '<strong class="fail">fail</strong>' in page and "<table>" in page


def test_html_drops_images_it_cannot_inline() -> None:
    page = to_html("# T\n\n![chart](missing.png)\n\n![remote](https://example.com/x.png)\n", {})
    assert "<img" not in page and "example.com" not in page


def test_trend_reads_old_and_new_scores_and_shows_the_first_brief() -> None:
    result = scored()
    now = run_now(result, "2026-11-30T10:00:00Z")
    assert trend_lines([], now)[2] == "This is the first brief of this interview (2026-11-30 10:00 UTC)."
    old = run_of(
        "2026-11-01T10:00:00Z",
        {"p_d_given_u": 0.5, "m": None, "score": None, "needs": [{"need": CARD.need, "satisfaction": 0.9}]},
    )
    assert old.needs[CARD.need] == (0.9, 0) and old.m is None
    lines = "\n".join(trend_lines([old], now))
    assert "| M | - |" in lines and "satisfaction: send money abroad | not a need then |" in lines


def test_containment_is_one_strict_figure_everywhere_in_the_brief(tmp_path: Path) -> None:
    """The launch check, the evidence and the chart's title all read the strictly resolved
    conversations (with n and interval), never the lenient share of messages without a handoff."""
    log = [
        LoggedExchange("should I buy shares", "advice", "visa_or_mastercard", customer="a"),
        LoggedExchange("my card has not come", "intent", "card_arrival", customer="b"),
        LoggedExchange("what is this fee", "faq", "verify_source_of_funds", "fees", customer="c"),
        LoggedExchange("pension advice please", "handoff", "verify_source_of_funds", customer="d"),
    ]
    evidence = gather(log, "last 30 days", resolved=Rate(2, 4))
    assert evidence.containment_rate == 0.75  # the lenient figure the brief must not show
    files = write_brief(
        tmp_path,
        load_script(),
        ANSWERS,
        scored(),
        evidence,
        extras=BriefExtras(measured=MEASURED, asked=log),
    )
    text = files.markdown.read_text()
    assert (
        "| Containment | at least 70 % | 50.0 % (2/4 conversations, 95 % CI 15.0-85.0 %) | **fail** |" in text
    )
    assert "- Containment (conversations resolved without a person" in text
    assert "75%" not in text and "75 %" not in text and "61.5" not in text
    # What answered, not the classifier's guess: the advice question was declined, the pension
    # question handed off; "visa or mastercard" and "verify source of funds" never answered.
    groups = {g.label: g.messages for g in answered_by(log)}
    assert groups == {
        "advice declined": 1,
        "card arrival": 1,
        "KB: fees": 1,
        "handed off / not answered": 1,
    }
    asked = text.split("## What customers actually asked")[1].split("## The interview")[0]
    assert "| what answered | messages |" in asked and "| advice declined | 1 |" in asked
    assert "visa or mastercard" not in asked and "verify source of funds" not in asked
    assert files.chart is not None and files.chart.read_bytes().startswith(b"\x89PNG")


def test_the_evidence_chart_has_one_axis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import matplotlib.pyplot as plt

    figures = []
    real = plt.subplots

    def spy(*args: object, **kwargs: object) -> object:
        made = real(*args, **kwargs)  # type: ignore[arg-type]
        figures.append(made[0])
        return made

    monkeypatch.setattr(plt, "subplots", spy)
    log = [LoggedExchange("my card", "intent", "card_arrival"), LoggedExchange("x", "handoff")]
    plot_evidence(gather(log, "p", resolved=Rate(1, 2)), answered_by(log), tmp_path / "e.png")
    assert len(figures) == 1 and len(figures[0].axes) == 1
    assert "containment 50 % (1/2 conversations" in figures[0].axes[0].get_title()


def test_the_statement_names_alternatives_as_written_and_splits_the_product_only_on_its_forms() -> None:
    result = scored()
    answers = {
        **ANSWERS,
        "competitors": ["Monzo chat | instant answers", "branch staff | slow but personal"],
        "product": "Back office? No: Teller, Lumen's assistant",
    }
    statement = positioning_statement(answers, result)
    assert statement.alternatives == "Monzo chat or branch staff"
    assert (statement.product, statement.category) == ("Teller", "Back office? No: Teller, Lumen's assistant")
    assert "who today turn to Monzo chat or branch staff, Teller is Back office?" in statement.sentence()
    three = positioning_statement({"competitors": ["A: x", "B (y)", "C - z"]}, result, "Lumen")
    assert three.alternatives == "A, B or C" and three.product == "Lumen"
    assert (
        positioning_statement({"product": "Lumen Assist is a bank's chat"}, result).product == "Lumen Assist"
    )


def test_opportunity_labels_of_close_points_do_not_overlap() -> None:
    points = [(8.0, 6.0), (8.0, 6.2), (8.0, 5.9), (2.0, 1.0)]
    labels = ["N3 update my address (n=20)", "N1 track a card that has (n=31)", "N2 fee (n=9)", "N4 x (n=3)"]
    offsets = label_offsets(points, labels)
    boxes = [
        (x * 41 + dx, y * 34 + dy, x * 41 + dx + 4.8 * len(t), y * 34 + dy + 11)
        for (x, y), (dx, dy), t in zip(points, offsets, labels, strict=True)
    ]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1 :]:
            assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]), (a, b)
    assert offsets[3] == (6.0, 4.0)  # a point alone keeps the usual place
