"""Positioning interviews inside Teller: the interview service, briefs grounded in Teller's own
classifier, knowledge base and message log, and the interview as a chat (Slack DMs).

A product manager's answers are redacted where Teller receives them (:class:`RedactingInterviewService`,
the service every front end drives: the terminal, Slack): a card number, e-mail address or phone
number pasted into an answer never reaches the interview's stored state, its replies or the brief.

In a chat, a product manager's interview is keyed by channel and user (``slack:U123``), so the
terminal's interviews and each PM's stay apart. Buttons carry values of the form
``iv:<interview>:<question>:<answer>`` (or ``iv:<interview>:back|skip``): a button pressed on an old
prompt is recognised and the PM is shown the current question instead of answering the wrong one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bot.assistant import build_policy, open_store
from bot.choices import INTERVIEW_PREFIX, Choice, interview_value, is_choice
from bot.core import INTERVIEW_TURN, TERMINAL_CHANNEL, Incoming, MultiSelect, Outgoing
from bot.policy import AnswerPolicy
from bot.privacy.redaction import redact, scan
from bot.settings import Settings
from bot.storage import Store
from positioning.brief import BriefExtras, BriefFiles, brief_lock, escape_markdown, put_markdown, write_brief
from positioning.engine import ACTIVE, COMPLETED, InterviewEngine, InterviewState, Prompt, Suggestion
from positioning.errors import PositioningError
from positioning.evidence import LoggedExchange, gather, intent_words
from positioning.needs import ADVICE as ROUTE_ADVICE
from positioning.needs import (
    CONFIRMED,
    EDITED,
    ROUTES,
    Candidate,
    KnownIds,
    Need,
    NeedLink,
    Vectors,
    advice_resolutions,
    format_link,
    merge_links,
    parse_link,
    parse_needs,
    parse_resolutions,
    suggest_links,
    with_coverage,
)
from positioning.options import Option, OptionSpec, Scored, compare, option_target, parse_options
from positioning.outcomes import Outcomes, judge
from positioning.rules import TELLER_ADVICE_RULE, Rules, product_rules
from positioning.scoring import PositioningScore, parse_market_override, score
from positioning.script import DEFAULT_SCRIPT, load_script
from positioning.segments import choose_target, excluded_by_persona, map_persona, seen_segments
from positioning.session import InterviewService, Reply, parse_command, parse_start
from positioning.session import answers as answers_count
from positioning.trend import TREND_RUNS, run_of

log = logging.getLogger(__name__)

INTERVIEW_ROUTE = "interview"
INTERVIEW_USAGE = (
    "`/teller interview` starts your interview or resumes the one in progress, in a direct message.\n"
    "`/teller interview new` starts another one; `/teller interview quick` (or `new quick`) asks at "
    "most 12 questions, Teller's own figures prefilled; `/teller interview list` shows yours; "
    "`/teller interview resume ID` picks one up.\n"
    "`/teller interview status | back | skip | edit N | pause | cancel` act on the one in progress.\n"
    "`/teller brief ID` posts the brief of a finished interview again; `/teller brief ID compare "
    "Name: need | 5; need | 3 || Other: need | 4; u=retail` scores other options beside it "
    "(`u=` an option's own target users: segments or channels of the log, or `u=everyone`).\n"
    "While an interview is in progress (and not paused), your direct messages to Teller are its answers."
)


#: Answers that refine the brief when an interview has them (see :meth:`PositioningDesk.write_brief`).
OPTIONAL_ANSWERS = ("need_coverage", "need_links", "resolution", "market_match")


#: The answer types a product manager types freely, and so may paste personal data into: redacted.
#: Numbers, scales and choices are parsed into a figure or one of the script's options (redacting
#: "12345678" would turn a count into ``[ACCOUNT]``).
FREE_TEXT = ("text", "list")


class RedactingInterviewService(InterviewService):
    """The interview service as Teller runs it: an answer to a free-text question (:data:`FREE_TEXT`)
    is redacted (:func:`bot.privacy.redaction.scan`, as customers' messages are) before the engine
    reads it, so what is checked, stored (``interviews.state``), shown back and written into the
    brief is the redacted text. Commands (``back``, ``edit 3``, ...) and answers to other questions
    pass as typed. Each redaction is logged (``interview_answer_redacted``: interview, question and
    the kinds found, never the values)."""

    def handle(self, user_id: str, text: str, interview_id: str | None = None) -> Reply:
        """:meth:`InterviewService.handle` with ``text`` redacted when it answers a free-text
        question. Raises what that raises (:class:`PositioningError`: no interview in progress).
        The user's lock is held from the decision to the store: a message handled meanwhile cannot
        move the interview on to a free-text question the text would then answer unredacted."""
        with self._lock(user_id):
            return super().handle(user_id, self.redacted(user_id, text, interview_id), interview_id)

    def redacted(self, user_id: str, text: str, interview_id: str | None = None) -> str:
        """``text`` as the interview should take it: redacted if it answers the current question of
        the user's interview (``interview_id``, else the one in progress) and that question is
        free text; as given otherwise (a command, another type, no such interview)."""
        if parse_command(text, self.engine.script) is not None:
            return text
        try:
            state = self.store.get(interview_id, user_id) if interview_id else self.store.active_for(user_id)
        except PositioningError:
            return text  # handle() says so
        prompt = self.engine.prompt(state) if state is not None else None
        if state is None or prompt is None or prompt.question.type not in FREE_TEXT:
            return text
        found = scan(text)
        if found.findings:
            log.info(
                "interview_answer_redacted",
                extra={
                    "fields": {
                        "interview": state.id,
                        "question": prompt.question.id,
                        "kinds": sorted({f.kind for f in found.findings}),
                    }
                },
            )
        return found.text


def redacted_answers(answers: dict[str, Any]) -> dict[str, Any]:
    """``answers`` with every text (and every text item of a list) redacted: what a brief renders,
    so that an interview stored before answers were redacted on receipt
    (:class:`RedactingInterviewService`) does not carry personal data into it. Figures stay."""

    def clean(value: Any) -> Any:
        if isinstance(value, str):
            return redact(value)
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    return {key: clean(value) for key, value in answers.items()}


@dataclass(frozen=True)
class WrittenBrief:
    files: BriefFiles
    score: PositioningScore
    #: The options scored side by side (the interview's own first among them), best first; empty
    #: when none were asked for.
    comparison: tuple[Scored, ...] = ()


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
        #: Days of customer messages the interview's suggestions look at.
        self.suggest_days = 30
        self.engine = InterviewEngine(load_script(script), suggest=self.suggest, known=self.known_ids)
        self._own_store = store is None
        self.store = store or open_store(settings)
        self.service: InterviewService = RedactingInterviewService(
            self.engine, self.store.interviews, defaults=self.measured_figures
        )
        self._policy = policy

    def measured_figures(self) -> dict[str, Any]:
        """Teller's own figures for an interview (:func:`measured_defaults`), containment judged
        with the knowledge base's encoder as the brief judges it (without it when it cannot load)."""
        try:
            embed: Vectors | None = Vectors(self.policy.kb.embedder.embed)
        except Exception:  # information only: without the encoder, a repeat in other words goes unseen
            log.warning("interview_encoder_unavailable", exc_info=True)
            embed = None
        return measured_defaults(self.settings, self.store, self.suggest_days, embed)

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
        return self.settings.briefs_dir / interview_id

    # ------------------------------------------------------------------------------ briefs

    def known_ids(self) -> KnownIds:
        """What a need's link may name: the intents of the classifier in service, the ids of the
        knowledge base's entries, and Teller's routes (:data:`positioning.needs.ROUTES`). Read from
        the answer policy each time (the model or the knowledge base may have changed)."""
        policy = self.policy
        return KnownIds(
            frozenset(policy.classifier.labels),
            frozenset(e.id for e in policy.kb.entries()),
            frozenset(ROUTES),
        )

    def probe(self, need: str) -> list[Candidate]:
        """Teller's top candidates for a need's wording, as if a customer had asked it: the
        classifier's three likeliest intents (probabilities) and the knowledge base's three best
        entries (fused scores)."""
        signals = self.policy.signals([need])[0]
        found = [Candidate("intent", i, p, "classifier") for i, p in signals.prediction.alternatives[:3]]
        return found + [Candidate("kb", h.entry.id, h.score, "retrieval") for h in signals.hits[:3]]

    def advice_worded(self, need: str) -> bool:
        """Is the need worded as a request for advice ("investment advice", "理财建议")? Teller's
        own advice signal on the wording: the answer policy would route it as advice, or its
        similarity to the advice phrasings reaches the policy's advice threshold (a need is a noun
        phrase more often than a question, so the what-to-do test is not required). False when the
        policy cannot tell (no thresholds, or it cannot load)."""
        try:
            policy = self.policy
            signals = policy.signals([need])[0]
            if policy.thresholds is None:
                return False
            if policy.decide(signals).route.value == ROUTE_ADVICE:
                return True
            return bool(signals.advice_score >= policy.thresholds.advice)
        except Exception:  # a suggestion only: without the signal, no advice route is suggested
            log.warning("advice_signal_unavailable", exc_info=True)
            return False

    def logged_exchanges(self, since: str) -> list[LoggedExchange]:
        """Every customer message since ``since`` (ISO time) with Teller's reply, who asked (the
        conversation), when, on which channel and segment (as a bank's backend named it), whether the
        reply was flagged or thumbed down, and
        whether a handoff was opened for it (read through the conversation repository's database;
        the store has no query of this shape yet)."""
        return logged_exchanges(self.store, since)

    def suggest(self, key: str, answers: dict[str, Any]) -> Suggestion | None:
        """The interview's suggestions (the engine's ``suggest``): for ``links``, what serves each
        need of the ``needs`` answer, from :func:`positioning.needs.suggest_links` over the last
        :attr:`suggest_days` days of the log, one ``need | intent:..., kb:...`` line per need with
        the reasons as its note (only ids Teller still knows, :meth:`known_ids`); for ``segments``,
        the target users' segments (:meth:`suggest_segments`).
        None for anything else."""
        since = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - self.suggest_days * 86400))
        if key == "segments":
            return self.suggest_segments(str(answers.get("target_users") or ""), self.logged_exchanges(since))
        if key != "links" or not answers.get("needs"):
            return None
        needs = parse_needs(answers["needs"])
        exchanges = self.logged_exchanges(since)
        vectors = Vectors(self.policy.kb.embedder.embed)
        known = self.known_ids()
        links = [
            # An entry answered in the log may have left the knowledge base since: not suggested.
            replace(
                link,
                intents=tuple(i for i in link.intents if i in known.intents),
                kb_ids=tuple(k for k in link.kb_ids if k in known.kb_ids),
                why=tuple(
                    w
                    for w in link.why
                    if not any(w.startswith(f"entry {k}:") for k in set(link.kb_ids) - known.kb_ids)
                    and not any(
                        w.startswith(f"intent {intent_words(i)}:") for i in set(link.intents) - known.intents
                    )
                ),
            )
            for link in suggest_links(
                [n.text for n in needs], self.probe, exchanges, vectors, advice=self.advice_worded
            )
        ]
        why = [f"{link.need}: {', '.join(link.why)}" for link in links if link.why]
        nothing = [link.need for link in links if link.empty]
        note = "why: " + "; ".join(why) if why else ""
        if nothing:
            note += ("; " if note else "") + "nothing in Teller fits " + ", ".join(nothing)
        return Suggestion([format_link(link) for link in links], note or None)

    def suggest_segments(self, persona: str, exchanges: list[LoggedExchange]) -> Suggestion | None:
        """The segments and channels seen in ``exchanges`` (most messages first) that the persona
        names, else all of them; the note lists every one with its messages. None without traffic."""
        seen = seen_segments(exchanges)
        if not seen:
            return None
        names = [name for name, _ in seen.most_common()]
        named = map_persona(persona, names)
        excluded = excluded_by_persona(persona, names)
        others = [name for name in names if name not in excluded]
        counts = ", ".join(f"{name} ({count} messages)" for name, count in seen.most_common())
        if named:
            why = "the persona names " + ", ".join(named)
        elif excluded and others:
            why = (
                f"the persona excludes {', '.join(excluded)} and names none of the others: they are suggested"
            )
        else:
            why = "the persona names none of them, so all are suggested (U = everyone)"
        suggested = named or (others if excluded and others else names)
        return Suggestion(suggested, f"seen in the last {self.suggest_days} days: {counts}; {why}")

    def measure(
        self, needs: list[Need], answers: dict[str, Any], exchanges: list[LoggedExchange], vectors: Vectors
    ) -> tuple[list[NeedLink], Outcomes]:
        """What serves each need (Teller's suggestion, replaced by the PM's links in the
        ``need_links`` answer, if any: ``confirmed`` when they are the suggestion, else ``edited``)
        and the measured outcomes (resolution rules from the ``resolution`` answer, if any)."""
        suggested = suggest_links(
            [n.text for n in needs], self.probe, exchanges, vectors, advice=self.advice_worded
        )
        by_need = {s.need.lower(): s for s in suggested}
        given = []
        for line in answers.get("need_links") or []:
            link = parse_link(line)
            was = by_need.get(link.need.lower())
            same = was is not None and (set(was.intents), set(was.kb_ids), set(was.routes)) == (
                set(link.intents),
                set(link.kb_ids),
                set(link.routes),
            )
            given.append(replace(link, status=CONFIRMED if same else EDITED))
        links = merge_links(suggested, given)
        # A need linked to the advice route is resolved by the suggested outcome unless the PM
        # said otherwise (an advice reply alone is a refusal).
        rules = advice_resolutions(links, parse_resolutions(answers.get("resolution") or []))
        return links, judge(exchanges, links, rules, vectors)

    def write_brief(
        self,
        interview_id: str,
        days: int = 30,
        user_id: str | None = None,
        options: Sequence[OptionSpec] = (),
    ) -> WrittenBrief:
        """Score the interview against the last ``days`` of Teller's log; write the brief.

        Needs come from the ``needs`` answer (``need | importance [| competitor coverage]``);
        optional answers refine it when the interview asks them: ``need_coverage`` (``need | 1-5``),
        ``need_links`` (``need | intent:..., kb:...``), ``resolution`` (``need | outcome=...``) and
        ``market_match`` (``0.8 | source``). The brief also shows the trend since the last
        :data:`~positioning.trend.TREND_RUNS` briefs of the interview (kept in the store), launch
        checks against :func:`measured_defaults`, recommendations within Teller's rules
        (:data:`~positioning.rules.TELLER_ADVICE_RULE` and the PM's own), and, with ``options``
        (:func:`positioning.options.parse_option`), those options scored beside the interview's on
        the same log. P(D|U), the interview's and every option's, is over the target users
        (:func:`positioning.segments.choose_target`; an option's own ``u=``,
        :func:`positioning.options.option_target`) when they have conversations of the needs,
        else over all traffic (:func:`positioning.scoring.score`). Raises :class:`PositioningError`
        when the interview is not finished or an answer or option does not parse.
        """
        state = self.service.store.get(interview_id, user_id)
        if state.status != COMPLETED:
            raise PositioningError(f"interview {interview_id} is {state.status}; finish it first")
        answers = self.engine.answered(state)
        # Answers the script does not ask (yet) but an interview may carry (set by another front end).
        answers.update(
            {
                k: state.answers[k]
                for k in OPTIONAL_ANSWERS
                if k in state.answers and k not in self.engine.script.questions
            }
        )
        # Redacted on receipt since; an interview stored before is redacted here, for the brief.
        answers = redacted_answers(answers)
        since = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - days * 86400))
        exchanges = self.logged_exchanges(since)
        policy = self.policy
        vectors = Vectors(policy.kb.embedder.embed)
        overall = answers.get("competitor_coverage")
        needs = with_coverage(
            parse_needs(answers["needs"]),
            answers.get("need_coverage") or [],
            int(overall) if overall is not None else None,
        )
        links, outcomes = self.measure(needs, answers, exchanges, vectors)
        override = answers.get("market_match")
        m_override = parse_market_override(str(override)) if override else None
        rules = product_rules(answers, (TELLER_ADVICE_RULE,))
        seen = [name for name, _ in seen_segments(exchanges).most_common()]
        target = choose_target(answers, seen)
        result = score(needs, outcomes, m_override, rules, target)
        comparison: list[Scored] = []
        if options:
            own = Option(
                "as interviewed",
                tuple(needs),
                tuple(links),
                advice_resolutions(links, parse_resolutions(answers.get("resolution") or [])),
                m_override,
                rules,
                target,
            )
            others = [
                replace(
                    self._option(o, needs, links, answers, exchanges, vectors, rules),
                    target=option_target(o, seen, target),
                )
                for o in options
            ]
            comparison = compare([own, *others], exchanges, vectors)
        history = [run_of(b.written_at, b.score) for b in self.store.interviews.briefs(interview_id)]
        try:
            measured = measured_defaults(self.settings, self.store, days)
        except Exception:  # the launch checks then say "not measured"; the brief is written anyway
            log.warning("brief_measured_figures_failed", exc_info=True)
            measured = {}
        # Containment is one figure, whatever the needs and their rules: each conversation judged
        # by the default rule (answered, not flagged, no person, not asked again), as the
        # interview's prefill measures it; an adviser booked by the button is a person.
        contained = judge(exchanges, [], embed=vectors).resolved
        if contained.trials:
            measured["containment"] = round(100 * (contained.value or 0.0), 1)
            measured["containment_n"] = contained.trials
        now = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + "Z"
        # What customers asked is their own words: pressed buttons are outcomes, not questions.
        asked = customers_words(exchanges)
        evidence = gather(
            asked,
            f"last {days} days",
            embed=vectors,
            unresolved=customers_words(outcomes.unresolved),
            resolved=contained,
            need_of=outcomes.need_of,
        )
        directory = self.brief_dir(interview_id)
        # The customers' messages the brief may quote: any erased or past retention while it was
        # being written lose their quotes before the row is stored, and then from the files (held
        # meanwhile, so an erasure's file rewrite comes after; bot.privacy.briefs).
        quoted = {e.message_id: e.text for e in asked if e.message_id}
        with brief_lock(directory):
            files = write_brief(
                directory,
                self.engine.script,
                answers,
                result,
                evidence,
                extras=BriefExtras(
                    history[-TREND_RUNS:], now, measured, rules, tuple(comparison), asked=tuple(asked)
                ),
            )
            text = files.markdown.read_text(encoding="utf-8")
            shown = {i: t for i, t in quoted.items() if escape_markdown(t) in text}
            # The files are this replica's; the database keeps every brief for any replica and for later.
            stored = self.store.interviews.record_brief(
                interview_id, state.user_id, days, text, result.to_dict(), quoted=shown
            )
            if stored.markdown != text:
                put_markdown(directory, stored.markdown)
        return WrittenBrief(files, result, tuple(comparison))

    def _option(
        self,
        spec: OptionSpec,
        needs: list[Need],
        links: list[NeedLink],
        answers: dict[str, Any],
        exchanges: list[LoggedExchange],
        vectors: Vectors,
        rules: Rules,
    ) -> Option:
        """An option to score beside the interview's: a need the interview lists keeps its links,
        competitor coverage (unless the option rates it) and resolution rule; a new need gets
        Teller's suggested links and the overall competitor rating."""
        known = {n.text.lower(): n for n in needs}
        link_of = {link.need.lower(): link for link in links}
        rated = []
        for n in spec.needs:
            base = known.get(n.text.lower())
            if n.competitor_coverage is None and base is not None and base.competitor_coverage is not None:
                n = replace(
                    n, competitor_coverage=base.competitor_coverage, coverage_source=base.coverage_source
                )
            rated.append(n)
        overall = answers.get("competitor_coverage")
        rated = with_coverage(rated, (), int(overall) if overall is not None else None)
        unrated = [n.text for n in rated if n.competitor_coverage is None]
        if unrated and spec.m_override is None:  # the quick interview rates each need, no overall
            raise PositioningError(
                f"option {spec.name!r}: rate competitors' coverage of {', '.join(unrated)} in the "
                "option ('need | importance | coverage 1-5'), or enter M ('m=0.8 | source')"
            )
        new = [n.text for n in rated if n.text.lower() not in link_of]
        suggested = (
            {
                s.need.lower(): s
                for s in suggest_links(new, self.probe, exchanges, vectors, advice=self.advice_worded)
            }
            if new
            else {}
        )
        option_links = [
            replace(link_of[n.text.lower()], need=n.text)
            if n.text.lower() in link_of
            else suggested[n.text.lower()]
            for n in rated
        ]
        rules_of = {k.lower(): r for k, r in parse_resolutions(answers.get("resolution") or []).items()}
        resolutions = {n.text: rules_of[n.text.lower()] for n in rated if n.text.lower() in rules_of}
        resolutions = advice_resolutions(option_links, resolutions)
        return Option(spec.name, tuple(rated), tuple(option_links), resolutions, spec.m_override, rules)

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
        return self.service.takes(state, incoming.text)

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
            start = parse_start(args)
            if start is not None:
                return self._chat_reply(
                    key, self.service.start_or_resume(key, new=start.new, mode=start.mode)
                )
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
        """``/teller brief ID``: the brief of one of the user's finished interviews, written afresh.
        ``ID compare Name: need | 5; need | 3 || Other: ...`` scores those options beside it
        (:func:`positioning.options.parse_options`)."""
        if not self.may_interview(channel, user_id):
            return self.refusal(channel, user_id, "Positioning briefs")
        interview_id, _, rest = interview_id.strip().partition(" ")
        word, _, spec = rest.strip().partition(" ")
        try:
            if rest.strip() and word.lower() not in ("compare", "options", "--option"):
                raise PositioningError(
                    f"`/teller brief {interview_id} {rest.strip()}`: expected `/teller brief ID` or "
                    "`/teller brief ID compare Name: need | 5; need | 3 || Other: need | 4`"
                )
            options = parse_options(spec) if rest.strip() else []
            if rest.strip() and not options:
                raise PositioningError(
                    "compare what? e.g. `compare Service first: track a card | 5; fees | 4`"
                )
            return self._brief_outgoing(self.user_key(channel, user_id), interview_id, days, options=options)
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
            lines.append(f"• `{s.id}`: {detail}{paused}, {answers_count(answers)}, {s.updated_at}")
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
        number = prompt.number
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
        if (
            q.suggest
            and q.type == "list"
            and prompt.suggestion is not None
            and prompt.previous_answer is None
        ):
            choices.append(Choice("Confirm Teller's suggestion", f"{base}ok"))
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

    def _brief_outgoing(
        self, key: str, interview_id: str, days: int, intro: str = "", options: Sequence[OptionSpec] = ()
    ) -> Outgoing:
        brief = self.write_brief(interview_id, days, user_id=key, options=options)
        s = brief.score
        p = "no traffic" if s.p_d_given_u is None else f"{s.p_d_given_u:.2f}"
        m = "not measured" if s.m is None else f"{s.m:.2f}"
        total = "not measurable yet" if s.score is None else f"{s.score:.2f}"
        target = f"\n{s.p_scope}" if s.p_scope else ""
        met = sum(n.measured and (n.satisfaction.value or 0.0) >= 0.5 for n in s.needs)
        under = [n.need for n in s.needs if n.under_served]
        text = (
            f"{intro}\n*Positioning = P(D|U) x M = {p} x {m} = {total}*{target}\n"
            f"Brief of interview {interview_id}: needs met (at least half their conversations resolved) "
            f"{met} of {len(s.needs)}, {sum(not n.measured for n in s.needs)} without traffic"
            + (f"; under-served: {', '.join(under)}" if under else "")
            + "; the brief (Markdown, and one HTML file to share) and its charts are attached."
        ).strip()
        if brief.comparison:
            text += "\n*Options side by side* (same log, best first):\n" + "\n".join(
                f"• {s.option.name}: positioning "
                + ("not measurable" if s.result.score is None else f"{s.result.score:.2f}")
                + f" = P(D|U) {_term(s.result.p_d_given_u)} ({s.result.p_over}) x M {_term(s.result.m)}"
                for s in brief.comparison
            )
        files = (
            brief.files.markdown,
            *((brief.files.html,) if brief.files.html else ()),
            *brief.files.charts,
        )
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


