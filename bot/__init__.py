"""Teller's dialogue core, channels, storage and command line."""

from bot.errors import ConfigError, InputError, TellerError

__all__ = ["ConfigError", "InputError", "TellerError"]
