"""Every replica is equal: two ``teller serve`` processes on one real PostgreSQL.

The acceptance run of the scale-out issue, with the toy model: load spread over both replicas (every
acknowledged message stored exactly once), a knowledge-base change made through one replica's CLI
searchable on the other within 5 s, a model activation served by both within 5 s, and ``kill -9``
of one mid-load (the other answers the retries, nothing acknowledged is lost; restarted, it serves
the new model and entry). In-process
tests cover what needs no second process: one platform message racing on two replicas, and a
handoff relayed by whichever replica the operator's reply reaches.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from bot.assistant import build_policy, calibrate_policy
from bot.core import Incoming, TellerCore
from bot.loadtest import check_store, run_load
from bot.policy import AnswerPolicy
from bot.settings import Settings
from bot.storage import Direction, NewHandoff, Store
from tests.servers import free_port

TEXTS = [
    "where is my card",
    "what's the overdraft fee",
    "hello",
    "my top up failed",
    "exchange rate for euros",
]


def start_replicas(*envs: dict[str, str]) -> list[tuple[subprocess.Popen[bytes], str]]:
    """``teller serve`` under each of ``envs``, started together; each with its URL once it answers."""
    started = []
    for env in envs:
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", "serve", "--port", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        started.append((process, f"http://127.0.0.1:{port}"))
    deadline = time.monotonic() + 180
    waiting = list(started)
    try:
        while waiting:
            assert time.monotonic() < deadline, "teller serve did not come up"
            for process, url in list(waiting):
                assert process.poll() is None, f"teller serve exited with {process.returncode}"
                try:
                    if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                        waiting.remove((process, url))
                except httpx.HTTPError:
                    pass
            time.sleep(0.3)
    except BaseException:
        # None is left running (holding a port and database connections) for the caller to miss.
        for process, _ in started:
            process.kill()
            process.wait(timeout=30)
        raise
    return started


KEY = "backend-key-of-the-cluster-test"


def waited(condition: Callable[[], bool], limit: float) -> float:
    """Seconds until ``condition()`` held (polled every 50 ms); fails after ``limit`` seconds."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < limit, f"not within {limit} s"
        time.sleep(0.05)
    return time.monotonic() - started


def health(url: str) -> dict:  # type: ignore[type-arg]
    return httpx.get(f"{url}/healthz", timeout=5).json()  # type: ignore[no-any-return]


@pytest.fixture()
def cluster_env(
    teller_env: Path, trained_models_dir: Path, tmp_path: Path, fresh_postgresql_url: str
) -> Iterator[tuple[dict[str, str], dict[str, str]]]:
    """Environments of replicas A and B: one database, one models directory, a TELLER_HOME each."""
    models = tmp_path / "models"
    shutil.copytree(trained_models_dir, models)
    base = {
        **os.environ,
        "TELLER_DATABASE_URL": fresh_postgresql_url,
        "TELLER_MODELS": str(models),
        "HF_HUB_OFFLINE": "1",
        # The load generator speaks as the bank's backend; limits that measure replicas, not abuse.
        "TELLER_BACKEND_API_KEY": KEY,
        "TELLER_LIMIT_MESSAGES": "10000/minute",
    }
    homes = []
    for name in ("a", "b"):
        home = tmp_path / f"home-{name}"
        shutil.copytree(teller_env, home)
        homes.append({**base, "TELLER_HOME": str(home)})
    yield homes[0], homes[1]


def _policy_to_calibrate(env: dict[str, str], version: str) -> tuple[AnswerPolicy, Path]:
    """The policy ``teller calibrate --model VERSION`` builds under ``env``, and its artifact."""
    settings = Settings(**{key: value for key, value in env.items() if key.startswith("TELLER_")})
    policy = build_policy(settings, version, calibrate_if_missing=False, stored_thresholds=False)
    return policy, policy.classifier.path


