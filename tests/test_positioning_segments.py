"""U is real: the persona mapped to the log's segments, and P(D|U) for the target users beside all
traffic, with n and interval; a named segment without traffic says so; no segments: U = everyone."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import pytest

from positioning.brief import escape_markdown, write_brief
from positioning.evidence import LoggedExchange, gather
from positioning.needs import Need, NeedLink
from positioning.outcomes import judge
from positioning.scoring import score
from positioning.script import QUICK, load_script
from positioning.segments import (
    EVERYONE_NAMED,
    MAPPED,
    NAMED,
    NONE_FOUND,
    Target,
    choose_target,
    map_persona,
    seen_segments,
)

NEEDS = [Need("track a card", 5, 0.4), Need("understand a fee", 3, 0.4)]
LINKS = [NeedLink("track a card", intents=("card_arrival",)), NeedLink("understand a fee", kb_ids=("fees",))]
#: The true resolution rate of each need, per segment (retail is served well, premier poorly).
RATES = {("retail", "track a card"): 0.9, ("retail", "understand a fee"): 0.8}
RATES |= {("premier", "track a card"): 0.3, ("premier", "understand a fee"): 0.2}


def _log(seed: int = 7, per_cell: int = 60) -> tuple[list[LoggedExchange], dict[str, int]]:
    """One message per customer; resolved ones answered by the linked intent or entry, the rest
    thumbed down. Returns the log and the resolved count per segment (importance-weighted later)."""
    rng = random.Random(seed)
    out: list[LoggedExchange] = []
    resolved: dict[str, int] = {}
    for (segment, need), rate in RATES.items():
        for i in range(per_cell):
            ok = rng.random() < rate
            resolved[f"{segment}/{need}"] = resolved.get(f"{segment}/{need}", 0) + ok
            card = need == "track a card"
            out.append(
                LoggedExchange(
                    f"{need} please {i}",
                    "intent" if card else "faq",
                    "card_arrival" if card else None,
                    None if card else "fees",
                    flagged=not ok,
                    customer=f"{segment}-{need}-{i}",
                    at=1000.0 + len(out),
                    channel="web" if segment == "retail" else "telegram",
                    segment=segment,
                )
            )
    return out, resolved


def test_the_persona_is_mapped_to_segments_seen_in_the_log() -> None:
    log, _ = _log(per_cell=2)
    seen = seen_segments(log)
    assert seen == {"retail": 4, "premier": 4, "web": 4, "telegram": 4}
    assert map_persona("Retail customers of a digital bank, mobile first", list(seen)) == ["retail"]
    assert map_persona("Premier clients who bank on Telegram", list(seen)) == ["premier", "telegram"]
    assert map_persona("small businesses", ["small_business", "retail"]) == ["small_business"]
    assert map_persona("retailers", ["retail"]) == []  # whole words only
    answers = {"target_users": "Retail customers"}
    assert choose_target(answers, seen) == Target(("retail",), MAPPED)
    assert choose_target({**answers, "target_segments": ["Premier"]}, seen) == Target(("premier",), NAMED)
    assert choose_target({**answers, "target_segments": ["everyone"]}, seen) == Target((), EVERYONE_NAMED)
    assert choose_target({"target_users": "people"}, seen) == Target((), NONE_FOUND)


def test_p_d_given_u_for_the_target_segments_beside_all_traffic(tmp_path: Path) -> None:
    log, resolved = _log()
    outcomes = judge(log, LINKS)
    target = choose_target({"target_segments": ["retail", "sme"]}, seen_segments(log))
    result = score(NEEDS, outcomes, None, None, target)
    t = result.target
    assert t is not None and t.segments == ("retail", "sme") and t.source == NAMED
    # Recovered exactly from the drawn outcomes: importance-weighted resolved shares of retail only.
    card, fee = resolved["retail/track a card"] / 60, resolved["retail/understand a fee"] / 60
    assert t.estimate is not None and t.estimate.value == pytest.approx((5 * card + 3 * fee) / 8)
    assert t.estimate.low <= (5 * 0.9 + 3 * 0.8) / 8 <= t.estimate.high  # the true rate, in its CI
    assert t.conversations == 120 and t.all_conversations == 240
    # The headline P(D|U), and so the positioning, is the target users'; all traffic is beside it.
    assert result.p_d_given_u == pytest.approx(t.estimate.value) and result.p_interval == t.estimate
    assert result.over_target and result.p_over == "target users (retail, sme)"
    assert t.all_traffic is not None and result.p_all_traffic == pytest.approx(t.all_traffic.value)
    assert result.score == pytest.approx(t.estimate.value * 0.6)  # M = 1 - 0.4 for both needs
    assert t.estimate.value > t.all_traffic.value + 0.2  # premier, served poorly, pulls all traffic down
    assert t.per_segment["sme"] == (None, 0) and t.without_traffic == ["sme"]
    assert f"5x{resolved['retail/track a card']}/60" in t.formula
    text = t.text()
    assert "U = retail, sme (named by the PM in the interview)" in text and "120 conversations" in text
    assert "No traffic from sme for these needs, so no P(D|U) for it." in text
    assert "over all traffic" in text and "240 conversations" in text

    # A channel names the target users too (premier customers write on Telegram here).
    by_channel = score(NEEDS, outcomes, None, None, Target(("telegram",), NAMED)).target
    assert by_channel is not None and by_channel.conversations == 120
    assert by_channel.estimate is not None and by_channel.estimate.value < 0.4

    evidence = gather(log, "test", resolved=outcomes.resolved)
    files = write_brief(tmp_path, load_script(), {"product": "Teller"}, result, evidence)
    brief = files.markdown.read_text()
    assert "## The target users (U)" in brief
    assert f"**Positioning = P(D|U) x M = {t.estimate.value:.2f} x 0.60 = {result.score:.2f}**" in brief
    assert result.p_scope == (
        "P(D|U) is over the target users' conversations (retail, sme, named by the PM in the interview; "
        f"120 conversations); over all traffic it is {t.all_traffic.text()} (240 conversations), for "
        "comparison."
    )
    assert escape_markdown(result.p_scope) in brief
    assert f"| target users (retail, sme) | {t.estimate.text()} | 120 |" in brief
    assert f"| all traffic (comparison) | {t.all_traffic.text()} | 240 |" in brief
    assert "| sme | no traffic | 0 |" in brief
    assert "No conversation of these needs came from sme: no P(D|U) for it." in brief
    # Every number traced: the target's terms in the formula, all traffic's beside them, and each
    # need's resolved share for U beside all traffic.
    formula = brief.split("## How the score is computed")[1].split("##")[0]
    assert f"`P(D|U=retail, sme) = (5x{resolved['retail/track a card']}/60 + 3x" in formula
    assert "For comparison, over all traffic (not used in the score)" in formula
    assert f"`P(D|all traffic) = (5x{result.needs[0].satisfaction.value:.2f} + 3x" in formula
    assert f"Positioning = {t.estimate.value:.2f} x 0.60 = {result.score:.2f}" in formula
    card_rate = f"{resolved['retail/track a card']}/60"
    assert f"| track a card | 5 | {t.by_need['track a card'].text()} |" in brief and card_rate in brief
    assert "U = retail, sme" in (files.html.read_text() if files.html else "")


def test_no_segments_named_means_everyone(tmp_path: Path) -> None:
    log, _ = _log(per_cell=10)
    outcomes = judge(log, LINKS)
    result = score(NEEDS, outcomes, None, None, choose_target({"target_users": "people"}, seen_segments(log)))
    t = result.target
    assert t is not None and t.everyone and t.estimate == t.all_traffic and t.conversations == 40
    assert t.text().startswith(
        "U = everyone (no segments named, and the persona names none seen in the log): "
        "P(D|U) is over all traffic, "
    )
    assert not result.over_target and result.p_over == "all traffic"
    assert result.p_scope == (
        "P(D|U) is over all traffic: U is everyone (no segments named, and the persona names none "
        "seen in the log)."
    )
    brief = write_brief(tmp_path, load_script(), {"product": "Teller"}, result, gather(log, "t")).markdown
    assert escape_markdown(result.p_scope) in brief.read_text()


def test_target_users_without_traffic_fall_back_to_all_traffic_and_say_so(tmp_path: Path) -> None:
    """A target whose segments had no conversation of the needs: the headline is all traffic, said
    plainly in the brief; the target's empty formula is shown so the reader sees why."""
    log, _ = _log(per_cell=10)
    outcomes = judge(log, LINKS)
    plain = score(NEEDS, outcomes)
    result = score(NEEDS, outcomes, None, None, Target(("sme",), NAMED))
    assert not result.over_target and result.p_over == "all traffic"
    assert result.p_d_given_u == plain.p_d_given_u and result.score == plain.score
    assert result.p_formula == plain.p_formula
    assert "the target users (sme, named by the PM in the interview) had no conversation" in result.p_scope
    t = result.target
    assert t is not None and not t.measured
    assert "P(D|U) falls back to all traffic" in t.text()
    brief = write_brief(tmp_path, load_script(), {"product": "Teller"}, result, gather(log, "t"))
    text = brief.markdown.read_text()
    assert escape_markdown(result.p_scope) in text and "over all traffic: the target users \\(sme" in text
    assert "`P(D|U=sme): no traffic from these segments for any need`: so P(D|U) above is over all" in text
    assert "the headline P(D|U) falls back to all traffic" in text
    assert "For comparison, over all traffic" not in text


