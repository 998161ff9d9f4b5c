"""The interview engine: a pure state machine. Feed it an answer (or a command), get the next prompt.

Nothing here touches storage or a chat platform: every call takes an :class:`InterviewState` and
returns a new one, so the caller saves it wherever it likes after every step.
"""

from __future__ import annotations

import copy
import json
import logging
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from positioning.errors import InterviewClosed, PositioningError
from positioning.formats import check_items, item_names, numbered
from positioning.needs import KnownIds
from positioning.script import FULL as FULL  # re-exported: the modes an interview runs in
from positioning.script import QUICK as QUICK
from positioning.script import Question, Script

log = logging.getLogger(__name__)

ACTIVE, COMPLETED, CANCELLED = "active", "completed", "cancelled"
_LIST_SPLIT = re.compile(r"\n|;")
#: How a list with a ``format`` splits: by line only (its items may hold ";").
_LINES = re.compile(r"\n")
#: A bullet or a number a pasted list item starts with ("- ", "• ", "3. ", "3) "); not part of the item.
_BULLET = re.compile(r"^(?:[-*\u2022\u00b7\u2013]|\d{1,2}[.)])\s+")
#: What keeps a prefilled (or current) answer: an empty line in the terminal, "ok" anywhere.
KEEP_WORDS = ("", "ok", "okay")


def timestamp() -> str:
    """UTC, ISO 8601, to the millisecond (interviews are ordered by it)."""
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z"


@dataclass
class InterviewState:
    """Everything about one interview; JSON-serialisable through :meth:`to_dict`."""

    id: str
    user_id: str
    script_id: str
    status: str = ACTIVE
    answers: dict[str, Any] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    current: str | None = None
    #: Questions shown so far, in order; "back" walks it backwards.
    history: list[str] = field(default_factory=list)
    #: Set by "pause": a chat stops treating the user's messages as answers until they resume.
    paused: bool = False
    #: ``full`` or ``quick`` (the short interview): which of the script's questions are asked.
    mode: str = FULL
    #: The caller's figures that prefill questions (``model_version``, ``accuracy``, ...), as given.
    defaults: dict[str, Any] = field(default_factory=dict)
    #: A command waiting for the user's confirmation (``cancel``), else None.
    pending: str | None = None
    #: The caller's suggestions shown so far, per question id: ``{"basis": the answers they were
    #: worked out from, "value": ..., "note": ...}`` (worked out again when those answers change).
    suggested: dict[str, dict[str, Any]] = field(default_factory=dict)
    created_at: str = field(default_factory=timestamp)
    updated_at: str = field(default_factory=timestamp)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InterviewState:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


