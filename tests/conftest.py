"""Shared fixtures: a tiny random BERT built in the test, a small real corpus, and a trained artifact."""

from __future__ import annotations

import csv
import importlib
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from tests.pg import FIXTURES as POSTGRESQL_FIXTURES
from tests.pg import fresh_postgresql_url as fresh_postgresql_url
from tests.pg import postgresql_server as postgresql_server
from tests.pg import postgresql_url as postgresql_url

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
# One intra-op thread for torch (read when torch is first imported, which is after this; subprocesses
# inherit it). The tiny BERTs the tests train run several times faster on one thread than on two, whose
# OpenMP workers spin on every small op: 3x the CPU time, and far worse when the cores are shared.
# tests/test_slow_real_encoder.py gives the real encoder torch's default back. ONNX Runtime sets its
# own thread count and is not affected. An explicit OMP_NUM_THREADS wins.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# One intra-op thread for Teller's ONNX sessions too (TELLER_THREADS; the default is every core up
# to four, whose pools spin within a run): two workers share the two cores, and each worker's
# sessions spinning on both slowed the other's. A full local run 752 -> 626 s (2 cores,
# 2026-12-04). Tests of the thread setting set their own; an explicit TELLER_THREADS wins.
os.environ.setdefault("TELLER_THREADS", "1")

TOY_INTENTS = ("card_arrival", "lost_or_stolen_card", "exchange_rate", "top_up_failed")


@pytest.fixture(scope="session")
def tiny_encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-wide BERT with random (seeded) weights and the real MiniLM tokenizer."""
    import torch
    from transformers import BertConfig, BertModel

    from nlu.encoder import base_encoder_path

    base = base_encoder_path()
    directory = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(1234)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=512,
    )
    BertModel(config, add_pooling_layer=False).save_pretrained(directory, safe_serialization=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy2(base / name, directory / name)
    return directory


def write_csv(
    path: Path, rows: list[tuple[str, str]], header: tuple[str, ...] = ("text", "category")
) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture(scope="session")
def toy_rows() -> list[tuple[str, str]]:
    """Twenty real Banking77 messages for each of four intents."""
    from nlu.corpora import BANKING77_TRAIN

    rows: list[tuple[str, str]] = []
    counts = dict.fromkeys(TOY_INTENTS, 0)
    with BANKING77_TRAIN.open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            label = row["category"]
            if label in counts and counts[label] < 20:
                counts[label] += 1
                rows.append((row["text"], label))
    return rows


@pytest.fixture(scope="session")
def toy_csv(tmp_path_factory: pytest.TempPathFactory, toy_rows: list[tuple[str, str]]) -> Path:
    return write_csv(tmp_path_factory.mktemp("data") / "toy.csv", toy_rows)


def train_toy_model(models: Path, encoder_dir: Path, data: Path, frozen_layer_share: float = 0.0) -> Path:
    """Train the toy corpus on the tiny BERT into (and activate it in) ``models``; return ``models``."""
    from nlu.data import load_corpus
    from nlu.pipeline import train_and_register
    from nlu.registry import ModelRegistry
    from nlu.training import TrainConfig

    config = TrainConfig(
        epochs=3,
        batch_size=8,
        learning_rate=1e-3,
        head_learning_rate=1e-3,
        dev_fraction=0.25,
        frozen_layer_share=frozen_layer_share,
    )
    train_and_register(load_corpus([data]), ModelRegistry(models), config, encoder_dir=encoder_dir)
    return models


@pytest.fixture(scope="session")
def trained_models_dir(
    tmp_path_factory: pytest.TempPathFactory, tiny_encoder_dir: Path, toy_csv: Path
) -> Path:
    """A models directory holding one active artifact trained on the toy corpus with the tiny BERT."""
    # Random weights: all of the tiny BERT trains (the real encoder keeps its lowest half as pre-trained).
    return train_toy_model(tmp_path_factory.mktemp("models"), tiny_encoder_dir, toy_csv)


@pytest.fixture(scope="session", autouse=True)
def memoised_retrieval_embeddings() -> Iterator[None]:
    """The retrieval encoder's vectors for a list of texts, computed once per session.

    Every policy built embeds the same small-talk, advice and information examples, every fresh
    knowledge base the same starter entries, and every calibration the same messages: the real
    all-MiniLM-L6-v2 ran them again each time (most of a test's ``build_core``). Only identical calls
    are answered from the memo (the same ONNX file, threads, batch size and list of texts, so the
    same batches and bit-identical vectors); anything else runs the encoder as before.
    """
    import numpy as np

    from retrieval.embedder import OnnxSentenceEmbedder

    embed = OnnxSentenceEmbedder.embed
    memo: dict[tuple[object, ...], np.ndarray] = {}

    def memoised(self: OnnxSentenceEmbedder, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return embed(self, texts)
        key = (str(self.cache_dir.resolve()), self._threads, self._batch_size, tuple(texts))
        vectors = memo.get(key)
        if vectors is None:
            vectors = embed(self, texts)
            memo[key] = vectors.copy()
        return vectors.copy()

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(OnnxSentenceEmbedder, "embed", memoised)
        yield


@pytest.fixture(scope="session", autouse=True)
def memoised_language_detection() -> Iterator[None]:
    """Each language gate's results for a list of texts, computed once per session (calibration asks
    the same gate about the same messages for every model trained). A pure function of the gate and
    the texts; other calls run the detector as before."""
    import weakref

    from nlu.language import LanguageGate, LanguageResult

    detect = LanguageGate.detect
    memos: weakref.WeakKeyDictionary[LanguageGate, dict[tuple[str, ...], list[LanguageResult]]]
    memos = weakref.WeakKeyDictionary()

    def memoised(self: LanguageGate, texts: Sequence[str]) -> list[LanguageResult]:
        if isinstance(texts, str):
            return detect(self, texts)  # its TypeError
        key = tuple(texts)
        if not all(isinstance(text, str) for text in key):
            return detect(self, key)  # its TypeError
        memo = memos.setdefault(self, {})
        results = memo.get(key)
        if results is None:
            results = memo[key] = detect(self, key)
        return list(results)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(LanguageGate, "detect", memoised)
        yield


def seed_from_default_cache(cache: Path, pattern: str) -> None:
    """Copy into ``cache`` the files matching ``pattern`` in Teller's default cache that ``make
    test``'s ``teller train`` left there. Only files written after every
    source and data file of this checkout was last changed are copied (their names do not cover
    the code that wrote them: an older file may come from other code), and none already in
    ``cache``; with no default cache, nothing."""
    from bot.settings import Settings

    trained = Settings().cache_dir
    if not trained.is_dir():
        return
    root = Path(__file__).resolve().parent.parent
    kinds = {".py", ".yaml", ".csv", ".json", ".jsonl", ".txt"}
    newest_source = max(
        p.stat().st_mtime
        for package in ("bot", "nlu", "retrieval")
        for p in (root / package).rglob("*")
        if p.suffix in kinds and "__pycache__" not in p.parts
    )
    for path in trained.glob(pattern):
        if path.stat().st_mtime > newest_source and not (cache / path.name).exists():
            shutil.copy2(path, cache / path.name)


@pytest.fixture(scope="session")
def embedder_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One export of the retrieval encoder's ONNX graph for the whole session: the one ``make
    test``'s training exported just before (:func:`seed_from_default_cache`; 20-25 s a worker
    saved), else exported by the first test that embeds."""
    from retrieval.embedder import OnnxSentenceEmbedder

    cache = tmp_path_factory.mktemp("cache")
    seed_from_default_cache(cache, OnnxSentenceEmbedder.FILE)
    return cache


