"""The exception tree of the ``bot`` package: catch :class:`TellerError` to catch them all."""

from __future__ import annotations


class TellerError(Exception):
    """Base class of every error raised by :mod:`bot`."""


class ConfigError(TellerError):
    """A setting is missing or invalid."""


class InputError(TellerError):
    """A user-supplied value (message, file, option) cannot be used."""


class NotAuthorised(TellerError):
    """Someone who is not an operator tried an operator command or button."""
