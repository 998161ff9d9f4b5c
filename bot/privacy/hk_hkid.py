"""Hong Kong identity card numbers (``A123456(3)``, ``AB987654(3)``): python-stdnum has no module for
them, so this is one in its shape (:func:`compact`, :func:`is_valid`, :func:`calc_check_digit`).

One or two letters, six digits and a check character (0-9 or A), usually typed in brackets. The
check, as the Immigration Department's card numbers use it (published e.g. in "Hong Kong ID Formula
(HKID Number Check Digit)", http://computerterminal.blogspot.hk/2013/02/hong-kong-id-formula-hkid-number-check.html):

- the eight characters before the check, a one-letter number padded with a leading space; a space
  counts 36, a letter A=10 ... Z=35, a digit its value;
- weighted 9, 8, 7, 6, 5, 4, 3, 2 and summed; ``c = 11 - sum % 11``: 10 is ``A``, 11 is ``0``.

``A123456(3)``, ``AB987654(3)`` and ``E364912(5)`` are valid.
"""

from __future__ import annotations

import re

__all__ = ["calc_check_digit", "compact", "is_valid"]

_SHAPE = re.compile(r"[A-Z]{1,2}[0-9]{6}[0-9A]")
_SEPARATORS = re.compile(r"[\s()\-]")


def compact(number: str) -> str:
    """``number`` upper-case, without brackets, spaces or dashes: ``"a123456 (3)"`` -> ``"A1234563"``."""
    return _SEPARATORS.sub("", number).upper()


def calc_check_digit(head: str) -> str:
    """The check character of ``head``: one or two letters and six digits (upper-case, compact)."""
    chars = head.rjust(8)
    total = sum(
        w * (36 if c == " " else int(c) if c.isdigit() else ord(c) - ord("A") + 10)
        for w, c in zip(range(9, 1, -1), chars, strict=True)
    )
    check = 11 - total % 11
    return "A" if check == 10 else "0" if check == 11 else str(check)


def is_valid(number: str) -> bool:
    """Whether ``number`` is an HKID whose check character matches (separators and brackets allowed)."""
    value = compact(number)
    if not value.isascii() or _SHAPE.fullmatch(value) is None:
        return False
    return calc_check_digit(value[:-1]) == value[-1]
