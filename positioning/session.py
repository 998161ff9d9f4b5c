"""Interviews as a conversation: text in (an answer or a command), text out, saved after every turn.

Commands, typed instead of an answer: ``back``, ``skip``, ``edit <question number or id>``,
``status``, ``pause`` (everything is saved anyway), ``resume``, ``cancel`` (asks for a confirmation),
``quick`` / ``full`` (switch to the short or the whole interview, answers kept) and ``help``.

A command is the exact word alone on its line ("back", "Back."), or the word after a slash
("/back", "/edit 3"): an answer that merely starts with a command word ("Back-office staff",
"Status updates on card deliveries") is an answer. ``edit`` takes a question number or id.

A list question's answer is one message of several lines (one item per line); a terminal reads
those lines until an empty one (:meth:`InterviewService.read_answer`).
"""

from __future__ import annotations

import logging
import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from positioning.engine import (
    ACTIVE,
    COMPLETED,
    FULL,
    KEEP_WORDS,
    QUICK,
    InterviewEngine,
    InterviewState,
    Prompt,
    Turn,
    format_answer,
    timestamp,
)
from positioning.errors import PositioningError
from positioning.script import Script
from positioning.store import InterviewStore

log = logging.getLogger(__name__)

COMMANDS = ("back", "skip", "edit", "status", "pause", "resume", "cancel", "quick", "full", "help")
HELP = (
    "Type your answer, or one of: back, skip, edit <question number>, status, pause, resume, cancel "
    "(alone on the line, or as /back, /skip ...). Everything is saved after each answer."
)
#: A slash command: "/word" (letters only), maybe followed by an argument.
_SLASHED = re.compile(r"/([A-Za-z]+)(?:\s+(.*))?")
#: Answers to "cancel this interview?" that confirm it, and those that keep the interview going.
CONFIRM = ("yes", "y", "yes cancel", "yes, cancel", "cancel", "confirm")
DECLINE = ("no", "n", "keep", "keep going", "continue", "carry on")


@dataclass(frozen=True)
class Command:
    """A command typed instead of an answer: its name and argument (``edit``'s question)."""

    name: str
    argument: str = ""


def parse_command(text: str, script: Script | None = None) -> Command | None:
    """The command ``text`` is, or None if it is an answer. Commands are exact words on one line
    ("back", "Status", "pause.") or slash-prefixed ("/back", "/edit 3"); "edit" also takes a question
    number or (with ``script``) id after it. A slash and an unknown word alone gives
    ``Command("unknown", word)``; with more after it, or a slash not followed by a word, it is an
    answer ("/r/banking readers")."""
    line = text.strip()
    if not line or "\n" in line:
        return None
    slashed = _SLASHED.fullmatch(line)
    if slashed:
        word, rest = slashed[1].lower(), (slashed[2] or "").strip()
        if word in COMMANDS:
            return Command(word, rest)
        return None if rest else Command("unknown", word)  # "/bakc" is a typo; "/r/banking users" an answer
    word, _, rest = line.partition(" ")
    word, rest = word.lower().rstrip(".!"), rest.strip()
    if word not in COMMANDS:
        return None
    if not rest:
        return Command(word)
    if word == "edit" and " " not in rest and (rest.isdigit() or (script and rest in script.questions)):
        return Command(word, rest)
    return None


#: The commands still read as commands on a list's continuation lines (where "back" or "status"
#: alone could be an item): these words alone, and any command with a slash ("/back", "/edit 3").
CONTINUATION_COMMANDS = ("cancel", "pause")


def continuation_command(text: str, script: Script | None = None) -> Command | None:
    """The command a list's continuation line is, or None (an item): a slash command, or exactly
    one of :data:`CONTINUATION_COMMANDS`."""
    command = parse_command(text, script)
    if command is None or command.name == "unknown":
        return None
    line = text.strip()
    if line.startswith("/") or line.lower().rstrip(".!") in CONTINUATION_COMMANDS:
        return command
    return None