def teller(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", *args], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_two_replicas_on_one_postgresql(
    cluster_env: tuple[dict[str, str], dict[str, str]], tmp_path: Path, toy_csv: Path, tiny_encoder_dir: Path
) -> None:
    env_a, env_b = cluster_env
    (a, url_a), (b, url_b) = start_replicas(env_a, env_b)
    processes = [a, b]
    store = Store(env_a["TELLER_DATABASE_URL"])
    try:
        # 1. 30 customers x 10 messages spread over both replicas (`teller load` measures more:
        # docs/deployment.md).
        run = asyncio.run(run_load([url_a, url_b], TEXTS, users=30, messages=10, timeout=30, backend_key=KEY))
        assert run.errors == 0 and run.silent == 0 and run.acknowledged == run.sent == 300, run.error_samples
        assert min(run.acknowledged_by_url.values()) >= 100  # both replicas answered
        check = check_store(store, run.run_id, run.acknowledged_ids, run.users, run.messages_per_user)
        assert (check.missing, check.duplicated, check.stored_not_acknowledged) == (0, 0, 0), check

        # 2. A knowledge-base change through replica A's CLI is searchable on B within 5 s.
        entries_b = health(url_b)["kb_entries"]
        (tmp_path / "lockers.csv").write_text(
            "id,question,answer\nsafe_deposit_boxes,do you rent safe deposit boxes at branches,"
            '"Yes: boxes from 25 a year at 40 branches; book one in the app."\n',
            encoding="utf-8",
        )
        started = time.monotonic()
        teller(env_a, "kb", "add", str(tmp_path / "lockers.csv"))
        cli_seconds = time.monotonic() - started
        kb_seconds = waited(lambda: health(url_b)["kb_entries"] == entries_b + 1, 5)

        # 3. A model activation (a rollback through the CLI) reaches both replicas within 5 s.
        from nlu.data import load_corpus
        from nlu.pipeline import train_and_register
        from nlu.registry import ModelRegistry
        from nlu.training import TrainConfig

        models = ModelRegistry(env_a["TELLER_MODELS"])
        first = models.active_version()
        config = TrainConfig(
            epochs=1, batch_size=8, learning_rate=1e-3, head_learning_rate=1e-3, dev_fraction=0.25
        )
        second = train_and_register(
            load_corpus([toy_csv]), models, config, activate=False, encoder_dir=tiny_encoder_dir
        ).info.version
        # Calibrated here, as `teller calibrate` does (a CLI process would embed the calibration
        # messages again: 15 s of the test); the activation, what replicas follow, goes through the CLI.
        policy, artifact = _policy_to_calibrate(env_a, second)
        try:
            calibrate_policy(policy, artifact)
        finally:
            policy.kb.close()
        teller(env_a, "models", "activate", second)
        model_seconds = waited(lambda: all(health(u)["model"] == second for u in (url_a, url_b)), 5)
        assert first != second and store.deployment.active_model() == second
        print(
            f"\n`teller kb add` on A took {cli_seconds:.1f} s; B had the entry {kb_seconds:.2f} s after it "
            f"returned; both served the new model {model_seconds:.2f} s after `models activate` returned"
        )

        # 4. kill -9 of B mid-load: A answers the retries; nothing acknowledged is lost.
        result = {}

        def load() -> None:
            result["run"] = asyncio.run(
                run_load(
                    [url_a, url_b],
                    TEXTS,
                    users=20,
                    messages=20,
                    timeout=5,
                    attempts=20,
                    deadline=60,
                    backend_key=KEY,
                )
            )

        worker = threading.Thread(target=load, daemon=True)
        worker.start()
        waited(lambda: sum(store.conversations.platform_counts("web", "c_").values()) >= 300 + 100, 60)
        os.kill(b.pid, signal.SIGKILL)
        b.wait(timeout=10)
        assert worker.is_alive()
        worker.join(timeout=180)
        killed = result["run"]
        assert killed.errors == 0 and killed.acknowledged == killed.sent == 400, killed.error_samples
        check = check_store(
            store, killed.run_id, killed.acknowledged_ids, killed.users, killed.messages_per_user
        )
        assert check.missing == 0 and check.duplicated == 0, check
        assert health(url_a)["status"] == "ok" and health(url_a)["model"] == second

        # B comes back (a new process, same home): it serves what changed before it was killed.
        [(b, url_b)] = start_replicas(env_b)
        processes.append(b)
        back = health(url_b)
        assert back["model"] == second and back["kb_entries"] == entries_b + 1
    finally:
        store.close()
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


# ------------------------------------------------------------------------------- in-process


@pytest.fixture()
def replicas(teller_env: Path, fresh_postgresql_url: str) -> Iterator[tuple[TellerCore, TellerCore]]:
    """Two cores (two replicas' stores) on one PostgreSQL, sharing one policy to save the load."""
    from bot.settings import get_settings

    policy = build_policy(get_settings())
    cores = (TellerCore(policy, Store(fresh_postgresql_url)), TellerCore(policy, Store(fresh_postgresql_url)))
    yield cores
    for core in cores:
        core.close()


def test_a_redelivery_racing_on_two_replicas_is_answered_once(
    replicas: tuple[TellerCore, TellerCore],
) -> None:
    a, b = replicas
    incomings = [
        Incoming("telegram", f"chat{n}", f"u{n}", f"chat{n}:{n}", "where is my card") for n in range(20)
    ]
    with ThreadPoolExecutor(8) as pool:
        replies = list(
            pool.map(lambda pair: pair[0].handle(pair[1]), [(r, i) for i in incomings for r in (a, b)])
        )
    answered = [r for r in replies if not r.duplicate]
    assert len(answered) == 20 and len(replies) - len(answered) == 20  # the channel sends only `answered`
    assert a.store.conversations.count() == 40


def test_a_handoff_is_relayed_by_any_replica_and_seen_from_any(
    replicas: tuple[TellerCore, TellerCore],
) -> None:
    from fastapi.testclient import TestClient

    from bot.web.app import create_app
    from bot.web.sessions import Identities

    a, b = replicas
    identities = Identities.from_store(a.store, backend_api_key=KEY)
    cust = identities.verified("cust1").user_id  # the bank's backend vouches for customer cust1
    reply = a.handle(Incoming("web", cust, cust, f"{cust}:1", "I want to talk to a person"))
    customer, _ = a.store.conversations.exchange(reply.message_id)
    handoff = a.store.handoffs.start(NewHandoff("web", customer.conversation_id, cust, cust))
    # The operator's reply reaches replica B (its Slack events), B stores the relay ...
    b.store.handoffs.record_relay(handoff.id, Direction.OUT, "Hello, this is Ana.", author="slack:UOPS")
    # ... and the customer polling replica A sees it.
    with TestClient(create_app(a, [], identities=identities)) as client:
        headers = {"Authorization": f"Bearer {KEY}", "X-Teller-Customer": "cust1"}
        relayed = client.get("/api/messages", headers=headers).json()
    assert [m["reply"] for m in relayed["messages"]] == ["Hello, this is Ana."] and relayed["handoff_open"]
