"""From a corpus to an active, versioned artifact in one call."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nlu.artifact import write_artifact
from nlu.data import Corpus, Example
from nlu.encoder import BASE_ENCODER_NAME, base_encoder_path
from nlu.registry import ModelRegistry, ModelVersion
from nlu.training import ProgressFn, TrainConfig, continue_training, train


def train_and_register(
    corpus: Corpus,
    registry: ModelRegistry,
    config: TrainConfig | None = None,
    progress: ProgressFn | None = None,
    activate: bool = True,
    encoder_dir: str | Path | None = None,
    base_encoder: str | None = None,
    *,
    dev_examples: Sequence[Example] | None = None,
    corrections: Sequence[Example] = (),
    retraining: dict[str, Any] | None = None,
    continue_from: str | Path | None = None,
) -> ModelVersion:
    """Train on ``corpus``, write the artifact into ``registry`` and (by default) activate it.

    ``dev_examples`` (a fixed dev split) and ``corrections`` (weighted corrections) are passed to
    :func:`nlu.training.train`; ``retraining`` is recorded in the artifact's metadata. With
    ``continue_from`` (a model directory), that model is fine-tuned further on ``corrections`` with
    the corpus replayed (:func:`nlu.training.continue_training`); ``encoder_dir`` is then the base
    encoder it was first trained from, used for the out-of-scope memory. If anything
    fails before the artifact is complete, the registry and the active model are exactly as they were.
    """
    encoder = Path(encoder_dir) if encoder_dir is not None else base_encoder_path()
    if base_encoder is None:
        base_encoder = BASE_ENCODER_NAME if encoder_dir is None else str(encoder)
    if continue_from is None:
        trained = train(corpus, encoder, config, progress, dev_examples=dev_examples, corrections=corrections)
    else:
        trained = continue_training(
            continue_from,
            corpus,
            encoder,
            config,
            progress,
            dev_examples=dev_examples or [],
            corrections=corrections,
        )
        encoder = Path(continue_from) / "encoder"  # its tokenizer files go into the artifact
    if progress:
        progress("export", 0, 1)
    version = registry.new_version(trained.data_hash)
    info = write_artifact(
        trained, registry.root / version, version, base_encoder, encoder, retraining=retraining
    )
    if progress:
        progress("export", 1, 1)
    path = registry.activate(version) if activate else registry.path(version)
    return ModelVersion(info, path, activate)
