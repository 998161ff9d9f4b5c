"""The ONNX retrieval encoder gives sentence-transformers' vectors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from retrieval.embedder import OnnxSentenceEmbedder, SentenceEmbedder
from tests.fakes import PadRecorder


def test_onnx_embedder_matches_sentence_transformers(embedder_cache: Path) -> None:
    texts = [
        "What's the overdraft fee?",
        "hi",
        "my card 💳 never arrived, I ordered it weeks ago",
        "我的卡丢了",
    ]
    onnx = OnnxSentenceEmbedder(embedder_cache).embed(texts)
    reference = SentenceEmbedder().embed(texts)
    assert onnx.shape == (4, 384)
    np.testing.assert_allclose(onnx, reference, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(onnx, axis=1), 1.0, atol=1e-5)
    assert OnnxSentenceEmbedder(embedder_cache).embed([]).shape == (0, 384)


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
