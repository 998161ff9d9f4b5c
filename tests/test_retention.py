"""Retention (``bot.privacy.retention``), on SQLite and on a real PostgreSQL: messages older than the
cutoff go with what hangs off them, newer ones and everything they need stay; the cutoff's boundary;
dry runs; the outbox emptied after a day whatever the setting; the audit entry; the periodic
service; ``teller retention run``."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from bot.cli import app
from bot.core import TellerCore
from bot.errors import ConfigError, InputError
from bot.policy import AnswerPolicy
from bot.privacy.retention import LOCK, Retention, RetentionService
from bot.settings import get_settings
from bot.storage import (
    AuditAction,
    Clock,
    CorrectionAction,
    Database,
    DeliveryKind,
    Direction,
    NewCorrection,
    NewExchange,
    NewHandoff,
    ReviewReason,
    ReviewSource,
    ReviewStatus,
    Store,
    StoredMessage,
    schema,
)
from bot.web.app import create_app

DAY = 86_400
HOUR = 3_600
NOW = 1_800_000_000  # 2027-01-15, seconds
OPERATOR = "slack:UOPS"


class FakeTime:
    """``time_ns`` for the store's clock, set by the test (microsecond steps)."""

    def __init__(self, seconds: float) -> None:
        self.micros = int(seconds * 1_000_000)

    def __call__(self) -> int:
        return self.micros * 1000

    def at(self, seconds: float) -> FakeTime:
        self.micros = int(seconds * 1_000_000)
        return self


@pytest.fixture()
def clock_() -> FakeTime:
    return FakeTime(NOW)


@pytest.fixture()
def store(url: str, clock_: FakeTime) -> Iterator[Store]:
    opened = Store(Database(url, clock=Clock(clock_)))
    yield opened
    opened.close()


def say(store: Store, user: str, text_: str, route: str = "intent") -> tuple[StoredMessage, StoredMessage]:
    return store.conversations.record_exchange(
        NewExchange("web", user, user, text_, f"answer to {text_}", route=route, confidence=0.9)
    )


def keep_in_outbox(store: Store, message_id: str) -> None:
    with store.database.transaction() as connection:
        connection.execute(
            schema.outbox.insert().values(
                message_id=message_id, text="as written", created_at=store.database.clock.now()
            )
        )


def ids(store: Store, table: Any, column: str = "id") -> set[str]:
    with store.database.reading() as connection:
        return {str(v) for v in connection.execute(select(table.c[column])).scalars()}


def dump(store: Store) -> str:
    with store.database.reading() as connection:
        return json.dumps(
            {
                t.name: [[str(v) for v in r] for r in connection.execute(select(t))]
                for t in schema.metadata.sorted_tables
            }
        )


