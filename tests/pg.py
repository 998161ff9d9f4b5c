"""A real PostgreSQL server for the tests, started by the tests on a free port in a temporary directory.

pytest-postgresql's ``PostgreSQLExecutor`` runs ``pg_ctl initdb`` and ``pg_ctl start``. Its
``postgresql_proc`` factory is not used because it puts the data directory under pytest's basetemp,
which is ``0700 root`` when the suite runs as root (as it does here and in CI), so no other user can
reach it; and PostgreSQL's binaries refuse to run as root. As root, therefore, the data directory goes in
a ``mkdtemp`` directory owned by an unprivileged user (``postgres``, which Debian's package creates,
else ``nobody``), and the executor is pointed at a two-line wrapper that runs pg_ctl as that user via
``setpriv``. As any other user pg_ctl is run directly.

No binaries: tests that need the server are skipped, or fail if ``CI`` is set, since CI installs them.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import NoReturn

import port_for
import psycopg
import pytest
from psycopg import sql

try:
    from pytest_postgresql.executors import PostgreSQLExecutor
except ImportError:  # pytest-postgresql before the executors package kept it in a module of its own
    from pytest_postgresql.executor import PostgreSQLExecutor  # type: ignore[import-not-found,no-redef]

FIXTURES = frozenset({"postgresql_server", "postgresql_url", "fresh_postgresql_url"})
"""Fixtures that start the server; tests using them get the ``postgresql`` marker."""

SUPERUSER = "postgres"
TEMPLATE = "teller_template"
"""An empty database each ``fresh_postgresql_url`` database is copied from."""

# fsync is already off (pg_ctl -F); the rest keeps a throwaway server small and quiet.
SERVER_OPTIONS = (
    "-c listen_addresses=127.0.0.1 -c synchronous_commit=off -c full_page_writes=off"
    " -c shared_buffers=16MB -c max_connections=200 -c log_min_messages=warning"
)


def in_ci() -> bool:
    """Whether the ``CI`` environment variable says this is a CI run."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def unavailable(reason: str) -> NoReturn:
    """Skip the test needing PostgreSQL; under CI fail it instead, since CI must run it."""
    if in_ci():
        pytest.fail(f"PostgreSQL is required under CI, but {reason}", pytrace=False)
    pytest.skip(f"needs PostgreSQL: {reason}")


def find_pg_ctl(configured: str | None = None) -> Path | None:
    """``--postgresql-exec`` if given, else pg_ctl on PATH, else the newest Debian /usr/lib/postgresql/N."""
    if configured:
        return Path(configured)
    on_path = shutil.which("pg_ctl")
    if on_path:
        return Path(on_path)
    versions = [p for p in Path("/usr/lib/postgresql").glob("*/bin/pg_ctl") if p.parts[-3].isdigit()]
    versions.sort(key=lambda p: int(p.parts[-3]))
    return versions[-1] if versions else None


def run_as(pg_ctl: Path, user: pwd.struct_passwd, directory: Path) -> Path:
    """A script in ``directory`` that runs ``pg_ctl`` as ``user``, for when the tests run as root."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        raise RuntimeError("running as root, and setpriv (util-linux) is missing to run pg_ctl as a user")
    wrapper = directory / "pg_ctl"
    wrapper.write_text(
        "#!/bin/sh\n"
        f"# PostgreSQL refuses to run as root: run {pg_ctl} as {user.pw_name}.\n"
        f"cd / && exec {setpriv} --reuid={user.pw_uid} --regid={user.pw_gid} --clear-groups -- "
        f'{pg_ctl} "$@"\n'
    )
    wrapper.chmod(0o755)
    return wrapper


@dataclass(frozen=True)
class PostgresServer:
    """A running PostgreSQL server accepting the superuser without a password on 127.0.0.1."""

    host: str
    port: int
    user: str = SUPERUSER
    file_copy: bool = True
    """Copy databases file by file: 2-3x faster than PostgreSQL 15's WAL_LOG default with fsync off."""

    def url(self, dbname: str) -> str:
        """The SQLAlchemy URL (psycopg 3 driver) of ``dbname`` on this server."""
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{dbname}"

    def admin(self) -> psycopg.Connection:
        """An autocommit connection to the maintenance database, for CREATE and DROP DATABASE."""
        return psycopg.connect(
            host=self.host, port=self.port, user=self.user, dbname="postgres", autocommit=True
        )

    def create_database(self, name: str, template: str = TEMPLATE) -> None:
        """Create ``name`` as a copy of ``template``."""
        query = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(name), sql.Identifier(template)
        )
        if self.file_copy:
            query += sql.SQL(" STRATEGY FILE_COPY")
        with self.admin() as conn:
            conn.execute(query)

    def drop_database(self, name: str) -> None:
        """Drop ``name``, disconnecting anything a test left connected to it."""
        with self.admin() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def unique_name(prefix: str, nodeid: str) -> str:
    """A database name unique to this call, readable in ``pg_stat_activity`` (at most 63 bytes)."""
    slug = re.sub(r"[^a-z0-9]+", "_", nodeid.rsplit("::", 1)[-1].lower()).strip("_")[:30]
    return "_".join(part for part in (prefix, slug, uuid.uuid4().hex[:12]) if part)


