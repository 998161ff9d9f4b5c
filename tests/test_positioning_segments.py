"""U is real: the persona mapped to the log's segments, and P(D|U) for the target users beside all
traffic, with n and interval; a named segment without traffic says so; no segments: U = everyone."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from positioning.brief import write_brief
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
    assert t.all_traffic is not None and result.p_d_given_u == pytest.approx(t.all_traffic.value)
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
    assert "## The target users (U)" in brief and "P(D|U) above is over all traffic." in brief
    assert f"| target users (retail, sme) | {t.estimate.text()} | 120 |" in brief
    assert f"| all traffic | {t.all_traffic.text()} | 240 |" in brief and "| sme | no traffic | 0 |" in brief
    assert "No conversation of these needs came from sme: no P(D|U) for it." in brief
    assert "U = retail, sme" in (files.html.read_text() if files.html else "")


def test_no_segments_named_means_everyone() -> None:
    log, _ = _log(per_cell=10)
    outcomes = judge(log, LINKS)
    result = score(NEEDS, outcomes, None, None, choose_target({"target_users": "people"}, seen_segments(log)))
    t = result.target
    assert t is not None and t.everyone and t.estimate == t.all_traffic and t.conversations == 40
    assert t.text().startswith(
        "U = everyone (no segments named, and the persona names none seen in the log): "
        "P(D|U) is over all traffic, "
    )


def test_the_full_interview_asks_for_segments_and_targets_and_the_quick_one_stays_at_12() -> None:
    script = load_script()
    full = [q.id for q in script.ordered("full")]
    quick = [q.id for q in script.ordered(QUICK)]
    assert "target_segments" in full and "target_segments" not in quick and len(quick) == 12
    assert full.index("target_segments") == full.index("market_match") + 1  # appended to step 1
    question = script.question("target_segments")
    assert not question.required and question.suggest == "segments"
    for qid in ("target_latency_ms", "target_containment"):
        assert qid in full and qid in quick and script.question(qid).prefill
    # Appended at the end of their steps: the questions before them keep their numbers.
    assert full[full.index("architecture_notes") + 1] == "target_latency_ms"
    assert full[-1] == "target_containment"
