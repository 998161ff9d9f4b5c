"""The audit trail of operator and admin actions (#15): knowledge-base changes with their entry ids
and actor, corrections, activations; and a failed audit write never undoes the action."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bot.cli.operations import local_actor
from bot.settings import get_settings
from bot.storage import AuditAction, CorrectionAction, NewCorrection, ReviewStatus, Store, StoreError
from tests.test_cli import json_lines, run


def _kb_changes() -> list[dict]:
    code, stdout, _ = run("audit", "--action", "kb.change", "--json")
    assert code == 0
    return json_lines(stdout)


def test_kb_add_sync_remove_are_audited_with_ids_and_actor(
    teller_env: Path, tmp_path: Path, wide_console: None
) -> None:
    actor = str(local_actor())
    md = tmp_path / "extra.md"
    md.write_text(
        "## Do you have a branch in Leeds?\nid: leeds_branch\n\nNot yet.\n\n"
        "## Do you have a branch in York?\nid: york_branch\n\nNot yet either.\n"
    )
    assert run("kb", "add", str(md), "--json")[0] == 0
    assert run("kb", "add", str(md), "--dry-run")[0] == 0  # a dry run changes nothing: not audited
    [added] = _kb_changes()
    assert added["actor"] == actor and added["details"]["command"] == "add"
    assert added["details"]["added"] == ["leeds_branch", "york_branch"]

    # Sync: export, change one answer (of the entry that answers an intent), drop York.
    exported = tmp_path / "kb.jsonl"
    assert run("kb", "export", "--out", str(exported))[0] == 0
    lines = [line for line in exported.read_text().splitlines() if '"york_branch"' not in line]
    lines = [
        line.replace('"answer": "Not yet."', '"answer": "Send your PIN to us."')
        if '"leeds_branch"' in line
        else line
        for line in lines
    ]
    exported.write_text("\n".join(lines) + "\n")
    assert run("kb", "sync", str(exported), "--yes")[0] == 0
    synced, _ = _kb_changes()
    details = synced["details"]
    assert synced["actor"] == actor and details["command"] == "sync"
    assert details["removed"] == ["york_branch"] and details["updated"] == ["leeds_branch"]
    assert details["answers_changed"] == ["leeds_branch"]
    assert "Send your PIN" not in str(details)  # ids only, never the text

    assert run("kb", "remove", "leeds_branch")[0] == 0
    removed = _kb_changes()[0]
    assert removed["subject"] == "leeds_branch" and removed["details"]["removed"] == ["leeds_branch"]
    code, stdout, _ = run("audit", "--action", "kb.change")
    assert code == 0 and "leeds_branch" in stdout
    # The lists of ids are shown (a trial found "[york_branch]" read as a style tag and dropped).
    assert "removed=[york_branch]" in stdout and "added=[leeds_branch, york_branch]" in stdout


def test_entries_named_from_a_customers_words_are_masked_in_the_audit_log(
    teller_env: Path, tmp_path: Path
) -> None:
    """An operator's entry written from a review item is named after the customer's question
    (``op_<their words>``); the append-only log would keep those words past an erasure."""
    md = tmp_path / "op.md"
    md.write_text(
        "## my zebra ate my debit card at the zoo atm\nid: op_my_zebra_ate_my_debit_card\n\nCall us.\n"
    )
    assert run("kb", "add", str(md))[0] == 0
    assert run("kb", "remove", "op_my_zebra_ate_my_debit_card")[0] == 0
    changes = _kb_changes()
    assert len(changes) == 2 and "zebra" not in str(changes)
    assert changes[0]["subject"] == "op_… (an operator's entry)"


def test_an_answer_over_the_limit_is_refused_quickly_naming_the_entry(
    teller_env: Path, tmp_path: Path
) -> None:
    big = tmp_path / "big.jsonl"
    big.write_text(
        '{"id": "pin_help", "questions": ["How do I reset my PIN?"], "answer": "' + "x" * 5_000_000 + '"}\n'
    )
    started = time.perf_counter()
    code, _, stderr = run("kb", "add", str(big))
    assert code == 2 and time.perf_counter() - started < 5
    assert "pin_help" in stderr and "8,000" in stderr and "5,000,000" in stderr
    assert _kb_changes() == []


def test_a_correction_is_audited_in_its_transaction_without_customer_text(tmp_path: Path) -> None:
    store = Store(tmp_path / "t.db")
    try:
        text = "my card is stuck in the atm, call me on 07700 900123"
        item = store.review.create(text, text, "intent", None, [])
        correction = NewCorrection(
            text, text, CorrectionAction.CHOOSE, "card_swallowed", kb_id="card_swallowed"
        )
        _, stored, _ = store.review.resolve(
            item, ReviewStatus.CHOSEN, "slack:U1", "card_swallowed", correction
        )
        assert stored is not None
        [entry] = store.audit.entries(action=AuditAction.CORRECTION)
        assert (entry.actor, entry.subject) == ("slack:U1", f"correction:{stored.id}")
        assert entry.details["correction"] == stored.id and entry.details["item"] == item
        assert (entry.details["label"], entry.details["kb_id"]) == ("card_swallowed", "card_swallowed")
        assert "atm" not in str(entry.details) and "07700" not in str(entry.details)
    finally:
        store.close()


class _Registry:
    """Stands in for the model registry: two versions, v1 active."""

    active = "v1"

    def __init__(self, root: object) -> None:
        pass

    def active_version(self) -> str:
        return _Registry.active

    def activate(self, version: str) -> Path:
        _Registry.active = version
        return Path(version)


def test_an_activation_is_audited_and_a_failed_audit_write_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot import assistant

    monkeypatch.setenv("TELLER_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    monkeypatch.setattr(assistant, "ModelRegistry", _Registry)
    store = Store(tmp_path / "t.db")
    try:
        assistant.activate_model(get_settings(), "v2", actor="cli:ana", store=store)
        [entry] = store.audit.entries(action=AuditAction.ACTIVATION)
        assert entry.actor == "cli:ana" and entry.details == {"version": "v2", "previous": "v1"}

        def broken(*args: object, **kwargs: object) -> None:
            raise StoreError("database is locked")

        monkeypatch.setattr(store.audit, "record", broken)
        assistant.activate_model(get_settings(), "v1", actor="cli:ana", store=store)  # logged, not raised
        assert store.deployment.active_model() == "v1"
    finally:
        store.close()
        get_settings.cache_clear()
