"""Where a message's time goes: stage times through the batcher, the Server-Timing header, the load
generator reading it, and ``teller bench``'s HTTP figures against a real ``teller serve``."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fastapi.testclient import TestClient

from bot.assistant import active_version, build_core, open_store
from bot.core import TellerCore
from bot.http_bench import BenchServerError, cpu_figures, cpu_seconds, stage_shares
from bot.loadtest import server_timing
from bot.settings import Settings, get_settings
from bot.stages import STAGES, StageTimes, collecting, timed
from bot.web.app import create_app
from nlu.registry import ModelRegistry
from tests.test_cli import run
from tests.webclient import page_customer

#: What a free-text message through ``POST /api/messages`` must report.
MESSAGE_STAGES = {"limits", "store_read", "classifier", "base_encoder", "retrieval", "signals", "policy"}


@pytest.fixture()
def core(teller_env: Path) -> Iterator[TellerCore]:
    core = build_core(get_settings())
    yield core
    core.close()


def test_timed_adds_up_per_stage_only_where_a_collection_is_active() -> None:
    with timed("policy"):  # no collection: nothing to add to, nothing fails
        pass
    with collecting() as times:
        for _ in range(2):
            with timed("policy"):
                pass
        with pytest.raises(ValueError), timed("retrieval"):
            raise ValueError("a failing stage still counts its time")
    assert set(times.seconds) == {"policy", "retrieval"}
    assert all(seconds >= 0 for seconds in times.seconds.values())
    header = times.header()
    assert header.startswith("policy;dur=") and ", retrieval;dur=" in header


def test_the_batcher_hands_each_request_the_stages_of_its_batch(core: TellerCore) -> None:
    results: dict[str, StageTimes] = {}

    def ask(text: str) -> None:
        with collecting() as times:
            core._batcher.decide(text)
        results[text] = times

    threads = [threading.Thread(target=ask, args=(t,)) for t in ("where is my card", "hi", "fees abroad")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(results) == {"where is my card", "hi", "fees abroad"}
    for text, times in results.items():
        assert {"classifier", "base_encoder", "retrieval", "signals", "policy"} <= set(times.seconds), text
    # Outside any collection the batcher still answers (nothing is recorded anywhere).
    decision, _ = core._batcher.decide("where is my card")
    assert decision.reason


def test_server_timing_is_off_by_default_and_names_every_stage_when_on(core: TellerCore) -> None:
    plain = page_customer(TestClient(create_app(core)))
    assert "server-timing" not in plain.post("/api/messages", json={"text": "where is my card"}).headers
    timed_client = page_customer(TestClient(create_app(core, server_timing=True)))
    response = timed_client.post(
        "/api/messages", json={"text": "What's the overdraft fee?", "client_message_id": "m-1"}
    )
    assert response.status_code == 200
    stages = server_timing(response.headers["server-timing"])
    assert MESSAGE_STAGES | {"store_write", "app"} <= set(stages)
    assert all(ms >= 0 for ms in stages.values())
    assert sum(v for k, v in stages.items() if k != "app") <= stages["app"]
    # A refused request still says how long it took, and nothing of a policy it never reached.
    refused = timed_client.post("/api/messages", json={"text": ""})
    assert refused.status_code == 400
    assert "classifier" not in server_timing(refused.headers["server-timing"])


def test_server_timing_in_production_is_logged_as_a_warning(
    core: TellerCore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="bot.web.app")
    for env, timing, warned in [
        ("production", "true", True),
        ("production", "false", False),
        ("development", "true", False),
        ("development", "false", False),
    ]:
        caplog.clear()
        # As `teller serve` builds its application from the settings.
        settings = Settings(TELLER_ENV=env, TELLER_SERVER_TIMING=timing)
        create_app(core, production=settings.production, server_timing=settings.server_timing)
        warnings = [r for r in caplog.records if r.getMessage() == "server_timing_in_production"]
        assert len(warnings) == warned, (env, timing)
        assert all(r.levelno == logging.WARNING for r in warnings)
        assert all(r.fields == {"setting": "TELLER_SERVER_TIMING"} for r in warnings)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("", {}),
        ("db;dur=53, app;dur=47.2", {"db": 53.0, "app": 47.2}),
        ('cache;desc="Cache Read";dur=23.2', {"cache": 23.2}),
        ("miss, db;dur=x, ;dur=3, total;dur=1;dur=2", {"total": 1.0}),
        ('db;desc="a, b; c";dur=2.5, app;dur=4', {"db": 2.5, "app": 4.0}),
        ("a;dur=1, a;dur=2", {"a": 3.0}),
    ],
)
def test_server_timing_headers_are_read_as_the_w3c_format_says(header: str, expected: dict) -> None:
    assert server_timing(header) == expected


def test_stage_shares_leave_the_rest_to_http_and_never_go_negative() -> None:
    shares = stage_shares({"classifier": 3.0, "base_encoder": 5.0, "app": 15.0}, 20.0)
    assert shares == {"classifier": 0.15, "base_encoder": 0.25, "http": 0.6}
    assert stage_shares({"classifier": 30.0}, 20.0)["http"] == 0.0
    assert list(stage_shares({s: 1.0 for s in reversed(STAGES)}, 100.0))[:-1] == list(STAGES)


def test_cpu_seconds_read_a_process_time_from_proc_and_none_for_none() -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("read from Linux's /proc")
    before = cpu_seconds(os.getpid())
    assert before is not None
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:
        pass
    after = cpu_seconds(os.getpid())
    assert after is not None and after - before >= 0.2
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert cpu_seconds(gone.pid) is None


def test_cpu_figures_of_a_closed_loop() -> None:
    # 100 messages in 1 s on 2 cores: 1.0 s in the server and 0.2 s in the client, 12 ms a message.
    assert cpu_figures(1.0, 0.2, 100, 1.0, 2) == {
        "server_ms_per_message": 10.0,
        "client_ms_per_message": 2.0,
        "cores": 2,
        "busy": 0.6,
        "ceiling_per_s": 166.7,
    }
    assert cpu_figures(None, 0.2, 100, 1.0, 2) is None
    assert cpu_figures(1.0, 0.2, 0, 1.0, 2) is None


def test_bench_measures_http_against_a_real_server_with_its_stages(teller_env: Path) -> None:
    # A bank's .env in the working directory names its chat platforms: the benchmark's server must
    # run none of them (here it could not even start with a Telegram token and no internet).
    Path(".env").write_text("TELEGRAM_BOT_TOKEN=123456:fake-token-of-the-bank\nSLACK_APP_TOKEN=xapp-fake\n")
    before = _stored_messages()
    code, stdout, stderr = run(
        "bench", "--json", "--messages", "20", "--http-users", "4", "--http-messages", "3"
    )
    assert code == 0, stderr
    figures = json.loads(stdout)["http"]
    one, loop = figures["sequential"], figures["closed_loop"]
    assert one["messages"] == 20 and one["errors"] == 0
    assert 0 < one["latency_ms_p50"] <= one["latency_ms_p95"]
    assert 0 < one["server_ms_mean"] < one["latency_ms_mean"]
    assert MESSAGE_STAGES | {"store_write"} <= set(one["stage_ms_mean"])
    assert sum(one["stage_shares"].values()) == pytest.approx(1.0, abs=0.01)
    assert loop["messages"] == 12 and loop["errors"] == 0 and loop["throughput_per_s"] > 0
    if sys.platform.startswith("linux"):  # the server's CPU time is read from /proc
        cpu = loop["cpu"]
        assert cpu["server_ms_per_message"] > 0 and cpu["client_ms_per_message"] >= 0
        assert 0 < cpu["busy"] <= 1.2 and cpu["ceiling_per_s"] > 0
    # The benchmark's server had a scratch home: the bank's own store got none of its messages.
    assert _stored_messages() == before


def test_bench_http_serves_the_model_precision_and_threads_benchmarked(
    teller_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two versions of the model; the one asked for is not the registry's active one.
    models = tmp_path / "models-copy"
    shutil.copytree(get_settings().models, models)
    registry = ModelRegistry(models)
    asked = "20990101-000000-asked"
    shutil.copytree(registry.active_path(), registry.root / asked)
    monkeypatch.setenv("TELLER_MODELS", str(models))
    get_settings.cache_clear()
    served: dict[str, Any] = {}

    def serve(args: list[str], env: dict[str, str], cwd: Path, **_: Any) -> None:
        # What the child's `teller serve` reads: its environment, in its working directory.
        with pytest.MonkeyPatch.context() as child:
            child.chdir(cwd)
            for name in set(os.environ) - set(env):
                child.delenv(name)
            for name, value in env.items():
                child.setenv(name, value)
            settings = Settings()
            store = open_store(settings)
            try:
                served["version"] = active_version(settings, store)
            finally:
                store.close()
            served["precision"], served["threads"] = settings.serving_precision, settings.threads
        raise BenchServerError("the test's stand-in for the server")

    monkeypatch.setattr("bot.http_bench.subprocess", SimpleNamespace(Popen=serve, DEVNULL=subprocess.DEVNULL))
    code, _, stderr = run(
        "bench", "--model", asked, "--precision", "fp32", "--threads", "2", "--messages", "10", "--json"
    )
    assert code == 2 and "stand-in for the server" in stderr
    assert registry.active_version() != asked
    assert served == {"version": asked, "precision": "fp32", "threads": 2}


def _stored_messages() -> int:
    from bot.assistant import open_store

    store = open_store(get_settings())
    try:
        return len(store.conversations.history(None, 10_000))
    finally:
        store.close()
