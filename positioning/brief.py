"""The positioning brief: Markdown with the interview's answers, the score with its numbers, what
would raise each term, and the evidence from the logs with a chart.

Text Teller did not write (customers' questions, the interview's answers) goes in through
:func:`escape_markdown`, so it reads as written and never as markup: no link, image, HTML tag,
emphasis or table cell of its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from positioning.engine import format_answer
from positioning.evidence import Evidence
from positioning.scoring import PositioningScore
from positioning.script import Script

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


def write_brief(
    directory: str | Path,
    script: Script,
    answers: dict[str, Any],
    result: PositioningScore,
    evidence: Evidence,
    title: str | None = None,
) -> BriefFiles:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    chart = directory / "evidence.png" if evidence.intents else None
    if chart is not None:
        plot_evidence(evidence, chart)
    markdown = directory / "brief.md"
    markdown.write_text(
        render(script, answers, result, evidence, chart.name if chart else None, title), encoding="utf-8"
    )
    return BriefFiles(markdown, chart)


def render(
    script: Script,
    answers: dict[str, Any],
    result: PositioningScore,
    evidence: Evidence,
    chart: str | None,
    title: str | None = None,
) -> str:
    product = str(answers.get("product", "the product"))
    lines = [f"# Positioning brief: {escape_markdown(title or product)}", ""]
    lines += [
        f"**Positioning = P(D|U) x M = {result.p_d_given_u:.2f} x {result.m:.2f} = {result.score:.2f}**",
        "",
    ]
    lines += [
        "- **P(D|U)** (how well the product meets the target users' core needs) = "
        "sum of importance x satisfaction / sum of importance = "
        + " + ".join(f"{n.importance}x{n.satisfaction:.2f}" for n in result.needs)
        + f" / {sum(n.importance for n in result.needs)} = {result.p_d_given_u:.2f}",
        "- **M** (how well those needs match the gap in the market) = (gap size - 1)/4 x "
        "(1 - (competitor coverage - 1)/4) = "
        f"({result.gap_size} - 1)/4 x (1 - ({result.competitor_coverage} - 1)/4) = {result.m:.2f}",
        "",
    ]
    lines += [
        "## Core needs, as Teller answers them today",
        "",
        "| need | importance | Teller's answer | confidence | accuracy | flagged | satisfaction |",
        "|---|---|---|---|---|---|---|",
    ]
    for n in result.needs:
        who = n.coverage.intent or n.coverage.kb_id or "-"
        answer = f"{n.coverage.route}: {who}" if n.coverage.answered else f"{n.coverage.route} (not answered)"
        lines.append(
            f"| {escape_markdown(n.need)} | {n.importance} | {answer} | {n.coverage.confidence:.2f} | "
            f"{n.quality.accuracy:.0%} | {n.quality.flag_rate:.0%} | {n.satisfaction:.2f} |"
        )
    lines += ["", "## What would raise each term", "", "**P(D|U)**", ""]
    lines += [f"- {idea}" for idea in result.raise_p] or ["- Every need is met well; keep measuring."]
    lines += ["", "**M**", ""]
    lines += [f"- {idea}" for idea in result.raise_m] or ["- The gap is wide and open: keep it that way."]
    lines += ["", f"## What customers actually asked ({evidence.period})", ""]
    if evidence.messages:
        lines += [
            f"- Messages: {evidence.messages}",
            f"- Containment (answered without a handoff): {evidence.containment_rate:.0%}",
            f"- Handoff rate: {evidence.handoff_rate:.0%}; "
            f"answers flagged not helpful: {evidence.flag_rate:.0%}",
            "",
            "| intent | messages | handoff rate | flag rate |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {f.intent} | {f.messages} | {f.handoff_rate:.0%} | {f.flag_rate:.0%} |"
            for f in evidence.intents[:15]
        ]
        if chart:
            lines += ["", f"![top intents, handoff and flag rates]({chart})"]
        if evidence.candidate_needs:
            lines += ["", "**Candidate new needs** (unanswered questions, grouped by meaning):", ""]
            lines += [
                f"- {escape_markdown(c.label)} ({c.size} question{'s' if c.size != 1 else ''}; e.g. "
                + "; ".join(f"“{escape_markdown(e)}”" for e in c.examples)
                + ")"
                for c in evidence.candidate_needs
            ]
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


def plot_evidence(evidence: Evidence, path: Path, top: int = 12) -> None:
    """Bars: messages per top intent; markers: handoff and flag rates."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures = evidence.intents[:top]
    names = [f.intent for f in figures][::-1]
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(names) + 1.5))
    ax.barh(names, [f.messages for f in figures][::-1], color="#1d4ed8")
    ax.set_xlabel("messages")
    ax2 = ax.twiny()
    ax2.plot([f.handoff_rate for f in figures][::-1], names, "o", color="#dc2626", label="handoff rate")
    ax2.plot([f.flag_rate for f in figures][::-1], names, "s", color="#f59e0b", label="flag rate")
    ax2.set_xlim(0, 1)
    ax2.set_xlabel("rate")
    ax2.legend(loc="lower right")
    ax.set_title(
        f"What customers asked ({evidence.period}): {evidence.messages} messages, "
        f"containment {evidence.containment_rate:.0%}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
