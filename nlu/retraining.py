"""Retraining on operator corrections that never ships a worse model.

``retrain`` merges the corrections (newest wins per text), trains a candidate, and scores it
against the active model (and the best model of its series) with the promotion gate
(:mod:`nlu.gate`). Two recipes:

- ``"continue"`` (the default): the active model is fine-tuned further, on batches mixing the
  corrections with the base corpus replayed (:func:`nlu.training.continue_training`). A few
  minutes; corrections generalise to reworded messages.
- ``"scratch"``: a full training from the base encoder on the base corpus plus the corrections
  (weighted, see ``TrainConfig.correction_repeats``), as ``teller train`` does. Slower; the way
  to change the base corpus substantially or to start over after many continued retrains.
 The evaluation set is frozen: it is the
series' first dev split (the active model's ``frozen.csv``, or its dev split for a model trained
from scratch), which the candidate never trains on and records whole as its own ``frozen.csv``
(and, less any text an operator corrected, as its dev split), so chained retrains keep comparing
on the same messages. Corrected texts move to training for good; those relabelled to another
intent are still scored, with their new labels, in a slice of their own.

The candidate is registered but never activated here: the caller activates it (and hot-swaps it
in) when ``result.decision.promote`` is true and the active version is still
``result.active_version``. A crash at any point leaves ``ACTIVE`` and the existing versions as
they were; only one retrain runs at a time per models directory (:class:`RetrainBusy`).
"""

from __future__ import annotations

import csv
import fcntl
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from nlu.artifact import CORRECTIONS_FILE, ArtifactInfo, read_dev_split, read_info, read_labels
from nlu.corrections import Correction, check_labels, merge_corrections
from nlu.data import Corpus, Example, load_corpus, text_key
from nlu.encoder import BASE_ENCODER_NAME
from nlu.errors import RetrainBusy, RetrainError
from nlu.gate import GATE_FILE, GateDecision, evaluate_gate, frozen_for_comparison, record_gate
from nlu.registry import ModelRegistry, ModelVersion
from nlu.textio import neutralise_cell, restore_cell

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from nlu.training import TrainConfig

__all__ = [
    "FROZEN_FILE",
    "GATE_FILE",
    "MODES",
    "Correction",
    "GateDecision",
    "RetrainBusy",
    "RetrainError",
    "RetrainResult",
    "evaluate_gate",
    "merge_corrections",
    "overall_progress",
    "read_frozen",
    "retrain",
    "retrain_lock",
]

#: ``progress(stage, done, total)``, as in :mod:`nlu.training` (which imports torch: not here).
ProgressFn = Callable[[str, int, int], None]

LOCK_FILE = ".retrain.lock"
#: The series' frozen evaluation set, recorded whole in every retrained candidate.
FROZEN_FILE = "frozen.csv"
#: The retraining recipes (see the module docstring).
MODES = ("continue", "scratch")
#: Stages reported by ``retrain`` in order, per recipe, with their rough share of the wall time (the
#: real encoder on 2 cores, Banking77 + corrections, from the uncontended stretches of measured runs).
STAGE_SHARES = {
    "scratch": {
        "prepare": 0.005,
        "probe": 0.075,
        "train": 0.80,
        "memory": 0.065,
        "dev": 0.01,
        "export": 0.03,
        "gate": 0.015,
    },
    "continue": {
        "prepare": 0.005,
        "base": 0.14,
        "train": 0.64,
        "memory": 0.13,
        "dev": 0.015,
        "export": 0.05,
        "gate": 0.02,
    },
}


@dataclass(frozen=True)
class RetrainResult:
    """A registered (not activated) candidate and the gate's decision about it."""

    candidate: ModelVersion
    decision: GateDecision
    #: The version the candidate was compared with (the active one when the retrain started).
    active_version: str
    #: The corrections trained on, after merging.
    corrections: list[Correction]
    seconds: float

    @property
    def promote(self) -> bool:
        return self.decision.promote


