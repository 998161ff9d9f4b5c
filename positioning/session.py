"""Interviews as a conversation: text in (an answer or a command), text out, saved after every turn.

Commands, typed instead of an answer: ``back``, ``skip``, ``edit <question number or id>``,
``status``, ``pause`` (everything is saved anyway; resume later) and ``cancel``.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, replace

from positioning.engine import (
    ACTIVE,
    COMPLETED,
    InterviewEngine,
    InterviewState,
    Turn,
    format_answer,
    timestamp,
)
from positioning.errors import PositioningError
from positioning.store import InterviewStore

COMMANDS = ("back", "skip", "edit", "status", "pause", "cancel")
HELP = (
    "Type your answer, or one of: back, skip, edit <question number>, status, pause, cancel. "
    "Everything is saved after each answer."
)


@dataclass(frozen=True)
class Reply:
    text: str
    state: InterviewState
    turn: Turn | None = None


class InterviewService:
    """Starts, resumes and advances interviews for many users at once (one lock per user)."""

    def __init__(self, engine: InterviewEngine, store: InterviewStore) -> None:
        self.engine = engine
        self.store = store
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def _lock(self, user_id: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(user_id, threading.Lock())

    def start_or_resume(self, user_id: str, new: bool = False) -> Reply:
        with self._lock(user_id):
            state = None if new else self.store.active_for(user_id)
            if state is not None:
                return self._resumed(state)
            turn = self.engine.start(f"iv_{secrets.token_hex(4)}", user_id)
            self.store.save(turn.state)
            intro = f"Interview {turn.state.id}: {self.engine.script.title}. {HELP}\n\n"
            return Reply(intro + (turn.prompt.render() if turn.prompt else ""), turn.state, turn)

    def resume(self, user_id: str, interview_id: str) -> Reply:
        """Carry on with a particular interview of the user's (it becomes the one in progress)."""
        with self._lock(user_id):
            state = self.store.get(interview_id, user_id)
            if state.status != ACTIVE:
                raise PositioningError(f"interview {interview_id} is {state.status}; it cannot be resumed")
            return self._resumed(state)

    def _resumed(self, state: InterviewState) -> Reply:
        state = replace(state, paused=False, updated_at=timestamp())
        self.store.save(state)
        prompt = self.engine.prompt(state)
        intro = f"Resuming interview {state.id} ({len(self.engine.answered(state))} answers so far).\n"
        return Reply(intro + (prompt.render() if prompt else ""), state, Turn(state, prompt))

    def handle(self, user_id: str, text: str, interview_id: str | None = None) -> Reply:
        """Apply an answer or a command to the user's active interview (or ``interview_id``)."""
        with self._lock(user_id):
            state = self.store.get(interview_id, user_id) if interview_id else self.store.active_for(user_id)
            if state is None:
                raise PositioningError("no interview in progress; start one first")
            word, _, rest = text.strip().partition(" ")
            command = word.lower()
            if command == "status":
                return Reply(self.status_text(state), state)
            if command == "pause":
                paused = replace(state, paused=True, updated_at=timestamp())
                self.store.save(paused)
                return Reply(
                    f"Paused interview {state.id}. Your answers are saved; resume it any time.", paused
                )
            if state.paused:
                state = replace(state, paused=False)
            if command == "back":
                turn = self.engine.back(state)
            elif command == "skip":
                turn = self.engine.skip(state)
            elif command == "edit":
                if not rest.strip():  # not an answer "edit": ask which question
                    return Reply("Which question? Type edit <number>; 'status' lists them.", state)
                turn = self.engine.edit(state, rest)
            elif command == "cancel":
                turn = self.engine.cancel(state)
            else:
                turn = self.engine.answer(state, text)
            self.store.save(turn.state)
            return Reply(self._render(turn), turn.state, turn)

    def status_text(self, state: InterviewState) -> str:
        answered = self.engine.answered(state)
        prompt = self.engine.prompt(state)
        where = prompt.progress if prompt else state.status
        lines = [f"Interview {state.id}: {where}, {len(answered)} answers."]
        for number, q in enumerate(self.engine.script.ordered(), start=1):
            if q.id in answered:
                lines.append(f"  {number}. {q.id}: {format_answer(answered[q.id])[:80]}")
        return "\n".join(lines)

    def _render(self, turn: Turn) -> str:
        if turn.error:
            return f"{turn.error.capitalize()}.\n\n{turn.prompt.render() if turn.prompt else ''}".strip()
        if turn.state.status == COMPLETED:
            return f"Interview {turn.state.id} is complete. Thank you! The brief is being written."
        if turn.state.status != ACTIVE:
            return f"Interview {turn.state.id} was cancelled. Your answers are kept but it will not continue."
        return turn.prompt.render() if turn.prompt else ""
