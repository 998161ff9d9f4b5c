"""Each review item is posted to the ops channel once (a review's finding: some were posted twice).

Two ways it happened: an item filed again for the same reply (a customer's "not helpful" on an answer
an operator had flagged, the operator's reaction added again) was posted as if it were new, since
it still held one reply; and two replicas filing the same reply at the same moment (a redelivery
taken by both) each found it new, one creating the item and the other joining it, and both posted
it. Now whoever posts an item claims it in the store first (one conditional update), so it is
posted once, by one replica; an operator's ``/teller queue`` still posts the open items on request.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import pytest

from bot.operators import Operators
from bot.ops_desk import OpsDesk
from bot.policy import AnswerPolicy
from bot.review import ReviewService
from bot.storage import ReviewReason, Store
from tests import fake_slack as sl
from tests import test_operators_slack
from tests.servers import wait_for
from tests.test_operators_slack import OPERATOR, OPS, Stack
from tests.test_review import say
from tests.test_sessions import Board

#: The fixture: the fake Slack and Telegram and Teller serving, an ops channel and one operator.
stack = test_operators_slack.stack


def _item_posts(stack: Stack, item_id: int) -> list[dict[str, Any]]:
    return [
        m
        for m in stack.slack.sent()
        if m["channel"] == OPS and str(m.get("text", "")).startswith(f"Review item #{item_id}:")
    ]


def test_an_item_filed_again_for_the_same_answer_is_not_posted_again(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.review")
    store = stack.core.store
    ops = stack.service.ops
    assert ops is not None
    stack.event(sl.dm("What's the overdraft fee?", "1700000001.000100", user="UCUSTOMER"))
    [answer] = wait_for(
        lambda: [m for m in store.conversations.history() if m.direction == "out" and m.platform_id]
    )
    assert any(value == "feedback:not_helpful" for _, value in answer.choices)
    channel, ts = (answer.platform_id or "").split(":")

    # An operator flags the answer: a new item, posted.
    stack.event(sl.reaction_event("x", channel, ts, OPERATOR))
    [item] = wait_for(lambda: store.review.items(reply_id=answer.id))
    ops.drain()
    assert len(_item_posts(stack, item.id)) == 1

    # The customer says it did not help: the same item, the same answer, one more reason.
    stack.event(sl.dm("feedback:not_helpful", "1700000002.000100", user="UCUSTOMER"))
    wait_for(lambda: ReviewReason.NOT_HELPFUL in store.review.item(item.id).reasons)
    # The operator's reaction again (taken off and put back): the flag stands as it was.
    stack.event(sl.reaction_event("x", channel, ts, OPERATOR))
    wait_for(lambda: len([r for r in caplog.records if r.getMessage() == "answer_flagged"]) == 2)
    ops.drain()
    assert [i.id for i in store.review.items(status=None)] == [item.id]
    assert len(_item_posts(stack, item.id)) == 1

    # An operator asking for the queue (`/teller review`) gets it posted, as asked; filed again, it
    # is not.
    assert stack.command("review").startswith("Posting 1 open review item(s)")
    ops.drain()
    assert len(_item_posts(stack, item.id)) == 2
    stack.event(sl.reaction_event("x", channel, ts, OPERATOR))
    wait_for(lambda: len([r for r in caplog.records if r.getMessage() == "answer_flagged"]) == 3)
    ops.drain()
    assert len(_item_posts(stack, item.id)) == 2


@pytest.fixture()
def policy(teller_env: Path) -> AnswerPolicy:
    from bot.assistant import build_policy
    from bot.settings import get_settings

    return build_policy(get_settings())


def _replica(
    url: str, policy: AnswerPolicy, barrier: threading.Barrier | None = None
) -> tuple[Store, OpsDesk, Board]:
    """One replica's ops desk over the shared database, whose filing waits at ``barrier`` once it has
    read what to file (so that two replicas read it before either writes, as a race may have it)."""
    store = Store(url)
    operators = Operators({"slack:UOPS"})
    desk = OpsDesk(store, ReviewService(store, lambda: policy, None, operators), operators)
    board = Board()
    desk.attach_board(board)
    if barrier is None:
        return store, desk, board
    read = store.review.candidates

    def candidates(*args: Any, **kwargs: Any) -> Any:
        found = read(*args, **kwargs)
        barrier.wait(timeout=30)
        return found

    setattr(store.review, "candidates", candidates)  # noqa: B010 (this instance only)
    return store, desk, board


def test_two_replicas_filing_the_same_answer_at_once_post_it_once(url: str, policy: AnswerPolicy) -> None:
    barrier = threading.Barrier(2)
    replicas = [_replica(url, policy, barrier) for _ in range(2)]
    try:
        store = replicas[0][0]
        _, handoff = say(store, "I need to speak to someone about my mortgage", route="handoff")
        errors: list[BaseException] = []

        def file(desk: OpsDesk) -> None:
            try:
                desk._file(handoff.id)  # what each replica's review worker runs for the reply
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=file, args=(desk,)) for _, desk, _ in replicas]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not errors
        [item] = store.review.items()
        assert item.message_ids == (handoff.id,)
        posted = [i for _, _, board in replicas for i in board.reviews]
        assert posted == [item.id]  # once, by one of the two
    finally:
        for replica_store, desk, _ in replicas:
            desk.close()
            replica_store.close()


def test_an_item_the_ops_channel_refused_is_posted_when_it_is_next_filed(
    url: str, policy: AnswerPolicy, caplog: pytest.LogCaptureFixture
) -> None:
    """The claim of a post that failed is given back: the item is not lost to the ops channel (it is
    posted when filed again, here for a second customer's question), and posted once."""
    store, desk, board = _replica(url, policy)
    refusals = []
    post_review = board.post_review

    def refused_once(item: Any, labels: list[str]) -> None:
        if not refusals:
            refusals.append(item.id)
            raise RuntimeError("channel_not_found")
        post_review(item, labels)

    setattr(board, "post_review", refused_once)  # noqa: B010 (this instance only)
    try:
        question = "I need to speak to someone about my mortgage"
        replies = [say(store, question, route="handoff", user=user)[1] for user in ("a", "b", "c")]
        desk._file(replies[0].id)
        [item] = store.review.items()
        assert refusals == [item.id] and board.reviews == []
        [failed] = [r.fields for r in caplog.records if r.getMessage() == "ops_job_failed"]  # type: ignore[attr-defined]
        assert failed["job"] == "_post_item" and "channel_not_found" in failed["error"]
        desk._file(replies[1].id)  # the item grows: never posted, so posted now
        desk._file(replies[2].id)  # grown again: posted already
        assert board.reviews == [item.id]
        assert store.review.item(item.id).message_ids == tuple(r.id for r in replies)
    finally:
        desk.close()
        store.close()


def test_items_stored_before_the_upgrade_count_as_posted_and_are_not_posted_again(url: str) -> None:
    """Migration 0016: an item from before it was posted when it was new (or left in the queue), so
    it is not posted again when it is next filed after the upgrade."""
    from alembic import command
    from sqlalchemy import text

    from bot.storage.database import Database, _config

    Store(url).close()
    database = Database(url, migrate=False)
    config = _config()
    with database.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0015")
    created = "2026-12-01T09:00:00.000000Z"
    with database.engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO review_items (key, text, status, created_at, updated_at) "
                "VALUES ('card lost', 'card lost', 'open', :at, :at)"
            ),
            {"at": created},
        )
    assert database.upgrade() == "0018"
    database.close()
    store = Store(url)
    try:
        [item] = store.review.items()
        with store.database.reading() as connection:
            assert connection.execute(text("SELECT posted_at FROM review_items")).scalar() == created
        assert not store.review.claim_post(item.id)
        new = store.review.create("card stolen", "card stolen", "handoff", None, [])
        assert store.review.claim_post(new) and not store.review.claim_post(new)
        store.review.release_post(new)
        assert store.review.claim_post(new)
    finally:
        store.close()
