"""The command-line contract: JSON shapes, reports on disk, and clear errors instead of tracebacks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli import app
from bot.storage import DeliveryState
from nlu import IntentClassifier
from tests.conftest import TOY_INTENTS, write_csv

ROUTES = {"intent", "faq", "clarify", "smalltalk", "advice", "handoff"}

runner = CliRunner()


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def json_lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def test_ask_one_message_as_json(teller_env: Path) -> None:
    code, stdout, _ = run("ask", "I still have not received my new card", "--json")
    assert code == 0
    [record] = json_lines(stdout)
    assert record["text"] == "I still have not received my new card"
    assert record["intent"] in TOY_INTENTS
    assert record["route"] in ROUTES
    assert record["answer"].strip() and record["reason"].strip()
    assert "kb_id" in record
    assert 0 < record["confidence"] <= 1
    assert len(record["alternatives"]) == 3
    assert all(isinstance(name, str) and isinstance(p, float) for name, p in record["alternatives"])
    assert record["alternatives"][0][0] == record["intent"]


LONG = " ".join(["card"] * 900)


def test_ask_batch_loads_the_model_once(
    teller_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads = []
    original = IntentClassifier.load.__func__  # type: ignore[attr-defined]

    def counting_load(cls, *args, **kwargs):  # type: ignore[no-untyped-def]
        loads.append(args)
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(IntentClassifier, "load", classmethod(counting_load))
    path = write_csv(
        tmp_path / "batch.csv",
        [("1", "what is the exchange rate"), ("2", ""), ("3", "my top up failed"), ("4", LONG)],
        header=("id", "text"),
    )
    code, stdout, _ = run("ask", "--batch", str(path), "--json")
    assert code == 0
    records = json_lines(stdout)
    assert [r["text"] for r in records] == ["what is the exchange rate", "", "my top up failed", LONG]
    assert records[1] == {"text": "", "error": "the message is empty"}
    # Refused as every channel refuses it, not judged on a part of it.
    assert "too long for me (4,499 characters)" in records[3]["error"] and "route" not in records[3]
    assert records[0]["route"] in ROUTES and records[2]["intent"] in TOY_INTENTS
    assert len(loads) == 1


def test_ask_batch_plain_lines(teller_env: Path, tmp_path: Path) -> None:
    path = tmp_path / "messages.txt"
    path.write_text("card lost\n\nexchange rate for euros 💶\n", encoding="utf-8")
    code, stdout, _ = run("ask", "--batch", str(path), "--json")
    assert code == 0
    assert [r["text"] for r in json_lines(stdout)] == ["card lost", "exchange rate for euros 💶"]
    code, stdout, _ = run("ask", "--batch", str(path))
    assert code == 0 and "card lost" in stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["ask", "   "], "the message is empty"),
        (["ask", "where is my card " * 300], "the message is too long for me (5,099 characters)"),
        (["ask"], "give a message or --batch FILE"),
        (["ask", "--batch", "nope.csv"], "no such file"),
        (["models", "activate", "no-such-version"], "no model version 'no-such-version'"),
        (["eval", "--data", "nope.csv"], "no such file"),
    ],
)
def test_bad_input_is_one_clear_line(teller_env: Path, args: list[str], message: str) -> None:
    code, stdout, stderr = run(*args)
    assert code == 2
    assert message in stderr
    assert "Traceback" not in stderr + stdout


def test_bad_batch_files_are_explained(teller_env: Path, tmp_path: Path) -> None:
    no_column = write_csv(tmp_path / "cols.csv", [("hi",)], header=("message",))
    code, _, stderr = run("ask", "--batch", str(no_column))
    assert code == 2 and "missing column 'text'" in stderr
    latin = tmp_path / "latin.txt"
    latin.write_bytes("mon caf\u00e9 card\n".encode("latin-1"))
    code, _, stderr = run("ask", "--batch", str(latin))
    assert code == 2 and "--encoding" in stderr
    code, stdout, _ = run("ask", "--batch", str(latin), "--encoding", "latin-1", "--json")
    assert code == 0 and json_lines(stdout)[0]["text"] == "mon caf\u00e9 card"


def test_ask_batch_drops_a_nul_as_the_api_does(teller_env: Path, tmp_path: Path) -> None:
    """A NUL in a message is a control character like any other: dropped, as ``POST /api/messages``
    drops it (tests/test_web.py), not a refusal of the whole file; a file mostly NUL (UTF-16 without
    its byte-order mark) is still not read, and is told its encoding."""
    lines = tmp_path / "messages.txt"
    lines.write_bytes(b"where is\x00 my card\x07\nhello\x00world\n")
    code, stdout, stderr = run("ask", "--batch", str(lines), "--json")
    assert code == 0, stderr
    assert [r["text"] for r in json_lines(stdout)] == ["where is my card", "hello world"]
    rows = tmp_path / "messages.csv"
    rows.write_bytes(b'text\n"where is\x00 my card"\n')
    code, stdout, stderr = run("ask", "--batch", str(rows), "--json")
    assert code == 0, stderr
    assert [r["text"] for r in json_lines(stdout)] == ["where is my card"]
    utf16 = tmp_path / "utf16.txt"
    utf16.write_bytes("where is my card\n".encode("utf-16-le"))
    code, _, stderr = run("ask", "--batch", str(utf16))
    assert code == 2 and "--encoding utf-16-le" in stderr


def test_eval_writes_json_markdown_and_png(teller_env: Path, toy_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    code, stdout, _ = run("eval", "--data", str(toy_csv), "--json", "--out", str(out))
    assert code == 0
    report = json.loads(stdout)
    assert report["n"] == 80
    assert 0 <= report["accuracy"] <= 1 and 0 <= report["macro_f1"] <= 1 and 0 <= report["ece"] <= 1
    assert {s["intent"] for s in report["per_intent"]} == set(TOY_INTENTS)
    assert all({"precision", "recall", "f1", "support"} <= set(s) for s in report["per_intent"])
    assert all({"true", "predicted", "count"} == set(c) for c in report["confusions"])
    assert (out / "metrics.json").is_file() and (out / "report.md").is_file()
    assert (out / "confusion.png").read_bytes().startswith(b"\x89PNG")
    assert "## Most confused intent pairs" in (out / "report.md").read_text()


def test_eval_with_typos_reads_the_messages_mistyped_the_same_way_each_time(
    teller_env: Path, toy_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nlu import IntentClassifier
    from nlu.data import read_labelled_csv
    from nlu.typos import add_typos

    read: list[str] = []
    predict = IntentClassifier.predict

    def recording(self: IntentClassifier, texts: list[str], *args: object, **kwargs: object) -> object:
        read.extend(texts)
        return predict(self, texts, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(IntentClassifier, "predict", recording)
    runs = []
    for i in range(2):
        code, stdout, stderr = run(
            "eval",
            "--data",
            str(toy_csv),
            "--typos",
            "--json",
            "--no-policy",
            "--out",
            str(tmp_path / f"r{i}"),
        )
        assert code == 0, stderr
        runs.append(json.loads(stdout))
    assert runs[0]["context"]["data"].endswith("typos put in (seed 11)")
    assert runs[0]["accuracy"] == runs[1]["accuracy"] and runs[0]["n"] == 80
    # What the classifier read is the file's messages with the seed's mistakes, both times.
    written = [e.text for e in read_labelled_csv(toy_csv)]
    mistyped = add_typos(written, seed=11)
    assert mistyped != written and read == mistyped + mistyped
    code, stdout, _ = run("eval", "--data", str(toy_csv), "--typo-seed", "3", "--no-policy")
    assert code == 0 and "typos put in (seed 3)" in stdout  # a seed implies --typos


def test_eval_defaults_to_the_model_dev_split(teller_env: Path) -> None:
    code, stdout, _ = run("eval")
    assert code == 0
    assert "dev split of" in stdout and "accuracy" in stdout
    assert list((teller_env / "reports").glob("eval-*/report.md"))


def test_bench_reports_every_figure(teller_env: Path) -> None:
    # The HTTP part (a `teller serve` child and a closed loop) is tests/test_stages.py's.
    code, stdout, _ = run("bench", "--json", "--messages", "20", "--no-http")
    assert code == 0
    result = json.loads(stdout)
    assert "http" not in result
    for key in (
        "latency_ms_p50",
        "latency_ms_p95",
        "latency_ms_p99",
        "throughput_per_s",
        "peak_rss_mb",
        "load_seconds",
    ):
        assert result[key] > 0, key
    assert result["latency_ms_p50"] <= result["latency_ms_p95"] <= result["latency_ms_p99"]


def test_models_list_and_activate(teller_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.settings import get_settings

    models = tmp_path / "models-copy"
    shutil.copytree(get_settings().models, models)
    monkeypatch.setenv("TELLER_MODELS", str(models))
    get_settings.cache_clear()
    [entry] = json_lines(run("models", "list", "--json")[1])
    assert entry["active"] is True
    (models / "intent" / "ACTIVE").unlink()
    assert "error" in run("ask", "hello")[2]
    code, stdout, _ = run("models", "activate", entry["version"])
    assert code == 0 and entry["version"] in stdout
    assert run("ask", "hello", "--json")[0] == 0
    # A retrain candidate the gate refused is not activated without --force (a trial's finding: it
    # was, on every replica, with nothing said).
    gate = {"active_version": "v-before", "promote": False, "reasons": ["frozen set 51.5% < 94.8% - 0.5"]}
    (models / "intent" / entry["version"] / "gate.json").write_text(json.dumps(gate), encoding="utf-8")
    code, _, stderr = run("models", "activate", entry["version"])
    assert code == 2 and "the gate refused (frozen set 51.5% < 94.8% - 0.5)" in stderr and "--force" in stderr
    code, stdout, stderr = run("models", "activate", entry["version"], "--force")
    assert code == 0 and "warning" in stderr and entry["version"] in stdout
    # The audit log tells the forced activation from a rollback, with the gate's reasons (a
    # reviewer's finding: the two entries were alike).
    from bot.assistant import open_store
    from bot.storage import AuditAction

    store = open_store(get_settings())
    try:
        forced, plain = store.audit.entries(AuditAction.ACTIVATION, limit=2)
    finally:
        store.close()
    assert forced.details["forced"] is True
    assert forced.details["gate_reasons"] == ["frozen set 51.5% < 94.8% - 0.5"]
    assert "forced" not in plain.details and plain.details["version"] == entry["version"]


def test_train_refuses_bad_data_before_touching_models(teller_env: Path, tmp_path: Path) -> None:
    bad = write_csv(tmp_path / "bad.csv", [("hi", "")])
    code, _, stderr = run("train", "--data", str(bad))
    assert code == 2 and "empty category" in stderr
    code, _, stderr = run("train", "--if-missing")
    assert code == 0 and "already active" in stderr


def test_console_script_never_prints_a_traceback(teller_env: Path, tmp_path: Path) -> None:
    env = {**os.environ, "TELLER_MODELS": str(tmp_path / "empty")}
    for args in (["ask", ""], ["ask", "hello"], ["eval", "--data", str(tmp_path)]):
        proc = subprocess.run(
            [sys.executable, "-m", "bot.cli", *args], capture_output=True, text=True, env=env, timeout=120
        )
        assert proc.returncode == 2, (args, proc.stderr)
        assert "error:" in proc.stderr and "Traceback" not in proc.stderr


def test_a_home_that_is_a_file_is_one_error_line(tmp_path: Path) -> None:
    """A trial: TELLER_HOME naming a file (or a home holding a file named ``logs``) printed a
    NotADirectoryError / FileExistsError traceback with exit status 1."""
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "logs").write_text("not a directory")
    (tmp_path / "file").write_text("not a directory")
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TELLER_")}
    for home in (tmp_path / "file", tmp_path / "home"):
        env = {**clean, "TELLER_HOME": str(home)}
        proc = subprocess.run(
            [sys.executable, "-m", "bot.cli", "ask", "hello"],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr, proc.stderr
        assert f"{home}/logs" in proc.stderr and "TELLER_HOME" in proc.stderr, proc.stderr


def test_settings_that_do_not_validate_print_one_error_line(teller_env: Path) -> None:
    """Settings fail before logging is set up: the error line alone, no bare log-event line above it."""
    env = {**os.environ, "TELLER_RETENTION_DAYS": "0"}
    command = [sys.executable, "-m", "bot.cli", "retention", "run"]
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("error: invalid settings: TELLER_RETENTION_DAYS"), proc.stderr
    assert "command_failed" not in proc.stderr and "Traceback" not in proc.stderr


def test_chat_in_the_terminal_goes_through_the_application_service(teller_env: Path) -> None:
    from bot.assistant import open_store
    from bot.settings import get_settings

    typed = "my card still has not arrived\nwhat is the weather like on mars\n1\nquit\n"
    result = runner.invoke(app, ["chat", "--debug"], input=typed)
    assert result.exit_code == 0, result.stdout
    assert result.stdout.count("teller> ") >= 2
    store = open_store(get_settings())
    try:
        stored = [m for m in store.conversations.history(limit=100) if m.channel == "terminal"]
        delivered = store.deliveries.states()
    finally:
        store.close()
    customer = [m.text for m in stored if m.direction == "in"]
    assert customer[:2] == ["my card still has not arrived", "what is the weather like on mars"]
    replies = [m for m in stored if m.direction == "out"]
    assert len(replies) == len(customer) and delivered[DeliveryState.DELIVERED] == len(replies)


def test_ask_tells_a_handoff_as_the_customer_would_be_told_it(
    teller_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without an ops channel nobody can take over: ``ask`` shows the unstaffed reply and no button
    for a person, and small talk offers no person; with Slack and an ops channel, their own words."""
    from bot.core import NO_PERSON, PERSON_CHOICES, UNSTAFFED
    from bot.settings import get_settings

    for name in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "SLACK_APP_TOKEN", "TELLER_OPS_CHANNEL"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    code, stdout, _ = run("ask", "I want to talk to a human", "--json")
    [alone] = json_lines(stdout)
    assert code == 0 and alone["route"] == "handoff"
    # Told no one can take over, as asked (not "I can't answer that here": a trial's finding).
    assert alone["answer"] != UNSTAFFED and NO_PERSON in alone["answer"]
    assert alone["answer"].startswith("Sorry. No one from our team")
    assert not {c["value"] for c in alone["choices"]} & PERSON_CHOICES
    # Small talk offers no person either ("who are you?" said "I'll connect you").
    code, stdout, _ = run("ask", "who are you", "--json")
    [who] = json_lines(stdout)
    assert code == 0 and who["route"] == "smalltalk" and NO_PERSON in who["answer"]
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-test")
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "s3cret")
    monkeypatch.setenv("TELLER_OPS_CHANNEL", "C0OPS")
    get_settings.cache_clear()
    code, stdout, _ = run("ask", "I want to talk to a human", "--json")
    [staffed] = json_lines(stdout)
    assert code == 0 and staffed["route"] == "handoff" and staffed["answer"] != UNSTAFFED
    code, stdout, _ = run("ask", "who are you", "--json")
    [who] = json_lines(stdout)
    assert code == 0 and who["route"] == "smalltalk" and "connect you" in who["answer"]


