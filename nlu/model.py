"""The intent model: a BERT-style encoder, mean pooling, L2 normalisation and a linear head.

Mean pooling of normalised embeddings is how all-MiniLM-L6-v2 was trained, so fine-tuning starts
from an encoder that already places similar questions close together.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedModel

from nlu.errors import ArtifactError

HEAD_FILE = "head.safetensors"
ENCODER_DIR = "encoder"


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average of the token vectors that are not padding, L2-normalised."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
    return F.normalize(pooled, dim=-1)


class IntentModel(nn.Module):
    """Encoder + mean pooling + linear head. ``forward`` returns ``(logits, embeddings)``."""

    def __init__(self, encoder: PreTrainedModel, num_labels: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.config.hidden_size, num_labels)

    @property
    def hidden_size(self) -> int:
        return int(self.encoder.config.hidden_size)

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return mean_pool(hidden, attention_mask)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        embeddings = self.embed(input_ids, attention_mask)
        return self.head(embeddings), embeddings

    @classmethod
    def from_encoder(cls, encoder_dir: str | Path, num_labels: int) -> IntentModel:
        """A fresh head on top of a pretrained encoder directory."""
        return cls(_load_encoder(encoder_dir), num_labels)

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        self.encoder.save_pretrained(directory / ENCODER_DIR, safe_serialization=True)
        save_file({k: v.contiguous() for k, v in self.head.state_dict().items()}, str(directory / HEAD_FILE))

    @classmethod
    def load(cls, directory: str | Path) -> IntentModel:
        directory = Path(directory)
        try:
            head = load_file(str(directory / HEAD_FILE))
        except (FileNotFoundError, OSError) as exc:
            raise ArtifactError(f"{directory}: cannot read {HEAD_FILE} ({exc})") from None
        model = cls(_load_encoder(directory / ENCODER_DIR), num_labels=head["weight"].shape[0])
        model.head.load_state_dict(head)
        return model.eval()


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' load report and progress bar for one call (they go to stderr)."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def _load_encoder(encoder_dir: str | Path) -> PreTrainedModel:
    encoder_dir = Path(encoder_dir)
    if not (encoder_dir / "config.json").is_file():
        raise ArtifactError(f"{encoder_dir}: no encoder config.json")
    config = AutoConfig.from_pretrained(encoder_dir, local_files_only=True)
    # Plain "eager" attention exports cleanly to ONNX and is as fast as SDPA at these lengths.
    config._attn_implementation = "eager"
    # The pooler (a dense layer on [CLS]) is never used: mean pooling replaces it.
    with quiet_transformers():
        return AutoModel.from_pretrained(
            encoder_dir, config=config, local_files_only=True, add_pooling_layer=False
        )