@pytest.fixture(scope="session")
def postgresql_server(request: pytest.FixtureRequest) -> Iterator[PostgresServer]:
    """A PostgreSQL server for the whole session: a fresh cluster in a temporary directory on a free port.

    Stopped, and its directory removed, at the end of the session whatever the tests did.
    """
    pg_ctl = find_pg_ctl(request.config.getoption("postgresql_exec", default=None))
    if pg_ctl is None or not os.access(pg_ctl, os.X_OK):
        unavailable(
            f"no pg_ctl (looked for {pg_ctl or 'pg_ctl on PATH and /usr/lib/postgresql/*/bin'}); "
            "install Debian's postgresql package, or pass --postgresql-exec=/path/to/pg_ctl"
        )
    root = Path(tempfile.mkdtemp(prefix="teller-pg-"))
    executor: PostgreSQLExecutor | None = None
    try:
        executable = pg_ctl
        if os.geteuid() == 0:
            try:
                user = pwd.getpwnam("postgres")
            except KeyError:
                user = pwd.getpwnam("nobody")
            executable = run_as(pg_ctl, user, root)
            os.chown(root, user.pw_uid, user.pw_gid)
            root.chmod(0o700)
        port = port_for.select_random()
        executor = PostgreSQLExecutor(
            executable=str(executable),
            host="127.0.0.1",
            port=port,
            datadir=str(root / "data"),
            unixsocketdir=str(root),
            logfile=str(root / "server.log"),
            startparams="-w",
            dbname=TEMPLATE,
            user=SUPERUSER,
            postgres_options=SERVER_OPTIONS,
        )
        try:
            executor.start()
        except Exception as error:
            log = root / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no server log)"
            raise RuntimeError(
                f"PostgreSQL ({pg_ctl}) did not start on port {port}: {error}\n{tail}"
            ) from error
        server = PostgresServer(host="127.0.0.1", port=port)
        with server.admin() as conn:
            # CREATE DATABASE ... STRATEGY is new in PostgreSQL 15.
            server = replace(server, file_copy=conn.info.server_version >= 150000)
        server.create_database(TEMPLATE, template="template0")
        with server.admin() as conn:
            conn.execute(sql.SQL("ALTER DATABASE {} IS_TEMPLATE true").format(sql.Identifier(TEMPLATE)))
        yield server
    finally:
        try:
            if executor is not None and executor.running():
                executor.stop()
        finally:
            shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="session")
def postgresql_url(postgresql_server: PostgresServer) -> Iterator[str]:
    """The SQLAlchemy URL of a database made empty for this session and shared by all its tests."""
    name = unique_name("session", "")
    postgresql_server.create_database(name)
    yield postgresql_server.url(name)
    postgresql_server.drop_database(name)


@pytest.fixture()
def fresh_postgresql_url(postgresql_server: PostgresServer, request: pytest.FixtureRequest) -> Iterator[str]:
    """The SQLAlchemy URL of an empty database of this test's own, dropped (connections and all) after it."""
    name = unique_name("test", request.node.nodeid)
    postgresql_server.create_database(name)
    yield postgresql_server.url(name)
    postgresql_server.drop_database(name)
