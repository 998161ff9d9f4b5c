"""The promotion gate: a retrained candidate replaces the active model only if it is no worse.

Both models are scored through the serving path (:class:`nlu.IntentClassifier`, the precision
each artifact chose, as ``teller eval`` does) on exactly the same messages:

- the frozen evaluation set (the series' first dev split, less any text an operator corrected):
  the candidate may lose at most ``tolerance_points`` percentage points of accuracy against the
  active model;
- the same messages against a baseline that does not move: the best frozen-set score of any model
  of the series ever promoted (the first model included), whose right answers are recorded message
  by message in each gate's record (``series``), so they are counted on exactly the messages compared
  now and survive the pruning of old versions. The candidate may be at most ``drift_points`` below
  it: each retrain may lose up to the tolerance against its parent, but a chain of them cannot
  drift further than this in all;
- the corrections: the candidate must be strictly more accurate than the active model, or there
  is nothing it learned;
- frozen messages an operator relabelled (corrected to another intent) leave the frozen slice, and
  are scored with their new labels in a slice of their own, reported: the candidate may not be
  less accurate there than the active model, so what a relabelling costs is seen.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from nlu.artifact import read_info
from nlu.classifier import IntentClassifier
from nlu.corrections import Correction, as_examples
from nlu.data import Example, text_key

#: Accuracy changes smaller than this (in points) are float noise, not a difference.
_EPSILON = 1e-9
#: The gate's decision, written into the candidate's directory once it is known.
GATE_FILE = "gate.json"


@dataclass(frozen=True)
class GateDecision:
    """Whether to promote a candidate, why, and the figures behind it (accuracies in 0..1)."""

    promote: bool
    reasons: list[str]
    active_frozen_accuracy: float
    candidate_frozen_accuracy: float
    #: ``None`` when there were no corrections.
    active_corrections_accuracy: float | None
    candidate_corrections_accuracy: float | None
    frozen_size: int
    corrections_size: int
    #: Frozen examples left out of the comparison because an operator corrected their text.
    frozen_dropped: int = 0
    tolerance_points: float = 0.5
    #: The baseline that does not move (the best model of the series ever promoted) and its accuracy
    #: on the same frozen messages; ``drift_points``: how far below it the candidate may be (None:
    #: no cumulative bound).
    baseline_version: str | None = None
    baseline_frozen_accuracy: float | None = None
    drift_points: float | None = None
    #: The mean probability each model gives the operators' labels on the corrections (None without
    #: corrections): with as many right, a candidate surer of them by :data:`SURER_BY` learned them.
    active_corrections_probability: float | None = None
    candidate_corrections_probability: float | None = None
    #: Frozen messages an operator relabelled, scored with their new labels.
    relabelled_size: int = 0
    active_relabelled_accuracy: float | None = None
    candidate_relabelled_accuracy: float | None = None
    #: Which frozen messages each model got right (see :func:`evaluate_gate`); kept in the gate's
    #: record for the next gate of the series, not in :meth:`to_dict`.
    series: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def frozen_change_points(self) -> float:
        """Candidate minus active accuracy on the frozen set, in percentage points."""
        return 100.0 * (self.candidate_frozen_accuracy - self.active_frozen_accuracy)

    @property
    def cumulative_change_points(self) -> float | None:
        """Candidate minus baseline accuracy on the frozen set, in points (None without a baseline)."""
        if self.baseline_frozen_accuracy is None:
            return None
        return 100.0 * (self.candidate_frozen_accuracy - self.baseline_frozen_accuracy)

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in asdict(self).items() if k != "series"}
        return {
            **data,
            "frozen_change_points": self.frozen_change_points,
            "cumulative_change_points": self.cumulative_change_points,
        }


#: How much surer of the operators' labels (mean probability, 0..1) a candidate that gets no more
#: corrections right than the active model must be to have learned them. Confirming the model's own
#: top suggestion is the review queue's usual correction: the active model already reads it first,
#: unsure (a trial: 0.36, a clarify), and what a retrain learns is to be sure (0.97, an answer).
SURER_BY = 0.05


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def decide(
    active_frozen_correct: int,
    candidate_frozen_correct: int,
    frozen_size: int,
    active_corrections_correct: int,
    candidate_corrections_correct: int,
    corrections_size: int,
    tolerance_points: float = 0.5,
    frozen_dropped: int = 0,
    *,
    baseline_frozen_correct: int | None = None,
    baseline_version: str | None = None,
    drift_points: float | None = None,
    relabelled_size: int = 0,
    active_relabelled_correct: int = 0,
    candidate_relabelled_correct: int = 0,
    active_corrections_probability: float | None = None,
    candidate_corrections_probability: float | None = None,
    corrections_kept: bool = False,
) -> GateDecision:
    """The gate's rule on counts of correct predictions (pure; :func:`evaluate_gate` measures them).

    ``baseline_frozen_correct``: how many of the same frozen messages the baseline (the best model
    of the series ever promoted) got right; with ``drift_points``, the candidate may be at most that
    far below it. ``relabelled_*``: the frozen messages operators relabelled, with their new labels:
    the candidate may not get fewer of them right than the active model. ``*_corrections_probability``:
    the mean probability each model gives the operators' labels on the corrections both read right;
    a candidate that gets as many corrections right (not more), at least one and every one the
    active model gets right (``corrections_kept``), has learned them when it is surer of those by
    :data:`SURER_BY`."""
    reasons: list[str] = []
    promote = True
    active_f = active_frozen_correct / frozen_size if frozen_size else 0.0
    cand_f = candidate_frozen_correct / frozen_size if frozen_size else 0.0
    if not frozen_size:
        promote = False
        reasons.append("the frozen evaluation set is empty: there is nothing to compare the models on")
    else:
        change = 100.0 * (candidate_frozen_correct - active_frozen_correct) / frozen_size
        verdict = (
            "within the tolerance"
            if change >= -tolerance_points - _EPSILON
            else "a larger drop than the tolerance allows"
        )
        promote &= verdict == "within the tolerance"
        reasons.append(
            f"frozen set ({frozen_size} messages): candidate {_pct(cand_f)} vs active {_pct(active_f)} "
            f"({change:+.1f} points; {_allowed(tolerance_points)}): {verdict}"
        )
    active_c = cand_c = None
    if not corrections_size:
        promote = False
        reasons.append("no corrections: nothing to learn")
    else:
        active_c = active_corrections_correct / corrections_size
        cand_c = candidate_corrections_correct / corrections_size
        better = candidate_corrections_correct > active_corrections_correct
        surer = (
            not better
            and corrections_kept
            and candidate_corrections_correct == active_corrections_correct > 0
            and active_corrections_probability is not None
            and candidate_corrections_probability is not None
            and candidate_corrections_probability >= active_corrections_probability + SURER_BY - _EPSILON
        )
        promote &= better or surer
        sure = (
            f"; the operators' labels at {candidate_corrections_probability:.2f} vs "
            f"{active_corrections_probability:.2f} on average"
            if active_corrections_probability is not None and candidate_corrections_probability is not None
            else ""
        )
        verdict = (
            "better"
            if better
            else f"as many right and surer of them (by at least {SURER_BY:.2f}): learned"
            if surer
            else "not better, so nothing was learned"
        )
        reasons.append(
            f"corrections ({corrections_size} messages): candidate {_pct(cand_c)} vs active "
            f"{_pct(active_c)}{sure}: {verdict}"
        )
    baseline_f = None
    if baseline_frozen_correct is not None and frozen_size:
        baseline_f = baseline_frozen_correct / frozen_size
        if drift_points is not None:
            total = 100.0 * (candidate_frozen_correct - baseline_frozen_correct) / frozen_size
            bounded = total >= -drift_points - _EPSILON
            promote &= bounded
            reasons.append(
                f"against the best model of the series ({baseline_version or 'unknown'}, "
                f"{_pct(baseline_f)} on the same frozen messages): {total:+.1f} points in all; "
                f"{_allowed(drift_points)}: "
                + ("within the cumulative bound" if bounded else "beyond the cumulative bound")
            )
    active_r = cand_r = None
    if relabelled_size:
        active_r = active_relabelled_correct / relabelled_size
        cand_r = candidate_relabelled_correct / relabelled_size
        kept_up = candidate_relabelled_correct >= active_relabelled_correct
        promote &= kept_up
        reasons.append(
            f"relabelled frozen messages ({relabelled_size}, scored with the operators' labels): "
            f"candidate {_pct(cand_r)} vs active {_pct(active_r)}: " + ("not worse" if kept_up else "worse")
        )
    return GateDecision(
        promote=promote,
        reasons=reasons,
        active_frozen_accuracy=active_f,
        candidate_frozen_accuracy=cand_f,
        active_corrections_accuracy=active_c,
        candidate_corrections_accuracy=cand_c,
        active_corrections_probability=active_corrections_probability if corrections_size else None,
        candidate_corrections_probability=candidate_corrections_probability if corrections_size else None,
        frozen_size=frozen_size,
        corrections_size=corrections_size,
        frozen_dropped=frozen_dropped,
        tolerance_points=tolerance_points,
        baseline_version=baseline_version if baseline_f is not None else None,
        baseline_frozen_accuracy=baseline_f,
        drift_points=drift_points,
        relabelled_size=relabelled_size,
        active_relabelled_accuracy=active_r,
        candidate_relabelled_accuracy=cand_r,
    )


def frozen_for_comparison(
    frozen: Sequence[Example], corrections: Sequence[Example]
) -> tuple[list[Example], int]:
    """The frozen set less every text an operator corrected, and how many were left out."""
    corrected = {text_key(e.text) for e in corrections}
    kept = [e for e in frozen if text_key(e.text) not in corrected]
    return kept, len(frozen) - len(kept)


@dataclass(frozen=True)
class FrozenSlices:
    """The frozen set as the gate compares it: the messages nobody corrected (``kept``, indices into
    the frozen set) and those relabelled to another intent, with that intent (``relabelled``)."""

    kept: list[int]
    relabelled: list[tuple[int, str]]


def frozen_slices(frozen: Sequence[Example], corrections: Sequence[Example]) -> FrozenSlices:
    """Split the frozen set by the corrections (merged already): untouched messages, and messages
    corrected to another label (a correction confirming the frozen label leaves both slices)."""
    labels = {text_key(e.text): e.label for e in corrections}
    kept: list[int] = []
    relabelled: list[tuple[int, str]] = []
    for i, example in enumerate(frozen):
        new = labels.get(text_key(example.text))
        if new is None:
            kept.append(i)
        elif new != example.label:
            relabelled.append((i, new))
    return FrozenSlices(kept, relabelled)


def frozen_digest(frozen: Sequence[Example]) -> str:
    """The identity of a frozen set, in order (gate records refer to its messages by position)."""
    digest = hashlib.sha256()
    for e in frozen:
        digest.update(f"{e.label}\t{e.text}\n".encode())
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class Scored:
    """A model of the series and the frozen messages (positions) it labelled right."""

    version: str
    correct: frozenset[int]

    def on(self, positions: Sequence[int]) -> int:
        """How many of ``positions`` it got right."""
        return sum(1 for i in positions if i in self.correct)

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "correct": sorted(self.correct)}

    @classmethod
    def from_dict(cls, data: Any) -> Scored | None:
        try:
            return cls(str(data["version"]), frozenset(int(i) for i in data["correct"]))
        except (KeyError, TypeError, ValueError):
            return None


def read_gate(model_path: str | Path) -> dict[str, Any] | None:
    """The gate's record of a model that was a retrain candidate (None for one trained from scratch,
    or an unreadable record)."""
    try:
        data = json.loads((Path(model_path) / GATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def record_gate(candidate_path: str | Path, active_version: str, decision: GateDecision) -> Path:
    """Write the gate's record into the candidate's directory (``gate.json``): the decision and, for
    the next gate of the series, which frozen messages each model got right."""
    path = Path(candidate_path) / GATE_FILE
    data = {"active_version": active_version, **decision.to_dict(), "series": decision.series}
    staging = path.with_name(f".{path.name}.tmp")
    staging.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    staging.replace(path)
    return path


def series_baseline(active_path: str | Path, active: Scored, digest: str, positions: Sequence[int]) -> Scored:
    """The baseline that does not move: the active model, or the baseline its own gate recorded (the
    best model of the series promoted before it), whichever got more of ``positions`` right (ties:
    the earlier). A record of another frozen set (a new series) does not count."""
    record = read_gate(active_path) or {}
    series = record.get("series") if isinstance(record.get("series"), dict) else None
    if series is None or series.get("frozen") != digest:
        return active
    earlier = Scored.from_dict(series.get("baseline"))
    if earlier is None or earlier.on(positions) < active.on(positions):
        return active
    return earlier


def label_readings(classifier: IntentClassifier, examples: Sequence[Example]) -> list[tuple[bool, float]]:
    """For each example: whether the served classifier labels it right, and the probability it gives
    the example's label (one batched ``predict`` over every label)."""
    if not examples:
        return []
    predictions = classifier.predict([e.text for e in examples], top_k=len(classifier.labels))
    return [
        (p.intent == e.label, dict(p.alternatives).get(e.label, 0.0))
        for p, e in zip(predictions, examples, strict=True)
    ]


