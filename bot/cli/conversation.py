"""Talking to Teller from the terminal: ``ask`` (the policy's decision on one message or a file,
nothing stored: for trying a model) and ``chat`` (a conversation through the application service,
like any channel)."""

from __future__ import annotations

import getpass
import secrets
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from bot.choices import Choice
from bot.cli.app import EncodingOpt, JsonOpt, ModelOpt, app, emit_json, out
from bot.core import TERMINAL_CHANNEL, Incoming, Outgoing, message_text, unstaffed
from bot.errors import InputError
from bot.policy import Decision, Route, Signals
from bot.settings import get_settings

#: The terminal's channel name in the store.
TERMINAL = TERMINAL_CHANNEL


def _record(signals: Signals, decision: Decision) -> dict[str, Any]:
    """One message's line of ``teller ask --json``: ``text`` as the customer typed it, ``read_as``
    what the encoders read (misspelt words corrected, :mod:`nlu.spelling`; ``span``, for a long
    message, indexes it), then the classifier's reading (``intent``, ``confidence``...) and the
    decision, with ``answered_intent`` the intent the answer is for (the classifier's, or an
    operator correction's label: what ``POST /api/messages`` gives as ``intent``; a reviewer read
    the two as one)."""
    prediction = signals.prediction.to_dict()
    read_as = prediction.pop("text")
    return {
        "text": signals.text,
        "read_as": read_as,
        **prediction,
        **decision.to_dict(),
        "answered_intent": decision.intent,
    }


@app.command()
def ask(
    text: Annotated[str | None, typer.Argument(help="The customer's message.")] = None,
    batch: Annotated[
        Path | None,
        typer.Option("--batch", help="CSV with a text column, or one message per line (always, for .txt)."),
    ] = None,
    version: ModelOpt = None,
    encoding: EncodingOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Answer one message, or a file of them (everything is loaded once), with the operators'
    corrections in force, as a server answers. A handoff reads as the customer would be told it
    here: without an ops channel (no one can take over), the unstaffed reply, with no button for a
    person (and small talk that offers no person)."""
    from bot.assistant import build_policy, open_store, staffed
    from bot.corrections import CorrectionFollower
    from nlu.data import read_messages

    if (text is None) == (batch is None):
        raise InputError(
            "give either a message or --batch FILE, not both"
            if text is not None
            else "give a message or --batch FILE"
        )
    if text is not None:
        message_text(text)  # refused as a channel refuses it: empty, or too long to judge whole
    messages = [text] if text is not None else read_messages(batch, encoding=encoding)  # type: ignore[arg-type]
    if not messages:
        raise InputError(f"{batch}: no messages in the file")
    settings = get_settings()
    policy = build_policy(settings, version)
    # The operators' corrections in force answer here as they do on a server (a trial's finding: an
    # operator checking a correction from the terminal saw the answer from before it).
    store = open_store(settings)
    try:
        CorrectionFollower(store, lambda: policy).refresh(force=True)
    finally:
        store.close()
    people = staffed(settings)
    # Each message as Teller takes it from a customer (bot.core.message_text), or why it is refused.
    taken: list[str | InputError] = []
    for message in messages:
        try:
            taken.append(message_text(message))
        except InputError as refused:
            taken.append(refused)
    signals = iter(policy.with_corrections(policy.signals([m for m in taken if isinstance(m, str)])))
    for message, as_taken in zip(messages, taken, strict=True):
        if isinstance(as_taken, InputError):
            record: dict[str, Any] = {"text": message, "error": str(as_taken)}
        else:
            s = next(signals)
            decision = policy.decide(s)
            record = _record(s, decision if people else unstaffed(decision, policy.unstaffed_words))
        if as_json:
            emit_json(record)
        elif "error" in record:
            out.print(
                f"[red](refused)[/red] {escape(message[:100])}: {escape(record['error'])}", highlight=False
            )
        else:
            out.print(
                f"[bold]{escape(message[:100])}[/bold]\n  → {record['route']}"
                + (f" ({record['kb_id']})" if record["kb_id"] else "")
                + f": {escape(record['answer'])}\n  [dim]{escape(record['reason'])}[/dim]",
                highlight=False,
            )


class TerminalTransport:
    """The terminal as a channel: a reply is printed with its choices numbered (feedback buttons
    are left out); what is typed next may be one of those numbers."""

    name = TERMINAL

    def __init__(self, debug: bool = False) -> None:
        self.debug = debug
        self.options: list[Choice] = []
        self.posted = 0

    def parts(self, address: str, outgoing: Outgoing) -> list[Outgoing]:
        return [outgoing]

    def post(self, address: str, part: Outgoing) -> str:
        out.print(f"teller> {escape(part.text)}", highlight=False)
        self.options = [c for c in part.choices if not c.is_feedback]
        for number, choice in enumerate(self.options, start=1):
            out.print(f"        [{number}] {escape(choice.label)}", highlight=False)
        if self.debug:
            detail = f"{part.route}" + (
                f" {part.intent} {part.confidence:.2f}" if part.intent and part.confidence is not None else ""
            )
            out.print(f"        [dim]{detail}{' ' + part.kb_id if part.kb_id else ''}[/dim]", highlight=False)
        self.posted += 1
        return f"{address}:{self.posted}"


@app.command()
def chat(
    version: ModelOpt = None,
    debug: Annotated[bool, typer.Option(help="Show each reply's route, intent and confidence.")] = False,
) -> None:
    """Chat with Teller in the terminal, as a customer would on any channel (stored, channel
    ``terminal``); type quit or press Ctrl-D to leave. ``--model`` talks to another model than
    the active one."""
    from bot.assistant import build_core, build_service

    settings = get_settings()
    core = build_core(settings, version)
    service = build_service(settings, core)
    transport = TerminalTransport(debug)
    conversation = f"session-{secrets.token_hex(4)}"
    user = getpass.getuser()
    out.print(f"Teller (model {core.policy.classifier.version}). Type a message; 'quit' or Ctrl-D to leave.")
    try:
        while True:
            try:
                line = input("you> ").strip()
            except (EOFError, KeyboardInterrupt):
                out.print()
                return
            if line.lower() in {"quit", "exit"}:
                return
            if not line:
                continue
            options = transport.options
            chosen = line.isascii() and line.isdigit() and 1 <= int(line) <= len(options)
            text = options[int(line) - 1].value if chosen else line
            try:
                reply = service.message(Incoming(TERMINAL, conversation, user, None, text), transport)
            except InputError as exc:
                out.print(f"teller> {escape(str(exc))}", highlight=False)
                continue
            if reply.route == Route.HANDOFF.value and service.ops is not None and service.ops.board is None:
                out.print("        [dim](no ops channel is configured: nobody takes over here)[/dim]")
            if reply.route == Route.SMALLTALK.value and "bye" in line.lower():
                return
    finally:
        service.close()
        core.close()
