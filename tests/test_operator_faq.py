"""A bank's own FAQ, measured as a bank meets it: four fictional banks' FAQ files (one phrasing per
entry) added on top of the shipped starter, and their customers' paraphrased questions answered.

These run on the default model that ``make test`` trains (``models/``); the floors sit a few points
under the figures measured in the session that set them (README, "How well a bank's FAQ answers").
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.faq_eval import evaluate_operator_faq
from bot.settings import Settings, get_settings
from nlu import ModelRegistry
from tests.conftest import seed_from_default_cache

DATA = Path(__file__).parent / "data" / "operator_faq"
MODELS = Path(__file__).resolve().parent.parent / "models"


@pytest.fixture()
def default_model_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, embedder_cache: Path) -> Settings:
    if ModelRegistry(MODELS).active_version() is None:
        pytest.skip("no default model in models/ (make test trains it first)")
    _seed_calibration_signals(embedder_cache)
    monkeypatch.setenv("TELLER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TELLER_MODELS", str(MODELS))
    monkeypatch.setenv("TELLER_CACHE", str(embedder_cache))
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


def _seed_calibration_signals(cache: Path) -> None:
    """Copy the calibration messages' signals that ``make test``'s ``teller train`` left in Teller's
    default cache (``calibration-<key>.pkl``, keyed by the model version, the retrieval encoder and
    the calibration data) into the session's cache: the first bank's re-fit reads them instead of
    running both encoders over about 2,700 messages again (20-30 s). A file whose key matches
    nothing here is never read; none copied, they are computed as before."""
    get_settings.cache_clear()
    seed_from_default_cache(cache, "calibration-*.pkl")


@pytest.mark.slow
def test_teller_eval_measures_a_banks_faq(default_model_env: Settings) -> None:
    from tests.test_cli import run

    code, stdout, stderr = run(
        "eval",
        "--kb",
        str(DATA / "harbour_kb.csv"),
        "--questions",
        str(DATA / "harbour_questions.csv"),
        "--json",
    )
    assert code == 0, stderr
    result = json.loads(stdout)
    assert result["questions"] == 245
    assert abs(result["right"] + result["wrong"] + result["handed_off"] - 1) < 1e-9
    assert result["right"] >= RIGHT_FLOOR["harbour"] and result["wrong"] <= WRONG_CEILING["harbour"]
    assert result["retrieval_top5"] >= 0.9
    # Of those handed off, some were offered their entry to choose from first (rule suggest).
    assert SUGGESTED_FLOOR <= result["suggested"] <= result["handed_off"]
    assert result["import_summary"]["superseded"], "the bank's entries supersede starter ones"
    # The real knowledge base was not touched.
    assert not (default_model_env.kb_dir / "calibration.json").exists() or all(
        e["id"] != "safe-deposit-box" for e in map(json.loads, run("kb", "list", "--json")[1].splitlines())
    )


@pytest.mark.slow
def test_a_held_out_banks_faq(default_model_env: Settings) -> None:
    result = evaluate_operator_faq(default_model_env, DATA / "cedar_kb.csv", DATA / "cedar_questions.csv")
    assert result.questions == 218
    assert result.right >= RIGHT_FLOOR["cedar"] and result.wrong <= WRONG_CEILING["cedar"]
    assert all(o.verdict in ("right", "wrong", "handed_off") for o in result.outcomes)


@pytest.mark.slow
def test_a_third_bank_written_after_the_search_confidence_was_fitted(default_model_env: Settings) -> None:
    """Saltbush Mutual (Australian, 30 entries, 100 questions), written by a helper who used the
    other banks' files for their format only, after :data:`retrieval.knowledge_base.
    DEFAULT_TOP_CONFIDENCE` was fitted: nothing was fitted or chosen on it."""
    result = evaluate_operator_faq(
        default_model_env, DATA / "saltbush_kb.csv", DATA / "saltbush_questions.csv"
    )
    assert result.questions == 100
    assert result.right >= RIGHT_FLOOR["saltbush"] and result.wrong <= WRONG_CEILING["saltbush"]


@pytest.mark.slow
def test_a_fourth_bank_written_by_a_reviewer(default_model_env: Settings) -> None:
    """Rimu Bank (New Zealand, 47 entries, 159 questions), written by a reviewer trying Teller as a
    new bank would, reading only the other files' header lines: one choice since was measured on it
    too (acting on starter overlaps from 0.58, :data:`bot.knowledge.STARTER_SURE_SIMILARITY`)."""
    result = evaluate_operator_faq(default_model_env, DATA / "rimu_kb.csv", DATA / "rimu_questions.csv")
    assert result.questions == 159
    assert result.right >= RIGHT_FLOOR["rimu"] and result.wrong <= WRONG_CEILING["rimu"]
    assert result.suggested >= SUGGESTED_FLOOR
    assert all(o.rule == "suggest" for o in result.outcomes if o.suggested)


#: Measured with the default model (seed 0) on a 2-core machine (README, "How well a bank's own FAQ
#: answers"), 2026-12-02, since the knowledge-base re-fit judges answers by what the bank's entries
#: cover (bot.calibration.entry_coverage): right 66.1 % / 69.3 % / 61 % / 62.9 % (Harbour & Vale /
#: Cedar Mutual / Saltbush / Rimu), wrong 8.2 % / 4.6 % / 13 % / 9.4 %; the floors and ceilings sit
#: a few points away (a model trained with another seed moved these by 2-3 points before). Before
#: that change: 62.4 / 63.8 / 53 / 47.2 % right, 11.4 / 8.3 / 20 / 18.2 % wrong.
RIGHT_FLOOR = {"harbour": 0.61, "cedar": 0.64, "saltbush": 0.55, "rimu": 0.57}
WRONG_CEILING = {"harbour": 0.12, "cedar": 0.09, "saltbush": 0.17, "rimu": 0.14}
#: Offered their entry among the best three when none was sure enough to answer (rule ``suggest``),
#: measured 2026-12-03 on a 2-core Intel Xeon: 13.1 % (Harbour & Vale), 13.8 % (Rimu).
SUGGESTED_FLOOR = 0.10
