"""Serving the intent model: ``IntentClassifier.load(path).predict(texts)``.

A message longer than the model's window (``max_length`` tokens) is read in overlapping windows
(:meth:`nlu.tokenization.TextEncoder.windows`: half a window apart, the last ending with the text, at
most :data:`~nlu.tokenization.MAX_WINDOWS`), every window is classified, and the prediction is the
window with the strongest in-scope evidence, the highest top-intent probability: a customer who
tells a story before asking is judged on the question, not on the story's start. The prediction
says how many windows were judged, which one it kept and where that window lies in the text.

An int8 model with frozen lowest layers is served as two graphs (:mod:`nlu.trunk`): its trunk (those
layers, computed as the retrieval encoder computes them) and its upper layers. ``predict`` takes the
trunk's output from the caller where the caller has it (``shared``: the retrieval encoder's pass over
the same message) and computes it otherwise; the answer is the same either way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

from nlu.artifact import ArtifactInfo, read_info, read_labels, read_memory
from nlu.errors import ArtifactError, InvalidInputError
from nlu.runtime import BATCH_INDEPENDENT, PRECISIONS, OnnxRunner, run_spread
from nlu.scoring import Scorer
from nlu.tokenization import INFERENCE_BATCH_TOKENS, MAX_CHARS, TextEncoder, length_sorted_batches, pad
from nlu.trunk import TRUNK_FILE, UPPER_INT8_FILE, Trunk

#: What another pass over a message has of the frozen layers' output (:mod:`nlu.trunk`): the token
#: ids it read and its ``(tokens, hidden)`` states, used where the classifier reads the same ids.
#: (A caller checks them once with :meth:`IntentClassifier.same_trunk`.)
SharedTrunk = tuple[Sequence[int], np.ndarray]


@dataclass(frozen=True)
class Prediction:
    """The classifier's reading of one message."""

    text: str
    intent: str
    confidence: float
    #: The ``top_k`` most likely intents, best first (the first is ``intent``), as (intent, probability).
    alternatives: list[tuple[str, float]]
    #: The message was longer than the model's window of ``max_length`` tokens (or than
    #: :data:`~nlu.tokenization.MAX_CHARS` characters): it was read in ``windows`` windows.
    truncated: bool = False
    #: Cosine similarity of the most similar training example (low: unlike anything seen in training).
    nearest_similarity: float = 0.0
    #: The normalised sentence embedding the head classified (for retrieval and novelty checks).
    embedding: np.ndarray | None = field(default=None, repr=False, compare=False)
    #: How many windows of the message were classified (1: it fits the model's window) ...
    windows: int = 1
    #: ... and which of them, counted from 0, this prediction is: the one whose top intent was the
    #: most probable. Everything above (intent, probabilities, similarity, embedding) is that window's.
    window: int = 0
    #: Where the kept window lies in ``text``, as ``(start, end)`` character offsets; None when the
    #: whole message was read in one window.
    span: tuple[int, int] | None = None

    @property
    def judged_text(self) -> str:
        """The part of ``text`` the prediction is about: the kept window's, or the whole text."""
        return self.text if self.span is None else self.text[self.span[0] : self.span[1]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "intent": self.intent,
            "confidence": round(self.confidence, 6),
            "alternatives": [[name, round(p, 6)] for name, p in self.alternatives],
            "truncated": self.truncated,
            "nearest_similarity": round(self.nearest_similarity, 6),
            "windows": self.windows,
            "window": self.window,
            "span": list(self.span) if self.span is not None else None,
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
        trunk: Trunk | None = None,
    ) -> None:
        self.path = path
        self.info = info
        self.labels = labels
        self.precision = precision
        self.scorer = scorer
        self._runner = runner
        self._tokenizer = tokenizer
        #: The trunk graph of a split model (``runner`` then runs its upper layers), else None.
        self._trunk = trunk

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
        # Only a graph read message by message runs several at once (see _run).
        overlapping = precision not in BATCH_INDEPENDENT
        trunk = None
        if precision == "int8" and (path / UPPER_INT8_FILE).is_file():
            runner = OnnxRunner(path / UPPER_INT8_FILE, threads=threads, overlapping=overlapping)
            trunk = Trunk(path / TRUNK_FILE, runner.threads)
        else:
            runner = OnnxRunner(path / PRECISIONS[precision], threads=threads, overlapping=overlapping)
        tokenizer = TextEncoder(path / "encoder" / "tokenizer.json", info.max_length, intents=True)
        config = info.training
        scorer = Scorer(
            len(labels),
            info.temperature,
            read_memory(path).prepare(),
            int(config.get("knn_k", 10)),
            float(config.get("knn_tau", 0.05)),
            float(config.get("knn_weight", 0.0)),
        )
        return cls(path, info, labels, runner, tokenizer, scorer, precision, trunk)

    @property
    def version(self) -> str:
        return self.info.version

    @property
    def trunk_key(self) -> str | None:
        """The key of the frozen layers this classifier starts from (:func:`nlu.trunk.trunk_key`):
        a pass whose graph carries the same key may hand :meth:`predict` their output. None for a
        model served whole (fp32, or int8 without frozen layers)."""
        return self._trunk.key if self._trunk is not None else None

    def same_trunk(self, shared: SharedTrunk) -> bool:
        """Whether ``shared`` (token ids and their ``(tokens, hidden)`` states from another pass) is
        what this classifier's own trunk gives for those ids, bit for bit: the check before a
        caller hands :meth:`predict` such states (keys can agree while kernels do not). False for
        a model served whole."""
        if self._trunk is None:
            return False
        ids, states = list(shared[0]), np.asarray(shared[1])
        own = self._trunk.run(*pad([ids]))[0]
        return bool(own.shape == states.shape and np.array_equal(own, states))

    def predict(
        self,
        texts: Sequence[str],
        top_k: int = 3,
        batch_size: int = 64,
        shared: Sequence[SharedTrunk | None] | None = None,
    ) -> list[Prediction]:
        """Classify ``texts``: one :class:`Prediction` per text, in order, with the ``top_k`` best intents.

        A text longer than the model's window is classified window by window (see the module's
        docstring) and predicted by its most confident window. Every window is run in batches of
        at most ``batch_size`` (an int8 model runs each alone: its answer must not depend on what
        it was batched with, see :meth:`_run`). ``shared`` (one entry per text, from a pass whose
        graph carries :attr:`trunk_key`) spares a split model its trunk for each text whose first
        window has the same token ids; it is ignored otherwise. Raises :class:`InvalidInputError`
        if any text is empty or not a string, ``ValueError`` if ``shared`` is not one per text.
        """
        if isinstance(texts, str):
            raise InvalidInputError("predict() takes a list of messages, not a single string")
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise InvalidInputError(f"message {i} is {type(text).__name__}, not text")
            if not text.strip():
                raise InvalidInputError(f"message {i} is empty")
        if not texts:
            return []
        texts = list(texts)
        if shared is not None and len(shared) != len(texts):
            raise ValueError(f"shared has {len(shared)} entries for {len(texts)} texts")
        # Every text's first window, batched exactly as a text that fits is always read ...
        ids = self._tokenizer.encode(texts)
        states: list[np.ndarray | None] | None = None
        if shared is not None and self._trunk is not None:
            states = [
                given[1] if given is not None and list(given[0]) == ids[i] else None
                for i, given in enumerate(shared)
            ]
        logits, embeddings = self._run(ids, batch_size, states)
        # ... then the further windows of those that fill it, in batches of their own, so that a
        # long message leaves the results of its short batch-mates untouched.
        long = [i for i, x in enumerate(ids) if self._tokenizer.was_truncated(x)]
        windows = dict(zip(long, self._tokenizer.windows([texts[i] for i in long]), strict=True))
        extra = [(i, w) for i in long for w in range(1, len(windows[i]))]
        if extra:
            more = self._run([windows[i][w].ids for i, w in extra], batch_size)
            logits, embeddings = (
                np.concatenate([a, b]) for a, b in zip((logits, embeddings), more, strict=True)
            )
        # Row r of the scores is text ``rows[r][0]``'s window ``rows[r][1]``.
        rows = [(i, 0) for i in range(len(texts))] + extra
        probs, nearest = self.scorer.from_embeddings(logits, embeddings)
        # Each text's kept row: its first window, unless a further window's top intent is more probable.
        kept = list(range(len(texts)))
        best = probs.max(axis=1)
        for r, (i, _) in enumerate(rows[len(texts) :], start=len(texts)):
            if best[r] > best[kept[i]]:
                kept[i] = r
        k = max(1, min(top_k, len(self.labels)))
        top = np.argsort(-probs, axis=-1, kind="stable")[:, :k]
        predictions = []
        for i, text in enumerate(texts):
            r = kept[i]
            judged = windows.get(i, [])
            chosen = judged[rows[r][1]] if len(judged) > 1 else None
            predictions.append(
                Prediction(
                    text=text,
                    intent=self.labels[top[r, 0]],
                    confidence=float(probs[r, top[r, 0]]),
                    alternatives=[(self.labels[j], float(probs[r, j])) for j in top[r]],
                    truncated=len(judged) > 1 or len(text) > MAX_CHARS,
                    nearest_similarity=float(nearest[r]),
                    embedding=embeddings[r],
                    windows=max(1, len(judged)),
                    window=rows[r][1],
                    span=(chosen.start, chosen.end) if chosen is not None else None,
                )
            )
        return predictions

    def _run(
        self, ids: list[list[int]], batch_size: int, states: Sequence[np.ndarray | None] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(logits, embeddings)``, one row per token-id list, batched by length
        (at most ``batch_size`` lists and :data:`~nlu.tokenization.INFERENCE_BATCH_TOKENS` padded tokens).

        A graph whose results depend on batch-mates (int8, see :data:`nlu.runtime.BATCH_INDEPENDENT`)
        runs every list alone instead, so a message gets the same answer however busy Teller is:
        several at once (:func:`nlu.runtime.run_spread`; 2 cores, active model's dev split: 193-203 messages/s
        against 122-127 one after another and 288-310 in batches of 64, 2026-12-01). A split
        model's trunk reads in batches (its output does not depend on batch-mates) the lists that
        ``states`` (one ``(tokens, hidden)`` array or None per list) does not cover; its upper
        layers then read each list alone.
        """
        if self._trunk is not None:
            return self._run_split(ids, batch_size, states)
        alone = self.precision not in BATCH_INDEPENDENT
        if alone:
            batches = [[i] for i in range(len(ids))]
        else:
            batches = length_sorted_batches([len(x) for x in ids], batch_size, INFERENCE_BATCH_TOKENS)

        overlapping = alone and len(batches) > 1  # several runs at once (see OnnxRunner)

        def run(batch: list[int]) -> tuple[np.ndarray, np.ndarray]:
            return self._runner.run(*pad([ids[i] for i in batch]), overlapping=overlapping)

        if overlapping:
            outputs = run_spread(run, batches, self._runner.threads)
        else:
            outputs = [run(batch) for batch in batches]
        logits = np.zeros((len(ids), len(self.labels)), dtype=np.float32)
        embeddings: np.ndarray | None = None
        for batch, (out_logits, out_embeddings) in zip(batches, outputs, strict=True):
            if embeddings is None:
                embeddings = np.zeros((len(ids), out_embeddings.shape[1]), dtype=np.float32)
            logits[batch] = out_logits
            embeddings[batch] = out_embeddings
        assert embeddings is not None
        return logits, embeddings

    def _run_split(
        self, ids: list[list[int]], batch_size: int, states: Sequence[np.ndarray | None] | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`_run` for a split model, :data:`_SPLIT_CHUNK` lists at a time (so that the trunk's
        states held at once stay bounded: about 26 KB a message, found in review): the trunk's
        states of a chunk, then its upper layers for each list alone."""
        logits = np.zeros((len(ids), len(self.labels)), dtype=np.float32)
        embeddings: np.ndarray | None = None
        for start in range(0, len(ids), _SPLIT_CHUNK):
            part = list(range(start, min(len(ids), start + _SPLIT_CHUNK)))
            given = [states[i] for i in part] if states is not None else None
            hidden = self._trunk_states([ids[i] for i in part], batch_size, given)
            overlapping = len(part) > 1  # several runs at once (see OnnxRunner)

            def run(j: int, hidden: list[np.ndarray] = hidden, overlapping: bool = overlapping) -> Any:
                mask = np.ones((1, len(hidden[j])), dtype=np.int64)
                return self._runner.run(hidden[j][None], mask, overlapping=overlapping)

            items = list(range(len(part)))
            outputs = run_spread(run, items, self._runner.threads) if overlapping else [run(0)]
            for j, (out_logits, out_embeddings) in zip(items, outputs, strict=True):
                if embeddings is None:
                    embeddings = np.zeros((len(ids), out_embeddings.shape[1]), dtype=np.float32)
                logits[part[j]] = out_logits[0]
                embeddings[part[j]] = out_embeddings[0]
        assert embeddings is not None  # predict() never runs an empty list
        return logits, embeddings

    def _trunk_states(
        self, ids: list[list[int]], batch_size: int, states: Sequence[np.ndarray | None] | None
    ) -> list[np.ndarray]:
        """Each list's ``(tokens, hidden)`` trunk output: from ``states`` where given, else from the
        trunk graph in batches by length."""
        assert self._trunk is not None
        out: list[np.ndarray | None] = list(states) if states is not None else [None] * len(ids)
        missing = [i for i, state in enumerate(out) if state is None]
        lengths = [len(ids[i]) for i in missing]
        for batch in length_sorted_batches(lengths, batch_size, INFERENCE_BATCH_TOKENS):
            hidden = self._trunk.run(*pad([ids[missing[j]] for j in batch]))
            for row, j in enumerate(batch):
                out[missing[j]] = hidden[row, : lengths[j]]
        return cast(list[np.ndarray], out)

    def whole_words(self) -> set[str]:
        """The words of letters the model's tokenizer knows whole (:meth:`TextEncoder.whole_words`)."""
        return self._tokenizer.whole_words()

    def windows_needed(self, text: str) -> int:
        """How many windows of the model :meth:`predict` would run for ``text`` (1 for a text that
        fits; at most :data:`nlu.tokenization.MAX_WINDOWS`): what reading it costs, in units of one
        encoder pass. Tokenizes only: 0.02 ms for a short question, 7 ms for 4,000 characters (about
        1 % of reading them; 2 cores, 2026-12-01)."""
        ids = self._tokenizer.encode([text])[0]
        if not self._tokenizer.was_truncated(ids):
            return 1
        return len(self._tokenizer.windows([text])[0])

    def predict_one(self, text: str, top_k: int = 3) -> Prediction:
        return self.predict([text], top_k=top_k)[0]


#: A split model reads this many token-id lists at a time (see :meth:`IntentClassifier._run_split`).
_SPLIT_CHUNK = 256
