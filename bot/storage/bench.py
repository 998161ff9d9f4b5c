"""How many exchanges a database stores per second: the store's own ceiling, apart from the model.

Writes synthetic exchanges (customer message + reply, as :meth:`ConversationRepository.record_exchange`
does for every real message) from ``threads`` threads for ``seconds`` seconds, each with a platform
id, like Telegram and web messages, then reads a history page per conversation. Only for an empty
scratch database: it refuses one that holds messages.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from bot.choices import feedback_choices
from bot.errors import InputError
from bot.storage import NewExchange, Store


@dataclass(frozen=True)
class StoreBench:
    database: str
    threads: int
    seconds: float
    exchanges: int
    exchanges_per_s: float
    write_ms_p50: float
    write_ms_p99: float
    history_reads_per_s: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def bench_store(url: str, seconds: float = 10.0, threads: int = 8, conversations: int = 500) -> StoreBench:
    """Measure ``url`` (an empty scratch database). Raises :class:`InputError` if it holds messages."""
    store = Store(url)
    try:
        if store.conversations.count():
            raise InputError(f"{store.database.label} holds messages; bench only an empty scratch database")
        run = secrets.token_hex(3)
        latencies: list[list[float]] = [[] for _ in range(threads)]
        stop = time.monotonic() + seconds

        def write(worker: int) -> None:
            n = 0
            while time.monotonic() < stop:
                user = f"bench-{run}-{(worker * 7919 + n) % conversations}"
                started = time.perf_counter()
                store.conversations.record_exchange(
                    NewExchange(
                        channel="bench",
                        conversation=user,
                        user_id=user,
                        text="I still have not received my new card, it has been two weeks",
                        reply="Cards arrive within 5 working days; if yours has not, we can send another.",
                        platform_id=f"{run}-{worker}-{n}",
                        route="intent",
                        intent="card_arrival",
                        confidence=0.97,
                        model_version="bench",
                        latency_ms=3.0,
                        choices=tuple((c.label, c.value) for c in feedback_choices()),
                    )
                )
                latencies[worker].append((time.perf_counter() - started) * 1000)
                n += 1

        pool = [threading.Thread(target=write, args=(w,)) for w in range(threads)]
        began = time.monotonic()
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        elapsed = time.monotonic() - began
        all_ms = np.array([x for worker in latencies for x in worker])
        ids = [
            store.conversations.conversation_id("bench", f"bench-{run}-{i}")
            for i in range(min(200, conversations))
        ]
        began = time.monotonic()
        reads = 0
        for conversation_id in ids:
            if conversation_id:
                store.conversations.history(conversation_id, limit=20)
                reads += 1
        read_s = time.monotonic() - began
        return StoreBench(
            database=store.database.label,
            threads=threads,
            seconds=round(elapsed, 2),
            exchanges=int(all_ms.size),
            exchanges_per_s=round(all_ms.size / elapsed, 1),
            write_ms_p50=round(float(np.percentile(all_ms, 50)), 2) if all_ms.size else 0.0,
            write_ms_p99=round(float(np.percentile(all_ms, 99)), 2) if all_ms.size else 0.0,
            history_reads_per_s=round(reads / read_s, 1) if read_s else 0.0,
        )
    finally:
        store.close()
