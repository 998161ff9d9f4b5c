"""The lower layers the intent model shares with the retrieval encoder: one pass for both.

The intent model is fine-tuned with its embeddings and lowest layers frozen (3 of
all-MiniLM-L6-v2's 6, :attr:`nlu.training.TrainConfig.frozen_layer_share`): they stay the base
encoder's, weight for weight, and the retrieval encoder runs the same base encoder on every message
anyway. So an artifact's int8 classifier is written as two graphs (where the frozen layers are the
packaged base encoder's lowest :data:`SHARED_LAYERS` and its embeddings, :func:`split_layers`):

``trunk.onnx``
    the embeddings and the frozen layers, matrix weights in int8, 64 to a scale
    (:func:`nlu.runtime.quantize_weights`, as the retrieval encoder's), output ``hidden``
    ``(batch, tokens, hidden size)``: what the frozen layers give, for a message the classifier
    reads with other token ids than the retrieval encoder (it reads "debit card" blanked, and a
    message longer than its window in windows) or on its own (``teller eval``, the retraining
    gate, the precision check);
``upper.int8.onnx``
    the fine-tuned layers, mean pooling and the head (dynamic int8, :func:`nlu.runtime._quantize`),
    from ``hidden`` and the attention mask to ``logits`` and ``embeddings``.

The retrieval encoder's graph (:func:`export_encoder_with_trunk`) gives the same ``hidden`` beside
its sentence vector. Both graphs carry a key in their ONNX metadata (:data:`KEY`: the frozen
weights, :func:`trunk_key`, the ONNX Runtime that exported the graph and whether its attention was
fused). Where the keys agree and, on a probe message, the states agree bit for bit
(:meth:`nlu.classifier.IntentClassifier.same_trunk`), the answer policy has the retrieval encoder
read first and hands its ``hidden`` to the classifier for each message whose token ids are the
same for both (:meth:`nlu.classifier.IntentClassifier.predict`'s ``shared``); the classifier then
runs only its upper layers, with the very answers its own trunk would give.

Measured on the active model's dev split (1,002 questions, 2 cores, ONNX Runtime 1.32,
2026-12-05): the retrieval graph's ``hidden`` equals the trunk's bit for bit, alone and in batches
of up to 64, and its sentence vectors equal those of the graph without the extra output; one
message's two passes 3.7-4.1 -> 2.8-3.2 ms p50 (the classifier's six int8 layers and the retrieval
encoder's six, against the retrieval encoder's six and the classifier's upper three); 2,004
messages in groups of 24, 279-290 -> 361-365 messages/s. The cost: the trunk's int8 weights
(batch-independent, and the retrieval encoder's vectors keep within cosine 0.9995 of fp32's) are
read about twice as slowly as dynamic int8's, so the classifier benchmarked on its own is slower.
Accuracy of the split graphs against the whole model in dynamic int8, the same fine-tuned weights,
dev accuracy with the nearest-example vote, seed 0 / seed 1 dev splits: 94.51 / 93.81 % against
94.81 / 93.01 % (fp32 94.61 / 93.51 %).

A model trained otherwise, or written before 2026-12-05, has no trunk: its ``model.int8.onnx`` is
served whole as before.
"""

from __future__ import annotations

import copy
import hashlib
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nlu.errors import ArtifactError

if TYPE_CHECKING:
    import torch

    from nlu.model import IntentModel

TRUNK_FILE = "trunk.onnx"
UPPER_INT8_FILE = "upper.int8.onnx"
#: The trunk's output and the upper graph's input: the frozen layers' hidden states.
HIDDEN = "hidden"
#: ONNX metadata key of :func:`trunk_key` in both graphs.
KEY = "teller.trunk"
#: The layer whose output the retrieval encoder's graph gives beside its vectors: the default
#: recipe's frozen layers (half of all-MiniLM-L6-v2's 6). A model trained with another share keeps
#: its own trunk for every message.
SHARED_LAYERS = 3


def trunk_key(encoder: Any, layers: int) -> str:
    """What identifies the output of ``encoder``'s embeddings and its lowest ``layers`` layers as a
    trunk graph computes it: a SHA-256 of those weights (names, shapes and float32 bytes), the
    layer count and the quantisation (:data:`nlu.runtime.WEIGHT_BLOCK`). 32 hex digits."""
    from nlu.runtime import WEIGHT_BLOCK

    digest = hashlib.sha256(f"layers={layers};w8b{WEIGHT_BLOCK}".encode())
    state = encoder.state_dict()
    prefixes = ("embeddings.", *(f"encoder.layer.{i}." for i in range(layers)))
    for name in sorted(n for n in state if n.startswith(prefixes)):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()[:32]


