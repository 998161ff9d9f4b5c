"""Corpora vendored with Teller, with their licences.

- ``banking77/train.csv``: Banking77 (PolyAI), 10,003 online-banking queries in 77 intents.
  CC BY 4.0; Casanueva et al. 2020, "Efficient Intent Detection with Dual Sentence Encoders".
  Only the train split is here: the test split is never used for training or tuning.
- ``clinc150/oos_dev.csv``: out-of-scope queries from CLINC150 (train and validation splits of its
  out-of-scope set, and validation queries of non-finance domains). CC BY 3.0; Larson et al. 2019,
  "An Evaluation Dataset for Intent Classification and Out-of-Scope Prediction".
"""

from __future__ import annotations

from pathlib import Path

CORPORA_DIR = Path(__file__).resolve().parent
BANKING77_TRAIN = CORPORA_DIR / "banking77" / "train.csv"
CLINC150_OOS_DEV = CORPORA_DIR / "clinc150" / "oos_dev.csv"
