"""A model with frozen lowest layers, served as trunk and upper graphs that share the retrieval
encoder's pass (:mod:`nlu.trunk`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nlu import IntentClassifier, ModelRegistry
from nlu.classifier import Prediction
from nlu.tokenization import TextEncoder, pad
from nlu.trunk import HIDDEN, TRUNK_FILE, UPPER_INT8_FILE, export_encoder_with_trunk, graph_key
from tests.conftest import train_toy_model


@pytest.fixture(scope="module")
def split_models_dir(tmp_path_factory: pytest.TempPathFactory, tiny_encoder_dir: Path, toy_csv: Path) -> Path:
    """The toy corpus on the tiny BERT with its lower layer frozen (1 of 2), as the real encoder
    keeps 3 of 6."""
    # The tiny BERT stands for the packaged base encoder here (its lowest layer for the real one's 3).
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("nlu.trunk.split_layers", lambda model, frozen, freeze_embeddings: frozen)
        return train_toy_model(tmp_path_factory.mktemp("split-models"), tiny_encoder_dir, toy_csv, 0.5)


@pytest.fixture(scope="module")
def split(split_models_dir: Path) -> IntentClassifier:
    return IntentClassifier.load(ModelRegistry(split_models_dir).active_path())


@pytest.fixture(scope="module")
def encoder_graph(tmp_path_factory: pytest.TempPathFactory, tiny_encoder_dir: Path) -> Path:
    """The tiny BERT as the retrieval encoder's graph is written: vectors and its lowest layer's output."""
    from nlu.model import _load_encoder

    path = tmp_path_factory.mktemp("encoder-graph") / "tiny.onnx"
    export_encoder_with_trunk(_load_encoder(tiny_encoder_dir), path, layers=1)
    return path


def _shared(
    encoder_graph: Path, tiny_encoder_dir: Path, texts: list[str]
) -> list[tuple[list[int], np.ndarray]]:
    """What the retrieval encoder's pass hands the classifier: ids as it reads them, and states."""
    return _TinyEncoder(encoder_graph, tiny_encoder_dir / "tokenizer.json", None)._run(texts)[1]


def _same(a: list[Prediction], b: list[Prediction]) -> bool:
    return all(
        x.to_dict() == y.to_dict() and np.array_equal(x.embedding, y.embedding)
        for x, y in zip(a, b, strict=True)
    )


TEXTS = [
    "my card still hasn't arrived",
    "what is the exchange rate for euros",
    "I lost my debit card yesterday",  # the classifier reads "debit" blanked: its ids differ
    "top up failed again " * 40,  # beyond the classifier's 128 tokens: read in windows
]


def test_a_model_with_frozen_layers_is_written_as_trunk_and_upper(
    split_models_dir: Path, encoder_graph: Path
) -> None:
    import onnxruntime as ort

    path = ModelRegistry(split_models_dir).active_path()
    assert (path / TRUNK_FILE).is_file() and (path / UPPER_INT8_FILE).is_file()
    assert not (path / "model.int8.onnx").exists()
    classifier = IntentClassifier.load(path)
    # The frozen layer is the base encoder's, weight for weight: the same key as its own graph's.
    encoder = ort.InferenceSession(str(encoder_graph), providers=["CPUExecutionProvider"])
    assert classifier.trunk_key is not None and classifier.trunk_key == graph_key(encoder)
    assert IntentClassifier.load(path, precision="fp32").trunk_key is None


def test_a_model_without_frozen_layers_has_no_trunk(trained_models_dir: Path) -> None:
    path = ModelRegistry(trained_models_dir).active_path()
    assert (path / "model.int8.onnx").is_file() and not (path / TRUNK_FILE).exists()
    assert IntentClassifier.load(path).trunk_key is None


