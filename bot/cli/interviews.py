"""``teller interview`` (a positioning interview in the terminal) and ``teller brief``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from bot.cli.app import JsonOpt, app, emit_json, err, out
from bot.settings import Settings, get_settings
from positioning.engine import CANCELLED, COMPLETED, QUICK

if TYPE_CHECKING:
    from bot.storage import Store


def measured_defaults(settings: Settings, store: Store, days: int = 30) -> dict[str, Any]:
    """Teller's own figures that prefill the interview's technical questions: see
    :func:`bot.positioning_desk.measured_defaults`; containment judged with the knowledge base's
    encoder (:meth:`bot.positioning_desk.PositioningDesk.measured_figures`), as the brief and the
    Slack desk judge it, so the figure the PM sees is the one the launch check holds."""
    from bot.positioning_desk import PositioningDesk

    desk = PositioningDesk(settings, store=store)
    desk.suggest_days = days
    return desk.measured_figures()


@app.command()
def interview(
    new: Annotated[
        bool, typer.Option("--new", help="Start a new interview even if one is in progress.")
    ] = False,
    quick: Annotated[
        bool,
        typer.Option(
            "--quick",
            help="The quick interview (at most 12 questions, Teller's own figures prefilled); "
            "switches the one in progress to it unless --new.",
        ),
    ] = False,
    resume: Annotated[
        str | None,
        typer.Option(
            "--resume", metavar="ID", help="Carry on with this interview of yours (--list shows them)."
        ),
    ] = None,
    listing: Annotated[
        bool, typer.Option("--list", help="List your interviews, most recent first, and exit.")
    ] = False,
    user: Annotated[
        str, typer.Option(help="Whose interviews (terminal users share one id by default).")
    ] = "terminal",
    days: Annotated[int, typer.Option(min=1, help="Days of customer messages the brief looks at.")] = 30,
) -> None:
    """Walk through the five-step positioning method; the brief is written when it is complete.

    Type an answer, or a command alone on its line (back, skip, edit N, status, pause, resume,
    cancel, quick, full) or after a slash (/back). A list takes one item per line; an empty line
    ends it. A prefilled answer is kept with Enter or "ok".
    """
    from bot.positioning_desk import PositioningDesk

    settings = get_settings()
    desk = PositioningDesk(settings)
    service = desk.service
    desk.suggest_days = days
    service.defaults = desk.measured_figures
    if listing:
        if not service.store.for_user(user):
            out.print("No interviews yet: `teller interview` starts one.", highlight=False, markup=False)
        else:
            out.print(desk.list_text(user).replace("`", ""), highlight=False, markup=False)
        return
    if resume is not None and (new or quick):
        raise typer.BadParameter(
            "--resume carries on with an interview as it is; leave out --new and --quick"
        )
    if resume is not None:
        reply = service.resume(user, resume)
    else:
        reply = service.start_or_resume(user, new=new, mode=QUICK if quick else None)
    out.print(reply.text, highlight=False, markup=False, soft_wrap=True)
    state = reply.state
    while state.status not in (COMPLETED, CANCELLED):
        prompt = service.current_prompt(state)
        if prompt is not None and prompt.multiline:
            hint = (
                "(Press Enter to keep what Teller shows, or type one item per line; an empty line ends them.)"
                if prompt.suggestion is not None
                else "(One item per line; an empty line ends the list.)"
            )
            out.print(hint, highlight=False, markup=False)
        try:
            text = service.read_answer(state, input)
        except (EOFError, KeyboardInterrupt):
            out.print(f"\nPaused; `teller interview` resumes interview {state.id}.")
            return
        reply = service.handle(user, text, interview_id=state.id)
        state = reply.state
        out.print(reply.text, highlight=False, markup=False, soft_wrap=True)
        if state.paused:
            out.print(
                "Type resume to carry on, or press Ctrl-D to stop (`teller interview` resumes it later).",
                highlight=False,
                markup=False,
            )
    if state.status == COMPLETED:
        err.print("Writing the brief (scoring the needs against Teller and reading the logs)...")
        files = desk.write_brief(state.id, days).files
        out.print(_written(files), soft_wrap=True, highlight=False, markup=False)


def _written(files: Any) -> str:
    """Where the brief's files are: the Markdown, the HTML file and the charts."""
    lines = [f"Brief: {files.markdown}"]
    if files.html:
        lines.append(f"HTML: {files.html}")
    lines += [f"Chart: {c}" for c in files.charts]
    return "\n".join(lines)


@app.command()
def brief(
    interview_id: Annotated[str, typer.Argument(metavar="ID", help="Interview id (e.g. iv_1a2b3c4d).")],
    days: Annotated[int, typer.Option(min=1, help="Days of customer messages to look at.")] = 30,
    option: Annotated[
        list[str] | None,
        typer.Option(
            "--option",
            help="Another positioning option to score beside the interview's, e.g. \"Service first: "
            'track a card | 5; understand a fee | 4 | 2; m=0.8 | study; u=retail" (repeatable). '
            "u= names the option's target users (segments or channels seen in the log, or "
            "u=everyone); without it the interview's.",
        ),
    ] = None,
    options_file: Annotated[
        Path | None,
        typer.Option("--options", help="A file of options, one per line in the --option form (# comments)."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Render the positioning brief of a completed interview again, with fresh evidence: the trend
    since its last briefs, and with --option/--options other options scored side by side."""
    from bot.positioning_desk import PositioningDesk
    from positioning.options import parse_options

    text = "\n".join(option or [])
    if options_file is not None:
        try:
            text += "\n" + options_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise typer.BadParameter(f"cannot read {options_file}: {exc}", param_hint="--options") from None
    specs = parse_options(text)
    written = PositioningDesk(get_settings()).write_brief(interview_id, days, options=specs)
    files = written.files
    if as_json:
        emit_json(
            {
                "markdown": str(files.markdown),
                "html": str(files.html) if files.html else None,
                "chart": str(files.chart) if files.chart else None,
                "charts": [str(c) for c in files.charts],
                "score": written.score.score,
                "options": [
                    {
                        "name": s.option.name,
                        "u": list(s.option.target.segments) if s.option.target else [],
                        "p_over": s.result.p_over,
                        "p_d_given_u": s.result.p_d_given_u,
                        "m": s.result.m,
                        "score": s.result.score,
                    }
                    for s in written.comparison
                ],
            }
        )
        return
    if written.comparison:
        from positioning.brief import render_comparison

        out.print(render_comparison(list(written.comparison)), soft_wrap=True, highlight=False, markup=False)
    out.print(_written(files), soft_wrap=True, highlight=False, markup=False)
