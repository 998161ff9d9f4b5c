"""Every command's ``--help`` as a user on an 80-column terminal reads it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from bot.cli import app
from bot.settings import get_settings

runner = CliRunner()


def _paths(command: object, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    for name, sub in (getattr(command, "commands", None) or {}).items():
        yield from _paths(sub, (*path, name))


COMMANDS = list(_paths(typer.main.get_command(app)))


@pytest.fixture()
def scratch_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """The root callback sets up logging under TELLER_HOME even for --help."""
    monkeypatch.setenv("TELLER_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def help_of(*command: str) -> str:
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "80"}, color=False)
    assert result.exit_code == 0, result.output
    return result.output


def panel_lines(text: str) -> list[str]:
    """The help's lines with the panels' frames taken off and trailing blanks stripped."""
    return [line.strip("│ ").rstrip() for line in text.splitlines()]


def test_commands_are_surveyed() -> None:
    assert ("kb", "sync") in COMMANDS and ("retention", "run") in COMMANDS and () in COMMANDS


@pytest.mark.usefixtures("scratch_home")
@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "teller")
def test_help_shows_flags_as_flags_arguments_in_capitals_and_code_without_backticks(
    command: tuple[str, ...],
) -> None:
    text = help_of(*command)
    # A flag takes no value: "--dry-run <bool>" read as if it needed one.
    assert "<bool>" not in text
    assert "--help   " in text and "--help <" not in text
    # A number's range follows its type ("<int> [x>=1]"): "<int range> [x>=1]" took the help's room.
    assert "range>" not in text
    # ``code`` and `code` in docstrings are drawn as code, never with their backticks.
    assert "`" not in text
    # Arguments named in capitals, as the help's prose names them ("exactly FILE"), not "{file}".
    [usage] = [line for line in text.splitlines() if "Usage:" in line]
    assert re.search(r"[{\[][a-z_]+[}\]]", usage) is None, usage
    assert "[[" not in usage and "...]" not in usage, usage  # "[[PROPOSAL]...]..." for review accept
    # Nothing wider than the terminal.
    assert max(len(line) for line in text.splitlines()) <= 80


@pytest.mark.usefixtures("scratch_home")
def test_help_reflows_docstrings_at_80_columns() -> None:
    """A docstring's own line breaks (written for 100 columns) cut the text mid-sentence."""
    commands = panel_lines(help_of())
    [line] = [line for line in commands if "A handoff reads as" in line]
    assert line.endswith("A handoff reads as the customer would be told it here:")
    sync = panel_lines(help_of("kb", "sync"))
    [line] = [line for line in sync if "(scripts, CI)" in line]
    assert "the sync is applied" in line
    dry_run = next(line for line in sync if line.startswith("--dry-run"))
    assert dry_run.split() == ["--dry-run", "Show", "what", "would", "change;", "change", "nothing."]
    chat = " ".join(panel_lines(help_of("chat")))
    assert "(stored, channel terminal);" in chat
