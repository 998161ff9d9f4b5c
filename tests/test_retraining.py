"""Retraining on corrections behind the promotion gate, on tiny random BERTs (seconds per retrain)."""

from __future__ import annotations

import csv
import shutil
import threading
from collections import Counter
from pathlib import Path

import pytest
import torch

from nlu import IntentClassifier, ModelRegistry
from nlu.artifact import read_corrections, read_dev_split, read_info, read_memory
from nlu.corrections import Correction, merge_corrections
from nlu.data import Corpus, Example, load_corpus
from nlu.errors import DataError, RetrainBusy, RetrainError, TrainingError
from nlu.gate import decide, read_gate
from nlu.retraining import RetrainResult, overall_progress, read_frozen, retrain, retrain_lock
from nlu.training import TrainConfig, train
from tests.conftest import TOY_INTENTS

T0 = "2026-11-01T09:00:00Z"


def _fix(text: str, label: str, at: str = T0, author: str = "op") -> Correction:
    return Correction(text, label, author, at)


@pytest.fixture(scope="module")
def base(toy_csv: Path) -> list[Example]:
    """The toy corpus the conftest model was trained on (its dev split included)."""
    return load_corpus([toy_csv]).examples


@pytest.fixture(scope="module")
def spare_rows() -> dict[str, list[Example]]:
    """Fifteen more Banking77 messages per toy intent, none of them in the toy corpus."""
    from nlu.corpora import BANKING77_TRAIN

    found: dict[str, list[Example]] = {label: [] for label in TOY_INTENTS}
    seen: Counter[str] = Counter()
    with BANKING77_TRAIN.open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            label = row["category"]
            if label in found:
                seen[label] += 1
                if 20 < seen[label] <= 35:
                    found[label].append(Example(row["text"], label))
    return found


