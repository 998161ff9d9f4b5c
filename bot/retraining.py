"""Retraining from operators' corrections, gated so that a worse model never ships.

The labelled corrections in the review queue (newest wins per text) go to :func:`nlu.retraining.retrain`,
which trains a candidate (by default it fine-tunes the active model further on the corrections,
with the base corpus replayed; "scratch" trains anew on the base corpus plus the corrections) and
compares it with the active model on the frozen evaluation set and on the corrections, and with
the best model of its series on the frozen set (``TELLER_RETRAIN_DRIFT``, the cumulative bound). Only a
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
from typing import Any

from bot.assistant import activate_model, build_policy, calibrate_policy
from bot.review import ReviewService
from bot.settings import Settings
from bot.storage import AuditAction, Database, Job, JobRepository, JobStatus
from bot.storage.database import Lease
from nlu import ModelRegistry, NLUError
from nlu.corrections import Correction
from nlu.data import Corpus, Example
from nlu.retraining import MODES, RetrainBusy, RetrainResult, overall_progress, retrain
from retrieval.knowledge_base import KnowledgeBase

log = logging.getLogger(__name__)

#: ``progress(stage, fraction of the whole run)``.
Progress = Callable[[str, float], None]


#: The cluster-wide lock a retrain holds (:meth:`bot.storage.Database.try_lock`).
RETRAIN_LOCK = "teller-retrain"
#: Who a retrain nobody named runs as, in the audit log.
SYSTEM_ACTOR = "system:retrain"
BUSY = "Not started: another retrain is running (on this or another process)."


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
        lease: Lease | None = None,
        actor: str | None = None,
    ) -> RetrainOutcome:
        """Retrain, gate, and promote if the gate says so. Errors come back as an outcome.

        ``progress(stage, overall fraction)``, or ``stages(stage, done, total)`` per stage; ``mode``
        is the recipe (:data:`nlu.retraining.MODES`); ``lease``: the caller's hold of
        :data:`RETRAIN_LOCK` (a worker takes it before it claims a job), else it is taken here.
        ``actor`` (default ``system:retrain``) is who asked for it: the audit log gets a ``retrain``
        entry when it starts and one with its outcome, and the promotion an ``activation``."""
        started = time.perf_counter()
        who = actor or SYSTEM_ACTOR
        if lease is not None:
            return self._audited(who, mode, lambda: self._run(started, progress, stages, mode, lease, who))
        # One retrain at a time across the cluster (the registry's own file lock covers one host).
        own = self.review.store.database.try_lock(RETRAIN_LOCK)
        if own is None:
            return RetrainOutcome(False, BUSY, error=BUSY)
        try:
            return self._audited(who, mode, lambda: self._run(started, progress, stages, mode, own, who))
        finally:
            own.release()

    def _audited(self, actor: str, mode: str, run: Callable[[], RetrainOutcome]) -> RetrainOutcome:
        """Run a retrain between its two audit entries (``stage``: started, then its outcome)."""
        audit = self.review.store.audit
        audit.record_after(actor, AuditAction.RETRAIN, None, {"stage": "started", "mode": mode})
        outcome = run()
        result = outcome.result
        stage = "promoted" if outcome.promoted else "failed" if outcome.error is not None else "refused"
        details: dict[str, Any] = {"stage": stage, "mode": mode}
        if result is not None:
            details |= {"version": result.candidate.info.version, "active": result.active_version}
            details["reasons"] = list(result.decision.reasons)
        if outcome.error is not None:
            details["error"] = outcome.error[:300]
        version = details.get("version")
        audit.record_after(actor, AuditAction.RETRAIN, f"model:{version}" if version else None, details)
        return outcome

    def _run(
        self,
        started: float,
        progress: Progress | None,
        stages: Callable[[str, int, int], None] | None,
        mode: str,
        lease: Lease,
        actor: str = SYSTEM_ACTOR,
    ) -> RetrainOutcome:
        try:
            result = retrain(
                self.settings.models,
                self.base_corpus,
                self.corrections(),
                tolerance_points=self.settings.retrain_tolerance,
                progress=stages or _overall(progress, mode),
                precision=self.settings.serving_precision,
                mode=mode,
                drift_points=self.settings.retrain_drift,
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
        d = decision
        if d.cumulative_change_points is not None:
            bound = f"bound {d.drift_points:g}" if d.drift_points is not None else "no bound"
            figures += (
                f"; against the best of the series ({d.baseline_version}, "
                f"{_pct(d.baseline_frozen_accuracy)}): {d.cumulative_change_points:+.2f} points ({bound})"
            )
        if d.relabelled_size:
            figures += (
                f"; relabelled frozen messages ({d.relabelled_size}): "
                f"{_pct(d.active_relabelled_accuracy)} -> {_pct(d.candidate_relabelled_accuracy)}"
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
        if not lease.alive():
            # The database session holding the lock is gone (a restart, a network cut): another
            # retrain may be running by now; promoting this candidate could undo its promotion.
            log.error("retrain_lock_lost", extra={"fields": {"candidate": version}})
            return RetrainOutcome(
                False,
                f"Candidate {version} passed the gate but was not promoted: the retrain lock was lost "
                f"(database connection); {result.active_version} stays active. Activate it with "
                f"`teller models activate {version}` if no other retrain ran.",
                result,
                error="retrain lock lost",
            )
        try:
            self._promote(version, actor)
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
        actor: str | None = None,
    ) -> bool:
        """Run in a background thread; False (and nothing started) if one is running already."""
        with self._guard:
            if self.running:
                return False

            def work() -> None:
                outcome = self.run(progress, mode=mode, actor=actor)
                if done is not None:
                    done(outcome)

            self._thread = threading.Thread(target=work, name="teller-retrain", daemon=True)
            self._thread.start()
            return True

    def wait(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _promote(self, version: str, actor: str = SYSTEM_ACTOR) -> None:
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
        activate_model(self.settings, version, actor=actor, store=self.review.store)
        if self.swap is not None:
            self.swap()


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2%}"


def _overall(progress: Progress | None, mode: str) -> Callable[[str, int, int], None] | None:
    if progress is None or mode not in MODES:
        return None
    return overall_progress(lambda stage, fraction: progress(stage, min(fraction, 0.97)), mode)


class QueuedRetrain:
    """The server's side of retraining on ``teller worker`` (``TELLER_RETRAIN_IN=worker``): the same
    ``running``/``start`` as :class:`RetrainRunner`, but a start enqueues a job in the database and
    a thread here follows it, reporting its progress and outcome; web replicas never train."""

    def __init__(
        self, jobs: JobRepository, database: Database, actor: str | None = None, poll: float = 3.0
    ) -> None:
        self.jobs = jobs
        self.database = database
        self.actor = actor
        self.poll = poll

    @property
    def running(self) -> bool:
        """A retrain is queued or running. A job marked running whose worker no longer holds the
        retrain lock (the worker died mid-run) is failed here, so it cannot block retraining."""
        active = self.jobs.active(RETRAIN_JOB)
        if any(j.status is JobStatus.RUNNING for j in active):
            lease = self.database.try_lock(RETRAIN_LOCK)
            if lease is not None:  # nobody is retraining: jobs still marked running lost their worker
                try:
                    for job in self.jobs.active(RETRAIN_JOB):  # read again: one may have finished
                        if job.status is JobStatus.RUNNING:
                            result = {"message": ORPHANED, "error": ORPHANED}
                            self.jobs.finish(job.id, False, result, only_running=True)
                            log.warning(
                                "retrain_job_orphaned",
                                extra={"fields": {"job": job.id, "worker": job.worker}},
                            )
                finally:
                    lease.release()
                active = self.jobs.active(RETRAIN_JOB)
        return bool(active)

    def start(
        self,
        progress: Progress | None = None,
        done: Callable[[RetrainOutcome], None] | None = None,
        mode: str = "continue",
        actor: str | None = None,
    ) -> bool:
        if self.running:
            return False
        job = self.jobs.enqueue(RETRAIN_JOB, {"mode": mode}, actor or self.actor)

        def follow() -> None:
            last: dict[str, Any] | None = None
            while True:
                time.sleep(self.poll)
                try:
                    current = self.jobs.get(job.id)
                except Exception as exc:  # the database briefly unreachable
                    log.error(
                        "retrain_job_unknown", extra={"fields": {"job": job.id, "error": repr(exc)[:300]}}
                    )
                    continue
                if current.status in (JobStatus.DONE, JobStatus.FAILED):
                    result = current.result or {}
                    if done is not None:
                        done(
                            RetrainOutcome(
                                bool(result.get("promoted")),
                                str(result.get("message", "")),
                                None,
                                result.get("error"),
                            )
                        )
                    return
                if progress is not None and current.result and current.result != last:
                    last = current.result
                    progress(str(last.get("stage", "training")), float(last.get("fraction", 0.0)))

        threading.Thread(target=follow, name=f"teller-retrain-job-{job.id}", daemon=True).start()
        return True


#: The job kind ``teller worker`` runs.
RETRAIN_JOB = "retrain"


#: What a retrain job whose worker died says.
ORPHANED = "The worker running this retrain stopped before it finished; the active model is unchanged."


def work_one(jobs: JobRepository, runner: RetrainRunner, worker: str, database: Database) -> Job | None:
    """Claim the oldest queued retrain and run it here; None if there was none, or another retrain
    holds the cluster's retrain lock. The lock is taken before the claim and held to the end, so a
    job marked running always has a live holder (see :attr:`QueuedRetrain.running`)."""
    lease = database.try_lock(RETRAIN_LOCK)
    if lease is None:
        return None
    try:
        job = jobs.claim(worker, (RETRAIN_JOB,))
        if job is None:
            return None
        return _work(jobs, runner, worker, job, lease)
    finally:
        lease.release()


def _work(jobs: JobRepository, runner: RetrainRunner, worker: str, job: Job, lease: Lease) -> Job:
    log.info("retrain_job_started", extra={"fields": {"job": job.id, "worker": worker}})
    last = [0.0]

    def report(stage: str, fraction: float) -> None:
        if fraction - last[0] >= 0.02 or fraction >= 1.0:
            last[0] = fraction
            jobs.report(job.id, {"stage": stage, "fraction": round(fraction, 4)})

    try:
        mode = str(job.params.get("mode", "continue"))
        outcome = runner.run(report, mode=mode, lease=lease, actor=job.requested_by)
    except Exception as exc:  # a bug must not kill the worker: the job fails, the worker goes on
        log.error("retrain_job_crashed", extra={"fields": {"job": job.id, "error": repr(exc)[:300]}})
        outcome = RetrainOutcome(False, f"Retraining failed: {exc!r}", error=repr(exc))
    finished = jobs.finish(
        job.id,
        outcome.error is None,
        {"promoted": outcome.promoted, "message": outcome.message, "error": outcome.error},
    )
    log.info("retrain_job_finished", extra={"fields": {"job": job.id, "promoted": outcome.promoted}})
    return finished
