"""The Typer application, its shared options, and the error boundary of every command."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperArgument, TyperGroup, TyperOption

from bot.errors import TellerError
from bot.logs import configure_logging
from bot.privacy.redaction import configure_regions
from bot.settings import Settings, get_settings
from nlu import IntentClassifier, ModelRegistry, NLUError
from positioning.errors import PositioningError
from retrieval.errors import RetrievalError

log = logging.getLogger("teller.cli")
out = Console()
err = Console(stderr=True)

#: Every error a user can cause; anything else is a bug and keeps its traceback.
USER_ERRORS = (TellerError, NLUError, RetrievalError, PositioningError)
#: Errors of a path in the environment rather than of Teller (when they name the path): one line
#: and exit 2 as well.
PATH_ERRORS = (NotADirectoryError, IsADirectoryError, FileExistsError, PermissionError)


class _Group(TyperGroup):
    """Turns Teller's own errors into one clear line on stderr and exit status 2, never a traceback;
    names every command's arguments as their help does (:func:`_name_arguments`)."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        _name_arguments(self)

    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except USER_ERRORS as exc:
            _fail(str(exc), exc)
        except PATH_ERRORS as exc:
            # A path that names a file where a directory is needed, or one Teller may not write
            # (TELLER_HOME=/etc/passwd): the environment's to fix, said in one line. Only an error
            # that names its path; any other (a socket's, say) keeps its traceback, as a bug's does.
            if not exc.filename:
                raise
            _fail(f"{exc.strerror}: {exc.filename}", exc, " (check TELLER_HOME and the paths given)")


def _name_arguments(command: Any) -> None:
    """An argument without a metavar is named in capitals, as its command's help names it ("Make
    the knowledge base exactly FILE"): Typer's usage line showed ``{file}``. Every command of the
    tree, once, as the root group is made (arguments are the commands' own; only --help is lazy)."""
    for param in command.params:
        if isinstance(param, TyperArgument) and param.metavar is None and param.nargs == 1 and param.name:
            param.metavar = param.name.upper()
    for sub in (getattr(command, "commands", None) or {}).values():
        _name_arguments(sub)


def _fail(said: str, exc: Exception, hint: str = "") -> NoReturn:
    """Log ``said`` (once logging is set up), print it as one ``error:`` line and exit with 2."""
    # Before logging is set up (settings that do not validate), Python's last-resort handler
    # would print a bare "command_failed" line above the error: the line below says it all.
    if log.hasHandlers():
        log.warning("command_failed", extra={"fields": {"error": said, "kind": type(exc).__name__}})
    # Not wrapped at the terminal's width: a path cut across lines cannot be copied.
    err.print(f"[red]error:[/red] {escape(said)}{hint}", highlight=False, soft_wrap=True)
    raise typer.Exit(2) from None


def _type_column(display_type: Any) -> Any:
    """Typer's type column, empty for a flag (``--dry-run <bool>`` reads as if it took a value), and
    a number's range after its bare type (``<int> [x>=1]``, not ``<int range> [x>=1]``: at 80
    columns each character of it is one fewer for the help beside it)."""

    def display_type_rich(self: TyperOption, ctx: Any) -> str | None:
        if self.is_flag:
            return None
        if getattr(getattr(self, "type_descriptor", None), "is_ranged", False) and self.metavar is None:
            return f"<{self.bare_type()}>"
        return display_type(self, ctx)

    return display_type_rich


# Every --help of every command is drawn by Typer's rich help (typer.rich_utils.rich_format_help);
# Teller changes three things in it, here: the type column (below), Markdown help text (the app's
# rich_markup_mode) and the arguments' names (_Group). The type column comes from
# TyperOption.display_type_rich (Typer from 0.2x; older ones show no type for a flag anyway); the
# help option is made lazily per command, so only the class reaches it.
if hasattr(TyperOption, "display_type_rich"):
    TyperOption.display_type_rich = _type_column(TyperOption.display_type_rich)  # type: ignore[method-assign]

app = typer.Typer(
    cls=_Group,
    name="teller",
    help="Teller, a chat-first assistant for finance customer service.",
    no_args_is_help=True,
    # Help text as Markdown (the root's mode is every subcommand's): a docstring's lines are
    # reflowed to the terminal (its own line breaks cut the Commands table mid-sentence at 80
    # columns) and ``code`` is drawn as code, not with its backticks.
    rich_markup_mode="markdown",
    pretty_exceptions_enable=False,
    add_completion=False,
)
models_app = typer.Typer(help="List and activate trained intent models.", no_args_is_help=True)
kb_app = typer.Typer(
    help="The FAQ knowledge base: add, list, remove and search entries.", no_args_is_help=True
)
app.add_typer(models_app, name="models")
app.add_typer(kb_app, name="kb")

EncodingOpt = Annotated[
    str | None, typer.Option(help="Encoding of the input file (default: UTF-8, or by its BOM).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
ModelOpt = Annotated[str | None, typer.Option("--model", help="Model version (default: the active one).")]


def emit_json(data: Any) -> None:
    """One JSON document on one line of stdout."""
    sys.stdout.write(json.dumps(data, ensure_ascii=False) + "\n")


@contextmanager
def working(what: str, enabled: bool = True) -> Iterator[None]:
    """A spinner saying ``what`` on stderr while a step of seconds runs, on a terminal only (a
    script's output stays as it was); ``enabled`` False (the step asks the operator questions):
    none. A trial's operator saw ``kb add`` of 20 entries silent for over a minute."""
    if enabled and err.is_terminal:
        with err.status(escape(what)):
            yield
    else:
        yield


@app.callback()
def _setup() -> None:
    settings = get_settings()
    configure_logging(settings.log_dir, settings.log_level, settings.secret_values())
    configure_regions(settings.phone_region_list)  # before anything is redacted


def registry(settings: Settings) -> ModelRegistry:
    return ModelRegistry(settings.models)


def load_classifier(settings: Settings, version: str | None = None) -> IntentClassifier:
    models = registry(settings)
    path = models.path(version) if version else models.active_path()
    return IntentClassifier.load(path, precision=settings.serving_precision, threads=settings.threads)
