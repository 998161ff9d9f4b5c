"""Where interviews are kept: a port the application fills (Teller keeps them in its database).

An implementation must be thread-safe and keep whole :class:`InterviewState` snapshots; the
interview service rewrites one after every answer.
"""

from __future__ import annotations

from typing import Protocol

from positioning.engine import InterviewState


class InterviewStore(Protocol):
    def save(self, state: InterviewState) -> None:
        """Insert or replace the interview ``state.id``."""

    def get(self, interview_id: str, user_id: str | None = None) -> InterviewState:
        """The interview (of ``user_id``, if given). Raises :class:`positioning.errors.InterviewNotFound`."""

    def for_user(self, user_id: str) -> list[InterviewState]:
        """The user's interviews, most recently touched first."""

    def active_for(self, user_id: str) -> InterviewState | None:
        """The user's most recently touched interview still in progress (status ``active``), if any."""
