"""A load generator for the web chat API: concurrent customers, latency figures, and a check of the store."""

from __future__ import annotations

import asyncio
import random
import secrets
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np


@dataclass
class LoadResult:
    run_id: str
    users: int
    messages_per_user: int
    think_seconds: float
    sent: int
    acknowledged: int
    errors: int
    latency_ms_p50: float
    latency_ms_p95: float
    latency_ms_p99: float
    latency_ms_max: float
    seconds: float
    throughput_per_s: float
    error_samples: list[str] = field(default_factory=list)
    acknowledged_ids: list[str] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("acknowledged_ids")
        return data


@dataclass
class StoreCheck:
    acknowledged: int
    stored: int
    missing: int
    duplicated: int


def user_id(run_id: str, user: int) -> str:
    return f"load-{run_id}-{user}"


async def _customer(
    client: httpx.AsyncClient,
    url: str,
    run_id: str,
    user: int,
    texts: Sequence[str],
    count: int,
    think: float,
    rng: random.Random,
    latencies: list[float],
    acked: list[str],
    errors: list[str],
) -> None:
    if think > 0:  # customers arrive over the first pause, not all in the same millisecond
        await asyncio.sleep(rng.uniform(0, think))
    for i in range(count):
        body = {"user_id": user_id(run_id, user), "text": rng.choice(texts), "client_message_id": str(i)}
        started = time.perf_counter()
        try:
            response = await client.post(url + "/api/messages", json=body)
            elapsed = (time.perf_counter() - started) * 1000.0
            if response.status_code == 200 and response.json().get("message_id"):
                latencies.append(elapsed)
                acked.append(f"{body['user_id']}:{i}")
            else:
                errors.append(f"HTTP {response.status_code}: {response.text[:120]}")
        except httpx.HTTPError as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
        if think > 0:
            await asyncio.sleep(rng.uniform(0.5 * think, 1.5 * think))


async def run_load(
    url: str,
    texts: Sequence[str],
    users: int = 50,
    messages: int = 20,
    think: float = 0.0,
    seed: int = 0,
    timeout: float = 30.0,
) -> LoadResult:
    """``users`` customers at once, each sending ``messages`` messages and waiting for every reply."""
    run_id = secrets.token_hex(4)
    latencies: list[float] = []
    acked: list[str] = []
    errors: list[str] = []
    limits = httpx.Limits(max_connections=users, max_keepalive_connections=users)
    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
        await asyncio.gather(
            *(
                _customer(
                    client,
                    url.rstrip("/"),
                    run_id,
                    u,
                    texts,
                    messages,
                    think,
                    random.Random(seed * 1000 + u),
                    latencies,
                    acked,
                    errors,
                )
                for u in range(users)
            )
        )
    seconds = time.perf_counter() - started
    lat = np.asarray(latencies) if latencies else np.zeros(1)
    return LoadResult(
        run_id=run_id,
        users=users,
        messages_per_user=messages,
        think_seconds=think,
        sent=users * messages,
        acknowledged=len(acked),
        errors=len(errors),
        latency_ms_p50=round(float(np.percentile(lat, 50)), 2),
        latency_ms_p95=round(float(np.percentile(lat, 95)), 2),
        latency_ms_p99=round(float(np.percentile(lat, 99)), 2),
        latency_ms_max=round(float(lat.max()), 2),
        seconds=round(seconds, 2),
        throughput_per_s=round(len(acked) / seconds, 1) if seconds else 0.0,
        error_samples=errors[:5],
        acknowledged_ids=acked,
    )


def check_store(db_path: str | Path, run_id: str, acknowledged: Sequence[str]) -> StoreCheck:
    """How many acknowledged messages of the run are in the database, once each."""
    connection = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        rows = connection.execute(
            "SELECT platform_id, count(*) FROM messages WHERE channel = 'web' AND direction = 'in' "
            "AND platform_id LIKE ? GROUP BY platform_id",
            [f"load-{run_id}-%"],
        ).fetchall()
    finally:
        connection.close()
    counts = dict(rows)
    return StoreCheck(
        acknowledged=len(acknowledged),
        stored=len(counts),
        missing=sum(1 for a in acknowledged if a not in counts),
        duplicated=sum(1 for c in counts.values() if c > 1),
    )