def logged_exchanges(store: Store, since: str) -> list[LoggedExchange]:
    """See :meth:`PositioningDesk.logged_exchanges`."""
    from sqlalchemy import exists, select

    from bot.storage import schema

    m, f, g, h = schema.messages, schema.feedback, schema.flags, schema.handoffs
    asked = m.alias("i")
    flagged = exists().where(f.c.message_id == m.c.id, f.c.helpful == 0) | exists().where(
        g.c.message_id == m.c.id
    )
    handed = exists().where(h.c.message_id == m.c.id)
    rows = store.conversations.db.rows(
        select(
            asked.c.id.label("message_id"),
            asked.c.text,
            asked.c.conversation_id,
            asked.c.channel,
            asked.c.segment,
            asked.c.created_at,
            m.c.id.label("reply_id"),
            m.c.route,
            m.c.intent,
            m.c.kb_id,
            flagged.label("flagged"),
            handed.label("handed_off"),
        )
        .join(asked, m.c.reply_to == asked.c.id)
        .where(m.c.direction == "out", m.c.created_at >= since)
        .order_by(m.c.created_at, m.c.id)
    )
    outcomes = store.outcomes.of_messages(r["reply_id"] for r in rows)  # business outcomes (issue #16)
    return [
        LoggedExchange(
            r["text"] or "",
            r["route"] or "handoff",
            r["intent"],
            r["kb_id"],
            bool(r["flagged"]),
            customer=str(r["conversation_id"] or ""),
            at=_seconds(r["created_at"]),
            handed_off=bool(r["handed_off"]),
            channel=str(r["channel"] or ""),
            segment=r["segment"],
            outcomes=outcomes.get(r["reply_id"], frozenset()),
            pressed=is_choice((r["text"] or "").strip()),
            message_id=str(r["message_id"] or ""),
        )
        for r in rows
    ]