def _graph_key(weights: str, graph: Any, layers: int) -> str:
    """The key a graph carries: its weights' :func:`trunk_key`, the ONNX Runtime version that
    exported it and whether every one of its ``layers`` layers' attention was fused (a graph the
    fusions left plain computes the same layers with other kernels and its attention weights in
    int8: up to 0.075 apart, found in review). 32 hex digits."""
    import onnxruntime as ort

    fused = sum(node.op_type == "Attention" for node in graph.graph.node) == layers
    return hashlib.sha256(f"{weights};ort={ort.__version__};fused={fused}".encode()).hexdigest()[:32]


def graph_key(session: Any) -> str | None:
    """The :data:`KEY` an ONNX Runtime session's graph carries (None if it carries none)."""
    value = session.get_modelmeta().custom_metadata_map.get(KEY)
    return str(value) if value else None


def _export(
    module: torch.nn.Module,
    example: tuple[torch.Tensor, ...],
    inputs: list[str],
    outputs: list[str],
    path: Path,
    config: Any,
    *,
    weights: str,
    key: str | None,
    layers: int,
) -> None:
    """``module`` (``layers`` BERT layers) to ONNX at ``path``: BERT fusions, then its MatMul
    weights in int8 (``weights`` "nbits": :func:`nlu.runtime.quantize_weights`; "dynamic":
    :func:`nlu.runtime._quantize`), with ``key`` (a :func:`trunk_key`) made the graph's own
    (:func:`_graph_key`) in its metadata. Nothing is left beside ``path`` if it fails."""
    import onnx
    import torch

    from nlu.runtime import _quantize, optimize_bert_graph, quantize_weights

    tokens = {0: "batch", 1: "tokens"}
    dynamic = {name: tokens for name in inputs} | {
        name: (tokens if name == HIDDEN else {0: "batch"}) for name in outputs
    }
    staging = path.with_name(f".{path.name}.{os.getpid()}.raw.tmp")
    fused = path.with_name(f".{path.name}.{os.getpid()}.fused.tmp")
    quantized = path.with_name(f".{path.name}.{os.getpid()}.q.tmp")
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module.eval(),
                example,
                str(staging),
                dynamo=False,
                input_names=inputs,
                output_names=outputs,
                dynamic_axes=dynamic,
                opset_version=17,
            )
        optimize_bert_graph(staging, fused, int(config.num_attention_heads), int(config.hidden_size))
        if weights == "nbits":
            quantize_weights(fused, quantized)
        else:
            _quantize(fused, quantized)
        if key is not None:
            graph = onnx.load(str(quantized))
            onnx.helper.set_model_props(graph, {KEY: _graph_key(key, onnx.load(str(fused)), layers)})
            onnx.save(graph, str(quantized))
        os.replace(quantized, path)
    finally:
        for left in (staging, fused, quantized):
            left.unlink(missing_ok=True)


def _eager(encoder: Any) -> Any:
    encoder.config._attn_implementation = "eager"
    return encoder


