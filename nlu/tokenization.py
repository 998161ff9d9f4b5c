"""A thread-safe front end to the encoder's fast tokenizer.

The Hugging Face tokenizer object mutates its Rust state (truncation, padding) on every call and
raises "Already borrowed" when two threads share it. Here truncation is configured once and
padding is done in NumPy, so ``encode`` only reads the tokenizer and can be called concurrently.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from nlu.errors import ArtifactError

#: Messages longer than this many characters are cut before tokenizing; the model reads at most
#: ``max_length`` tokens anyway, and this keeps a 10 MB paste from costing seconds.
MAX_CHARS = 2000


class TextEncoder:
    """Turns texts into token ids, truncated to ``max_length`` tokens."""

    def __init__(self, tokenizer_file: str | Path, max_length: int = 128) -> None:
        try:
            tokenizer = Tokenizer.from_file(str(tokenizer_file))
        except Exception as exc:  # tokenizers raises a bare Exception on a bad file
            raise ArtifactError(f"{tokenizer_file}: cannot load tokenizer ({exc})") from None
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length=max_length)
        self._tokenizer = tokenizer
        self.max_length = max_length

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids (with [CLS] and [SEP]) for each text."""
        encodings = self._tokenizer.encode_batch([t[:MAX_CHARS] for t in texts])
        return [e.ids for e in encodings]

    def was_truncated(self, ids: Sequence[int]) -> bool:
        return len(ids) >= self.max_length


def pad(batch: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad token ids into ``(input_ids, attention_mask)`` int64 arrays."""
    width = max(len(ids) for ids in batch)
    input_ids = np.zeros((len(batch), width), dtype=np.int64)
    mask = np.zeros((len(batch), width), dtype=np.int64)
    for row, ids in enumerate(batch):
        input_ids[row, : len(ids)] = ids
        mask[row, : len(ids)] = 1
    return input_ids, mask


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length, so little compute is spent on padding."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