def populate(store: Store, clock_: FakeTime) -> dict[str, Any]:
    """Old (40 days) and recent rows; see each line. Leaves the clock at NOW."""
    seen: dict[str, Any] = {}
    clock_.at(NOW - 40 * DAY)
    # Ann: an old exchange with feedback, a flag, a delivery and its outbox row; an old closed handoff
    # (with relays and its "closed" notice); a review item of her answer only, settled with a correction.
    ann_in, ann_out = say(store, "ann", "old question", route="handoff")
    store.feedback.add_feedback(ann_out.id, False, "no")
    store.feedback.add_flag(ann_out.id, None, OPERATOR, "command")
    store.deliveries.begin(ann_out.id, DeliveryKind.REPLY, "web", "ann")
    store.deliveries.delivered(ann_out.id, ["p1"], attempts=1)
    keep_in_outbox(store, ann_out.id)
    handoff = store.handoffs.start(NewHandoff("web", ann_out.conversation_id, "ann", "ann", ann_out.id))
    store.handoffs.record_relay(handoff.id, Direction.IN, "hello?")
    store.handoffs.record_relay(handoff.id, Direction.OUT, "hi", author=OPERATOR)
    store.handoffs.close(handoff.id, OPERATOR)
    store.deliveries.begin(f"{handoff.id}:closed", DeliveryKind.NOTICE, "web", "ann")
    ann_item = store.review.create(
        "old question",
        ann_in.text,
        "handoff",
        None,
        [ReviewSource(ann_out.id, ann_in.id, ann_in.text, ReviewReason.FLAGGED)],
    )
    store.review.resolve(
        ann_item,
        ReviewStatus.CHOSEN,
        OPERATOR,
        "card_arrival",
        NewCorrection(ann_in.text, "old question", CorrectionAction.CHOOSE, label="card_arrival"),
    )
    # Ben: an old question merged with Cat's recent one (below), Ben's text first.
    ben_in, ben_out = say(store, "ben", "is my card lost", route="handoff")
    store.feedback.add_feedback(ben_out.id, False, None)
    # Dan: an old conversation whose handoff is still open. Fay: old messages, handoff closed recently.
    _, dan_out = say(store, "dan", "dan asks", route="handoff")
    dan_handoff = store.handoffs.start(NewHandoff("web", dan_out.conversation_id, "dan", "dan", dan_out.id))
    _, fay_out = say(store, "fay", "fay asks", route="handoff")
    fay_handoff = store.handoffs.start(NewHandoff("web", fay_out.conversation_id, "fay", "fay", fay_out.id))
    # Eve: an old exchange, then a recent one (below) in the same conversation.
    eve_old = say(store, "eve", "eve long ago")
    # A delivery record of no stored message (an interview turn's), old.
    store.deliveries.begin("turn:old", DeliveryKind.NOTICE, "slack", "D1")

    clock_.at(NOW - 30 * HOUR)
    eve_new = say(store, "eve", "eve yesterday")
    keep_in_outbox(store, eve_new[1].id)  # over a day in the outbox: goes, the message stays
    store.deliveries.begin("turn:new", DeliveryKind.NOTICE, "slack", "D1")
    clock_.at(NOW - 2 * DAY)
    store.handoffs.close(fay_handoff.id, OPERATOR)
    clock_.at(NOW - 2 * HOUR)
    cat_in, cat_out = say(store, "cat", "is my card lost?", route="handoff")
    keep_in_outbox(store, cat_out.id)
    sources = [
        ReviewSource(ben_out.id, ben_in.id, ben_in.text, ReviewReason.HANDOFF),
        ReviewSource(cat_out.id, cat_in.id, cat_in.text, ReviewReason.HANDOFF),
    ]
    mixed = store.review.create("is my card lost", ben_in.text, "handoff", None, sources)
    clock_.at(NOW)
    seen.update(
        ann_item=ann_item,
        mixed=mixed,
        cat=cat_in.text,
        kept_messages={eve_new[0].id, eve_new[1].id, cat_in.id, cat_out.id},
        old_messages={ann_in.id, ann_out.id, ben_in.id, ben_out.id, eve_old[0].id, eve_old[1].id},
        handoffs={dan_handoff.id, fay_handoff.id},
        conversations={
            dan_out.conversation_id,
            fay_out.conversation_id,
            eve_old[0].conversation_id,
            cat_in.conversation_id,
        },
        outbox={cat_out.id},
    )
    return seen


EXPECTED = {
    "messages": 12,  # ann 2 + her 2 relays, ben 2, dan 2, fay 2, eve's old 2
    "conversations": 2,  # ann's and ben's; dan's and fay's have handoffs, eve's and cat's messages
    "feedback": 2,
    "flags": 1,
    "review_sources": 2,
    "review_items": 1,
    "review_items_rewritten": 1,
    "corrections_unlinked": 1,
    "proposals": 0,
    "handoffs": 1,
    "deliveries": 3,  # ann's reply, her handoff's notice, the old interview turn's
    "outbox": 2,  # ann's (with her message), eve's recent reply's (over a day old)
    "outcomes": 0,
    "briefs_rewritten": 0,
    "brief_files_rewritten": 0,
}


