"""``teller interview`` (a positioning interview in the terminal) and ``teller brief``."""

from __future__ import annotations

from typing import Annotated

import typer

from bot.cli.app import JsonOpt, app, emit_json, err, out
from bot.settings import get_settings
from positioning.engine import COMPLETED


@app.command()
def interview(
    new: Annotated[
        bool, typer.Option("--new", help="Start a new interview even if one is in progress.")
    ] = False,
    user: Annotated[
        str, typer.Option(help="Whose interviews (terminal users share one id by default).")
    ] = "terminal",
    days: Annotated[int, typer.Option(min=1, help="Days of customer messages the brief looks at.")] = 30,
) -> None:
    """Walk through the five-step positioning method; the brief is written when it is complete."""
    from bot.positioning_desk import PositioningDesk

    desk = PositioningDesk(get_settings())
    reply = desk.service.start_or_resume(user, new=new)
    out.print(reply.text, highlight=False, markup=False, soft_wrap=True)
    state = reply.state
    while state.status not in (COMPLETED, "cancelled"):
        try:
            line = input("> ")
        except (EOFError, KeyboardInterrupt):
            out.print(f"\nPaused; `teller interview` resumes interview {state.id}.")
            return
        if not line.strip():
            continue
        reply = desk.service.handle(user, line, interview_id=state.id)
        state = reply.state
        out.print(reply.text, highlight=False, markup=False, soft_wrap=True)
    if state.status == COMPLETED:
        err.print("Writing the brief (scoring the needs against Teller and reading the logs)...")
        files = desk.write_brief(state.id, days).files
        out.print(
            f"Brief: {files.markdown}" + (f"\nChart: {files.chart}" if files.chart else ""), soft_wrap=True
        )


@app.command()
def brief(
    interview_id: Annotated[str, typer.Argument(metavar="ID", help="Interview id (e.g. iv_1a2b3c4d).")],
    days: Annotated[int, typer.Option(min=1, help="Days of customer messages to look at.")] = 30,
    as_json: JsonOpt = False,
) -> None:
    """Render the positioning brief of a completed interview again, with fresh evidence."""
    from bot.positioning_desk import PositioningDesk

    files = PositioningDesk(get_settings()).write_brief(interview_id, days).files
    if as_json:
        emit_json({"markdown": str(files.markdown), "chart": str(files.chart) if files.chart else None})
        return
    out.print(f"Brief: {files.markdown}" + (f"\nChart: {files.chart}" if files.chart else ""), soft_wrap=True)
