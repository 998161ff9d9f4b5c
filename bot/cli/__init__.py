"""The ``teller`` command line: ``teller --help`` lists the commands."""

from bot.cli import (
    cluster,
    conversation,
    interviews,
    knowledge,
    modelling,
    operations,
    privacy,
    privacy_admin,
    serving,
)
from bot.cli.app import app

__all__ = [
    "app",
    "cluster",
    "conversation",
    "interviews",
    "knowledge",
    "main",
    "modelling",
    "operations",
    "privacy",
    "privacy_admin",
    "serving",
]


def main() -> None:
    """Console entry point."""
    app()
