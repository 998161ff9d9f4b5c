"""The ONNX retrieval encoder gives sentence-transformers' vectors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from retrieval.embedder import OnnxSentenceEmbedder, SentenceEmbedder
from tests.fakes import PadRecorder


def test_onnx_embedder_matches_sentence_transformers(embedder_cache: Path) -> None:
    """The served graph (fused, int8 weights) gives sentence-transformers' vectors to a cosine of
    0.999, and a message the same vector alone as in a batch of others."""
    texts = [
        "What's the overdraft fee?",
        "hi",
        "my card 💳 never arrived, I ordered it weeks ago",
        "我的卡丢了",
    ]
    embedder = OnnxSentenceEmbedder(embedder_cache)
    onnx = embedder.embed(texts)
    reference = SentenceEmbedder().embed(texts)
    assert onnx.shape == (4, 384)
    assert np.all(np.sum(onnx * reference, axis=1) > 0.999)
    np.testing.assert_allclose(np.linalg.norm(onnx, axis=1), 1.0, atol=1e-5)
    alone = np.concatenate([embedder.embed([t]) for t in texts])
    np.testing.assert_allclose(onnx, alone, atol=1e-6)
    assert embedder.embed([]).shape == (0, 384)
    assert (embedder_cache / OnnxSentenceEmbedder.FILE).is_file()


def test_the_served_graph_keeps_its_weights_in_int8(embedder_cache: Path) -> None:
    import onnx

    OnnxSentenceEmbedder(embedder_cache).embed(["hello"])
    graph = onnx.load(str(embedder_cache / OnnxSentenceEmbedder.FILE), load_external_data=False).graph
    kinds = [node.op_type for node in graph.node]
    assert kinds.count("MatMulNBits") >= 12 and "MatMul" not in kinds


def test_the_retrieval_encoder_runs_within_the_token_budget(
    embedder_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nlu.tokenization
    from nlu.tokenization import INFERENCE_BATCH_TOKENS

    recorder = PadRecorder()
    monkeypatch.setattr(nlu.tokenization, "pad", recorder)
    texts = [("where is my card " * (1 + i % 7)).strip() for i in range(40)]
    vectors = OnnxSentenceEmbedder(embedder_cache).embed(texts)
    assert vectors.shape == (40, 384) and len(recorder.shapes) > 1
    assert recorder.within(INFERENCE_BATCH_TOKENS)


def test_the_weight_quantiser_leaves_the_root_logger_as_it_was() -> None:
    """ONNX Runtime's quantiser module calls logging.basicConfig at import: without the guard, a
    root handler at INFO would print records beside Teller's own (checked in a fresh interpreter,
    where the module is not imported yet)."""
    import logging
    import subprocess
    import sys

    code = (
        "import logging\n"
        "from nlu.runtime import _weight_quantizer\n"
        "_weight_quantizer()\n"
        "import onnxruntime.quantization.matmul_nbits_quantizer\n"
        "root = logging.getLogger()\n"
        "print(len(root.handlers), root.level)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.split() == ["0", str(logging.WARNING)]


def test_the_calibration_cache_is_keyed_by_the_encoder_graph(tmp_path: Path) -> None:
    """Signals computed over one graph's vectors are not read back for another's."""
    from types import SimpleNamespace

    from bot.assistant import _calibration_cache_file
    from retrieval.embedder import embedder_key
    from tests.fakes import HashingEmbedder

    class Variant(HashingEmbedder):
        variant = "w8b64"

    def policy(embedder: HashingEmbedder) -> object:
        return SimpleNamespace(
            cache_dir=tmp_path,
            classifier=SimpleNamespace(version="v1"),
            kb=SimpleNamespace(embedder=embedder),
        )

    messages = ([("where is my card", "card_arrival")], ["book me a flight"], [])
    plain, other = HashingEmbedder(), Variant()
    assert embedder_key(plain) == "test-hashing:64" and embedder_key(other) == "test-hashing:64:w8b64"
    first = _calibration_cache_file(policy(plain), *messages)  # type: ignore[arg-type]
    assert first == _calibration_cache_file(policy(HashingEmbedder()), *messages)  # type: ignore[arg-type]
    assert first != _calibration_cache_file(policy(other), *messages)  # type: ignore[arg-type]


def test_sessions_spin_within_a_run_except_the_classifiers_overlapping_runs(
    embedder_cache: Path, trained_models_dir: Path
) -> None:
    """The spin policy :func:`nlu.runtime.serving_options` documents: the retrieval encoder's pool
    and the classifier's lone runs spin while a run lasts and stop after it; the classifier's runs
    that overlap (several messages at once under load) take a session that sleeps, with the same
    results."""
    import numpy as np

    from nlu.classifier import IntentClassifier
    from nlu.registry import ModelRegistry
    from nlu.tokenization import pad

    session, _ = OnnxSentenceEmbedder(embedder_cache)._load()
    encoder = session.get_session_options()
    assert encoder.get_session_config_entry("session.intra_op.allow_spinning") == "1"
    assert encoder.get_session_config_entry("session.force_spinning_stop") == "1"
    classifier = IntentClassifier.load(ModelRegistry(trained_models_dir).active_path())
    runner = classifier._runner
    lone, overlapping = runner._session.get_session_options(), runner._overlapping.get_session_options()
    assert lone.get_session_config_entry("session.intra_op.allow_spinning") == "1"
    assert lone.get_session_config_entry("session.force_spinning_stop") == "1"
    assert overlapping.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert overlapping.intra_op_num_threads == 1  # its runs come one per core
    # An fp32 classifier reads its batches one run at a time: one session, spinning.
    fp32 = IntentClassifier.load(ModelRegistry(trained_models_dir).active_path(), precision="fp32")
    assert fp32._runner._overlapping is fp32._runner._session
    ids = classifier._tokenizer.encode(["where is my card", "I was charged twice for one coffee"])
    for one in ids:
        alone, beside = runner.run(*pad([one])), runner.run(*pad([one]), overlapping=True)
        for a, b in zip(alone, beside, strict=True):
            np.testing.assert_array_equal(a, b)


def test_a_batch_is_read_in_parts_at_once_each_message_as_it_reads_alone(embedder_cache: Path) -> None:
    """With two threads, a batch of :data:`SPLIT_AT` texts or more is read in two parts on the
    second session (one thread, sleeping): each message gets the vector it gets alone (to 1e-6) and
    the lowest layers' output bit for bit; a smaller batch keeps the first session."""
    from retrieval.embedder import SPLIT_AT

    texts = [
        "where is my card",
        "What's the overdraft fee on a student account?",
        "hi",
        "I was charged twice for the same coffee this morning, can you refund one of them",
        "freeze card",
        "how long does a transfer to Germany take",
        "我的卡丢了",
        "can I change my PIN at an ATM or only in the app",
        "top up failed",
    ]
    embedder = OnnxSentenceEmbedder(embedder_cache, threads=2)
    embedder.embed(texts[: SPLIT_AT - 1])
    assert embedder._parts_session is None
    parts = embedder._parts()
    options = parts.get_session_options()
    assert options.intra_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    rows: list[int] = []
    run = parts.run

    def recording(outputs: list[str], feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        rows.append(len(feed["input_ids"]))
        return list(run(outputs, feed))

    parts.run = recording
    vectors, states = embedder.embed_states(texts)
    assert sorted(rows) == [4, 5]  # every other text by length, one part per thread
    for text, vector, (ids, hidden) in zip(texts, vectors, states, strict=True):
        alone, [(alone_ids, alone_hidden)] = embedder.embed_states([text])
        np.testing.assert_allclose(vector, alone[0], atol=1e-6)
        assert ids == alone_ids and np.array_equal(hidden, alone_hidden)
    assert sorted(rows) == [4, 5]  # texts alone took the first session
