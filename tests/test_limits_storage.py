"""The abuse limits' in-memory storage: a hit starts no thread, expired entries are still swept, and
counts are the library's."""

from __future__ import annotations

import threading
import time

import pytest
from limits import parse
from limits.strategies import MovingWindowRateLimiter

from bot import abuse
from bot.abuse import AbuseLimits, LimitSettings, SweptMemoryStorage, limits_storage
from bot.errors import RateLimited


def test_memory_uris_get_the_swept_storage_and_others_the_librarys() -> None:
    for uri in ("memory://", "MEMORY://", " memory://", "memory://?anything=1", "memory:"):
        assert isinstance(limits_storage(uri), SweptMemoryStorage), uri
    assert not isinstance(limits_storage("async+memory://"), SweptMemoryStorage)
    limits = AbuseLimits(LimitSettings(storage="memory://"))
    assert isinstance(limits._limiter.storage, SweptMemoryStorage)


def test_hits_spaced_out_start_no_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    storage = limits_storage("memory://")
    limiter = MovingWindowRateLimiter(storage)
    item = parse("20/minute")
    started: list[str] = []
    real_start = threading.Thread.start

    def start(thread: threading.Thread) -> None:
        started.append(thread.name)
        real_start(thread)

    monkeypatch.setattr(threading.Thread, "start", start)
    for _ in range(5):
        assert limiter.hit(item, "customer", "web", "alice")
        time.sleep(0.03)  # longer than the library's 10 ms sweep: it would start a new timer each time
    assert started == []
    assert not limiter.test(item, "customer", "web", "alice", cost=16)  # 5 of 20 taken
    assert limiter.test(item, "customer", "web", "alice", cost=15)


def test_the_sweeper_drops_expired_entries(monkeypatch: pytest.MonkeyPatch) -> None:
    sweeper = abuse._Sweeper(interval=0.02)
    monkeypatch.setattr(abuse, "_SWEEPER", sweeper)
    storage = SweptMemoryStorage("memory://")
    limiter = MovingWindowRateLimiter(storage)
    item = parse("2/second")
    assert limiter.hit(item, "k") and limiter.hit(item, "k")
    assert not limiter.hit(item, "k")
    assert sum(map(len, storage.events.values())) == 2  # held until the window passes
    deadline = time.monotonic() + 5
    while storage.events and time.monotonic() < deadline:
        time.sleep(0.05)
    assert storage.events == {} and not storage.locks  # the key goes too, not only its events
    assert limiter.hit(item, "k")


def test_a_limit_over_the_swept_storage_still_refuses() -> None:
    limits = AbuseLimits(LimitSettings(messages="2/minute"))
    limits.message("web", "alice")
    limits.message("web", "alice")
    with pytest.raises(RateLimited):
        limits.message("web", "alice")
    limits.message("web", "bob")


def test_the_sweep_takes_the_guard_each_hit_holds(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sweep holds the storage's guard for each key (AbuseLimits' own lock): a sweep never
    runs inside a test-then-hit."""
    guard = threading.Lock()
    storage = SweptMemoryStorage("memory://", guard=guard)
    limiter = MovingWindowRateLimiter(storage)
    with guard:
        assert limiter.hit(parse("5/second"), "k")
        swept = threading.Thread(target=storage.sweep)
        swept.start()
        swept.join(0.2)
        assert swept.is_alive()  # waiting for the guard
    swept.join(5)
    assert not swept.is_alive()
    limits = AbuseLimits(LimitSettings())
    assert limits._limiter.storage.guard is limits._lock  # type: ignore[attr-defined]
