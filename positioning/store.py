"""Interview persistence: one SQLite row per interview, rewritten after every answer."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

import sqlite_utils

from positioning.engine import ACTIVE, InterviewState
from positioning.errors import InterviewNotFound, PositioningError


class InterviewStore:
    """Thread-safe; several users, several interviews each."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        except (OSError, sqlite3.Error) as exc:
            raise PositioningError(f"{self.path}: cannot open the interview database ({exc})") from None
        self._db = sqlite_utils.Database(connection)
        self._db.execute("PRAGMA journal_mode = WAL")
        self._lock = threading.Lock()
        if "interviews" not in self._db.table_names():
            self._db.table("interviews").create(
                {
                    "id": str,
                    "user_id": str,
                    "script_id": str,
                    "status": str,
                    "state": str,
                    "created_at": str,
                    "updated_at": str,
                },
                pk="id",
            )
            self._db.table("interviews").create_index(["user_id", "updated_at"])

    def save(self, state: InterviewState) -> None:
        row = {
            "id": state.id,
            "user_id": state.user_id,
            "script_id": state.script_id,
            "status": state.status,
            "state": json.dumps(state.to_dict()),
            "created_at": state.created_at,
            "updated_at": state.updated_at,
        }
        with self._lock:
            self._db.table("interviews").upsert(row, pk="id")

    def get(self, interview_id: str, user_id: str | None = None) -> InterviewState:
        with self._lock:
            rows = list(self._db.query("SELECT state, user_id FROM interviews WHERE id = ?", [interview_id]))
        if not rows or (user_id is not None and rows[0]["user_id"] != user_id):
            raise InterviewNotFound(f"no interview {interview_id!r}" + (f" for {user_id}" if user_id else ""))
        return InterviewState.from_dict(json.loads(rows[0]["state"]))

    def for_user(self, user_id: str) -> list[InterviewState]:
        """The user's interviews, most recently touched first."""
        with self._lock:
            rows = list(
                self._db.query(
                    "SELECT state FROM interviews WHERE user_id = ? ORDER BY updated_at DESC, rowid DESC",
                    [user_id],
                )
            )
        return [InterviewState.from_dict(json.loads(r["state"])) for r in rows]

    def active_for(self, user_id: str) -> InterviewState | None:
        return next((s for s in self.for_user(user_id) if s.status == ACTIVE), None)

    def close(self) -> None:
        with self._lock:
            self._db.close()
