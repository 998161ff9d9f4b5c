"""One database object: the engine, transactions, migrations and the one clock every row is stamped by.

SQLite (a file, zero set-up, the default) or PostgreSQL (``TELLER_DATABASE_URL=postgresql://…``, shared
by any number of ``teller serve`` replicas) through SQLAlchemy Core, so that each repository is
written once for both. Schema changes are Alembic revisions in :mod:`bot.storage.migrations`,
applied when a :class:`Database` opens (and by ``teller db upgrade``); replicas starting together
take turns (PostgreSQL: a transaction-level advisory lock; SQLite: ``BEGIN IMMEDIATE``).

SQLite specifics: WAL (readers never block the writer), ``synchronous=NORMAL`` (durable across a
process crash), foreign keys on, a 30 s busy timeout, and every write transaction opened with
``BEGIN IMMEDIATE`` so two processes never deadlock upgrading a read lock. Databases made by
Teller before Alembic (``PRAGMA user_version`` 1 or 2) are adopted at that revision.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.script.revision import ResolutionError
from alembic.util import CommandError
from sqlalchemy import Connection, Engine, Table, create_engine, event, inspect, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, SQLAlchemyError

from bot.storage.errors import StoreError

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
#: Key of the PostgreSQL advisory lock migrations take (any constant; ``teller`` in ASCII).
_MIGRATION_LOCK = 0x74656C6C6572
_WRITE = "teller_write"
#: PostgreSQL: seconds to wait for a connection, milliseconds a statement may run (migrations lift it).
CONNECT_TIMEOUT_S = 5
STATEMENT_TIMEOUT_MS = 15_000


class Clock:
    """UTC wall time as ISO 8601 text with microseconds, read once per stamp and strictly increasing
    within a process (two stamps never tie, so rows written one after the other sort in that order).

    ``time_ns`` is injectable for tests. Thread-safe.
    """

    def __init__(self, time_ns: Callable[[], int] = time.time_ns) -> None:
        self._time_ns = time_ns
        self._last = 0
        self._lock = threading.Lock()

    def now(self) -> str:
        """``2026-11-30T08:15:02.123456Z``."""
        with self._lock:
            micros = max(self._time_ns() // 1000, self._last + 1)
            self._last = micros
        return _iso(micros)

    def ago(self, seconds: float) -> str:
        """The time ``seconds`` before now, in the same format (for "older than" queries)."""
        return _iso(self._time_ns() // 1000 - int(seconds * 1_000_000))


def _iso(micros: int) -> str:
    seconds, fraction = divmod(micros, 1_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{fraction:06d}Z"


def database_url(value: str | Path) -> URL:
    """A SQLAlchemy URL from ``TELLER_DATABASE_URL`` or a file path.

    ``postgresql://`` and ``postgres://`` use psycopg 3; a path (or ``sqlite:///path``) is SQLite.
    Raises :class:`StoreError` for anything else.
    """
    raw = str(value)
    if "://" not in raw:
        return URL.create("sqlite+pysqlite", database=str(Path(raw).expanduser()))
    if raw.startswith("postgres://"):
        raw = "postgresql://" + raw.removeprefix("postgres://")
    try:
        url = make_url(raw)
        url.port  # noqa: B018 - a port that is not a number fails here, not at connect time
    except (ArgumentError, ValueError):
        raise StoreError(f"{_safe(raw)}: not a database URL") from None
    if url.get_backend_name() == "postgresql":
        return url.set(drivername="postgresql+psycopg")
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        return url.set(drivername="sqlite+pysqlite")
    raise StoreError(f"{_safe(raw)}: use postgresql://user:password@host/db or a SQLite file path")


def _safe(raw: str) -> str:
    """A URL without its password, for messages."""
    try:
        return make_url(raw).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return raw.split("@")[-1]


def _owner_only(path: Path) -> None:
    """Make an existing SQLite database (and its ``-wal`` and ``-shm`` files) readable by its owner
    only, when this process owns it: one created by an older Teller is 0644, readable by every local
    user (a review's finding: new installations were made owner-only, upgraded ones kept their
    modes). A file another user owns is left as it is. Logs ``store_file_mode_tightened``; never
    raises (a file that cannot be changed is logged, ``store_file_mode_kept``, and opened as it is)."""
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            status = file.stat()
            if status.st_uid != os.getuid() or not status.st_mode & 0o077:
                continue
            os.chmod(file, 0o600)
        except FileNotFoundError:  # a -wal or -shm file SQLite removed meanwhile
            continue
        except OSError as exc:  # not permitted on this mount: Teller starts, the mode is reported
            log.warning(
                "store_file_mode_kept", extra={"fields": {"path": str(file), "error": str(exc)[:200]}}
            )
            continue
        log.warning(
            "store_file_mode_tightened",
            extra={"fields": {"path": str(file), "was": oct(status.st_mode & 0o777), "now": "0o600"}},
        )


class Database:
    """The engine, its transactions and its migrations. Thread-safe; one per process.

    Raises :class:`StoreError` when the database cannot be reached, or its schema is newer than
    this Teller.
    """

    def __init__(
        self, url: str | Path | URL, migrate: bool = True, clock: Clock | None = None, read_only: bool = False
    ) -> None:
        self.url = url if isinstance(url, URL) else database_url(url)
        self.clock = clock or Clock()
        self.dialect = self.url.get_backend_name()
        self.label = self.url.render_as_string(hide_password=True)
        self.migrated_from: str | None = None  # set by upgrade()
        if read_only and migrate:
            raise ValueError("a read-only database is not migrated")
        if self.dialect == "sqlite" and read_only:
            # To look, not to set up: no directory, file, mode or journal made or changed.
            path = Path(self.url.database or "")
            if not path.is_file():
                raise StoreError(f"{path}: no database there (nothing has run with this TELLER_HOME yet)")
            # SQLite's read-only mode: a write-ahead log left behind is read, not checkpointed into
            # the file, and nothing is created beside it.
            uri = f"{path.resolve().as_uri()}?mode=ro"
            self.engine: Engine = create_engine(
                "sqlite://",
                creator=lambda: sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=30),
            )
            event.listen(self.engine, "connect", _sqlite_connect_reading)
            event.listen(self.engine, "begin", _sqlite_begin)
        elif self.dialect == "sqlite":
            path = Path(self.url.database or "")
            try:
                # A new home and database readable by their owner only: the database holds customers'
                # conversations (a trial found both created 0755/0644, readable by every local user).
                path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                if self.url.database and self.url.database != ":memory:":
                    if path.exists():
                        _owner_only(path)
                    else:
                        path.touch(mode=0o600)
            except OSError as exc:
                raise StoreError(f"{path}: cannot create its directory ({exc})") from None
            self.engine = create_engine(self.url, connect_args={"check_same_thread": False, "timeout": 30})
            event.listen(self.engine, "connect", _sqlite_connect)
            event.listen(self.engine, "begin", _sqlite_begin)
        else:
            self.engine = create_engine(
                self.url,
                pool_pre_ping=True,
                pool_size=8,
                max_overflow=8,
                pool_timeout=10,
                # A database that hangs must give an error (a 503, a retry), not a hung request:
                # bounded connect time, TCP keepalives towards the server, bounded statements.
                connect_args={
                    "connect_timeout": CONNECT_TIMEOUT_S,
                    "keepalives": 1,
                    "keepalives_idle": 10,
                    "keepalives_interval": 3,
                    "keepalives_count": 3,
                    "options": f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
                },
            )
        # SQLite has one writer at a time: this process's writers queue here rather than in SQLite's
        # busy handler, whose sleeps (up to 100 ms each) would cost throughput; other processes
        # still wait through BEGIN IMMEDIATE and the busy timeout.
        self._writing: contextlib.AbstractContextManager[Any] = (
            threading.Lock() if self.dialect == "sqlite" else contextlib.nullcontext()
        )
        self._ping()
        if migrate:
            self.upgrade()

    @property
    def is_postgresql(self) -> bool:
        return self.dialect == "postgresql"

    def reclaim(self) -> bool:
        """After an erasure: on SQLite, move the write-ahead log into the database file and empty it
        (``PRAGMA wal_checkpoint(TRUNCATE)``), so that, with ``secure_delete`` on, the deleted rows'
        bytes are gone from both files. Returns whether it completed (False: a reader still needs
        the log, which SQLite's next checkpoint empties; or PostgreSQL, whose deleted rows stay in
        its pages until ``VACUUM``). Raises nothing: this is housekeeping after a committed change."""
        if self.is_postgresql:
            return False
        try:
            with self.engine.connect() as connection:
                # A checkpoint that waits for readers holds off writers meanwhile: wait briefly.
                connection.exec_driver_sql(f"PRAGMA busy_timeout = {RECLAIM_WAIT_MS}")
                try:
                    busy = connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").scalar()
                finally:
                    connection.exec_driver_sql(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        except SQLAlchemyError as exc:
            log.warning(
                "wal_checkpoint_failed", extra={"fields": {"database": self.label, "reason": _reason(exc)}}
            )
            return False
        return not busy

    def _ping(self) -> None:
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            raise StoreError(f"{self.label}: cannot open the database ({_reason(exc)})") from None

    # ------------------------------------------------------------------------------- transactions

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A write transaction: committed when the block ends, rolled back if it raises.

        :class:`sqlalchemy.exc.IntegrityError` passes through (repositories turn it into their own
        errors); any other database failure becomes :class:`StoreError`.
        """
        try:
            with self._writing, self.engine.connect() as connection:
                connection.execution_options(**{_WRITE: True})
                with connection.begin():
                    yield connection
        except IntegrityError:
            raise
        except SQLAlchemyError as exc:
            raise StoreError(f"{self.label}: {_reason(exc)}") from None

    @contextmanager
    def reading(self) -> Iterator[Connection]:
        """A read-only connection (one snapshot on PostgreSQL's default isolation per statement)."""
        try:
            with self.engine.connect() as connection:
                yield connection
        except SQLAlchemyError as exc:
            raise StoreError(f"{self.label}: {_reason(exc)}") from None

    def rows(self, statement: Any, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """Every row of a query, as dicts."""
        with self.reading() as connection:
            return [dict(row) for row in connection.execute(statement, params or {}).mappings()]

    def serialise(self, connection: Connection, name: str) -> None:
        """Make transactions that call this with the same ``name`` run one after the other (inside a
        :meth:`transaction`). PostgreSQL: a transaction-level advisory lock on ``hashtext(name)``;
        SQLite: nothing to do, its write transactions are serial already."""
        if self.is_postgresql:
            connection.execute(text("SELECT pg_advisory_xact_lock(hashtext(:name))"), {"name": name})

    def insert(self, table: Table) -> Any:
        """The dialect's INSERT for ``table`` (it has ``on_conflict_do_nothing``)."""
        return (postgresql.insert if self.is_postgresql else sqlite.insert)(table)

    # ------------------------------------------------------------------------------- migrations

    def head(self) -> str:
        """The newest revision this Teller knows."""
        return str(ScriptDirectory.from_config(_config()).get_current_head())

    def revision(self) -> str | None:
        """The revision the database is at (None: empty)."""
        with self.reading() as connection:
            return _revision(connection)

    def knows(self, revision: str) -> bool:
        """Whether ``revision`` is one of this Teller's migrations (False: a newer Teller's)."""
        return _known(ScriptDirectory.from_config(_config()), revision)

    def upgrade(self) -> str:
        """Apply every pending migration; return the revision reached. Idempotent; replicas may race.
        :attr:`migrated_from` is then the revision this call found under the migration lock (None:
        an empty database), so that of racing processes only the one that migrated says so."""
        config = _config()
        scripts = ScriptDirectory.from_config(config)
        try:
            with self.engine.connect() as connection, _foreign_keys_off(connection):
                connection.execution_options(**{_WRITE: True})
                with connection.begin():
                    if self.is_postgresql:
                        # A migration may rewrite a large table, and waits for another replica's.
                        connection.execute(text("SET LOCAL statement_timeout = 0"))
                        connection.execute(
                            text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK}
                        )
                    current = _revision(connection)
                    if current is None:
                        current = _adopt(connection)
                    self.migrated_from = current
                    if current is not None and not _known(scripts, current):
                        raise StoreError(
                            f"{self.label}: schema revision {current} is newer than this Teller "
                            f"({scripts.get_current_head()}); upgrade Teller"
                        )
                    config.attributes["connection"] = connection
                    # SQLite: a migration must not leave a reference to a missing row; those already
                    # there (a row deleted by hand with enforcement off) are the bank's to look at,
                    # not a reason to refuse to start.
                    check = current != scripts.get_current_head() and not self.is_postgresql
                    known = _broken_references(connection) if check else set()
                    command.upgrade(config, "head")
                    reached = str(_revision(connection))
                    if check:
                        _check_foreign_keys(connection, self.label, known)
            if reached != current:
                log.info(
                    "database_migrated",
                    extra={"fields": {"database": self.label, "from": current, "to": reached}},
                )
            return reached
        except SQLAlchemyError as exc:
            raise StoreError(f"{self.label}: migration failed ({_reason(exc)})") from None
        except CommandError as exc:
            raise StoreError(f"{self.label}: migration failed ({exc})") from None

    def try_lock(self, name: str) -> Lease | None:
        """Take the cluster-wide lock ``name`` if nobody holds it (None: someone does). Held until
        :meth:`Lease.release`, or until the holder dies: PostgreSQL drops a session's advisory locks
        with its connection; SQLite's stand-in is an ``flock`` on a file beside the database (one
        host only, as SQLite is).

        Raises :class:`StoreError` if the database is unreachable.
        """
        if self.is_postgresql:
            try:
                connection = self.engine.connect()
                got = connection.execute(
                    text("SELECT pg_try_advisory_lock(hashtext(:name))"), {"name": name}
                ).scalar()
                connection.commit()
            except SQLAlchemyError as exc:
                raise StoreError(f"{self.label}: {_reason(exc)}") from None
            if not got:
                connection.close()
                return None
            return _AdvisoryLease(name, connection)
        path = Path(f"{self.url.database}.{name}.lock")
        handle = path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return None
        return _FileLease(name, handle)

    def tables(self) -> set[str]:
        with self.reading() as connection:
            return set(inspect(connection).get_table_names())

    def close(self) -> None:
        self.engine.dispose()