@contextmanager
def retrain_lock(models_dir: str | Path) -> Iterator[Path]:
    """Hold the retrain lock of ``models_dir`` (``intent/.retrain.lock``) or raise :class:`RetrainBusy`.

    An ``flock`` on the file: released by the kernel if the process dies, and exclusive between
    threads of one process too (each call opens its own file description).
    """
    root = ModelRegistry(models_dir).root
    root.mkdir(parents=True, exist_ok=True)
    path = root / LOCK_FILE
    handle = path.open("a+", encoding="utf-8")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise RetrainBusy(
                f"a retrain is already running on {root} (process {holder}); try again when it has finished"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        try:
            yield path
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
    finally:
        handle.close()


def overall_progress(report: Callable[[str, float], None], mode: str = "continue") -> ProgressFn:
    """Adapt ``report(stage, fraction of the whole retrain done)`` to ``retrain``'s ``progress``."""
    shares = STAGE_SHARES[mode]
    stages = list(shares)
    starts = {s: sum(shares[t] for t in stages[: stages.index(s)]) for s in stages}
    reached = 0.0

    def update(stage: str, done: int, total: int) -> None:
        nonlocal reached
        if stage in shares:
            share = shares[stage] * min(1.0, done / max(total, 1))
            reached = max(reached, min(1.0, starts[stage] + share))
        report(stage, reached)

    return update


#: Source names that are not files: examples passed in memory, and the corrections themselves.
NOT_FILES = ("<examples>", CORRECTIONS_FILE)


def recorded_corpus(active: ArtifactInfo) -> Corpus:
    """The corpus the active model was trained on, read again from the files its artifact names.

    A file that moved with the checkout (Teller's vendored corpora) is found under
    :data:`nlu.corpora.CORPORA_DIR`. Raises :class:`RetrainError` if a source is missing or the
    model records none (it was trained on examples passed in memory): pass the base corpus then.
    """
    from nlu.corpora import CORPORA_DIR

    paths: list[Path] = []
    for source in active.sources:
        if source in NOT_FILES:
            continue
        path = Path(source)
        if not path.is_file() and CORPORA_DIR.name in path.parts:
            last = max(i for i, part in enumerate(path.parts) if part == CORPORA_DIR.name)
            path = CORPORA_DIR.joinpath(*path.parts[last + 1 :])
        if not path.is_file():
            raise RetrainError(
                f"the active model {active.version} was trained on {source}, which is not on this "
                "machine; give the base corpus (teller retrain --data FILE)"
            )
        paths.append(path)
    if not paths:
        raise RetrainError(
            f"the active model {active.version} does not record the files it was trained on; "
            "give the base corpus (teller retrain --data FILE)"
        )
    return load_corpus(paths)


def as_corpus(base: Corpus | Sequence[Example] | None, active: ArtifactInfo) -> Corpus:
    """The base corpus: the given one (examples: de-duplicated, later wins), or the active model's."""
    if base is None:
        return recorded_corpus(active)
    if isinstance(base, Corpus):
        return base
    by_key = {text_key(e.text): e for e in base}
    return Corpus(sorted(by_key.values(), key=lambda e: (e.label, e.text)), ["<examples>"])


def _encoder_of(active_base_encoder: str, encoder_dir: str | Path | None) -> Path | None:
    """The base encoder to train from: the one the active model was trained from, unless given."""
    if encoder_dir is not None:
        return Path(encoder_dir)
    if active_base_encoder == BASE_ENCODER_NAME:
        return None
    path = Path(active_base_encoder)
    if not (path / "config.json").is_file():
        raise RetrainError(
            f"the active model was trained from {active_base_encoder!r}, which is not on this machine; "
            "pass encoder_dir"
        )
    return path


def read_frozen(model_path: str | Path) -> list[Example]:
    """The frozen evaluation set of the series a model belongs to: its ``frozen.csv`` (a retrained
    candidate), else its dev split (the first model of a series)."""
    path = Path(model_path) / FROZEN_FILE
    if path.is_file():
        with path.open(encoding="utf-8", newline="") as handle:
            rows = csv.DictReader(handle)
            return [Example(restore_cell(row["text"]), restore_cell(row["category"])) for row in rows]
    return read_dev_split(model_path)


def _write_frozen(path: Path, frozen: Sequence[Example]) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "category"])
        writer.writerows((neutralise_cell(e.text), neutralise_cell(e.label)) for e in frozen)


