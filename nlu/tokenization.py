"""A thread-safe front end to the encoder's fast tokenizer.

The Hugging Face tokenizer object mutates its Rust state (truncation, padding) on every call and
raises "Already borrowed" when two threads share it. Here truncation is configured once and
padding is done in NumPy, so ``encode`` and ``windows`` only read their tokenizers and can be
called concurrently.

A message longer than the model's window of ``max_length`` tokens is not only read from its start:
:meth:`TextEncoder.windows` cuts it into overlapping windows of ``max_length`` tokens (each with
the special tokens), half a window apart, the last one ending where the text ends. At most
:data:`MAX_WINDOWS` are kept; a longer text gets that many windows spread evenly from its start to
its end, which still leaves no token unread up to ``MAX_WINDOWS`` windows' worth of text (8 x 126
content tokens at 128, about what :data:`MAX_CHARS` characters of English make) and reads evenly
spaced samples of anything longer (a text in a script of one token per character, say). A long
message costs a model run per window: a 150-word message (2 windows) about twice what reading its
first window alone cost, at most 8 times that at the cap.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from nlu.errors import ArtifactError

#: Messages longer than this many characters are cut before tokenizing (as much as Teller keeps of
#: a message, ``bot.core.MAX_TEXT``); this keeps a 10 MB paste from costing seconds.
MAX_CHARS = 4000
#: The most windows a long text is read in (see the module's docstring).
MAX_WINDOWS = 8
#: Full-width forms of ASCII (U+FF01-U+FF5E, typed by East Asian input methods: "my card" in them) and
#: the ideographic space, read as the ASCII they stand for: the encoders' WordPiece vocabulary has no
#: full-width letters or digits, so each such word became [UNK] and a plain English question was
#: handed off (its full-width punctuation it did have, now read as ASCII punctuation). One character
#: for one, so a window's character offsets still point into the text as typed.
_FULL_WIDTH = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}
#: Names how texts are read before tokenizing (:func:`fold_full_width`): vectors embedded under
#: another form are embedded again (:attr:`retrieval.embedder.OnnxSentenceEmbedder.text_form`).
TEXT_FORM = "fw1"


def fold_full_width(text: str) -> str:
    """``text`` with full-width ASCII forms as ASCII (:data:`_FULL_WIDTH`), the same length."""
    return text.translate(_FULL_WIDTH)


def _readable(text: str) -> str:
    """What the tokenizer reads of ``text``: its first :data:`MAX_CHARS` characters, full-width
    ASCII forms as ASCII."""
    return fold_full_width(text[:MAX_CHARS])


#: "debit" before "card(s)" ("debit card", "debit-card", "debitcard"), which the intent model reads
#: blanked (:class:`TextEncoder`'s ``intents``): in Banking77 "debit" is the direct debit's word (its
#: 10,003 training questions say "debit card" 5 times, 2 of them labelled
#: ``direct_debit_payment_not_recognised``), so "someone took my debit card" was read as an
#: unrecognised direct debit at 0.96, and "I lost my debit card" at 0.47, where "my card" is a lost
#: card. A customer's card is a card whatever its kind; "direct
#: debit" and "a debit I don't recognise" are read as written. Spaces for the word, one for each
#: letter, so a window's offsets still point into the text as typed (WordPiece reads a run of spaces
#: as one).
_CARD_KIND = re.compile(r"\bdebit(?=[\s\-]*cards?\b)", re.IGNORECASE)


def _intent_readable(text: str) -> str:
    """What the intent model's tokenizer reads of ``text``: :func:`_readable`, with "debit" before
    "card" blanked (:data:`_CARD_KIND`)."""
    return _CARD_KIND.sub(lambda m: " " * len(m.group()), _readable(text))


@dataclass(frozen=True)
class Window:
    """One stretch of a text that fits the model.

    ``ids`` are its token ids with the special tokens ([CLS] ... [SEP]), at most ``max_length``;
    ``start`` and ``end`` the character offsets in the text of its first and last token
    (``text[start:end]`` is the stretch read).
    """

    ids: list[int]
    start: int
    end: int


class TextEncoder:
    """Turns texts into token ids, truncated to ``max_length`` tokens, or into windows of that many."""

    def __init__(self, tokenizer_file: str | Path, max_length: int = 128, intents: bool = False) -> None:
        """``intents``: the tokenizer of the served intent model, which reads "debit card" as
        "card" (:data:`_CARD_KIND`); training and the retrieval encoder read texts as they are."""
        self._read = _intent_readable if intents else _readable
        try:
            tokenizer = Tokenizer.from_file(str(tokenizer_file))
        except Exception as exc:  # tokenizers raises a bare Exception on a bad file
            raise ArtifactError(f"{tokenizer_file}: cannot load tokenizer ({exc})") from None
        tokenizer.no_padding()
        # A second tokenizer reads long texts whole (for ``windows``): truncation is configured per
        # tokenizer object and must not be switched per call (see the module's docstring).
        whole = Tokenizer.from_str(tokenizer.to_str())
        whole.no_truncation()
        tokenizer.enable_truncation(max_length=max_length)
        self._tokenizer = tokenizer
        self._whole = whole
        self.max_length = max_length

    def whole_words(self) -> set[str]:
        """The vocabulary's entries that are whole words of letters (not "##" pieces or symbols)."""
        return {w for w in self._tokenizer.get_vocab() if w.isalpha()}

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids (with [CLS] and [SEP]) for each text: its first ``max_length`` tokens (full-width
        ASCII forms read as ASCII)."""
        encodings = self._tokenizer.encode_batch([self._read(t) for t in texts])
        return [e.ids for e in encodings]

    def was_truncated(self, ids: Sequence[int]) -> bool:
        """Whether ``ids`` (from :meth:`encode`) fill the window, so the text may go on beyond it.

        A text whose ids do not fill the window was read whole; one whose ids do may still fit
        exactly, which :meth:`windows` tells (one window: nothing was left out).
        """
        return len(ids) >= self.max_length

    def windows(
        self, texts: Sequence[str], stride: int | None = None, max_windows: int = MAX_WINDOWS
    ) -> list[list[Window]]:
        """Overlapping windows covering each text (its first :data:`MAX_CHARS` characters).

        Each window holds at most ``max_length`` tokens, special tokens included. Consecutive windows
        start ``stride`` content tokens apart (default: half a window) and the last ends with the
        text's last token; a text that fits is one window, with the ids :meth:`encode` gives it.
        With more than ``max_windows`` windows, ``max_windows`` are spread evenly from the first
        to the last. Raises ``ValueError`` if ``stride`` or ``max_windows`` is below 1.
        """
        if max_windows < 1:
            raise ValueError(f"max_windows must be at least 1, not {max_windows}")
        if stride is not None and stride < 1:
            raise ValueError(f"stride must be at least 1, not {stride}")
        out: list[list[Window]] = []
        encodings = self._whole.encode_batch([self._read(t) for t in texts])
        for text, encoding in zip(texts, encodings, strict=True):
            ids, offsets, special = encoding.ids, encoding.offsets, encoding.special_tokens_mask
            content = [i for i, s in enumerate(special) if not s]
            if not content:  # nothing but special tokens (whitespace): one window, as ``encode`` reads it
                out.append([Window(list(ids[: self.max_length]), 0, len(text))])
                continue
            prefix, suffix = ids[: content[0]], ids[content[-1] + 1 :]
            budget = self.max_length - len(prefix) - len(suffix)
            if budget < 1:
                raise ValueError(f"max_length {self.max_length} leaves no room between the special tokens")
            step = max(1, budget // 2) if stride is None else stride
            first, last = content[0], content[-1] + 1
            n = last - first
            last_start = max(0, n - budget)
            starts = sorted({*range(0, last_start, step), last_start})
            if len(starts) > max_windows:
                starts = sorted(set(np.linspace(0, last_start, max_windows).round().astype(int).tolist()))
            windows = []
            for start in starts:
                stop = min(n, start + budget)
                windows.append(
                    Window(
                        [*prefix, *ids[first + start : first + stop], *suffix],
                        offsets[first + start][0],
                        offsets[first + stop - 1][1],
                    )
                )
            out.append(windows)
        return out


def pad(batch: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad token ids into ``(input_ids, attention_mask)`` int64 arrays."""
    width = max(len(ids) for ids in batch)
    input_ids = np.zeros((len(batch), width), dtype=np.int64)
    mask = np.zeros((len(batch), width), dtype=np.int64)
    for row, ids in enumerate(batch):
        input_ids[row, : len(ids)] = ids
        mask[row, : len(ids)] = 1
    return input_ids, mask


