"""Evaluation reports: JSON, Markdown and a confusion-matrix PNG, side by side."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nlu.metrics import Metrics


@dataclass(frozen=True)
class ReportFiles:
    json: Path
    markdown: Path
    confusion_png: Path


def write_report(
    metrics: Metrics,
    directory: str | Path,
    title: str,
    context: dict[str, Any],
    sections: dict[str, dict[str, Any]] | None = None,
) -> ReportFiles:
    """Write ``metrics.json``, ``report.md`` and ``confusion.png`` into ``directory``.

    ``sections`` adds named tables of further figures (e.g. the answer policy's) to both files.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    files = ReportFiles(directory / "metrics.json", directory / "report.md", directory / "confusion.png")
    payload = {"context": context, **metrics.to_dict(), **(sections or {})}
    files.json.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    plot_confusion(metrics, files.confusion_png, title)
    files.markdown.write_text(
        render_markdown(metrics, title, context, files.confusion_png.name, sections), encoding="utf-8"
    )
    return files


def render_markdown(
    metrics: Metrics,
    title: str,
    context: dict[str, Any],
    image: str,
    sections: dict[str, dict[str, Any]] | None = None,
) -> str:
    lines = [f"# {title}", ""]
    lines += [f"- **{key}**: {value}" for key, value in context.items()]
    lines += [
        "",
        "| metric | value |",
        "|---|---|",
        f"| messages | {metrics.n} |",
        f"| accuracy | {metrics.accuracy:.2%} |",
        f"| macro-F1 | {metrics.macro_f1:.4f} |",
        f"| expected calibration error | {metrics.ece:.4f} |",
        "",
    ]
    if metrics.unknown_labels:
        lines += [
            f"Categories the model does not know (always counted wrong): {', '.join(metrics.unknown_labels)}",
            "",
        ]
    for name, figures in (sections or {}).items():
        lines += [f"## {name.replace('_', ' ').capitalize()}", "", "| measure | value |", "|---|---|"]
        lines += [f"| {key.replace('_', ' ')} | {_cell(value)} |" for key, value in figures.items()]
        lines.append("")
    lines += ["## Most confused intent pairs", "", "| true | predicted | count |", "|---|---|---|"]
    lines += [f"| {c.true} | {c.predicted} | {c.count} |" for c in metrics.confusions] or ["| - | - | 0 |"]
    lines += [
        "",
        "## Per intent (worst F1 first)",
        "",
        "| intent | precision | recall | F1 | support |",
        "|---|---|---|---|---|",
    ]
    for s in sorted(metrics.per_intent, key=lambda s: (s.f1, s.intent)):
        lines.append(f"| {s.intent} | {s.precision:.3f} | {s.recall:.3f} | {s.f1:.3f} | {s.support} |")
    lines += ["", f"![confusion matrix]({image})", ""]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2%}" if 0.0 <= value <= 1.0 else f"{value:.3f}"
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items())
    return str(value)


def plot_confusion(metrics: Metrics, path: Path, title: str) -> None:
    """Row-normalised confusion matrix; the diagonal is accuracy per intent."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.asarray(metrics.confusion_matrix, dtype=float)
    rows = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)
    n = len(metrics.labels)
    size = max(6.0, min(28.0, 0.22 * n + 3))
    fig, ax = plt.subplots(figsize=(size, size))
    image = ax.imshow(normalised, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    font = 9 if n <= 30 else 5
    ax.set_xticklabels(metrics.labels, rotation=90, fontsize=font)
    ax.set_yticklabels(metrics.labels, fontsize=font)
    ax.set_xlabel("predicted intent")
    ax.set_ylabel("true intent")
    ax.set_title(f"{title}\naccuracy {metrics.accuracy:.2%}, macro-F1 {metrics.macro_f1:.3f}")
    fig.colorbar(image, ax=ax, fraction=0.03, pad=0.02)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
