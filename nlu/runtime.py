"""Serving runtime: the intent model exported to ONNX and run by ONNX Runtime.

Eager PyTorch spends most of a single-message call in Python and dispatch overhead. The exported
graph (the encoder and the head: ``logits`` and the pooled, normalised ``embeddings``) is optimised
with ONNX Runtime's transformer fusions (attention, skip-LayerNorm, GELU). Dynamic int8
quantisation of its matrix multiplications roughly halves latency again on CPUs with VNNI. The
accuracy int8 costs is measured when an artifact is written and kept in its metadata; ``fp32``
stays available.

A model fine-tuned with frozen lowest layers (the default) is written for int8 as two graphs, its
trunk and its upper layers, so that the retrieval encoder's pass can stand in for the trunk
(:mod:`nlu.trunk`).

The message's nearest training examples are read outside the graph (:meth:`nlu.knn.Memory.top`).
Graphs exported before 2026-12-05 also computed the similarity to every training example as a third
output; :class:`OnnxRunner` drops that product when it loads one, so an older artifact serves as a
new one does.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import threading
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import numpy as np

from nlu.errors import ArtifactError

if TYPE_CHECKING:
    from nlu.model import IntentModel

log = logging.getLogger(__name__)

ONNX_FP32 = "model.onnx"
ONNX_INT8 = "model.int8.onnx"
PRECISIONS = {"fp32": ONNX_FP32, "int8": ONNX_INT8}
#: Precisions whose graph reads each sequence of a batch as if it were alone. The int8 graph is not
#: one: dynamic quantisation (:func:`_quantize`) scales each MatMul's activations by the range of the
#: whole input tensor, batch-mates and padding included, so a message's probabilities moved with what
#: it was batched with (active model's dev split, 1,002 messages: 0.7 % of top intents and confidences
#: by up to 0.18 differed between batches of 64 and one message at a time, 2026-12-01). Such a graph
#: is run one sequence at a time.
BATCH_INDEPENDENT = frozenset({"fp32"})
INPUTS = ("input_ids", "attention_mask")
OUTPUTS = ("logits", "embeddings")
#: The third output of graphs exported before 2026-12-05 (the product with the memory).
_LEGACY_OUTPUT = "similarities"


def export_onnx(
    model: IntentModel, directory: str | Path, quantize: bool = True, shared_layers: int = 0
) -> list[Path]:
    """Write ``model.onnx`` into ``directory`` and, with ``quantize``, its int8 graphs: with
    ``shared_layers`` (the frozen lowest layers, see :mod:`nlu.trunk`) ``trunk.onnx`` and
    ``upper.int8.onnx``, else ``model.int8.onnx``. Returns the files written."""
    import torch

    directory = Path(directory)
    raw = directory / "model.raw.onnx"
    fp32 = directory / ONNX_FP32
    model.eval()
    example = (torch.ones(2, 8, dtype=torch.long), torch.ones(2, 8, dtype=torch.long))
    dynamic = {name: {0: "batch", 1: "tokens"} for name in INPUTS} | {name: {0: "batch"} for name in OUTPUTS}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            example,
            str(raw),
            dynamo=False,
            input_names=list(INPUTS),
            output_names=list(OUTPUTS),
            dynamic_axes=dynamic,
            opset_version=17,
        )
    config = model.encoder.config
    optimize_bert_graph(raw, fp32, int(config.num_attention_heads), int(config.hidden_size))
    raw.unlink()
    written = [fp32]
    if quantize and shared_layers > 0:
        from nlu.trunk import TRUNK_FILE, UPPER_INT8_FILE, export_trunk, export_upper

        export_trunk(model.encoder, shared_layers, directory / TRUNK_FILE)
        export_upper(model, shared_layers, directory / UPPER_INT8_FILE)
        written += [directory / TRUNK_FILE, directory / UPPER_INT8_FILE]
    elif quantize:
        int8 = directory / ONNX_INT8
        _quantize(fp32, int8)
        written.append(int8)
    return written


def optimize_bert_graph(source: Path, target: Path, num_heads: int, hidden_size: int) -> None:
    """Write ``source`` with ONNX Runtime's BERT fusions (attention, layer norm, GELU) applied to
    ``target``; the plain graph is copied if they do not apply (logged as ``onnx_optimize_skipped``).
    The fused graph gives the same outputs to float rounding."""
    try:
        from onnxruntime.transformers.optimizer import optimize_model

        with contextlib.redirect_stdout(None), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            optimized = optimize_model(
                str(source), model_type="bert", num_heads=num_heads, hidden_size=hidden_size
            )
            optimized.save_model_to_file(str(target))
    except Exception as exc:  # the optimizer raises assorted errors on graphs it does not recognise
        log.warning("onnx_optimize_skipped", extra={"fields": {"reason": str(exc)[:200]}})
        shutil.copyfile(source, target)


#: Columns of a weight matrix that share one int8 scale in :func:`quantize_weights`. Blocks of 32 and
#: 64 gave each message the same vector alone as in any batch (to 6e-8); blocks of 128 did not (2e-3
#: apart), ONNX Runtime 1.32, 2026-12-02.
WEIGHT_BLOCK = 64


def quantize_weights(source: Path, target: Path, block_size: int = WEIGHT_BLOCK) -> None:
    """Write ``source`` to ``target`` with every MatMul's weights in int8, ``block_size`` weights of a
    column to a scale (ONNX Runtime's ``MatMulNBits``, 8 bits, symmetric, ``accuracy_level`` 4: the
    activations are quantised per block of one row, so a sequence's result does not depend on its
    batch-mates, unlike :func:`_quantize`). The fused attention's own weights stay fp32.

    Measured on the retrieval encoder (2 threads, 2 cores, 2026-12-02): cosine to the fp32 graph's
    vectors at least 0.9995 over 600 Banking77 questions (mean 0.9998; dynamic int8
    :func:`_quantize` 0.968) and at least 0.9986 over the starter knowledge base's 985 texts (the
    lowest, a short "Sorry about that."); one pass 2.57 -> 1.80 ms. Raises what the quantiser raises.
    """
    import onnx

    quantizer = _weight_quantizer()(
        onnx.load(str(source)), bits=8, block_size=block_size, is_symmetric=True, accuracy_level=4
    )
    quantizer.process()
    quantizer.model.save_model_to_file(str(target), use_external_data_format=False)


def _weight_quantizer() -> Any:
    """ONNX Runtime's ``MatMulNBitsQuantizer``. Its module calls ``logging.basicConfig`` at import
    (a root handler at INFO, which would print unstructured, unredacted records beside Teller's own)
    and logs every node it skips: the root logger is put back as it was and its own quietened."""
    with _QUANTIZER_IMPORT:  # two threads at once: the second must not save the first's handler
        root = logging.getLogger()
        handlers, level = list(root.handlers), root.level
        try:
            from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
        finally:
            root.handlers[:] = handlers
            root.setLevel(level)
    logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").setLevel(logging.WARNING)
    return MatMulNBitsQuantizer


_QUANTIZER_IMPORT = threading.Lock()


def _quantize(source: Path, target: Path) -> None:
    """Dynamic int8 quantisation of every MatMul."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(source),
        str(target),
        weight_type=QuantType.QInt8,
        extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
    )


