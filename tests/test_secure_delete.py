"""An erased customer's words do not stay readable in the SQLite file (``PRAGMA secure_delete``)."""

from __future__ import annotations

from pathlib import Path

from bot.privacy.erasure import Eraser
from bot.storage import Store
from tests.test_erasure import populate


def test_erased_words_leave_no_bytes_in_the_database_file(tmp_path: Path) -> None:
    """SQLite keeps a deleted row's bytes in the file's free pages unless ``secure_delete`` is on,
    and in its write-ahead log until that is emptied: right after the erasure, with the store still
    open, "zebra" (only Alice's words hold it) is in neither file, while Bob's words stay."""
    path = tmp_path / "teller.db"
    store = Store(str(path))
    try:
        populate(store)
        assert b"zebra" in path.read_bytes() + Path(f"{path}-wal").read_bytes()
        Eraser(store).erase("web", "alice", "cli:robin")
        data = path.read_bytes() + Path(f"{path}-wal").read_bytes()
        assert b"zebra" not in data
        assert b"bob" in data
    finally:
        store.close()
