"""The ``teller`` command line: ``teller --help`` lists the commands."""

from bot.cli import conversation, interviews, knowledge, modelling, operations, serving
from bot.cli.app import app

__all__ = ["app", "conversation", "interviews", "knowledge", "main", "modelling", "operations", "serving"]


def main() -> None:
    """Console entry point."""
    app()
