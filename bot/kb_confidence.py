"""Fit :data:`retrieval.knowledge_base.DEFAULT_TOP_CONFIDENCE`: how likely a search's best entry is right.

``python -m bot.kb_confidence`` imports the Harbour & Vale dev FAQ on top of the knowledge base in
use (a scratch copy, as ``teller eval --kb`` does), searches with each of its customer questions
(label: is the best entry the question's?) and each CLINC150 out-of-scope dev query (label: never),
fits a logistic regression (scikit-learn, C = 1) on the best hit's features
(:meth:`retrieval.knowledge_base.TopConfidence.features`: its evidence, its lead over the others by
each kind of evidence, the classifier agreeing it answers the predicted intent), and prints the weights
and, for each dev bank, the share of its questions whose best entry is right and clears the
confidence bar that lets through 0.5 % of the out-of-scope queries (the Cedar Mutual and Saltbush
Mutual sets are kept out of the fit). Development tool: nothing at run time calls it.
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np

from bot.settings import Settings, get_settings
from nlu.corpora import CLINC150_OOS_DEV
from retrieval.knowledge_base import TopConfidence
from retrieval.loaders import load_entries

DEV = Path(__file__).resolve().parents[1] / "tests" / "data" / "operator_faq"
FIT_BANK = "harbour"
#: Kept out of the fit: Cedar Mutual (looked at when the features were chosen) and Saltbush Mutual
#: (written after the fit, never looked at before it).
HELD_OUT_BANKS = ("cedar", "saltbush")
OOS_SHARE = 0.005


def best_hits(settings: Settings, bank: str, oos: list[str]) -> tuple[np.ndarray, np.ndarray, int]:
    """Features of the best hit (rows: the bank's questions, then ``oos``), whether it is right, and
    how many questions the bank has."""
    from bot.faq_eval import imported

    entries = load_entries(DEV / f"{bank}_kb.csv")
    with open(DEV / f"{bank}_questions.csv", encoding="utf-8") as f:
        questions = [(r["text"], r["kb_id"]) for r in csv.DictReader(f)]
    with imported(settings, entries) as (policy, _):
        signals = policy.signals([q for q, _ in questions] + oos)
    x = np.array(
        [TopConfidence.features(s.hits, s.prediction.intent, s.prediction.confidence) for s in signals]
    )
    right = np.array(
        [i < len(questions) and s.hits[0].entry.id == questions[i][1] for i, s in enumerate(signals)]
    )
    return x, right, len(questions)


def main() -> None:
    from sklearn.linear_model import LogisticRegression

    logging.disable(logging.INFO)
    settings = get_settings()
    with open(CLINC150_OOS_DEV, encoding="utf-8") as f:
        oos = [r["text"] for r in csv.DictReader(f)]
    data = {bank: best_hits(settings, bank, oos) for bank in (FIT_BANK, *HELD_OUT_BANKS)}
    x, y, _ = data[FIT_BANK]
    model = LogisticRegression(C=1.0, max_iter=5000).fit(x, y)
    weights = [round(float(w), 2) for w in model.coef_[0]]
    confidence = TopConfidence(round(float(model.intercept_[0]), 2), *weights)
    print(confidence)
    for bank, (bx, by, n) in data.items():
        p = model.predict_proba(bx)[:, 1]
        out = np.arange(len(p)) >= n
        bar = float(np.quantile(p[out], 1 - OOS_SHARE))
        answered = (p >= bar) & ~out
        oos_share = ((p >= bar) & out).sum() / out.sum()
        right, wrong = (answered & by).sum() / n, (answered & ~by).sum() / n
        print(
            f"{bank}: best entry right {by[:n].mean():.1%}; confidence >= {bar:.3f} "
            f"(out-of-scope {oos_share:.2%}): right {right:.1%}, wrong {wrong:.1%}"
        )


if __name__ == "__main__":
    main()
