"""The exception tree of the ``retrieval`` package: catch :class:`RetrievalError` to catch them all."""

from __future__ import annotations


class RetrievalError(Exception):
    """Base class of every error raised by :mod:`retrieval`."""


class KBFormatError(RetrievalError):
    """A knowledge-base file cannot be imported; the message names the file and line."""


class EntryNotFoundError(RetrievalError):
    """No knowledge-base entry has the requested id."""


class IndexCorruptError(RetrievalError):
    """The vector index is unreadable or does not match the knowledge base."""