def customers_words(exchanges: Sequence[LoggedExchange]) -> list[LoggedExchange]:
    """The messages a customer wrote: a pressed button (``handoff``, ``intent:...``, feedback;
    :func:`bot.choices.is_choice`) is not an utterance, so it stays out of what customers asked and
    of the candidate needs clustered from it."""
    return [e for e in exchanges if not is_choice(e.text.strip())]


def _term(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _seconds(stamp: str | None) -> float:
    """An ISO 8601 UTC time from the store (``2026-11-30T08:15:02.123456Z``) in seconds since the epoch."""
    if not stamp:
        return 0.0
    from datetime import datetime

    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def turn_id(incoming: Incoming) -> str:
    """The id an interview reply's delivery is recorded under: one per platform message (its prefix
    is one of :data:`bot.core.TELLER_TURNS`)."""
    return f"{INTERVIEW_TURN}{incoming.channel}:{incoming.message_id}"


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


def measured_defaults(
    settings: Settings, store: Store, days: int = 30, embed: Vectors | None = None
) -> dict[str, Any]:
    """Teller's own figures, to prefill an interview's technical questions (keys of the script's
    ``prefill``): ``model_version`` (the active model, its encoder, precision and intents),
    ``accuracy`` (% on the model's held-out dev set), and over the last ``days`` of customer
    messages ``latency_ms`` (95th percentile of Teller's replies) and ``containment`` (% of the
    customers' conversations resolved without a person, as the brief measures it:
    :data:`positioning.summary.CONTAINMENT_MEANS`, judged by :func:`positioning.outcomes.judge`;
    ``containment_n`` the conversations; ``embed`` lets it catch a question asked again in other
    words). A figure that cannot be had is left out. The interview shows the figures beside the
    PM's targets; only facts (the model) are prefilled.
    """
    import numpy as np
    from sqlalchemy import select

    from bot.assistant import active_version
    from bot.storage import schema
    from nlu.artifact import metrics_of, read_info
    from nlu.errors import NLUError
    from nlu.registry import ModelRegistry

    figures: dict[str, Any] = {}
    try:
        version = active_version(settings, store)
        if version:
            path = ModelRegistry(settings.models).path(version)
            info = read_info(path)
            figures["model_version"] = (
                f"{version} ({info.base_encoder}, {info.precision}, {info.num_labels} intents)"
            )
            accuracy = metrics_of(path).get("accuracy")
            if isinstance(accuracy, (int, float)):
                figures["accuracy"] = round(float(accuracy) * 100, 1)
    except NLUError:
        pass
    since = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() - days * 86400))
    m = schema.messages
    latencies = [
        r["latency_ms"]
        for r in store.database.rows(
            select(m.c.latency_ms).where(
                m.c.direction == "out",
                m.c.created_at >= since,
                m.c.author.is_(None),
                m.c.latency_ms.is_not(None),
                # `teller chat` is an operator trying Teller out, its first reply with the CLI's
                # cold start (a trial: one 2.2 s reply failed the brief's latency launch check)
                m.c.channel != TERMINAL_CHANNEL,
            )
        )
    ]
    if latencies:
        figures["latency_ms"] = round(float(np.percentile(latencies, 95)), 1)
    outcomes = judge(logged_exchanges(store, since), [], embed=embed)
    if outcomes.resolved.trials:
        figures["containment"] = round(100 * (outcomes.resolved.value or 0.0), 1)
        figures["containment_n"] = outcomes.resolved.trials
    return figures
