"""Interview scripts: steps of questions, as data (YAML), with answer types, validation and follow-ups.

A question's answer type is one of ``text``, ``choice`` (one option), ``multi`` (several options),
``number`` (``integer: true`` for a count), ``scale`` (an integer between ``min`` and ``max``) and
``list`` (items, one per line or separated by ``;``). ``when`` makes it a follow-up, asked only if an
earlier answer matches.

``modes`` says which interviews ask a question: ``full`` (the default) and/or ``quick``, the short
interview of at most :data:`QUICK_LIMIT` questions that still covers every step. ``prefill`` names
the figure the caller may pass in (``defaults`` of :meth:`positioning.engine.InterviewEngine.start`,
e.g. ``accuracy``) that the question shows as its answer until the PM keeps or changes it;
``prefill_note`` says where that figure comes from. A *target* is never prefilled with the figure it
is checked against: ``measured`` names the caller's figure shown beside it as information
(``measured_note``: what it is), and such a question is optional, an empty answer meaning "no target
stated".

``format`` checks each item (or the text) of an answer against what the brief reads
(:mod:`positioning.formats`: ``need_link``, ``need_rating``, ``need_resolution``, ``market_match``);
such a list takes one item per line (its items may hold ";"). ``per`` names the earlier list question
whose items the lines refer to (``needs``): the prompt numbers them, and a line may name one by its
number. ``suggest`` names the caller's suggestion (``suggest`` of
:class:`positioning.engine.InterviewEngine`, e.g. ``links``), worked out from the answers of the
``suggest_from`` questions when the question is reached, and kept (with Enter or "ok") or edited.
``required_in`` lists the modes in which an optional question is required after all (a per-need
list then names every need). ``unique`` makes a list refuse an item named twice (the text before an
item's first ``|``, compared ignoring case and spaces); a list another question is ``per`` is always
unique, since one line per item could never be given for an item listed twice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from positioning.errors import ScriptError

TYPES = ("text", "choice", "multi", "number", "scale", "list")
FULL, QUICK = "full", "quick"
MODES = (FULL, QUICK)
#: The most questions a quick interview may ask.
QUICK_LIMIT = 12
SCRIPTS_DIR = Path(__file__).resolve().parent / "scripts"
DEFAULT_SCRIPT = SCRIPTS_DIR / "five_step.yaml"


@dataclass(frozen=True)
class Condition:
    """Ask the question only when ``question``'s answer equals (or, for lists, contains) one of ``values``."""

    question: str
    values: tuple[str, ...]

    def holds(self, answers: dict[str, Any]) -> bool:
        answer = answers.get(self.question)
        if answer is None:
            return False
        given = answer if isinstance(answer, list) else [answer]
        return any(str(a).lower() == v.lower() for a in given for v in self.values)


@dataclass(frozen=True)
class Question:
    id: str
    prompt: str
    type: str = "text"
    required: bool = True
    options: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    min_items: int = 0
    max_items: int | None = None
    pattern: str | None = None
    pattern_hint: str | None = None
    help: str | None = None
    when: Condition | None = None
    #: The interviews that ask it (:data:`MODES`).
    modes: tuple[str, ...] = (FULL,)
    #: A ``number`` that is a count: "10.003" and "10,003" both read as 10003.
    integer: bool = False
    #: The key of the caller's defaults that prefills the answer, and what that figure is.
    prefill: str | None = None
    prefill_note: str | None = None
    #: The key of the caller's figure shown beside the question as information only (a target's
    #: measured counterpart): never the answer; an empty answer is "none stated" (the question is
    #: optional). And what that figure is.
    measured: str | None = None
    measured_note: str | None = None
    #: How each item (or the text) is checked (:data:`positioning.formats.FORMATS`), if at all.
    format: str | None = None
    #: The earlier list question whose items this question's lines refer to (by text or number).
    per: str | None = None
    #: The caller's suggestion this question shows (a key of the engine's ``suggest``), and the
    #: questions it is worked out from (empty: every earlier answer).
    suggest: str | None = None
    suggest_from: tuple[str, ...] = ()
    #: The modes in which an optional question is required after all; a per-need list (``per``)
    #: must then name every need (the quick interview's competitor coverage of each need).
    required_in: tuple[str, ...] = ()
    #: A list whose items must be named once each (see the module); set for every list a later
    #: question is ``per``.
    unique: bool = False

    def required_for(self, mode: str) -> bool:
        """Is the question required in an interview of ``mode``?"""
        return self.required or mode in self.required_in


