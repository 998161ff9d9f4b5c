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

Customers' words appear in one place only: the candidate new needs, each labelled by its most
central question and quoting up to three (``- label: 4 messages (2 distinct; …); e.g. “a”; “b”``).
When those messages are erased or pass their retention, :func:`erase_quotes` replaces their quotes
in a brief already written with :data:`ERASED`, and :func:`rewrite_files` puts the new text into
``brief.md`` and renders ``brief.html`` again (the charts hold no customer text).
"""

from __future__ import annotations

import base64
import fcntl
import html
import json
import os
import re
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from positioning.engine import format_answer
from positioning.evidence import Evidence, LoggedExchange, intent_words
from positioning.glyphs import chart_font, font_families, need_keys
from positioning.options import Scored
from positioning.rules import Rules
from positioning.scoring import UNDER_SERVED, NeedScore, PositioningScore
from positioning.script import Script
from positioning.stats import Rate
from positioning.summary import (
    CONTAINMENT_MEANS,
    FAIL,
    PASS,
    containment_text,
    launch_checks,
    positioning_statement,
    recommendations,
)
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
    (:func:`positioning.options.compare`); ``asked``: the customers' messages of the period (their
    own words: no pressed buttons), grouped in the evidence by what answered them
    (:func:`answered_by`); ``product_name``: the product's name when its answer names none."""

    history: Sequence[Run] = ()
    now: str | None = None
    measured: Mapping[str, Any] = field(default_factory=dict)
    rules: Rules | None = None
    comparison: Sequence[Scored] = ()
    asked: Sequence[LoggedExchange] = ()
    product_name: str = "Teller"


#: The kinds of :class:`AnswerGroup`, in the order a chart colours them.
INTENT, ENTRY, ADVICE_DECLINED, CLARIFIED, SMALL_TALK, NOT_ANSWERED = (
    "intent",
    "knowledge-base entry",
    "advice declined",
    "asked to clarify",
    "small talk",
    "handed off / not answered",
)
_KIND_COLOURS = {
    INTENT: "#1d4ed8",
    ENTRY: "#0891b2",
    ADVICE_DECLINED: "#7c3aed",
    CLARIFIED: "#9ca3af",
    SMALL_TALK: "#d1d5db",
    NOT_ANSWERED: "#dc2626",
}


@dataclass(frozen=True)
class AnswerGroup:
    """Messages grouped by what actually answered them: an intent that answered (``name`` its
    label in words), a knowledge-base entry (its id in words), advice declined, a clarifying
    question, small talk, or nothing (handed off / not answered); with the share handed off and the
    share of answers flagged or thumbed down."""

    kind: str
    name: str
    messages: int
    handoff_rate: float
    flag_rate: float

    @property
    def label(self) -> str:
        if self.kind == INTENT:
            return self.name
        if self.kind == ENTRY:
            return f"KB: {self.name}"
        return self.kind


def _answered(e: LoggedExchange) -> tuple[str, str]:
    """What answered one message: ``(kind, name)``. The logged intent counts only when the reply
    came from it (route ``intent``); for other routes it is the classifier's guess, not an answer."""
    if e.route == "intent" and e.intent:
        return INTENT, intent_words(e.intent)
    if e.route == "faq":
        return ENTRY, intent_words(e.kb_id) if e.kb_id else "entry not recorded"
    if e.route == "advice":
        return ADVICE_DECLINED, ""
    if e.route == "clarify":
        return CLARIFIED, ""
    if e.route == "smalltalk":
        return SMALL_TALK, ""
    return NOT_ANSWERED, ""


def answered_by(exchanges: Sequence[LoggedExchange]) -> list[AnswerGroup]:
    """``exchanges`` grouped by what answered them (:class:`AnswerGroup`), most messages first."""
    groups: dict[tuple[str, str], list[LoggedExchange]] = {}
    for e in exchanges:
        groups.setdefault(_answered(e), []).append(e)
    found = [
        AnswerGroup(
            kind,
            name,
            len(items),
            sum(e.handed_off or e.route == "handoff" for e in items) / len(items),
            sum(e.flagged for e in items) / len(items),
        )
        for (kind, name), items in groups.items()
    ]
    return sorted(found, key=lambda g: (-g.messages, g.label))


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
    groups = answered_by(extras.asked)
    chart = directory / "evidence.png" if groups else None
    if chart is not None:
        plot_evidence(evidence, groups, chart)
    opportunity_chart = directory / "opportunity.png" if any(n.measured for n in result.needs) else None
    keyed = False
    if opportunity_chart is not None:
        keyed = not plot_opportunity(result, opportunity_chart)
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
        chart_keys=keyed,
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


