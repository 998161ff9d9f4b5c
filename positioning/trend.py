"""How positioning moved: the terms of the briefs written earlier for the same interview, beside
this one's.

Every brief is kept with its date and its score (:meth:`PositioningScore.to_dict`); the caller
reads the last runs back (:func:`run_of`) and the brief shows P(D|U), M, positioning and each need's
satisfaction per run, with the change since the last run (:func:`trend_lines`, :func:`plot_trend`).
P(D|U) follows the headline's rule in every run: over the target users when they had conversations
of the needs, else all traffic; the table says which per run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from positioning.scoring import ALL_TRAFFIC, PositioningScore

#: How many earlier runs the brief shows.
TREND_RUNS = 5


@dataclass(frozen=True)
class Run:
    """One brief's terms: ``at`` (ISO 8601 UTC), ``p`` (P(D|U)), ``m``, ``score`` (None when not
    measurable), ``needs``: need -> (satisfaction or None, conversations it rests on)."""

    at: str
    p: float | None
    m: float | None
    score: float | None
    needs: Mapping[str, tuple[float | None, int]] = field(default_factory=dict)
    #: Whose conversations ``p`` is over: ``"target users (retail)"`` or ``"all traffic"``.
    over: str = ALL_TRAFFIC

    @property
    def label(self) -> str:
        """``"2026-11-30 08:15"`` (UTC)."""
        return self.at[:16].replace("T", " ")


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _headline(score: Mapping[str, Any]) -> tuple[float | None, float | None, str]:
    """``(P(D|U), positioning, over)`` of a kept score under today's rule: P(D|U) over the target
    users when they had conversations of the needs, else all traffic. A brief kept before that rule
    (no ``p_over``) stored all traffic as its headline and the target users' figure beside it: the
    target's figure is taken when there is one, and the positioning recomputed with its M."""
    p, total = _number(score.get("p_d_given_u")), _number(score.get("score"))
    if "p_over" in score:
        return p, total, str(score.get("p_over") or ALL_TRAFFIC)
    target = score.get("target")
    if isinstance(target, Mapping) and target.get("segments"):
        estimate = target.get("estimate")
        value = _number(estimate.get("value")) if isinstance(estimate, Mapping) else None
        if value is not None:
            m = _number(score.get("m"))
            over = f"target users ({', '.join(str(s) for s in target['segments'])})"
            return value, value * m if m is not None else None, over
    return p, total, ALL_TRAFFIC


def run_of(at: str, score: Mapping[str, Any]) -> Run:
    """A run from a kept brief: its date and its score as stored (``PositioningScore.to_dict()``),
    P(D|U) under the same rule as this brief's (:func:`_headline`). Missing or malformed figures
    read as None (an old brief's score had other fields)."""
    needs: dict[str, tuple[float | None, int]] = {}
    for n in score.get("needs") or []:
        if not isinstance(n, Mapping) or "need" not in n:
            continue
        sat = n.get("satisfaction")
        if isinstance(sat, Mapping):
            needs[str(n["need"])] = (_number(sat.get("value")), int(sat.get("trials") or 0))
        else:  # briefs from before satisfaction was measured on outcomes: a bare figure
            needs[str(n["need"])] = (_number(sat), 0)
    p, total, over = _headline(score)
    return Run(at, p, _number(score.get("m")), total, needs, over)


def run_now(result: PositioningScore, at: str | None = None) -> Run:
    """This brief's run (``at`` defaults to now)."""
    at = at or datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return Run(
        at,
        result.p_d_given_u,
        result.m,
        result.score,
        {n.need: (n.satisfaction.value, n.satisfaction.trials) for n in result.needs},
        result.p_over,
    )


def _cell(value: float | None, trials: int | None = None) -> str:
    if value is None:
        return "no traffic" if trials == 0 else "-"
    return f"{value:.2f}" + (f" (n={trials})" if trials else "")


def _change(now: float | None, before: float | None) -> str:
    if now is None or before is None:
        return "-"
    delta = now - before
    return "no change" if abs(delta) < 0.005 else f"{delta:+.2f}"


def trend_rows(history: Sequence[Run], current: Run) -> list[tuple[str, list[str], str]]:
    """``(term, a cell per run (oldest first, this one last), change since the last run)``: whose
    conversations P(D|U) is over in each run, the three terms (a change of P(D|U) or positioning
    across runs over other customers is marked ``(U changed)``), then each of this run's needs
    (satisfaction over all traffic)."""
    runs = [*history, current]
    last = history[-1] if history else None
    moved = last is not None and last.over != current.over
    rows: list[tuple[str, list[str], str]] = [
        ("P(D|U) over", [r.over for r in runs], "U changed" if moved else "-"),
    ]
    for term, get in (
        ("P(D|U)", lambda r: r.p),
        ("M", lambda r: r.m),
        ("Positioning", lambda r: r.score),
    ):
        change = _change(get(current), get(last)) if last else "-"
        if moved and term != "M" and change != "-":
            change += " (U changed)"
        rows.append((term, [_cell(get(r)) for r in runs], change))
    for need, (value, _) in current.needs.items():
        cells = []
        for r in runs:
            got = r.needs.get(need)
            cells.append(_cell(*got) if got is not None else "not a need then")
        before = last.needs.get(need) if last else None
        rows.append((f"satisfaction: {need}", cells, _change(value, before[0] if before else None)))
    return rows


def trend_lines(history: Sequence[Run], current: Run, chart: str | None = None) -> list[str]:
    """The brief's trend section (Markdown lines): a table of every term per run, with dates;
    "first brief" when there is no earlier run. Need wordings are escaped by the caller's
    ``escape``; here they are written through :func:`positioning.brief.escape_markdown`."""
    from positioning.brief import escape_markdown

    lines = ["## Trend since the last runs", ""]
    if not history:
        return [*lines, f"This is the first brief of this interview ({current.label} UTC).", ""]
    heads = [f"{r.label}" for r in history] + [f"{current.label} (this brief)"]
    lines += [
        f"The last {len(history)} brief{'s' if len(history) != 1 else ''} of this interview and this one "
        "(UTC); satisfaction with the conversations it rests on.",
        "",
        "| term | " + " | ".join(heads) + " | change since the last run |",
        "|---|" + "---|" * len(heads) + "---|",
    ]
    for term, cells, change in trend_rows(history, current):
        lines.append(f"| {escape_markdown(term)} | " + " | ".join(cells) + f" | {change} |")
    if chart:
        lines += ["", f"![P(D|U), M and positioning per run]({chart})"]
    return [*lines, ""]


def plot_trend(history: Sequence[Run], current: Run, path: Path) -> None:
    """P(D|U), M and positioning (0-1, one axis) per run, dated."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [*history, current]
    x = list(range(len(runs)))
    fig, ax = plt.subplots(figsize=(7, 3.6))
    for name, get, colour in (
        ("P(D|U)", lambda r: r.p, "#1d4ed8"),
        ("M", lambda r: r.m, "#16a34a"),
        ("positioning", lambda r: r.score, "#dc2626"),
    ):
        points = [(i, get(r)) for i, r in zip(x, runs, strict=True) if get(r) is not None]
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", color=colour, label=name)
    ax.set_xticks(x, [r.label.replace(" ", "\n") for r in runs], fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("value (0-1)")
    ax.set_title("Positioning per brief run", fontsize=11)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
