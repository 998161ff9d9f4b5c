"""The positioning brief: Markdown with an executive summary (a one-sentence positioning statement
from April Dunford's components, launch checks, recommendations; :mod:`positioning.summary`), the
score and every number traced (formula, n and 95 % interval per need), the trend since the last
runs (:mod:`positioning.trend`), options side by side, the opportunity map (Ulwick), what would raise
each term, the evidence from the logs (intents in words, candidate needs clustered from all
unresolved traffic) with charts, and the interview's answers. Besides ``brief.md`` and its PNG
charts, ``brief.html`` is the same brief as one self-contained file (CSS inline, charts as base64
data URIs, nothing fetched from elsewhere).

Text Teller did not write (customers' questions, the interview's answers) goes in through
:func:`escape_markdown`, so it reads as written and never as markup: no link, image, HTML tag,
emphasis or table cell of its own.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from positioning.engine import format_answer
from positioning.evidence import Evidence, intent_words
from positioning.options import Scored
from positioning.rules import Rules
from positioning.scoring import UNDER_SERVED, NeedScore, PositioningScore
from positioning.script import Script
from positioning.summary import FAIL, PASS, launch_checks, positioning_statement, recommendations
from positioning.trend import Run, plot_trend, run_now, trend_lines

#: Characters with a meaning inside a Markdown line (CommonMark and GitHub's tables, strikethrough),
#: escaped with a backslash; ``<``, ``>`` and ``&`` become entities so no HTML tag or entity survives.
_INLINE = re.compile(r"([\\`*_{}\[\]()!|~#])")
_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
#: What starts a block when it opens a line: a list item, a quote, a numbered item, a heading.
_BLOCK_START = re.compile(r"^(\s*\d*)([-+.)])")
#: A bare URL GitHub would link by itself: its ``:`` or ``.`` is escaped.
_AUTOLINK = re.compile(r"(?i)\b(https?|ftp|mailto)(:)|\b(www)(\.)")


def escape_markdown(text: str) -> str:
    """``text`` as one line of Markdown that renders as the text itself: markup characters
    backslash-escaped (``**bold**`` -> ``\\*\\*bold\\*\\*``, ``| table |`` -> ``\\| table \\|``), HTML
    as entities (``<script>`` -> ``&lt;script&gt;``), links defused (``[click](http://evil)`` ->
    ``\\[click\\]\\(http\\://evil\\)``), line breaks as spaces (no new block can start)."""
    text = " ".join(str(text).split())
    text = "".join(_ENTITIES.get(c, c) for c in _INLINE.sub(r"\\\1", text))
    text = _AUTOLINK.sub(lambda m: f"{m[1]}\\{m[2]}" if m[1] else f"{m[3]}\\{m[4]}", text)
    return _BLOCK_START.sub(lambda m: f"{m[1]}\\{m[2]}", text, count=1)


@dataclass(frozen=True)
class BriefFiles:
    markdown: Path
    chart: Path | None
    opportunity_chart: Path | None = None
    #: The trend of the terms over the runs (when there were earlier runs).
    trend_chart: Path | None = None
    #: The whole brief as one self-contained HTML file.
    html: Path | None = None

    @property
    def charts(self) -> tuple[Path, ...]:
        return tuple(p for p in (self.chart, self.opportunity_chart, self.trend_chart) if p is not None)


@dataclass(frozen=True)
class BriefExtras:
    """What a brief shows besides the score and the evidence.

    ``history``: the earlier runs of the same interview (oldest first, :func:`positioning.trend.run_of`)
    and ``now`` this run's time (ISO 8601 UTC; default: now); ``measured``: the product's own
    figures for the launch checks (``accuracy`` %, ``latency_ms``, ``containment`` %); ``rules``: what
    the product must not do itself; ``comparison``: options scored side by side
    (:func:`positioning.options.compare`)."""

    history: Sequence[Run] = ()
    now: str | None = None
    measured: Mapping[str, Any] = field(default_factory=dict)
    rules: Rules | None = None
    comparison: Sequence[Scored] = ()


def write_brief(
    directory: str | Path,
    script: Script,
    answers: dict[str, Any],
    result: PositioningScore,
    evidence: Evidence,
    title: str | None = None,
    extras: BriefExtras | None = None,
) -> BriefFiles:
    """Write ``brief.md`` with ``evidence.png`` (top intents), ``opportunity.png`` (the
    opportunity map, when a need had traffic) and ``trend.png`` (when there were earlier runs)
    into ``directory`` (created if missing), and ``brief.html``: the same, self-contained."""
    extras = extras or BriefExtras()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    chart = directory / "evidence.png" if evidence.intents else None
    if chart is not None:
        plot_evidence(evidence, chart)
    opportunity_chart = directory / "opportunity.png" if any(n.measured for n in result.needs) else None
    if opportunity_chart is not None:
        plot_opportunity(result, opportunity_chart)
    trend_chart = directory / "trend.png" if extras.history else None
    if trend_chart is not None:
        plot_trend(extras.history, run_now(result, extras.now), trend_chart)
    markdown = directory / "brief.md"
    text = render(
        script,
        answers,
        result,
        evidence,
        chart.name if chart else None,
        title,
        opportunity_chart.name if opportunity_chart else None,
        extras,
        trend_chart.name if trend_chart else None,
    )
    markdown.write_text(text, encoding="utf-8")
    page = directory / "brief.html"
    images = {p.name: p.read_bytes() for p in (chart, opportunity_chart, trend_chart) if p is not None}
    page.write_text(
        to_html(text, images, f"Positioning brief: {title or answers.get('product', '')}"), "utf-8"
    )
    return BriefFiles(markdown, chart, opportunity_chart, trend_chart, page)


_CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;max-width:64rem;margin:2rem auto;
padding:0 1rem;color:#111827;line-height:1.5}
h1{font-size:1.7rem;border-bottom:2px solid #1d4ed8;padding-bottom:.3rem}
h2{font-size:1.3rem;margin-top:2rem;border-bottom:1px solid #e5e7eb}
table{border-collapse:collapse;margin:1rem 0;font-size:.9rem}
th,td{border:1px solid #d1d5db;padding:.3rem .6rem;text-align:left;vertical-align:top}
th{background:#f3f4f6} tr:nth-child(even) td{background:#fafafa}
code{background:#f3f4f6;padding:.1rem .3rem;border-radius:3px;font-size:.85rem}
blockquote{border-left:4px solid #1d4ed8;margin:1rem 0;padding:.5rem 1rem;background:#eff6ff;
font-size:1.05rem}
img{max-width:100%;height:auto;border:1px solid #e5e7eb}
strong.pass{color:#15803d} strong.fail{color:#b91c1c}
""".strip()


def to_html(markdown: str, images: Mapping[str, bytes], title: str = "Positioning brief") -> str:
    """The brief's Markdown as one self-contained HTML page: rendered with markdown-it (CommonMark
    and tables; raw HTML off, so the escaped customer text stays text), CSS in a ``<style>``
    element, every image named in ``images`` (file name -> PNG bytes) inlined as a base64
    ``data:`` URI and any other image dropped, so the page fetches nothing."""

    def inline(match: re.Match[str]) -> str:
        data = images.get(match[2])
        if data is None:
            return match[1]
        return f"![{match[1]}](data:image/png;base64,{base64.b64encode(data).decode('ascii')})"

    text = re.sub(r"!\[([^\]]*)\]\(([^)\s]+)\)", inline, markdown)
    try:
        from markdown_it import MarkdownIt

        body = MarkdownIt("commonmark", {"html": False}).enable("table").render(text)
    except ImportError:  # markdown-it comes with rich; without it, the Markdown as text
        body = f"<pre>{html.escape(text)}</pre>"
    body = body.replace("<strong>pass</strong>", '<strong class="pass">pass</strong>').replace(
        "<strong>fail</strong>", '<strong class="fail">fail</strong>'
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>\n<body>\n{body}</body></html>\n"
    )


def _code(text: str) -> str:
    """A formula as an inline code span: shown exactly as written, no markup (a backtick in a need's
    wording becomes a quote, and line breaks spaces, so the span cannot end early)."""
    return "`" + " ".join(text.replace("`", "'").split()) + "`"


def _figure(value: float | None) -> str:
    return "no traffic" if value is None else f"{value:.2f}"


def render(
    script: Script,
    answers: dict[str, Any],
    result: PositioningScore,
    evidence: Evidence,
    chart: str | None,
    title: str | None = None,
    opportunity_chart: str | None = None,
    extras: BriefExtras | None = None,
    trend_chart: str | None = None,
) -> str:
    """The brief as Markdown (see the module's docstring)."""
    extras = extras or BriefExtras()
    product = str(answers.get("product", "the product"))
    lines = [f"# Positioning brief: {escape_markdown(title or product)}", ""]
    m_text = "not measured" if result.m is None else f"{result.m:.2f}"
    score_text = "not measurable yet" if result.score is None else f"{result.score:.2f}"
    lines += [f"**Positioning = P(D|U) x M = {_figure(result.p_d_given_u)} x {m_text} = {score_text}**", ""]
    if result.target is not None:
        lines += [
            ("P(D|U) above is over all traffic. " if not result.target.everyone else "")
            + escape_markdown(result.target.text()),
            "",
        ]
    lines += _summary_section(answers, result, evidence, extras)
    lines += ["## How the score is computed", ""]
    lines += [
        "- **P(D|U)** (how well the product meets the target users' core needs) = sum of importance x "
        "satisfaction / sum of importance, over the needs with traffic; satisfaction = the share of "
        "the need's customer conversations that were resolved.  ",
        f"  {_code(result.p_formula)}"
        + (f"; 95 % CI {result.p_interval.low:.2f}-{result.p_interval.high:.2f}" if result.p_interval else "")
        + f"; needs with traffic carry {result.importance_measured:.0%} of the importance.",
        "- **M** (how well those needs match the gap in the market) = sum of importance x demand x "
        "(1 - competitor coverage) / sum of importance x demand; demand = the need's share of all "
        f"messages ({result.m_source}).  ",
        f"  {_code(result.m_formula)}",
        f"- {_code(result.score_formula)}",
        "",
    ]
    lines += _target_section(result)
    lines += trend_lines(extras.history, run_now(result, extras.now), trend_chart)
    if extras.comparison:
        lines += [render_comparison(list(extras.comparison))]
    lines += [
        "## Core needs, as customers got them",
        "",
        "| need | importance | served by | satisfaction (resolved/conversations, 95 % CI) | messages "
        "(demand) | competitor coverage | weight in M |",
        "|---|---|---|---|---|---|---|",
    ]
    for n in result.needs:
        lines.append(
            f"| {escape_markdown(n.need)} | {n.importance} | "
            f"{escape_markdown(n.served_by)} ({n.link_status}) | "
            f"{n.satisfaction.text()} | {n.messages} ({n.demand:.0%}) | {n.competitor_coverage:.2f} "
            f"({escape_markdown(n.coverage_source)}) | {n.m_weight:.2f} |"
        )
    lines.append("")
    for n in result.needs:
        detail = [f"resolved means: {n.resolution}"]
        if n.reasons:
            detail.append("not resolved: " + ", ".join(f"{r} {c}" for r, c in n.reasons.items()))
        if n.other_answers:
            detail.append("also answered by: " + ", ".join(f"{a} ({c})" for a, c in n.other_answers.items()))
        if len(n.by_segment) > 1:
            detail.append("by segment: " + ", ".join(f"{s} {r.text()}" for s, r in n.by_segment.items()))
        lines.append(f"- **{escape_markdown(n.need)}**: {escape_markdown('; '.join(detail))}")
    lines += ["", *_opportunity_section(result.needs, opportunity_chart)]
    if len(result.segments) > 1:
        lines += [
            "## P(D|U) by customer segment",
            "",
            "| segment | P(D\\|U) | conversations |",
            "|---|---|---|",
        ]
        lines += [f"| {escape_markdown(s)} | {_figure(p)} | {n} |" for s, (p, n) in result.segments.items()]
        lines.append("")
    lines += ["## What would raise each term", "", "**P(D|U)**", ""]
    lines += [f"- {escape_markdown(idea)}" for idea in result.raise_p] or [
        "- Every need is met well; keep measuring."
    ]
    lines += ["", "**M**", ""]
    lines += [f"- {escape_markdown(idea)}" for idea in result.raise_m] or [
        "- The gap is wide and open: keep it that way."
    ]
    lines += ["", f"## What customers actually asked ({evidence.period})", ""]
    if evidence.messages:
        lines += [f"- Messages: {evidence.messages}"]
        if evidence.resolved is not None:
            lines.append(
                "- Resolved (answered, not flagged, not handed off, not asked again), per conversation: "
                + evidence.resolved.text()
            )
        lines += [
            f"- Containment (answered without a handoff; counts refusals, clarify turns and flagged "
            f"answers): {evidence.containment_rate:.0%}",
            f"- Handoff rate: {evidence.handoff_rate:.0%}; "
            f"answers flagged not helpful: {evidence.flag_rate:.0%}",
            "",
            "| intent (the classifier's reading) | messages | handoff rate | flag rate |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {intent_words(f.intent)} | {f.messages} | {f.handoff_rate:.0%} | {f.flag_rate:.0%} |"
            for f in evidence.intents[:15]
        ]
        if chart:
            lines += ["", f"![top intents, handoff and flag rates]({chart})"]
        if evidence.candidate_needs:
            lines += [
                "",
                f"**Candidate new needs** (all {evidence.unresolved_messages} unresolved messages, "
                "clustered by meaning):",
                "",
            ]
            for c in evidence.candidate_needs:
                routes = ", ".join(f"{r} {k}" for r, k in c.routes)
                guesses = ", ".join(f"{g} {k}" for g, k in c.guesses)
                lines.append(
                    f"- {escape_markdown(c.label)}: {c.messages or c.size} message"
                    f"{'s' if (c.messages or c.size) != 1 else ''} ({c.size} distinct"
                    + (f"; Teller's replies: {routes}" if routes else "")
                    + (f"; classifier's guesses: {escape_markdown(guesses)}" if guesses else "")
                    + "); e.g. "
                    + "; ".join(f"“{escape_markdown(e)}”" for e in c.examples)
                    + (f". Already a listed need: “{escape_markdown(c.need)}”" if c.need else "")
                )
    else:
        lines.append("No customer messages in this period yet.")
    lines += ["", "## The interview", ""]
    for step in script.steps:
        lines += [f"### {step.title}", ""]
        for q in step.questions:
            if q.id in answers:
                lines.append(f"- **{q.prompt}**  \n  {escape_markdown(format_answer(answers[q.id]))}")
        lines.append("")
    return "\n".join(lines)


def _target_section(result: PositioningScore) -> list[str]:
    """U, the target users: which segments (and how they were chosen), P(D|U) over their
    conversations beside all traffic, and each target segment alone."""
    t = result.target
    if t is None:
        return []
    lines = ["## The target users (U)", ""]
    if t.everyone:
        lines += [
            f"U = everyone ({escape_markdown(t.source)}): P(D|U) is over all traffic, "
            + (t.all_traffic.text() if t.all_traffic else "no traffic")
            + f", {t.all_conversations} conversations.",
            "",
        ]
        return lines
    lines += [
        f"U = {escape_markdown(', '.join(t.segments))} ({escape_markdown(t.source)}); a conversation "
        "counts for U when its segment (from the bank's backend) or its channel is one of these.",
        "",
        f"- {_code(t.formula)}",
        "",
        "| customers | P(D\\|U) (95 % CI) | conversations |",
        "|---|---|---|",
        f"| target users ({escape_markdown(', '.join(t.segments))}) | "
        f"{t.estimate.text() if t.estimate else 'no traffic'} | {t.conversations} |",
    ]
    if len(t.per_segment) > 1:
        lines += [
            f"| {escape_markdown(name)} | {e.text() if e else 'no traffic'} | {n} |"
            for name, (e, n) in t.per_segment.items()
        ]
    overall = t.all_traffic.text() if t.all_traffic else "no traffic"
    lines += [f"| all traffic | {overall} | {t.all_conversations} |", ""]
    if t.without_traffic:
        lines += [
            f"No conversation of these needs came from {escape_markdown(', '.join(t.without_traffic))}: "
            "no P(D|U) for " + ("it" if len(t.without_traffic) == 1 else "them") + ".",
            "",
        ]
    return lines


def _summary_section(
    answers: dict[str, Any], result: PositioningScore, evidence: Evidence, extras: BriefExtras
) -> list[str]:
    """The executive summary: the positioning statement and its components, the launch checks,
    the recommendations."""
    statement = positioning_statement(answers, result)
    lines = [
        "## Executive summary",
        "",
        f"> {escape_markdown(statement.sentence())}",
        "",
        "| component (April Dunford) | in this brief | from |",
        "|---|---|---|",
    ]
    lines += [
        f"| {name} | {escape_markdown(text)} | {escape_markdown(source)} |"
        for name, text, source in statement.components()
    ]
    checks = launch_checks(
        answers,
        extras.measured,
        result,
        evidence.resolved,
        evidence.handoff_rate if evidence.messages else None,
    )
    failed = sum(c.status == FAIL for c in checks)
    passed = sum(c.status == PASS for c in checks)
    lines += [
        "",
        f"**Launch checks**: {passed} passed, {failed} failed, {len(checks) - passed - failed} without a "
        "target or a measurement (the PM's targets against Teller's measured figures).",
        "",
        "| check | target | measured | result | how it is measured |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {escape_markdown(c.name)} | {c.target} | {c.measured} | "
        + (f"**{c.status}**" if c.status in (PASS, FAIL) else c.status)
        + f" | {escape_markdown(c.note)} |"
        for c in checks
    ]
    ideas = recommendations(result, checks, extras.rules)
    lines += ["", "**Recommendations**", ""]
    lines += [f"{i}. {escape_markdown(idea)}" for i, idea in enumerate(ideas, start=1)] or [
        "- Nothing urgent: every target is met and every need is served; keep measuring."
    ]
    if extras.rules:
        lines += [
            "",
            "Within the product's rules: "
            + escape_markdown("; ".join(dict.fromkeys(r.source for r in extras.rules.rules)))
            + ".",
        ]
    return [*lines, ""]


def render_comparison(scored: list[Scored]) -> str:
    """Options side by side (best first, as :func:`positioning.options.compare` orders them): each
    term with its interval, the needs with traffic and the under-served ones."""
    lines = [
        "## Positioning options side by side",
        "",
        "| option | P(D\\|U) (95 % CI) | M | positioning | needs with traffic | under-served |",
        "|---|---|---|---|---|---|",
    ]
    for s in scored:
        r = s.result
        p = r.p_interval.text() if r.p_interval else "no traffic"
        m = (
            "not measured"
            if r.m is None
            else f"{r.m:.2f}" + (" (entered)" if r.m_source != "measured" else "")
        )
        total = "not measurable" if r.score is None else f"{r.score:.2f}"
        under = ", ".join(n.need for n in r.needs if n.under_served) or "-"
        lines.append(
            f"| {escape_markdown(s.option.name)} | {p} | {m} | {total} | "
            f"{sum(n.measured for n in r.needs)} of {len(r.needs)} | {escape_markdown(under)} |"
        )
    return "\n".join([*lines, ""])


def _opportunity_section(needs: list[NeedScore], chart: str | None) -> list[str]:
    lines = [
        "## Opportunity map",
        "",
        "Opportunity = importance + max(importance - satisfaction, 0), both on 0-10 (importance 1-5 x 2, "
        f"satisfaction x 10; Ulwick, outcome-driven innovation). Above {UNDER_SERVED:g}: under-served.",
        "",
        "| # | need | importance (0-10) | satisfaction (0-10) | opportunity | range (from the 95 % CI) | |",
        "|---|---|---|---|---|---|---|",
    ]
    number = {id(n): i for i, n in enumerate(needs, start=1)}
    for n in sorted(needs, key=lambda n: -(n.opportunity if n.opportunity is not None else -1)):
        if n.opportunity is None or n.satisfaction.value is None:
            lines.append(
                f"| {number[id(n)]} | {escape_markdown(n.need)} | {2 * n.importance} | no traffic | - | - | |"
            )
            continue
        low, high = n.opportunity_range or (n.opportunity, n.opportunity)
        mark = "**under-served**" if n.under_served else ("over-served" if n.over_served else "")
        lines.append(
            f"| {number[id(n)]} | {escape_markdown(n.need)} | {2 * n.importance} | "
            f"{10 * n.satisfaction.value:.1f} | "
            f"{n.opportunity:.1f} | {low:.1f}-{high:.1f} | {mark} |"
        )
    if chart:
        lines += ["", f"![opportunity map: importance against satisfaction]({chart})"]
    return [*lines, ""]


def plot_evidence(evidence: Evidence, path: Path, top: int = 12) -> None:
    """Two panels sharing the intents (in words): messages per top intent; handoff and flag rates."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures = evidence.intents[:top]
    names = [intent_words(f.intent) for f in figures][::-1]
    fig, (ax, ax2) = plt.subplots(
        1, 2, sharey=True, figsize=(11, 0.45 * len(names) + 1.8), gridspec_kw={"width_ratios": [3, 2]}
    )
    ax.barh(names, [f.messages for f in figures][::-1], color="#1d4ed8")
    ax.set_xlabel("messages")
    ax.set_title("Messages per intent (classifier's reading)", fontsize=10)
    y = range(len(names))
    ax2.barh(
        [i + 0.2 for i in y], [f.handoff_rate for f in figures][::-1], 0.4, color="#dc2626", label="handoff"
    )
    ax2.barh(
        [i - 0.2 for i in y], [f.flag_rate for f in figures][::-1], 0.4, color="#f59e0b", label="flagged"
    )
    ax2.set_xlim(0, 1)
    ax2.set_xlabel("share of the intent's messages")
    ax2.set_title("Handoff and flag rates", fontsize=10)
    ax2.legend(loc="lower right")
    fig.suptitle(
        f"What customers asked ({evidence.period}): {evidence.messages} messages, "
        f"containment {evidence.containment_rate:.0%}",
        fontsize=11,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_opportunity(result: PositioningScore, path: Path) -> None:
    """Importance (x, 0-10) against measured satisfaction (y, 0-10) with its 95 % interval per need;
    the shaded area is under-served (opportunity above the threshold)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(7, 6))
    imp = np.linspace(0, 10, 101)
    # opportunity > U  <=>  sat < 2 imp - U  (when sat < imp)
    ax.fill_between(imp, 0, np.clip(2 * imp - UNDER_SERVED, 0, 10), color="#fecaca", label="under-served")
    ax.plot([0, 10], [0, 10], color="#9ca3af", linewidth=1, linestyle="--", label="satisfaction = importance")
    for number, n in enumerate(result.needs, start=1):
        if n.satisfaction.value is None or n.satisfaction.interval is None:
            continue
        x, y = 2 * n.importance, 10 * n.satisfaction.value
        low, high = n.satisfaction.interval
        ax.errorbar(x, y, yerr=[[y - 10 * low], [10 * high - y]], fmt="o", color="#1d4ed8", capsize=4)
        # The number refers to the brief's table; the wording only where the chart's font can show it.
        name = f" {n.need[:30]}" if n.need.isascii() else ""
        ax.annotate(
            f"#{number}{name} (n={n.satisfaction.trials})",
            (x, y),
            textcoords="offset points",
            xytext=(6, 4),
            fontsize=8,
        )
    ax.set_xlim(0, 10.5)
    ax.set_ylim(0, 10.5)
    ax.set_xlabel("importance (1-5 x 2)")
    ax.set_ylabel("satisfaction (share resolved x 10)")
    ax.set_title("Opportunity map", fontsize=11)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
