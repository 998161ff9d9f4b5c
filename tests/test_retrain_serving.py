"""The promotion gate inside Teller: operators' corrections from the review queue, a retrain in the
background while customers keep chatting, a poisoned candidate refused, a good one swapped into the
running server without a restart or a dropped message."""

from __future__ import annotations

import csv
import json
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bot.assistant import build_core, build_service
from bot.core import Incoming, TellerCore
from bot.model_swap import ModelSwapper
from bot.operators import Actor
from bot.retraining import RetrainOutcome, RetrainRunner
from bot.service import TellerService
from bot.settings import get_settings
from bot.web.app import create_app
from nlu import ModelRegistry
from nlu.artifact import read_dev_split
from nlu.data import Example, load_corpus
from tests.conftest import TOY_INTENTS
from tests.servers import serve_in_thread

OPERATOR = Actor("cli", "test-operator")


@pytest.fixture()
def own_models(teller_env: Path, trained_models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of the trained toy models: retraining registers and activates versions."""
    models = teller_env.parent / "models"
    shutil.copytree(trained_models_dir, models)
    monkeypatch.setenv("TELLER_MODELS", str(models))
    # A customer chatting through a retrain sends faster than the per-customer limit allows.
    for limit in (
        "TELLER_LIMIT_MESSAGES",
        "TELLER_LIMIT_MESSAGES_PER_ADDRESS",
        "TELLER_LIMIT_MESSAGES_OVERALL",
        "TELLER_LIMIT_MESSAGES_ANONYMOUS",
    ):
        monkeypatch.setenv(limit, "10000/minute")
    get_settings.cache_clear()
    return models


@pytest.fixture()
def served(own_models: Path) -> Iterator[tuple[str, TellerCore, TellerService]]:
    settings = get_settings()
    core = build_core(settings)
    service = build_service(settings, core)
    app = create_app(core, (), owns_core=True, service=service, services=[ModelSwapper(settings, core, 0.2)])
    with serve_in_thread(app) as url:
        yield url, core, service


def spare_messages(per_intent: int = 15) -> dict[str, list[str]]:
    """Banking77 messages of the toy intents that are not in the toy corpus (it holds the first 20)."""
    from nlu.corpora import BANKING77_TRAIN

    found: dict[str, list[str]] = {label: [] for label in TOY_INTENTS}
    with BANKING77_TRAIN.open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            rows = found.get(row["category"])
            if rows is not None and len(rows) < 20 + per_intent:
                rows.append(row["text"])
    return {label: texts[20:] for label, texts in found.items()}


def correct(service: TellerService, core: TellerCore, labelled: list[tuple[str, str]]) -> None:
    """Customers ask; an operator flags each answer and chooses the intent in the review queue."""
    assert service.ops is not None
    for i, (text, label) in enumerate(labelled):
        reply = service.handle(Incoming("web", f"c{i}", f"c{i}", None, text))
        item = service.ops.flag(reply.message_id, "wrong intent", OPERATOR)
        service.ops.review.choose(item.id, label, OPERATOR)


def runner_for(service: TellerService, core: TellerCore, toy_csv: Path) -> RetrainRunner:
    assert service.ops is not None and service.ops.retrainer is not None
    settings = get_settings()
    swapper = ModelSwapper(settings, core)
    base: list[Example] = load_corpus([toy_csv]).examples
    return RetrainRunner(settings, service.ops.review, swap=swapper.sync, base_corpus=base)


def test_a_poisoned_retrain_is_refused_and_the_model_stays(
    served: tuple[str, TellerCore, TellerService], toy_csv: Path, own_models: Path
) -> None:
    url, core, service = served
    before = httpx.get(f"{url}/healthz").json()["model"]
    victim, other = TOY_INTENTS[0], TOY_INTENTS[1]
    # Every message of one intent an operator sees is relabelled, outside the frozen set (a text
    # corrected inside it leaves the frozen set, so the gate could not see the damage there).
    frozen = {e.text for e in read_dev_split(ModelRegistry(own_models).active_path())}
    toy = [e for e in load_corpus([toy_csv]).examples if e.label == victim and e.text not in frozen]
    poison = [(e.text, other) for e in toy] + [(t, other) for t in spare_messages()[victim]]
    correct(service, core, poison)

    outcome = runner_for(service, core, toy_csv).run()

    assert not outcome.promoted and outcome.error is None, outcome.message
    assert (
        outcome.message.startswith(f"Kept {before}; candidate ")
        and "larger drop than the tolerance" in outcome.message
    )
    assert ModelRegistry(own_models).active_version() == before
    assert httpx.get(f"{url}/healthz").json()["model"] == before
    assert len(ModelRegistry(own_models).versions()) == 2  # the refused candidate is kept for inspection


def test_kb_changes_from_a_terminal_reach_the_running_server(
    served: tuple[str, TellerCore, TellerService], tmp_path: Path
) -> None:
    from tests.test_cli import run

    _, core, _ = served
    md = tmp_path / "extra.md"
    md.write_text(
        "## Do you have a branch in Leeds?\nid: leeds_branch\n\nNot yet: London and Manchester.\n",
        encoding="utf-8",
    )
    assert run("kb", "add", str(md))[0] == 0  # another connection to the same knowledge base

    deadline = time.monotonic() + 10
    while "leeds_branch" not in core.policy.kb and time.monotonic() < deadline:
        time.sleep(0.05)
    assert core.policy.kb.search("is there a branch in leeds", k=1)[0].entry.id == "leeds_branch"
    assert run("kb", "remove", "leeds_branch")[0] == 0
    while "leeds_branch" in core.policy.kb and time.monotonic() < deadline + 10:
        time.sleep(0.05)
    assert "leeds_branch" not in core.policy.kb


def test_the_server_refits_its_thresholds_when_the_kb_changes(
    served: tuple[str, TellerCore, TellerService],
) -> None:
    """The knowledge base's thresholds follow every change, in the background, without a restart."""
    from bot.assistant import KB_CALIBRATION_FILE, KB_FIT, follow_kb
    from retrieval.entry import KBEntry

    url, core, _ = served
    kb = core.policy.kb
    kb.add(
        [KBEntry.build("lockers", ["Do you rent lockboxes?"], "Yes: lockboxes at 12 branches, £60 a year.")]
    )
    path = kb.directory / KB_CALIBRATION_FILE
    deadline = time.monotonic() + 60
    stored: dict = {}
    while time.monotonic() < deadline:
        stored = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        # The fit is written to the file first and handed to the policy just after: wait for both.
        fitted_for = (core.policy.classifier.version, kb.revision)
        if stored.get("kb_revision") == kb.revision and core.policy.kb_fit == fitted_for:
            break
        time.sleep(0.1)
    assert stored.get("kb_revision") == kb.revision and stored["model"] == core.policy.classifier.version
    t = core.policy.thresholds
    assert t is not None
    assert {"faq": t.faq, "faq_margin": t.faq_margin, "faq_fallback": t.faq_fallback} == {
        k: stored["thresholds"][k] for k in ("faq", "faq_margin", "faq_fallback")
    }
    assert stored["kb_entries"] == len(kb) and "fitted" in stored and stored["fit"] == KB_FIT
    auth = {"Authorization": "Bearer " + httpx.post(f"{url}/api/sessions").json()["token"]}
    assert httpx.post(f"{url}/api/messages", json={"text": "lockbox?"}, headers=auth).status_code == 200

    # A fit stored by a Teller that scores searches otherwise (an older one) is re-fitted, not reused.
    older = {
        **stored,
        "fit": "an older Teller",
        "thresholds": {**stored["thresholds"], "faq_fallback": 0.999},
    }
    path.write_text(json.dumps(older), encoding="utf-8")
    core.policy.kb_fit = None
    follow_kb(core.policy)
    assert core.policy.thresholds.faq_fallback == stored["thresholds"]["faq_fallback"] != 0.999
    assert json.loads(path.read_text(encoding="utf-8"))["fit"] == KB_FIT

    # So is one fitted over another graph of the retrieval encoder (an fp32 export before int8).
    from retrieval.embedder import embedder_key

    refitted = json.loads(path.read_text(encoding="utf-8"))
    assert refitted["embedder"] == embedder_key(kb.embedder)
    path.write_text(
        json.dumps({**refitted, "embedder": "another graph", "thresholds": older["thresholds"]}),
        encoding="utf-8",
    )
    core.policy.kb_fit = None
    follow_kb(core.policy)
    assert core.policy.thresholds.faq_fallback == stored["thresholds"]["faq_fallback"] != 0.999


def test_a_good_retrain_is_promoted_and_served_without_a_restart(
    served: tuple[str, TellerCore, TellerService], toy_csv: Path, own_models: Path
) -> None:
    url, core, service = served
    before = httpx.get(f"{url}/healthz").json()["model"]
    fixes = [(text, label) for label, texts in spare_messages().items() for text in texts]
    correct(service, core, fixes)
    runner = runner_for(service, core, toy_csv)
    review = service.ops.review  # type: ignore[union-attr]
    assert len(review.corrections(accepted_only=False)) == len(fixes)
    # Near-identical messages are one item: the newer correction supersedes the older.
    assert len(fixes) - 2 <= len(runner.corrections()) <= len(fixes)

    # Customers keep chatting through the retrain and the swap: every message is answered once.
    stop, answered, failures = threading.Event(), [], []

    def chat() -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            client.headers["Authorization"] = "Bearer " + client.post("/api/sessions").json()["token"]
            n = 0
            while not stop.is_set():
                n += 1
                response = client.post(
                    "/api/messages",
                    json={"text": fixes[n % len(fixes)][0], "client_message_id": str(n)},
                )
                (answered if response.status_code == 200 else failures).append(
                    response.json().get("message_id")
                )
                stop.wait(0.05)  # a steady customer, not a load test

    chatter = threading.Thread(target=chat)
    chatter.start()
    stages: list[tuple[str, float]] = []
    done: list[RetrainOutcome] = []
    assert runner.start(lambda stage, fraction: stages.append((stage, fraction)), done.append)
    assert not runner.start()  # one run at a time
    runner.wait(300)
    [outcome] = done
    deadline = time.monotonic() + 30  # keep chatting until the new model has answered
    while time.monotonic() < deadline and not any(
        m.model_version == core.policy.classifier.version
        for m in core.store.conversations.history(limit=20)
        if m.direction == "out" and m.model_version != before
    ):
        time.sleep(0.1)
    stop.set()
    chatter.join(30)

    assert outcome.promoted, outcome.message
    assert outcome.result is not None
    after = outcome.result.candidate.info.version
    assert after != before and ModelRegistry(own_models).active_version() == after
    assert httpx.get(f"{url}/healthz").json()["model"] == after  # swapped in, same process
    assert core.policy.classifier.version == after
    assert stages[0][0] == "prepare" and stages[-1][0] == "calibrate"
    assert not failures and len(answered) == len(set(answered)) > 0
    models_used = {
        m.model_version for m in core.store.conversations.history(limit=10_000) if m.direction == "out"
    }
    assert {before, after} <= models_used  # answers before and after the swap
    predictions = core.policy.classifier.predict([text for text, _ in fixes])
    right = [p.intent == label for p, (_, label) in zip(predictions, fixes, strict=True)]
    assert sum(right) / len(right) >= 0.9