def answers(count: int) -> str:
    """``"1 answer"``, ``"3 answers"``: how many answers an interview has."""
    return f"{count} answer" + ("" if count == 1 else "s")


@dataclass(frozen=True)
class StartRequest:
    """What ``/teller interview [new] [quick|full]`` (or ``start``) asks for."""

    new: bool = False
    mode: str | None = None


def parse_start(args: str) -> StartRequest | None:
    """Read the words that start or resume an interview: none or ``start`` (resume the one in
    progress, else start one), ``new`` (start another), ``quick`` / ``full`` (that mode: a new
    interview in it, or the one in progress switched to it), in any order ("new quick"). None when
    ``args`` asks for something else (``status``, ``list``, ...)."""
    words = args.lower().replace("--", "").split()
    if any(w not in ("start", "new", QUICK, FULL) for w in words):
        return None
    modes = [w for w in words if w in (QUICK, FULL)]
    if len(set(modes)) > 1:
        return None
    return StartRequest(new="new" in words, mode=modes[0] if modes else None)


@dataclass(frozen=True)
class Reply:
    text: str
    state: InterviewState
    turn: Turn | None = None


class InterviewService:
    """Starts, resumes and advances interviews for many users at once (one lock per user).

    ``defaults`` gives the figures that prefill questions (the caller's own model and measurements,
    see :meth:`InterviewEngine.start`); it is called when an interview starts or switches to a
    mode, and a failure only leaves the questions unfilled.
    """

    def __init__(
        self,
        engine: InterviewEngine,
        store: InterviewStore,
        defaults: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.engine = engine
        self.store = store
        self.defaults = defaults
        # Reentrant: a subclass may hold the user's lock around :meth:`handle` (to decide on the
        # text against the state it is applied to).
        self._locks: dict[str, threading.RLock] = {}
        self._guard = threading.Lock()

    def _lock(self, user_id: str) -> threading.RLock:
        with self._guard:
            return self._locks.setdefault(user_id, threading.RLock())

    def start_or_resume(
        self,
        user_id: str,
        new: bool = False,
        mode: str | None = None,
        defaults: dict[str, Any] | None = None,
    ) -> Reply:
        """Resume the user's interview in progress (switched to ``mode`` if one is given), or start
        one (``new``: always) in ``mode`` (default ``full``). ``defaults`` replace the service's."""
        with self._lock(user_id):
            previous = self.store.active_for(user_id)
            state = None if new else previous
            if state is not None:
                if mode is not None and mode != state.mode:
                    return self._switched(state, mode, defaults)
                return self._resumed(state)
            mode = mode or FULL
            turn = self.engine.start(f"iv_{secrets.token_hex(4)}", user_id, mode, self._defaults(defaults))
            self.store.save(turn.state)
            kind = f" (quick: {len(self.engine.questions(turn.state))} questions)" if mode == QUICK else ""
            intro = (
                f"Interview {turn.state.id}: {self.engine.script.title}{kind}. {HELP}"
                + self._mode_hint(mode)
                + self._still_open(previous)
                + "\n\n"
            )
            return Reply(intro + (turn.prompt.render() if turn.prompt else ""), turn.state, turn)

    def _still_open(self, previous: InterviewState | None) -> str:
        """What a new interview's first reply says of the one that was in progress: it is kept
        (not cancelled), and can be resumed by its id."""
        if previous is None:
            return ""
        answered = len(self.engine.answered(previous))
        return (
            f" Interview {previous.id} ({answers(answered)} so far) stays in progress: "
            "resume it by its id, or cancel it there."
        )

    def _mode_hint(self, mode: str) -> str:
        """What a new interview's first reply says about the other mode."""
        if QUICK not in self.engine.script.modes:
            return ""
        if mode == QUICK:
            return " This is the quick interview; type full for every question (answers are kept)."
        count = len(self.engine.script.ordered(QUICK))
        return f" Short of time? Type quick for the quick interview ({count} questions; answers are kept)."

    def current_prompt(self, state: InterviewState) -> Prompt | None:
        """The question an answer typed now would answer (None while paused or confirming)."""
        if state.paused or state.pending:
            return None
        return self.engine.prompt(state)

    def takes(self, state: InterviewState | None, text: str) -> bool:
        """Is ``text`` for this interview in a chat: any message while it is in progress and not
        paused, and ``resume`` while it is paused."""
        if state is None or state.status != ACTIVE:
            return False
        command = parse_command(text, self.engine.script)
        return not state.paused or (command is not None and command.name == "resume")

    def read_answer(self, state: InterviewState, read: Callable[[str], str]) -> str:
        """One answer or command from a terminal, read line by line with ``read`` (``input``): for a
        list question, lines up to an empty one (a pasted list is one answer); an empty line alone is
        read past unless it means something (it keeps a prefilled answer, or states no target:
        :attr:`Prompt.takes_empty`). ``ok`` alone on the first line keeps the answer shown at once;
        in a list's continuation lines an exact command (:data:`CONTINUATION_COMMANDS`) is still a
        command, and the lines before it are dropped. ``EOFError`` ends a list early."""
        prompt = self.current_prompt(state)
        while True:
            line = read("> ")
            if line.strip() or (prompt is not None and prompt.takes_empty) or state.pending:
                break
        if (
            prompt is None
            or not prompt.multiline
            or not line.strip()
            or (prompt.suggestion is not None and line.strip().lower() in KEEP_WORDS)
            or parse_command(line, self.engine.script)
        ):
            return line
        lines = [line]
        while True:
            try:
                more = read("... ")
            except EOFError:
                break
            if not more.strip():
                break
            if continuation_command(more, self.engine.script):
                return more
            lines.append(more)
        return "\n".join(lines)

    def resume(self, user_id: str, interview_id: str) -> Reply:
        """Carry on with a particular interview of the user's (it becomes the one in progress)."""
        with self._lock(user_id):
            state = self.store.get(interview_id, user_id)
            if state.status != ACTIVE:
                raise PositioningError(f"interview {interview_id} is {state.status}; it cannot be resumed")
            return self._resumed(state)

    def _resumed(self, state: InterviewState, intro: str = "") -> Reply:
        state = replace(state, paused=False, pending=None, updated_at=timestamp())
        self.store.save(state)
        prompt = self.engine.prompt(state)
        intro = (
            intro or f"Resuming interview {state.id} ({answers(len(self.engine.answered(state)))} so far)."
        )
        return Reply(intro + "\n" + (prompt.render() if prompt else ""), state, Turn(state, prompt))

    def _defaults(self, given: dict[str, Any] | None = None) -> dict[str, Any]:
        if given is not None or self.defaults is None:
            return dict(given or {})
        try:
            return dict(self.defaults())
        except Exception:  # prefilling is a convenience: the questions are asked anyway
            log.warning("interview_defaults_failed", exc_info=True)
            return {}

    def _switched(self, state: InterviewState, mode: str, defaults: dict[str, Any] | None = None) -> Reply:
        """``state`` carried on in ``mode``; saved."""
        if state.mode == mode:
            return self._resumed(state, f"This is already the {mode} interview.")
        turn = self.engine.set_mode(
            replace(state, paused=False), mode, self._defaults(defaults) if not state.defaults else None
        )
        self.store.save(turn.state)
        count = len(self.engine.questions(turn.state))
        kept = len(self.engine.answered(turn.state))
        lead = f"Switched interview {state.id} to the {mode} interview ({count} questions, {kept} answered)."
        if turn.finished:
            return Reply(f"{lead}\n{self._render(turn)}", turn.state, turn)
        return Reply(f"{lead}\n\n{self._render(turn)}", turn.state, turn)

    def handle(self, user_id: str, text: str, interview_id: str | None = None) -> Reply:
        """Apply an answer or a command to the user's active interview (or ``interview_id``)."""
        with self._lock(user_id):
            state = self.store.get(interview_id, user_id) if interview_id else self.store.active_for(user_id)
            if state is None:
                raise PositioningError("no interview in progress; start one first")
            lead = ""
            if state.pending == "cancel":
                said = " ".join(text.strip().lower().strip(".!/").split())
                if said in CONFIRM:
                    turn = self.engine.cancel(state)
                    self.store.save(turn.state)
                    return Reply(self._render(turn), turn.state, turn)
                state = replace(state, pending=None, updated_at=timestamp())
                if said in DECLINE or said == "":
                    self.store.save(state)
                    prompt = self.engine.prompt(state)
                    text_out = f"Not cancelled: interview {state.id} carries on."
                    return Reply(
                        text_out + ("\n\n" + prompt.render() if prompt else ""), state, Turn(state, prompt)
                    )
                lead = "Not cancelled. "
            command = parse_command(text, self.engine.script)
            name = command.name if command else ""
            reply = self._command(state, command) if command else None
            if reply is None:
                if state.paused:
                    state = replace(state, paused=False)
                if name == "back":
                    turn = self.engine.back(state)
                elif name == "skip":
                    turn = self.engine.skip(state)
                elif name == "edit":
                    turn = self.engine.edit(state, command.argument if command else "")
                else:
                    turn = self.engine.answer(state, text)
                self.store.save(turn.state)
                reply = Reply(self._render(turn), turn.state, turn)
            elif lead:
                self.store.save(reply.state)  # the dropped confirmation
            return replace(reply, text=lead + reply.text) if lead else reply

    def _command(self, state: InterviewState, command: Command) -> Reply | None:
        """The reply to a command that is not a move through the questions (None for those)."""
        name = command.name
        prompt = self.current_prompt(replace(state, paused=False))
        again = "\n\n" + prompt.render() if prompt else ""
        if name == "status":
            return Reply(self.status_text(state), state)
        if name == "pause":
            paused = replace(state, paused=True, updated_at=timestamp())
            self.store.save(paused)
            return Reply(f"Paused interview {state.id}. Your answers are saved; resume it any time.", paused)
        if name == "resume":
            return self._resumed(state)
        if name == "help":
            return Reply(HELP + again, state, Turn(state, prompt))
        if name == "unknown":
            words = ", ".join(f"/{c}" for c in COMMANDS)
            return Reply(
                f"/{command.argument} is not a command (they are {words}).{again}", state, Turn(state, prompt)
            )
        if name in (QUICK, FULL):
            if name not in self.engine.script.modes:
                return Reply(f"This interview has no {name} mode.{again}", state, Turn(state, prompt))
            return self._switched(state, name)
        if name == "edit" and not command.argument:  # not an answer "edit": ask which question
            return Reply("Which question? Type edit <number>; 'status' lists them.", state)
        if name == "cancel":
            asking = replace(state, pending="cancel", paused=False, updated_at=timestamp())
            self.store.save(asking)
            return Reply(
                f"Cancel interview {state.id}? Your answers are kept, but it will not continue. "
                "Type yes to cancel it, or no to carry on.",
                asking,
            )
        return None

    def status_text(self, state: InterviewState) -> str:
        answered = self.engine.answered(state)
        prompt = self.engine.prompt(state)
        where = prompt.progress if prompt else state.status
        kind = f" ({state.mode} interview)" if state.mode != FULL else ""
        lines = [f"Interview {state.id}{kind}: {where}, {answers(len(answered))}."]
        for number, q in enumerate(self.engine.questions(state), start=1):
            if q.id in answered:
                lines.append(f"  {number}. {q.id}: {format_answer(answered[q.id])[:80]}")
        return "\n".join(lines)

    def _render(self, turn: Turn) -> str:
        if turn.error:
            error = turn.error[:1].upper() + turn.error[1:]  # names keep their case ("Teller's")
            return f"{error}.\n\n{turn.prompt.render() if turn.prompt else ''}".strip()
        if turn.state.status == COMPLETED:
            return f"Interview {turn.state.id} is complete. Thank you! The brief is being written."
        if turn.state.status != ACTIVE:
            return f"Interview {turn.state.id} was cancelled. Your answers are kept but it will not continue."
        return turn.prompt.render() if turn.prompt else ""
