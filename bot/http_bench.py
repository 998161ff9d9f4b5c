"""End to end through HTTP, as ``teller bench`` measures it: one message at a time, then a closed loop
of concurrent customers, against a real ``teller serve`` with its time split by stage.

The server is a child process (``python -m bot.cli serve``) on a free port of 127.0.0.1 over a
scratch ``TELLER_HOME``: a copy of the knowledge base in use, the same models and derived-file cache,
a new SQLite store recording the model version benchmarked as the active one (so the server, and its
hot-swap watcher, serve that version), the precision and inference threads benchmarked, no chat
platforms, the abuse limits raised out of the way and ``TELLER_SERVER_TIMING`` on. The bank's own
store is never used; its knowledge base is only read (and created with its starter, as any command
would, if there is none yet). Customers are :func:`bot.loadtest.run_load`'s (the bank's backend
speaking for them, each message acknowledged before the next), in this process.

Stage shares come from the sequential run: each stage's mean milliseconds (``Server-Timing``,
:mod:`bot.stages`) over the mean latency the client saw; ``http`` is the rest (uvicorn, the
framework, the hand-offs between threads, the client and the loopback network).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import httpx

from bot.errors import TellerError
from bot.loadtest import LoadResult, run_load
from bot.settings import Settings
from bot.stages import STAGES
from retrieval.knowledge_base import copy_directory

#: Seconds a server may take to answer its first request (models load, the index opens).
START_TIMEOUT = 180.0
#: Environment variables of the chat platforms: the benchmark's server runs none of them.
_PLATFORM_PREFIXES = ("TELEGRAM_", "SLACK_")


class BenchServerError(TellerError):
    """The benchmark's server did not start (its stderr's last lines say why)."""


class BenchServer(NamedTuple):
    """A running benchmark server: its base URL, the backend key it accepts and its process id."""

    url: str
    key: str
    pid: int


def cpu_seconds(pid: int) -> float | None:
    """CPU seconds (user and system, every thread) process ``pid`` has used so far, from Linux's
    ``/proc/<pid>/stat`` (fields 14 and 15, in clock ticks: proc(5)); None where there is no such
    file (another system, or the process is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()  # after the command name, which may hold spaces
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the system tells it)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def cpu_figures(
    server_seconds: float | None, client_seconds: float, messages: int, wall_seconds: float, cores: int
) -> dict[str, float] | None:
    """What a closed loop's messages cost in CPU: milliseconds a message in the server and in the
    load client (this process), the share of the ``cores`` busy over ``wall_seconds``, and the
    throughput (messages/s) at which the cores would be full at that cost a message, were nothing
    else waiting. None without the server's figure or without messages."""
    if server_seconds is None or messages <= 0 or wall_seconds <= 0:
        return None
    per_message = (server_seconds + client_seconds) / messages
    return {
        "server_ms_per_message": round(server_seconds / messages * 1000, 2),
        "client_ms_per_message": round(client_seconds / messages * 1000, 2),
        "cores": cores,
        "busy": round((server_seconds + client_seconds) / (wall_seconds * cores), 3),
        "ceiling_per_s": round(cores / per_message, 1) if per_message > 0 else 0.0,
    }


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def bench_server(
    settings: Settings,
    version: str | None = None,
    precision: str | None = None,
    threads: int | None = None,
) -> Iterator[BenchServer]:
    """A ``teller serve`` child process over a scratch copy of the installation; yields its base URL,
    the backend key it accepts and its process id (:class:`BenchServer`). It serves model
    ``version`` (default: the registry's active one) at ``precision`` on ``threads`` inference
    threads (defaults: ``settings``'). Stopped (SIGTERM, then SIGKILL after 20 s) and its scratch
    home deleted on exit. Raises :class:`BenchServerError` if it exits or does not answer within
    :data:`START_TIMEOUT` seconds."""
    from bot.assistant import open_kb
    from bot.storage import Store

    port = _free_port()
    key = secrets.token_urlsafe(32)
    with tempfile.TemporaryDirectory(prefix="teller-bench-") as scratch:
        home = Path(scratch)
        open_kb(settings).close()  # a new installation's starter, if the bank has none yet
        copy_directory(settings.kb_dir, home / "kb")
        if version is not None:
            # The server serves, and its swapper keeps, the version its database records as active.
            store = Store(str(home / "teller.db"))
            try:
                store.deployment.set_active_model(version, "teller bench")
            finally:
                store.close()
        # The child starts in the scratch home, so no .env of the bank's is read there, and every
        # setting that could reach the bank's systems is named here rather than inherited.
        env = {k: v for k, v in os.environ.items() if not k.startswith(_PLATFORM_PREFIXES)}
        env.update(
            {
                "TELLER_HOME": str(home),
                "TELLER_DATABASE_URL": str(home / "teller.db"),
                "TELLER_LIMITS_STORAGE": "memory://",
                "TELLER_MODELS": str(Path(settings.models).resolve()),
                "TELLER_CACHE": str(settings.cache_dir.resolve()),
                "TELLER_KB_REPLICATION": "off",
                "TELLER_BACKEND_API_KEY": key,
                "TELLER_LIMIT_MESSAGES": "1000000/minute",
                "TELLER_LIMIT_MESSAGES_OVERALL": "1000000/minute",
                "TELLER_SERVER_TIMING": "true",
                "TELLER_ENV": "development",
                "TELLER_LOG_LEVEL": settings.log_level,
                "TELLER_PRECISION": precision or settings.precision,
                "HF_HUB_OFFLINE": "1",
            }
        )
        threads = threads or settings.threads
        if threads is None:
            env.pop("TELLER_THREADS", None)
        else:
            env["TELLER_THREADS"] = str(threads)
        stderr_path = home / "serve.err"
        with open(stderr_path, "wb") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-m", "bot.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
                env=env,
                cwd=home,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                preexec_fn=_death_signal(),
            )
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_until_up(process, url, stderr_path)
            yield BenchServer(url, key, process.pid)
        finally:
            try:
                process.send_signal(signal.SIGTERM)
                process.wait(timeout=20)
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait()


