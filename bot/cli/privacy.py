"""``teller pii``: what redaction finds in a text, and what Teller would store for it."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from bot.cli.app import JsonOpt, app, emit_json
from bot.privacy.redaction import scan

pii_app = typer.Typer(
    help="Personal data in free text: what redaction finds and hides.", no_args_is_help=True
)
app.add_typer(pii_app, name="pii")

#: Kinds shown without any of their characters: a secret's first digit is already a hint.
_SECRET_KINDS = frozenset({"cvv", "pin", "otp", "password"})


def mask(value: str, kind: str) -> str:
    """``value`` with only its first and last characters shown; nothing of a secret or of a value of
    four characters or fewer (``"4111 1111"`` -> ``"4•••••••1"``)."""
    if kind in _SECRET_KINDS or len(value) <= 4:
        return "•" * len(value)
    return value[0] + "•" * (len(value) - 2) + value[-1]


@pii_app.command("check")
def pii_check(
    text: Annotated[str, typer.Argument(help='The text to check, or "-" to read it from stdin.')],
    as_json: JsonOpt = False,
) -> None:
    """What Teller would store for TEXT, and for each value found: its kind, the detector that found
    it and why. Values are shown masked (first and last character at most), never in full.

    JSON: ``{"text": stored text, "findings": [{"kind", "placeholder", "start", "end", "detector",
    "why", "masked"}]}``, offsets in the text as given."""
    if text == "-":
        text = sys.stdin.read()
    result = scan(text)
    findings = [
        {
            "kind": f.kind,
            "placeholder": f.placeholder,
            "start": f.start,
            "end": f.end,
            "detector": f.detector,
            "why": f.why,
            "masked": mask(text[f.start : f.end], f.kind),
        }
        for f in result.findings
    ]
    if as_json:
        emit_json({"text": result.text, "findings": findings})
        return
    typer.echo(f"stored: {result.text}")
    if not result.findings:
        typer.echo("no personal data found")
        return
    for finding in result.findings:
        masked = mask(text[finding.start : finding.end], finding.kind).replace("\n", " ")
        typer.echo(f"  {finding.placeholder:<14} {masked:<24} {finding.detector:<24} {finding.why}")