def test_a_run_removes_what_is_older_than_the_cutoff_and_keeps_the_rest(
    store: Store, clock_: FakeTime
) -> None:
    world = populate(store, clock_)
    retention = Retention(store, batch=3)  # several batches, as a big first run would take
    before = dump(store)
    preview = retention.run(30, "cli:robin", dry_run=True)
    assert preview.counts == EXPECTED and preview.dry_run and preview.audit_id is None
    assert dump(store) == before and store.audit.entries(action=AuditAction.RETENTION) == []

    report = retention.run(30, "cli:robin")
    assert report.counts == EXPECTED and report.days == 30
    assert report.cutoff == "2026-12-16T08:00:00.000000Z"  # NOW - 30 days
    assert ids(store, schema.messages) == world["kept_messages"]
    assert ids(store, schema.handoffs) == world["handoffs"]
    assert ids(store, schema.conversations) == world["conversations"]
    assert ids(store, schema.outbox, "message_id") == world["outbox"]
    assert ids(store, schema.deliveries, "message_id") == {"turn:new"}
    assert ids(store, schema.feedback) == set() and ids(store, schema.flags) == set()
    # The settled item of Ann's answer is gone; its correction stays, as training data, unlinked.
    [correction] = store.feedback.corrections()
    assert correction.item_id is None and correction.label == "card_arrival" and correction.author == OPERATOR
    assert [i.id for i in store.review.items(status=None)] == [world["mixed"]]
    mixed = store.review.item(world["mixed"])
    assert mixed.text == world["cat"] and mixed.count == 1

    [entry] = store.audit.entries(action=AuditAction.RETENTION)
    assert (entry.action, entry.actor, entry.subject, entry.id) == (
        AuditAction.RETENTION,
        "cli:robin",
        None,
        report.audit_id,
    )
    assert entry.details["counts"] == EXPECTED and entry.details["days"] == 30
    # Nothing left to do: a second run removes nothing (and, run by hand, is audited all the same).
    again = retention.run(30, "cli:robin")
    assert again.total == 0 and len(store.audit.entries(action=AuditAction.RETENTION)) == 2


def test_the_cutoff_is_exclusive(store: Store, clock_: FakeTime) -> None:
    x = NOW - DAY
    clock_.at(x - 0.00001)
    older = say(store, "u1", "just before")
    clock_.at(x)
    at_cutoff = say(store, "u2", "right at the cutoff")
    assert at_cutoff[0].created_at == "2027-01-14T08:00:00.000000Z"
    clock_.at(x + DAY)
    report = Retention(store).run(1)
    assert report.cutoff == at_cutoff[0].created_at
    assert report.counts["messages"] == 2 and report.counts["conversations"] == 1
    assert ids(store, schema.messages) == {at_cutoff[0].id, at_cutoff[1].id}
    assert store.conversations.conversation_id("web", older[0].user_id) is None


def test_quotes_of_messages_past_their_time_leave_the_briefs(
    store: Store, clock_: FakeTime, tmp_path: Path
) -> None:
    """A brief written while a message was kept quotes it; once the message is past retention, so
    is the quote: “[erased]” in the brief rows (each counted once, however many batches touch it)
    and in their files, the newer messages' quotes kept; a dry run counts and changes nothing."""
    from tests.test_erasure import record_brief

    root = tmp_path / "briefs"
    clock_.at(NOW - 40 * DAY)
    say(store, "u1", "where is my card 156", route="handoff")
    say(store, "u2", "my card 160 never came", route="handoff")
    clock_.at(NOW - 5 * DAY)
    say(store, "u3", "where is my card 157", route="handoff")
    for _ in range(2):
        record_brief(store, root, ["where is my card 156", "my card 160 never came", "where is my card 157"])
    clock_.at(NOW)
    page = root / "iv_1" / "brief.html"
    before = page.read_bytes()

    preview = Retention(store, batch=1, briefs=root).run(30, dry_run=True)
    assert preview.counts["briefs_rewritten"] == 2 and preview.counts["brief_files_rewritten"] == 1
    assert page.read_bytes() == before

    report = Retention(store, batch=1, briefs=root).run(30)
    assert report.counts["messages"] == 4
    assert report.counts["briefs_rewritten"] == 2 and report.counts["brief_files_rewritten"] == 1
    for text in [b.markdown for b in store.interviews.briefs("iv_1")] + [page.read_text(encoding="utf-8")]:
        assert "card 156" not in text and "card 160" not in text and "where is my card 157" in text
    assert store.audit.entries(action=AuditAction.RETENTION)[0].details["counts"]["briefs_rewritten"] == 2
    assert Retention(store, briefs=root).run(30).counts["briefs_rewritten"] == 0


