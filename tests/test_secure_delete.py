"""An erased customer's words do not stay readable in the SQLite file (``PRAGMA secure_delete``)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from bot.privacy.erasure import Eraser
from bot.storage import Store
from tests.test_erasure import populate


def test_erased_words_leave_no_bytes_in_the_database_file(tmp_path: Path) -> None:
    """SQLite keeps a deleted row's bytes in the file's free pages unless ``secure_delete`` is on;
    with it, once the write-ahead log is checkpointed, "zebra" (only Alice's words hold it) is gone
    from the file, while Bob's words stay."""
    path = tmp_path / "teller.db"
    store = Store(str(path))
    try:
        populate(store)
        Eraser(store).erase("web", "alice", "cli:robin")
    finally:
        store.close()
    db = sqlite3.connect(path)
    try:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        db.close()
    data = path.read_bytes()
    assert b"zebra" not in data
    assert b"bob" in data
