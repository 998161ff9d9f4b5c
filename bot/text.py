"""Text as it arrives from outside, made safe to judge and to store.

Every channel can deliver text no database or encoder should see: NUL bytes (PostgreSQL refuses
them in text columns), other control characters, and lone UTF-16 surrogates (valid in a JSON
string, ``"\\ud83d"``, but not encodable as UTF-8, so SQLite's driver fails on them).
"""

from __future__ import annotations

import re
import unicodedata

from bot.errors import InputError

#: C0 controls, DEL and the C1 controls (U+0080-U+009F), except tab, line feed and carriage return;
#: a run of them, with the spaces around it, becomes one space ("hello\x00world" is two words).
_CONTROLS = re.compile(r" ?[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]+ ?")
#: Bidirectional embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069): they reorder
#: what operators read ("my card \u202egnissim si\u202c" shows reversed), and no customer needs one
#: to write a message (the marks U+200E/U+200F stay).
_BIDI = re.compile(r"[\u202a-\u202e\u2066-\u2069]")
_SURROGATES = re.compile(r"[\ud800-\udfff]")


def has_surrogates(text: str) -> bool:
    return _SURROGATES.search(text) is not None


def _without_controls(text: str) -> str:
    return _BIDI.sub("", _CONTROLS.sub(" ", text))


def clean(text: str) -> str:
    """``text`` without control characters (tab and line breaks kept; a run between words becomes a
    space) and bidirectional overrides. Raises :class:`InputError` for a lone surrogate: such a text
    was not written by a person's keyboard and cannot be stored."""
    if has_surrogates(text):
        raise InputError("the text contains an invalid character (a lone UTF-16 surrogate)")
    return _without_controls(text)


def visible(text: str) -> bool:
    """Whether ``text`` has anything to read: a letter, digit, punctuation mark or symbol (not only
    spaces, zero-width characters or combining marks)."""
    return any(unicodedata.category(ch)[0] in "LNPS" for ch in text)


def storable(text: str) -> str:
    """``text`` as the store keeps it whatever happened before: controls removed, a lone surrogate
    replaced by U+FFFD (never an error: what reached the store must be kept)."""
    return _SURROGATES.sub("\ufffd", _without_controls(text))