@dataclass(frozen=True)
class Prompt:
    """What to ask next, and where the interview stands."""

    question: Question
    step_number: int
    step_count: int
    step_title: str
    previous_answer: Any = None
    #: The question's number in this interview (as ``edit N`` takes it) and how many it asks.
    number: int = 0
    count: int = 0
    #: What "ok" (or an empty line) answers: the current answer of a prefilled question, else the
    #: caller's figure; None for questions that are not prefilled.
    suggestion: Any = None
    #: Where the suggestion comes from (the question's ``prefill_note``, or the note of the caller's
    #: suggestion), if it is the caller's.
    suggestion_note: str | None = None
    #: The items of the question's ``per`` question (the needs a line names), numbered from 1.
    names: tuple[str, ...] = ()
    #: The caller's figure shown beside a target as information (the question's ``measured``), and
    #: what it is; never what an empty answer gives (that is "no target stated").
    measured: Any = None
    measured_note: str | None = None

    @property
    def takes_empty(self) -> bool:
        """Does an empty answer mean something here: keep the answer shown, or (an optional
        question showing a measured figure) state none?"""
        return self.suggestion is not None or (
            self.question.measured is not None and not self.question.required
        )

    @property
    def progress(self) -> str:
        return f"step {self.step_number} of {self.step_count}"

    @property
    def multiline(self) -> bool:
        """Does the answer take several lines (a list: one item per line)?"""
        return self.question.type == "list"

    def render(self, progress: bool = True, options: bool = True) -> str:
        """Plain text for a terminal or a chat message. A chat that shows the progress and the
        options as widgets of its own leaves them out of the text."""
        q = self.question
        lines = [f"[{self.progress}: {self.step_title}] {q.prompt}" if progress else q.prompt]
        if q.help:
            lines.append(f"({q.help})")
        if q.type in ("choice", "multi") and options:
            lines += [f"  {i}. {option}" for i, option in enumerate(q.options, start=1)]
            lines.append(
                "Answer with a number" + (" or several, separated by commas." if q.type == "multi" else ".")
            )
        elif q.type == "scale" and options:
            lines.append(f"Answer {q.minimum:g} to {q.maximum:g}.")
        elif q.type == "list":
            lines.append("One item per line" + ("." if q.format else " (or separated by ';')."))
        if self.names:
            lines.append(f"The needs: {numbered(self.names)} (a line may start with the number).")
        lines_of = q.format is not None and q.type == "list"
        if self.previous_answer is not None:
            if lines_of and isinstance(self.previous_answer, list):
                lines += ["Current answer:", *(f"  {x}" for x in self.previous_answer)]
            else:
                lines.append(f"Current answer: {format_answer(self.previous_answer)}")
        if self.measured is not None:
            note = f" ({self.measured_note})" if self.measured_note else ""
            lines.append(f"For information, Teller measures: {format_answer(self.measured)}{note}.")
        if self.question.measured is not None and self.suggestion is None:
            lines.append("Type your target, or press Enter (or 'skip') to state none.")
        if self.suggestion is not None:
            if self.previous_answer is None:
                if lines_of and isinstance(self.suggestion, list):
                    lines += ["Teller suggests:", *(f"  {x}" for x in self.suggestion)]
                    if self.suggestion_note:
                        lines.append(f"({self.suggestion_note})")
                else:
                    note = f" ({self.suggestion_note})" if self.suggestion_note else ""
                    lines.append(f"Prefilled from Teller: {format_answer(self.suggestion)}{note}.")
            if lines_of:
                lines.append(
                    "Type ok (or press Enter) to confirm it, or type lines of your own "
                    "(the needs you leave out keep Teller's suggestion)."
                    if q.suggest
                    else "Type ok (or press Enter) to keep it, or type lines of your own."
                )
            else:
                lines.append("Type ok (or press Enter) to keep it, or type a new value.")
        if not q.required:
            lines.append("Optional: 'skip' moves on.")
        return "\n".join(lines)


@dataclass(frozen=True)
class Turn:
    """The outcome of one call: the new state, the next prompt (None when finished), and any error."""

    state: InterviewState
    prompt: Prompt | None
    error: str | None = None

    @property
    def finished(self) -> bool:
        return self.state.status != ACTIVE


