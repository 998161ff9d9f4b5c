"""Positioning interviews inside Teller: the interview service, and briefs grounded in Teller's own
classifier, knowledge base and message log."""

from __future__ import annotations

import time
from pathlib import Path

from bot.assistant import build_policy, open_store
from bot.policy import AnswerPolicy, PolicyConfig, Route
from bot.settings import Settings
from nlu.artifact import metrics_of
from positioning.brief import BriefFiles, write_brief
from positioning.engine import COMPLETED, InterviewEngine
from positioning.errors import PositioningError
from positioning.evidence import LoggedExchange, gather
from positioning.scoring import Coverage, measured_quality, parse_needs, score
from positioning.script import DEFAULT_SCRIPT, load_script
from positioning.session import InterviewService
from positioning.store import InterviewStore


class PositioningDesk:
    """One per process: interviews for every PM, and their briefs."""

    def __init__(
        self, settings: Settings, policy: AnswerPolicy | None = None, script: Path = DEFAULT_SCRIPT
    ) -> None:
        self.settings = settings
        self.engine = InterviewEngine(load_script(script))
        self.service = InterviewService(self.engine, InterviewStore(settings.home / "positioning.db"))
        self._policy = policy

    @property
    def policy(self) -> AnswerPolicy:
        if self._policy is None:
            self._policy = build_policy(self.settings)
        return self._policy

    def brief_dir(self, interview_id: str) -> Path:
        return self.settings.home / "briefs" / interview_id

    def coverage(self, need: str) -> Coverage:
        """Put the need to Teller as if a customer had asked it."""
        signals = self.policy.signals([need])[0]
        decision = self.policy.decide(signals)
        if decision.route is Route.INTENT:
            return Coverage("intent", decision.intent, decision.kb_id, decision.confidence, True)
        if decision.route in (Route.FAQ, Route.ADVICE) and decision.kb_id:
            # An advice request answered with the compliant general information counts as met.
            hit = next((h for h in signals.hits if h.entry.id == decision.kb_id), None)
            return Coverage(decision.route.value, None, decision.kb_id, hit.score if hit else 0.0, True)
        return Coverage(decision.route.value, decision.intent, decision.kb_id, decision.confidence, False)

    def write_brief(self, interview_id: str, days: int = 30) -> BriefFiles:
        state = self.service.store.get(interview_id)
        if state.status != COMPLETED:
            raise PositioningError(f"interview {interview_id} is {state.status}; finish it first")
        answers = self.engine.answered(state)
        since = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - days * 86400))
        store = open_store(self.settings)
        try:
            rows = store.exchanges(since)
        finally:
            store.close()
        exchanges = [
            LoggedExchange(r["text"], r["route"] or "handoff", r["intent"], r["kb_id"], bool(r["flagged"]))
            for r in rows
        ]
        policy = self.policy
        evidence = gather(exchanges, f"last {days} days", embed=policy.kb.embedder.embed)
        per_intent = {
            s["intent"]: s["recall"] for s in metrics_of(policy.classifier.path).get("per_intent", [])
        }
        config = PolicyConfig.load(policy.classifier.path)
        held_out = config.calibration.get("held_out", {}) if config else {}
        right, wrong = held_out.get("faq_answered_correctly", 0.0), held_out.get("faq_answered_wrongly", 0.0)
        faq_accuracy = right / (right + wrong) if right + wrong else 0.0
        result = score(
            parse_needs(answers["needs"]),
            self.coverage,
            measured_quality(evidence, per_intent, faq_accuracy),
            int(answers["gap_size"]),
            int(answers["competitor_coverage"]),
        )
        return write_brief(self.brief_dir(interview_id), self.engine.script, answers, result, evidence)
