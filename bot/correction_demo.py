"""Measure corrections end to end: ``python -m bot.correction_demo [--models DIR]``.

What an operator does, through Teller's own services, on a scratch copy of Teller (a temporary
``TELLER_HOME`` with the starter knowledge base; the models directory is only read, the retrain's
candidate goes to a temporary one):

1. **A log.** Customers' messages are answered and stored: ``bot/data/correction_log_demo.csv``
   (270 messages written by hand for Teller, independently of Banking77's test split, which is
   never used: for each of the 20 needs below, the ways other customers put it, and some messages
   of neighbouring intents), plus every other message of ``nlu/data/correction_demo.csv`` with its
   two paraphrases (the demo's rows not measured), shuffled.
2. **One correction each.** The active model's first 20 mistakes among the hand-written messages of
   ``nlu/data/correction_demo.csv`` (as in ``python -m nlu.retrain_demo``) are asked by a customer,
   flagged by an operator and corrected to their intent in the review queue.
3. **One round of bulk confirmation.** For each correction Teller proposes stored messages likely
   to share the need (:mod:`bot.corrections`); the operator confirms those that do (the log's
   labels stand for the operator's judgement) and rejects the rest, in one decision per correction.
4. **A retrain** on the corrections in force (continuing from the active model), gated, promoted if
   the gate accepts it, and swapped in as a running server would.

Measured on the 20 corrected messages, their unseen close paraphrases and unseen loose paraphrases
(same need, another situation; never in the log, never trained on) and the frozen set: answered
right by the policy (with the corrections in force) before, immediately after the corrections (no
retrain), after the bulk confirmation (no retrain) and after the retrain, and the model alone.

After the retrain, each set also gets why the policy does not answer the messages the new model
reads right (:func:`explain`: the rule that decided, and for a hand-off or a knowledge-base fallback
which bar the intent rule missed: the scope similarity or the confidence), and what the policy would
answer right with the thresholds the previous model was served with: whether a gap between the two
rows of the table comes from the re-calibration or from the policy's own bars.
"""

from __future__ import annotations

import argparse
import csv
import io
import logging
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from bot.assistant import build_core, build_service
from bot.core import Incoming, TellerCore
from bot.errors import TellerError
from bot.exemplars import DATA_DIR
from bot.operators import CLI, Actor
from bot.policy import CORRECTION_RULE, AnswerPolicy, Decision, Route, Signals, Thresholds
from bot.retraining import RetrainRunner
from bot.service import TellerService
from bot.settings import Settings
from nlu import IntentClassifier, ModelRegistry, NLUError
from nlu.data import text_key
from nlu.retrain_demo import DEMO_CSV, MEASURED, DemoRow, read_demo, stage_printer
from nlu.retraining import read_frozen

LOG_CSV = DATA_DIR / "correction_log_demo.csv"
OPERATOR = Actor(CLI, "demo-operator")
COLUMNS = (
    "before",
    "immediately after the correction (no retrain)",
    "after bulk confirmation (no retrain)",
    "after retrain",
)


@dataclass
class Column:
    """One moment of the demonstration: shares answered right, by the policy and by the model alone."""

    policy: dict[str, float | None] = field(default_factory=dict)
    model: dict[str, float | None] = field(default_factory=dict)


def read_log(path: Path) -> list[tuple[str, str]]:
    with path.open(encoding="utf-8", newline="") as handle:
        return [(row["text"].strip(), row["category"].strip()) for row in csv.DictReader(handle)]


def answered_right(policy: AnswerPolicy, decision: Decision, label: str) -> bool:
    """The reply answers ``label``: its intent's answer, or a knowledge-base entry filed under it."""
    if decision.route is Route.INTENT:
        return decision.intent == label
    if decision.route is Route.FAQ and decision.kb_id and decision.kb_id in policy.kb:
        return policy.kb.get(decision.kb_id).intent == label
    return False


def policy_share(policy: AnswerPolicy, texts: Sequence[str], labels: Sequence[str]) -> float:
    decisions = policy.answer_many(list(texts))
    right = sum(answered_right(policy, d, y) for d, y in zip(decisions, labels, strict=True))
    return right / max(1, len(texts))


