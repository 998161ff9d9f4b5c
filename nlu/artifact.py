"""The on-disk contract of an intent model artifact.

A directory ``<version>/`` holds everything needed to serve, audit and reproduce a model::

    encoder/            fine-tuned encoder (Hugging Face format) and its tokenizer
    head.safetensors    linear head
    model.onnx          encoder + head for ONNX Runtime (fp32)
    trunk.onnx          int8: the embeddings and the frozen lowest layers, as the retrieval
                        encoder computes them (a model with frozen layers, :mod:`nlu.trunk`)
    upper.int8.onnx     int8: the fine-tuned layers and the head, from the trunk's output
    model.int8.onnx     int8: the whole model (a model without frozen layers, or written before
                        2026-12-05)
    labels.json         intent names, in output order
    teller_model.json   version, creation time, training config, data hash, calibration, precision
    metrics.json        dev metrics (accuracy, macro-F1, per intent, confusions, ECE)
    memory.npz          fine-tuned embeddings of the training examples and their intents (k-NN vote)
    base_memory.npz     the same examples embedded by the base encoder (out-of-scope detection)
    dev.csv             the held-out dev split, so the numbers can be recomputed
    corrections.csv     operator corrections trained on with extra weight (retrained models only)

An artifact is written to a temporary directory and renamed into place, so a crash never leaves a
half-written model where a loader could find it.
"""

from __future__ import annotations

import csv
import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nlu.data import Example
from nlu.errors import ArtifactError
from nlu.knn import Memory
from nlu.runtime import export_onnx
from nlu.textio import neutralise_cell, restore_cell

if TYPE_CHECKING:
    from nlu.training import TrainedModel

FORMAT_VERSION = 1
INFO_FILE = "teller_model.json"
LABELS_FILE = "labels.json"
METRICS_FILE = "metrics.json"
DEV_FILE = "dev.csv"
CORRECTIONS_FILE = "corrections.csv"
MEMORY_FILE = "memory.npz"
BASE_MEMORY_FILE = "base_memory.npz"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
#: int8 serves by default unless it costs more than this many accuracy points on dev.
INT8_TOLERANCE = 0.3


@dataclass
class ArtifactInfo:
    """What ``teller_model.json`` says about a model."""

    version: str
    created_at: str
    base_encoder: str
    num_labels: int
    temperature: float
    max_length: int
    precision: str
    data_hash: str
    sources: list[str]
    train_size: int
    dev_size: int
    train_seconds: float
    training: dict[str, Any]
    dev: dict[str, Any] = field(default_factory=dict)
    precision_check: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    libraries: dict[str, str] = field(default_factory=dict)
    #: For a retrained candidate: parent version, corrections, frozen evaluation set (else empty).
    retraining: dict[str, Any] = field(default_factory=dict)
    format: int = FORMAT_VERSION

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ArtifactInfo:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def _library_versions() -> dict[str, str]:
    versions = {}
    for name in ("torch", "transformers", "onnxruntime", "tokenizers"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def read_info(directory: str | Path) -> ArtifactInfo:
    path = Path(directory) / INFO_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ArtifactError(f"{directory}: not a Teller model (no {INFO_FILE})") from None
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{path}: unreadable ({exc})") from None
    if data.get("format", 0) > FORMAT_VERSION:
        raise ArtifactError(f"{directory}: written by a newer Teller (format {data['format']})")
    return ArtifactInfo.from_dict(data)


def read_labels(directory: str | Path) -> list[str]:
    path = Path(directory) / LABELS_FILE
    try:
        labels = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"{path}: unreadable ({exc})") from None
    if not isinstance(labels, list) or not all(isinstance(x, str) for x in labels):
        raise ArtifactError(f"{path}: expected a JSON list of intent names")
    return labels


def _read_examples(path: Path) -> list[Example]:
    if not path.is_file():
        return []
    with path.open(encoding="utf-8", newline="") as handle:
        return [
            Example(restore_cell(row["text"]), restore_cell(row["category"]))
            for row in csv.DictReader(handle)
        ]


def _write_examples(path: Path, examples: list[Example]) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "category"])
        # Neutralised against formula injection (customers write corrections' texts; an operator may
        # open the file in a spreadsheet), restored by :func:`_read_examples`.
        writer.writerows((neutralise_cell(e.text), neutralise_cell(e.label)) for e in examples)


def read_dev_split(directory: str | Path) -> list[Example]:
    """The dev split the artifact was scored on (empty if it was trained without one)."""
    return _read_examples(Path(directory) / DEV_FILE)


