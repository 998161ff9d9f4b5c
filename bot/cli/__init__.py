"""The ``teller`` command line: ``teller --help`` lists the commands."""

from bot.cli import conversation, knowledge, modelling
from bot.cli.app import app

__all__ = ["app", "conversation", "knowledge", "main", "modelling"]


def main() -> None:
    """Console entry point."""
    app()