#: What a quote of a customer's message reads once the message is erased or past its retention.
ERASED = "[erased]"
#: The line that opens the candidate new needs (the only lines that quote customers).
_CANDIDATES = "**Candidate new needs**"
#: What follows a candidate need's label: its messages and distinct questions.
_LABEL_END = re.compile(r": \d+ messages? \(\d+ distinct")
#: What ends a candidate need's line when it is a need already listed (the PM's words, not quoted).
_LISTED = ". Already a listed need: “"


def erase_quotes(markdown: str, texts: Iterable[str], placeholder: str = ERASED) -> tuple[str, int]:
    """``(markdown with every quote of one of texts replaced by placeholder, quotes replaced)``.

    ``markdown`` is a brief :func:`render` wrote; ``texts`` are customers' messages as stored (the
    brief quotes them as :func:`escape_markdown` renders them, spaces folded, and compares them so).
    A candidate need's label and its examples are each one whole message: one equal to a text is
    replaced (identical words another customer wrote too, as the quote cannot tell whose they
    were); nothing else in the brief changes (the PM's needs and answers, figures, headings).
    ``(markdown, 0)`` when it quotes none of them. Never raises on strings."""
    wanted = {escape_markdown(t) for t in texts if t and t.strip()}
    if not wanted or _CANDIDATES not in markdown:
        return markdown, 0
    shown = escape_markdown(placeholder)
    lines = markdown.split("\n")
    replaced = 0
    inside = False
    for number, line in enumerate(lines):
        if line.startswith(_CANDIDATES):
            inside = True
        elif inside and line.startswith("#"):
            break
        elif inside and line.startswith("- "):
            lines[number], count = _erase_line(line, wanted, shown)
            replaced += count
    return ("\n".join(lines), replaced) if replaced else (markdown, 0)


def erase_from_score(score: str, texts: Iterable[str], placeholder: str = ERASED) -> tuple[str, int]:
    """``(score with every string equal to one of texts replaced by placeholder, strings replaced)``.

    ``score`` is the JSON of a brief's scoring result as stored beside its Markdown (the candidate
    needs' labels and examples are customers' whole messages, as in :func:`erase_quotes`); strings
    are compared with spaces folded, as the brief quotes them. ``(score, 0)`` when it holds none of
    them, or is not JSON (nothing to walk). Never raises on strings."""
    wanted = {" ".join(t.split()) for t in texts if t and t.strip()}
    if not wanted:
        return score, 0
    try:
        data = json.loads(score)
    except ValueError:
        return score, 0
    replaced = 0

    def walk(value: Any) -> Any:
        nonlocal replaced
        if isinstance(value, str):
            if " ".join(value.split()) in wanted:
                replaced += 1
                return placeholder
            return value
        if isinstance(value, list):
            return [walk(v) for v in value]
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        return value

    erased = walk(data)
    return (json.dumps(erased, sort_keys=True), replaced) if replaced else (score, 0)


def _erase_line(line: str, wanted: set[str], shown: str) -> tuple[str, int]:
    """One candidate need's line with its label and examples found in ``wanted`` shown as ``shown``."""
    count = 0
    ends = list(_LABEL_END.finditer(line))
    label = next((m for m in ends if line[2 : m.start()] in wanted), None)
    if label is not None:
        line = f"- {shown}{line[label.start() :]}"
        start = 2 + len(shown) + label.end() - label.start()
        count += 1
    else:
        start = ends[0].end() if ends else 2
    body = line[start:]
    # The PM's listed need closes the line, opened right after the marker; an example's quote opens
    # after "e.g. " or "; ", never right after it: a customer who typed the marker hides no quote.
    need = [a for a, c in enumerate(body) if c == "“" and body.endswith(_LISTED, 0, a + 1)]
    opens = [i for i, c in enumerate(body) if c == "“"]
    closes = [i for i, c in enumerate(body) if c == "”"]
    pairs = [
        (a, b)
        for a in opens
        for b in closes
        if b > a and body[a + 1 : b] in wanted and not (a in need and b == len(body) - 1)
    ]
    # Longest first; a quote inside one already replaced goes with it.
    taken: list[tuple[int, int]] = []
    for a, b in sorted(pairs, key=lambda p: (p[0] - p[1], p[0])):
        if all(b < x or a > y for x, y in taken):
            taken.append((a, b))
    for a, b in sorted(taken, reverse=True):
        body = f"{body[: a + 1]}{shown}{body[b:]}"
    return line[:start] + body, count + len(taken)


