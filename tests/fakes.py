"""Offline test doubles."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence

import numpy as np


class HashingEmbedder:
    """A deterministic bag-of-words embedder: texts sharing words get similar vectors. Counts its calls."""

    name = "test-hashing"

    def __init__(self, dim: int = 64) -> None:
        self.dim = dim
        self.embedded: list[str] = []

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.embedded.extend(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"[a-z0-9]+", text.lower()):
                h = int(hashlib.md5(word.encode()).hexdigest(), 16)
                out[row, h % self.dim] += 1.0 if (h >> 8) % 2 else -1.0
            norm = np.linalg.norm(out[row])
            out[row] = out[row] / norm if norm else np.eye(self.dim, dtype=np.float32)[0]
        return out


class PadRecorder:
    """Wraps :func:`nlu.tokenization.pad` (patch it where the code under test looks it up) and
    records each padded batch's ``(rows, width)``: what an inference run was handed."""

    def __init__(self) -> None:
        from nlu.tokenization import pad

        self._pad = pad
        self.shapes: list[tuple[int, int]] = []

    def __call__(self, batch: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
        ids, mask = self._pad(batch)
        self.shapes.append((int(ids.shape[0]), int(ids.shape[1])))
        return ids, mask

    def within(self, budget: int) -> bool:
        """Every batch held at most ``budget`` padded tokens, or was a single row."""
        return all(rows * width <= budget or rows == 1 for rows, width in self.shapes)
