"""Measure a retrain on corrections: ``python -m nlu.retrain_demo --models DIR``.

``nlu/data/correction_demo.csv`` holds hand-written customer messages (``text``), their Banking77
intent (``category``) and two unseen variants of each:

- ``close_paraphrase``: the same situation and facts in other words (written without looking at
  any model output);
- ``paraphrase``: a *loose* paraphrase, the same need in a different situation (another shop,
  amount, object), a harder test of generalisation.

The active model classifies the messages; the first 20 it gets wrong become corrections;
``retrain`` trains and gates a candidate; the demo prints accuracy before and after on the
corrected messages, on both kinds of paraphrase (never trained on), on the frozen set, the gate's
decision and the wall time.

``--corrections N`` (N > 20) adds N - 20 more corrections for a timing run: the other demo
messages with their true intents, then their paraphrases (never those of the 20 measured
messages), then the same texts with a greeting or a thank-you added. Nothing is activated
unless ``--activate`` is given and the gate promotes the candidate.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from nlu.classifier import IntentClassifier
from nlu.corrections import Correction
from nlu.data import normalize_text, read_columns, text_key
from nlu.errors import NLUError
from nlu.registry import ModelRegistry
from nlu.retraining import ProgressFn, retrain

DEMO_CSV = Path(__file__).resolve().parent / "data" / "correction_demo.csv"
MEASURED = 20
#: Wrappers for synthetic extra corrections (timing runs only): same intent, slightly new text.
VARIANTS = ("hi, {}", "{} thanks", "hello, {} please", "{}?? help")


@dataclass(frozen=True)
class DemoRow:
    text: str
    category: str
    #: Same situation, other words.
    close: str
    #: Same need, another situation.
    paraphrase: str


def read_demo(path: Path) -> list[DemoRow]:
    """The demo messages (``text,category,close_paraphrase,paraphrase`` CSV)."""
    rows = read_columns(path, ("text", "category", "close_paraphrase", "paraphrase"))
    return [
        DemoRow(
            normalize_text(r["text"]),
            r["category"].strip(),
            normalize_text(r["close_paraphrase"]),
            normalize_text(r["paraphrase"]),
        )
        for r in rows
    ]


def accuracy(classifier: IntentClassifier, texts: Sequence[str], labels: Sequence[str]) -> float:
    predictions = classifier.predict(list(texts))
    return sum(p.intent == y for p, y in zip(predictions, labels, strict=True)) / max(1, len(texts))


def build_corrections(
    chosen: Sequence[DemoRow], others: Sequence[DemoRow], total: int
) -> tuple[list[Correction], dict[str, int]]:
    """``chosen`` as corrections, topped up to ``total`` from ``others`` (see the module docstring)."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    held_out = {text_key(r.paraphrase) for r in chosen} | {text_key(r.close) for r in chosen}
    pools: dict[str, list[tuple[str, str]]] = {
        "misclassified demo messages": [(r.text, r.category) for r in chosen],
        "other demo messages": [(r.text, r.category) for r in others],
        "paraphrases of other demo messages": [(r.paraphrase, r.category) for r in others]
        + [(r.close, r.category) for r in others],
    }
    base = pools["other demo messages"] + pools["paraphrases of other demo messages"]
    pools["greeting/thanks variants of those"] = [(v.format(t), c) for v in VARIANTS for t, c in base]
    picked: list[Correction] = []
    seen: set[str] = set()
    composition: dict[str, int] = {}
    for name, pool in pools.items():
        for text, category in pool:
            if len(picked) >= total:
                break
            key = text_key(text)
            if key in seen or key in held_out:
                continue
            seen.add(key)
            picked.append(Correction(text, category, "retrain_demo", now, f"demo:{len(picked) + 1}"))
            composition[name] = composition.get(name, 0) + 1
    if len(picked) < total:
        raise NLUError(f"the demo file yields only {len(picked)} distinct corrections, not {total}")
    return picked, composition


