"""Retraining from operators' corrections, gated so that a worse model never ships.

The labelled corrections in the review queue (newest wins per text) go to :func:`nlu.retraining.retrain`,
which trains a candidate (by default it fine-tunes the active model further on the corrections,
with the base corpus replayed; "scratch" trains anew on the base corpus plus the corrections) and
compares it with the active model on the frozen evaluation set and on the corrections. Only a
candidate the gate accepts has its answer policy calibrated, is activated in the registry and is
swapped into the running core; any failure before that leaves the active model exactly as it was.
One run at a time (a lock in the models directory also keeps a terminal and the server from
retraining together).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bot.assistant import build_policy, calibrate_policy
from bot.review import ReviewService
from bot.settings import Settings
from nlu import ModelRegistry, NLUError
from nlu.corrections import Correction
from nlu.data import Corpus, Example
from nlu.retraining import MODES, RetrainBusy, RetrainResult, overall_progress, retrain
from retrieval.knowledge_base import KnowledgeBase

log = logging.getLogger(__name__)

#: ``progress(stage, fraction of the whole run)``.
Progress = Callable[[str, float], None]


@dataclass(frozen=True)
class RetrainOutcome:
    promoted: bool
    message: str
    result: RetrainResult | None = None
    error: str | None = None


class RetrainRunner:
    """Runs retrains for the CLI (in the foreground) and the server (in a background thread)."""

    def __init__(
        self,
        settings: Settings,
        review: ReviewService,
        swap: Callable[[], object] | None = None,
        kb: Callable[[], KnowledgeBase] | None = None,
        base_corpus: Corpus | Sequence[Example] | None = None,
    ) -> None:
        """``swap`` puts a promoted model into service; ``kb`` gives the knowledge base in use (the
        server's own, rather than opening a second one for calibration); ``base_corpus`` is what the
        corrections are added to (default: the corpus the active model was trained on)."""
        self.settings = settings
        self.base_corpus = base_corpus
        self.review = review
        self.swap = swap
        self.kb = kb
        self._thread: threading.Thread | None = None
        self._guard = threading.Lock()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def corrections(self) -> list[Correction]:
        """The corrections in force that carry an intent (answer corrections live in the KB)."""
        return [
            Correction(c.text, c.label, c.author, c.created_at, source_id=str(c.id))
            for c in self.review.corrections()
            if c.label
        ]

    def run(
        self,
        progress: Progress | None = None,
        stages: Callable[[str, int, int], None] | None = None,
        mode: str = "continue",
    ) -> RetrainOutcome:
        """Retrain, gate, and promote if the gate says so. Errors come back as an outcome.

        ``progress(stage, overall fraction)``, or ``stages(stage, done, total)`` per stage; ``mode``
        is the recipe (:data:`nlu.retraining.MODES`)."""
        started = time.perf_counter()
        try:
            result = retrain(
                self.settings.models,
                self.base_corpus,
                self.corrections(),
                tolerance_points=self.settings.retrain_tolerance,
                progress=stages or _overall(progress, mode),
                precision=self.settings.serving_precision,
                mode=mode,
            )
        except RetrainBusy as exc:
            return RetrainOutcome(False, f"Not started: {exc}.", error=str(exc))
        except NLUError as exc:
            log.error("retrain_failed", extra={"fields": {"error": str(exc)[:300]}})
            return RetrainOutcome(
                False, f"Retraining failed: {exc}. The active model is unchanged.", error=str(exc)
            )
        decision = result.decision
        figures = (
            f"frozen set ({decision.frozen_size}): {decision.active_frozen_accuracy:.2%} -> "
            f"{decision.candidate_frozen_accuracy:.2%} ({decision.frozen_change_points:+.2f} points, "
            f"tolerance {decision.tolerance_points:g}); corrections ({decision.corrections_size}): "
            f"{_pct(decision.active_corrections_accuracy)} -> {_pct(decision.candidate_corrections_accuracy)}"
        )
        version = result.candidate.info.version
        if not result.promote:
            log.info("retrain_refused", extra={"fields": {"candidate": version, "reasons": decision.reasons}})
            return RetrainOutcome(
                False,
                f"Kept {result.active_version}; candidate {version} was not promoted: "
                f"{'; '.join(decision.reasons)}. {figures}.",
                result,
            )
        if progress is not None:
            progress("calibrate", 0.98)
        try:
            self._promote(version)
        except Exception as exc:
            log.error("promotion_failed", extra={"fields": {"candidate": version, "error": repr(exc)[:300]}})
            return RetrainOutcome(
                False,
                f"Candidate {version} passed the gate but could not be promoted ({exc}); "
                f"{result.active_version} stays active.",
                result,
                error=str(exc),
            )
        minutes = (time.perf_counter() - started) / 60
        log.info("retrain_promoted", extra={"fields": {"candidate": version, "minutes": round(minutes, 2)}})
        return RetrainOutcome(
            True,
            f"Promoted {version} (was {result.active_version}) after {minutes:.1f} min. {figures}.",
            result,
        )

    def start(
        self,
        progress: Progress | None = None,
        done: Callable[[RetrainOutcome], None] | None = None,
        mode: str = "continue",
    ) -> bool:
        """Run in a background thread; False (and nothing started) if one is running already."""
        with self._guard:
            if self.running:
                return False

            def work() -> None:
                outcome = self.run(progress, mode=mode)
                if done is not None:
                    done(outcome)

            self._thread = threading.Thread(target=work, name="teller-retrain", daemon=True)
            self._thread.start()
            return True

    def wait(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _promote(self, version: str) -> None:
        """Calibrate the candidate's policy (as ``teller train`` does), activate it, swap it in."""
        registry = ModelRegistry(self.settings.models)
        policy = build_policy(
            self.settings,
            version,
            kb=self.kb() if self.kb else None,
            calibrate_if_missing=False,
            stored_thresholds=False,
        )
        calibrate_policy(policy, registry.path(version))
        registry.activate(version)
        if self.swap is not None:
            self.swap()


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2%}"


def _overall(progress: Progress | None, mode: str) -> Callable[[str, int, int], None] | None:
    if progress is None or mode not in MODES:
        return None
    return overall_progress(lambda stage, fraction: progress(stage, min(fraction, 0.97)), mode)
