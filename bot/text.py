"""Text as it arrives from outside, made safe to judge and to store.

Every channel can deliver text no database or encoder should see: NUL bytes (PostgreSQL refuses
them in text columns), other control characters, and lone UTF-16 surrogates (valid in a JSON
string, ``"\\ud83d"``, but not encodable as UTF-8, so SQLite's driver fails on them).
"""

from __future__ import annotations

import re

from bot.errors import InputError

#: C0 controls and DEL, except tab, line feed and carriage return.
_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SURROGATES = re.compile(r"[\ud800-\udfff]")


def has_surrogates(text: str) -> bool:
    return _SURROGATES.search(text) is not None


def clean(text: str) -> str:
    """``text`` without control characters (tab and line breaks kept). Raises :class:`InputError`
    for a lone surrogate: such a text was not written by a person's keyboard and cannot be stored."""
    if has_surrogates(text):
        raise InputError("the text contains an invalid character (a lone UTF-16 surrogate)")
    return _CONTROLS.sub("", text)


def storable(text: str) -> str:
    """``text`` as the store keeps it whatever happened before: controls removed, a lone surrogate
    replaced by U+FFFD (never an error: what reached the store must be kept)."""
    return _SURROGATES.sub("\ufffd", _CONTROLS.sub("", text))