def test_options_and_the_trend_follow_the_same_rule() -> None:
    """Options are scored over the target users too, and the trend reads kept briefs under the same
    rule (an old brief, headline over all traffic with the target's figure beside it, reads as the
    target's) and marks a change of U."""
    from positioning.options import Option, compare
    from positioning.trend import run_now, run_of, trend_rows

    log, _ = _log()
    target = Target(("retail",), NAMED)
    option = Option("Retail", tuple(NEEDS), tuple(LINKS), target=target)
    nobody = Option("SME", tuple(NEEDS), tuple(LINKS), target=Target(("sme",), NAMED))
    scored = {s.option.name: s.result for s in compare([option, nobody], log)}
    retail = score(NEEDS, judge(log, LINKS), None, None, target)
    assert scored["Retail"].p_d_given_u == pytest.approx(retail.p_d_given_u)
    assert scored["Retail"].p_over == "target users (retail)" and scored["SME"].p_over == "all traffic"
    from positioning.brief import render_comparison

    table = render_comparison(list(compare([option, nobody], log)))
    assert "| over |" in table and "| target users \\(retail\\) |" in table and "| all traffic |" in table

    # The trend: this run over retail; an old brief's stored score (before the rule) had all traffic
    # as its headline and retail's figure beside it.
    old = retail.to_dict()
    old.pop("p_over")
    old["p_d_given_u"], old["score"] = retail.p_all_traffic, (retail.p_all_traffic or 0) * 0.6
    before = run_of("2026-11-01T08:00:00Z", old)
    assert before.over == "target users (retail)"
    assert before.p == pytest.approx(retail.p_d_given_u) and before.score == pytest.approx(retail.score)
    now = run_now(retail, "2026-11-08T08:00:00Z")
    rows = {term: (cells, change) for term, cells, change in trend_rows([before], now)}
    assert rows["P(D|U) over"] == (["target users (retail)"] * 2, "-")
    assert rows["P(D|U)"][1] == "no change"
    everyone = run_now(score(NEEDS, judge(log, LINKS)), "2026-11-15T08:00:00Z")
    rows = {term: (cells, change) for term, cells, change in trend_rows([before, now], everyone)}
    assert rows["P(D|U) over"][1] == "U changed" and rows["P(D|U)"][1].endswith("(U changed)")


