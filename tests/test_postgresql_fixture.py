"""The PostgreSQL fixtures give a real server: fresh, separate databases and server-side locks."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.pg import PostgresServer, unique_name

pytestmark = pytest.mark.postgresql

LOCK_KEY = 424242


def test_session_url_reaches_a_real_server(postgresql_url: str) -> None:
    url = make_url(postgresql_url)
    assert url.drivername == "postgresql+psycopg"
    assert url.host == "127.0.0.1"
    engine = create_engine(postgresql_url)
    try:
        with engine.connect() as conn:
            version = conn.execute(text("SELECT version()")).scalar_one()
            assert conn.execute(text("SELECT current_database()")).scalar_one() == url.database
    finally:
        engine.dispose()
    assert version.startswith("PostgreSQL ")


@pytest.fixture()
def other_fresh_url(postgresql_server: PostgresServer, request: pytest.FixtureRequest) -> str:
    """A second empty database for this test (``fresh_postgresql_url`` has one value per test)."""
    name = unique_name("other", request.node.nodeid)
    postgresql_server.create_database(name)
    request.addfinalizer(lambda: postgresql_server.drop_database(name))
    return postgresql_server.url(name)


def user_tables(url: str) -> list[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "SELECT tablename FROM pg_tables"
                    " WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
                )
            )
            return [row[0] for row in rows]
    finally:
        engine.dispose()


def test_fresh_databases_are_distinct_and_empty(
    fresh_postgresql_url: str, other_fresh_url: str, postgresql_url: str
) -> None:
    urls = {fresh_postgresql_url, other_fresh_url, postgresql_url}
    assert len({make_url(u).database for u in urls}) == 3
    assert user_tables(fresh_postgresql_url) == []
    assert user_tables(other_fresh_url) == []

    engine = create_engine(fresh_postgresql_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE note (id integer PRIMARY KEY, body text NOT NULL)"))
            conn.execute(text("INSERT INTO note VALUES (1, 'only here')"))
    finally:
        engine.dispose()
    assert user_tables(fresh_postgresql_url) == ["note"]
    assert user_tables(other_fresh_url) == []


def test_each_test_gets_its_own_database(fresh_postgresql_url: str) -> None:
    # Runs after the test above created a table in its database: this one starts empty again.
    assert user_tables(fresh_postgresql_url) == []


def test_advisory_lock_is_held_by_the_server(fresh_postgresql_url: str) -> None:
    engine = create_engine(fresh_postgresql_url)
    try:
        with engine.connect() as first, engine.connect() as second:
            try_lock = text("SELECT pg_try_advisory_lock(:key)")
            assert first.execute(try_lock, {"key": LOCK_KEY}).scalar_one() is True
            assert second.execute(try_lock, {"key": LOCK_KEY}).scalar_one() is False
            assert first.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": LOCK_KEY}).scalar_one()
            assert second.execute(try_lock, {"key": LOCK_KEY}).scalar_one() is True
            second.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": LOCK_KEY})
    finally:
        engine.dispose()