def test_ask_answers_with_the_corrections_in_force(teller_env: Path) -> None:
    """A trial's finding: `teller ask` ignored operators' corrections that a server applies, so an
    operator checking one from the terminal saw the answer from before it."""
    from bot.settings import get_settings
    from bot.storage import CorrectionAction, NewCorrection, ReviewStatus, Store

    text = "my card is stuck in the machine"
    before = json.loads(run("ask", text, "--json")[1])
    assert before["rule"] != "correction"
    store = Store(get_settings().database)
    try:
        item = store.review.create(text, text, "intent", None, [])
        store.review.resolve(
            item,
            ReviewStatus.CHOSEN,
            "cli:ana",
            "exchange_rate",
            NewCorrection(text, text, CorrectionAction.CHOOSE, "exchange_rate"),
        )
    finally:
        store.close()
    after = json.loads(run("ask", text, "--json")[1])
    assert (after["rule"], after["route"]) == ("correction", "intent")
    assert after["reason"].startswith("exchange_rate: operator correction #")  # "intent": the model's


def test_a_long_step_shows_a_spinner_on_a_terminal_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """``kb add`` and ``kb sync`` say what they are doing while it takes seconds, on a terminal's
    stderr; a script's stderr stays as it was, and a step asking questions shows no spinner."""
    import importlib
    import io

    from rich.console import Console

    cli_app = importlib.import_module("bot.cli.app")
    for terminal, enabled, shown in ((True, True, True), (False, True, False), (True, False, False)):
        buffer = io.StringIO()
        monkeypatch.setattr(cli_app, "err", Console(file=buffer, force_terminal=terminal))
        with cli_app.working("Checking 3 entries [against] the intents…", enabled=enabled):
            pass
        assert ("Checking 3 entries [against] the intents…" in buffer.getvalue()) is shown


def test_serve_on_a_port_in_use_says_so_before_claiming_to_be_up(teller_env: Path) -> None:
    """A trial's `teller serve` on a port in use printed "Teller (model ...) on http://..." first
    and only then failed (uvicorn binds last, after the models load)."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, stdout, stderr = run("serve", "--port", str(port))
    assert code == 2 and f"cannot listen on 127.0.0.1:{port}" in stderr
    assert "on http://" not in stdout + stderr
