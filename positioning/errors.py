"""The exception tree of the ``positioning`` package: catch :class:`PositioningError` to catch them all."""

from __future__ import annotations


class PositioningError(Exception):
    """Base class of every error raised by :mod:`positioning`."""


class ScriptError(PositioningError):
    """An interview script (YAML) is malformed; the message names the file and the question."""


class InterviewNotFound(PositioningError):
    """No interview with that id (for that user)."""


class InterviewClosed(PositioningError):
    """The interview is completed or cancelled and takes no more answers."""