def count_correct(classifier: IntentClassifier, examples: Sequence[Example]) -> int:
    """How many of ``examples`` the served classifier labels right (one batched ``predict``)."""
    return sum(right(classifier, examples))


def right(classifier: IntentClassifier, examples: Sequence[Example]) -> list[bool]:
    """Whether the served classifier labels each of ``examples`` right (one batched ``predict``)."""
    predictions = classifier.predict([e.text for e in examples]) if examples else []
    return [p.intent == e.label for p, e in zip(predictions, examples, strict=True)]


def evaluate_gate(
    active_path: str | Path,
    candidate_path: str | Path,
    frozen: Sequence[Example],
    corrections: Sequence[Correction | Example],
    tolerance_points: float = 0.5,
    precision: str | None = None,
    drift_points: float | None = None,
) -> GateDecision:
    """Score both models on the frozen set and the corrections and apply :func:`decide`.

    Corrections are merged newest-wins first; frozen texts that were corrected leave the frozen
    slice, and those relabelled are scored with their new labels. ``frozen`` must be the series'
    frozen set (:func:`nlu.retraining.read_frozen`), in its order: gate records refer to its
    messages by position. ``precision`` overrides each artifact's own serving precision (e.g.
    ``TELLER_PRECISION``); ``drift_points``: the cumulative bound against the series' baseline.
    The decision's ``series`` is what the candidate's gate record keeps for the next gate.
    """
    fixes = as_examples([c for c in corrections if isinstance(c, Correction)])
    fixes += [c for c in corrections if isinstance(c, Example)]
    slices = frozen_slices(frozen, fixes)
    relabelled = [Example(frozen[i].text, label) for i, label in slices.relabelled]
    scored: list[Scored] = []
    counts: list[tuple[int, int]] = []
    readings: list[list[tuple[bool, float]]] = []
    for path in (active_path, candidate_path):
        classifier = IntentClassifier.load(path, precision=precision)
        correct = right(classifier, frozen)
        scored.append(Scored(read_info(path).version, frozenset(i for i, ok in enumerate(correct) if ok)))
        read = label_readings(classifier, fixes)
        readings.append(read)
        counts.append((sum(ok for ok, _ in read), count_correct(classifier, relabelled)))
        del classifier
    active, candidate = scored
    # Sureness is compared on the corrections both models read right, and only counts for a
    # candidate that keeps every one the active model gets right.
    pairs = list(zip(*readings, strict=True))
    both = [i for i, ((a, _), (c, _)) in enumerate(pairs) if a and c]
    kept = all(c for (a, _), (c, _) in pairs if a)
    sureness = [sum(r[i][1] for i in both) / len(both) if both else None for r in readings]
    digest = frozen_digest(frozen)
    baseline = series_baseline(active_path, active, digest, slices.kept)
    (active_c, active_r), (cand_c, cand_r) = counts
    decision = decide(
        active.on(slices.kept),
        candidate.on(slices.kept),
        len(slices.kept),
        active_c,
        cand_c,
        len(fixes),
        tolerance_points,
        len(frozen) - len(slices.kept),
        baseline_frozen_correct=baseline.on(slices.kept),
        baseline_version=baseline.version,
        drift_points=drift_points,
        relabelled_size=len(relabelled),
        active_relabelled_correct=active_r,
        candidate_relabelled_correct=cand_r,
        active_corrections_probability=sureness[0],
        candidate_corrections_probability=sureness[1],
        corrections_kept=kept,
    )
    series = {
        "frozen": digest,
        "frozen_size": len(frozen),
        "baseline": baseline.to_dict(),
        "active": active.to_dict(),
        "candidate": candidate.to_dict(),
    }
    return replace(decision, series=series)


def _allowed(points: float) -> str:
    """What a bound of ``points`` allows, in words ("no drop allowed" for 0, not "at most -0")."""
    return "no drop allowed" if points <= 0 else f"a drop of at most {points:g} allowed"
