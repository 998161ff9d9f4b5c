"""Talking to Teller from the terminal: ``ask`` (one message or a file) and ``chat``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from bot.cli.app import EncodingOpt, JsonOpt, ModelOpt, app, emit_json, out
from bot.errors import InputError
from bot.policy import HANDOFF_CHOICE, AnswerPolicy, Choice, Decision, Route, Signals
from bot.settings import get_settings


def _record(signals: Signals, decision: Decision) -> dict[str, Any]:
    return {**signals.prediction.to_dict(), **decision.to_dict()}


@app.command()
def ask(
    text: Annotated[str | None, typer.Argument(help="The customer's message.")] = None,
    batch: Annotated[
        Path | None, typer.Option("--batch", help="CSV with a text column, or one message per line.")
    ] = None,
    version: ModelOpt = None,
    encoding: EncodingOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Answer one message, or a file of them (everything is loaded once)."""
    from bot.assistant import build_policy
    from nlu.data import read_messages

    if (text is None) == (batch is None):
        raise InputError(
            "give either a message or --batch FILE, not both"
            if text is not None
            else "give a message or --batch FILE"
        )
    if text is not None and not text.strip():
        raise InputError("the message is empty")
    messages = [text] if text is not None else read_messages(batch, encoding=encoding)  # type: ignore[arg-type]
    if not messages:
        raise InputError(f"{batch}: no messages in the file")
    policy = build_policy(get_settings(), version)
    valid = [m for m in messages if m.strip()]
    signals = iter(policy.signals(valid))
    for message in messages:
        if not message.strip():
            record: dict[str, Any] = {"text": message, "error": "empty message"}
        else:
            s = next(signals)
            record = _record(s, policy.decide(s))
        if as_json:
            emit_json(record)
        elif "error" in record:
            out.print(f"[red](empty message)[/red] {record['error']}")
        else:
            out.print(
                f"[bold]{message[:100]}[/bold]\n  → {record['route']}"
                + (f" ({record['kb_id']})" if record["kb_id"] else "")
                + f": {record['answer']}\n  [dim]{record['reason']}[/dim]",
                highlight=False,
            )


def _show(decision: Decision) -> None:
    out.print(f"teller> {decision.answer}", highlight=False)
    options = [c for c in decision.choices if not c.value.startswith("feedback:")]
    for number, choice in enumerate(options, start=1):
        out.print(f"        [{number}] {choice.label}", highlight=False)


def _choose(policy: AnswerPolicy, choice: Choice) -> Decision | None:
    if choice.value.startswith("intent:"):
        return policy.answer_for_intent(choice.value.removeprefix("intent:"))
    if choice.value == HANDOFF_CHOICE:
        out.print(
            "teller> In the terminal there is nobody to hand you to; on Slack, Telegram or the web chat "
            "an operator would take over here.",
            highlight=False,
        )
    return None


@app.command()
def chat(
    version: ModelOpt = None, debug: Annotated[bool, typer.Option(help="Show route and reason.")] = False
) -> None:
    """Chat with Teller in the terminal; type quit or press Ctrl-D to leave."""
    from bot.assistant import build_policy

    policy = build_policy(get_settings(), version)
    out.print(f"Teller (model {policy.classifier.version}). Type a message; 'quit' or Ctrl-D to leave.")
    options: list[Choice] = []
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
        if line.isdigit() and 1 <= int(line) <= len(options):
            decision = _choose(policy, options[int(line) - 1])
            options = []
            if decision is None:
                continue
        else:
            decision = policy.answer(line)
        _show(decision)
        if debug:
            out.print(f"        [dim]{decision.route.value}: {decision.reason}[/dim]", highlight=False)
        options = [c for c in decision.choices if not c.value.startswith("feedback:")]
        if decision.route is Route.SMALLTALK and "bye" in line.lower():
            return