#: Padded tokens (rows x the longest row's length) an inference batch of an fp32 encoder (the retrieval
#: encoder, an fp32 classifier) may hold: :func:`length_sorted_batches` starts a new batch rather than exceed
#: it. Measured on groups of 50 Banking77 questions (16 tokens on average, up to 80), as micro-batching hands
#: them over under load, 2 cores, 2026-12-01: one padded batch of 50 ran the retrieval encoder (fp32) at 85
#: messages/s, batches of at most 256 tokens at 273 (128: 277; 512: 228; one message at a time: 152).
#: Attention grows with the square of the padded length, so a long row padded beside short ones costs more
#: than running them apart. The int8 classifier gained as much (146 -> 358 messages/s) but is not batched at
#: all: its predictions changed with their batch-mates (int8 scales activations over the whole batch), so it
#: reads each message alone (:data:`nlu.runtime.BATCH_INDEPENDENT`).
INFERENCE_BATCH_TOKENS = 256


def length_sorted_batches(
    lengths: Sequence[int], batch_size: int, max_tokens: int | None = None
) -> list[list[int]]:
    """Indices grouped into batches of similar length, so little compute is spent on padding.

    Rows are taken shortest first, at most ``batch_size`` per batch; with ``max_tokens``, a batch
    also ends before its padded size (rows x longest length) would exceed it (a row longer than
    ``max_tokens`` on its own is a batch of one). See :data:`INFERENCE_BATCH_TOKENS`. Raises
    ``ValueError`` if ``batch_size`` is below 1.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, not {batch_size}")
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    if max_tokens is None:
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    batches: list[list[int]] = []
    batch: list[int] = []
    for i in order:
        if batch and (len(batch) == batch_size or (len(batch) + 1) * lengths[i] > max_tokens):
            batches.append(batch)
            batch = []
        batch.append(i)
    if batch:
        batches.append(batch)
    return batches
