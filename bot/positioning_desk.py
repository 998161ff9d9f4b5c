"""Positioning interviews inside Teller: the interview service, briefs grounded in Teller's own
classifier, knowledge base and message log, and the interview as a chat (Slack DMs).

In a chat, a product manager's interview is keyed by channel and user (``slack:U123``), so the
terminal's interviews and each PM's stay apart. Buttons carry values of the form
``iv:<interview>:<question>:<answer>`` (or ``iv:<interview>:back|skip``): a button pressed on an old
prompt is recognised and the PM is shown the current question instead of answering the wrong one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bot.assistant import build_policy, open_store
from bot.choices import INTERVIEW_PREFIX, Choice, interview_value
from bot.core import Incoming, MultiSelect, Outgoing
from bot.policy import AnswerPolicy, PolicyConfig, Route
from bot.settings import Settings
from bot.storage import Store
from nlu.artifact import metrics_of
from positioning.brief import BriefFiles, write_brief
from positioning.engine import ACTIVE, COMPLETED, InterviewEngine, InterviewState, Prompt
from positioning.errors import PositioningError
from positioning.evidence import LoggedExchange, gather
from positioning.scoring import Coverage, PositioningScore, measured_quality, parse_needs, score
from positioning.script import DEFAULT_SCRIPT, load_script
from positioning.session import InterviewService, Reply

log = logging.getLogger(__name__)

INTERVIEW_ROUTE = "interview"
INTERVIEW_USAGE = (
    "`/teller interview` starts your interview or resumes the one in progress, in a direct message.\n"
    "`/teller interview new` starts another one; `/teller interview list` shows yours; "
    "`/teller interview resume ID` picks one up.\n"
    "`/teller interview status | back | skip | edit N | pause | cancel` act on the one in progress.\n"
    "`/teller brief ID` posts the brief of a finished interview again.\n"
    "While an interview is in progress (and not paused), your direct messages to Teller are its answers."
)


@dataclass(frozen=True)
class WrittenBrief:
    files: BriefFiles
    score: PositioningScore


class PositioningDesk:
    """One per process: interviews for every PM, and their briefs."""

    def __init__(
        self,
        settings: Settings,
        policy: AnswerPolicy | Callable[[], AnswerPolicy] | None = None,
        store: Store | None = None,
        script: Path = DEFAULT_SCRIPT,
    ) -> None:
        self.settings = settings
        self.engine = InterviewEngine(load_script(script))
        self._own_store = store is None
        self.store = store or open_store(settings)
        self.service = InterviewService(self.engine, self.store.interviews)
        self._policy = policy

    @property
    def policy(self) -> AnswerPolicy:
        """The answer policy in use (followed through a callable when the model can be swapped)."""
        if self._policy is None:
            self._policy = build_policy(self.settings)
        return self._policy() if callable(self._policy) else self._policy

    def close(self) -> None:
        if self._own_store:
            self.store.close()

    def brief_dir(self, interview_id: str) -> Path:
        return self.settings.home / "briefs" / interview_id

    # ------------------------------------------------------------------------------ briefs

    def coverage(self, need: str) -> Coverage:
        """Put the need to Teller as if a customer had asked it."""
        policy = self.policy
        signals = policy.signals([need])[0]
        decision = policy.decide(signals)
        if decision.route is Route.INTENT:
            return Coverage("intent", decision.intent, decision.kb_id, decision.confidence, True)
        if decision.route in (Route.FAQ, Route.ADVICE) and decision.kb_id:
            # An advice request answered with the compliant general information counts as met.
            hit = next((h for h in signals.hits if h.entry.id == decision.kb_id), None)
            return Coverage(decision.route.value, None, decision.kb_id, hit.score if hit else 0.0, True)
        return Coverage(decision.route.value, decision.intent, decision.kb_id, decision.confidence, False)

    def write_brief(self, interview_id: str, days: int = 30, user_id: str | None = None) -> WrittenBrief:
        """Score the interview against Teller and the last ``days`` of its log; write the brief."""
        state = self.service.store.get(interview_id, user_id)
        if state.status != COMPLETED:
            raise PositioningError(f"interview {interview_id} is {state.status}; finish it first")
        answers = self.engine.answered(state)
        since = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - days * 86400))
        exchanges = [
            LoggedExchange(e.text, e.route or "handoff", e.intent, e.kb_id, e.flagged)
            for e in self.store.conversations.exchanges(since)
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
        files = write_brief(self.brief_dir(interview_id), self.engine.script, answers, result, evidence)
        # The files are this replica's; the database keeps every brief for any replica and for later.
        self.store.interviews.record_brief(
            interview_id, state.user_id, days, files.markdown.read_text(encoding="utf-8"), result.to_dict()
        )
        return WrittenBrief(files, result)

    # ------------------------------------------------------------------------------ chat

    @staticmethod
    def user_key(channel: str, user_id: str) -> str:
        return f"{channel}:{user_id}"

    def may_interview(self, channel: str, user_id: str) -> bool:
        """Only the product managers of ``TELLER_PRODUCT_MANAGERS`` (empty: nobody) run interviews
        in a chat; briefs quote customers' messages. The terminal (``teller interview``) does not
        ask: it is an operator's."""
        return self.user_key(channel, user_id) in self.settings.product_manager_ids

    def refusal(self, channel: str, user_id: str, what: str = "Positioning interviews") -> Outgoing:
        """What someone who may not interview is told (and the attempt logged)."""
        log.warning("interview_refused", extra={"fields": {"channel": channel, "user_id": user_id}})
        if not self.settings.product_manager_ids:
            return self._notice(
                f"{what} are limited to product managers, and none are set up yet: "
                "TELLER_PRODUCT_MANAGERS is empty. Ask an admin to add your Slack user id to it."
            )
        return self._notice(
            f"{what} are limited to product managers; ask an admin to add you to TELLER_PRODUCT_MANAGERS."
        )

    def wants(self, incoming: Incoming) -> bool:
        """Is this private message for the sender's interview (a pressed interview button, or any
        text while an interview is in progress and not paused)?"""
        if incoming.text.startswith(INTERVIEW_PREFIX):
            return True
        if not self.may_interview(incoming.channel, incoming.user_id):
            return False
        state = self.service.store.active_for(self.user_key(incoming.channel, incoming.user_id))
        return state is not None and not state.paused

    def replay(self, incoming: Incoming) -> Outgoing | None:
        """The reply this platform message got when it was applied to an interview before (a
        redelivery, or a retry that reached another replica), marked ``duplicate``; None if new."""
        if not incoming.message_id:
            return None
        kept = self.store.interviews.turn(incoming.channel, incoming.message_id)
        return replace(_from_dict(kept), duplicate=True, turn=turn_id(incoming)) if kept else None

    def converse(self, incoming: Incoming) -> Outgoing:
        """An answer, a command or a pressed button, applied to the sender's interview. The reply
        is kept with the platform message's id, so a redelivery gets it again (:meth:`replay`)
        instead of being applied twice."""
        if not self.may_interview(incoming.channel, incoming.user_id):
            return self.refusal(incoming.channel, incoming.user_id)  # an interview button, pressed
        key = self.user_key(incoming.channel, incoming.user_id)
        text = incoming.text.strip()
        try:
            if text.startswith(INTERVIEW_PREFIX):
                reply = self._pressed(key, text.removeprefix(INTERVIEW_PREFIX))
            else:
                reply = self._chat_reply(key, self.service.handle(key, text))
        except PositioningError as exc:
            reply = self._notice(str(exc))
        if not incoming.message_id:
            return reply
        kept = self.store.interviews.remember_turn(
            incoming.channel, incoming.message_id, key, _to_dict(reply)
        )
        return replace(_from_dict(kept), turn=turn_id(incoming))

    def command(self, channel: str, user_id: str, args: str) -> Outgoing:
        """``/teller interview [args]``."""
        if not self.may_interview(channel, user_id):
            return self.refusal(channel, user_id)
        key = self.user_key(channel, user_id)
        word, _, rest = args.strip().partition(" ")
        word = word.lower()
        try:
            if word in ("", "start"):
                return self._chat_reply(key, self.service.start_or_resume(key))
            if word == "new":
                return self._chat_reply(key, self.service.start_or_resume(key, new=True))
            if word == "resume":
                if not rest.strip():
                    return self._chat_reply(key, self.service.start_or_resume(key))
                return self._chat_reply(key, self.service.resume(key, rest.strip()))
            if word == "list":
                return self._notice(self.list_text(key))
            if word == "status" and self.service.store.active_for(key) is None:
                return self._notice("No interview in progress.\n" + self.list_text(key))
            if word in ("status", "back", "skip", "edit", "pause", "cancel"):
                return self._chat_reply(key, self.service.handle(key, args.strip()))
        except PositioningError as exc:
            return self._notice(str(exc))
        return self._notice(f"Unknown interview command `{word}`.\n{INTERVIEW_USAGE}")

    def brief_reply(self, channel: str, user_id: str, interview_id: str, days: int = 30) -> Outgoing:
        """``/teller brief ID``: the brief of one of the user's finished interviews, written afresh."""
        if not self.may_interview(channel, user_id):
            return self.refusal(channel, user_id, "Positioning briefs")
        try:
            return self._brief_outgoing(self.user_key(channel, user_id), interview_id.strip(), days)
        except PositioningError as exc:
            return self._notice(str(exc))

    def list_text(self, key: str) -> str:
        states = self.service.store.for_user(key)
        if not states:
            return "You have no interviews yet: `/teller interview` starts one."
        lines = ["Your interviews (most recent first):"]
        for s in states[:20]:
            where = self.engine.prompt(s)
            detail = where.progress if where and s.status == ACTIVE else s.status
            paused = ", paused" if s.paused and s.status == ACTIVE else ""
            answers = len(self.engine.answered(s))
            lines.append(f"• `{s.id}`: {detail}{paused}, {answers} answers, {s.updated_at}")
        return "\n".join(lines)

    # ------------------------------------------------------------------------------ internals

    def _pressed(self, key: str, value: str) -> Outgoing:
        interview_id, _, rest = value.partition(":")
        state = self.service.store.get(interview_id, key)
        if rest in ("back", "skip"):
            return self._chat_reply(key, self.service.handle(key, rest, interview_id=interview_id))
        question, _, answer = rest.partition(":")
        if state.status != ACTIVE or state.current != question:
            prompt = self.engine.prompt(state)
            if prompt is None:
                return self._notice(f"Interview {interview_id} is {state.status}; that button has expired.")
            return self._prompt_outgoing(
                state, prompt, "That button belongs to an earlier question. The current one:"
            )
        return self._chat_reply(key, self.service.handle(key, answer, interview_id=interview_id))

    def _chat_reply(self, key: str, reply: Reply) -> Outgoing:
        state = reply.state
        if state.status == COMPLETED and reply.turn is not None and reply.turn.finished:
            log.info("interview_completed", extra={"fields": {"interview": state.id}})
            try:
                return self._brief_outgoing(key, state.id, 30, intro=f"Interview {state.id} is complete.")
            except PositioningError as exc:
                return self._notice(
                    f"Interview {state.id} is complete, but the brief could not be written: {exc}. "
                    f"`/teller brief {state.id}` tries again."
                )
        prompt = reply.turn.prompt if reply.turn is not None else None
        if prompt is None or state.status != ACTIVE or state.paused:
            return self._notice(reply.text, state)
        # The service's text is the plain-text prompt, possibly after an error or a "resuming" line;
        # a chat shows the prompt with buttons instead, keeping whatever came before it.
        plain = prompt.render()
        lead = reply.text[: reply.text.rfind(plain)].strip() if plain in reply.text else ""
        return self._prompt_outgoing(state, prompt, lead)

    def _prompt_outgoing(self, state: InterviewState, prompt: Prompt, lead: str = "") -> Outgoing:
        q = prompt.question
        number = [x.id for x in self.engine.script.ordered()].index(q.id) + 1
        body = prompt.render(progress=False, options=False)
        if q.type == "text" or q.type == "number":
            body += "\n_Reply with your answer._"
        elif q.type == "list":
            body += "\n_Reply with one item per line._"
        base = interview_value(state.id, f"{q.id}:")
        choices: list[Choice] = []
        multi = None
        if q.type == "choice":
            choices = [Choice(option, f"{base}{i}") for i, option in enumerate(q.options, start=1)]
        elif q.type == "multi":
            multi = MultiSelect(
                tuple(Choice(option, str(i)) for i, option in enumerate(q.options, start=1)), "Submit", base
            )
        elif q.type == "scale" and q.minimum is not None and q.maximum is not None:
            low, high = int(q.minimum), int(q.maximum)
            if high - low <= 10:
                choices = [Choice(str(v), f"{base}{v}") for v in range(low, high + 1)]
        if state.history and state.history[0] != q.id:
            choices.append(Choice("« Back", interview_value(state.id, "back")))
        if not q.required:
            choices.append(Choice("Skip »", interview_value(state.id, "skip")))
        return Outgoing(
            f"{state.id}:{len(state.history)}:{q.id}",
            f"{lead}\n\n{body}".strip() if lead else body,
            tuple(choices),
            route=INTERVIEW_ROUTE,
            note=f"{prompt.progress.capitalize()}: {prompt.step_title} · question {number} · "
            f"interview {state.id}",
            multi_select=multi,
            threaded=False,
        )

    def _brief_outgoing(self, key: str, interview_id: str, days: int, intro: str = "") -> Outgoing:
        brief = self.write_brief(interview_id, days, user_id=key)
        s = brief.score
        text = (
            f"{intro}\n*Positioning = P(D|U) x M = {s.p_d_given_u:.2f} x {s.m:.2f} = {s.score:.2f}*\n"
            f"Brief of interview {interview_id}: needs met {sum(n.coverage.answered for n in s.needs)}"
            f" of {len(s.needs)}; the Markdown brief and its evidence chart are attached."
        ).strip()
        files = (brief.files.markdown,) + ((brief.files.chart,) if brief.files.chart else ())
        return Outgoing(
            f"{interview_id}:brief",
            text,
            route=INTERVIEW_ROUTE,
            note=f"Interview {interview_id} · `/teller brief {interview_id}` writes it again",
            attachments=files,
            threaded=False,
        )

    def _notice(self, text: str, state: InterviewState | None = None) -> Outgoing:
        text = text[:1].upper() + text[1:]
        return Outgoing(
            f"{state.id if state else 'interview'}:notice:{time.monotonic_ns()}",
            text,
            route=INTERVIEW_ROUTE,
            threaded=False,
        )