class Lease:
    """A cluster-wide lock held by this process (see :meth:`Database.try_lock`)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def alive(self) -> bool:
        """Whether the lock is still held (PostgreSQL: the session that holds it is still up)."""
        raise NotImplementedError

    def release(self) -> None:
        raise NotImplementedError


class _AdvisoryLease(Lease):
    def __init__(self, name: str, connection: Connection) -> None:
        super().__init__(name)
        self._connection: Connection | None = connection

    def alive(self) -> bool:
        if self._connection is None:
            return False
        try:
            self._connection.execute(text("SELECT 1"))
            self._connection.commit()
            return True
        except SQLAlchemyError:
            self.release()
            return False

    def release(self) -> None:
        connection, self._connection = self._connection, None
        if connection is None:
            return
        try:
            connection.execute(text("SELECT pg_advisory_unlock(hashtext(:name))"), {"name": self.name})
            connection.commit()
        except SQLAlchemyError:
            pass  # the session is gone, and its locks with it
        finally:
            connection.close()


class _FileLease(Lease):
    def __init__(self, name: str, handle: IO[str]) -> None:
        super().__init__(name)
        self._handle: IO[str] | None = handle

    def alive(self) -> bool:
        return self._handle is not None

    def release(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()


def inserted_id(result: Any) -> int:
    """The integer primary key an INSERT just created (``Result.inserted_primary_key``)."""
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def _known(scripts: ScriptDirectory, revision: str) -> bool:
    try:
        return scripts.get_revision(revision) is not None
    except (CommandError, ResolutionError):
        return False


def _revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _adopt(connection: Connection) -> str | None:
    """A SQLite database from before Alembic: stamp it at the revision ``PRAGMA user_version`` says."""
    if connection.dialect.name != "sqlite":
        return None
    version = int(connection.exec_driver_sql("PRAGMA user_version").scalar() or 0)
    if version == 0:
        return None
    revision = f"{version:04d}"
    MigrationContext.configure(connection).stamp(ScriptDirectory.from_config(_config()), revision)
    return revision


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


@contextmanager
def _foreign_keys_off(connection: Connection) -> Iterator[None]:
    """SQLite: foreign-key enforcement off on ``connection`` while migrations run, on again after.

    A migration that rebuilds a table other tables reference (Alembic's batch mode: copy, drop,
    rename) must run with enforcement off, as SQLite's own ALTER TABLE procedure says
    (https://www.sqlite.org/lang_altertable.html#otheralter): the pragma cannot change inside a
    transaction, so it is set before ours begins, and :func:`_check_foreign_keys` checks the result
    before commit. PostgreSQL: nothing to do."""
    if connection.dialect.name != "sqlite":
        yield
        return
    raw = connection.connection.driver_connection
    assert raw is not None
    raw.execute("PRAGMA foreign_keys = OFF")
    try:
        yield
    finally:
        raw.execute("PRAGMA foreign_keys = ON")


def _broken_references(connection: Connection) -> set[tuple[Any, ...]]:
    """SQLite's ``PRAGMA foreign_key_check``: (table, rowid, referenced table, key index) rows."""
    return {tuple(row) for row in connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()}


def _check_foreign_keys(connection: Connection, label: str, known: set[tuple[Any, ...]]) -> None:
    """Raise :class:`StoreError` if a SQLite migration left a reference to a missing row that was
    not ``known`` (broken) before it; the transaction then rolls back. References broken before are
    logged (``broken_references``), not refused."""
    broken = _broken_references(connection)
    new = sorted(broken - known, key=repr)
    if new:
        tables = sorted({str(row[0]) for row in new})
        raise StoreError(f"{label}: migration failed ({len(new)} broken reference(s) in {', '.join(tables)})")
    if broken:
        tables = sorted({str(row[0]) for row in broken})
        log.warning(
            "broken_references",
            extra={"fields": {"database": label, "rows": len(broken), "tables": tables}},
        )


#: How long a SQLite statement waits for a lock before giving up (milliseconds).
BUSY_TIMEOUT_MS = 30_000
#: How long :meth:`Database.reclaim`'s checkpoint waits for readers (milliseconds): it holds off
#: writers while it waits, and SQLite's own next checkpoint does the work if it cannot.
RECLAIM_WAIT_MS = 200


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event emit BEGIN itself (pysqlite's own handling skips DDL).
    dbapi_connection.isolation_level = None
    # secure_delete: a deleted row's bytes are overwritten with zeros, not left in free pages of the
    # file, so an erased customer's words do not stay readable in it (nor in backups copied from it).
    _pragmas(dbapi_connection, "journal_mode = WAL", "synchronous = NORMAL", "secure_delete = ON")


def _sqlite_connect_reading(dbapi_connection: Any, _record: Any) -> None:
    """A connection that only reads: the connection's own settings, not the file's journal mode."""
    dbapi_connection.isolation_level = None
    _pragmas(dbapi_connection)


def _pragmas(dbapi_connection: Any, *pragmas: str) -> None:
    """``pragmas``, then the foreign keys and the busy timeout every connection has."""
    cursor = dbapi_connection.cursor()
    for pragma in (*pragmas, "foreign_keys = ON", f"busy_timeout = {BUSY_TIMEOUT_MS}"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    immediate = connection.get_execution_options().get(_WRITE, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _reason(exc: SQLAlchemyError) -> str:
    """The driver's own message, first line, without SQLAlchemy's boilerplate."""
    original = getattr(exc, "orig", None) or exc
    return str(original).strip().splitlines()[0] if str(original).strip() else type(original).__name__