@pytest.mark.parametrize("chunk", [256, 7])
def test_the_split_model_answers_alike_alone_and_batched(
    split: IntentClassifier, toy_rows: list[tuple[str, str]], monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    monkeypatch.setattr("nlu.classifier._SPLIT_CHUNK", chunk)  # the trunk's states a chunk at a time
    texts = [t for t, _ in toy_rows][:30] + TEXTS
    alone = [split.predict_one(t) for t in texts]
    assert _same(alone, split.predict(texts, batch_size=7))
    assert _same(alone, split.predict(texts[::-1])[::-1])


def test_the_encoders_states_give_the_very_same_answers(
    split: IntentClassifier, encoder_graph: Path, tiny_encoder_dir: Path
) -> None:
    import onnxruntime as ort

    assert (
        graph_key(ort.InferenceSession(str(encoder_graph), providers=["CPUExecutionProvider"]))
        == split.trunk_key
    )
    shared = _shared(encoder_graph, tiny_encoder_dir, TEXTS)
    assert _same(split.predict(TEXTS), split.predict(TEXTS, shared=shared))


def test_states_are_used_only_for_the_same_token_ids(
    split: IntentClassifier, encoder_graph: Path, tiny_encoder_dir: Path
) -> None:
    shared = _shared(encoder_graph, tiny_encoder_dir, TEXTS)
    noise = [(ids, np.random.default_rng(0).normal(size=h.shape).astype(np.float32) * 5) for ids, h in shared]
    mixed = split.predict(TEXTS, shared=noise)
    plain = split.predict(TEXTS)
    # The first two are read with the same ids: the noise is what the classifier read ...
    assert not _same(mixed[:2], plain[:2])
    # ... the "debit card" message (blanked for the classifier) and the long one (256 against 128
    # tokens) are not: the classifier ran its own trunk for them.
    assert _same(mixed[2:], plain[2:])


def test_shared_states_must_be_one_per_text(split: IntentClassifier) -> None:
    with pytest.raises(ValueError, match="2 entries for 1 texts"):
        split.predict(["my card"], shared=[None, None])
    assert _same(split.predict(["my card"], shared=[None]), split.predict(["my card"]))


class _TinyEncoder:
    """The retrieval encoder's interface over the tiny BERT's graph (vectors and trunk states)."""

    def __init__(self, graph: Path, tokenizer: Path, key: str | None) -> None:
        import onnxruntime as ort

        self._session = ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
        self._tokenizer = TextEncoder(tokenizer, max_length=256)
        self.trunk_key = key
        self.calls: list[str] = []

    def _run(self, texts: list[str]) -> tuple[np.ndarray, list[tuple[list[int], np.ndarray]]]:
        ids = self._tokenizer.encode(texts)
        vectors, states = [], []
        for x in ids:
            vector, hidden = self._session.run(
                ["embeddings", HIDDEN], dict(zip(("input_ids", "attention_mask"), pad([x]), strict=True))
            )
            vectors.append(vector[0])
            states.append((x, hidden[0]))
        return np.array(vectors), states

    def embed(self, texts: list[str]) -> np.ndarray:
        self.calls.append("embed")
        return self._run(list(texts))[0]

    def embed_states(self, texts: list[str]) -> tuple[np.ndarray, list[tuple[list[int], np.ndarray]]]:
        self.calls.append("embed_states")
        return self._run(list(texts))


@pytest.mark.parametrize("chunk", [256, 3])
def test_the_policy_reads_each_message_once_where_the_encoders_share_a_trunk(
    split: IntentClassifier,
    encoder_graph: Path,
    tiny_encoder_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    chunk: int,
) -> None:
    monkeypatch.setattr("bot.policy._SHARED_CHUNK", chunk)  # the policy's states a chunk at a time
    from types import SimpleNamespace

    from bot.policy import AnswerPolicy

    def encode(key: str | None) -> tuple[list[Prediction], np.ndarray, list[str]]:
        encoder = _TinyEncoder(encoder_graph, tiny_encoder_dir / "tokenizer.json", key)
        policy = SimpleNamespace(
            classifier=split,
            kb=SimpleNamespace(embedder=encoder),
            read=lambda texts, served: list(texts),
            _trunk_shared=None,
        )
        policy._shares_trunk = lambda: AnswerPolicy._shares_trunk(policy)  # type: ignore[arg-type]
        texts = [*TEXTS, "card not here", *TEXTS[::-1]]  # across chunks of 3
        predictions, vectors = AnswerPolicy._encode(policy, texts)  # type: ignore[arg-type]
        assert AnswerPolicy._encode(policy, [])[1].shape[0] == 0  # type: ignore[arg-type]
        return predictions, vectors, encoder.calls

    shared, shared_vectors, shared_calls = encode(split.trunk_key)
    apart, apart_vectors, apart_calls = encode("another model's trunk")
    # The probe that checks the two passes agree, one pass of the encoder for all four, then the
    # long message's kept window embedded again ...
    passes = ["embed_states"] * (1 if chunk > len(TEXTS) * 2 + 1 else 3)
    # (and the empty call reads nothing apart: one empty "embed" each)
    assert shared_calls == ["embed_states", *passes, "embed", "embed"] and apart_calls == ["embed"] * 2
    # ... and the same predictions and vectors as two passes give.
    assert _same(shared, apart)
    assert np.array_equal(shared_vectors, apart_vectors)


def test_states_that_differ_in_the_last_bit_are_not_the_same_trunk(
    split: IntentClassifier, encoder_graph: Path, tiny_encoder_dir: Path
) -> None:
    [(ids, hidden)] = _shared(encoder_graph, tiny_encoder_dir, ["where is my card"])
    assert split.same_trunk((ids, hidden))
    assert not split.same_trunk((ids, np.nextafter(hidden, np.float32(np.inf))))
    assert not split.same_trunk((ids[:-1], hidden[:-1]))


def test_the_policy_does_not_share_a_trunk_whose_states_differ(
    split: IntentClassifier, encoder_graph: Path, tiny_encoder_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Keys can agree while the kernels do not (another ONNX Runtime, a graph the fusions left
    plain): the probe tells, and each classifier then runs its own trunk."""
    from types import SimpleNamespace

    from bot.policy import AnswerPolicy

    encoder = _TinyEncoder(encoder_graph, tiny_encoder_dir / "tokenizer.json", split.trunk_key)
    run = encoder._run
    encoder._run = lambda texts: (run(texts)[0], [(i, h * np.float32(1.0001)) for i, h in run(texts)[1]])  # type: ignore[method-assign]
    policy = SimpleNamespace(classifier=split, kb=SimpleNamespace(embedder=encoder), _trunk_shared=None)
    assert not AnswerPolicy._shares_trunk(policy)  # type: ignore[arg-type]
    assert "trunk_not_shared" in caplog.text
    assert not AnswerPolicy._shares_trunk(policy)  # type: ignore[arg-type]
    assert encoder.calls == ["embed_states"]  # probed once per classifier and encoder


def test_a_graph_the_fusions_left_plain_carries_another_key(
    tmp_path: Path, tiny_encoder_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    import onnxruntime as ort

    from nlu.model import _load_encoder
    from nlu.trunk import export_trunk

    encoder = _load_encoder(tiny_encoder_dir)
    export_trunk(encoder, 1, tmp_path / "fused.onnx")
    monkeypatch.setattr(
        "nlu.runtime.optimize_bert_graph", lambda source, target, *_: shutil.copyfile(source, target)
    )
    export_trunk(encoder, 1, tmp_path / "plain.onnx")
    keys = {
        graph_key(ort.InferenceSession(str(tmp_path / f), providers=["CPUExecutionProvider"]))
        for f in ("fused.onnx", "plain.onnx")
    }
    assert len(keys) == 2 and None not in keys


def test_only_the_packaged_base_encoders_layers_are_split(tiny_encoder_dir: Path) -> None:
    from types import SimpleNamespace

    from nlu.encoder import base_encoder_path
    from nlu.model import _load_encoder
    from nlu.trunk import SHARED_LAYERS, split_layers

    base = SimpleNamespace(encoder=_load_encoder(base_encoder_path()))
    assert split_layers(base, SHARED_LAYERS, True) == SHARED_LAYERS  # type: ignore[arg-type]
    assert split_layers(base, SHARED_LAYERS, False) == 0  # type: ignore[arg-type]
    assert split_layers(base, SHARED_LAYERS - 1, True) == 0  # type: ignore[arg-type]
    assert split_layers(base, 6, True) == 0  # type: ignore[arg-type]
    tiny = SimpleNamespace(encoder=_load_encoder(tiny_encoder_dir))
    assert split_layers(tiny, SHARED_LAYERS, True) == 0  # type: ignore[arg-type]


def test_a_split_artifact_missing_its_trunk_says_so(split_models_dir: Path, tmp_path: Path) -> None:
    import shutil

    from nlu.errors import ArtifactError

    copy = tmp_path / "model"
    shutil.copytree(ModelRegistry(split_models_dir).active_path(), copy)
    (copy / TRUNK_FILE).unlink()
    with pytest.raises(ArtifactError, match=r"trunk\.onnx: no such ONNX model"):
        IntentClassifier.load(copy)


def test_the_base_encoder_with_one_weight_changed_is_not_split() -> None:
    import torch

    from nlu.encoder import base_encoder_path
    from nlu.model import _load_encoder
    from nlu.trunk import SHARED_LAYERS, split_layers

    class Model:
        encoder = _load_encoder(base_encoder_path())

    assert split_layers(Model(), SHARED_LAYERS, True) == SHARED_LAYERS  # type: ignore[arg-type]
    with torch.no_grad():
        Model.encoder.encoder.layer[1].output.dense.weight[0, 0] += 1e-3  # a fine-tuned frozen layer
    assert split_layers(Model(), SHARED_LAYERS, True) == 0  # type: ignore[arg-type]


def test_a_graph_exported_by_another_onnx_runtime_carries_another_key(
    tmp_path: Path, tiny_encoder_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import onnxruntime as ort

    from nlu.model import _load_encoder
    from nlu.trunk import export_trunk

    encoder = _load_encoder(tiny_encoder_dir)
    export_trunk(encoder, 1, tmp_path / "this.onnx")
    monkeypatch.setattr(ort, "__version__", "0.0.1")
    export_trunk(encoder, 1, tmp_path / "other.onnx")
    keys = [
        graph_key(ort.InferenceSession(str(tmp_path / f), providers=["CPUExecutionProvider"]))
        for f in ("this.onnx", "other.onnx")
    ]
    assert keys[0] is not None and keys[1] is not None and keys[0] != keys[1]


def test_a_split_classifier_whose_key_the_encoder_lacks_says_why(
    split: IntentClassifier, encoder_graph: Path, tiny_encoder_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from types import SimpleNamespace

    from bot.policy import AnswerPolicy

    encoder = _TinyEncoder(encoder_graph, tiny_encoder_dir / "tokenizer.json", "an older graph's key")
    policy = SimpleNamespace(classifier=split, kb=SimpleNamespace(embedder=encoder), _trunk_shared=None)
    assert not AnswerPolicy._shares_trunk(policy)  # type: ignore[arg-type]
    assert "trunk_not_shared" in caplog.text and encoder.calls == []


def test_a_probe_that_fails_reads_apart_and_probes_again(
    split: IntentClassifier, encoder_graph: Path, tiny_encoder_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from types import SimpleNamespace

    from bot.policy import AnswerPolicy

    encoder = _TinyEncoder(encoder_graph, tiny_encoder_dir / "tokenizer.json", split.trunk_key)
    states = encoder.embed_states
    encoder.embed_states = lambda texts: (_ for _ in ()).throw(RuntimeError("busy"))  # type: ignore[method-assign]
    policy = SimpleNamespace(classifier=split, kb=SimpleNamespace(embedder=encoder), _trunk_shared=None)
    assert not AnswerPolicy._shares_trunk(policy)  # type: ignore[arg-type]
    assert "trunk_probe_failed" in caplog.text and policy._trunk_shared is None
    encoder.embed_states = states  # type: ignore[method-assign]
    assert AnswerPolicy._shares_trunk(policy)  # type: ignore[arg-type]