def model_share(classifier: IntentClassifier, texts: Sequence[str], labels: Sequence[str]) -> float:
    predictions = classifier.predict(list(texts))
    return sum(p.intent == y for p, y in zip(predictions, labels, strict=True)) / max(1, len(texts))


def measure(
    policy: AnswerPolicy | None, classifier: IntentClassifier, sets: dict[str, tuple[list[str], list[str]]]
) -> Column:
    column = Column()
    for name, (texts, labels) in sets.items():
        column.policy[name] = policy_share(policy, texts, labels) if policy is not None else None
        column.model[name] = model_share(classifier, texts, labels)
    return column


@dataclass
class Explained:
    """Of a set's messages, how many the classifier reads right, how many of those the policy answers
    right (with its thresholds, and with ``other`` thresholds), and why it does not answer the rest."""

    total: int
    model_right: int
    answered: int
    answered_other: int
    reasons: Counter[str]


#: Why the policy does not answer a message its classifier reads right (see :func:`explain`).
OUT_OF_SCOPE = "out of scope (similarity to the nearest training example below the bar)"
OUT_OF_SCOPE_UNSURE = "out of scope, and not answered in scope either (close runner-up or low confidence)"
LOW_CONFIDENCE = "confidence below the intent bar"
RUNNER_UP = "asked back (close runner-up)"
KB_ENTRY = "answered by a knowledge-base entry of another intent"


def _reason(policy: AnswerPolicy, s: Signals, decision: Decision, label: str, t: Thresholds) -> str:
    features = s.features()
    if decision.rule == "clarify":
        return RUNNER_UP
    if decision.rule in ("handoff", "suggest", "best_entry"):  # fallbacks: the intent rule did not hold
        if features["scope"] < t.in_scope:
            in_scope = policy.decide(s, replace(t, in_scope=-1.0))  # the scope bar lifted
            return OUT_OF_SCOPE if answered_right(policy, in_scope, label) else OUT_OF_SCOPE_UNSURE
        if features["p1"] < t.intent:
            return LOW_CONFIDENCE
    if decision.route is Route.FAQ:
        return KB_ENTRY
    return decision.rule


def explain(
    policy: AnswerPolicy, texts: Sequence[str], labels: Sequence[str], other: Thresholds | None = None
) -> Explained:
    """Why ``policy`` does not answer right the messages its classifier reads right: the rule that
    decided (for a hand-off or the best-entry fallback, the bar the intent rule missed: scope first,
    then confidence; below the scope bar, whether it would answer right without that bar), counted;
    and how many it would answer right with ``other`` thresholds."""
    signals = policy.with_corrections(policy.signals(list(texts)))
    t = policy.thresholds
    assert t is not None
    model_right = answered = answered_other = 0
    reasons: Counter[str] = Counter()
    for s, label in zip(signals, labels, strict=True):
        decision = policy.decide(s)
        if other is not None and answered_right(policy, policy.decide(s, other), label):
            answered_other += 1
        if answered_right(policy, decision, label):
            answered += 1
        if s.prediction.intent != label:
            continue
        model_right += 1
        if not answered_right(policy, decision, label):
            reasons[_reason(policy, s, decision, label, t)] += 1
    return Explained(len(signals), model_right, answered, answered_other, reasons)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f} %"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bot.correction_demo",
        description="One correction per need, a round of bulk confirmation from the log, a retrain.",
    )
    parser.add_argument("--models", type=Path, default=Path("models"), help="models directory (models/)")
    parser.add_argument("--cache", type=Path, default=None, help="TELLER_CACHE (default: the usual one)")
    parser.add_argument("--log", type=Path, default=LOG_CSV, help="hand-written log messages (text,category)")
    parser.add_argument("--no-retrain", action="store_true", help="stop after the bulk confirmation")
    parser.add_argument("--seed", type=int, default=7, help="order of the log")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="keep the scratch Teller and the candidate here",
    )
    args = parser.parse_args(argv)
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)  # training forks workers: no buffered line twice
    try:
        return _run(args)
    except (NLUError, TellerError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _scratch_models(models: Path, root: Path) -> Path:
    """A models directory holding the active version (linked, only read) and room for a candidate."""
    source = ModelRegistry(models).active_path()
    scratch = root / "models"
    (scratch / "intent").mkdir(parents=True)
    (scratch / "intent" / source.name).symlink_to(source.resolve(), target_is_directory=True)
    ModelRegistry(scratch).activate(source.name)
    return scratch


def _run(args: argparse.Namespace) -> int:
    wall = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="teller-correction-demo-") as tmp:
        root = Path(tmp) if args.workdir is None else args.workdir
        if args.workdir is not None:
            root.mkdir(parents=True)
        cache = args.cache or Settings().cache_dir
        settings = Settings.model_validate(
            {
                "TELLER_HOME": root / "home",
                "TELLER_MODELS": _scratch_models(args.models, root),
                "TELLER_CACHE": cache,
                "TELLER_OPERATORS": "",
                "TELLER_RETRAIN_IN": "serve",
            }
        )
        print("Building a scratch Teller (starter knowledge base, the active model) ...", flush=True)
        # The scratch Teller has no ops channel by design: its handoffs are not news, and their
        # warnings (Python's last-resort handler, unstructured) would land in the report.
        quiet = logging.getLogger("bot.service")
        level = quiet.level
        quiet.setLevel(logging.ERROR)
        core = build_core(settings)
        service = build_service(settings, core)
        try:
            return _demo(args, settings, core, service, wall)
        finally:
            quiet.setLevel(level)
            service.close()
            core.close()
            if args.workdir is None:
                shutil.rmtree(root / "models", ignore_errors=True)


