"""The decision batcher: a lone message is answered in its caller's thread, messages that arrive
while the policy runs are answered together by the worker, and the policy never runs twice at once."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest

from bot.batching import DecisionBatcher
from bot.errors import ShuttingDown


class RecordingPolicy:
    """Stands in for :class:`bot.policy.AnswerPolicy`: records each run's batch, thread and overlap;
    the first run waits for ``release`` when ``hold`` is set."""

    def __init__(self, hold: bool = False) -> None:
        self.classifier = SimpleNamespace(version="v-test")
        self.runs: list[tuple[list[str], str]] = []
        self.started = threading.Event()
        self.release = threading.Event()
        self.hold = hold
        self.active = 0
        self.most_active = 0
        self._lock = threading.Lock()

    def answer_many(self, texts: list[str]) -> list[Any]:
        with self._lock:
            self.active += 1
            self.most_active = max(self.most_active, self.active)
            first = not self.runs
            self.runs.append((list(texts), threading.current_thread().name))
        try:
            if first and self.hold:
                self.started.set()
                assert self.release.wait(10)
            return [SimpleNamespace(answer=f"re: {t}") for t in texts]
        finally:
            with self._lock:
                self.active -= 1


def test_a_lone_message_is_answered_in_its_callers_thread() -> None:
    policy = RecordingPolicy()
    batcher = DecisionBatcher(lambda: policy)  # type: ignore[arg-type, return-value]
    try:
        decision, version = batcher.decide("where is my card")
    finally:
        batcher.close()
    assert (decision.answer, version) == ("re: where is my card", "v-test")
    assert policy.runs == [(["where is my card"], threading.current_thread().name)]


def test_messages_arriving_during_a_run_wait_and_are_answered_together_by_the_worker() -> None:
    policy = RecordingPolicy(hold=True)
    batcher = DecisionBatcher(lambda: policy)  # type: ignore[arg-type, return-value]
    answers: dict[str, str] = {}

    def ask(text: str) -> None:
        answers[text] = batcher.decide(text)[0].answer

    try:
        first = threading.Thread(target=ask, args=("first",), name="caller-first")
        first.start()
        assert policy.started.wait(10)  # the lone message runs in its caller's thread and holds
        others = [threading.Thread(target=ask, args=(f"m{i}",)) for i in range(4)]
        for thread in others:
            thread.start()
        deadline = time.monotonic() + 10
        while batcher._queue.unfinished_tasks < 4 and time.monotonic() < deadline:  # counts puts
            time.sleep(0.005)
        assert batcher._queue.unfinished_tasks == 4  # all four queued behind the held run
        time.sleep(0.05)
        assert len(policy.runs) == 1  # none ran beside it
        policy.release.set()
        for thread in [first, *others]:
            thread.join(10)
    finally:
        batcher.close()
    assert answers == {t: f"re: {t}" for t in ("first", "m0", "m1", "m2", "m3")}
    assert policy.runs[0] == (["first"], "caller-first")
    assert len(policy.runs) == 2  # the four as one batch, by the worker
    assert sorted(policy.runs[1][0]) == ["m0", "m1", "m2", "m3"]
    assert policy.runs[1][1] == "teller-batcher"
    assert policy.most_active == 1


def test_a_failing_lone_run_raises_in_its_caller() -> None:
    class Failing(RecordingPolicy):
        def answer_many(self, texts: list[str]) -> list[Any]:
            raise RuntimeError("model down")

    batcher = DecisionBatcher(lambda: Failing())  # type: ignore[arg-type, return-value]
    try:
        try:
            batcher.decide("hello")
        except RuntimeError as exc:
            assert str(exc) == "model down"
        else:
            raise AssertionError("the failure was swallowed")
        # The policy is free again: the next message runs.
        assert batcher._running.acquire(blocking=False)
        batcher._running.release()
    finally:
        batcher.close()


def test_close_waits_for_a_lone_run_and_refuses_what_comes_after_at_once() -> None:
    policy = RecordingPolicy(hold=True)
    batcher = DecisionBatcher(lambda: policy)  # type: ignore[arg-type, return-value]
    answers: list[str] = []
    caller = threading.Thread(target=lambda: answers.append(batcher.decide("first")[0].answer))
    caller.start()
    assert policy.started.wait(10)  # answering inline, in the caller's thread, and held there
    closing = threading.Thread(target=batcher.close)
    closing.start()
    deadline = time.monotonic() + 10
    while not batcher._closed and time.monotonic() < deadline:  # close has begun ...
        time.sleep(0.005)
    time.sleep(0.05)
    assert closing.is_alive()  # ... and waits for the lone run ...
    started = time.monotonic()
    with pytest.raises(ShuttingDown, match="shutting down"):
        batcher.decide("too late")  # ... and refuses a new message at once, not after 60 s
    assert time.monotonic() - started < 1.0
    policy.release.set()
    closing.join(10)
    caller.join(10)
    assert not closing.is_alive()
    assert answers == ["re: first"]
    assert [texts for texts, _ in policy.runs] == [["first"]]
    batcher.close()  # idempotent


def test_what_was_queued_before_close_is_answered() -> None:
    policy = RecordingPolicy(hold=True)
    batcher = DecisionBatcher(lambda: policy)  # type: ignore[arg-type, return-value]
    answers: dict[str, str] = {}

    def ask(text: str) -> None:
        answers[text] = batcher.decide(text)[0].answer

    threads = [threading.Thread(target=ask, args=("first",))]
    threads[0].start()
    assert policy.started.wait(10)
    threads += [threading.Thread(target=ask, args=(f"m{i}",)) for i in range(3)]
    for thread in threads[1:]:
        thread.start()
    deadline = time.monotonic() + 10
    while batcher._queue.unfinished_tasks < 3 and time.monotonic() < deadline:
        time.sleep(0.005)
    closing = threading.Thread(target=batcher.close)
    closing.start()
    policy.release.set()
    for thread in [*threads, closing]:
        thread.join(10)
    assert answers == {"first": "re: first", "m0": "re: m0", "m1": "re: m1", "m2": "re: m2"}
