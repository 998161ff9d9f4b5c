"""Serving the intent model: ``IntentClassifier.load(path).predict(texts)``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nlu.artifact import ArtifactInfo, read_info, read_labels, read_memory
from nlu.errors import ArtifactError, InvalidInputError
from nlu.runtime import PRECISIONS, OnnxRunner
from nlu.scoring import Scorer
from nlu.tokenization import TextEncoder, length_sorted_batches, pad


@dataclass(frozen=True)
class Prediction:
    """The classifier's reading of one message."""

    text: str
    intent: str
    confidence: float
    #: The ``top_k`` most likely intents, best first (the first is ``intent``), as (intent, probability).
    alternatives: list[tuple[str, float]]
    #: The message was longer than the model reads; only its beginning was classified.
    truncated: bool = False
    #: Cosine similarity of the most similar training example (low: unlike anything seen in training).
    nearest_similarity: float = 0.0
    #: The normalised sentence embedding the head classified (for retrieval and novelty checks).
    embedding: np.ndarray | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "intent": self.intent,
            "confidence": round(self.confidence, 6),
            "alternatives": [[name, round(p, 6)] for name, p in self.alternatives],
            "truncated": self.truncated,
            "nearest_similarity": round(self.nearest_similarity, 6),
        }


class IntentClassifier:
    """A loaded intent model. ``predict`` is batched and safe to call from many threads."""

    def __init__(
        self,
        path: Path,
        info: ArtifactInfo,
        labels: list[str],
        runner: OnnxRunner,
        tokenizer: TextEncoder,
        scorer: Scorer,
        precision: str,
    ) -> None:
        self.path = path
        self.info = info
        self.labels = labels
        self.precision = precision
        self.scorer = scorer
        self._runner = runner
        self._tokenizer = tokenizer

    @classmethod
    def load(
        cls, path: str | Path, precision: str | None = None, threads: int | None = None
    ) -> IntentClassifier:
        """Load the artifact at ``path``; ``precision`` ("int8" or "fp32") overrides the artifact's choice."""
        path = Path(path)
        info = read_info(path)
        labels = read_labels(path)
        if len(labels) != info.num_labels:
            raise ArtifactError(f"{path}: {len(labels)} labels but the model has {info.num_labels} outputs")
        precision = precision or info.precision
        if precision not in PRECISIONS:
            raise ArtifactError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
        runner = OnnxRunner(path / PRECISIONS[precision], threads=threads)
        tokenizer = TextEncoder(path / "encoder" / "tokenizer.json", info.max_length)
        config = info.training
        scorer = Scorer(
            len(labels),
            info.temperature,
            read_memory(path),
            int(config.get("knn_k", 10)),
            float(config.get("knn_tau", 0.05)),
            float(config.get("knn_weight", 0.0)),
        )
        return cls(path, info, labels, runner, tokenizer, scorer, precision)

    @property
    def version(self) -> str:
        return self.info.version

    def predict(self, texts: Sequence[str], top_k: int = 3, batch_size: int = 64) -> list[Prediction]:
        """Classify ``texts``; raises :class:`InvalidInputError` if any is empty or not a string."""
        if isinstance(texts, str):
            raise InvalidInputError("predict() takes a list of messages, not a single string")
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise InvalidInputError(f"message {i} is {type(text).__name__}, not text")
            if not text.strip():
                raise InvalidInputError(f"message {i} is empty")
        if not texts:
            return []
        ids = self._tokenizer.encode(list(texts))
        logits = np.zeros((len(texts), len(self.labels)), dtype=np.float32)
        embeddings: np.ndarray | None = None
        similarities: np.ndarray | None = None
        for batch in length_sorted_batches([len(x) for x in ids], batch_size):
            out_logits, out_embeddings, out_similarities = self._runner.run(*pad([ids[i] for i in batch]))
            if embeddings is None or similarities is None:
                embeddings = np.zeros((len(texts), out_embeddings.shape[1]), dtype=np.float32)
                similarities = np.zeros((len(texts), out_similarities.shape[1]), dtype=np.float32)
            logits[batch] = out_logits
            embeddings[batch] = out_embeddings
            similarities[batch] = out_similarities
        assert embeddings is not None and similarities is not None
        probs, nearest = self.scorer(logits, similarities)
        k = max(1, min(top_k, len(self.labels)))
        top = np.argsort(-probs, axis=-1, kind="stable")[:, :k]
        return [
            Prediction(
                text=text,
                intent=self.labels[top[i, 0]],
                confidence=float(probs[i, top[i, 0]]),
                alternatives=[(self.labels[j], float(probs[i, j])) for j in top[i]],
                truncated=self._tokenizer.was_truncated(ids[i]),
                nearest_similarity=float(nearest[i]),
                embedding=embeddings[i],
            )
            for i, text in enumerate(texts)
        ]

    def predict_one(self, text: str, top_k: int = 3) -> Prediction:
        return self.predict([text], top_k=top_k)[0]
