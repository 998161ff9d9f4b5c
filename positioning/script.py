"""Interview scripts: steps of questions, as data (YAML), with answer types, validation and follow-ups.

A question's answer type is one of ``text``, ``choice`` (one option), ``multi`` (several options),
``number``, ``scale`` (an integer between ``min`` and ``max``) and ``list`` (items, one per line or
separated by ``;``). ``when`` makes it a follow-up, asked only if an earlier answer matches.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from positioning.errors import ScriptError

TYPES = ("text", "choice", "multi", "number", "scale", "list")
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

    def ordered(self) -> list[Question]:
        return [q for s in self.steps for q in s.questions]

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
    pattern = raw.get("pattern")
    if pattern is not None:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ScriptError(f"{where}, question {raw['id']!r}: bad pattern ({exc})") from None
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
            questions[q.id] = q
            step_of[q.id] = index
        steps.append(Step(str(raw_step.get("id", f"step{index + 1}")), str(raw_step.get("title", "")), qs))
    return Script(
        str(data.get("id", path.stem)),
        str(data.get("title", "")),
        tuple(steps),
        str(path),
        questions,
        step_of,
    )