def format_answer(value: Any) -> str:
    if isinstance(value, list):
        return "; ".join(str(v) for v in value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@dataclass(frozen=True)
class Suggestion:
    """What the caller suggests as a question's answer (``value``, in the answer's typed form: a
    list of lines for a list question), and why (``note``, shown with it)."""

    value: Any
    note: str | None = None


#: The caller's suggestions: ``(question's suggest key, the answers so far) -> Suggestion`` (None:
#: nothing to suggest). Called when a question with ``suggest`` is reached.
Suggest = Callable[[str, dict[str, Any]], Suggestion | None]


class InterviewEngine:
    """Runs interviews of one script. ``suggest`` works out the answers Teller suggests for the
    questions with a ``suggest`` key (e.g. the links of each need); as with ``defaults``, "ok" or
    Enter keeps the suggestion. A suggestion that fails is left out (the question is asked plainly).
    """

    def __init__(
        self,
        script: Script,
        suggest: Suggest | None = None,
        known: Callable[[], KnownIds | None] | None = None,
    ) -> None:
        self.script = script
        self.suggest = suggest
        #: What a ``need_link`` answer may name (the classifier's intents, the knowledge base's
        #: entries, Teller's routes), asked for only when such a question is answered; None, or a
        #: call that fails: ids are not checked (routes still are).
        self.known = known

    def known_ids(self, question: Question) -> KnownIds | None:
        """The ids ``question``'s answer may name, from the caller (None when it names none, or the
        caller cannot say: the answer is then checked without them)."""
        if question.format != "need_link" or self.known is None:
            return None
        try:
            return self.known()
        except Exception:  # the model or knowledge base cannot be read: accept ids unchecked
            log.warning(
                "interview_known_ids_failed", extra={"fields": {"question": question.id}}, exc_info=True
            )
            return None

    # ---------------------------------------------------------------------------------- queries

    def applicable(self, question: Question, answers: dict[str, Any]) -> bool:
        return question.when is None or question.when.holds(answers)

    def questions(self, state: InterviewState) -> list[Question]:
        """The questions the interview's mode asks, in order (``edit N`` numbers them so)."""
        return self.script.ordered(state.mode)

    def prompt(self, state: InterviewState) -> Prompt | None:
        if state.status != ACTIVE or state.current is None:
            return None
        q = self.script.question(state.current)
        step = self.script.step_of[q.id]
        ids = [x.id for x in self.questions(state)]
        previous = state.answers.get(q.id)
        default = self.default(state, q)
        note = q.prefill_note
        if q.measured is not None and previous is not None:
            default = previous  # a target stated earlier is kept with "ok", like any current answer
        if default is None and q.measured is None:
            kept = state.suggested.get(q.id)
            if kept is not None and kept.get("value") not in (None, "", []):
                default, note = kept["value"], kept.get("note")
        if q.required_for(state.mode) and not q.required:
            q = replace(q, required=True)  # as this interview asks it (e.g. every need's rating)
        return Prompt(
            q,
            step + 1,
            len(self.script.steps),
            self.script.steps[step].title,
            previous,
            number=ids.index(q.id) + 1 if q.id in ids else 0,
            count=len(ids),
            suggestion=(previous if previous is not None else default) if default is not None else None,
            suggestion_note=note if default is not None and previous is None else None,
            names=tuple(self.names(state.answers, q) or ()),
            measured=self._measured(state, q),
            measured_note=self._measured_note(state, q),
        )

    def _measured(self, state: InterviewState, question: Question) -> Any:
        key = question.measured
        return state.defaults.get(key) if key is not None and state.defaults.get(key) != "" else None

    def _measured_note(self, state: InterviewState, question: Question) -> str | None:
        """The ``measured_note``, with how many conversations the figure rests on when the caller
        says (``<key>_n``)."""
        if question.measured is None or self._measured(state, question) is None:
            return None
        n = state.defaults.get(f"{question.measured}_n")
        count = f"{n} conversation{'s' if n != 1 else ''}" if isinstance(n, int) else ""
        return "; ".join(x for x in (question.measured_note, count) if x) or None

    def names(self, answers: dict[str, Any], question: Question) -> list[str] | None:
        """The items a per-need question's lines may name (its ``per`` answer's names), or None."""
        if question.per is None:
            return None
        items = answers.get(question.per)
        return item_names(items) if isinstance(items, list) else None

    def default(self, state: InterviewState, question: Question) -> Any:
        """The caller's figure for ``question`` (by its ``prefill`` key, else its id), if any."""
        for key in (question.prefill, question.id):
            if key is not None and state.defaults.get(key) not in (None, ""):
                return state.defaults[key]
        return None

    def answered(self, state: InterviewState) -> dict[str, Any]:
        """The answers that count: those of questions the mode asks that still apply, in order."""
        return {
            q.id: state.answers[q.id]
            for q in self.questions(state)
            if q.id in state.answers and self.applicable(q, state.answers)
        }

    # ---------------------------------------------------------------------------------- transitions

    def start(
        self, interview_id: str, user_id: str, mode: str = FULL, defaults: dict[str, Any] | None = None
    ) -> Turn:
        """A new interview in ``mode`` (``full`` or ``quick``). ``defaults`` are the caller's own
        figures (e.g. ``{"model_version": "v7", "accuracy": 93.9, "latency_ms": 12, "containment":
        61}``): a question whose ``prefill`` names one shows it, and "ok" keeps it."""
        self._check_mode(mode)
        state = InterviewState(
            interview_id, user_id, self.script.id, mode=mode, defaults=dict(defaults or {})
        )
        return self._advance(state)

    def set_mode(self, state: InterviewState, mode: str, defaults: dict[str, Any] | None = None) -> Turn:
        """Carry on in another mode: every answer is kept (those the mode does not ask stop counting
        until the interview switches back); the next question is the mode's first unanswered one."""
        self._check_active(state)
        self._check_mode(mode)
        new = self._copy(state)
        new.mode = mode
        new.pending = None
        if defaults:
            new.defaults = {**defaults, **new.defaults}
        return self._advance(new)

    def answer(self, state: InterviewState, raw: Any) -> Turn:
        """Validate ``raw`` for the current question; on success move on, else say what is wrong.
        For a prefilled question, "ok" or nothing keeps the answer shown."""
        self._check_active(state)
        question = self.script.question(state.current or "")
        prompt = self.prompt(state)
        if prompt is not None and prompt.suggestion is not None and _keeps(raw):
            raw = prompt.suggestion
        elif question.measured is not None and not question.required and _empty(raw):
            return self.skip(state)  # no target stated (the figure shown is not the answer)
        elif question.type == "list" and _only_ok(raw) and (prompt is None or prompt.suggestion is None):
            # "ok" confirms what is shown; with nothing shown it is not an item of the list.
            if not question.required:
                return self.skip(state)
            return Turn(
                state, self.prompt(state), "there is nothing to keep yet: type the items, one per line"
            )
        repeated = self._listed_twice(state, question)
        if repeated:  # an answer kept from before lists were checked: no line could ever pass
            return Turn(state, self.prompt(state), repeated)
        try:
            value = parse_answer(question, raw, self.names(state.answers, question), self.known_ids(question))
        except ValueError as exc:  # the state is unchanged: the same question, with the reason
            return Turn(state, self.prompt(state), str(exc))
        missing = self._unnamed(state, question, value)
        if missing:
            return Turn(state, self.prompt(state), f"please give a line for every need; missing: {missing}")
        new = self._copy(state)
        new.answers[question.id] = value
        if question.id in new.skipped:
            new.skipped.remove(question.id)
        self._recheck(new, question.id)
        return self._advance(new)

    def _recheck(self, state: InterviewState, changed: str) -> None:
        """Drop the answers that name the items of ``changed`` and no longer fit them (a need
        renamed or removed): the interview asks them again."""
        for q in self.script.questions.values():
            if q.per != changed or q.id not in state.answers:
                continue
            try:
                parse_answer(q, state.answers[q.id], self.names(state.answers, q))
            except ValueError:
                del state.answers[q.id]

    def _listed_twice(self, state: InterviewState, question: Question) -> str:
        """For a per-item question whose list (``per``) names an item twice (an answer stored before
        lists were checked for it), what to tell the PM: which item, and the ``edit`` that fixes
        the list; empty otherwise."""
        if question.per is None or not isinstance(state.answers.get(question.per), list):
            return ""
        try:
            _check_unique(state.answers[question.per])
        except ValueError as exc:
            ids = [q.id for q in self.questions(state)]
            number = ids.index(question.per) + 1 if question.per in ids else question.per
            return f"the answer to question {number} ({question.per}): {exc}; type edit {number} to fix it"
        return ""

    def _unnamed(self, state: InterviewState, question: Question, value: Any) -> str:
        """The needs (numbered) a per-need answer leaves out when this interview requires every
        one (``required_in``); empty otherwise."""
        names = self.names(state.answers, question)
        if not names or state.mode not in question.required_in or not isinstance(value, list):
            return ""
        given = {str(line).rpartition("|")[0].strip().lower() for line in value}
        return "; ".join(f"{i}. {n}" for i, n in enumerate(names, start=1) if n.lower() not in given)

    def skip(self, state: InterviewState) -> Turn:
        self._check_active(state)
        question = self.script.question(state.current or "")
        if question.required_for(state.mode):
            repeated = self._listed_twice(state, question)
            return Turn(
                state,
                self.prompt(state),
                repeated or "this question is required; it cannot be skipped",
            )
        new = self._copy(state)
        new.answers.pop(question.id, None)
        if question.id not in new.skipped:
            new.skipped.append(question.id)
        return self._advance(new)

    def back(self, state: InterviewState) -> Turn:
        """Return to the question asked before the current one (its answer is kept until replaced)."""
        self._check_active(state)
        new = self._copy(state)
        position = new.history.index(new.current) if new.current in new.history else len(new.history)
        asked = {q.id for q in self.questions(new)}
        candidates = [
            q
            for q in new.history[:position]
            if q in asked and self.applicable(self.script.question(q), new.answers)
        ]
        if not candidates:
            return Turn(state, self.prompt(state), "this is the first question")
        new.current = candidates[-1]
        self._suggest_current(new)
        return Turn(new, self.prompt(new))

    def edit(self, state: InterviewState, question_ref: str) -> Turn:
        """Jump to an earlier question by id or number; after it, the interview resumes where it was."""
        if state.status == CANCELLED:
            raise InterviewClosed(f"interview {state.id} was cancelled")
        question = self._resolve(question_ref, state)
        if question is None or question.id not in state.history:
            numbers = {q.id: i for i, q in enumerate(self.questions(state), start=1)}
            asked = ", ".join(f"{numbers[q]}. {q}" for q in state.history if q in numbers)
            return Turn(
                state, self.prompt(state), f"no question {question_ref!r} has been asked yet ({asked})"
            )
        new = self._copy(state)
        new.status = ACTIVE
        new.current = question.id
        self._suggest_current(new)
        return Turn(new, self.prompt(new))

    def cancel(self, state: InterviewState) -> Turn:
        new = self._copy(state)
        new.status = CANCELLED
        new.current = None
        new.pending = None
        return Turn(new, None)

    # ---------------------------------------------------------------------------------- internals

    def _resolve(self, ref: str, state: InterviewState) -> Question | None:
        ordered = self.questions(state)
        ref = ref.strip()
        if ref.isdigit() and 1 <= int(ref) <= len(ordered):
            return ordered[int(ref) - 1]
        question = self.script.questions.get(ref)
        return question if question in ordered else None

    def _suggest_current(self, state: InterviewState) -> None:
        """Work out the caller's suggestion for the current question (in place), unless the one
        kept was worked out from the same answers."""
        if state.current is None or self.suggest is None:
            return
        q = self.script.question(state.current)
        if q.suggest is None:
            return
        answers = self.answered(state)
        sources = q.suggest_from or tuple(x for x in answers if x != q.id)
        basis = json.loads(json.dumps({k: answers.get(k) for k in sources}, default=str))
        kept = state.suggested.get(q.id)
        if kept is not None and kept.get("basis") == basis:
            return
        try:
            found = self.suggest(q.suggest, answers)
        except Exception:  # a suggestion is a convenience: the question is asked anyway
            log.warning("interview_suggestion_failed", extra={"fields": {"question": q.id}}, exc_info=True)
            found = None
        value = found.value if found is not None else None
        if value is not None:
            try:
                value = parse_answer(q, value, self.names(answers, q), self.known_ids(q))
            except ValueError:
                log.warning("interview_suggestion_invalid", extra={"fields": {"question": q.id}})
                value = None
        state.suggested[q.id] = {
            "basis": basis,
            "value": value,
            "note": found.note if found is not None and value is not None else None,
        }

    def _check_active(self, state: InterviewState) -> None:
        if state.status != ACTIVE:
            raise InterviewClosed(f"interview {state.id} is {state.status}")

    def _check_mode(self, mode: str) -> None:
        if mode not in self.script.modes:
            raise PositioningError(
                f"unknown interview mode {mode!r}; this script offers {', '.join(self.script.modes)}"
            )

    def _copy(self, state: InterviewState) -> InterviewState:
        new = copy.deepcopy(state)
        new.updated_at = timestamp()
        return new

    def _advance(self, state: InterviewState) -> Turn:
        """Move to the first applicable question that is neither answered nor skipped, or finish."""
        for q in self.questions(state):
            if q.id in state.answers or q.id in state.skipped or not self.applicable(q, state.answers):
                continue
            state.current = q.id
            if q.id not in state.history:
                state.history.append(q.id)
            self._suggest_current(state)
            return Turn(state, self.prompt(state))
        state.current = None
        state.status = COMPLETED
        return Turn(state, None)


def parse_answer(
    question: Question, raw: Any, names: Sequence[str] | None = None, known: KnownIds | None = None
) -> Any:
    """The answer in its typed form; ``ValueError`` with a message for the user when it is not valid.
    A question with a ``format`` checks it (:mod:`positioning.formats`); ``names`` are the needs its
    lines may name (None: any), ``known`` the intents, entries and routes a link may name (None: ids
    not checked)."""
    if question.type == "text":
        value = "" if raw is None or isinstance(raw, list) else str(raw).strip()
        if not value:
            raise ValueError("please type an answer")
        if question.pattern and not re.search(question.pattern, value):
            raise ValueError(question.pattern_hint or "that answer does not have the expected form")
        if question.format:
            value = check_items(question.format, [value], names, known)[0]
        return value
    if question.type in ("number", "scale"):
        whole = question.type == "scale" or question.integer
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            number, read = float(raw), ""
        else:
            number = parse_number(str(raw), whole)
            text = str(raw).strip()
            read = f" (read {text} as {format_answer(number)})" if _SEPARATED.search(text) else ""
        if whole and not number.is_integer():
            raise ValueError("please answer with a whole number")
        if question.minimum is not None and number < question.minimum:
            raise ValueError(f"the answer must be at least {question.minimum:g}{read}")
        if question.maximum is not None and number > question.maximum:
            raise ValueError(f"the answer must be at most {question.maximum:g}{read}")
        return int(number) if whole else number
    if question.type in ("choice", "multi"):
        picks = raw if isinstance(raw, list) else [p for p in re.split(r"[,\n]", str(raw)) if p.strip()]
        chosen = [_option(question, str(p)) for p in picks]
        if not chosen:
            raise ValueError("please pick an option")
        if question.type == "choice":
            if len(chosen) > 1:
                raise ValueError("please pick one option")
            return chosen[0]
        return list(dict.fromkeys(chosen))
    # list
    split = _LINES if question.format else _LIST_SPLIT
    items = (
        [str(i).strip() for i in raw]
        if isinstance(raw, list)
        else [_BULLET.sub("", i.strip()).strip() for i in split.split(str(raw))]
    )
    items = [i for i in items if i]
    if len(items) < max(question.min_items, 1):
        raise ValueError(f"please give at least {max(question.min_items, 1)} item(s)")
    if question.max_items is not None and len(items) > question.max_items:
        raise ValueError(f"please give at most {question.max_items} items")
    if question.pattern:
        bad = [i for i in items if not re.search(question.pattern, i)]
        if bad:
            raise ValueError(f"{bad[0]!r}: {question.pattern_hint or 'does not have the expected form'}")
    if question.unique:
        _check_unique(items)
    if question.format:
        items = check_items(question.format, items, names, known)
    return items


def _check_unique(items: Sequence[str]) -> None:
    """``ValueError`` naming the first item whose name (:func:`positioning.formats.item_names`)
    repeats an earlier one's, ignoring case and spaces: ``"track a card | 5"`` and ``"Track  a
    card | 2"`` name the same need."""
    first: dict[str, tuple[int, str]] = {}
    for number, name in enumerate(item_names(items), start=1):
        key = " ".join(name.casefold().split())
        if key in first:
            earlier, wording = first[key]
            raise ValueError(
                f"“{wording}” is listed twice (items {earlier} and {number}); list each one once, on one line"
            )
        first[key] = (number, " ".join(name.split()))


#: Characters that group digits (never a decimal mark): spaces of every width, apostrophes.
_GROUPING = " \u00a0\u2007\u2009\u202f'\u2019"
_SEPARATED = re.compile(r"\d[,.\s'\u2019]\d")
_NUMBER_ERROR = "please answer with a number (e.g. 10003, 10,003 or 2.5)"


def parse_number(text: str, whole: bool = False) -> float:
    """A number as people type it, with thousands separators. ``ValueError`` if it is not one.

    The rule (``whole``: the answer is a count or a scale, so it has no decimals):

    - Spaces (of any width) and apostrophes always group thousands: "10 003", "1'234'567".
    - A separator that occurs more than once groups thousands: "1,234,567", "1.234.567".
    - With two kinds of separator, the last one is the decimal mark and the other groups
      thousands: "10,003.5" and "10.003,5" are both 10003.5.
    - A lone "," or "." followed by exactly three digits, after one to three digits that do not
      start with 0, is ambiguous. "," groups thousands ("10,003" is 10003, as written in English);
      "." is a decimal point ("10.003" is 10.003) unless the answer is ``whole``, where no decimal
      can be meant and it groups thousands ("10.003" is 10003).
    - Any other lone "," or "." is the decimal mark: "2,5" and "2.5" are both 2.5, "0,125" is 0.125.
    - Grouped digits come in threes after the first group of one to three ("1,23,456" is refused).

    A leading sign and a trailing "%" are allowed ("94%" is 94).
    """
    s = text.strip()
    s = s[:-1].rstrip() if s.endswith("%") else s
    sign = -1.0 if s.startswith("-") else 1.0
    s = s[1:].lstrip() if s[:1] in "+-" else s
    for c in _GROUPING:
        s = s.replace(c, " ")
    s = re.sub(r" +", " ", s)
    if s[:1] in (".", ","):
        s = "0" + s
    if not re.fullmatch(r"\d+(?:[ ,.]\d+)*", s):
        raise ValueError(_NUMBER_ERROR)
    groups = re.split(r"[ ,.]", s)
    seps = re.findall(r"[ ,.]", s)
    if not seps:
        return sign * float(s)
    decimal: str | None = None
    last = seps[-1]
    if last in ",." and seps.count(last) == 1:
        before = seps[:-1]
        if before:
            if len(set(before)) != 1:
                raise ValueError(_NUMBER_ERROR)
            decimal = last  # "10,003.5", "10.003,5", "10 003,5"
        else:
            head, tail = groups
            thousands = len(tail) == 3 and len(head) <= 3 and not head.startswith("0")
            if not (thousands and (last == "," or whole)):
                decimal = last
    elif len(set(seps)) != 1:
        raise ValueError(_NUMBER_ERROR)
    integer, fraction = (groups[:-1], groups[-1]) if decimal else (groups, "")
    if len(integer) > 1 and (len(integer[0]) > 3 or any(len(g) != 3 for g in integer[1:])):
        raise ValueError(_NUMBER_ERROR)
    return sign * float("".join(integer) + ("." + fraction if fraction else ""))


def _keeps(raw: Any) -> bool:
    """Does ``raw`` keep the answer shown ("ok", or nothing)?"""
    return raw is None or (isinstance(raw, str) and raw.strip().lower() in KEEP_WORDS)


def _only_ok(raw: Any) -> bool:
    """Is ``raw`` just "ok" (or "okay"), typed alone or as the one line of a list?"""
    items = raw if isinstance(raw, list) else [raw]
    return len(items) == 1 and isinstance(items[0], str) and items[0].strip().lower() in KEEP_WORDS[1:]


def _empty(raw: Any) -> bool:
    return raw is None or (isinstance(raw, str) and not raw.strip()) or raw == []


def _option(question: Question, pick: str) -> str:
    pick = pick.strip()
    if pick.isdigit() and 1 <= int(pick) <= len(question.options):
        return question.options[int(pick) - 1]
    for option in question.options:
        if option.lower() == pick.lower():
            return option
    raise ValueError(f"{pick!r} is not one of the options (1-{len(question.options)})")
