"""Options and time (#16, item 4): every brief run is kept with its date and the next brief shows
the trend of each term since the last runs; other options are scored beside the interview's on
the same log without re-answering it (``teller brief ID --option ...`` / ``--options FILE``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.assistant import build_core
from bot.core import Incoming
from bot.positioning_desk import PositioningDesk
from bot.settings import get_settings
from positioning.errors import PositioningError
from positioning.options import parse_option, parse_options
from tests.test_cli import run
from tests.test_positioning_desk import _completed

SERVICE = "Service first: understand a fee | 5; track a card that hasn't arrived | 4 | 1"
ADVICE = "Advice led: investment advice | 5; portfolio analysis | 4; m=0.8 | the source article"


def test_options_are_written_as_one_line_each() -> None:
    spec = parse_option(ADVICE)
    assert spec.name == "Advice led" and [n.text for n in spec.needs] == [
        "investment advice",
        "portfolio analysis",
    ]
    assert spec.m_override is not None and spec.m_override.value == 0.8
    service = parse_option(SERVICE)
    assert service.needs[1].competitor_coverage == 0.0 and service.needs[0].competitor_coverage is None
    assert [s.name for s in parse_options(f"# two options\n{SERVICE}\n\n{ADVICE}")] == [
        "Service first",
        "Advice led",
    ]
    assert [s.name for s in parse_options(f"{SERVICE} || {ADVICE}")] == ["Service first", "Advice led"]
    for bad, message in [
        ("no name here", "expected 'name: need | importance"),
        ("Empty: ", "has no needs"),
        ("Twice: fees | 3; FEES | 4", "lists a need twice"),
        ("Bad: fees | 9", "has no importance"),
        ("M: fees | 3; m=2 | study", "between 0 and 1"),
    ]:
        with pytest.raises(PositioningError, match=message):
            parse_option(bad)


def test_briefs_show_the_trend_and_options_side_by_side(teller_env: Path) -> None:
    settings = get_settings()
    core = build_core(settings)
    desk = PositioningDesk(settings, policy=lambda: core.policy, store=core.store)
    try:
        for user in ("u1", "u2"):
            core.handle(Incoming("web", user, user, None, "What's the overdraft fee?"))
        interview = _completed(desk, {"needs": ["understand a fee | 4 | 2", "investment advice | 2 | 1"]})
        first = desk.write_brief(interview)
        text = first.files.markdown.read_text()
        assert "This is the first brief of this interview" in text and first.files.trend_chart is None
        assert first.comparison == ()
        # A week of new traffic later (here: a moment), with two options to compare.
        for user, message in [
            ("u3", "What's the overdraft fee?"),
            ("u4", "Which shares should I buy to get rich?"),
            ("u5", "Should I invest my savings in stocks?"),
        ]:
            core.handle(Incoming("web", user, user, None, message))
        second = desk.write_brief(interview, options=[parse_option(SERVICE), parse_option(ADVICE)])
        text = second.files.markdown.read_text()
        kept = core.store.interviews.briefs(interview)
        assert len(kept) == 2
        assert f"| {kept[0].written_at[:16].replace('T', ' ')} |" in text and "(this brief) |" in text
        fee_before = kept[0].score["needs"][0]["satisfaction"]["trials"]
        fee_now = second.score.needs[0].satisfaction.trials
        assert fee_now > fee_before
        was = kept[0].score["needs"][0]["satisfaction"]["value"]
        assert f"| satisfaction: understand a fee | {was:.2f} (n={fee_before}) |" in text
        assert second.files.trend_chart is not None and second.files.trend_chart.exists()
        # Options: the same log, each option its own needs; a need the interview lists keeps its links.
        names = [s.option.name for s in second.comparison]
        assert set(names) == {"as interviewed", "Service first", "Advice led"}
        service = next(s for s in second.comparison if s.option.name == "Service first")
        advice = next(s for s in second.comparison if s.option.name == "Advice led")
        assert service.result.needs[0].satisfaction.trials == fee_now
        assert service.result.needs[1].competitor_coverage == 0.0  # rated in the option
        assert advice.result.m == 0.8 and advice.result.m_source == "entered: the source article"
        assert (advice.result.p_d_given_u or 0.0) < (service.result.p_d_given_u or 0.0)
        assert "## Positioning options side by side" in text and "| Advice led |" in text
        # Advice is declined by Teller's rules: no recommendation asks for an entry for it.
        assert not any(
            "investment advice" in i and "knowledge-base entry" in i for i in advice.result.raise_p
        )
    finally:
        core.close()


def test_teller_brief_takes_options_on_the_command_line_and_from_a_file(
    teller_env: Path, tmp_path: Path
) -> None:
    settings = get_settings()
    core = build_core(settings)
    desk = PositioningDesk(settings, policy=lambda: core.policy, store=core.store)
    try:
        core.handle(Incoming("web", "u1", "u1", None, "What's the overdraft fee?"))
        interview = _completed(desk, {"needs": ["understand a fee | 4 | 2", "investment advice | 2 | 1"]})
    finally:
        core.close()
    code, stdout, stderr = run("brief", interview, "--option", SERVICE, "--option", ADVICE, "--json")
    assert code == 0, stderr
    written = json.loads(stdout)
    assert {o["name"] for o in written["options"]} == {"as interviewed", "Service first", "Advice led"}
    assert written["html"].endswith("brief.html") and Path(written["html"]).exists()
    assert any(c.endswith("opportunity.png") for c in written["charts"])
    options = tmp_path / "options.txt"
    options.write_text(f"# the two we argue about\n{SERVICE}\n{ADVICE}\n", encoding="utf-8")
    code, stdout, _ = run("brief", interview, "--options", str(options))
    assert code == 0 and "| option | U | P(D\\|U) (95 % CI) |" in stdout and "HTML: " in stdout
    code, _, stderr = run("brief", interview, "--option", "no name")
    assert code == 2 and "expected 'name: need | importance" in stderr


def test_options_with_their_own_u_are_scored_over_their_segments() -> None:
    """#16: ``u=`` gives an option its own target users; two options with the same needs and
    different U get different P(D|U) on a log whose segments differ. Unknown names are refused."""
    from positioning.evidence import LoggedExchange
    from positioning.needs import NeedLink
    from positioning.options import Option, compare, option_target
    from positioning.segments import Target, seen_segments

    # Retail customers get their fee answered; premier customers' answers are thumbed down.
    log = [
        LoggedExchange("overdraft fee?", "faq", None, "overdraft_fee", customer=f"r{i}", segment="retail")
        for i in range(4)
    ] + [
        LoggedExchange(
            "overdraft fee?", "faq", None, "overdraft_fee", flagged=True, customer=f"p{i}", segment="premier"
        )
        for i in range(4)
    ]
    seen = list(seen_segments(log))
    interview = Target((), "the interview's")
    retail = parse_option("Retail: understand a fee | 4 | 2; u=Retail")
    premier = parse_option("Premier: understand a fee | 4 | 2; u=premier")
    everyone = parse_option("All: understand a fee | 4 | 2; u=everyone")
    plain = parse_option("Plain: understand a fee | 4 | 2")
    assert (retail.segments, everyone.segments, plain.segments) == (("retail",), (), None)
    assert option_target(plain, seen, interview) is interview
    links = (NeedLink("understand a fee", kb_ids=("overdraft_fee",)),)
    options = [
        Option(s.name, s.needs, links, target=option_target(s, seen, interview))
        for s in (retail, premier, everyone)
    ]
    by_name = {s.option.name: s.result for s in compare(options, log)}
    assert by_name["Retail"].p_d_given_u == 1.0 and by_name["Retail"].p_over == "target users (retail)"
    assert by_name["Premier"].p_d_given_u == 0.0 and by_name["Premier"].p_over == "target users (premier)"
    assert by_name["All"].p_d_given_u == 0.5 and by_name["All"].p_over == "all traffic"
    from positioning.brief import render_comparison

    table = render_comparison(compare(options, log))
    assert "| Retail | retail | " in table and "| All | everyone | " in table
    # Each option's figures are traced below the table, with its own numbers.
    traced = table.split("How each option's figures are computed:")[1]
    retail_line = next(line for line in traced.splitlines() if line.startswith("- **Retail**"))
    assert by_name["Retail"].p_formula and by_name["Retail"].p_formula in retail_line
    with pytest.raises(
        PositioningError, match=r"u=vip is not a segment or channel seen in the log \(known: retail, premier"
    ):
        option_target(parse_option("VIP: understand a fee | 4; u=vip"), seen, interview)
    with pytest.raises(PositioningError, match="u= names no segment"):
        parse_option("None: understand a fee | 4; u=")
