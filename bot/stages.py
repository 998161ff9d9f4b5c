"""Where a message's time goes, stage by stage: what ``teller bench`` prints as shares and what the
``Server-Timing`` response header carries when ``TELLER_SERVER_TIMING`` is on.

A :class:`StageTimes` adds up seconds per stage name. :func:`timed` adds the wall time of a block to
the collection active in the current context (:func:`collecting`), and does nothing when none is
(the cost of an unmeasured request is one ``ContextVar`` read). The answer policy runs in the
batcher's thread for several requests at once: the batch's stages are collected there and handed to
each request of the batch (:class:`bot.batching.DecisionBatcher`), so with one message at a time, as
the benchmark sends them, they are that message's own.

Stage names (:data:`STAGES`, in the order a message meets them):

- ``limits``: the abuse limits (:mod:`bot.abuse`);
- ``store_read``: the redelivery look-up before answering (:meth:`bot.core.TellerCore.replay`);
- ``classifier``: the fine-tuned intent classifier's pass (tokenising and the ONNX run; only its
  upper layers where the base encoder's pass hands it the frozen layers' output, :mod:`nlu.trunk`);
- ``base_encoder``: the base sentence encoder's pass for retrieval and the scope signal (first, and
  with the frozen layers' output, where the classifier shares it);
- ``retrieval``: the knowledge-base search (dense, BM25, fusion);
- ``signals``: the other evidence (small talk, advice, language, nearest training example);
- ``policy``: the decision table and the reply (:meth:`bot.policy.AnswerPolicy.decide`);
- ``store_write``: storing the exchange (redaction included).

What is left of a request's time outside these is the HTTP server, the framework and the
hand-offs between threads (``teller bench`` reports it as ``http``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from time import perf_counter

#: Every stage, in the order a message meets them (see the module's docstring).
STAGES = (
    "limits",
    "store_read",
    "classifier",
    "base_encoder",
    "retrieval",
    "signals",
    "policy",
    "store_write",
)

_current: ContextVar[StageTimes | None] = ContextVar("teller_stage_times", default=None)


class StageTimes:
    """Seconds spent per stage (a stage met twice counts twice)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        #: When the collection began (``time.perf_counter()`` seconds).
        self.started = perf_counter()

    def add(self, stage: str, seconds: float) -> None:
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds

    def merge(self, other: StageTimes) -> None:
        for stage, seconds in other.seconds.items():
            self.add(stage, seconds)

    def header(self) -> str:
        """The ``Server-Timing`` header value (W3C Server Timing): ``name;dur=milliseconds`` pairs."""
        return ", ".join(f"{name};dur={seconds * 1000:.3f}" for name, seconds in self.seconds.items())


def current() -> StageTimes | None:
    """The collection active in this context, if any."""
    return _current.get()


@contextmanager
def collecting(times: StageTimes | None = None) -> Iterator[StageTimes]:
    """Make ``times`` (a new one by default) the collection :func:`timed` adds to in this context."""
    times = times if times is not None else StageTimes()
    token = _current.set(times)
    try:
        yield times
    finally:
        _current.reset(token)


@contextmanager
def timed(stage: str) -> Iterator[None]:
    """Add the block's wall time (seconds) to ``stage`` of the active collection, if there is one."""
    times = _current.get()
    if times is None:
        yield
        return
    started = perf_counter()
    try:
        yield
    finally:
        times.add(stage, perf_counter() - started)