def _demo(
    args: argparse.Namespace, settings: Settings, core: TellerCore, service: TellerService, wall: float
) -> int:
    assert service.ops is not None and service.ops.retrainer is not None
    review = service.ops.review
    policy = core.policy
    active = policy.classifier
    rows = read_demo(DEMO_CSV)
    predicted = active.predict([r.text for r in rows])
    wrong = [r for r, p in zip(rows, predicted, strict=True) if p.intent != r.category]
    if len(wrong) < MEASURED:
        raise NLUError(f"only {len(wrong)} demo messages are misclassified; {MEASURED} are needed")
    chosen: list[DemoRow] = wrong[:MEASURED]
    truth = [r.category for r in chosen]
    frozen = read_frozen(active.path)
    sets = {
        f"{MEASURED} corrected messages": ([r.text for r in chosen], truth),
        f"{MEASURED} unseen close paraphrases": ([r.close for r in chosen], truth),
        f"{MEASURED} unseen loose paraphrases": ([r.paraphrase for r in chosen], truth),
        f"frozen set ({len(frozen)} messages)": ([e.text for e in frozen], [e.label for e in frozen]),
    }
    print(
        f"Active model {active.version}: {len(wrong)} of {len(rows)} demo messages misread, "
        f"{MEASURED} corrected."
    )
    columns = [measure(policy, active, sets)]
    former = policy.thresholds

    # 1. The log: what customers said, answered and stored.
    held_out = {text_key(t) for r in chosen for t in (r.text, r.close, r.paraphrase)}
    log = [(t, c) for t, c in read_log(args.log) if text_key(t) not in held_out]
    others = [r for r in rows if r not in chosen]
    log += [
        (t, r.category)
        for r in others
        for t in (r.text, r.close, r.paraphrase)
        if text_key(t) not in held_out
    ]
    random.Random(args.seed).shuffle(log)
    truth_of = {text_key(t): c for t, c in log}
    for i, (text, _) in enumerate(log):
        service.handle(Incoming("web", f"log-{i}", f"log-{i}", None, text))
    print(f"Log: {len(log)} customer messages answered and stored.", flush=True)

    # 2. One correction per need: asked, flagged, corrected in the review queue.
    corrections: list[int] = []
    for i, row in enumerate(chosen):
        reply = service.handle(Incoming("web", f"asker-{i}", f"asker-{i}", None, row.text))
        item = service.ops.flag(reply.message_id, "wrong answer", OPERATOR)
        assert item is not None  # a typed question's answer is always filed
        resolution = review.choose(item.id, row.category, OPERATOR)
        assert resolution.correction is not None
        corrections.append(resolution.correction.id)
    policy = core.policy
    columns.append(measure(policy, policy.classifier, sets))
    captured = _captured(core, [t for t, _ in log], truth_of)
    print(
        f"Corrections: {len(corrections)}; log messages answered by a correction of another "
        f"intent: {captured}."
    )

    # 3. One round of bulk confirmation: per correction, confirm the proposals that share the need.
    proposed = confirmed = 0
    for correction_id, row in zip(corrections, chosen, strict=True):
        proposals = review.propose(correction_id)
        confirm = [p.id for p in proposals if truth_of.get(text_key(p.text)) == row.category]
        reject = [p.id for p in proposals if p.id not in set(confirm)]
        review.decide_proposals(confirm, reject, OPERATOR)
        proposed += len(proposals)
        confirmed += len(confirm)
    misread = active.predict([t for t, _ in log])
    needs = {r.category for r in chosen}
    available = sum(1 for (t, c), p in zip(log, misread, strict=True) if c in needs and p.intent != c)
    policy = core.policy
    columns.append(measure(policy, policy.classifier, sets))
    in_force = [c for c in review.corrections() if c.label]
    print(
        f"Proposals: {proposed} made, {confirmed} confirmed, {proposed - confirmed} rejected "
        f"({available} log messages shared one of the needs and were misread); "
        f"{len(in_force)} corrections in force.",
        flush=True,
    )

    # 4. The retrain, gated; promoted and swapped in as a running server would.
    outcome = None
    explained: dict[str, Explained] = {}
    if not args.no_retrain:
        print("Retraining (continuing from the active model) ...", flush=True)
        timings: dict[str, float] = {}
        started = time.perf_counter()
        runner = service.ops.retrainer
        outcome = runner.run(stages=stage_printer(timings)) if isinstance(runner, RetrainRunner) else None
        minutes = (time.perf_counter() - started) / 60
        if outcome is None or outcome.result is None:
            print(f"Retrain failed: {outcome.message if outcome else 'no runner'}")
            columns.append(Column())
        else:
            result = outcome.result
            candidate = IntentClassifier.load(result.candidate.path)
            served = core.policy if outcome.promoted else None
            columns.append(measure(served, candidate, sets))
            d = result.decision
            print(f"Retrain: {minutes:.1f} min; gate: {'PROMOTE' if d.promote else 'REFUSE'}")
            for reason in d.reasons:
                print(f"  - {reason}")
            if served is not None:
                explained = {name: explain(served, *sets[name], other=former) for name in sets}
    _table(sets, columns)
    if explained:
        _explanations(explained)
    print(f"\nDemo total {(time.perf_counter() - wall) / 60:.1f} min.")
    return 0