def test_the_full_interview_asks_for_segments_and_targets_and_the_quick_one_stays_at_12() -> None:
    script = load_script()
    full = [q.id for q in script.ordered("full")]
    quick = [q.id for q in script.ordered(QUICK)]
    assert "target_segments" in full and "target_segments" not in quick and len(quick) == 12
    assert full.index("target_segments") == full.index("market_match") + 1  # appended to step 1
    question = script.question("target_segments")
    assert not question.required and question.suggest == "segments"
    for qid in ("target_latency_ms", "target_containment"):
        assert qid in full and qid in quick and script.question(qid).measured  # shown, not prefilled
    # Appended at the end of their steps: the questions before them keep their numbers.
    assert full[full.index("architecture_notes") + 1] == "target_latency_ms"
    assert full[-1] == "target_containment"


def test_a_segment_named_after_a_negation_is_excluded() -> None:
    seen = ["retail", "premier", "private", "sme", "telegram"]
    assert map_persona("Retail customers, not premier", seen) == ["retail"]
    assert map_persona("Retail and SME customers except premier and private", seen) == ["retail", "sme"]
    assert map_persona("Everyone other than premier; mostly retail", seen) == ["retail"]
    assert map_persona("No premier customers. Retail, on Telegram", seen) == ["retail", "telegram"]
    assert map_persona("Young retail customers, excluding private banking", seen) == ["retail"]
    assert map_persona("Premier customers who have no savings", seen) == ["premier"]


