"""Training progress for people: a rich progress bar on a terminal, plain lines with an ETA elsewhere."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console

ProgressFn = Callable[[str, int, int], None]

STAGE_TITLES = {
    "probe": "Encoding (linear probe)",
    "base": "Encoding (base encoder)",
    "train": "Fine-tuning",
    "memory": "Embedding memory",
    "dev": "Scoring dev split",
    "export": "Exporting ONNX, int8",
}


def _eta(started: float, done: int, total: int) -> str:
    if done <= 0 or done >= total:
        return "0:00"
    seconds = int((time.monotonic() - started) * (total - done) / done)
    return f"{seconds // 60}:{seconds % 60:02d}"


@contextmanager
def progress_reporter(console: Console, enabled: bool = True) -> Iterator[ProgressFn | None]:
    """Yield a ``progress(stage, done, total)`` callback (or None when disabled)."""
    if not enabled:
        yield None
        return
    if not console.is_terminal:
        yield _plain_reporter(console)
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskID,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("{task.description:<24}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        tasks: dict[str, TaskID] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(STAGE_TITLES.get(stage, stage), total=total)
            bar.update(tasks[stage], completed=done, total=total)

        yield update


def _plain_reporter(console: Console) -> ProgressFn:
    """One line per stage per tenth of the work, e.g. for CI logs."""
    started: dict[str, float] = {}
    reported: dict[str, int] = {}

    def update(stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        started.setdefault(stage, now)
        tenth = 10 * done // max(total, 1)
        if reported.get(stage) == tenth:
            return
        reported[stage] = tenth
        console.print(
            f"{STAGE_TITLES.get(stage, stage)}: {done}/{total} ({10 * tenth}%), "
            f"elapsed {int(now - started[stage])}s, ETA {_eta(started[stage], done, total)}",
            highlight=False,
        )

    return update