#: One lock per brief directory within a process (the file lock alone does not serialise threads
#: of one process portably); see :func:`brief_lock`.
_DIRECTORY_LOCKS: dict[str, threading.Lock] = {}
_DIRECTORY_GUARD = threading.Lock()
#: The file in a brief directory that processes lock while they write its brief.
LOCK_FILE = ".brief.lock"


@contextmanager
def brief_lock(directory: str | Path) -> Iterator[None]:
    """Hold the brief ``directory`` (created if missing) for writing its files: a lock per directory
    within this process, and an exclusive ``flock`` on its :data:`LOCK_FILE` across processes.
    Writing a brief and erasing quotes from it take it, so neither overwrites the other's words."""
    directory = Path(directory)
    key = str(directory.resolve())
    with _DIRECTORY_GUARD:
        local = _DIRECTORY_LOCKS.setdefault(key, threading.Lock())
    with local:
        directory.mkdir(parents=True, exist_ok=True)
        with open(directory / LOCK_FILE, "a+b") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def rewrite_files(directory: str | Path, texts: Iterable[str], dry_run: bool = False) -> bool:
    """Erase the quotes of ``texts`` (customers' messages, as stored) from whatever brief
    ``directory`` holds now (:func:`erase_quotes` on its ``brief.md``: idempotent, so erasures and
    retention runs may reach it in any order), and render its ``brief.html`` again from the result
    with the same title and charts; each file replaced atomically, under :func:`brief_lock`.
    ``dry_run``: only say whether it would. Returns whether the brief was (or would be) rewritten:
    False when the directory holds no brief or the brief quotes none of ``texts``. Raises
    :class:`OSError` when a file cannot be read or written."""
    directory = Path(directory)
    texts = list(texts)
    if not (directory / "brief.md").is_file():
        return False
    if dry_run:
        return erase_from_files(directory, texts, dry_run=True)
    with brief_lock(directory):
        return erase_from_files(directory, texts)


def erase_from_files(directory: Path, texts: Iterable[str], dry_run: bool = False) -> bool:
    """:func:`rewrite_files` for a caller already holding :func:`brief_lock` on ``directory``."""
    markdown = directory / "brief.md"
    try:
        current = markdown.read_text(encoding="utf-8")
    except FileNotFoundError:
        return False
    after, quotes = erase_quotes(current, texts)
    if not quotes:
        return False
    if dry_run:
        return True
    put_markdown(directory, after)
    return True


def put_markdown(directory: str | Path, text: str) -> None:
    """Replace the brief in ``directory`` by ``text`` (another version of it) and render its
    ``brief.html`` again with the same title and charts; each file replaced atomically. The caller
    holds :func:`brief_lock`. Raises :class:`OSError`."""
    directory = Path(directory)
    page = directory / "brief.html"
    title = "Positioning brief"
    if page.is_file():
        found = re.search(r"<title>(.*?)</title>", page.read_text(encoding="utf-8"), re.DOTALL)
        title = html.unescape(found[1]) if found else title
    images = {p.name: p.read_bytes() for p in sorted(directory.glob("*.png"))}
    _replace(directory / "brief.md", text)
    _replace(page, to_html(text, images, title))