def _without_memory_product(path: Path) -> bytes:
    """A graph exported before 2026-12-05, serialised without its product with the memory (its
    ``similarities`` output, the MatMul behind it and the memory it read)."""
    import onnx

    model = onnx.load(str(path))
    graph = model.graph
    product = [node for node in graph.node if _LEGACY_OUTPUT in node.output]
    read = {name for node in product for name in node.input}
    for node in product:
        graph.node.remove(node)
    still_read = {name for node in graph.node for name in node.input}
    for initializer in [i for i in graph.initializer if i.name in read and i.name not in still_read]:
        graph.initializer.remove(initializer)
    for output in [o for o in graph.output if o.name == _LEGACY_OUTPUT]:
        graph.output.remove(output)
    return bytes(model.SerializeToString())


def serving_options(threads: int, *, spin: bool) -> Any:
    """ONNX Runtime session options for a serving session: ``threads`` intra-op threads, one
    inter-op thread, all graph optimisations, warnings and errors only. With ``spin``, the pool's
    threads spin between a run's operators instead of sleeping, and stop as soon as the run returns
    (``session.force_spinning_stop``), so nothing spins between runs; without, they sleep.

    Measured (the int8 classifier's pass then the retrieval encoder's, 2 intra-op threads each,
    Banking77 questions, 2 cores, 2026-12-02): one message at a time, p50 of the two passes
    3.29-3.63 ms with the classifier sleeping against 2.72-2.87 ms spinning (five rounds of 300,
    alternated, the encoder spinning in both), and 3.86 / 4.07 ms with both sleeping against
    3.62 / 3.56 ms with the encoder spinning (two rounds). Under load (batches of 8: the classifier
    reads messages alone, two at once on one session; the encoder reads the batch) 345 / 333 messages/s
    both sleeping, 341 / 363 the encoder spinning, 295 / 272 both spinning: runs that overlap lose to
    each other's spinning, so the classifier keeps a sleeping session for them
    (:class:`OnnxRunner`). Spinning without the stop took 8.1 ms for the two passes: one session's
    idle spinners took the cores from the next session's run."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    options.add_session_config_entry("session.force_spinning_stop", "1")
    return options


def session_threads(threads: int | None = None) -> int:
    """Intra-op threads for a session: as asked, else every core up to four."""
    return threads or min(4, os.cpu_count() or 1)


_T = TypeVar("_T")
_R = TypeVar("_R")
_HELPERS: dict[int, ThreadPoolExecutor] = {}
_HELPERS_LOCK = threading.Lock()


def run_spread(run: Callable[[_T], _R], items: Sequence[_T], threads: int) -> list[_R]:
    """``[run(item) for item in items]``, up to ``threads`` items at a time: the calling thread
    works through the list itself and up to ``threads - 1`` helper threads of a pool shared by the
    process take items from the same list. A call never waits for another call's work: if the
    helpers are busy elsewhere (a calibration, a retrain's gate), the caller does its items alone.

    Raises whatever ``run`` raises (the first error met by the caller, else by a helper).
    """
    outputs: list[_R | None] = [None] * len(items)
    claimed = iter(range(len(items)))
    lock = threading.Lock()

    def work() -> None:
        while True:
            with lock:
                i = next(claimed, None)
            if i is None:
                return
            outputs[i] = run(items[i])

    helpers: list[Future[None]] = []
    pool = _helpers(threads)
    if pool is not None:
        for _ in range(min(threads, len(items)) - 1):
            try:
                helpers.append(pool.submit(work))
            except RuntimeError:  # the interpreter is shutting down: the caller does it all
                break
    try:
        work()
    finally:
        with lock:  # whatever is left unclaimed (after an error) is never started
            for _ in claimed:
                pass
        for helper in helpers:
            if not helper.cancel():  # started: wait for the one item it may be running
                helper.result()
    return cast(list[_R], outputs)


def _helpers(threads: int) -> ThreadPoolExecutor | None:
    """The process's ``threads - 1`` helper threads for :func:`run_spread` (None for one thread)."""
    if threads < 2:
        return None
    with _HELPERS_LOCK:
        pool = _HELPERS.get(threads)
        if pool is None:
            pool = ThreadPoolExecutor(threads - 1, thread_name_prefix="teller-onnx")
            _HELPERS[threads] = pool
        return pool


class OnnxRunner:
    """The classifier's ONNX graph in ONNX Runtime: one session whose pool spins within a run, for a
    run that has the cores to itself (a lone message, the usual case at rest), and, with
    ``overlapping``, a second session of the same file whose pool sleeps, for runs that overlap (an
    int8 classifier reading several messages at once under load; an fp32 one reads them in batches,
    one run at a time, and needs none). See :func:`serving_options` for the measurements; the second
    session costs about as much memory again (+49 MB measured for the int8 classifier, 2026-12-02).
    The second session reads on one thread: its runs come as many at once as there are cores
    (:func:`run_spread`), and each on a pool of all of them oversubscribed the cores.
    2,000 Banking77 questions through ``predict`` (int8, 2 cores, five alternated rounds,
    2026-12-02): 516-672 messages/s (median 583) with 2 threads a run, 582-800 (median 711) with 1.
    ``run`` is safe to call from several threads at once.

    Raises :class:`ArtifactError` for a missing or unreadable file."""

    def __init__(self, path: str | Path, threads: int | None = None, overlapping: bool = True) -> None:
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise ArtifactError(f"{path}: no such ONNX model")
        #: Cores the session's runs use (its intra-op threads).
        self.threads = session_threads(threads)
        try:
            graph: str | bytes = str(path)
            self._session = ort.InferenceSession(
                graph, serving_options(self.threads, spin=True), providers=["CPUExecutionProvider"]
            )
            if any(output.name == _LEGACY_OUTPUT for output in self._session.get_outputs()):
                graph = _without_memory_product(path)
                self._session = ort.InferenceSession(
                    graph, serving_options(self.threads, spin=True), providers=["CPUExecutionProvider"]
                )
            # Runs that overlap come ``threads`` at a time (one per core): each reads on one thread.
            self._overlapping = (
                ort.InferenceSession(
                    graph, serving_options(1, spin=False), providers=["CPUExecutionProvider"]
                )
                if overlapping
                else self._session
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors on a corrupt file
            raise ArtifactError(f"{path}: cannot load ONNX model ({exc})") from None
        self.path = path
        #: The graph's first input: ``input_ids`` (a whole model's), or ``hidden`` (the upper layers'
        #: of a split one, :mod:`nlu.trunk`).
        self.first_input = self._session.get_inputs()[0].name

    def run(
        self, input_ids: np.ndarray, attention_mask: np.ndarray, overlapping: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(logits, embeddings)``, ``(batch, labels)`` and ``(batch, dim)``, for a padded
        ``(batch, tokens)`` batch (``input_ids``: the token ids, or for an upper graph the trunk's
        ``(batch, tokens, hidden)`` states). ``overlapping``: other runs of this runner go on at the
        same time (the session whose threads sleep takes it, when the runner has one); the same
        results either way."""
        session = self._overlapping if overlapping else self._session
        logits, embeddings = session.run(
            list(OUTPUTS), {self.first_input: input_ids, "attention_mask": attention_mask}
        )
        return logits, embeddings