def _copy_models(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def _snapshot(models: Path) -> tuple[str, list[str]]:
    root = models / "intent"
    return (root / "ACTIVE").read_text(), sorted(p.name for p in root.iterdir() if p.name != ".retrain.lock")


# Merging


def test_the_newest_correction_of_a_text_wins() -> None:
    merged = merge_corrections(
        [
            _fix("My card  never came", "card_arrival", "2026-11-01T10:00:00Z"),
            _fix("my card never came ", "lost_or_stolen_card", "2026-11-01T09:00:00Z"),  # older
            _fix("rate for euros?", "exchange_rate", "2026-11-01T12:00:00+02:00"),  # 10:00 UTC
            _fix("Rate for euros?", "top_up_failed", "2026-11-01T10:00:00"),  # same time, later: wins
            _fix("top up failed", "top_up_failed", "2026-11-02"),
        ]
    )
    assert [(c.text, c.label) for c in merged] == [
        ("My card  never came", "card_arrival"),
        ("Rate for euros?", "top_up_failed"),
        ("top up failed", "top_up_failed"),
    ]


def test_corrections_of_the_same_question_in_other_words_around_it_are_one() -> None:
    # As the answer policy matches them (nlu.corrections.canonical): a greeting, "please", thanks.
    merged = merge_corrections(
        [
            _fix("can I use my card in a shop abroad", "exchange_charge", "2026-11-01T10:00:00Z"),
            _fix("hi, can i use my card in a shop abroad please", "exchange_charge", "2026-11-01T11:00:00Z"),
            _fix(
                "Hello, can I use my card in a shop abroad? Thanks", "card_acceptance", "2026-11-01T12:00:00Z"
            ),
        ]
    )
    assert [(c.text, c.label) for c in merged] == [
        ("Hello, can I use my card in a shop abroad? Thanks", "card_acceptance")
    ]


@pytest.mark.parametrize(
    ("correction", "message"),
    [
        (_fix("  ", "card_arrival"), "empty text"),
        (_fix("hello", " "), "empty intent"),
        (_fix("hello", "card_arrival", "last tuesday"), "not an ISO 8601 time"),
    ],
)
def test_bad_corrections_are_refused(correction: Correction, message: str) -> None:
    with pytest.raises(DataError, match=message):
        merge_corrections([_fix("fine", "card_arrival"), correction])


# The gate's rule


def test_gate_rule() -> None:
    ok = decide(90, 89, 200, 3, 9, 10, tolerance_points=0.5)  # -0.5 points: exactly the tolerance
    assert ok.promote and ok.frozen_change_points == pytest.approx(-0.5)
    assert ok.candidate_corrections_accuracy == 0.9 and ok.active_corrections_accuracy == 0.3
    worse = decide(90, 88, 200, 3, 10, 10, tolerance_points=0.5)
    assert not worse.promote and "larger drop than the tolerance" in worse.reasons[0]
    same = decide(90, 95, 200, 9, 9, 10)
    assert not same.promote and "not better" in same.reasons[1]
    nothing = decide(90, 95, 200, 0, 0, 0)
    assert not nothing.promote and "nothing to learn" in nothing.reasons[1]
    assert nothing.active_corrections_accuracy is None
    assert not decide(0, 0, 0, 0, 5, 5).promote


# Training with a fixed dev split and corrections


def test_a_correction_may_not_be_in_the_fixed_dev_split(tiny_encoder_dir: Path, base: list[Example]) -> None:
    with pytest.raises(TrainingError, match="also in the dev split"):
        train(Corpus(base), tiny_encoder_dir, dev_examples=base[:4], corrections=[Example(base[0].text, "x")])


# A good retrain: frozen set, corrections taking effect, promotion


@pytest.fixture(scope="module", params=["continue", "scratch"])
def good_run(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    trained_models_dir: Path,
    base: list[Example],
    spare_rows: dict[str, list[Example]],
) -> tuple[Path, RetrainResult, list[Correction], list[tuple[str, float]]]:
    """A retrain with sixty good corrections, in each mode."""
    mode = request.param
    models = _copy_models(trained_models_dir, tmp_path_factory.mktemp(f"good-{mode}") / "models")
    frozen = read_dev_split(ModelRegistry(models).active_path())
    # Sixty new, correctly labelled messages, and one frozen-set message an operator confirmed.
    fixes = [_fix(e.text, e.label) for rows in spare_rows.values() for e in rows]
    fixes.append(_fix(frozen[0].text.upper(), frozen[0].label))
    fixes.insert(0, _fix(fixes[0].text, "exchange_rate", "2026-10-01T00:00:00Z"))  # older: loses
    stages: list[tuple[str, float]] = []
    progress = overall_progress(lambda s, f: stages.append((s, f)), mode)
    result = retrain(models, base, fixes, progress=progress, mode=mode)
    return models, result, fixes, stages


def test_the_frozen_set_is_kept_and_recorded_identically(
    good_run: tuple[Path, RetrainResult, list[Correction], list[tuple[str, float]]], base: list[Example]
) -> None:
    models, result, _, _ = good_run
    registry = ModelRegistry(models)
    active = registry.active_path()
    frozen = read_dev_split(active)
    candidate = result.candidate
    # The frozen set less the one corrected text, in the same order, is the candidate's dev split.
    assert read_dev_split(candidate.path) == frozen[1:]
    assert result.decision.frozen_size == len(frozen) - 1 and result.decision.frozen_dropped == 1
    info = read_info(candidate.path)
    assert info.dev_size == len(frozen) - 1
    assert info.retraining == {
        "parent": active.name,
        "mode": info.retraining["mode"],
        "corrections": 61,
        "correction_repeats": 6,
        "frozen_size": len(frozen) - 1,
        "frozen_dropped": 1,
    }
    # Trained on the base corpus less the frozen set, plus each correction once in the memory.
    assert info.train_size == len(base) - len(frozen) + 61 == len(read_memory(candidate.path))
    assert len(read_corrections(candidate.path)) == 61
    # The whole frozen set is recorded too (the next retrain gates on it), with which of its messages
    # each model got right (the series' baseline is counted on them).
    assert read_frozen(candidate.path) == frozen
    gate = read_gate(candidate.path)
    assert gate is not None and gate["series"]["frozen_size"] == len(frozen)
    assert gate["series"]["baseline"]["version"] == active.name == gate["baseline_version"]
    assert gate["baseline_frozen_accuracy"] == gate["active_frozen_accuracy"]


def test_the_candidate_is_registered_but_not_activated(
    good_run: tuple[Path, RetrainResult, list[Correction], list[tuple[str, float]]],
    trained_models_dir: Path,
) -> None:
    models, result, _, stages = good_run
    registry = ModelRegistry(models)
    assert registry.active_version() == ModelRegistry(trained_models_dir).active_version()
    assert result.active_version == registry.active_version() != result.candidate.info.version
    assert not result.candidate.active
    assert [v.info.version for v in registry.versions()][-1] == result.candidate.info.version
    names = [s for s, _ in stages]
    assert names[0] == "prepare" and names[-1] == "gate"
    first_stage = "base" if result.candidate.info.retraining["mode"] == "continue" else "probe"
    assert {first_stage, "train", "memory", "export"} <= set(names)
    fractions = [f for _, f in stages]
    assert fractions == sorted(fractions) and fractions[-1] == pytest.approx(1.0)


def test_corrections_take_effect_and_a_good_candidate_is_promoted(
    good_run: tuple[Path, RetrainResult, list[Correction], list[tuple[str, float]]],
) -> None:
    _, result, fixes, _ = good_run
    decision = result.decision
    assert decision.promote, decision.reasons
    assert decision.corrections_size == 61
    assert decision.active_corrections_accuracy is not None
    assert decision.candidate_corrections_accuracy is not None
    # The tiny random BERT learns more slowly at the continued recipe's lower learning rate.
    floor = 0.9 if result.candidate.info.retraining["mode"] == "scratch" else 0.85
    assert decision.candidate_corrections_accuracy >= floor
    assert decision.candidate_corrections_accuracy > decision.active_corrections_accuracy + 0.1
    assert decision.candidate_frozen_accuracy >= decision.active_frozen_accuracy - 0.005
    # The figures are what the served models say.
    candidate = IntentClassifier.load(result.candidate.path)
    winners = merge_corrections(fixes)
    predictions = candidate.predict([c.text for c in winners])
    right = sum(p.intent == c.label for p, c in zip(predictions, winners, strict=True))
    assert right / len(winners) == decision.candidate_corrections_accuracy


def test_a_chained_retrain_keeps_the_same_frozen_set(
    good_run: tuple[Path, RetrainResult, list[Correction], list[tuple[str, float]]],
    tmp_path: Path,
    base: list[Example],
) -> None:
    source, first, fixes, _ = good_run
    models = _copy_models(source, tmp_path / "models")
    ModelRegistry(models).activate(first.candidate.info.version)
    mode = first.candidate.info.retraining["mode"]
    # (a correction naming an intent the active model lacks is left out and recorded, not refused)
    more = [
        _fix("is my new card on its way", "card_arrival"),
        _fix("my cat ate my card", "card_eaten_by_cat"),
    ]
    second = retrain(models, base, [*fixes, *more], mode=mode, drift_points=1.0)
    assert read_info(second.candidate.path).retraining["corrections_skipped"] == ["card_eaten_by_cat"]
    assert second.decision.corrections_size == first.decision.corrections_size + 1
    assert read_dev_split(second.candidate.path) == read_dev_split(first.candidate.path)
    assert read_frozen(second.candidate.path) == read_frozen(first.candidate.path)
    # Compared on the same messages as the first retrain (its corrected text still left out), and
    # against the best model of the series so far.
    assert (second.decision.frozen_size, second.decision.frozen_dropped) == (first.decision.frozen_size, 1)
    assert second.decision.baseline_version in (first.active_version, first.candidate.info.version)
    assert second.decision.cumulative_change_points is not None
    assert any("cumulative bound" in r for r in second.decision.reasons)
    assert read_info(second.candidate.path).retraining["parent"] == first.candidate.info.version


def test_the_candidate_records_how_it_was_trained(
    good_run: tuple[Path, RetrainResult, list[Correction], list[tuple[str, float]]],
    trained_models_dir: Path,
) -> None:
    _, result, _, _ = good_run
    info = result.candidate.info
    assert info.base_encoder == read_info(ModelRegistry(trained_models_dir).active_path()).base_encoder
    if info.retraining["mode"] == "continue":
        steps = max(TrainConfig().continue_steps, -(-61 * TrainConfig().continue_draws // 2))
        assert [h["step"] for h in info.history][-1] == steps  # 61 corrections, 2 per batch of 8
    else:
        assert [h["epoch"] for h in info.history] == [1.0, 2.0, 3.0]


def test_continued_training_starts_from_the_given_model(
    trained_models_dir: Path, base: list[Example], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the fine-tuning steps taken out, what comes back is the active model itself."""
    from nlu.data import Corpus
    from nlu.model import IntentModel
    from nlu.training import continue_training

    monkeypatch.setattr("nlu.training._continue", lambda *args, **kwargs: [])
    active = ModelRegistry(trained_models_dir).active_path()
    frozen = read_dev_split(active)
    fix = Example("has my card been posted yet", "card_arrival")
    trained = continue_training(
        active, Corpus(base), Path(read_info(active).base_encoder), dev_examples=frozen, corrections=[fix]
    )
    before = IntentModel.load(active).state_dict()
    after = trained.model.state_dict()
    assert before.keys() == after.keys() and all(bool((before[k] == after[k]).all()) for k in before)
    assert trained.labels == IntentClassifier.load(active).labels
    assert trained.dev_examples == frozen and trained.corrections == [fix]
    assert len(trained.memory) == len(trained.base_memory) == len(base) - len(frozen) + 1


def test_continued_training_is_deterministic(
    tmp_path: Path, trained_models_dir: Path, base: list[Example], spare_rows: dict[str, list[Example]]
) -> None:
    from nlu.data import Corpus
    from nlu.training import continue_training

    active = ModelRegistry(trained_models_dir).active_path()
    config = TrainConfig.from_dict({**read_info(active).training, "continue_steps": 20})
    encoder = Path(read_info(active).base_encoder)
    frozen = read_dev_split(active)
    fixes = [e for rows in spare_rows.values() for e in rows[:2]]
    runs = [
        continue_training(active, Corpus(base), encoder, config, dev_examples=frozen, corrections=fixes)
        for _ in range(2)
    ]
    first, second = (r.model.state_dict() for r in runs)
    assert all(bool((first[k] == second[k]).all()) for k in first)
    assert runs[0].train_size == len(base) - len(frozen) + len(fixes)
    assert runs[0].corrections == sorted(fixes, key=lambda e: (e.label, e.text))


def test_continued_training_freezes_the_layers_the_model_was_trained_with(
    trained_models_dir: Path, base: list[Example], spare_rows: dict[str, list[Example]]
) -> None:
    """The active tiny model trained all its layers (``frozen_layer_share`` 0.0): continuing it
    with its own config trains its lowest layer too, whatever today's default share is."""
    from nlu.data import Corpus
    from nlu.model import IntentModel
    from nlu.training import continue_training

    active = ModelRegistry(trained_models_dir).active_path()
    config = TrainConfig.from_dict({**read_info(active).training, "continue_steps": 20})
    assert config.frozen_layer_share == 0.0 and TrainConfig().frozen_layer_share > 0.0
    fixes = [e for rows in spare_rows.values() for e in rows[:2]]
    run = continue_training(
        active,
        Corpus(base),
        Path(read_info(active).base_encoder),
        config,
        dev_examples=read_dev_split(active),
        corrections=fixes,
    )
    before = IntentModel.load(active).encoder.encoder.layer[0].attention.self.query.weight
    assert not torch.equal(before, run.model.encoder.encoder.layer[0].attention.self.query.weight)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"batch_size": 1}, "batches of at least 2"),
        ({"continue_steps": 0}, "at least 1"),
        ({"continue_learning_rate_factor": 0.0}, "continue_learning_rate_factor"),
    ],
)
def test_continued_training_refuses_bad_settings(
    trained_models_dir: Path, base: list[Example], change: dict[str, float], message: str
) -> None:
    from nlu.data import Corpus
    from nlu.training import continue_training

    active = ModelRegistry(trained_models_dir).active_path()
    info = read_info(active)

    def attempt(config: TrainConfig | None, intent: str) -> None:
        fix = Example("where is my card", intent)
        encoder = Path(info.base_encoder)
        frozen = read_dev_split(active)
        continue_training(active, Corpus(base), encoder, config, dev_examples=frozen, corrections=[fix])

    with pytest.raises(TrainingError, match=message):
        attempt(TrainConfig.from_dict({**info.training, **change}), "card_arrival")
    with pytest.raises(TrainingError, match="intents the model does not have"):
        attempt(None, "no_such_intent")