def _replace(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a staging file renamed over it (never half written)."""
    staging = path.with_name(f".{path.name}.tmp")
    staging.write_text(text, encoding="utf-8")
    os.replace(staging, path)


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
    chart_keys: bool = False,
) -> str:
    """The brief as Markdown (see the module's docstring). ``chart_keys``: the opportunity chart
    names the needs by key only (no font could draw their wording), so the key table goes beside it."""
    extras = extras or BriefExtras()
    product = str(answers.get("product", "the product"))
    lines = [f"# Positioning brief: {escape_markdown(title or product)}", ""]
    m_text = "not measured" if result.m is None else f"{result.m:.2f}"
    score_text = "not measurable yet" if result.score is None else f"{result.score:.2f}"
    lines += [f"**Positioning = P(D|U) x M = {_figure(result.p_d_given_u)} x {m_text} = {score_text}**", ""]
    if result.p_scope:
        lines += [escape_markdown(result.p_scope), ""]
    lines += _summary_section(answers, result, evidence, extras)
    lines += ["## How the score is computed", ""]
    over = "the target users' conversations" if result.over_target else "all traffic"
    lines += [
        "- **P(D|U)** (how well the product meets the target users' core needs) = sum of importance x "
        "satisfaction / sum of importance, over the needs with traffic; satisfaction = the share of "
        f"the need's customer conversations that were resolved, here over {over}.  ",
        f"  {_code(result.p_formula)}"
        + (f"; 95 % CI {result.p_interval.low:.2f}-{result.p_interval.high:.2f}" if result.p_interval else "")
        + f"; needs with traffic carry {result.importance_measured:.0%} of the importance.",
    ]
    if result.over_target:
        lines += [
            "- For comparison, over all traffic (not used in the score):  ",
            f"  {_code(result.p_all_formula)}"
            + (
                f"; 95 % CI {result.p_all_interval.low:.2f}-{result.p_all_interval.high:.2f}"
                if result.p_all_interval
                else ""
            )
            + ".",
        ]
    elif result.target is not None and not result.target.everyone:
        lines += [
            f"- {_code(result.target.formula)}: so P(D|U) above is over all traffic.",
        ]
    lines += [
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
    lines += ["## Core needs, as customers got them", ""]
    if result.over_target:
        lines += [
            "Satisfaction below is over all traffic; the target users' own, which P(D|U) uses, is in "
            "the section on U above.",
            "",
        ]
    lines += [
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
    lines += ["", *_opportunity_section(result.needs, opportunity_chart, chart_keys)]
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
        lines += [
            f"- Containment ({CONTAINMENT_MEANS}): {containment_text(evidence.resolved)}",
            f"- Handoff rate: {evidence.handoff_rate:.0%}; "
            f"answers flagged not helpful: {evidence.flag_rate:.0%}",
            "",
        ]
        groups = answered_by(extras.asked)
        if groups:
            lines += [
                "| what answered | messages | handed off | flagged or thumbed down |",
                "|---|---|---|---|",
            ]
            lines += [
                f"| {escape_markdown(g.label)} | {g.messages} | {g.handoff_rate:.0%} | {g.flag_rate:.0%} |"
                for g in groups[:15]
            ]
        if chart:
            lines += ["", f"![messages by what answered them]({chart})"]
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
    conversations (the headline when they have any) beside all traffic, each target segment alone,
    and each need's resolved share for U beside all traffic."""
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
    used = (
        "The headline P(D|U) is over these conversations; all traffic is shown for comparison."
        if t.measured
        else "None of these conversations is about a listed need, so the headline P(D|U) falls back "
        "to all traffic."
    )
    lines += [
        f"U = {escape_markdown(', '.join(t.segments))} ({escape_markdown(t.source)}); a conversation "
        f"counts for U when its segment (from the bank's backend) or its channel is one of these. {used}",
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
    lines += [f"| all traffic (comparison) | {overall} | {t.all_conversations} |", ""]
    if t.measured:
        lines += [
            "| need | importance | resolved for U | resolved over all traffic |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {escape_markdown(n.need)} | {n.importance} | {t.by_need[n.need].text()} | "
            f"{n.satisfaction.text()} |"
            for n in result.needs
            if n.need in t.by_need
        ]
        lines.append("")
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
    statement = positioning_statement(answers, result, extras.product_name)
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
    option's U (its target users), each term with its interval, whose conversations P(D|U) is
    over (the target users, or all traffic when they have none of the option's needs), the needs
    with traffic and the under-served ones."""
    lines = [
        "## Positioning options side by side",
        "",
        "| option | U | P(D\\|U) (95 % CI) | over | M | positioning | needs with traffic (over those "
        "conversations) | under-served |",
        "|---|---|---|---|---|---|---|---|",
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
            f"| {escape_markdown(s.option.name)} | {escape_markdown(_u_of(s))} | {p} | "
            f"{escape_markdown(r.p_over)} | {m} | {total} | "
            f"{_with_traffic(r)} of {len(r.needs)} | {escape_markdown(under)} |"
        )
    # Every option's figures traced, as the interview's are: each option attributes the log to its
    # own needs, so the same need may measure differently from one option to another.
    lines += ["", "How each option's figures are computed:", ""]
    for s in scored:
        r = s.result
        parts = [f for f in (r.p_formula, r.m_formula, r.score_formula) if f]
        lines.append(f"- **{escape_markdown(s.option.name)}**: " + ("; ".join(parts) or "not measurable"))
    return "\n".join([*lines, ""])


def _u_of(scored: Scored) -> str:
    """The option's target users: its segments, or ``everyone``."""
    target = scored.option.target
    return ", ".join(target.segments) if target is not None and target.segments else "everyone"


def _with_traffic(result: PositioningScore) -> int:
    """The needs with traffic over the conversations the option's P(D|U) is over: the target users'
    when it is over them, else all traffic."""
    target = result.target if result.over_target else None
    if target is not None:
        return sum(target.by_need.get(n.need, Rate(0, 0)).trials > 0 for n in result.needs)
    return sum(n.measured for n in result.needs)


def _opportunity_section(needs: list[NeedScore], chart: str | None, keyed: bool = False) -> list[str]:
    """The opportunity table (each need with its key, ``N1``...) and chart; with ``keyed``, the
    key of the chart's labels (key -> need) beside it."""
    lines = [
        "## Opportunity map",
        "",
        "Opportunity = importance + max(importance - satisfaction, 0), both on 0-10 (importance 1-5 x 2, "
        f"satisfaction x 10; Ulwick, outcome-driven innovation). Above {UNDER_SERVED:g}: under-served.",
        "",
        "| key | need | importance (0-10) | satisfaction (0-10) | opportunity | range (from the 95 % CI) | |",
        "|---|---|---|---|---|---|---|",
    ]
    keys = need_keys([n.need for n in needs])
    number = {id(n): keys[n.need] for n in needs}
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
        if keyed:
            lines += [
                "",
                "No font here can draw the needs' wording, so the chart names them by key:",
                "",
                "| key | need |",
                "|---|---|",
                *(f"| {keys[n.need]} | {escape_markdown(n.need)} |" for n in needs),
            ]
    return [*lines, ""]


def plot_evidence(evidence: Evidence, groups: Sequence[AnswerGroup], path: Path, top: int = 12) -> None:
    """One chart, one axis: messages per group of what answered them (:func:`answered_by`: the
    intent that answered, in words, the knowledge-base entry, advice declined, handed off / not
    answered), coloured by kind, each bar marked with its handoff and flag rates; the title gives
    containment as the brief defines it. Names a default font cannot draw are drawn with an
    installed font that can, if any (:func:`positioning.glyphs.chart_font`)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = list(groups[:top])[::-1]
    with plt.rc_context({"font.family": font_families(chart_font([g.label for g in shown])[1])}):
        _plot_evidence(evidence, shown, path)


def _plot_evidence(evidence: Evidence, shown: list[AnswerGroup], path: Path) -> None:
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    fig, ax = plt.subplots(figsize=(9, 0.45 * len(shown) + 1.8))
    counts = [g.messages for g in shown]
    ax.barh([g.label for g in shown], counts, color=[_KIND_COLOURS[g.kind] for g in shown])
    for i, g in enumerate(shown):
        ax.annotate(
            f" handed off {g.handoff_rate:.0%}, flagged {g.flag_rate:.0%}",
            (g.messages, i),
            va="center",
            fontsize=8,
            color="#374151",
        )
    ax.set_xlim(0, max(counts, default=1) * 1.45)
    ax.set_xlabel("messages")
    kinds = [k for k in _KIND_COLOURS if any(g.kind == k for g in shown)]
    ax.legend(handles=[Patch(color=_KIND_COLOURS[k], label=k) for k in kinds], loc="lower right", fontsize=8)
    resolved = evidence.resolved
    contained = (
        f"containment {100 * (resolved.value or 0.0):.0f} % ({resolved.successes}/{resolved.trials} "
        "conversations resolved without a person)"
        if resolved is not None and resolved.trials
        else "containment not measured"
    )
    ax.set_title(
        f"What answered customers ({evidence.period}): {evidence.messages} messages, {contained}",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_opportunity(result: PositioningScore, path: Path) -> bool:
    """Importance (x, 0-10) against measured satisfaction (y, 0-10) with its 95 % interval per need;
    the shaded area is under-served (opportunity above the threshold). Each point is labelled with
    the need's key (``N1``...) and its wording when a font has every glyph of it
    (:func:`positioning.glyphs.chart_font`: the default font, else an installed one as a fallback);
    returns whether the wording was drawn (False: keys only, the brief explains them)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = need_keys([n.need for n in result.needs])
    shown = [n.need[:30] for n in result.needs if n.satisfaction.value is not None]
    drawable, family = chart_font(shown)
    with plt.rc_context({"font.family": font_families(family)}):
        _plot_opportunity(result, path, keys, drawable)
    return drawable


#: Points per data unit of the opportunity chart (7 x 6 inches, both axes 0-10.5), and a label's
#: size at 8 points: roughly, to keep labels apart.
_PT_X, _PT_Y, _CHAR_W, _LINE_H = 41.0, 34.0, 4.8, 11.0


def label_offsets(points: Sequence[tuple[float, float]], labels: Sequence[str]) -> list[tuple[float, float]]:
    """Where each point's label goes (offset in points from the point) so that no two labels
    overlap: each label takes the first place, right or left of its point and then stepping up or
    down, whose box meets no label placed before it (points placed in order of importance, then
    satisfaction)."""
    placed: list[tuple[float, float, float, float]] = []
    out: list[tuple[float, float]] = [(6.0, 4.0)] * len(points)
    order = sorted(range(len(points)), key=lambda i: (-points[i][0], -points[i][1], i))
    for i in order:
        (x, y), width = points[i], _CHAR_W * len(labels[i])
        px, py = x * _PT_X, y * _PT_Y
        candidates = [
            (dx, dy)
            for step in range(8)
            for dy in ((4.0 + step * _LINE_H, -12.0 - step * _LINE_H) if step else (4.0, -12.0))
            for dx in (6.0, -6.0 - width)
        ]
        for dx, dy in candidates:
            box = (px + dx, py + dy, px + dx + width, py + dy + _LINE_H)
            if not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in placed):
                break
        else:
            dx, dy = candidates[0]
            box = (px + dx, py + dy, px + dx + width, py + dy + _LINE_H)
        placed.append(box)
        out[i] = (dx, dy)
    return out


def _plot_opportunity(result: PositioningScore, path: Path, keys: Mapping[str, str], wording: bool) -> None:
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(7, 6))
    imp = np.linspace(0, 10, 101)
    # opportunity > U  <=>  sat < 2 imp - U  (when sat < imp)
    ax.fill_between(imp, 0, np.clip(2 * imp - UNDER_SERVED, 0, 10), color="#fecaca", label="under-served")
    ax.plot([0, 10], [0, 10], color="#9ca3af", linewidth=1, linestyle="--", label="satisfaction = importance")
    drawn = [n for n in result.needs if n.satisfaction.value is not None and n.satisfaction.interval]
    points = [(2.0 * n.importance, 10 * (n.satisfaction.value or 0.0)) for n in drawn]
    # The key refers to the brief's table; the wording only where a font can draw it.
    labels = [
        f"{keys[n.need]}{f' {n.need[:30]}' if wording else ''} (n={n.satisfaction.trials})" for n in drawn
    ]
    offsets = label_offsets(points, labels)
    for n, (x, y), label, offset in zip(drawn, points, labels, offsets, strict=True):
        low, high = n.satisfaction.interval or (0.0, 0.0)
        ax.errorbar(x, y, yerr=[[y - 10 * low], [10 * high - y]], fmt="o", color="#1d4ed8", capsize=4)
        ax.annotate(
            label,
            (x, y),
            textcoords="offset points",
            xytext=offset,
            fontsize=8,
            arrowprops={"arrowstyle": "-", "color": "#9ca3af", "linewidth": 0.6}
            if offset[1] > 8 or offset[1] < -16
            else None,
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