def read_corrections(directory: str | Path) -> list[Example]:
    """The corrections a retrained artifact was trained on (empty for an ordinary training)."""
    return _read_examples(Path(directory) / CORRECTIONS_FILE)


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def read_memory(directory: str | Path, name: str = MEMORY_FILE) -> Memory:
    path = Path(directory) / name
    try:
        with np.load(path) as data:
            return Memory(data["embeddings"].astype(np.float32), data["targets"].astype(np.int64))
    except (OSError, KeyError, ValueError) as exc:
        raise ArtifactError(f"{path}: unreadable memory ({exc})") from None


def read_base_memory(directory: str | Path) -> Memory | None:
    """Base-encoder embeddings of the training examples, if the artifact has them."""
    return (
        read_memory(directory, BASE_MEMORY_FILE) if (Path(directory) / BASE_MEMORY_FILE).is_file() else None
    )


def _write_memory(path: Path, memory: Memory) -> None:
    np.savez(path, embeddings=memory.embeddings.astype(np.float16), targets=memory.targets.astype(np.int32))


def _served_accuracy(directory: Path, precision: str, dev: list[Example]) -> float:
    """Dev accuracy through the exact serving path (ONNX graph, memory, scorer)."""
    from nlu.classifier import IntentClassifier

    classifier = IntentClassifier.load(directory, precision=precision)
    predictions = classifier.predict([e.text for e in dev])
    return float(np.mean([p.intent == e.label for p, e in zip(predictions, dev, strict=True)]))


def write_artifact(
    trained: TrainedModel,
    directory: str | Path,
    version: str,
    base_encoder: str,
    encoder_dir: str | Path,
    quantize: bool = True,
    retraining: dict[str, Any] | None = None,
) -> ArtifactInfo:
    """Write ``trained`` as a complete artifact at ``directory`` (which must not exist yet).

    ``retraining`` (parent version, corrections, ...) is recorded as is in ``teller_model.json``.
    """
    final = Path(directory)
    if final.exists():
        raise ArtifactError(f"{final}: already exists")
    staging = final.parent / f".tmp-{final.name}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        info = _write_into(
            staging, trained, version, base_encoder, Path(encoder_dir), quantize, retraining or {}
        )
        staging.rename(final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return info


def _write_into(
    staging: Path,
    trained: TrainedModel,
    version: str,
    base_encoder: str,
    encoder_dir: Path,
    quantize: bool,
    retraining: dict[str, Any],
) -> ArtifactInfo:
    trained.model.save(staging)
    for name in TOKENIZER_FILES:
        if (encoder_dir / name).is_file():
            shutil.copy2(encoder_dir / name, staging / "encoder" / name)
    from nlu.training import frozen_layers
    from nlu.trunk import split_layers

    frozen = frozen_layers(trained.model, trained.config)
    shared = split_layers(trained.model, frozen, trained.config.freeze_embeddings) if quantize else 0
    export_onnx(trained.model, staging, quantize=quantize, shared_layers=shared)
    _write_json(staging / LABELS_FILE, trained.labels)
    _write_memory(staging / MEMORY_FILE, trained.memory)
    _write_memory(staging / BASE_MEMORY_FILE, trained.base_memory)
    _write_examples(staging / DEV_FILE, trained.dev_examples)
    if trained.corrections:
        _write_examples(staging / CORRECTIONS_FILE, trained.corrections)

    dev = trained.dev_metrics
    info = ArtifactInfo(
        version=version,
        created_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        base_encoder=base_encoder,
        num_labels=len(trained.labels),
        temperature=trained.temperature,
        max_length=trained.config.max_length,
        precision="fp32",
        data_hash=trained.data_hash,
        sources=trained.sources,
        train_size=trained.train_size,
        dev_size=trained.dev_size,
        train_seconds=round(trained.seconds, 1),
        training=trained.config.to_dict(),
        dev={**dev.summary(), "head_accuracy": trained.dev_head_accuracy} if dev else {},
        history=trained.history,
        libraries=_library_versions(),
        retraining=retraining,
    )
    if dev is not None:
        _write_json(staging / METRICS_FILE, dev.to_dict())
    _write_json(staging / INFO_FILE, asdict(info))
    if trained.dev_examples:
        for name in ("fp32", "int8") if quantize else ("fp32",):
            info.precision_check[f"{name}_dev_accuracy"] = _served_accuracy(
                staging, name, trained.dev_examples
            )
    if quantize and (
        not trained.dev_examples
        or info.precision_check["int8_dev_accuracy"]
        >= info.precision_check["fp32_dev_accuracy"] - INT8_TOLERANCE / 100
    ):
        info.precision = "int8"
    _write_json(staging / INFO_FILE, asdict(info))
    return info


def metrics_of(directory: str | Path) -> dict[str, Any]:
    """The stored dev metrics of an artifact (empty when it was trained without a dev split)."""
    path = Path(directory) / METRICS_FILE
    if not path.is_file():
        return {}
    return dict(json.loads(path.read_text(encoding="utf-8")))