def test_corrections_per_batch() -> None:
    assert TrainConfig().corrections_per_batch() == 8  # of 32
    assert TrainConfig(batch_size=8).corrections_per_batch() == 2
    assert TrainConfig(batch_size=2, continue_corrections_share=0.9).corrections_per_batch() == 1
    assert TrainConfig(batch_size=32, continue_corrections_share=0.0).corrections_per_batch() == 1


# A poisoned retrain is refused


@pytest.mark.parametrize("mode", ["continue", "scratch"])
def test_a_poisoned_candidate_is_refused(
    tmp_path: Path,
    trained_models_dir: Path,
    base: list[Example],
    spare_rows: dict[str, list[Example]],
    mode: str,
) -> None:
    models = _copy_models(trained_models_dir, tmp_path / "models")
    active = ModelRegistry(models).active_path()
    frozen = read_dev_split(active)
    predictions = IntentClassifier.load(active).predict([e.text for e in frozen])
    right = Counter(e.label for e, p in zip(frozen, predictions, strict=True) if p.intent == e.label)
    victim = right.most_common(1)[0][0]  # the intent the active model gets right most often
    other = next(label for label in TOY_INTENTS if label != victim)
    frozen_texts = {e.text for e in frozen}
    victims = [e for e in base if e.label == victim and e.text not in frozen_texts] + spare_rows[victim]
    poison = [_fix(e.text, other, author="mallory") for e in victims]

    result = retrain(models, base, poison, mode=mode)

    decision = result.decision
    assert not decision.promote
    assert decision.frozen_change_points < -decision.tolerance_points
    assert "larger drop than the tolerance" in decision.reasons[0]
    # The corrections did take effect: the candidate learned the (wrong) labels.
    assert (
        decision.candidate_corrections_accuracy is not None and decision.candidate_corrections_accuracy >= 0.9
    )
    assert ModelRegistry(models).active_path() == active