def retrain(
    models_dir: str | Path,
    base_corpus: Corpus | Sequence[Example] | None,
    corrections: Sequence[Correction],
    config: TrainConfig | None = None,
    tolerance_points: float = 0.5,
    progress: ProgressFn | None = None,
    *,
    encoder_dir: str | Path | None = None,
    precision: str | None = None,
    mode: str = "continue",
    drift_points: float | None = None,
) -> RetrainResult:
    """Train a candidate on ``base_corpus`` + ``corrections`` and gate it against the active model
    and, with ``drift_points``, against the best model of the series (the cumulative bound).

    ``mode`` is the recipe: ``"continue"`` fine-tunes the active model further, ``"scratch"``
    trains from the base encoder (see the module docstring). ``base_corpus`` defaults to the corpus
    the active model was trained on (:func:`recorded_corpus`); ``config`` to its training config;
    the base encoder to the one it was trained from. ``progress(stage, done, total)`` gets
    "prepare", the training stages ("base" or "probe", "train", "memory", "dev", "export") and
    "gate" (see :func:`overall_progress` for one overall fraction). Never activates anything.

    Raises :class:`RetrainBusy` if another retrain holds the lock, :class:`RetrainError` if there
    is nothing to learn or nothing to gate on, :class:`~nlu.errors.DataError` for bad corrections.
    """
    from nlu.pipeline import train_and_register  # imports torch: only when a retrain runs
    from nlu.training import TrainConfig

    if mode not in MODES:
        raise RetrainError(f"unknown retraining mode {mode!r}: use one of {', '.join(MODES)}")
    started = time.perf_counter()

    def report(stage: str, done: int, total: int) -> None:
        if progress is not None:
            progress(stage, done, total)

    with retrain_lock(models_dir):
        report("prepare", 0, 1)
        registry = ModelRegistry(models_dir)
        active_path = registry.active_path()
        active = read_info(active_path)
        merged = merge_corrections(corrections)
        if not merged:
            raise RetrainError("no corrections: nothing to learn, so no candidate was trained")
        # A correction naming an intent the active model lacks (a model trained without it was
        # activated since) is left out, and said so, rather than refusing every retrain until it is
        # withdrawn (a reviewer's finding); with none left, the names are the error.
        labels = set(read_labels(active_path))
        usable = [c for c in merged if c.label.strip() in labels]
        if not usable:
            check_labels(merged, labels)
        skipped = sorted({c.label.strip() for c in merged} - labels)
        if skipped:
            log.warning(
                "retrain_corrections_skipped",
                extra={"fields": {"intents": skipped, "corrections": len(merged) - len(usable)}},
            )
        merged = usable
        frozen = read_frozen(active_path)
        if not frozen:
            raise RetrainError(
                f"the active model {active.version} has no recorded dev split: no frozen set to gate on"
            )
        fixes = [c.to_example() for c in merged]
        kept, dropped = frozen_for_comparison(frozen, fixes)
        corpus = as_corpus(base_corpus, active)
        sources = [s for s in corpus.sources if s != CORRECTIONS_FILE]
        corpus = Corpus(corpus.examples, [*sources, CORRECTIONS_FILE])
        config = config or TrainConfig.from_dict(active.training)
        encoder = _encoder_of(active.base_encoder, encoder_dir)
        report("prepare", 1, 1)

        candidate = train_and_register(
            corpus,
            registry,
            config,
            progress,
            activate=False,
            encoder_dir=encoder,
            dev_examples=kept,
            corrections=fixes,
            continue_from=active_path if mode == "continue" else None,
            retraining={
                "parent": active.version,
                "mode": mode,
                "corrections": len(fixes),
                # the intents of corrections left out, the active model having none such
                **({"corrections_skipped": skipped} if skipped else {}),
                "correction_repeats": config.correction_repeats,
                "frozen_size": len(kept),
                "frozen_dropped": dropped,
            },
        )

        _write_frozen(candidate.path / FROZEN_FILE, frozen)
        report("gate", 0, 1)
        decision = evaluate_gate(
            active_path, candidate.path, frozen, fixes, tolerance_points, precision, drift_points
        )
        record_gate(candidate.path, active.version, decision)
        report("gate", 1, 1)
    return RetrainResult(
        candidate=candidate,
        decision=decision,
        active_version=active.version,
        corrections=merged,
        seconds=time.perf_counter() - started,
    )
