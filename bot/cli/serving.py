"""``teller serve`` and reading the store back: ``teller history``, ``teller feedback list``."""

from __future__ import annotations

import logging
from typing import Annotated

import typer
from rich.table import Table

from bot.cli.app import JsonOpt, app, emit_json, err, out
from bot.settings import get_settings

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

    from bot.assistant import build_channels, build_core
    from bot.web.app import create_app

    settings = get_settings()
    core = build_core(settings)
    channels = build_channels(settings, core)
    application = create_app(core, channels)
    host, port = host or settings.host, port or settings.port
    names = ", ".join(["web chat", *(c.name for c in channels)])
    err.print(
        f"Teller (model {core.policy.classifier.version}; {names}) on http://{host}:{port}/  "
        f"(API docs at /docs). Ctrl-C to stop."
    )
    log.info(
        "serve_started",
        extra={"fields": {"host": host, "port": port, "model": core.policy.classifier.version}},
    )
    try:
        uvicorn.run(application, host=host, port=port, log_level="warning", timeout_graceful_shutdown=15)
    finally:
        core.store.close()
        log.info("serve_stopped")


@app.command()
def history(
    conversation: Annotated[str | None, typer.Option(help="Only this conversation id.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="How many messages.")] = 50,
    as_json: JsonOpt = False,
) -> None:
    """The latest stored messages (PII already redacted), oldest first."""
    from bot.assistant import open_store

    messages = open_store(get_settings()).history(conversation, limit)
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
                }
            )
        return
    table = Table("time", "channel", "who", "text", "route", title=f"{len(messages)} messages")
    for m in messages:
        table.add_row(
            m.created_at[:19],
            m.channel,
            "customer" if m.direction == "in" else "Teller",
            m.text[:90],
            f"{m.route} {m.intent or ''}".strip() if m.route else "",
        )
    out.print(table)


@feedback_app.command("list")
def feedback_list(
    limit: Annotated[int, typer.Option(min=1, help="How many entries.")] = 100,
    as_json: JsonOpt = False,
) -> None:
    """Feedback on Teller's replies, newest first, with the reply it is about."""
    from bot.assistant import open_store

    entries = open_store(get_settings()).feedback(limit)
    if as_json:
        for f, m in entries:
            emit_json(
                {
                    "id": f.id,
                    "message_id": f.message_id,
                    "helpful": f.helpful,
                    "comment": f.comment,
                    "user_id": f.user_id,
                    "created_at": f.created_at,
                    "reply": m.text,
                    "route": m.route,
                    "intent": m.intent,
                    "kb_id": m.kb_id,
                }
            )
        return
    table = Table("time", "helpful", "reply", "route", "comment", title=f"{len(entries)} feedback entries")
    for f, m in entries:
        table.add_row(
            f.created_at[:19],
            "yes" if f.helpful else "no",
            m.text[:70],
            f"{m.route} {m.intent or ''}".strip(),
            f.comment or "",
        )
    out.print(table)