def stage_printer(timings: dict[str, float]) -> ProgressFn:
    """Print one line per stage per tenth of the work on stderr; note when each stage started."""
    started = time.monotonic()
    reported: dict[str, int] = {}

    def update(stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        timings.setdefault(stage, now - started)
        tenth = 10 * done // max(total, 1)
        if reported.get(stage) != tenth:
            reported[stage] = tenth
            print(f"  [{now - started:6.0f}s] {stage}: {done}/{total}", file=sys.stderr, flush=True)

    return update


def _pct(x: float | None) -> str:
    return "   n/a" if x is None else f"{100 * x:6.2f}%"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m nlu.retrain_demo",
        description="Correct 20 messages the active model gets wrong, retrain, gate, and measure.",
    )
    parser.add_argument("--models", type=Path, default=Path("models"), help="models directory (models/)")
    parser.add_argument("--data", type=Path, default=DEMO_CSV, help="text,category,paraphrase CSV")
    parser.add_argument(
        "--corrections", type=int, default=MEASURED, metavar="N", help="corrections to send (default 20)"
    )
    parser.add_argument("--tolerance", type=float, default=0.5, help="frozen-set points the gate allows")
    parser.add_argument("--activate", action="store_true", help="activate the candidate if promoted")
    parser.add_argument(
        "--repeats", type=int, default=None, help="times each correction counts in training (default: 6)"
    )
    parser.add_argument(
        "--from-scratch",
        action="store_true",
        help="train anew from the base encoder instead of continuing from the active model",
    )
    parser.add_argument(
        "--classify-only", action="store_true", help="only show which demo messages the model gets wrong"
    )
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except NLUError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    wall = time.perf_counter()
    registry = ModelRegistry(args.models)
    active = IntentClassifier.load(registry.active_path())
    rows = read_demo(args.data)
    unknown = sorted({r.category for r in rows} - set(active.labels))
    if unknown:
        raise NLUError(f"{args.data}: unknown intents {', '.join(unknown)}")
    predicted = active.predict([r.text for r in rows])
    wrong = [r for r, p in zip(rows, predicted, strict=True) if p.intent != r.category]
    print(
        f"Active model {active.version} ({active.precision}); {len(rows)} demo messages, {len(wrong)} wrong."
    )
    if args.classify_only:
        for r, p in zip(rows, predicted, strict=True):
            if p.intent != r.category:
                print(f"  {r.category:<40} -> {p.intent:<40} {r.text}")
        return 0
    measured = min(MEASURED, args.corrections)
    if len(wrong) < measured:
        raise NLUError(f"only {len(wrong)} demo messages are misclassified; {measured} are needed")
    chosen = wrong[:measured]
    others = [r for r in rows if r not in chosen]
    corrections, composition = build_corrections(chosen, others, max(args.corrections, measured))
    truth = [r.category for r in chosen]
    measured_sets = {
        f"{measured} corrected messages": [r.text for r in chosen],
        f"{measured} unseen close paraphrases": [r.close for r in chosen],
        f"{measured} unseen loose paraphrases": [r.paraphrase for r in chosen],
    }
    before = {name: accuracy(active, texts, truth) for name, texts in measured_sets.items()}
    print(f"Corrections: {len(corrections)} = " + ", ".join(f"{n} {what}" for what, n in composition.items()))
    mode = "scratch" if args.from_scratch else "continue"
    how = "from scratch" if args.from_scratch else "continuing from the active model"
    print(f"Retraining ({how}; base corpus: the one the active model was trained on) ...", flush=True)

    timings: dict[str, float] = {}
    started = time.perf_counter()
    config = None
    if args.repeats is not None:
        from dataclasses import replace

        from nlu.artifact import read_info
        from nlu.training import TrainConfig

        trained = TrainConfig.from_dict(read_info(ModelRegistry(args.models).active_path()).training)
        config = replace(trained, correction_repeats=args.repeats)
    result = retrain(
        args.models,
        None,
        corrections,
        config=config,
        tolerance_points=args.tolerance,
        progress=stage_printer(timings),
        mode=mode,
    )
    retrain_seconds = time.perf_counter() - started
    candidate = IntentClassifier.load(result.candidate.path)
    d = result.decision

    print()
    print(f"{'':34}{'active':>9}{'candidate':>11}")
    for name, texts in measured_sets.items():
        print(f"{name:34}{_pct(before[name]):>9}{_pct(accuracy(candidate, texts, truth)):>11}")
    print(
        f"{f'frozen set ({d.frozen_size} messages)':34}{_pct(d.active_frozen_accuracy):>9}"
        f"{_pct(d.candidate_frozen_accuracy):>11}   change {d.frozen_change_points:+.2f} points"
    )
    print(
        f"{f'all {d.corrections_size} corrections':34}{_pct(d.active_corrections_accuracy):>9}"
        f"{_pct(d.candidate_corrections_accuracy):>11}"
    )
    print(f"\nGate: {'PROMOTE' if d.promote else 'REFUSE'} (tolerance {d.tolerance_points:g} points)")
    for reason in d.reasons:
        print(f"  - {reason}")
    stages = sorted(timings.items(), key=lambda kv: kv[1])
    spans = [
        f"{name} {int(nxt - at)}s"
        for (name, at), (_, nxt) in zip(stages, [*stages[1:], ("end", retrain_seconds)], strict=True)
    ]
    print(f"\nRetrain wall time: {retrain_seconds / 60:.1f} min ({', '.join(spans)})")
    activated = bool(args.activate and d.promote)
    if activated:
        registry.activate(result.candidate.info.version)
        print("Its answer policy is not calibrated yet: run `teller calibrate` before serving it.")
    state = "activated" if activated else "registered, not activated"
    print(
        f"Candidate {result.candidate.info.version}: {state}. Demo total {time.perf_counter() - wall:.0f}s."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
