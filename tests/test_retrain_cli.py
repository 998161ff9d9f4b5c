"""``teller retrain`` in the terminal: corrections from the review queue, the gate's verdict with its
figures, and a clear message when there is nothing to learn."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bot.assistant import build_core, build_service
from bot.core import Incoming
from bot.operators import Actor
from bot.settings import get_settings
from nlu import ModelRegistry
from nlu.artifact import read_info
from tests.test_cli import run
from tests.test_retrain_serving import own_models, spare_messages

__all__ = ["own_models"]  # the fixture, shared with the serving test


def test_retrain_says_when_there_is_nothing_to_learn(own_models: Path) -> None:
    before = ModelRegistry(own_models).active_version()
    code, _, stderr = run("retrain", "--json")
    assert code == 2 and "nothing to learn" in stderr and "active model is unchanged" in stderr
    assert ModelRegistry(own_models).active_version() == before


@pytest.mark.parametrize("flags", [[], ["--from-scratch"]])
def test_retrain_on_the_review_queue_and_the_given_corpus(
    own_models: Path, toy_csv: Path, flags: list[str]
) -> None:
    settings = get_settings()
    core = build_core(settings)
    service = build_service(settings, core)
    assert service.ops is not None
    operator = Actor("cli", "tester")
    fixes = [(text, label) for label, texts in spare_messages(8).items() for text in texts]
    for i, (text, label) in enumerate(fixes):
        reply = service.handle(Incoming("web", f"c{i}", f"c{i}", None, text))
        item = service.ops.flag(reply.message_id, None, operator)
        service.ops.review.choose(item.id, label, operator)
    service.close()
    core.close()
    before = ModelRegistry(own_models).active_version()

    code, stdout, _ = run("retrain", "--data", str(toy_csv), *flags, "--json")

    report = json.loads(stdout)
    assert code == (0 if report["promoted"] else 1), stdout  # a refused candidate: exit 1
    decision = report["decision"]
    assert report["active_before"] == before and report["candidate"] != before
    assert decision["corrections_size"] >= len(fixes) - 1
    assert decision["candidate_corrections_accuracy"] > decision["active_corrections_accuracy"]
    active = ModelRegistry(own_models).active_version()
    assert report["promoted"] == decision["promote"] and (active == report["candidate"]) == report["promoted"]
    assert report["message"].startswith("Promoted" if report["promoted"] else f"Kept {before}")
    mode = read_info(ModelRegistry(own_models).path(report["candidate"])).retraining["mode"]
    assert mode == ("scratch" if flags else "continue")
    # `teller models list` shows the trajectory on the frozen set: the first model's score, and the
    # candidate's with its change against its parent and against the best of the series.
    code, stdout, _ = run("models", "list", "--json")
    listed = {r["version"]: r for r in map(json.loads, stdout.splitlines())}
    assert listed[before]["frozen"]["accuracy"] == decision["active_frozen_accuracy"]
    frozen = listed[report["candidate"]]["frozen"]
    assert frozen["accuracy"] == decision["candidate_frozen_accuracy"] and frozen["baseline"] == before
    assert frozen["change_points"] == pytest.approx(frozen["cumulative_points"])
    code, stdout, _ = run("models", "list")
    assert code == 0 and "frozen" in stdout and f"{frozen['accuracy']:.2%}"[:4] in stdout


def _fake_versions(models: Path, count: int) -> list[str]:
    """Copies of the active artifact registered as newer versions (a second apart)."""
    registry = ModelRegistry(models)
    active = registry.active_path()
    created = []
    for i in range(count):
        version = f"29990101-00000{i}-copy{i}"
        shutil.copytree(active, registry.root / version)
        info_file = registry.root / version / "teller_model.json"
        info = json.loads(info_file.read_text(encoding="utf-8"))
        info.update(version=version, created_at=f"2999-01-01T00:00:0{i}Z", retraining={"parent": active.name})
        info_file.write_text(json.dumps(info), encoding="utf-8")
        created.append(version)
    return created


def test_models_prune_keeps_the_active_model_and_the_newest_others(own_models: Path) -> None:
    registry = ModelRegistry(own_models)
    active = registry.active_version()
    copies = _fake_versions(own_models, 4)  # all newer than the active one

    code, stdout, _ = run("models", "prune", "--keep", "1", "--dry-run")
    assert code == 0 and stdout.count("Would delete") == 3 and "MB)" in stdout
    assert len(registry.versions()) == 5

    code, stdout, _ = run("models", "prune", "--keep", "1", "--json")
    assert code == 0 and json.loads(stdout) == {"deleted": copies[:3]}
    assert [v.info.version for v in registry.versions()] == [active, copies[3]]
    assert registry.active_version() == active
    assert not [p for p in registry.root.iterdir() if p.name.startswith(".trash")]

    [listed] = [json.loads(line) for line in run("models", "list", "--json")[1].splitlines()][1:]
    assert listed["origin"] == "retrain: not gated" and listed["parent"] == active
    code, stdout, _ = run("models", "prune")
    assert code == 0 and "Nothing to delete" in stdout


def test_models_prune_waits_for_no_retrain(own_models: Path) -> None:
    from nlu.retraining import retrain_lock

    _fake_versions(own_models, 3)
    with retrain_lock(own_models):
        code, _, stderr = run("models", "prune", "--keep", "0")
    assert code == 2 and "a retrain is already running" in stderr
    assert len(ModelRegistry(own_models).versions()) == 4


def test_no_active_model_names_the_directory_in_full_and_teller_models(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A trial ran `teller ask` from another directory: "no active intent model in models/intent;
    train one" sent them to a retrain, not to TELLER_MODELS (the default is relative)."""
    from nlu.errors import ModelNotFoundError

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelNotFoundError) as raised:
        ModelRegistry("models").active_path()
    assert str(tmp_path / "models") in str(raised.value) and "TELLER_MODELS" in str(raised.value)