def _captured(core: TellerCore, texts: list[str], truth_of: dict[str, str]) -> int:
    """Messages answered by an operator's correction that names another intent than theirs."""
    wrong = 0
    for text, decision in zip(texts, core.policy.answer_many(texts), strict=True):
        if decision.rule == CORRECTION_RULE and decision.intent != truth_of.get(text_key(text)):
            wrong += 1
    return wrong


def _explanations(explained: dict[str, Explained]) -> None:
    print("\nAfter the retrain, what the new model reads right and Teller does not answer right:")
    for name, e in explained.items():
        kept = e.model_right - sum(e.reasons.values())
        why = "; ".join(f"{reason}: {n}" for reason, n in e.reasons.most_common()) or "none missed"
        print(
            f"- {name}: model right {e.model_right}/{e.total}, Teller right on {kept} of them ({why}); "
            f"Teller right {e.answered}/{e.total}, "
            f"with the previous model's thresholds {e.answered_other}/{e.total}"
        )


def _table(sets: dict[str, tuple[list[str], list[str]]], columns: list[Column]) -> None:
    shown = COLUMNS[: len(columns)]
    print()
    print("| answered right | " + " | ".join(shown) + " |")
    print("|---|" + "---|" * len(shown))
    for name in sets:
        print(f"| {name} | " + " | ".join(_pct(c.policy.get(name)) for c in columns) + " |")
    for name in sets:
        print(f"| model alone: {name} | " + " | ".join(_pct(c.model.get(name)) for c in columns) + " |")


if __name__ == "__main__":
    raise SystemExit(main())
