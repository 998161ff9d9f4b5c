"""``teller serve`` and reading the store back: ``teller history``, ``teller feedback list``."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from bot.cli.app import JsonOpt, app, emit_json, err, out, registry
from bot.errors import InputError
from bot.logs import uvicorn_log_config
from bot.settings import get_settings

if TYPE_CHECKING:
    from bot.settings import Settings
    from bot.storage import Store

log = logging.getLogger("teller.cli")
feedback_app = typer.Typer(help="Customer and operator feedback on Teller's answers.", no_args_is_help=True)
app.add_typer(feedback_app, name="feedback")


@app.command()
def serve(
    host: Annotated[
        str | None, typer.Option(help="Interface to listen on (default TELLER_HOST, 127.0.0.1).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="Port (default TELLER_PORT, 8000).")
    ] = None,
) -> None:
    """Run every configured channel: web chat and REST API always; SIGTERM or Ctrl-C stops gracefully."""
    import uvicorn
    from threadpoolctl import threadpool_limits

    from bot.assistant import (
        bank_name,
        build_channels,
        build_core,
        build_service,
        check_telegram_webhook,
        half_configured_channels,
        starter_notice,
    )
    from bot.handoff_expiry import HandoffExpiry
    from bot.model_swap import ModelSwapper
    from bot.privacy.retention import RetentionService
    from bot.recovery import DeliveryRecovery
    from bot.web.app import create_app
    from bot.web.protocol import http_protocol
    from bot.web.sessions import Identities

    # The small matrix products of a request are faster on one BLAS thread, and idle BLAS threads
    # would spin against ONNX Runtime's pools; a server process runs nothing else.
    threadpool_limits(limits=1, user_api="blas")
    settings = get_settings()
    check_telegram_webhook(settings)  # before the seconds build_core takes
    settings.abuse_limits()  # a bad limit or limits storage is said now, not after loading the models
    host, port = host or settings.host, port or settings.port
    _check_can_listen(host, port)  # a port in use is said now, not after "Teller ... on http://..."
    for problem in half_configured_channels(settings):
        err.print(f"warning: {problem}", highlight=False, markup=False)
        log.warning("channel_half_configured", extra={"fields": {"problem": problem}})
    core = build_core(settings)
    # The language detector's models load in the background, so the first customer waits for none.
    if core.policy.language is not None:
        threading.Thread(target=core.policy.language.warm_up, name="teller-language", daemon=True).start()
    # One swapper: it watches the registry, and a retrain started from Slack promotes through it.
    swapper = ModelSwapper(settings, core)
    service = build_service(settings, core, swapper)
    channels = build_channels(settings, core, service)
    # A model promoted or rolled back while serving is picked up within seconds, without a restart.
    # Deliveries a stopped replica left pending are finished by the running ones.
    recovery = DeliveryRecovery(service)
    # Handoffs nobody answers close themselves (TELLER_HANDOFF_IDLE_MINUTES).
    expiry = HandoffExpiry(service)
    # Every hour, on one replica: messages past TELLER_RETENTION_DAYS go, and texts awaiting delivery
    # for over a day leave the outbox (whether retention is on or not).
    retention = RetentionService(core.store, settings.retention_days, briefs=settings.briefs_dir)
    application = create_app(
        core,
        channels,
        owns_core=True,
        services=[swapper],
        service=service,
        background=[recovery, expiry, retention],
        operator_key=settings.operator_api_key,
        production=settings.production,
        server_timing=settings.server_timing,
        bank=lambda: core.policy.bank,
        briefs_dir=settings.briefs_dir,
        customer_erasure=settings.customer_erasure,
        privacy_notice=settings.privacy_notice,
        identities=Identities.from_store(
            core.store,
            settings.session_secret,
            settings.session_days,
            settings.customer_token_key,
            settings.backend_api_key,
        ),
    )
    names = ", ".join(["web chat", *(c.name for c in channels)])
    err.print(
        f"Teller (model {core.policy.classifier.version}; {names}) on http://{host}:{port}/  "
        f"({'API docs at /docs for the operator key' if settings.production else 'API docs at /docs'}). "
        "Ctrl-C to stop."
    )
    notice = starter_notice(settings, core.policy.kb)
    if notice is not None:
        err.print(f"warning: {notice}", highlight=False, markup=False)
        log.warning("starter_entries_live", extra={"fields": {"bank": bank_name(settings, core.policy.kb)}})
    log.info(
        "serve_started",
        extra={"fields": {"host": host, "port": port, "model": core.policy.classifier.version}},
    )
    # On SIGTERM or SIGINT uvicorn stops accepting, lets in-flight requests finish (up to 15 s), runs
    # the application's shutdown (channels stop, the database is closed) and exits by that signal.
    # uvicorn's own error and access logs are redacted like every other record.
    # Requests bounded in head size and arrival time (bot.web.protocol): a proxy in front bounds them
    # too, but `--host 0.0.0.0` may face clients directly.
    http, http_options = http_protocol()
    uvicorn.run(
        application,
        host=host,
        port=port,
        http=http,
        **http_options,
        log_config=uvicorn_log_config("warning"),
        timeout_graceful_shutdown=15,
        # The client's address (per-address limits) and scheme (Secure cookie) behind a proxy.
        proxy_headers=True,
        forwarded_allow_ips=settings.forwarded_allow_ips,
    )
    log.info("serve_stopped")


def _check_can_listen(host: str, port: int) -> None:
    """Raise :class:`InputError` when ``host:port`` cannot be listened on (in use, or an address
    this machine does not have), before the models load: a trial's `teller serve` on a port in use
    printed that Teller was up, then failed (uvicorn binds last). Bound as uvicorn binds it
    (``SO_REUSEADDR``), then released."""
    import socket

    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:  # as asyncio binds "::": IPv6 alone, beside an IPv4 listener
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            probe.bind(address)
    except OSError as exc:
        raise InputError(f"cannot listen on {shown}: {exc.strerror or exc}") from None


@app.command()
def history(
    conversation: Annotated[str | None, typer.Option(help="Only this conversation id.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="How many messages.")] = 50,
    ids: Annotated[
        bool, typer.Option("--ids", help="Show each message's id (what `teller flag` takes).")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """The latest stored messages (PII already redacted), oldest first."""
    from bot.assistant import open_store

    store = open_store(get_settings())
    try:
        messages = store.conversations.history(conversation, limit)
    finally:
        store.close()
    if conversation is not None and not messages and not as_json:  # --json: no lines, as before
        raise InputError(f"no stored messages in conversation {conversation!r}")
    if as_json:
        for m in messages:
            emit_json(
                {
                    "id": m.id,
                    "conversation_id": m.conversation_id,
                    "direction": m.direction,
                    "channel": m.channel,
                    "user_id": m.user_id,
                    "text": m.text,
                    "route": m.route,
                    "intent": m.intent,
                    "confidence": m.confidence,
                    "kb_id": m.kb_id,
                    "model_version": m.model_version,
                    "latency_ms": m.latency_ms,
                    "created_at": m.created_at,
                    "author": m.author,
                }
            )
        return
    table = Table(
        title=f"{len(messages)} messages",
        caption=None if ids else "--ids: each message's id, to flag a reply (`teller flag ID`)",
    )
    if ids:
        table.add_column("id", no_wrap=True)
    table.add_column("time (UTC)", no_wrap=True)
    table.add_column("channel")
    table.add_column("who")
    table.add_column("text", ratio=3)
    table.add_column("route", ratio=1, overflow="fold")
    for m in messages:
        # What answered: the knowledge-base entry of an FAQ answer, else the intent the classifier
        # read (for small talk or a handoff, only its guess: not shown).
        answered = m.kb_id if m.kb_id else m.intent if m.route in ("intent", "clarify") else None
        table.add_row(
            *([m.id] if ids else []),
            m.created_at[:19].replace("T", " "),
            m.channel,
            "customer" if m.direction == "in" else m.author or "Teller",  # an operator's relay: who
            escape(m.text[:90]),
            f"{m.route} {answered or ''}".strip() if m.route else "",
        )
    out.print(table)


def _serving_labels(settings: Settings, store: Store) -> frozenset[str] | None:
    """The intents of the model in service (:func:`bot.assistant.active_version`), None where there
    is none to read."""
    from bot.assistant import active_version
    from nlu.artifact import read_labels
    from nlu.errors import NLUError

    try:
        version = active_version(settings, store)
        return frozenset(read_labels(registry(settings).path(version))) if version else None
    except (NLUError, OSError, ValueError):
        return None


@feedback_app.command("list")
def feedback_list(
    limit: Annotated[int, typer.Option(min=1, help="How many entries.")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """Feedback on Teller's replies, newest first, with the question and the reply it is about; then
    operators' flags and corrections (who, when, label; superseded, in force, or not applied because
    the entry or intent answer it names is gone)."""
    from bot.assistant import open_kb, open_store
    from bot.cli.operations import correction_record, flag_record, print_flags_and_corrections
    from bot.knowledge import unanswerable_corrections

    settings = get_settings()
    store = open_store(settings)
    try:
        entries = store.feedback.feedback(limit)
        flags, corrections = store.feedback.flags(limit), store.feedback.corrections(limit=limit)
        # the customer's question each rated reply answered (a trial read only Teller's replies)
        asked = {m.id: _question(store, m.reply_to) for _, m in entries}
        labels = _serving_labels(settings, store)
    finally:
        store.close()
    if any(not c.superseded for c in corrections):
        kb = open_kb(settings)
        try:
            not_applied = unanswerable_corrections(kb, corrections, labels)
        finally:
            kb.close()
    else:
        not_applied = {}
    if as_json:
        for f, m in entries:
            emit_json(
                {
                    "kind": "feedback",
                    "id": f.id,
                    "message_id": f.message_id,
                    "helpful": f.helpful,
                    "comment": f.comment,
                    "user_id": f.user_id,
                    "created_at": f.created_at,
                    "question": asked.get(m.id),
                    "reply": m.text,
                    "route": m.route,
                    "intent": m.intent,
                    "kb_id": m.kb_id,
                }
            )
        for record in [*map(flag_record, flags), *(correction_record(c, not_applied) for c in corrections)]:
            emit_json(record)
        return
    table = Table(
        "time", "helpful", "question", "reply", "route", "comment", title=f"{len(entries)} feedback entries"
    )
    for f, m in entries:
        table.add_row(
            f.created_at[:19],
            "yes" if f.helpful else "no",
            escape((asked.get(m.id) or "")[:70]),
            escape(m.text[:70]),
            f"{m.route} {m.intent or ''}".strip(),
            escape(f.comment or ""),
        )
    out.print(table)
    print_flags_and_corrections(flags, corrections, not_applied)


def _question(store: Store, message_id: str | None) -> str | None:
    """The text of the customer's message ``message_id``; None without one (erased, or none)."""
    if message_id is None:
        return None
    try:
        return store.conversations.message(message_id).text
    except InputError:
        return None