def _death_signal() -> Callable[[], None] | None:
    """What the child runs before ``exec`` on Linux: ``prctl(PR_SET_PDEATHSIG, SIGTERM)``, so that no
    server outlives the benchmark's process (killed, or stopped without its clean-up). Resolved
    here, in the parent, so the child only makes the system call (no import, no lock, after fork)."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    pr_set_pdeathsig, sigterm = 1, int(signal.SIGTERM)

    def set_death_signal() -> None:
        prctl(pr_set_pdeathsig, sigterm)

    return set_death_signal


def _wait_until_up(process: subprocess.Popen[bytes], url: str, stderr_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = stderr_path.read_text(errors="replace").strip().splitlines()[-5:]
            why = " | ".join(tail)
            raise BenchServerError(f"the benchmark's server exited ({process.returncode}): {why}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2.0, trust_env=False).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise BenchServerError(f"the benchmark's server did not answer within {START_TIMEOUT:.0f} s")


def stage_shares(stage_ms: dict[str, float], latency_ms: float) -> dict[str, float]:
    """Each stage's share of ``latency_ms`` (the client's mean latency) in ``[0, 1]``, in the order
    of :data:`bot.stages.STAGES`, and ``http`` for the rest (never below 0). ``app`` (the server's
    own total) is not a stage and is left out."""
    shares = {name: stage_ms[name] / latency_ms for name in STAGES if name in stage_ms and latency_ms > 0}
    shares["http"] = max(0.0, 1.0 - sum(shares.values())) if latency_ms > 0 else 0.0
    return {name: round(share, 4) for name, share in shares.items()}


def bench_http(
    settings: Settings,
    texts: Sequence[str],
    sequential: int = 300,
    users: int = 50,
    messages: int = 20,
    warmup: int = 30,
    version: str | None = None,
    precision: str | None = None,
    threads: int | None = None,
) -> dict[str, Any]:
    """Latency of ``sequential`` messages sent one at a time (after ``warmup`` unmeasured ones), with
    mean milliseconds and share per stage, then a closed loop of ``users`` customers sending
    ``messages`` each: throughput (messages/s), latency and errors. Latencies in ms, from a
    message's first byte sent to its reply read. The closed loop's CPU a message, in the server
    and in the load client (this process, on the same cores), comes beside it as ``cpu``
    (:func:`cpu_figures`; None where the server's CPU time cannot be read). The server serves model
    ``version`` at ``precision`` on ``threads`` threads (see :func:`bench_server`). Raises
    :class:`BenchServerError`."""
    with bench_server(settings, version, precision, threads) as server:

        def load(customers: int, each: int, seed: int) -> LoadResult:
            return asyncio.run(
                run_load(
                    server.url, texts, customers, each, seed=seed, backend_key=server.key, trust_env=False
                )
            )

        load(1, warmup, 1)
        one = load(1, sequential, 2)
        server_before, client_before = cpu_seconds(server.pid), time.process_time()
        loop = load(users, messages, 3)
        server_after, client_after = cpu_seconds(server.pid), time.process_time()
    server_cpu = (
        server_after - server_before if server_before is not None and server_after is not None else None
    )
    cpu = cpu_figures(server_cpu, client_after - client_before, loop.sent, loop.seconds, usable_cores())
    app_ms = one.stage_ms_mean.get("app", 0.0)
    return {
        "sequential": {
            "messages": one.sent,
            "errors": one.errors,
            "latency_ms_p50": one.latency_ms_p50,
            "latency_ms_p95": one.latency_ms_p95,
            "latency_ms_mean": one.latency_ms_mean,
            "server_ms_mean": app_ms,
            "stage_ms_mean": {k: v for k, v in one.stage_ms_mean.items() if k != "app"},
            "stage_shares": stage_shares(one.stage_ms_mean, one.latency_ms_mean),
        },
        "closed_loop": {
            "users": users,
            "messages": loop.sent,
            "errors": loop.errors,
            "throughput_per_s": loop.throughput_per_s,
            "latency_ms_p50": loop.latency_ms_p50,
            "latency_ms_p95": loop.latency_ms_p95,
            "cpu": cpu,
        },
    }
