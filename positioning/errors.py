"""The exception tree of the ``positioning`` package: catch :class:`PositioningError` to catch them all."""

from __future__ import annotations


class PositioningError(Exception):
    """Base class of every error raised by :mod:`positioning`."""
