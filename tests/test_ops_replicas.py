"""The ops desk's thread claims and waiting relays with two replicas on one PostgreSQL store, and no
Slack (a recording board): a review's findings (session 54), each reproduced first.

Not covered, as they are not guaranteed: relays refused on one replica and the next accepted on
another reach the thread out of order (the waiting ones are in memory per replica); a post that
takes longer than ``THREAD_LEASE_SECONDS`` (five minutes) may be posted by another replica too."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import pytest

from bot import ops_desk
from bot.core import Incoming
from bot.operators import Operators
from bot.ops_desk import OpsDesk
from bot.review import ReviewService
from bot.storage import Handoff, NewHandoff, Store, StoredMessage
from tests.test_sessions import Board
from tests.test_storage import exchange


@dataclass
class FlakyBoard(Board):
    """The recording board; ``refuse``: every post raises (Slack down); ``hold``: open_handoff waits
    for ``go`` after reading the transcript (a slow post, Slack's own retries)."""

    refuse: bool = False
    hold: bool = False
    reading: threading.Event = field(default_factory=threading.Event)
    go: threading.Event = field(default_factory=threading.Event)
    opened_calls: int = 0

    def open_handoff(self, handoff: Handoff, transcript: list[StoredMessage]) -> str:
        self.opened_calls += 1
        if self.refuse:
            raise RuntimeError("Slack said: service_unavailable")
        if self.hold:
            self.reading.set()
            assert self.go.wait(30)
        return super().open_handoff(handoff, transcript)

    def post_in_thread(self, handoff: Handoff, text: str) -> None:
        if self.refuse:
            raise RuntimeError("Slack said: service_unavailable")
        super().post_in_thread(handoff, text)


def _replica(url: str) -> tuple[Store, OpsDesk, FlakyBoard]:
    store = Store(url)
    operators = Operators({"slack:UOPS"})
    desk = OpsDesk(store, ReviewService(store, lambda: None, None, operators), operators)  # type: ignore[arg-type]
    board = FlakyBoard()
    desk.attach_board(board)
    return store, desk, board


def _handoff(store: Store, user: str = "tg-9") -> Handoff:
    _, reply = exchange(store, "I need a person", user=user, channel="telegram")
    return store.handoffs.start(NewHandoff("telegram", reply.conversation_id, user, user))


def _said(user: str, text: str, n: int) -> Incoming:
    return Incoming("telegram", user, user, f"{user}:{n}", text)


@pytest.fixture()
def pg(fresh_postgresql_url: str) -> str:
    Store(fresh_postgresql_url).close()  # migrate
    return fresh_postgresql_url


def test_an_erased_customers_waiting_relay_is_dropped(pg: str) -> None:
    """A customer erased while their message waits in memory (Slack refused it): the words are
    never posted, and dropped at the next sweep (a review found them kept and retried every minute
    until the process stopped)."""
    from bot.privacy.erasure import Eraser

    store, desk, board = _replica(pg)
    try:
        handoff = _handoff(store)
        store.handoffs.set_thread(handoff.id, "COPS", "1700000000.000100")
        board.refuse = True
        desk.relay_in(_said("tg-9", "my PIN is not the issue, my card number is 4929 1234 5678 9012", 1))
        desk.drain()
        assert desk.retry_relays() == 1  # waiting
        desk.drain()
        receipt = Eraser(store).erase("telegram", "tg-9", "test")
        desk.customer_erased(receipt.open_threads)
        board.refuse = False
        for _ in range(3):  # three sweeps after the erasure
            desk.retry_relays()
            desk.drain()
        assert not any("4929" in t for t in board.in_thread)
        assert desk.retry_relays() == 0, f"still pending after erasure: {desk._pending_relays}"
    finally:
        desk.close()
        store.close()


def test_a_relay_while_another_replica_opens_the_thread_waits_for_it(
    pg: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replica B (the sweep) is posting a handoff's thread when the customer's next message
    reaches replica A: A keeps it until the thread is recorded and posts it with its next sweep (a
    review found it dropped, and the thread read before it)."""
    monkeypatch.setattr(ops_desk, "THREAD_LEASE_SECONDS", 0)
    store_a, desk_a, board_a = _replica(pg)
    store_b, desk_b, board_b = _replica(pg)
    try:
        handoff = _handoff(store_a)
        board_b.hold = True
        assert desk_b.open_missing_threads() == 1  # B's sweep: the first post was refused earlier
        assert board_b.reading.wait(30)  # B has read the transcript, the post is on its way
        desk_a.relay_in(_said("tg-9", "Someone took 900 GBP, please block my card", 1))
        desk_a.drain()
        board_b.go.set()
        desk_b.drain()
        assert store_a.handoffs.get(handoff.id).thread_ts is not None
        assert desk_a.retry_relays() == 1  # A's next sweep: it waited for the thread
        desk_a.drain()
        shown = [t for opening in board_b.openings for t in opening] + board_a.in_thread + board_b.in_thread
        assert any("900 GBP" in t for t in shown), f"the ops channel shows only {shown}"
    finally:
        for d in (desk_a, desk_b):
            d.close()
        store_a.close()
        store_b.close()


def test_a_database_outage_after_the_post_never_posts_the_thread_twice(
    pg: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The thread is posted, then recording it fails for longer than ``_retrying``'s tries (a
    PostgreSQL failover): the sweep records it when the database is back, and never posts the
    handoff a second time (a review found it posted twice once the lease lapsed)."""
    from bot.storage import StoreError

    monkeypatch.setattr(ops_desk, "THREAD_LEASE_SECONDS", 1)
    store, desk, board = _replica(pg)
    try:
        handoff = _handoff(store)
        real = store.handoffs.set_thread
        down = [True]

        def set_thread(*args: Any, **kwargs: Any) -> Any:
            if down[0]:
                raise StoreError("could not connect to server: Connection refused")
            return real(*args, **kwargs)

        store.handoffs.set_thread = set_thread  # type: ignore[method-assign]
        desk._later(desk._open_thread, handoff.id)
        desk.drain(60)
        down[0] = False  # the database is back
        import time

        time.sleep(1.2)
        desk.open_missing_threads()  # the next minute's sweep
        desk.drain(60)
        assert len(board.threads) == 1, f"the handoff was posted {len(board.threads)} times"
    finally:
        desk.close()
        store.close()


def test_two_replicas_sweeping_at_once_post_once(pg: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Both replicas' sweeps find the same threadless handoff; the claim lets one post."""
    import time

    monkeypatch.setattr(ops_desk, "THREAD_LEASE_SECONDS", 1)
    replicas = [_replica(pg) for _ in range(2)]
    try:
        handoff = _handoff(replicas[0][0])
        time.sleep(1.2)
        for _, desk, _ in replicas:
            desk._worker.submit(time.sleep, 0.3)  # both start together
        assert [desk.open_missing_threads() for _, desk, _ in replicas] == [1, 1]
        for _, desk, _ in replicas:
            desk.drain()
        assert sum(len(board.threads) for _, _, board in replicas) == 1
        assert replicas[1][0].handoffs.get(handoff.id).thread_ts is not None
    finally:
        for store, desk, _ in replicas:
            desk.close()
            store.close()


def test_a_refused_post_gives_the_claim_back_and_expiry_stays_out_of_the_channel(pg: str) -> None:
    """A refused post gives the claim back; a threadless handoff expiring posts no top-level
    warning; the closed handoff is never posted after."""
    store, desk, board = _replica(pg)
    try:
        handoff = _handoff(store)
        board.refuse = True
        desk._later(desk._open_thread, handoff.id)
        desk.drain()
        assert store.handoffs.get(handoff.id).thread_claimed_at is None
        desk.idle_minutes = 0
        assert [h.id for h in desk.expire_idle()] == [handoff.id]
        board.refuse = False
        desk.drain()
        assert board.warnings == []
        ops_desk.THREAD_LEASE_SECONDS, lease = 0, ops_desk.THREAD_LEASE_SECONDS
        try:
            assert desk.open_missing_threads() == 0
        finally:
            ops_desk.THREAD_LEASE_SECONDS = lease
        desk._later(desk._open_thread, handoff.id)
        desk.drain()
        assert board.threads == []
    finally:
        desk.close()
        store.close()


def test_sweeps_queue_one_post_per_handoff_while_slack_is_down(
    pg: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Slack down: a sweep does not queue again a handoff whose post is still queued on this
    replica (a review found the worker's backlog growing by sweeps x handoffs)."""
    import time

    monkeypatch.setattr(ops_desk, "THREAD_LEASE_SECONDS", 0)
    store, desk, board = _replica(pg)
    try:
        for i in range(10):
            _handoff(store, user=f"tg-{i}")
        board.refuse = True
        real_open = board.open_handoff

        def slow_refusal(*args: Any) -> str:
            time.sleep(0.05)  # the client's retries (seconds, in truth)
            return real_open(*args)

        board.open_handoff = slow_refusal  # type: ignore[method-assign]
        desk._worker.submit(time.sleep, 0.5)  # the worker busy for a moment
        for _ in range(3):  # three minutes' sweeps
            desk.open_missing_threads()
        desk.drain(60)
        assert board.opened_calls == 10, f"{board.opened_calls} posts tried for 10 handoffs in 3 sweeps"
    finally:
        desk.close()
        store.close()


def test_a_late_thread_does_not_post_again_what_it_opened_with(
    pg: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first post refused, the customer writes meanwhile (it waits), the sweep opens the thread
    with the latest messages, that one included: recording the thread does not post it again."""
    monkeypatch.setattr(ops_desk, "THREAD_LEASE_SECONDS", 0)
    store, desk, board = _replica(pg)
    try:
        handoff = _handoff(store)
        board.refuse = True
        desk._later(desk._open_thread, handoff.id)
        desk.drain()
        desk.relay_in(_said("tg-9", "someone spent 900 GBP", 1))
        desk.drain()
        board.refuse = False
        assert desk.open_missing_threads() == 1
        desk.drain()
        assert any("900 GBP" in t for opening in board.openings for t in opening)
        assert not any("900 GBP" in t for t in board.in_thread)
        assert desk.retry_relays() == 0
    finally:
        desk.close()
        store.close()
