"""Micro-batching: concurrent requests share one model run.

Every channel thread hands its message to one worker and waits. The worker takes whatever has
queued up (without waiting for more, so a lone message is not delayed), runs the policy on the
batch, and hands each decision back. Under load this turns many small model runs fighting over two
cores into a few batched ones (the retrieval encoder's; an int8 classifier still reads each message
alone, so that its answer never depends on its batch-mates: see :mod:`nlu.classifier`); at rest it
costs nothing: a message that finds the worker idle and no one queued is answered in its own
thread, which saves two thread wake-ups (tens to hundreds of microseconds each on a busy VM). One
lock keeps the policy to one run at a time either way: messages that arrive meanwhile queue up
for the worker, which takes them as one batch once the lone run is done.

The batch's stage times (:mod:`bot.stages`) are collected in the worker and handed to each request
of it, when the request collects them. A batch that fails is answered again message by message;
each request then gets the times of its own second run only (the failed run counts as time outside
the stages).

:meth:`DecisionBatcher.close` answers what was queued before it, waits for a lone run still going in
a caller's thread, and refuses what comes after it with :class:`bot.errors.ShuttingDown` at once
(HTTP 503 with Retry-After), instead of leaving it to wait out its timeout for a worker that is gone.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future

from bot.errors import ShuttingDown
from bot.policy import AnswerPolicy, Decision
from bot.stages import StageTimes, collecting
from bot.stages import current as current_stage_times

log = logging.getLogger(__name__)

_STOP = object()

_Result = tuple[Decision, str, StageTimes]


class DecisionBatcher:
    """``decide(text)`` from any thread; one worker thread runs the (current) policy in batches."""

    def __init__(self, policy: Callable[[], AnswerPolicy], max_batch: int = 64) -> None:
        self._policy = policy
        self._max_batch = max_batch
        self._queue: queue.Queue[object] = queue.Queue()
        #: Held by whoever runs the policy: the worker, or a caller answering its lone message.
        self._running = threading.Lock()
        #: Guards ``_closed`` and the choice between answering inline and queueing, so that nothing
        #: is queued behind the worker's stop nor started inline once :meth:`close` has begun.
        self._admit = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="teller-batcher", daemon=True)
        self._thread.start()

    def decide(self, text: str, timeout: float = 60.0) -> tuple[Decision, str]:
        """The policy's decision for ``text`` and the model version that made it.

        Raises :class:`ShuttingDown` once :meth:`close` has begun, and what the policy raised for
        this message (a batch-mate's failure is not this message's: see the module docstring)."""
        future: Future[_Result] = Future()
        with self._admit:
            if self._closed:
                raise ShuttingDown("Teller is shutting down; please send your message again in a moment.")
            # Nothing queued nor taken by the worker and not yet answered (unfinished_tasks counts
            # both: the worker marks its items done once answered), so a lone message never
            # overtakes one the worker holds while it waits for the lock.
            inline = self._queue.unfinished_tasks == 0 and self._running.acquire(blocking=False)
            if not inline:
                self._queue.put((text, future))
        if inline:
            try:
                self._answer([(text, future)])
            finally:
                self._running.release()
        decision, version, stages = future.result(timeout)
        times = current_stage_times()
        if times is not None:
            times.merge(stages)
        return decision, version

    def close(self, timeout: float = 30.0) -> None:
        """Answer what was queued, wait (up to ``timeout`` seconds each) for the worker and for a
        lone run in a caller's thread, and refuse what comes after. Idempotent."""
        with self._admit:
            if self._closed:
                return
            self._closed = True
            self._queue.put(_STOP)
        self._thread.join(timeout)
        if self._running.acquire(timeout=timeout):  # a lone run still answering in its caller's thread
            self._running.release()
        else:
            log.warning("batcher_close_timeout", extra={"fields": {"timeout_s": timeout}})

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            # The lock first, then the batch: what queued while a lone message ran joins this one.
            with self._running:
                batch = [item]
                while len(batch) < self._max_batch:
                    try:
                        more = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if more is _STOP:
                        self._queue.put(_STOP)
                        break
                    batch.append(more)
                try:
                    self._answer(batch)  # type: ignore[arg-type]
                finally:
                    for _ in batch:
                        self._queue.task_done()

    def _answer(self, batch: list[tuple[str, Future[_Result]]]) -> None:
        policy = self._policy()  # read once: a model swap never splits a batch
        version = policy.classifier.version
        try:
            with collecting() as stages:
                decisions = policy.answer_many([text for text, _ in batch])
        except Exception as exc:  # one bad message must not fail its batch-mates: retry them one by one
            if len(batch) == 1:
                batch[0][1].set_exception(exc)
                return
            for one in batch:
                self._answer([one])
            return
        for (_, future), decision in zip(batch, decisions, strict=True):
            future.set_result((decision, version, stages))
