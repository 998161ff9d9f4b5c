"""Small talk and advice requests, recognised by meaning against example phrasings (bot/data/*.yaml)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from bot.errors import ConfigError

DATA_DIR = Path(__file__).resolve().parent / "data"
SMALLTALK_FILE = DATA_DIR / "smalltalk.yaml"
ADVICE_FILE = DATA_DIR / "advice.yaml"


@dataclass
class ExemplarSet:
    """Example phrasings, each with a category; embedded once, then matched by cosine similarity."""

    texts: list[str]
    categories: list[str]
    replies: dict[str, str]
    vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))

    def embed_with(self, embed: Any) -> ExemplarSet:
        self.vectors = np.asarray(embed(self.texts), dtype=np.float32)
        return self

    def best(self, queries: np.ndarray) -> tuple[list[str | None], np.ndarray]:
        """For each query vector: the best-matching category and its similarity."""
        if not self.texts:
            return [None] * len(queries), np.zeros(len(queries), dtype=np.float32)
        sims = np.asarray(queries, dtype=np.float32) @ self.vectors.T
        index = sims.argmax(axis=1)
        return [self.categories[i] for i in index], sims[np.arange(len(queries)), index]

    def leave_one_out(self) -> np.ndarray:
        """Each example's similarity to the closest *other* example of its own category."""
        sims = self.vectors @ self.vectors.T
        np.fill_diagonal(sims, -np.inf)
        same = np.array([[a == b for b in self.categories] for a in self.categories])
        sims[~same] = -np.inf
        return np.asarray(sims.max(axis=1), dtype=np.float32)


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read ({exc})") from None


def load_smalltalk(path: Path = SMALLTALK_FILE) -> ExemplarSet:
    data = _read_yaml(path)
    texts, categories, replies = [], [], {}
    for category, body in data.items():
        replies[category] = body["reply"]
        for example in body["examples"]:
            texts.append(str(example))
            categories.append(category)
    return ExemplarSet(texts, categories, replies)


def load_advice(path: Path = ADVICE_FILE, extra: list[str] | None = None) -> ExemplarSet:
    """Advice examples plus ``extra`` phrasings (the knowledge base's advice questions)."""
    data = _read_yaml(path)
    texts = [str(t) for t in data["examples"]] + list(extra or [])
    return ExemplarSet(texts, ["advice"] * len(texts), {"advice": " ".join(str(data["reply"]).split())})