# Crashes, locking and refusals


@pytest.mark.parametrize(
    ("where", "mode"),
    [
        ("nlu.training._continue", "continue"),
        ("nlu.training._fine_tune", "scratch"),
        ("nlu.artifact.export_onnx", "continue"),
    ],
)
def test_a_crash_mid_training_leaves_the_registry_untouched(
    tmp_path: Path,
    trained_models_dir: Path,
    base: list[Example],
    spare_rows: dict[str, list[Example]],
    monkeypatch: pytest.MonkeyPatch,
    where: str,
    mode: str,
) -> None:
    models = _copy_models(trained_models_dir, tmp_path / "models")
    before = _snapshot(models)

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("power cut")

    monkeypatch.setattr(where, boom)
    fixes = [_fix(e.text, e.label) for e in spare_rows["card_arrival"]]
    with pytest.raises(RuntimeError, match="power cut"):
        retrain(models, base, fixes, mode=mode)
    assert _snapshot(models) == before  # same ACTIVE, no new or half-written (.tmp-*) version
    with retrain_lock(models):  # and the lock was released
        pass


def test_a_second_concurrent_retrain_is_refused(
    tmp_path: Path, trained_models_dir: Path, base: list[Example], spare_rows: dict[str, list[Example]]
) -> None:
    models = _copy_models(trained_models_dir, tmp_path / "models")
    started, release = threading.Event(), threading.Event()
    errors: list[Exception] = []

    class Stop(Exception):
        """Ends the first run early: only its lock matters here."""

    def hold(stage: str, done: int, total: int) -> None:
        started.set()
        release.wait(30)
        raise Stop

    def first() -> None:
        try:
            retrain(models, base, [_fix("where is my card", "card_arrival")], progress=hold)
        except Exception as exc:
            errors.append(exc)

    thread = threading.Thread(target=first)
    thread.start()
    try:
        assert started.wait(30)
        with pytest.raises(RetrainBusy, match="already running"):
            retrain(models, base, [_fix("card?", "card_arrival")])
    finally:
        release.set()
        thread.join(30)
    assert len(errors) == 1 and isinstance(errors[0], Stop)
    with retrain_lock(models):
        pass


