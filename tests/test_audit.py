"""The audit log (append-only, inside a caller's transaction or on its own), the customers' keyed
pseudonyms, and ``teller audit``; on SQLite and on a real PostgreSQL."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from bot.cli import app
from bot.cli.privacy_admin import parse_since
from bot.errors import InputError
from bot.privacy.erasure import PSEUDONYM_KEY, Eraser, pseudonym
from bot.settings import get_settings
from bot.storage import AuditAction, AuditRepository, Clock, Database, Store


def test_entries_are_recorded_and_read_back_newest_first_with_filters(url: str) -> None:
    ticks = iter(range(1_700_000_000, 1_800_000_000, 60))  # one minute apart
    store = Store(Database(url, clock=Clock(lambda: next(ticks) * 1_000_000_000)))
    try:
        first = store.audit.record("cli:ana", AuditAction.ERASURE, "p_1", {"counts": {"messages": 2}})
        second = store.audit.record("system:retention", AuditAction.RETENTION, None, {"days": 30})
        third = store.audit.record("api:operator", "kb.change", "faq_1")
        future = store.audit.record("cli:ana", "something.new", None, {"x": [1, "é"]})
        assert (first.action, second.action, third.action) == (
            AuditAction.ERASURE,
            AuditAction.RETENTION,
            AuditAction.KB_CHANGE,
        )
        assert future.action == "something.new" and future.details == {"x": [1, "é"]}
        assert store.audit.entries() == [future, third, second, first]
        assert store.audit.entries(action=AuditAction.ERASURE) == [first]
        assert store.audit.entries(actor="cli:ana") == [future, first]
        assert store.audit.entries(since=second.at) == [future, third, second]
        assert store.audit.entries(subject="p_1") == [first]
        assert store.audit.entries(limit=2) == [future, third]
        assert first.details == {"counts": {"messages": 2}} and third.details == {}
        assert first.at < second.at < third.at
        raw = store.database.rows(text("SELECT details FROM audit_log WHERE id = :id"), {"id": first.id})
        assert json.loads(raw[0]["details"]) == {"counts": {"messages": 2}}
    finally:
        store.close()


def test_an_entry_recorded_inside_a_transaction_goes_with_it(store: Store) -> None:
    with store.database.transaction() as connection:
        kept = store.audit.record_in(connection, "cli:ana", AuditAction.RETENTION, None, {"n": 1})
    with pytest.raises(RuntimeError), store.database.transaction() as connection:
        store.audit.record_in(connection, "cli:ana", AuditAction.ERASURE, "p_x", {"n": 2})
        raise RuntimeError("the change failed: its audit entry must not stay")
    assert store.audit.entries() == [kept]
    with pytest.raises(ValueError, match="actor"):
        store.audit.record(" ", AuditAction.ERASURE)


def test_the_repository_can_only_add_and_read() -> None:
    public = {name for name in vars(AuditRepository) if not name.startswith("_")}
    assert public == {"record", "record_after", "record_in", "entries"}


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_log SET actor = 'cli:mallory'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
    ],
)
def test_the_database_itself_refuses_to_change_or_remove_an_entry(store: Store, statement: str) -> None:
    """Append-only for anyone with SQL access (migration 0012's triggers), not only in Teller's code;
    a later migration rebuilding the table would have to create them again."""
    if statement.startswith("TRUNCATE") and not store.database.is_postgresql:
        pytest.skip("SQLite has no TRUNCATE")
    entry = store.audit.record("cli:ana", AuditAction.ERASURE, "p_1", {"n": 1})
    with pytest.raises(Exception, match="append-only"), store.database.transaction() as connection:
        connection.execute(text(statement))
    assert store.audit.entries() == [entry]
    # Adding stays possible.
    assert store.audit.entries()[0] == entry and store.audit.record("cli:ana", "x.y").id > entry.id


def test_the_pseudonym_is_a_keyed_hmac_made_once_per_installation(url: str) -> None:
    store, replica = Store(url), Store(url)
    try:
        alice = pseudonym(store, "web", "alice")
        assert alice == pseudonym(replica, "web", "alice")  # one key, whichever replica made it
        assert alice != pseudonym(store, "telegram", "alice") and alice != pseudonym(store, "web", "alice2")
        key = store.deployment.get(PSEUDONYM_KEY)
        assert key is not None and len(key.value) == 64
        expected = hmac.new(bytes.fromhex(key.value), b"web:alice", hashlib.sha256).hexdigest()[:32]
        assert alice == f"p_{expected}"
        # Without the key, the plain hash of the id gives nothing away.
        assert hashlib.sha256(b"web:alice").hexdigest()[:32] not in alice
        assert store.deployment.setdefault(PSEUDONYM_KEY, "00" * 32).value == key.value
    finally:
        store.close()
        replica.close()


def test_since_accepts_iso_dates_and_times_in_any_zone() -> None:
    assert parse_since("2026-11-30") == "2026-11-30T00:00:00.000000Z"
    assert parse_since("2026-11-30T08:15Z") == "2026-11-30T08:15:00.000000Z"
    assert parse_since("2026-11-30T09:15:02.5+01:00") == "2026-11-30T08:15:02.500000Z"
    with pytest.raises(InputError, match="not an ISO date"):
        parse_since("yesterday")


# ------------------------------------------------------------------------------- teller audit

runner = CliRunner()


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A TELLER_HOME of its own (SQLite); the terminal user is robin."""
    monkeypatch.setenv("TELLER_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("TELLER_DATABASE_URL", raising=False)
    monkeypatch.setenv("LOGNAME", "robin")
    monkeypatch.setenv("USER", "robin")
    get_settings.cache_clear()
    yield tmp_path / "home"
    get_settings.cache_clear()


def test_teller_audit_lists_filters_and_finds_a_customer_by_their_id(home: Path, wide_console: None) -> None:
    store = Store(home / "teller.db")
    receipt = Eraser(store).erase("web", "alice", "api:operator")
    store.audit.record("system:retention", AuditAction.RETENTION, None, {"counts": {"messages": 3}})
    store.close()

    result = runner.invoke(app, ["audit"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    table = " ".join(result.stdout.split())
    assert "2 audit entries" in table and "api:operator" in table and "messages=3" in table
    assert receipt.subject in table and "alice" not in table

    result = runner.invoke(app, ["audit", "--json"])
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [e["action"] for e in lines] == ["retention", "erasure"]
    assert lines[1]["subject"] == receipt.subject and lines[1]["details"]["counts"]["messages"] == 0

    about = runner.invoke(app, ["audit", "--channel", "web", "--user", "alice", "--json"])
    assert [json.loads(line)["id"] for line in about.stdout.splitlines()] == [receipt.audit_id]
    nobody = runner.invoke(app, ["audit", "--channel", "web", "--user", "bob", "--json"])
    assert nobody.exit_code == 0 and nobody.stdout == ""
    only = runner.invoke(app, ["audit", "--action", "retention", "--json"])
    assert [json.loads(line)["action"] for line in only.stdout.splitlines()] == ["retention"]
    later = runner.invoke(app, ["audit", "--since", "2999-01-01"])
    assert later.exit_code == 0 and "No audit entries match." in later.stdout

    bad = runner.invoke(app, ["audit", "--action", "deleted"])
    assert bad.exit_code == 2 and "unknown action 'deleted'" in bad.stderr
    half = runner.invoke(app, ["audit", "--channel", "web"])
    assert half.exit_code == 2 and "go together" in half.stderr


def test_teller_audit_finds_a_verified_web_customer_by_the_bank_s_id(home: Path) -> None:
    """A web customer the bank's backend vouched for is stored (and erased, and pseudonymised) by
    their keyed digest (``c_…``): ``teller audit`` maps the bank's id the way ``teller forget`` and
    ``DELETE /api/customers/web/{id}`` do, so the erasure is found by the id the operator knows."""
    from bot.storage import NewExchange
    from bot.web.sessions import stored_user_id

    store = Store(home / "teller.db")
    stored = stored_user_id(store, "cust-pii-1")
    assert stored.startswith("c_")
    store.conversations.record_exchange(NewExchange("web", stored, stored, "where is my card", "On its way"))
    store.close()

    erased = runner.invoke(app, ["forget", "--channel", "web", "--user", "cust-pii-1", "--yes", "--json"])
    assert erased.exit_code == 0, erased.output
    receipt = json.loads(erased.stdout)
    assert receipt["counts"]["messages"] == 2

    about = runner.invoke(app, ["audit", "--channel", "web", "--user", "cust-pii-1", "--json"])
    assert about.exit_code == 0, about.output
    assert [json.loads(line)["id"] for line in about.stdout.splitlines()] == [receipt["audit_id"]]
    table = runner.invoke(app, ["audit", "--channel", "web", "--user", "cust-pii-1"])
    assert "No audit entries match." not in table.stdout and "cust-pii-1" not in table.stdout
    # The stored id finds the same entry; another customer's id finds none.
    by_stored = runner.invoke(app, ["audit", "--channel", "web", "--user", stored, "--json"])
    assert by_stored.stdout == about.stdout
    other = runner.invoke(app, ["audit", "--channel", "web", "--user", "cust-pii-2", "--json"])
    assert other.exit_code == 0 and other.stdout == ""


def test_teller_audit_at_80_columns_folds_rather_than_cuts(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A trial's finding: at 80 columns the pseudonym, kept on one line, left the other columns a
    few letters wide, each cut with an ellipsis ("2026-1…", "api:o…", "messa…")."""
    import importlib

    cli = importlib.import_module("bot.cli.app")
    monkeypatch.setattr(cli.out, "_width", 80)
    store = Store(home / "teller.db")
    receipt = Eraser(store).erase("web", "alice", "api:operator")
    store.close()
    result = runner.invoke(app, ["audit"])
    assert result.exit_code == 0 and "…" not in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    cells = "".join(
        "".join(part.strip() for part in line.split("│")[5:6]) for line in result.stdout.splitlines()
    )
    assert receipt.subject in cells  # whole, folded over lines


def test_teller_history_names_what_answered(home: Path, wide_console: None) -> None:
    """An FAQ answer is shown with its entry, an intent's with the intent; small talk with neither
    (the classifier's guess for a greeting, kept in the store, is noise: "faq top_up_by_cash…" was
    shown for a safe-deposit-box answer)."""
    from bot.storage import NewExchange

    store = Store(home / "teller.db")
    for said, reply, route, intent, kb_id in (
        ("can I rent a safe deposit box", "Yes, at our main branches.", "faq", "top_up_by_cash", "safe_box"),
        ("hello", "Hi! How can I help?", "smalltalk", "edit_personal_details", None),
        ("where is my card", "Cards arrive in 3-5 days.", "intent", "card_arrival", None),
    ):
        store.conversations.record_exchange(
            NewExchange("web", "c1", "u1", said, reply, route=route, intent=intent, kb_id=kb_id)
        )
    store.close()
    result = runner.invoke(app, ["history"])
    assert result.exit_code == 0, result.output
    routes = [line.split("│")[-2].strip() for line in result.stdout.splitlines() if line.count("│") > 4]
    assert [r for r in routes if r] == ["faq safe_box", "smalltalk", "intent card_arrival"]


def test_teller_history_names_the_operator_of_a_relay(home: Path, wide_console: None) -> None:
    """A trial's finding: an operator's message relayed to the customer read as Teller's, in the
    table and the JSON (the store keeps its author)."""
    from bot.storage import Direction, NewExchange, NewHandoff

    store = Store(home / "teller.db")
    _, reply = store.conversations.record_exchange(
        NewExchange("web", "c1", "u1", "a person please", "Connecting you.", route="handoff")
    )
    handoff = store.handoffs.start(NewHandoff("web", reply.conversation_id, "u1", "c1", reply.id))
    store.handoffs.record_relay(handoff.id, Direction.OUT, "Hi, Sam here", author="slack:UOPS")
    store.close()
    result = runner.invoke(app, ["history"])
    assert result.exit_code == 0, result.output
    [row] = [line for line in result.stdout.splitlines() if "Hi, Sam here" in line]
    assert "slack:UOPS" in row and "Teller" not in row
    lines = [json.loads(line) for line in runner.invoke(app, ["history", "--json"]).stdout.splitlines()]
    assert [m["author"] for m in lines if m["text"] == "Hi, Sam here"] == ["slack:UOPS"]