@dataclass(frozen=True)
class Step:
    id: str
    title: str
    questions: tuple[Question, ...]


@dataclass(frozen=True)
class Script:
    id: str
    title: str
    steps: tuple[Step, ...]
    source: str = ""
    questions: dict[str, Question] = field(default_factory=dict, compare=False)
    step_of: dict[str, int] = field(default_factory=dict, compare=False)

    def ordered(self, mode: str | None = None) -> list[Question]:
        """The questions ``mode`` asks, in order. Without a mode: every question, those of the full
        interview first (so their numbers are the full interview's), then those only others ask."""
        every = [q for s in self.steps for q in s.questions]
        if mode is not None:
            return [q for q in every if mode in q.modes]
        return [q for q in every if FULL in q.modes] + [q for q in every if FULL not in q.modes]

    @property
    def modes(self) -> tuple[str, ...]:
        """The interviews this script offers (always ``full``)."""
        return tuple(m for m in MODES if m == FULL or any(m in q.modes for q in self.questions.values()))

    def question(self, question_id: str) -> Question:
        try:
            return self.questions[question_id]
        except KeyError:
            raise ScriptError(f"script {self.id!r} has no question {question_id!r}") from None


def _question(raw: dict[str, Any], where: str) -> Question:
    if not isinstance(raw, dict) or "id" not in raw or "prompt" not in raw:
        raise ScriptError(f"{where}: a question needs an id and a prompt")
    qtype = raw.get("type", "text")
    if qtype not in TYPES:
        raise ScriptError(f"{where}, question {raw['id']!r}: unknown type {qtype!r} (use {', '.join(TYPES)})")
    options = tuple(str(o) for o in raw.get("options", []))
    if qtype in ("choice", "multi") and len(options) < 2:
        raise ScriptError(f"{where}, question {raw['id']!r}: a {qtype} question needs at least two options")
    if qtype == "scale" and ("min" not in raw or "max" not in raw):
        raise ScriptError(f"{where}, question {raw['id']!r}: a scale needs min and max")
    when = None
    if "when" in raw:
        cond = raw["when"]
        values = cond.get("equals", cond.get("in"))
        if not isinstance(cond, dict) or "question" not in cond or values is None:
            raise ScriptError(f"{where}, question {raw['id']!r}: 'when' needs a question and equals/in")
        when = Condition(
            str(cond["question"]), tuple(str(v) for v in (values if isinstance(values, list) else [values]))
        )
    modes = raw.get("modes", [FULL])
    modes = tuple(str(m) for m in (modes if isinstance(modes, list) else [modes]))
    if not modes or any(m not in MODES for m in modes):
        raise ScriptError(f"{where}, question {raw['id']!r}: modes must be among {', '.join(MODES)}")
    if raw.get("measured") and (raw.get("prefill") or raw.get("required", True)):
        raise ScriptError(
            f"{where}, question {raw['id']!r}: a question that shows a measured figure is optional "
            "(an empty answer: none stated) and not prefilled"
        )
    if raw.get("integer") and qtype != "number":
        raise ScriptError(f"{where}, question {raw['id']!r}: only a number question can be an integer")
    pattern = raw.get("pattern")
    if pattern is not None:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ScriptError(f"{where}, question {raw['id']!r}: bad pattern ({exc})") from None
    fmt = raw.get("format")
    if fmt is not None:
        from positioning.formats import FORMATS

        if fmt not in FORMATS:
            raise ScriptError(
                f"{where}, question {raw['id']!r}: unknown format {fmt!r} (use {', '.join(FORMATS)})"
            )
        if qtype not in ("list", "text"):
            raise ScriptError(f"{where}, question {raw['id']!r}: only a list or a text question has a format")
    required_in = raw.get("required_in", [])
    required_in = tuple(str(m) for m in (required_in if isinstance(required_in, list) else [required_in]))
    if any(m not in modes for m in required_in):
        raise ScriptError(f"{where}, question {raw['id']!r}: required_in must be among its modes")
    suggest_from = raw.get("suggest_from", [])
    suggest_from = tuple(str(x) for x in (suggest_from if isinstance(suggest_from, list) else [suggest_from]))
    return Question(
        id=str(raw["id"]),
        prompt=str(raw["prompt"]).strip(),
        type=qtype,
        required=bool(raw.get("required", True)),
        options=options,
        minimum=raw.get("min"),
        maximum=raw.get("max"),
        min_items=int(raw.get("min_items", 0)),
        max_items=raw.get("max_items"),
        pattern=pattern,
        pattern_hint=raw.get("pattern_hint"),
        help=raw.get("help"),
        when=when,
        modes=modes,
        integer=bool(raw.get("integer", False)),
        prefill=str(raw["prefill"]) if raw.get("prefill") else None,
        prefill_note=raw.get("prefill_note"),
        measured=str(raw["measured"]) if raw.get("measured") else None,
        measured_note=raw.get("measured_note"),
        format=str(fmt) if fmt else None,
        per=str(raw["per"]) if raw.get("per") else None,
        suggest=str(raw["suggest"]) if raw.get("suggest") else None,
        suggest_from=suggest_from,
        required_in=required_in,
        unique=bool(raw.get("unique", False)),
    )