def test_retrain_refuses_what_it_cannot_gate(
    tmp_path: Path, trained_models_dir: Path, base: list[Example]
) -> None:
    models = _copy_models(trained_models_dir, tmp_path / "models")
    before = _snapshot(models)
    with pytest.raises(RetrainError, match="nothing to learn"):
        retrain(models, base, [])
    with pytest.raises(RetrainError, match="unknown retraining mode"):
        retrain(models, base, [_fix("where is my card", "card_arrival")], mode="sideways")
    with pytest.raises(DataError, match="unknown intent"):
        retrain(models, base, [_fix("where is my card", "card_arival")])
    with pytest.raises(DataError, match="2 unknown intent"):  # none left to learn: all named
        retrain(models, base, [_fix("where is my card", "card_arival"), _fix("top up", "top_up_faild")])
    (ModelRegistry(models).active_path() / "dev.csv").unlink()
    with pytest.raises(RetrainError, match="no recorded dev split"):
        retrain(models, base, [_fix("where is my card", "card_arrival")])
    assert _snapshot(models) == before


# The base corpus


def test_without_a_base_corpus_the_active_models_own_is_replayed(
    tmp_path: Path, trained_models_dir: Path, toy_csv: Path, base: list[Example]
) -> None:
    models = _copy_models(trained_models_dir, tmp_path / "models")
    assert read_info(ModelRegistry(models).active_path()).sources == [str(toy_csv)]
    result = retrain(models, None, [_fix("has my card been posted", "card_arrival")])
    info = result.candidate.info
    assert info.sources == [str(toy_csv), "corrections.csv"]
    assert info.train_size == len(base) - result.decision.frozen_size + 1
    # The candidate names the same files, so the next retrain finds them too.
    ModelRegistry(models).activate(info.version)
    again = retrain(
        models, None, [_fix("has my card been posted", "card_arrival"), _fix("card?", "card_arrival")]
    )
    assert again.candidate.info.sources == [str(toy_csv), "corrections.csv"]


def test_the_recorded_corpus_is_found_or_asked_for(trained_models_dir: Path, tmp_path: Path) -> None:
    from dataclasses import replace

    from nlu.corpora import BANKING77_TRAIN
    from nlu.retraining import recorded_corpus

    info = read_info(ModelRegistry(trained_models_dir).active_path())
    moved = replace(info, sources=["/old/checkout/nlu/corpora/banking77/train.csv", "corrections.csv"])
    assert recorded_corpus(moved).sources == [str(BANKING77_TRAIN)]
    with pytest.raises(RetrainError, match=r"trained on /gone/bank\.csv, which is not on this machine"):
        recorded_corpus(replace(info, sources=["/gone/bank.csv"]))
    with pytest.raises(RetrainError, match="does not record the files"):
        recorded_corpus(replace(info, sources=["<examples>", "corrections.csv"]))


def test_train_config_round_trips_correction_repeats() -> None:
    assert TrainConfig.from_dict({"correction_repeats": 3}).correction_repeats == 3
    assert TrainConfig.from_dict({}).correction_repeats == 6  # artifacts written before retraining
