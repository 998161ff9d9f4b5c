"""The interview engine: a pure state machine. Feed it an answer (or a command), get the next prompt.

Nothing here touches storage or a chat platform: every call takes an :class:`InterviewState` and
returns a new one, so the caller saves it wherever it likes after every step.
"""

from __future__ import annotations

import copy
import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from positioning.errors import InterviewClosed
from positioning.script import Question, Script

ACTIVE, COMPLETED, CANCELLED = "active", "completed", "cancelled"
_LIST_SPLIT = re.compile(r"\n|;")


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

    @property
    def progress(self) -> str:
        return f"step {self.step_number} of {self.step_count}"

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
            lines.append("One item per line (or separated by ';').")
        if self.previous_answer is not None:
            lines.append(f"Current answer: {format_answer(self.previous_answer)}")
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


class InterviewEngine:
    """Runs interviews of one script."""

    def __init__(self, script: Script) -> None:
        self.script = script

    # ---------------------------------------------------------------------------------- queries

    def applicable(self, question: Question, answers: dict[str, Any]) -> bool:
        return question.when is None or question.when.holds(answers)

    def prompt(self, state: InterviewState) -> Prompt | None:
        if state.status != ACTIVE or state.current is None:
            return None
        q = self.script.question(state.current)
        step = self.script.step_of[q.id]
        return Prompt(
            q, step + 1, len(self.script.steps), self.script.steps[step].title, state.answers.get(q.id)
        )

    def answered(self, state: InterviewState) -> dict[str, Any]:
        """The answers that count: those of questions that still apply, in script order."""
        return {
            q.id: state.answers[q.id]
            for q in self.script.ordered()
            if q.id in state.answers and self.applicable(q, state.answers)
        }

    # ---------------------------------------------------------------------------------- transitions

    def start(self, interview_id: str, user_id: str) -> Turn:
        state = InterviewState(interview_id, user_id, self.script.id)
        return self._advance(state)

    def answer(self, state: InterviewState, raw: Any) -> Turn:
        """Validate ``raw`` for the current question; on success move on, else say what is wrong."""
        self._check_active(state)
        question = self.script.question(state.current or "")
        try:
            value = parse_answer(question, raw)
        except ValueError as exc:
            return Turn(state, self.prompt(state), str(exc))
        new = self._copy(state)
        new.answers[question.id] = value
        if question.id in new.skipped:
            new.skipped.remove(question.id)
        return self._advance(new)

    def skip(self, state: InterviewState) -> Turn:
        self._check_active(state)
        question = self.script.question(state.current or "")
        if question.required:
            return Turn(state, self.prompt(state), "this question is required; it cannot be skipped")
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
        candidates = [
            q for q in new.history[:position] if self.applicable(self.script.question(q), new.answers)
        ]
        if not candidates:
            return Turn(state, self.prompt(state), "this is the first question")
        new.current = candidates[-1]
        return Turn(new, self.prompt(new))

    def edit(self, state: InterviewState, question_ref: str) -> Turn:
        """Jump to an earlier question by id or number; after it, the interview resumes where it was."""
        if state.status == CANCELLED:
            raise InterviewClosed(f"interview {state.id} was cancelled")
        question = self._resolve(question_ref)
        if question is None or question.id not in state.history:
            asked = ", ".join(f"{i}. {q}" for i, q in enumerate(state.history, start=1))
            return Turn(
                state, self.prompt(state), f"no question {question_ref!r} has been asked yet ({asked})"
            )
        new = self._copy(state)
        new.status = ACTIVE
        new.current = question.id
        return Turn(new, self.prompt(new))

    def cancel(self, state: InterviewState) -> Turn:
        new = self._copy(state)
        new.status = CANCELLED
        new.current = None
        return Turn(new, None)

    # ---------------------------------------------------------------------------------- internals

    def _resolve(self, ref: str) -> Question | None:
        ordered = self.script.ordered()
        ref = ref.strip()
        if ref.isdigit() and 1 <= int(ref) <= len(ordered):
            return ordered[int(ref) - 1]
        return self.script.questions.get(ref)

    def _check_active(self, state: InterviewState) -> None:
        if state.status != ACTIVE:
            raise InterviewClosed(f"interview {state.id} is {state.status}")

    def _copy(self, state: InterviewState) -> InterviewState:
        new = copy.deepcopy(state)
        new.updated_at = timestamp()
        return new

    def _advance(self, state: InterviewState) -> Turn:
        """Move to the first applicable question that is neither answered nor skipped, or finish."""
        for q in self.script.ordered():
            if q.id in state.answers or q.id in state.skipped or not self.applicable(q, state.answers):
                continue
            state.current = q.id
            if q.id not in state.history:
                state.history.append(q.id)
            return Turn(state, self.prompt(state))
        state.current = None
        state.status = COMPLETED
        return Turn(state, None)


def parse_answer(question: Question, raw: Any) -> Any:
    """The answer in its typed form; ``ValueError`` with a message for the user when it is not valid."""
    text = raw if isinstance(raw, str) else None
    if question.type == "text":
        value = (text or "").strip()
        if not value:
            raise ValueError("please type an answer")
        if question.pattern and not re.search(question.pattern, value):
            raise ValueError(question.pattern_hint or "that answer does not have the expected form")
        return value
    if question.type in ("number", "scale"):
        try:
            number = float(str(raw).strip().replace(",", "."))
        except ValueError:
            raise ValueError("please answer with a number") from None
        if question.type == "scale" and not number.is_integer():
            raise ValueError("please answer with a whole number")
        if question.minimum is not None and number < question.minimum:
            raise ValueError(f"the answer must be at least {question.minimum:g}")
        if question.maximum is not None and number > question.maximum:
            raise ValueError(f"the answer must be at most {question.maximum:g}")
        return int(number) if question.type == "scale" else number
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
    items = (
        [str(i).strip() for i in raw]
        if isinstance(raw, list)
        else [i.strip() for i in _LIST_SPLIT.split(str(raw))]
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
    return items


def _option(question: Question, pick: str) -> str:
    pick = pick.strip()
    if pick.isdigit() and 1 <= int(pick) <= len(question.options):
        return question.options[int(pick) - 1]
    for option in question.options:
        if option.lower() == pick.lower():
            return option
    raise ValueError(f"{pick!r} is not one of the options (1-{len(question.options)})")
