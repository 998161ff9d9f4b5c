"""Latency, throughput, memory and load time of a served intent model."""

from __future__ import annotations

import resource
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nlu.classifier import IntentClassifier
from nlu.runtime import BATCH_INDEPENDENT, session_threads


@dataclass
class BenchResult:
    version: str
    precision: str
    threads: int
    load_seconds: float
    single_messages: int
    latency_ms_p50: float
    latency_ms_p95: float
    latency_ms_p99: float
    latency_ms_mean: float
    batch_messages: int
    batch_size: int
    throughput_per_s: float
    rss_before_load_mb: float
    peak_rss_mb: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # kilobytes on Linux


def run_benchmark(
    path: str | Path,
    texts: Sequence[str],
    single_messages: int = 300,
    batch_messages: int = 2000,
    batch_size: int = 64,
    precision: str | None = None,
    threads: int | None = None,
    warmup: int = 20,
) -> BenchResult:
    """Load the model at ``path`` and time it on ``texts`` (repeated if there are too few)."""
    if not texts:
        raise ValueError("the benchmark needs at least one message")
    rss_before = _peak_rss_mb()
    started = time.perf_counter()
    classifier = IntentClassifier.load(path, precision=precision, threads=threads)
    load_seconds = time.perf_counter() - started

    def cycle(n: int) -> list[str]:
        return [texts[i % len(texts)] for i in range(n)]

    for text in cycle(warmup):
        classifier.predict([text])
    latencies = []
    for text in cycle(single_messages):
        t0 = time.perf_counter()
        classifier.predict([text])
        latencies.append((time.perf_counter() - t0) * 1000.0)
    batch = cycle(batch_messages)
    t0 = time.perf_counter()
    classifier.predict(batch, batch_size=batch_size)
    throughput = len(batch) / (time.perf_counter() - t0)
    lat = np.asarray(latencies)
    return BenchResult(
        version=classifier.version,
        precision=classifier.precision,
        threads=session_threads(threads),
        load_seconds=round(load_seconds, 3),
        single_messages=len(latencies),
        latency_ms_p50=round(float(np.percentile(lat, 50)), 3),
        latency_ms_p95=round(float(np.percentile(lat, 95)), 3),
        latency_ms_p99=round(float(np.percentile(lat, 99)), 3),
        latency_ms_mean=round(float(lat.mean()), 3),
        batch_messages=len(batch),
        # An int8 model reads each message alone, however many come (nlu.runtime.BATCH_INDEPENDENT);
        # a split one (nlu.trunk) reads them alone in its upper layers, in batches in its trunk.
        batch_size=batch_size if classifier.precision in BATCH_INDEPENDENT else 1,
        throughput_per_s=round(throughput, 1),
        rss_before_load_mb=round(rss_before, 1),
        peak_rss_mb=round(_peak_rss_mb(), 1),
    )