def export_trunk(encoder: Any, layers: int, path: Path) -> None:
    """Write ``encoder``'s embeddings and lowest ``layers`` layers as a graph ``(input_ids,
    attention_mask)`` -> ``hidden`` at ``path``, keyed (:data:`KEY`)."""
    import torch

    lower = _eager(copy.deepcopy(encoder)).eval()
    lower.encoder.layer = lower.encoder.layer[:layers]
    lower.config.num_hidden_layers = layers

    class Trunk(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = lower

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state

    example = (torch.ones(2, 8, dtype=torch.long), torch.ones(2, 8, dtype=torch.long))
    _export(
        Trunk(),
        example,
        ["input_ids", "attention_mask"],
        [HIDDEN],
        path,
        lower.config,
        weights="nbits",
        key=trunk_key(encoder, layers),
        layers=layers,
    )


def export_encoder_with_trunk(encoder: Any, path: Path, layers: int = SHARED_LAYERS) -> None:
    """Write the whole ``encoder`` with mean pooling as a graph ``(input_ids, attention_mask)`` ->
    ``embeddings`` ``(batch, hidden size)`` (normalised) and, where it has more than ``layers``
    layers, ``hidden`` (the output of its lowest ``layers``, keyed as :func:`export_trunk` keys the
    same layers) at ``path``; weights as :func:`export_trunk`'s. The retrieval encoder's graph."""
    import torch

    from nlu.model import mean_pool

    encoder = _eager(encoder).eval()
    shared = int(encoder.config.num_hidden_layers) > layers

    class Pooled(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> Any:
            out = self.encoder(
                input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=shared
            )
            pooled = mean_pool(out.last_hidden_state, attention_mask)
            return (pooled, out.hidden_states[layers]) if shared else pooled

    example = (torch.ones(2, 8, dtype=torch.long), torch.ones(2, 8, dtype=torch.long))
    outputs = ["embeddings", HIDDEN] if shared else ["embeddings"]
    key = trunk_key(encoder, layers) if shared else None
    _export(
        Pooled(),
        example,
        ["input_ids", "attention_mask"],
        outputs,
        path,
        encoder.config,
        weights="nbits",
        key=key,
        layers=int(encoder.config.num_hidden_layers),
    )


def export_upper(model: IntentModel, layers: int, path: Path) -> None:
    """Write ``model``'s layers from ``layers`` up, mean pooling and head as a graph ``(hidden,
    attention_mask)`` -> ``(logits, embeddings)`` at ``path``, dynamic int8.

    The attention mask is built as transformers' SDPA path built it (``masked_fill`` of the
    inverted mask), a form ONNX Runtime's attention fusion recognises: with the additive mask of
    :func:`nlu.training.run_layers` nothing was fused, and one message's pass took 3.3-3.5 ms against
    2.8-3.2 fused (2 cores, 2026-12-05)."""
    import torch

    from nlu.model import mean_pool
    from nlu.training import encoder_layers

    upper = torch.nn.ModuleList(encoder_layers(model)[layers:])
    head = model.head

    class Upper(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = upper
            self.head = head

        def forward(
            self, hidden: torch.Tensor, attention_mask: torch.Tensor
        ) -> tuple[torch.Tensor, torch.Tensor]:
            batch, tokens = attention_mask.shape
            inverted = 1.0 - attention_mask[:, None, None, :].expand(batch, 1, tokens, tokens).to(
                hidden.dtype
            )
            blocked = inverted.masked_fill(inverted.to(torch.bool), torch.finfo(hidden.dtype).min)
            for layer in self.layers:
                out = layer(hidden, blocked)
                hidden = out[0] if isinstance(out, tuple) else out
            embeddings = mean_pool(hidden, attention_mask)
            return self.head(embeddings), embeddings

    example = (torch.randn(2, 8, model.hidden_size), torch.ones(2, 8, dtype=torch.long))
    _export(
        Upper(),
        example,
        [HIDDEN, "attention_mask"],
        ["logits", "embeddings"],
        path,
        model.encoder.config,
        weights="dynamic",
        key=None,
        layers=len(upper),
    )


def split_layers(model: IntentModel, frozen: int, freeze_embeddings: bool) -> int:
    """How many layers an int8 artifact of ``model`` (``frozen`` lowest layers kept as pre-trained)
    puts in its trunk: :data:`SHARED_LAYERS` where the retrieval encoder's pass can stand in for
    them (its embeddings frozen too, and those weights the packaged base encoder's,
    :func:`nlu.encoder.base_encoder_path`), else 0 (written whole: a split it could never share
    only costs, found in review)."""
    from nlu.encoder import base_encoder_path
    from nlu.model import _load_encoder

    if frozen != SHARED_LAYERS or not freeze_embeddings:
        return 0
    try:
        base = _load_encoder(base_encoder_path())
    except Exception:  # no package, or an incomplete one (transformers raises OSError, ValueError...)
        return 0  # the model is written whole: it could not share anyway
    same = trunk_key(model.encoder, SHARED_LAYERS) == trunk_key(base, SHARED_LAYERS)
    return SHARED_LAYERS if same else 0


class Trunk:
    """An artifact's ``trunk.onnx`` in ONNX Runtime: ``hidden`` for padded token ids, batched (its
    int8 weights give each sequence the same output alone as in any batch). ``key`` is the graph's
    (:data:`KEY`). Raises :class:`ArtifactError` for a missing or unreadable file."""

    def __init__(self, path: str | Path, threads: int) -> None:
        import onnxruntime as ort

        from nlu.runtime import serving_options

        path = Path(path)
        if not path.is_file():
            raise ArtifactError(f"{path}: no such ONNX model")
        try:
            self._session = ort.InferenceSession(
                str(path), serving_options(threads, spin=True), providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors on a corrupt file
            raise ArtifactError(f"{path}: cannot load ONNX model ({exc})") from None
        self.key = graph_key(self._session)
        self.path = path

    def run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """``(batch, tokens, hidden)`` float32 for a padded ``(batch, tokens)`` int64 batch."""
        (hidden,) = self._session.run([HIDDEN], {"input_ids": input_ids, "attention_mask": attention_mask})
        return np.asarray(hidden)