def turn_id(incoming: Incoming) -> str:
    """The id an interview reply's delivery is recorded under: one per platform message."""
    return f"iv:{incoming.channel}:{incoming.message_id}"


def _to_dict(reply: Outgoing) -> dict[str, Any]:
    """An interview reply as JSON, to give a redelivered message the same reply."""
    multi = reply.multi_select
    return {
        "message_id": reply.message_id,
        "text": reply.text,
        "choices": [[c.label, c.value] for c in reply.choices],
        "route": reply.route,
        "note": reply.note,
        "multi_select": None
        if multi is None
        else {
            "options": [[o.label, o.value] for o in multi.options],
            "submit_label": multi.submit_label,
            "submit_prefix": multi.submit_prefix,
        },
        "attachments": [str(p) for p in reply.attachments],
        "threaded": reply.threaded,
    }


def _from_dict(data: dict[str, Any]) -> Outgoing:
    multi = data.get("multi_select")
    return Outgoing(
        data["message_id"],
        data["text"],
        tuple(Choice(label, value) for label, value in data.get("choices", [])),
        route=data.get("route", INTERVIEW_ROUTE),
        note=data.get("note"),
        multi_select=None
        if multi is None
        else MultiSelect(
            tuple(Choice(label, value) for label, value in multi["options"]),
            multi["submit_label"],
            multi["submit_prefix"],
        ),
        attachments=tuple(Path(p) for p in data.get("attachments", []) if Path(p).exists()),
        threaded=bool(data.get("threaded", False)),
    )
