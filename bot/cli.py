"""The ``teller`` command line."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from bot.errors import InputError, TellerError
from bot.logs import configure_logging
from bot.settings import Settings, get_settings
from nlu import IntentClassifier, ModelRegistry, NLUError, Prediction
from nlu.corpora import BANKING77_TRAIN

log = logging.getLogger("teller.cli")
out = Console()
err = Console(stderr=True)


class _Group(TyperGroup):
    """Turns Teller's own errors into one clear line on stderr and exit status 2, never a traceback."""

    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except (TellerError, NLUError) as exc:
            log.warning("command_failed", extra={"fields": {"error": str(exc), "kind": type(exc).__name__}})
            err.print(f"[red]error:[/red] {exc}", highlight=False)
            raise typer.Exit(2) from None


app = typer.Typer(
    cls=_Group,
    name="teller",
    help="Teller, a chat-first assistant for finance customer service.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
models_app = typer.Typer(help="List and activate trained intent models.", no_args_is_help=True)
app.add_typer(models_app, name="models")

EncodingOpt = Annotated[
    str | None, typer.Option(help="Encoding of the input file (default: UTF-8, or by its BOM).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def _emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False) + "\n")


@app.callback()
def _setup() -> None:
    settings = get_settings()
    configure_logging(settings.log_dir, settings.log_level)


def _registry(settings: Settings) -> ModelRegistry:
    return ModelRegistry(settings.models)


def _load_classifier(settings: Settings, version: str | None = None) -> IntentClassifier:
    registry = _registry(settings)
    path = registry.path(version) if version else registry.active_path()
    return IntentClassifier.load(path, precision=settings.serving_precision, threads=settings.threads)


# --------------------------------------------------------------------------------------------- train


@contextmanager
def _progress_bar(enabled: bool) -> Iterator[Any]:
    """A rich progress bar with an ETA per stage; yields the ``progress(stage, done, total)`` callback."""
    if not enabled:
        yield None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    titles = {
        "probe": "Encoding (linear probe)",
        "train": "Fine-tuning",
        "memory": "Embedding memory",
        "dev": "Scoring dev split",
        "export": "Exporting ONNX, int8",
    }
    with Progress(
        TextColumn("{task.description:<24}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=err,
        transient=False,
    ) as progress:
        tasks: dict[str, Any] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(titles.get(stage, stage), total=total)
            progress.update(tasks[stage], completed=done, total=total)

        yield update


@app.command()
def train(
    data: Annotated[
        list[Path] | None,
        typer.Option(
            "--data",
            help="Training CSV (text,category); repeat to combine. Replaces the default Banking77 corpus.",
        ),
    ] = None,
    add: Annotated[
        list[Path] | None,
        typer.Option(
            "--add", help="CSV added to the default corpus (or to --data); later files win on conflicts."
        ),
    ] = None,
    epochs: Annotated[float, typer.Option(min=0.01, help="Fine-tuning epochs.")] = 3.0,
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
    """Fine-tune the intent classifier on the CPU and save a versioned artifact."""
    from nlu.data import load_corpus
    from nlu.pipeline import train_and_register
    from nlu.training import TrainConfig

    settings = get_settings()
    registry = _registry(settings)
    if if_missing and registry.active_version() is not None:
        try:
            registry.active_path()
            err.print(f"A model is already active: {registry.active_version()} (skipping training).")
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
        with _progress_bar(not as_json) as progress:
            result = train_and_register(corpus, registry, config, progress=progress, activate=activate)
    except KeyboardInterrupt:
        err.print("Training interrupted; no model was saved and the active model is unchanged.")
        raise typer.Exit(130) from None
    seconds = time.perf_counter() - started
    info = result.info
    log.info(
        "train_finished",
        extra={"fields": {"version": info.version, "seconds": round(seconds, 1), **info.dev}},
    )
    if as_json:
        _emit_json(
            {
                **asdict(info),
                "path": str(result.path),
                "active": result.active,
                "total_seconds": round(seconds, 1),
            }
        )
        return
    dev = info.dev
    out.print(
        f"Saved model [bold]{info.version}[/bold] at {result.path}" + (" (active)" if result.active else "")
    )
    if dev:
        out.print(
            f"Dev split ({info.dev_size} messages): accuracy {dev['accuracy']:.2%}, "
            f"macro-F1 {dev['macro_f1']:.4f}, ECE {dev['ece']:.4f}"
        )
    check = info.precision_check
    if "int8_dev_accuracy" in check:
        out.print(
            f"Serving precision {info.precision}: int8 dev accuracy {check['int8_dev_accuracy']:.2%} "
            f"vs fp32 {check['fp32_dev_accuracy']:.2%}"
        )
    out.print(f"Took {seconds / 60:.1f} min.")


# ---------------------------------------------------------------------------------------------- eval


@app.command("eval")
def evaluate_cmd(
    data: Annotated[
        Path | None,
        typer.Option("--data", help="Labelled CSV (text,category). Default: the model's own dev split."),
    ] = None,
    version: Annotated[
        str | None, typer.Option("--model", help="Model version (default: the active one).")
    ] = None,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Report directory (default: <TELLER_HOME>/reports/eval-...).")
    ] = None,
    encoding: EncodingOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Accuracy, macro-F1, per-intent scores, confusions and calibration, with a Markdown report."""
    from nlu.artifact import read_dev_split
    from nlu.data import read_labelled_csv
    from nlu.evaluation import evaluate
    from nlu.report import write_report

    settings = get_settings()
    classifier = _load_classifier(settings, version)
    if data is not None:
        examples, source = read_labelled_csv(data, encoding=encoding), str(data)
    else:
        examples, source = read_dev_split(classifier.path), f"dev split of {classifier.version}"
        if not examples:
            raise InputError(f"model {classifier.version} has no dev split; pass --data FILE")
    metrics, _ = evaluate(classifier, examples)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    directory = out_dir or settings.reports_dir / f"eval-{classifier.version}-{stamp}"
    context = {"model": classifier.version, "precision": classifier.precision, "data": source}
    files = write_report(metrics, directory, f"Intent evaluation: {classifier.version}", context)
    log.info(
        "eval_finished", extra={"fields": {**context, **metrics.summary(), "report": str(files.markdown)}}
    )
    if as_json:
        _emit_json(
            {
                "context": context,
                **metrics.to_dict(),
                "report": {
                    "json": str(files.json),
                    "markdown": str(files.markdown),
                    "confusion_png": str(files.confusion_png),
                },
            }
        )
        return
    out.print(f"Model {classifier.version} ({classifier.precision}) on {source}: {metrics.n} messages")
    out.print(f"accuracy {metrics.accuracy:.2%}   macro-F1 {metrics.macro_f1:.4f}   ECE {metrics.ece:.4f}")
    if metrics.unknown_labels:
        out.print(f"[yellow]Categories the model does not know: {', '.join(metrics.unknown_labels)}[/yellow]")
    table = Table("true intent", "predicted", "count", title="Most confused pairs")
    for c in metrics.confusions:
        table.add_row(c.true, c.predicted, str(c.count))
    out.print(table)
    out.print(f"Report: {files.markdown}\nConfusion matrix: {files.confusion_png}\nJSON: {files.json}")


# ----------------------------------------------------------------------------------------------- ask


def _prediction_record(prediction: Prediction) -> dict[str, Any]:
    return {**prediction.to_dict(), "route": "intent"}


@app.command()
def ask(
    text: Annotated[str | None, typer.Argument(help="The customer's message.")] = None,
    batch: Annotated[
        Path | None, typer.Option("--batch", help="CSV with a text column, or one message per line.")
    ] = None,
    version: Annotated[
        str | None, typer.Option("--model", help="Model version (default: the active one).")
    ] = None,
    encoding: EncodingOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Classify one message, or a file of them (the model is loaded once)."""
    from nlu.data import read_messages

    if (text is None) == (batch is None):
        raise InputError(
            "give either a message or --batch FILE, not both"
            if text is not None
            else "give a message or --batch FILE"
        )
    messages = [text] if text is not None else read_messages(batch, encoding=encoding)  # type: ignore[arg-type]
    if text is not None and not text.strip():
        raise InputError("the message is empty")
    if not messages:
        raise InputError(f"{batch}: no messages in the file")
    classifier = _load_classifier(get_settings(), version)
    valid = [m for m in messages if m.strip()]
    predictions = iter(classifier.predict(valid) if valid else [])
    for message in messages:
        if not message.strip():
            record: dict[str, Any] = {"text": message, "error": "empty message"}
        else:
            record = _prediction_record(next(predictions))
        if as_json:
            _emit_json(record)
        elif "error" in record:
            out.print(f"[red]{'(empty message)':<32}[/red] {record['error']}")
        else:
            alts = ", ".join(f"{name} {p:.2f}" for name, p in record["alternatives"][1:])
            out.print(
                f"[bold]{record['intent']:<32}[/bold] {record['confidence']:.2f}  {message[:80]}"
                + (f"  [dim](also: {alts})[/dim]" if alts else ""),
                highlight=False,
            )


# ---------------------------------------------------------------------------------------------- chat


@app.command()
def chat(
    version: Annotated[
        str | None, typer.Option("--model", help="Model version (default: the active one).")
    ] = None,
) -> None:
    """Chat with Teller in the terminal; type quit or press Ctrl-D to leave."""
    classifier = _load_classifier(get_settings(), version)
    out.print(f"Teller (model {classifier.version}). Type a message; Ctrl-D or 'quit' to leave.")
    while True:
        try:
            line = input("you> ")
        except (EOFError, KeyboardInterrupt):
            out.print()
            return
        if line.strip().lower() in {"quit", "exit", "bye"}:
            return
        if not line.strip():
            continue
        prediction = classifier.predict_one(line)
        alts = ", ".join(f"{name} {p:.0%}" for name, p in prediction.alternatives[1:])
        out.print(
            f"teller> [bold]{prediction.intent}[/bold] ({prediction.confidence:.0%}; also {alts})",
            highlight=False,
        )


# --------------------------------------------------------------------------------------------- bench


@app.command()
def bench(
    version: Annotated[
        str | None, typer.Option("--model", help="Model version (default: the active one).")
    ] = None,
    precision: Annotated[
        str | None, typer.Option(help="int8 or fp32 (default: the artifact's choice).")
    ] = None,
    threads: Annotated[int | None, typer.Option(min=1, help="Inference threads.")] = None,
    messages: Annotated[int, typer.Option(min=10, help="Messages timed one at a time.")] = 300,
    batch_size: Annotated[int, typer.Option(min=1, help="Batch size for the throughput run.")] = 64,
    as_json: JsonOpt = False,
) -> None:
    """Latency (p50/p95/p99) of one message, batched throughput, peak memory and load time."""
    from nlu.artifact import read_dev_split
    from nlu.bench import run_benchmark
    from nlu.data import read_labelled_csv

    settings = get_settings()
    registry = _registry(settings)
    path = registry.path(version) if version else registry.active_path()
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
    log.info("bench_finished", extra={"fields": result.to_dict()})
    if as_json:
        _emit_json(result.to_dict())
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
    out.print(table)


# -------------------------------------------------------------------------------------------- models


@models_app.command("list")
def models_list(as_json: JsonOpt = False) -> None:
    """Every trained intent model, oldest first; the active one is marked."""
    versions = _registry(get_settings()).versions()
    if as_json:
        for v in versions:
            _emit_json(
                {
                    "version": v.info.version,
                    "active": v.active,
                    "created_at": v.info.created_at,
                    "precision": v.info.precision,
                    "train_size": v.info.train_size,
                    "dev": v.info.dev,
                    "data_hash": v.info.data_hash,
                    "path": str(v.path),
                }
            )
        return
    if not versions:
        out.print("No models yet: run `teller train`.")
        return
    table = Table("", "version", "created", "dev accuracy", "train size", "precision")
    for v in versions:
        acc = v.info.dev.get("accuracy")
        table.add_row(
            "*" if v.active else "",
            v.info.version,
            v.info.created_at,
            f"{acc:.2%}" if acc is not None else "-",
            str(v.info.train_size),
            v.info.precision,
        )
    out.print(table)


@models_app.command("activate")
def models_activate(
    version: Annotated[str, typer.Argument(help="Version from `teller models list`.")],
) -> None:
    """Make VERSION the active model (e.g. to roll back)."""
    path = _registry(get_settings()).activate(version)
    log.info("model_activated", extra={"fields": {"version": version}})
    out.print(f"Active model: {version} ({path})")


def main() -> None:
    """Console entry point."""
    app()


if __name__ == "__main__":
    main()
