"""Commands for the models: train, calibrate, eval, bench, models list / activate."""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import asdict, replace
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Column, Table

from bot.cli.app import (
    EncodingOpt,
    JsonOpt,
    ModelOpt,
    app,
    emit_json,
    err,
    load_classifier,
    models_app,
    out,
    registry,
)
from bot.cli.operations import local_actor
from bot.errors import InputError
from bot.progress import progress_reporter
from bot.settings import get_settings
from nlu import NLUError
from nlu.corpora import BANKING77_TRAIN
from nlu.typos import DEFAULT_SEED, add_typos

log = logging.getLogger("teller.cli")


@app.command()
def train(
    data: Annotated[
        list[Path] | None,
        typer.Option("--data", help="Training CSV (text,category); repeat to combine. Replaces Banking77."),
    ] = None,
    add: Annotated[
        list[Path] | None,
        typer.Option(
            "--add", help="CSV added to the default corpus (or to --data); later files win conflicts."
        ),
    ] = None,
    epochs: Annotated[float, typer.Option(min=0.01, help="Fine-tuning epochs.")] = 2.0,
    seed: Annotated[int, typer.Option(help="Random seed; same seed and data give the same model.")] = 0,
    dev_fraction: Annotated[
        float, typer.Option(min=0.0, max=0.5, help="Stratified share held out as dev split.")
    ] = 0.1,
    batch_size: Annotated[int, typer.Option(min=2, help="Training batch size.")] = 32,
    learning_rate: Annotated[float, typer.Option(min=0.0, help="Peak learning rate.")] = 5e-5,
    activate: Annotated[bool, typer.Option(help="Make the new model the active one.")] = True,
    if_missing: Annotated[
        bool, typer.Option("--if-missing", help="Do nothing when a model is already active.")
    ] = False,
    encoding: EncodingOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Fine-tune the intent classifier on the CPU, calibrate its answer policy, save and activate it."""
    from bot.assistant import build_policy, calibrate_policy
    from nlu.data import load_corpus
    from nlu.pipeline import train_and_register
    from nlu.training import TrainConfig

    settings = get_settings()
    models = registry(settings)
    if if_missing and models.active_version() is not None:
        try:
            models.active_path()
            err.print(f"A model is already active: {models.active_version()} (skipping training).")
            return
        except NLUError:
            pass
    files = list(data or [BANKING77_TRAIN]) + list(add or [])
    corpus = load_corpus(files, encoding=encoding)
    config = TrainConfig(
        epochs=epochs,
        seed=seed,
        dev_fraction=dev_fraction,
        batch_size=batch_size,
        learning_rate=learning_rate,
        head_learning_rate=learning_rate,
    )
    err.print(
        f"Training on {len(corpus)} examples, {len(corpus.labels)} intents "
        f"({corpus.duplicates_dropped} duplicates dropped, "
        f"{corpus.conflicts_resolved} relabelled by later files)."
    )
    log.info(
        "train_started",
        extra={
            "fields": {
                "examples": len(corpus),
                "intents": len(corpus.labels),
                "data_hash": corpus.content_hash(),
                "config": config.to_dict(),
            }
        },
    )
    started = time.perf_counter()
    try:
        with progress_reporter(err, enabled=not as_json) as progress:
            result = train_and_register(corpus, models, config, progress=progress, activate=False)
        policy = None
        if result.info.dev_size:
            if not as_json:
                err.print("Calibrating the answer policy on the dev split and out-of-scope queries...")
            policy = calibrate_policy(
                build_policy(
                    settings, result.info.version, calibrate_if_missing=False, stored_thresholds=False
                ),
                result.path,
            )
        if activate:
            from bot.assistant import activate_model

            activate_model(settings, result.info.version, actor=str(local_actor()))
    except KeyboardInterrupt:
        err.print("Training interrupted; the active model is unchanged.")
        raise typer.Exit(130) from None
    seconds = time.perf_counter() - started
    info = result.info
    log.info(
        "train_finished",
        extra={"fields": {"version": info.version, "seconds": round(seconds, 1), **info.dev}},
    )
    held_out = policy.calibration.get("held_out", {}) if policy else {}
    if as_json:
        emit_json(
            {
                **asdict(info),
                "path": str(result.path),
                "active": activate,
                "total_seconds": round(seconds, 1),
                "policy": {"thresholds": policy.thresholds.to_dict(), **policy.calibration}
                if policy
                else None,
            }
        )
        return
    out.print(f"Saved model [bold]{info.version}[/bold] at {result.path}" + (" (active)" if activate else ""))
    if info.dev:
        out.print(
            f"Dev split ({info.dev_size} messages): accuracy {info.dev['accuracy']:.2%}, "
            f"macro-F1 {info.dev['macro_f1']:.4f}, ECE {info.dev['ece']:.4f}"
        )
    check = info.precision_check
    if "int8_dev_accuracy" in check:
        out.print(
            f"Serving precision {info.precision}: int8 dev accuracy {check['int8_dev_accuracy']:.2%} "
            f"vs fp32 {check['fp32_dev_accuracy']:.2%}"
        )
    if held_out:
        out.print(
            f"Answer policy (held-out halves of dev + out-of-scope): answered correctly "
            f"{held_out['answered_correctly']:.2%}, out-of-scope recall {held_out['oos_recall']:.2%}, "
            f"false handoff {held_out['false_handoff']:.2%}, clarify {held_out['clarify_rate']:.2%}"
        )
    out.print(f"Took {seconds / 60:.1f} min.")


@app.command()
def calibrate(version: ModelOpt = None, as_json: JsonOpt = False) -> None:
    """Re-fit the answer policy's thresholds for a model (e.g. after changing the knowledge base)."""
    from bot.assistant import build_policy, calibrate_policy

    settings = get_settings()
    policy = build_policy(settings, version, calibrate_if_missing=False, stored_thresholds=False)
    config = calibrate_policy(policy, policy.classifier.path)
    payload = {
        "model": policy.classifier.version,
        "thresholds": config.thresholds.to_dict(),
        **config.calibration,
    }
    if as_json:
        emit_json(payload)
        return
    table = Table("threshold", "value", title=f"Answer policy of {policy.classifier.version}")
    for key, value in config.thresholds.to_dict().items():
        table.add_row(key, f"{value:.3f}")
    out.print(table)
    for key, value in config.calibration["held_out"].items():
        out.print(f"held-out {key.replace('_', ' ')}: {value:.2%}")


@app.command("eval")
def evaluate_cmd(
    data: Annotated[
        Path | None,
        typer.Option(
            "--data", help="Labelled CSV (text,category; category may be oos). Default: the dev split."
        ),
    ] = None,
    version: ModelOpt = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Report directory (default: <TELLER_HOME>/reports/eval-...).")
    ] = None,
    policy_metrics: Annotated[
        bool, typer.Option("--policy/--no-policy", help="Also score the answer policy.")
    ] = True,
    encoding: EncodingOpt = None,
    kb_file: Annotated[
        Path | None,
        typer.Option(
            "--kb",
            help="A bank's FAQ file (CSV/JSONL/Markdown) to import into a copy of the knowledge base, "
            "as `teller kb add` would; needs --questions.",
        ),
    ] = None,
    questions: Annotated[
        Path | None,
        typer.Option(
            "--questions",
            help="CSV text,kb_id: customer questions and the entry that answers each; an empty kb_id: "
            "no entry answers the question (it should be handed off), measured apart.",
        ),
    ] = None,
    typos: Annotated[
        bool,
        typer.Option(
            "--typos",
            help="Put typing mistakes into the messages or questions first (a single-edit mistake in "
            "half of them and, drawn apart, one in a fifth: about 60 % changed; words of 4 letters or "
            "more; nlu.typos), seeded: the same seed gives a message the same mistakes.",
        ),
    ] = False,
    typo_seed: Annotated[
        int | None, typer.Option("--typo-seed", help=f"Seed of --typos (implies it; default {DEFAULT_SEED}).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Classifier metrics (accuracy, macro-F1, per intent, confusions, ECE) and answer-policy metrics;
    with --kb and --questions, how a bank's own FAQ answers its customers (right / wrong / handed off),
    and how often the questions it does not answer (empty kb_id) are answered anyway.
    With --typos, the same with typing mistakes put in (how careless input is read)."""
    if (kb_file is None) != (questions is None):
        raise InputError("--kb and --questions go together")
    seed = typo_seed if typo_seed is not None else DEFAULT_SEED if typos else None
    if kb_file is not None and questions is not None:
        _evaluate_faq(kb_file, questions, as_json, seed)
        return
    from bot.assistant import build_policy
    from bot.calibration import OOS, evaluate_policy
    from nlu.artifact import read_dev_split
    from nlu.data import read_labelled_csv
    from nlu.evaluation import evaluate
    from nlu.report import write_report

    settings = get_settings()
    classifier = load_classifier(settings, version)
    if data is not None:
        examples, source = read_labelled_csv(data, encoding=encoding), str(data)
    else:
        examples, source = read_dev_split(classifier.path), f"dev split of {classifier.version}"
        if not examples:
            raise InputError(f"model {classifier.version} has no dev split; pass --data FILE")
    if seed is not None:
        texts = add_typos([e.text for e in examples], seed=seed)
        examples = [replace(e, text=t) for e, t in zip(examples, texts, strict=True)]
        source += f", typos put in (seed {seed})"
    in_scope = [e for e in examples if e.label != OOS]
    if not in_scope:
        raise InputError(f"{source}: every message is oos; the classifier needs in-scope messages to score")
    metrics, _ = evaluate(classifier, in_scope)
    sections: dict[str, dict[str, Any]] = {}
    if policy_metrics:
        policy = build_policy(settings, version)
        scores, _ = evaluate_policy(policy, [e.text for e in examples], [e.label for e in examples])
        sections["policy"] = scores.to_dict()
    stamp = time.strftime("%Y%m%d-%H%M%S")
    directory = out_dir or settings.reports_dir / f"eval-{classifier.version}-{stamp}"
    context = {"model": classifier.version, "precision": classifier.precision, "data": source}
    files = write_report(metrics, directory, f"Evaluation of {classifier.version}", context, sections)
    log.info(
        "eval_finished",
        extra={"fields": {**context, **metrics.summary(), **sections, "report": str(files.markdown)}},
    )
    if as_json:
        report = {
            "json": str(files.json),
            "markdown": str(files.markdown),
            "confusion_png": str(files.confusion_png),
        }
        emit_json({"context": context, **metrics.to_dict(), **sections, "report": report})
        return
    out.print(
        f"Model {classifier.version} ({classifier.precision}) on {source}: {len(examples)} messages, "
        f"{len(in_scope)} in scope"
    )
    out.print(
        f"classifier: accuracy {metrics.accuracy:.2%}, macro-F1 {metrics.macro_f1:.4f}, ECE {metrics.ece:.4f}"
    )
    if "policy" in sections:
        p = sections["policy"]
        out.print(
            f"policy: answered correctly {p['answered_correctly']:.2%}, out-of-scope recall "
            f"{p['oos_recall']:.2%}, false handoff {p['false_handoff']:.2%}, clarify {p['clarify_rate']:.2%}"
        )
    if metrics.unknown_labels:
        out.print(f"[yellow]Categories the model does not know: {', '.join(metrics.unknown_labels)}[/yellow]")
    table = Table("true intent", "predicted", "count", title="Most confused pairs")
    for c in metrics.confusions:
        table.add_row(c.true, c.predicted, str(c.count))
    out.print(table)
    out.print(f"Report: {files.markdown}\nConfusion matrix: {files.confusion_png}\nJSON: {files.json}")


#: How a question no entry answers was not answered, by the route of the reply.
NOT_ANSWERED_ROUTES = {
    "handoff": "handed off",
    "clarify": "clarified",
    "smalltalk": "small talk",
    "advice": "offered an adviser",
}


def _evaluate_faq(kb_file: Path, questions: Path, as_json: bool, typos: int | None = None) -> None:
    from bot.faq_eval import NO_ENTRY_NOT_ANSWERED, evaluate_operator_faq

    result = evaluate_operator_faq(get_settings(), kb_file, questions, typos)
    if as_json:
        emit_json(result.to_dict(details=True))
        return
    typed = f" (typos put in, seed {typos})" if typos is not None else ""
    if result.questions:
        out.print(
            f"{result.questions} questions about {kb_file.name}{typed}: answered with the bank's entry "
            f"[bold]{result.right:.1%}[/bold], with a wrong entry {result.wrong:.1%}, handed off "
            f"{result.handed_off:.1%} (offered the bank's entry to choose from first: "
            f"{result.suggested:.1%} of all questions)"
        )
        out.print(
            f"retrieval alone: right entry first {result.retrieval_top1:.1%}, "
            f"in the top 5 {result.retrieval_top5:.1%}"
        )
    else:
        out.print(
            f"{result.no_entry_questions} questions about {kb_file.name}{typed}, none naming an entry (every "
            "kb_id is empty): no share answered right, wrong or handed off"
        )
    if result.no_entry_questions:
        routes = Counter(o.route for o in result.outcomes if o.verdict == NO_ENTRY_NOT_ANSWERED)
        ways = ", ".join(f"{NOT_ANSWERED_ROUTES.get(r, r)} {count}" for r, count in routes.most_common())
        out.print(
            f"{result.no_entry_questions} questions no entry answers (kb_id empty): not answered "
            f"[bold]{result.no_entry_not_answered:.1%}[/bold]{f' ({ways})' if ways else ''}, answered "
            f"from the FAQ anyway {result.no_entry_answered:.1%}"
        )
    summary = result.import_summary
    out.print(
        f"import: {summary.get('added', 0)} added, {summary.get('updated', 0)} updated"
        # a file `kb add`ed before: its entries are measured as they are in the knowledge base
        + (f" ({n} in the knowledge base already, as in the file)" if (n := summary.get("unchanged")) else "")
        + ", "
        f"{len(summary.get('superseded', []))} starter entries superseded, {len(summary.get('linked', {}))} "
        "entries answer an intent"
    )
    table = Table("verdict", "question", "expected", "answered with", "rule", title="Not right")
    for o in result.outcomes:
        if o.verdict not in ("right", NO_ENTRY_NOT_ANSWERED):
            verdict = "suggested" if o.suggested else o.verdict.replace("_", " ")
            table.add_row(verdict, escape(o.text[:70]), o.expected or "(none)", o.kb_id or "", o.rule)
    out.print(table)


@app.command()
def bench(
    version: ModelOpt = None,
    precision: Annotated[
        str | None, typer.Option(help="int8 or fp32 (default: the artifact's choice).")
    ] = None,
    threads: Annotated[int | None, typer.Option(min=1, help="Inference threads.")] = None,
    messages: Annotated[int, typer.Option(min=10, help="Messages timed one at a time.")] = 300,
    batch_size: Annotated[int, typer.Option(min=1, help="Batch size for the throughput run.")] = 64,
    kb_entries: Annotated[
        int,
        typer.Option(
            "--kb-entries",
            min=0,
            help="Also measure knowledge-base vector search at this many entries (e.g. 1000000): the index "
            "Teller serves, built in one import of synthetic clustered 384-d sentence-like embeddings "
            "(seed 0); prints index kind and parameters, build seconds, p50/p95 ms of one query at a time "
            "at the depth the KB searches, recall@10 against exact search on 1,000 fresh queries (not "
            "stored vectors) and RSS growth. About 2 minutes and 7 GB at a million; 0 (default) skips it.",
        ),
    ] = 0,
    http: Annotated[
        bool,
        typer.Option(
            help="Also measure end to end through HTTP: a `teller serve` child process on a scratch copy "
            "(the model, precision and threads benchmarked above, a copy of the knowledge base, a new "
            "store), one message at a time with the share of time per stage, then a closed loop of "
            "--http-users customers."
        ),
    ] = True,
    http_users: Annotated[int, typer.Option(min=1, help="Customers of the closed loop.")] = 50,
    http_messages: Annotated[
        int, typer.Option(min=1, help="Messages each closed-loop customer sends, one after another.")
    ] = 20,
    as_json: JsonOpt = False,
) -> None:
    """Latency (p50/p95/p99) of one message, batched throughput, peak memory and load time of the
    classifier; end to end through HTTP (one message at a time with the share of time per stage, and
    a closed loop of concurrent customers); with --kb-entries N, knowledge-base vector search at N
    entries too."""
    from bot.privacy.bench import bench_redaction
    from nlu.artifact import read_dev_split
    from nlu.bench import run_benchmark
    from nlu.data import read_labelled_csv

    settings = get_settings()
    models = registry(settings)
    path = models.path(version) if version else models.active_path()
    texts = [e.text for e in read_dev_split(path)] or [
        e.text for e in read_labelled_csv(BANKING77_TRAIN)[:2000]
    ]
    result = run_benchmark(
        path,
        texts,
        single_messages=messages,
        batch_size=batch_size,
        precision=precision or settings.serving_precision,
        threads=threads or settings.threads,
    )
    kb_search = _bench_kb_search(settings, texts[:messages])
    redaction = bench_redaction()
    http_figures = None
    if http:
        from bot.http_bench import bench_http

        err.print("Starting a scratch `teller serve` for the HTTP figures ...")
        http_figures = bench_http(
            settings,
            texts,
            messages,
            http_users,
            http_messages,
            version=path.name,
            precision=precision,
            threads=threads,
        )
    # Last: its gigabytes of vectors would otherwise count in the model's peak memory.
    kb_scale = _bench_kb_scale(kb_entries) if kb_entries else None
    figures = {**result.to_dict(), "kb_search": kb_search, "redaction_40k": redaction}
    if kb_scale is not None:
        figures["kb_scale"] = kb_scale
    if http_figures is not None:
        figures["http"] = http_figures
    log.info("bench_finished", extra={"fields": figures})
    if as_json:
        emit_json(figures)
        return
    table = Table(
        "measure", "value", title=f"Model {result.version} ({result.precision}, {result.threads} threads)"
    )
    table.add_row("load time", f"{result.load_seconds * 1000:.0f} ms")
    table.add_row(
        "latency p50 / p95 / p99",
        f"{result.latency_ms_p50:.2f} / {result.latency_ms_p95:.2f} / {result.latency_ms_p99:.2f} ms",
    )
    table.add_row(
        "batched throughput", f"{result.throughput_per_s:.0f} messages/s (batch {result.batch_size})"
    )
    table.add_row(
        "peak memory (RSS)", f"{result.peak_rss_mb:.0f} MB ({result.rss_before_load_mb:.0f} MB before load)"
    )
    table.add_row(
        f"KB search p50 / p95 ({kb_search['entries']} entries, {kb_search['vectors']} vectors)",
        f"{kb_search['p50_ms']:.2f} / {kb_search['p95_ms']:.2f} ms (dense + BM25 + fusion; the query is "
        "embedded once per message, for every signal)",
    )
    worst = max((v for k, v in redaction.items() if k != "all"), key=lambda v: v["p50_ms"])
    table.add_row(
        "redaction of 40,000 characters p50 / max",
        f"{redaction['all']['p50_ms']:.1f} / {redaction['all']['max_ms']:.1f} ms over "
        f"{len(redaction) - 1} shapes, hostile ones included (slowest shape p50 {worst['p50_ms']:.1f} ms)",
    )
    for measure, value in http_rows(http_figures) if http_figures is not None else []:
        table.add_row(measure, value)
    for measure, value in kb_scale_rows(kb_scale) if kb_scale is not None else []:
        table.add_row(measure, value)
    out.print(table)


#: How ``teller bench`` names each stage of :mod:`bot.stages` (and ``http``, the rest).
STAGE_LABELS = {
    "limits": "abuse limits",
    "store_read": "store: redelivery look-up",
    "classifier": "classifier pass",
    "base_encoder": "base encoder pass",
    "retrieval": "retrieval",
    "signals": "other signals",
    "policy": "policy",
    "store_write": "store: write",
    "http": "HTTP, framework, client",
}


def http_rows(figures: dict[str, Any]) -> list[tuple[str, str]]:
    """The table rows of the HTTP part of ``teller bench``."""
    one, loop = figures["sequential"], figures["closed_loop"]
    rows = [
        (
            "HTTP, one message at a time: p50 / p95",
            f"{one['latency_ms_p50']:.2f} / {one['latency_ms_p95']:.2f} ms over {one['messages']} "
            f"messages ({one['errors']} errors; mean {one['latency_ms_mean']:.2f} ms, of which "
            f"{one['server_ms_mean']:.2f} in the application)",
        )
    ]
    for stage, share in one["stage_shares"].items():
        ms = one["stage_ms_mean"].get(stage, one["latency_ms_mean"] * share)
        rows.append((f"  share: {STAGE_LABELS.get(stage, stage)}", f"{share:6.1%}  ({ms:.2f} ms)"))
    rows.append(
        (
            f"HTTP, closed loop of {loop['users']} customers",
            f"{loop['throughput_per_s']:.0f} messages/s, p50 / p95 {loop['latency_ms_p50']:.1f} / "
            f"{loop['latency_ms_p95']:.1f} ms, {loop['errors']} errors of {loop['messages']}",
        )
    )
    cpu = loop.get("cpu")
    if cpu:
        rows.append(
            (
                "  CPU a message (closed loop)",
                f"server {cpu['server_ms_per_message']:.2f} ms, load client "
                f"{cpu['client_ms_per_message']:.2f} ms; {cpu['cores']} cores {cpu['busy']:.0%} busy, "
                f"full at about {cpu['ceiling_per_s']:.0f} messages/s",
            )
        )
    return rows


def _bench_kb_scale(entries: int) -> dict[str, Any]:
    from retrieval.scale_bench import run_scale_bench

    err.print(f"Building a {entries:,}-vector knowledge-base index (synthetic embeddings) ...")
    return run_scale_bench(entries).to_dict()


def kb_scale_rows(figures: dict[str, Any]) -> list[tuple[str, str]]:
    """The table rows of ``teller bench --kb-entries``."""
    params = ", ".join(f"{k} {v}" for k, v in figures["params"].items() if k != "kind")
    cos = figures["nn_cosine_p5_p50_p95"]
    return [
        (
            f"KB scale: {figures['entries']:,} entries, {figures['vectors']:,} vectors",
            f"synthetic clustered 384-d embeddings (seed {figures['seed']}), nearest-neighbour cosine "
            f"p5/p50/p95 {cos[0]:.2f}/{cos[1]:.2f}/{cos[2]:.2f}",
        ),
        ("KB scale: index", f"{figures['kind']} ({params}), search on {figures['threads']} thread(s)"),
        ("KB scale: build", f"{figures['build_seconds']:.1f} s (one import)"),
        (
            f"KB scale: search p50 / p95 (one query, depth {figures['depth']})",
            f"{figures['p50_ms']:.2f} / {figures['p95_ms']:.2f} ms "
            f"(k=10: p50 {figures['p50_ms_k10']:.2f} ms)",
        ),
        (
            "KB scale: recall@10 vs exact search",
            f"{figures['recall_at_10']:.4f} over {figures['queries']} fresh queries",
        ),
        (
            "KB scale: RSS growth",
            f"{figures['rss_growth_mb']:.0f} MB after the build, "
            f"peak +{figures['peak_rss_growth_mb']:.0f} MB",
        ),
    ]


def _bench_kb_search(settings: Any, texts: list[str]) -> dict[str, float]:
    """Latency of one knowledge-base search (the query already embedded), over the KB in use."""
    import numpy as np

    from bot.assistant import open_kb

    kb = open_kb(settings)
    vectors = kb.embedder.embed(texts)
    for i in range(min(20, len(texts))):
        kb.search_vectors(vectors[i : i + 1], 10, texts[i : i + 1])
    times = []
    for i, text in enumerate(texts):
        started = time.perf_counter()
        kb.search_vectors(vectors[i : i + 1], 10, [text])
        times.append(time.perf_counter() - started)
    kb.close()
    return {
        "entries": len(kb),
        "vectors": len(kb.index),
        "p50_ms": float(np.percentile(times, 50) * 1000),
        "p95_ms": float(np.percentile(times, 95) * 1000),
    }


@app.command()
def retrain(
    data: Annotated[
        list[Path] | None,
        typer.Option(
            "--data",
            help="Base corpus CSV(s) the corrections are added to (default: the corpus the active "
            "model was trained on).",
        ),
    ] = None,
    encoding: EncodingOpt = None,
    tolerance: Annotated[
        float | None,
        typer.Option(
            min=0.0,
            help="Frozen-set accuracy points the candidate may lose (default TELLER_RETRAIN_TOLERANCE).",
        ),
    ] = None,
    from_scratch: Annotated[
        bool,
        typer.Option(
            "--from-scratch",
            help="Train anew from the base encoder (slower) instead of continuing from the active model.",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Teach the model the operators' corrections and promote it only if it is better on the
    corrections and loses at most the tolerance on the frozen evaluation set (--tolerance, default
    TELLER_RETRAIN_TOLERANCE, 0.5 points) and at most TELLER_RETRAIN_DRIFT (1 point) against the
    best model of its series. By default the active model is fine-tuned further
    (corrections mixed with its training corpus, or --data, replayed); --from-scratch trains a new one on the
    corpus plus the corrections. A running `teller serve` picks a promoted model up within seconds.
    Exits 0 when the candidate is promoted, 1 when it is not (the active model stays), 2 on an error."""
    from bot.assistant import build_policy, open_store
    from bot.operators import Operators
    from bot.retraining import RetrainRunner
    from bot.review import ReviewService

    settings = get_settings()
    if tolerance is not None:
        settings = settings.model_copy(update={"retrain_tolerance": tolerance})
    store = open_store(settings)
    try:
        review = ReviewService(store, lambda: build_policy(settings), None, Operators.from_settings(settings))
        from nlu.data import load_corpus

        base = load_corpus(list(data), encoding=encoding) if data else None
        runner = RetrainRunner(settings, review, base_corpus=base)
        corrections = runner.corrections()
        if not as_json:
            corpus = ", ".join(p.name for p in data) if data else "the corpus it was trained on"
            how = "from scratch on" if from_scratch else "continuing from the active model, replaying"
            err.print(
                f"Retraining ({how} {corpus}) with {len(corrections)} correction(s) in force; the active "
                f"model ({registry(settings).active_version()}) keeps serving meanwhile."
            )
        with progress_reporter(err, enabled=not as_json) as progress:
            mode = "scratch" if from_scratch else "continue"
            outcome = runner.run(stages=progress, mode=mode, actor=str(local_actor()))
    finally:
        store.close()
    if outcome.error is not None:
        raise InputError(outcome.message)
    if as_json:
        result = outcome.result
        emit_json(
            {
                "promoted": outcome.promoted,
                "message": outcome.message,
                "candidate": result.candidate.info.version if result else None,
                "active_before": result.active_version if result else None,
                "decision": result.decision.to_dict() if result else None,
                "seconds": round(result.seconds, 1) if result else None,
            }
        )
    else:
        out.print(outcome.message, soft_wrap=True, highlight=False, markup=False)
    if not outcome.promoted:
        # Ran, and the active model stays: exit 1, so that a script can tell (errors exit 2).
        raise typer.Exit(1)


def _origin(path: Path, retraining: dict[str, Any]) -> str:
    """The origin of a version: "trained", or "retrain: " and the gate's verdict."""
    if not retraining:
        return "trained"
    from nlu.gate import read_gate

    promote = (read_gate(path) or {}).get("promote")
    return "retrain: " + {True: "promoted", False: "refused", None: "not gated"}[promote]


def _trajectory(versions: list[Any]) -> dict[str, dict[str, Any]]:
    """Each version's score on its series' frozen set, as its gate measured it (a first model: as the
    gate of its first retrain measured it), with the change against its parent and against the best
    model of the series (the cumulative change the drift bound limits)."""
    from nlu.gate import read_gate

    gates = {v.info.version: read_gate(v.path) for v in versions}
    out: dict[str, dict[str, Any]] = {}
    for version, gate in gates.items():
        if gate and gate.get("candidate_frozen_accuracy") is not None:
            out[version] = {
                "accuracy": gate["candidate_frozen_accuracy"],
                "size": gate.get("frozen_size"),
                "change_points": gate.get("frozen_change_points"),
                "cumulative_points": gate.get("cumulative_change_points"),
                "baseline": gate.get("baseline_version"),
                "relabelled": gate.get("relabelled_size", 0),
            }
    for gate in gates.values():
        parent = (gate or {}).get("active_version")
        if parent and parent in gates and parent not in out and gate is not None:
            out[parent] = {
                "accuracy": gate.get("active_frozen_accuracy"),
                "size": gate.get("frozen_size"),
                "change_points": None,
                "cumulative_points": None,
                "baseline": None,
                "relabelled": 0,
            }
    return out


def _points(value: float | None) -> str:
    return "-" if value is None else f"{value:+.2f}"


@models_app.command("list")
def models_list(as_json: JsonOpt = False) -> None:
    """Every trained intent model, oldest first; the active one is marked. For retrains, the trajectory
    on the series' frozen set: each version's score, its change against its parent and against the
    best model of the series (what TELLER_RETRAIN_DRIFT bounds)."""
    versions = registry(get_settings()).versions()
    trajectory = _trajectory(versions)
    if as_json:
        for v in versions:
            emit_json(
                {
                    "version": v.info.version,
                    "active": v.active,
                    "created_at": v.info.created_at,
                    "precision": v.info.precision,
                    "train_size": v.info.train_size,
                    "dev": v.info.dev,
                    "data_hash": v.info.data_hash,
                    "origin": _origin(v.path, v.info.retraining),
                    "parent": v.info.retraining.get("parent"),
                    "frozen": trajectory.get(v.info.version),
                    "path": str(v.path),
                }
            )
        return
    if not versions:
        out.print("No models yet: run `teller train`.")
        return
    table = Table(
        "",
        # Whole on any terminal: the version is what `teller models activate` takes.
        Column("version", no_wrap=True, min_width=max(len(v.info.version) for v in versions)),
        # The rest wraps on a narrow terminal rather than losing characters.
        *(Column(h, overflow="fold") for h in ("created", "dev accuracy", "frozen set", "train size")),
        Column("precision", no_wrap=True, min_width=len("precision")),
        Column("origin", overflow="fold"),
        caption="dev accuracy: the training run's own score on its dev split, before export; frozen set: "
        "the series' frozen-set score through the serving path (the precision served), as the retrain "
        "gate measured it, then its change against the parent / against the best model of the series, "
        "in points",
    )
    for v in versions:
        acc = v.info.dev.get("accuracy")
        frozen = trajectory.get(v.info.version) or {}
        score = frozen.get("accuracy")
        shown = f"{score:.2%}" if score is not None else "-"
        if frozen.get("change_points") is not None:
            shown += f" {_points(frozen['change_points'])} / {_points(frozen.get('cumulative_points'))}"
        table.add_row(
            "*" if v.active else "",
            v.info.version,
            v.info.created_at[:16].replace("T", " "),  # to the minute (UTC); --json has it whole
            f"{acc:.2%}" if acc is not None else "-",
            shown,
            str(v.info.train_size),
            v.info.precision,
            _origin(v.path, v.info.retraining),
        )
    out.print(table)


@models_app.command("prune")
def models_prune(
    keep: Annotated[
        int, typer.Option(min=0, help="Inactive versions to keep besides the active one (newest first).")
    ] = 2,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say what would be deleted.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Delete old model versions: all but the active one and the KEEP newest others (refused
    retrain candidates and superseded models, about 150 MB each). Waits for no retrain: refuses
    while one is running."""
    from nlu.retraining import retrain_lock

    settings = get_settings()
    models = registry(settings)
    with retrain_lock(settings.models):
        doomed = models.prune(keep, dry_run=dry_run)
        sizes = {v.info.version: _size_mb(v.path) for v in doomed} if dry_run else {}
    if not dry_run:
        log.info("models_pruned", extra={"fields": {"versions": [v.info.version for v in doomed]}})
    if as_json:
        emit_json({"deleted" if not dry_run else "would_delete": [v.info.version for v in doomed]})
        return
    if not doomed:
        out.print(f"Nothing to delete: the active model and at most {keep} other version(s) are there.")
        return
    verb = "Would delete" if dry_run else "Deleted"
    for v in doomed:
        size = f" ({sizes[v.info.version]:.0f} MB)" if dry_run else ""
        out.print(f"{verb} {v.info.version}{size}")
    out.print(f"Active model: {models.active_version()}; kept {keep} other version(s) at most.")


def _size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


@models_app.command("activate")
def models_activate(
    version: Annotated[str, typer.Argument(help="Version from `teller models list`.")],
    force: Annotated[
        bool,
        typer.Option("--force", help="Activate a retrain candidate the gate refused, all the same."),
    ] = False,
) -> None:
    """Make VERSION the active model (e.g. to roll back). A retrain candidate the gate refused
    ("retrain: refused" in `teller models list`: it scored worse than the model it was to replace)
    is refused here too, with the gate's reasons, unless --force is given; every replica follows
    an activation within seconds."""
    from bot.assistant import activate_model
    from nlu.gate import read_gate

    settings = get_settings()
    gate = read_gate(registry(settings).path(version)) or {}
    overruled: list[str] = []
    if gate.get("promote") is False:
        overruled = [str(r) for r in gate.get("reasons") or []] or ["no reason recorded"]
        reasons = "; ".join(overruled)
        replaced = gate.get("active_version") or "the model it was to replace"
        if not force:
            raise InputError(
                f"{version} is a retrain candidate the gate refused ({reasons}). Activating it would "
                f"put a model measured worse than {replaced} into service on every replica; pass "
                "--force to activate it all the same."
            )
        err.print(f"warning: activating {version}, which the retrain gate refused ({reasons}).")
    path = activate_model(settings, version, actor=str(local_actor()), overruled=overruled)
    out.print(f"Active model: {version} ({path})")