def test_options_count_needs_with_traffic_over_the_conversations_p_is_over() -> None:
    """An option over the target users counts the needs *they* had conversations of."""
    from positioning.brief import render_comparison
    from positioning.options import Option, compare

    log, _ = _log()
    fees = [e for e in log if e.kb_id != "fees"] + [  # fees: only SME customers asked
        LoggedExchange("what is this fee", "faq", None, "fees", customer=f"s{i}", at=9e3 + i, segment="sme")
        for i in range(5)
    ]
    option = Option("Retail", tuple(NEEDS), tuple(LINKS), target=Target(("retail",), NAMED))
    [scored] = compare([option], fees)
    assert scored.result.over_target and all(n.measured for n in scored.result.needs)  # all traffic
    row = next(line for line in render_comparison([scored]).splitlines() if line.startswith("| Retail"))
    assert "| 1 of 2 |" in row


def test_a_persona_that_only_excludes_a_segment_suggests_the_others() -> None:
    """A persona of "高端客户, not retail customers" names no segment Teller has seen but excludes retail: the
    suggestion is the others, never retail."""
    from positioning.segments import excluded_by_persona

    seen = ["web", "premier", "retail"]
    assert map_persona("高端客户, not retail customers", seen) == []
    assert excluded_by_persona("高端客户, not retail customers", seen) == ["retail"]
    assert excluded_by_persona("Retail customers, not premier", seen) == ["premier"]
    assert excluded_by_persona("retail customers", seen) == []


@pytest.mark.parametrize(
    ("persona", "target"),
    [
        ("Non-retail customers", ("web", "premier")),
        ("premier customers rather than retail", ("premier",)),
        ("Premier customers; retail excluded", ("premier",)),
        ("Premier and non-retail customers", ("premier",)),
        ("Anyone except retail", ("web", "premier")),
        ("No-fee premier customers", ("premier",)),
        ("no premier customers, retail only", ("retail",)),
        ("Retail customers of a digital bank, mobile first", ("retail",)),
    ],
)
def test_the_persona_s_negations_decide_u(persona: str, target: tuple[str, ...]) -> None:
    """A third review's wordings: a negated segment is never U; one that only excludes gives the
    others; "no" and "non" reach only the next word ("no-fee premier" is premier)."""
    from positioning.segments import choose_target

    assert choose_target({"target_users": persona}, ["web", "premier", "retail"]).segments == target


def test_what_would_raise_p_is_worked_out_over_the_headlines_conversations() -> None:
    """A reviewer found the "up to +x" of each idea worked out over all traffic and over the
    importance of every need, one without traffic included, while the headline P(D|U) was the target
    users' over the needs they brought. Each gain is now what the headline itself would gain."""
    import re

    log, resolved = _log()
    outcomes = judge(log, [*LINKS, NeedLink("open a safe deposit box", kb_ids=("lockers",))])
    needs = [*NEEDS, Need("open a safe deposit box", 4, 0.4)]  # no conversation of it at all
    result = score(needs, outcomes, None, None, Target(("retail",), NAMED))
    assert result.over_target and result.p_d_given_u is not None
    card, fee = resolved["retail/track a card"] / 60, resolved["retail/understand a fee"] / 60
    gains = {
        need: float(m.group(1))
        for idea in result.raise_p
        for need in ("track a card", "understand a fee")
        if need in idea and (m := re.search(r"up to \+([0-9.]+)", idea))
    }
    # Resolving every retail conversation of a need raises the retail P(D|U) by exactly this.
    assert gains["track a card"] == pytest.approx(5 * (1 - card) / 8, abs=0.005)
    assert gains["understand a fee"] == pytest.approx(3 * (1 - fee) / 8, abs=0.005)
    assert result.p_d_given_u + gains["track a card"] == pytest.approx((5 + 3 * fee) / 8, abs=0.005)
    assert any("safe deposit box" in idea and "no traffic" in idea for idea in result.raise_p)


def test_a_channel_row_among_segments_says_it_holds_the_conversations_without_one() -> None:
    """A reviewer found "web 0.00 (3)" in the brief's segment table (the web conversations without a
    backend segment) beside an option for "web" at 0.91 (every web conversation)."""
    log, _ = _log(per_cell=3)
    log.append(
        LoggedExchange(
            "track a card please, no segment",
            "intent",
            "card_arrival",
            None,
            customer="anon-1",
            at=5000.0,
            channel="web",
            segment=None,
        )
    )
    result = score(NEEDS, judge(log, LINKS))
    assert set(result.segments) == {"retail", "premier", "web (no segment)"}
    # Without a segment anywhere, a channel is the segment and is named plainly.
    plain = [replace(e, segment=None) for e in log]
    assert set(score(NEEDS, judge(plain, LINKS)).segments) == {"web", "telegram"}