@app.command()
def load(
    url: Annotated[
        list[str] | None,
        typer.Option(
            metavar="URL",
            help="Base URL of a Teller replica; repeat for several: customers are spread over them "
            "round-robin and fail over to the next. Default http://127.0.0.1:8000.",
        ),
    ] = None,
    users: Annotated[int, typer.Option(min=1, help="Concurrent web-chat customers.")] = 50,
    messages: Annotated[
        int, typer.Option(min=1, help="Messages each customer sends (waiting for each reply).")
    ] = 20,
    think: Annotated[
        float, typer.Option(min=0.0, help="Mean pause between a reply and the next message (s).")
    ] = 0.0,
    attempts: Annotated[
        int,
        typer.Option(
            min=1,
            help="Attempts per message, the first included: a connection error, timeout, 5xx or 429 "
            "is retried with the same client_message_id on the next URL.",
        ),
    ] = 5,
    timeout: Annotated[float, typer.Option(min=0.001, help="Time allowed for one attempt (s).")] = 30.0,
    deadline: Annotated[
        float, typer.Option(min=0.001, help="No retry starts this long after a message's first attempt (s).")
    ] = 60.0,
    verify: Annotated[
        bool,
        typer.Option(
            help="Check the store (TELLER_DATABASE_URL, or the SQLite file of TELLER_HOME; the one the "
            "replicas use): every acknowledged message stored once."
        ),
    ] = True,
    as_json: JsonOpt = False,
) -> None:
    """Load-test running `teller serve` replicas over HTTP: acknowledgements, retries, errors, silent
    (empty) replies, latency, throughput, and the store check. Exit status 1 if a message was never
    acknowledged (errors), or the store check finds an acknowledged message missing or a message
    stored twice; messages stored but never acknowledged, and silent replies, are reported only."""
    import asyncio

    from bot.loadtest import StoreCheck, check_store, run_load
    from nlu.corpora import BANKING77_TRAIN, CLINC150_OOS_DEV
    from nlu.data import read_labelled_csv

    urls = url or ["http://127.0.0.1:8000"]
    backend_key = get_settings().backend_api_key
    if backend_key is None:
        err.print(
            "teller load speaks as the bank's backend: set TELLER_BACKEND_API_KEY here and on the "
            "replicas (and raise TELLER_LIMIT_MESSAGES and TELLER_LIMIT_MESSAGES_OVERALL there, or the "
            "run measures the abuse limits)."
        )
        raise typer.Exit(2)
    texts = [e.text for e in read_labelled_csv(BANKING77_TRAIN)] + [
        e.text for e in read_labelled_csv(CLINC150_OOS_DEV)
    ]
    result = asyncio.run(
        run_load(
            urls,
            texts,
            users=users,
            messages=messages,
            think=think,
            timeout=timeout,
            attempts=attempts,
            deadline=deadline,
            backend_key=backend_key.get_secret_value(),
        )
    )
    payload: dict[str, object] = result.to_dict()
    check: StoreCheck | None = None
    if verify:
        from dataclasses import asdict

        from bot.assistant import open_store

        store = open_store(get_settings())
        try:
            check = check_store(
                store, result.run_id, result.acknowledged_ids, result.users, result.messages_per_user
            )
        finally:
            store.close()
        payload["store"] = asdict(check)
    if as_json:
        emit_json(payload)
    else:
        table = Table(
            "measure",
            "value",
            title=f"{users} customers x {messages} messages on {len(result.urls)} URL(s), think {think}s",
        )
        for key in (
            "sent",
            "acknowledged",
            "retried",
            "attempts",
            "errors",
            "silent",
            "latency_ms_p50",
            "latency_ms_p95",
            "latency_ms_p99",
            "latency_ms_max",
            "seconds",
            "throughput_per_s",
        ):
            table.add_row(key.replace("_", " "), str(payload[key]))
        for target, count in result.acknowledged_by_url.items():
            table.add_row(f"acknowledged by {target}", str(count))
        for kind, count in result.failed_attempts.items():
            table.add_row(f"failed attempts: {kind}", str(count))
        if check is not None:
            for key in ("stored", "missing", "duplicated", "stored_not_acknowledged"):
                table.add_row(f"store: {key.replace('_', ' ')}", str(getattr(check, key)))
        out.print(table)
        for line in result.error_samples:
            err.print(f"error: {line}", highlight=False, markup=False)
        if result.silent_samples:
            samples = ", ".join(result.silent_samples)
            err.print(f"silent replies, e.g.: {samples}", highlight=False, markup=False)
        if check is not None:
            for key in ("missing", "duplicated", "stored_not_acknowledged"):
                if samples := getattr(check, f"{key}_samples"):
                    err.print(
                        f"{key.replace('_', ' ')}, e.g.: {', '.join(samples)}", highlight=False, markup=False
                    )
    if result.errors > 0 or (check is not None and not check.ok):
        raise typer.Exit(1)
