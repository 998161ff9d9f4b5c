"""Serving: bad input, long and exotic text, top-k, thread safety."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from nlu import IntentClassifier, InvalidInputError, ModelRegistry
from nlu.errors import ArtifactError, ModelNotFoundError
from nlu.runtime import run_spread


@pytest.fixture(scope="module")
def classifier(trained_models_dir: Path) -> IntentClassifier:
    return IntentClassifier.load(ModelRegistry(trained_models_dir).active_path())


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty_messages_are_refused_clearly(classifier: IntentClassifier, text: str) -> None:
    with pytest.raises(InvalidInputError, match="message 1 is empty"):
        classifier.predict(["fine", text])


def test_a_single_string_is_not_mistaken_for_a_list(classifier: IntentClassifier) -> None:
    with pytest.raises(InvalidInputError, match="list of messages"):
        classifier.predict("my card")  # type: ignore[arg-type]


def test_long_emoji_and_non_latin_text_get_predictions(classifier: IntentClassifier) -> None:
    long_text = "where is my card " * 600
    texts = [long_text[:10_000], "💳❓🙏", "我的卡丢了", "Моя карта не пришла", "بطاقتي"]
    predictions = classifier.predict(texts)
    assert [p.text for p in predictions] == texts
    assert predictions[0].truncated and not predictions[1].truncated
    for p in predictions:
        assert p.intent in classifier.labels
        assert 0.0 < p.confidence <= 1.0
        assert len(p.alternatives) == 3
        assert p.alternatives[0] == (p.intent, p.confidence)
        assert [c for _, c in p.alternatives] == sorted((c for _, c in p.alternatives), reverse=True)


@pytest.mark.parametrize(("precision", "tolerance"), [("fp32", 1e-5), ("int8", 0.0)])
def test_batching_does_not_change_results(
    trained_models_dir: Path, toy_rows: list[tuple[str, str]], precision: str, tolerance: float
) -> None:
    # Dynamic int8 quantises activations with one scale per batch tensor, so in a batch a message's
    # confidences moved with its batch-mates (on the real model by up to 0.18, and 7 of 1,002 dev
    # messages changed intent): an int8 model runs each message alone, and must give the very
    # same figures however its messages come. A long message (several windows) is among them.
    classifier = IntentClassifier.load(ModelRegistry(trained_models_dir).active_path(), precision=precision)
    texts = [t for t, _ in toy_rows] + [" ".join(t for t, _ in toy_rows[:60])]
    one_by_one = [classifier.predict_one(t) for t in texts]
    for batched in (classifier.predict(texts, batch_size=7), classifier.predict(texts[::-1])[::-1]):
        for a, b in zip(one_by_one, batched, strict=True):
            assert a.confidence == pytest.approx(b.confidence, abs=tolerance)
            assert a.nearest_similarity == pytest.approx(b.nearest_similarity, abs=max(tolerance, 1e-6))
            if tolerance == 0.0 or abs(a.alternatives[0][1] - a.alternatives[1][1]) > 2 * tolerance:
                assert a.intent == b.intent


def test_a_call_never_waits_for_another_calls_work() -> None:
    # A bulk call (a calibration, a retrain's gate) holds every helper thread; a live message's
    # call must still finish, on its own thread, before the bulk call is let go.
    release, lock = threading.Event(), threading.Lock()
    running: list[int] = []

    def slow(i: int) -> int:
        with lock:
            running.append(i)
        release.wait(30)
        return i

    bulk = threading.Thread(target=run_spread, args=(slow, list(range(6)), 2))
    bulk.start()
    while len(running) < 2:  # the bulk call's own thread and the one helper are both busy
        threading.Event().wait(0.01)
    results: list[list[int]] = []
    live = threading.Thread(target=lambda: results.append(run_spread(lambda x: x * 2, [1, 2, 3], 2)))
    live.start()
    live.join(10)
    assert not live.is_alive() and results == [[2, 4, 6]]
    release.set()
    bulk.join(10)
    assert sorted(running) == list(range(6))


def test_one_at_a_time_runs_keep_order_and_raise_what_run_raises() -> None:
    assert run_spread(lambda x: x + 1, list(range(50)), 3) == list(range(1, 51))
    assert run_spread(lambda x: x + 1, [1, 2], 1) == [2, 3]

    def fails(x: int) -> int:
        if x == 7:
            raise ValueError("seven")
        return x

    with pytest.raises(ValueError, match="seven"):
        run_spread(fails, list(range(20)), 2)


def test_predict_is_thread_safe(classifier: IntentClassifier, toy_rows: list[tuple[str, str]]) -> None:
    texts = [t for t, _ in toy_rows]
    expected = [classifier.predict_one(t).intent for t in texts]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda t: classifier.predict_one(t).intent, texts * 5))
    assert results == expected * 5


def test_fp32_and_int8_agree_on_most_messages(
    trained_models_dir: Path, toy_rows: list[tuple[str, str]]
) -> None:
    path = ModelRegistry(trained_models_dir).active_path()
    texts = [t for t, _ in toy_rows]
    fp32 = [p.intent for p in IntentClassifier.load(path, precision="fp32").predict(texts)]
    int8 = [p.intent for p in IntentClassifier.load(path, precision="int8").predict(texts)]
    assert sum(a == b for a, b in zip(fp32, int8, strict=True)) >= 0.9 * len(texts)


def test_loading_errors_are_typed(tmp_path: Path, trained_models_dir: Path) -> None:
    with pytest.raises(ArtifactError, match="not a Teller model"):
        IntentClassifier.load(tmp_path)
    with pytest.raises(ArtifactError, match="unknown precision"):
        IntentClassifier.load(ModelRegistry(trained_models_dir).active_path(), precision="fp8")
    with pytest.raises(ModelNotFoundError, match="teller train"):
        ModelRegistry(tmp_path).active_path()
    with pytest.raises(ModelNotFoundError, match="invalid model version"):
        ModelRegistry(trained_models_dir).path("../etc")


@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_a_graph_exported_with_the_memory_product_serves_as_a_new_one(
    trained_models_dir: Path, tmp_path: Path, precision: str
) -> None:
    """Graphs exported before 2026-12-05 had a third output, every training example's similarity;
    a bank's older artifact loads without it and predicts as the artifact's own graph does."""
    import shutil

    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    from nlu.artifact import read_memory
    from nlu.runtime import PRECISIONS

    source = ModelRegistry(trained_models_dir).active_path()
    legacy = tmp_path / source.name
    shutil.copytree(source, legacy)
    graph_file = legacy / PRECISIONS[precision]
    model = onnx.load(str(graph_file))
    memory = read_memory(legacy)
    model.graph.initializer.append(numpy_helper.from_array(memory.embeddings.T.copy(), "memory_t"))
    model.graph.node.append(helper.make_node("MatMul", ["embeddings", "memory_t"], ["similarities"]))
    model.graph.output.append(
        helper.make_tensor_value_info("similarities", onnx.TensorProto.FLOAT, ["batch", len(memory)])
    )
    onnx.save(model, str(graph_file))
    texts = ["where is my card", "I was charged twice for one coffee", "top up failed"]
    old = IntentClassifier.load(legacy, precision=precision)
    assert [o.name for o in old._runner._session.get_outputs()] == ["logits", "embeddings"]
    assert old.scorer.memory is not None and old.scorer.memory._index  # searched from the first message
    new = IntentClassifier.load(source, precision=precision)
    for a, b in zip(old.predict(texts), new.predict(texts), strict=True):
        assert a.intent == b.intent
        np.testing.assert_allclose(a.confidence, b.confidence, atol=1e-6)
        np.testing.assert_allclose(a.nearest_similarity, b.nearest_similarity, atol=1e-6)
