"""Advice is for what a customer should do with their money; how a product works gets the information.

The boundary cases (``tests/data/advice_boundary.csv``, close pairs written apart from the example
files) are read by the shipped examples and the real sentence encoder, as the policy reads them.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from bot.exemplars import AdviceProbe, load_advice, load_information
from retrieval.embedder import OnnxSentenceEmbedder

CASES = Path(__file__).parent / "data" / "advice_boundary.csv"


def test_advice_and_information_are_told_apart(embedder_cache: Path) -> None:
    embed = OnnxSentenceEmbedder(embedder_cache).embed
    advice, information = load_advice().embed_with(embed), load_information().embed_with(embed)
    probe = AdviceProbe(advice, information)
    with CASES.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    wants_advice = np.array([r["expected"] == "advice" for r in rows])
    said_advice = probe.probability(embed([r["text"] for r in rows])) >= 0.5
    assert len(rows) >= 60 and wants_advice.sum() >= 30
    # Measured: 69 of 70 right, every information question kept (see bot.exemplars).
    assert (said_advice == wants_advice).mean() >= 0.95
    assert not said_advice[~wants_advice].any(), [
        r["text"] for r, s in zip(rows, said_advice, strict=True) if s
    ]
    named = probe.probability(
        embed(["how do you work out the interest I earn on my savings", "should I buy shares in Tesla"])
    )
    assert named[0] < 0.5 < named[1]
    # Scored as scikit-learn's predict_proba scores the same fit (float32), to rounding.
    from sklearn.linear_model import LogisticRegression

    vectors = embed([r["text"] for r in rows])
    x = np.concatenate([advice.vectors, information.vectors])
    y = np.r_[np.ones(len(advice.vectors)), np.zeros(len(information.vectors))]
    model = LogisticRegression(C=AdviceProbe.C, max_iter=2000, class_weight="balanced").fit(x, y)
    expected = model.predict_proba(vectors)[:, 1]
    assert probe.fitted and np.allclose(probe.probability(vectors), expected, rtol=0, atol=1e-6)


def test_the_fit_is_kept_in_the_cache_and_read_back_without_fitting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.exemplars import ExemplarSet

    rng = np.random.default_rng(0)
    advice = ExemplarSet(["a"] * 12, ["advice"] * 12, {}, rng.normal(1.0, 1.0, (12, 8)).astype(np.float32))
    information = ExemplarSet(["i"] * 15, ["information"] * 15, {}, rng.normal(-1.0, 1.0, (15, 8)))
    queries = rng.normal(0.0, 1.5, (20, 8)).astype(np.float32)
    fitted = AdviceProbe(advice, information, tmp_path / "cache")
    [stored] = (tmp_path / "cache").glob("advice-probe-*.npz")
    assert stored.stat().st_mode & 0o777 == 0o644
    expected = fitted.probability(queries)
    assert 0 < expected.min() < 0.5 < expected.max() < 1

    import sklearn.linear_model

    def no_fit(*args: object, **kwargs: object) -> None:
        raise AssertionError("fitted again although the cache holds the fit")

    with monkeypatch.context() as patch:
        patch.setattr(sklearn.linear_model, "LogisticRegression", no_fit)
        again = AdviceProbe(advice, information, tmp_path / "cache")
    assert np.array_equal(again.probability(queries), expected)

    # Other examples are another fit, and a damaged file is fitted again and rewritten.
    other = ExemplarSet(["a"] * 12, ["advice"] * 12, {}, advice.vectors[::-1].copy())
    AdviceProbe(other, information, tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("advice-probe-*.npz"))) == 2
    whole = stored.read_bytes()
    for damaged in (b"not a numpy file", b"", whole[: len(whole) // 2], whole[:-30] + b"\0" * 30):
        stored.write_bytes(damaged)
        probe = AdviceProbe(advice, information, tmp_path / "cache")
        assert np.array_equal(probe.probability(queries), expected)
        assert np.load(stored)["weights"].shape == (8,)
    assert not list((tmp_path / "cache").glob(".*"))  # no staging file left behind

    # Only the newest few fits are kept.
    for n in range(AdviceProbe.CACHE_KEEP + 3):
        more = ExemplarSet(["a"] * 12, ["advice"] * 12, {}, advice.vectors + np.float32(n + 1))
        AdviceProbe(more, information, tmp_path / "cache")
    assert len(list((tmp_path / "cache").glob("advice-probe-*.npz"))) == AdviceProbe.CACHE_KEEP


def test_without_examples_the_probe_never_vetoes_advice() -> None:
    from bot.exemplars import ExemplarSet

    empty = ExemplarSet([], [], {})
    assert AdviceProbe(empty, empty).probability(np.zeros((2, 4))).tolist() == [1.0, 1.0]


def test_advice_asks_in_so_many_words_what_to_do() -> None:
    """Every advice example and boundary advice request asks for a recommendation, a judgement, a
    forecast or a choice in its words; requests to do something and information questions do not."""
    from bot.exemplars import asks_what_to_do

    with CASES.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    advice = load_advice().texts + [r["text"] for r in rows if r["expected"] == "advice"]
    assert [t for t in advice if not asks_what_to_do(t)] == []
    boundary_information = [r["text"] for r in rows if r["expected"] != "advice"]
    assert [t for t in boundary_information if asks_what_to_do(t)] == []
    information = load_information().texts
    assert sum(asks_what_to_do(t) for t in information) <= 2, [t for t in information if asks_what_to_do(t)]
    for request in (
        "borrow money for a car",
        "put cash in my account",
        "get some euros before I fly out",
        "What rate will I go onto when my 5-year fix runs out?",
        "lost or stolen card",
        "is my card lost or has it been stolen? I can't tell",
        # A reviewer's: cue-like words that ask no advice.
        "what's the best rate you offer on savings",
        "should I receive a letter about my ISA",
        "would you be able to send me a statement",
        "do you think you could reset my password",
        "can I send money to my Wise account",
        "I need the remittance advice for a payment",
        "I sent money to the wrong account by mistake",
        "will my overdraft limit increase automatically",
        "can I add a tip when I pay by card",
    ):
        assert not asks_what_to_do(request), request
    for asking in (
        "pension or ISA?",
        "stocks to buy now",
        "will interest rates come down next year",
        # A reviewer's: advice asked without the first list's words.
        "shouldn't I just pay off my card first?",
        "shouldn\u2019t I overpay instead",
        "ISA vs pension for a 30 year old",
        "help me decide between a growth fund and a conservative fund",
        "fix for 2 or 5 years? I'm not sure which",
        "reccomend me a savings acount",
        "do you expect rates to fall",
        "thoughts on premium bonds?",
        "what's the best rate for me given I might need the money next year",
    ):
        assert asks_what_to_do(asking), asking