@pytest.fixture(scope="session")
def home_template(
    tmp_path_factory: pytest.TempPathFactory, trained_models_dir: Path, embedder_cache: Path
) -> Path:
    """A TELLER_HOME with the default knowledge base, and the toy model's policy calibrated."""
    from bot.assistant import build_policy
    from bot.settings import Settings

    home = tmp_path_factory.mktemp("home-template")
    build_policy(Settings(TELLER_HOME=home, TELLER_MODELS=trained_models_dir, TELLER_CACHE=embedder_cache))
    return home


@pytest.fixture()
def teller_env(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    home_template: Path,
    trained_models_dir: Path,
    embedder_cache: Path,
) -> Iterator[Path]:
    """Settings pointing at a fresh copy of the template TELLER_HOME and the trained toy models."""
    from bot.settings import get_settings

    home = tmp_path / "home"
    shutil.copytree(home_template, home)
    monkeypatch.setenv("TELLER_HOME", str(home))
    monkeypatch.setenv("TELLER_MODELS", str(trained_models_dir))
    monkeypatch.setenv("TELLER_CACHE", str(embedder_cache))
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    yield home
    get_settings.cache_clear()


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new, empty database of each kind (the store's contract tests run on both)."""
    if request.param == "sqlite":
        return str(tmp_path / "t.db")
    return str(request.getfixturevalue("fresh_postgresql_url"))


@pytest.fixture()
def store(url: str) -> Iterator[object]:
    """A :class:`bot.storage.Store` on :func:`url`, closed after the test."""
    from bot.storage import Store

    opened = Store(url)
    yield opened
    opened.close()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "postgresql: needs the real PostgreSQL server of tests/pg.py (skipped without its binaries, "
        "failed instead when CI is set); added to every test using its fixtures",
    )


#: The test files that take longest, longest first, in seconds of one worker's time (a full local
#: run with ``--durations=0`` on the 2-core Intel Xeon, 2026-12-03, each worker's shared set-up left
#: out). ``make test`` hands out whole files, in the order collected (``--no-loadscope-reorder``):
#: these go first, so that no worker is left alone on a long file at the end while the other waits.
#: pytest-xdist's default order (files with the most tests first) put the one-test files with the
#: longest tests (the two-replica and crash tests, the real encoder's fine-tune) last: the suite's
#: final minutes ran on one core.
LONGEST_FILES = {
    "test_operator_faq.py": 200,
    "test_cluster.py": 110,
    "test_retrain_serving.py": 95,
    "test_kb_lifecycle.py": 85,
    "test_crash.py": 74,
    "test_retraining.py": 70,
    "test_slow_real_encoder.py": 65,
    "test_slack_delivery.py": 58,
    "test_retrain_cli.py": 53,
    "test_sessions.py": 41,
    "test_web.py": 40,
    "test_cli.py": 35,
    "test_kb_cli.py": 33,
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests using the PostgreSQL fixtures, so ``-m "not postgresql"`` leaves them out, and put
    the :data:`LONGEST_FILES` first (longest first; each file's tests stay together and in order)."""
    for item in items:
        if POSTGRESQL_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.postgresql)
    items.sort(key=lambda item: -LONGEST_FILES.get(item.path.name, 0))  # stable: the rest as collected


@pytest.fixture()
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's rich consoles 200 columns wide for one test, whatever ``COLUMNS`` said when
    ``bot.cli.app`` was imported (they read it once; a test worker may have imported it earlier
    under another width, and a table cut to 80 columns truncates what a test looks for)."""
    cli = importlib.import_module("bot.cli.app")
    for console in (cli.out, cli.err):
        monkeypatch.setattr(console, "_width", 200)  # rich's own field: undone, it is as it was
