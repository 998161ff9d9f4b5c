"""Measure the overlap checks of :mod:`bot.knowledge` on two banks' FAQ files, hand-labelled.

``python -m bot.overlap_eval [--models DIR] [--cache DIR]`` checks each entry of
``tests/data/operator_faq/{harbour,cedar}_kb.csv`` against the Lumen starter knowledge base and the
active model's intents, exactly as ``teller kb add`` would (:meth:`KnowledgeAdmin.check`), and
scores the overlaps found against ``overlap_labels.csv`` (per bank entry, the starter entries that
are truly the same topic: customers asking the new entry's question should get its answer
instead). Prints precision and recall of the sure tier (acted on by default) and of sure plus
possible (reported). Nothing outside a temporary directory is written.
"""

from __future__ import annotations

import argparse
import csv
import os
import tempfile
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "operator_faq"
BANKS = ("harbour", "cedar")


def _labels() -> set[tuple[str, str, str]]:
    with (DATA / "overlap_labels.csv").open(encoding="utf-8", newline="") as handle:
        return {
            (row["bank"], row["entry"], existing.strip())
            for row in csv.DictReader(handle)
            for existing in row["overlaps"].split("|")
            if existing.strip()
        }


def _score(found: set[tuple[str, str, str]], truth: set[tuple[str, str, str]]) -> str:
    hits = len(found & truth)
    precision = hits / len(found) if found else 1.0
    recall = hits / len(truth)
    return f"P {precision:.2f} R {recall:.2f} ({hits} true of {len(found)} flagged; {len(truth)} true)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="models", help="models directory (default: models)")
    parser.add_argument("--cache", default=None, help="encoder cache (default: a temporary one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="teller-overlaps-") as home:
        os.environ["TELLER_HOME"] = home
        os.environ["TELLER_MODELS"] = str(Path(args.models).resolve())
        os.environ["TELLER_KB_STARTER"] = "lumen"
        if args.cache:
            os.environ["TELLER_CACHE"] = str(Path(args.cache).resolve())
        from bot.assistant import build_policy, open_kb
        from bot.knowledge import KnowledgeAdmin
        from bot.settings import get_settings
        from retrieval.loaders import load_entries

        settings = get_settings().model_copy(update={"kb_replication": "off"})  # an experiment
        kb = open_kb(settings)
        admin = KnowledgeAdmin(
            kb, build_policy(settings, kb=kb, calibrate_if_missing=False, stored_thresholds=False)
        )
        # A bank entry with the very id of a starter entry replaces it (an update), whatever it says.
        labelled = _labels()
        truth = {p for p in labelled if p[1] != p[2]}
        print(f"{len(labelled) - len(truth)} labelled pairs share their id (an import replaces those)")
        sure: set[tuple[str, str, str]] = set()
        possible: set[tuple[str, str, str]] = set()
        for bank in BANKS:
            entries = load_entries(DATA / f"{bank}_kb.csv")
            for overlap in admin.check(entries, kb.entries()):
                if overlap.existing_id is not None:
                    pair = (bank, overlap.entry_id, overlap.existing_id)
                    (sure if overlap.sure else possible).add(pair)
        which: str | None
        for which in (*BANKS, None):

            def keep(pairs: set[tuple[str, str, str]], bank: str | None = which) -> set[tuple[str, str, str]]:
                return {p for p in pairs if bank is None or p[0] == bank}

            name = which or "both"
            print(f"{name:8} sure:            {_score(keep(sure), keep(truth))}")
            print(f"{name:8} sure + possible: {_score(keep(sure | possible), keep(truth))}")
        for pair in sorted(sure - truth):
            print("false (sure):", *pair)
        for pair in sorted(truth - sure - possible):
            print("missed:", *pair)


if __name__ == "__main__":
    main()