def test_an_erasure_committed_during_a_run_still_reaches_the_brief_file(
    store: Store, clock_: FakeTime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Retention rewrites files at the end of its run; an erasure that commits (and rewrites files)
    meanwhile finds the file on an older version of the brief than its row. Each erases its own
    texts from whatever the file holds, so neither customer stays quoted in ``brief.md`` nor
    ``brief.html``, whichever order they reach it in."""
    from bot.privacy.erasure import Eraser
    from tests.test_erasure import record_brief

    root = tmp_path / "briefs"
    clock_.at(NOW - 40 * DAY)
    say(store, "u1", "where is my card 156", route="handoff")
    clock_.at(NOW - 5 * DAY)
    say(store, "alice", "my card 160 never came", route="handoff")
    say(store, "u3", "where is my card 157", route="handoff")
    record_brief(store, root, ["where is my card 156", "my card 160 never came", "where is my card 157"])
    clock_.at(NOW)
    files = Retention._files
    receipts = []

    def erasure_first(self: Retention, briefs: Any, dry_run: bool = False) -> int:
        if not dry_run:
            receipts.append(Eraser(store, root).erase("web", "alice", "cli:robin"))
        return files(self, briefs, dry_run)

    monkeypatch.setattr(Retention, "_files", erasure_first)
    report = Retention(store, briefs=root).run(30)
    assert report.counts["messages"] == 2 and report.counts["brief_files_rewritten"] == 1
    assert receipts[0].counts["brief_files_rewritten"] == 1
    for name in ("brief.md", "brief.html"):
        text = (root / "iv_1" / name).read_text(encoding="utf-8")
        assert "card 156" not in text and "card 160" not in text and "where is my card 157" in text
    assert [b.markdown for b in store.interviews.briefs("iv_1")] == [
        (root / "iv_1" / "brief.md").read_text(encoding="utf-8")
    ]


def test_corrections_made_straight_from_old_messages_stay_unlinked(store: Store, clock_: FakeTime) -> None:
    clock_.at(NOW - 40 * DAY)
    old, _ = say(store, "u1", "old loan question")
    clock_.at(NOW - HOUR)
    new, _ = say(store, "u2", "new loan question")
    k, p = schema.corrections, schema.correction_proposals
    now = store.database.clock.now()
    with store.database.transaction() as connection:
        common = {"action": "choose", "label": "loan", "author": OPERATOR, "created_at": now}
        connection.execute(k.insert().values(text=old.text, key="old", message_id=old.id, **common))
        connection.execute(k.insert().values(text=new.text, key="new", message_id=new.id, **common))
        for message in (old, new):
            connection.execute(
                p.insert().values(
                    correction_id=1,
                    message_id=message.id,
                    text=message.text,
                    key=message.text,
                    status="open",
                    created_at=now,
                )
            )
    clock_.at(NOW)
    report = Retention(store).run(30)
    assert (report.counts["corrections_unlinked"], report.counts["proposals"]) == (1, 1)
    assert [(c.text, c.label) for c in store.feedback.corrections()] == [
        (new.text, "loan"),
        (old.text, "loan"),  # training data: kept, with its words and label
    ]
    assert {r["message_id"] for r in store.database.rows(select(k.c.message_id))} == {None, new.id}
    assert [r["message_id"] for r in store.database.rows(select(p.c.message_id))] == [new.id]


def test_the_outbox_is_emptied_after_a_day_with_retention_off(store: Store, clock_: FakeTime) -> None:
    clock_.at(NOW - 25 * HOUR)
    _, stale = say(store, "u1", "a day and more ago")
    keep_in_outbox(store, stale.id)
    clock_.at(NOW - 23 * HOUR)
    _, fresh = say(store, "u2", "less than a day ago")
    keep_in_outbox(store, fresh.id)
    clock_.at(NOW)
    report = Retention(store).run(None, "system:retention", audit_empty=False)
    assert report.cutoff is None and report.counts["outbox"] == 1 and report.total == 1
    assert ids(store, schema.outbox, "message_id") == {fresh.id}
    assert len(ids(store, schema.messages)) == 4  # retention is off: every message stays
    [entry] = store.audit.entries(action=AuditAction.RETENTION)
    assert entry.details["counts"]["outbox"] == 1 and entry.details["days"] is None
    # Nothing to sweep, retention off, the periodic job: no audit entry for an empty run.
    assert Retention(store).run(None, "system:retention", audit_empty=False).audit_id is None
    assert len(store.audit.entries(action=AuditAction.RETENTION)) == 1
    with pytest.raises(InputError, match="at least 1 day"):
        Retention(store).run(0)


def test_the_periodic_service_runs_on_one_replica_and_stops_cleanly(store: Store, clock_: FakeTime) -> None:
    populate(store, clock_)
    other_replica = store.database.try_lock(LOCK)
    assert other_replica is not None
    service = RetentionService(store, 30, interval=0.05, first_run_after=0.0)
    assert service.run_once() is None  # another replica holds the lock: this one skips
    assert len(ids(store, schema.messages)) == 16
    other_replica.release()

    asyncio.run(service.start())
    deadline = time.monotonic() + 20
    while service.runs < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    asyncio.run(service.stop())
    assert service.runs >= 3 and service._thread is None
    runs = service.runs
    time.sleep(0.2)
    assert service.runs == runs  # stopped means stopped
    assert len(ids(store, schema.messages)) == 4
    entries = store.audit.entries(action=AuditAction.RETENTION)
    assert len(entries) >= 3 and {e.actor for e in entries} == {"system:retention"}
    assert entries[-1].details["counts"]["messages"] == 12  # the first run did the work
    assert sum(e.details["counts"]["messages"] for e in entries) == 12


def test_the_server_starts_and_stops_the_service(tmp_path: Path) -> None:
    store = Store(tmp_path / "t.db")
    core = TellerCore(cast(AnswerPolicy, None), store)
    service = RetentionService(store, None, interval=0.05, first_run_after=0.0)
    try:
        with TestClient(create_app(core, background=[service])):
            deadline = time.monotonic() + 20
            while service.runs < 2 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert service.runs >= 2 and service._thread is not None
        assert service._thread is None
        assert (
            store.audit.entries(action=AuditAction.RETENTION) == []
        )  # retention off and nothing in the outbox: nothing to record
    finally:
        core.close()


def test_the_setting_is_a_number_of_days_at_least_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TELLER_RETENTION_DAYS", raising=False)
    get_settings.cache_clear()
    try:
        assert get_settings().retention_days is None
        for bad in ("0", "-3", "a month"):
            monkeypatch.setenv("TELLER_RETENTION_DAYS", bad)
            get_settings.cache_clear()
            with pytest.raises(ConfigError, match="TELLER_RETENTION_DAYS"):
                get_settings()
        monkeypatch.setenv("TELLER_RETENTION_DAYS", "90")
        get_settings.cache_clear()
        assert get_settings().retention_days == 90
    finally:
        get_settings.cache_clear()


# ------------------------------------------------------------------------------- teller retention

runner = CliRunner()


def test_teller_retention_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, wide_console: None) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("TELLER_HOME", str(home))
    monkeypatch.delenv("TELLER_DATABASE_URL", raising=False)
    monkeypatch.delenv("TELLER_RETENTION_DAYS", raising=False)
    monkeypatch.setenv("LOGNAME", "robin")
    monkeypatch.setenv("USER", "robin")
    get_settings.cache_clear()
    real_now = time.time()
    fake = FakeTime(real_now - 40 * DAY)
    store = Store(Database(home / "teller.db", clock=Clock(fake)))
    say(store, "old", "from long ago")
    fake.at(real_now - 10)
    say(store, "new", "just now")
    store.close()
    try:
        off = runner.invoke(app, ["retention", "run", "--json"])
        assert off.exit_code == 0, off.output
        # A period past any date (it printed "stored before -271764-03-22") is refused up front.
        huge = runner.invoke(app, ["retention", "run", "--days", "100000000", "--dry-run"])
        assert huge.exit_code == 2 and "36500" in huge.output
        assert json.loads(off.stdout)["cutoff"] is None and json.loads(off.stdout)["counts"]["messages"] == 0

        monkeypatch.setenv("TELLER_RETENTION_DAYS", "30")
        get_settings.cache_clear()
        dry = runner.invoke(app, ["retention", "run", "--dry-run", "--json"])
        assert dry.exit_code == 0 and json.loads(dry.stdout)["counts"]["messages"] == 2
        done = runner.invoke(app, ["retention", "run"], env={"COLUMNS": "200"})
        assert done.exit_code == 0, done.output
        assert "(30 days)" in done.stdout and "Audit entry #2." in done.stdout

        store = Store(home / "teller.db")
        try:
            assert store.conversations.count() == 2
            assert [e.actor for e in store.audit.entries(action=AuditAction.RETENTION)] == ["cli:robin"] * 2
            lease = store.database.try_lock(LOCK)
            busy = runner.invoke(app, ["retention", "run", "--days", "7"])
            assert busy.exit_code == 2 and "in progress" in busy.stderr
            assert lease is not None
            lease.release()
        finally:
            store.close()
        bad = runner.invoke(app, ["retention", "run", "--days", "0"])
        assert bad.exit_code == 2
    finally:
        get_settings.cache_clear()
