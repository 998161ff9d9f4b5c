"""The training loop, determinism and the artifact save/load contract, on a tiny random BERT."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from nlu import IntentClassifier, ModelRegistry
from nlu.artifact import read_dev_split, read_info, read_labels, read_memory
from nlu.data import Example, load_corpus
from nlu.errors import TrainingError
from nlu.model import IntentModel
from nlu.scoring import Scorer
from nlu.tokenization import TextEncoder, pad
from nlu.training import (
    TrainConfig,
    _train_forward,
    _train_forward_from_states,
    bf16_native,
    embed_from_states,
    for_this_cpu,
    forward_all,
    frozen_states,
    train,
)
from tests.conftest import TOY_INTENTS, write_csv

FAST = TrainConfig(epochs=3, batch_size=8, learning_rate=1e-3, head_learning_rate=1e-3, dev_fraction=0.25)


def _state(model: IntentModel) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_training_lowers_the_loss_and_learns_the_toy_intents(tiny_encoder_dir: Path, toy_csv: Path) -> None:
    corpus = load_corpus([toy_csv])
    # A random tiny BERT must learn its embeddings too; the real encoder keeps them frozen.
    config = TrainConfig(**{**FAST.to_dict(), "epochs": 6, "freeze_embeddings": False})
    result = train(corpus, tiny_encoder_dir, config)
    losses = [h["loss"] for h in result.history]
    assert len(losses) == 6
    assert losses[-1] < losses[0] * 0.7
    assert result.labels == sorted(TOY_INTENTS)
    assert (result.train_size, result.dev_size) == (60, 20)
    assert (
        result.dev_metrics is not None and result.dev_metrics.accuracy > 0.25 + 0.2
    )  # four intents: chance is 0.25
    assert 0.05 <= result.temperature <= 20


def test_frozen_embeddings_stay_put(tiny_encoder_dir: Path, toy_csv: Path) -> None:
    before = (
        IntentModel.from_encoder(tiny_encoder_dir, 4)
        .encoder.embeddings.word_embeddings.weight.detach()
        .clone()
    )
    result = train(load_corpus([toy_csv]), tiny_encoder_dir, FAST)
    assert FAST.freeze_embeddings
    assert torch.equal(result.model.encoder.embeddings.word_embeddings.weight, before)
    assert not torch.equal(
        result.model.encoder.encoder.layer[1].attention.self.query.weight,
        IntentModel.from_encoder(tiny_encoder_dir, 4).encoder.encoder.layer[1].attention.self.query.weight,
    )


def test_the_lowest_share_of_layers_stays_as_pre_trained(tiny_encoder_dir: Path, toy_csv: Path) -> None:
    fresh = IntentModel.from_encoder(tiny_encoder_dir, 4).encoder.encoder.layer
    # The tiny encoder has 2 layers: the default half freezes the first, none frozen trains both.
    config = TrainConfig(**{**FAST.to_dict(), "frozen_layer_share": 0.5})
    assert TrainConfig().frozen_layer_share == 0.5
    trained = train(load_corpus([toy_csv]), tiny_encoder_dir, config).model.encoder.encoder.layer
    for (name, before), after in zip(fresh[0].named_parameters(), trained[0].parameters(), strict=True):
        assert torch.equal(before, after), name
    assert not torch.equal(fresh[1].attention.self.query.weight, trained[1].attention.self.query.weight)
    none = TrainConfig(**{**FAST.to_dict(), "frozen_layer_share": 0.0})
    unfrozen = train(load_corpus([toy_csv]), tiny_encoder_dir, none).model.encoder.encoder.layer
    assert not torch.equal(fresh[0].attention.self.query.weight, unfrozen[0].attention.self.query.weight)
    # An artifact written before layers could be frozen was trained with none frozen.
    old = {k: v for k, v in FAST.to_dict().items() if k != "frozen_layer_share"}
    assert TrainConfig.from_dict(old).frozen_layer_share == 0.0
    assert TrainConfig.from_dict(config.to_dict()).frozen_layer_share == 0.5


def test_the_frozen_layers_run_once_and_give_what_the_whole_encoder_gives(
    tiny_encoder_dir: Path, toy_csv: Path
) -> None:
    corpus = load_corpus([toy_csv])
    model = IntentModel.from_encoder(tiny_encoder_dir, 4)
    ids = TextEncoder(Path(tiny_encoder_dir) / "tokenizer.json").encode(corpus.texts)
    _, whole = forward_all(model, ids)
    embeddings, states = frozen_states(model, ids, frozen=1)
    assert states.flat.shape == (sum(len(x) for x in ids), model.hidden_size) and len(states) == len(ids)
    assert np.allclose(embeddings, whole, atol=1e-6)  # the probe's pass is the whole encoder's
    assert np.allclose(embed_from_states(model, states), whole, atol=1e-6)  # the memory pass too
    # A training step from the states (dropout off) gives the logits of one from the tokens, for
    # texts of different lengths and a text drawn twice (a correction's repeats).
    batch = [3, 0, 3, len(ids) - 1]
    model.eval()
    input_ids, mask = pad([ids[i] for i in batch])
    plain, _ = model(torch.from_numpy(input_ids), torch.from_numpy(mask))
    picked = states.rows([0, 3, len(ids) - 1])
    cached = _train_forward_from_states(model, picked, [1, 0, 1, 2], TrainConfig(bf16=False))
    assert torch.allclose(cached, plain, atol=1e-5)
    # The lowest layer's output never depends on a higher layer: changing layer 1 leaves the states.
    with torch.no_grad():
        model.encoder.encoder.layer[1].output.dense.weight.mul_(2.0)
    changed, again = frozen_states(model, ids, frozen=1)
    assert np.array_equal(again.flat, states.flat) and not np.allclose(changed, embeddings)


def test_training_from_the_frozen_states_learns_and_takes_corrections(
    tiny_encoder_dir: Path, toy_csv: Path
) -> None:
    corpus = load_corpus([toy_csv])
    config = TrainConfig(**{**FAST.to_dict(), "frozen_layer_share": 0.5, "epochs": 6})
    first = corpus.examples[0]
    relabelled = next(label for label in TOY_INTENTS if label != first.label)
    result = train(corpus, tiny_encoder_dir, config, corrections=[Example(first.text, relabelled)])
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < losses[0]
    assert result.corrections == [Example(first.text, relabelled)]
    # The memory holds each training text once, embedded by the fine-tuned model (the correction last).
    assert len(result.memory) == result.train_size
    ids = TextEncoder(Path(tiny_encoder_dir) / "tokenizer.json").encode([first.text])
    _, own = forward_all(result.model, ids)
    assert np.allclose(result.memory.embeddings[-1], own[0], atol=1e-5)
    assert result.memory.targets[-1] == result.labels.index(relabelled)


def test_same_seed_and_data_give_the_same_weights(tiny_encoder_dir: Path, toy_csv: Path) -> None:
    corpus = load_corpus([toy_csv])
    a = _state(train(corpus, tiny_encoder_dir, FAST).model)
    b = _state(train(corpus, tiny_encoder_dir, FAST).model)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    c = _state(train(corpus, tiny_encoder_dir, TrainConfig(**{**FAST.to_dict(), "seed": 1})).model)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_training_steps_run_in_bfloat16_only_where_the_cpu_has_it_and_give_float32_logits(
    tiny_encoder_dir: Path,
) -> None:
    model = IntentModel.from_encoder(tiny_encoder_dir, 4).train()
    batch = [[101, 7, 8, 9, 102], [101, 5, 102]]
    torch.manual_seed(0)
    full = _train_forward(model, batch, TrainConfig(bf16=False))
    input_ids, mask = pad(batch)
    torch.manual_seed(0)
    plain, _ = model(torch.from_numpy(input_ids), torch.from_numpy(mask))
    assert torch.equal(full, plain)  # off: the float32 forward pass, untouched
    # A run asks for bfloat16 only where the CPU has it (and the artifact records what ran).
    assert for_this_cpu(TrainConfig(bf16=True)).bf16 is bf16_native()
    assert for_this_cpu(TrainConfig(bf16=False)).bf16 is False
    torch.manual_seed(0)
    half = _train_forward(model, batch, TrainConfig(bf16=True))
    assert half.dtype == torch.float32 and half.shape == full.shape
    assert not torch.equal(half, full)  # computed in bfloat16 ...
    assert torch.allclose(half, full, atol=0.1)  # ... to bfloat16's precision


def test_head_starts_from_the_linear_probe_not_noise(tiny_encoder_dir: Path, toy_csv: Path) -> None:
    corpus = load_corpus([toy_csv])
    # A vanishing number of steps leaves the probe's head in place: it already beats chance on train.
    result = train(
        corpus, tiny_encoder_dir, TrainConfig(**{**FAST.to_dict(), "epochs": 0.01, "dev_fraction": 0.0})
    )
    tokenizer = TextEncoder(Path(tiny_encoder_dir) / "tokenizer.json")
    ids, mask = pad(tokenizer.encode(corpus.texts))
    with torch.no_grad():
        logits, _ = result.model(torch.from_numpy(ids), torch.from_numpy(mask))
    truth = np.array([result.labels.index(e.label) for e in corpus.examples])
    assert (logits.argmax(-1).numpy() == truth).mean() > 0.6
    assert result.dev_metrics is None


def test_training_needs_two_categories(tiny_encoder_dir: Path, tmp_path: Path) -> None:
    one = write_csv(tmp_path / "one.csv", [("hello", "greet"), ("hi", "greet")])
    with pytest.raises(TrainingError, match="at least two categories"):
        train(load_corpus([one]), tiny_encoder_dir, FAST)


def test_artifact_round_trip(
    trained_models_dir: Path, tiny_encoder_dir: Path, toy_rows: list[tuple[str, str]]
) -> None:
    registry = ModelRegistry(trained_models_dir)
    path = registry.active_path()
    for name in (
        "encoder/config.json",
        "encoder/model.safetensors",
        "encoder/tokenizer.json",
        "head.safetensors",
        "model.onnx",
        "model.int8.onnx",
        "labels.json",
        "teller_model.json",
        "metrics.json",
        "dev.csv",
        "memory.npz",
    ):
        assert (path / name).is_file(), name
    info = read_info(path)
    assert info.version == path.name
    assert info.created_at.endswith("Z")
    assert len(info.data_hash) == 64
    assert info.training["seed"] == 0 and info.training["epochs"] == 3
    assert set(info.dev) == {"n", "accuracy", "macro_f1", "ece", "head_accuracy"}
    assert {"fp32_dev_accuracy", "int8_dev_accuracy"} <= set(info.precision_check)
    assert read_labels(path) == sorted(TOY_INTENTS)
    assert len(read_dev_split(path)) == info.dev_size == 20
    assert json.loads((path / "metrics.json").read_text())["n"] == 20

    # The ONNX graph served by the classifier computes what the saved torch model computes.
    texts = [t for t, _ in toy_rows[:12]]
    model = IntentModel.load(path)
    tokenizer = TextEncoder(path / "encoder" / "tokenizer.json")
    ids, mask = pad(tokenizer.encode(texts))
    with torch.no_grad():
        logits, embeddings = model(torch.from_numpy(ids), torch.from_numpy(mask))
    classifier = IntentClassifier.load(path, precision="fp32")
    predictions = classifier.predict(texts)
    memory = read_memory(path)
    assert memory.embeddings.shape == (info.train_size, model.hidden_size)
    probs, nearest = Scorer(
        len(info_labels := read_labels(path)),
        info.temperature,
        memory,
        knn_weight=info.training["knn_weight"],
    )(logits.numpy(), memory.similarities(embeddings.numpy()))
    for i, p in enumerate(predictions):
        assert p.intent == info_labels[int(probs[i].argmax())]
        assert p.confidence == pytest.approx(float(probs[i].max()), abs=1e-3)
        assert p.nearest_similarity == pytest.approx(float(nearest[i]), abs=1e-2)
        assert p.embedding is not None
        np.testing.assert_allclose(p.embedding, embeddings[i].numpy(), atol=1e-4)