def load_script(path: str | Path = DEFAULT_SCRIPT) -> Script:
    """Read and check a script: unique question ids, follow-ups that refer to earlier questions."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ScriptError(f"{path}: cannot read the script ({exc})") from None
    if not isinstance(data, dict) or not data.get("steps"):
        raise ScriptError(f"{path}: a script needs an id, a title and steps")
    steps = []
    questions: dict[str, Question] = {}
    step_of: dict[str, int] = {}
    for index, raw_step in enumerate(data["steps"]):
        where = f"{path}, step {index + 1}"
        qs = tuple(_question(q, where) for q in raw_step.get("questions", []))
        if not qs:
            raise ScriptError(f"{where}: no questions")
        for q in qs:
            if q.id in questions:
                raise ScriptError(f"{where}: duplicate question id {q.id!r}")
            if q.when is not None and q.when.question not in questions:
                raise ScriptError(
                    f"{where}, question {q.id!r}: 'when' refers to {q.when.question!r}, "
                    "which is not an earlier question"
                )
            if q.when is not None and not set(q.modes) <= set(questions[q.when.question].modes):
                raise ScriptError(
                    f"{where}, question {q.id!r}: 'when' refers to {q.when.question!r}, "
                    "which is not asked in every interview this follow-up is"
                )
            for ref in ([q.per] if q.per else []) + list(q.suggest_from):
                if ref not in questions:
                    raise ScriptError(f"{where}, question {q.id!r}: {ref!r} is not an earlier question")
            if q.per and questions[q.per].type != "list":
                raise ScriptError(f"{where}, question {q.id!r}: 'per' must name a list question")
            questions[q.id] = q
            step_of[q.id] = index
        steps.append(Step(str(raw_step.get("id", f"step{index + 1}")), str(raw_step.get("title", "")), qs))
    # A list that per-item questions name must name each item once: "one line per need" cannot be
    # answered for a need listed twice.
    named = {q.per for q in questions.values() if q.per}
    questions = {k: replace(q, unique=True) if k in named else q for k, q in questions.items()}
    steps = [replace(s, questions=tuple(questions[q.id] for q in s.questions)) for s in steps]
    quick = [q for q in questions.values() if QUICK in q.modes]
    if quick and len(quick) > QUICK_LIMIT:
        raise ScriptError(f"{path}: the quick interview asks {len(quick)} questions (at most {QUICK_LIMIT})")
    if quick and any(not any(QUICK in q.modes for q in s.questions) for s in steps):
        raise ScriptError(f"{path}: the quick interview must ask something in every step")
    return Script(
        str(data.get("id", path.stem)),
        str(data.get("title", "")),
        tuple(steps),
        str(path),
        questions,
        step_of,
    )
