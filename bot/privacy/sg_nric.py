"""Singapore NRIC and FIN numbers (``S1234567D``): python-stdnum has no module for them, so this is
one in its shape (:func:`is_valid`, :func:`calc_check_letter`).

A prefix letter (S, T: citizens and permanent residents born before / from 2000; F, G: foreigners'
FIN issued before / from 2000; M: FIN issued from 2022), seven digits and a check letter. The check
letter, as documented in "The Singapore NRIC numbers" (http://www.ngiam.net/NRIC/NRIC_numbers.pdf)
and, for the M series, in the rule public validators use since its launch on 1 January 2022:

- ``s`` = the digits weighted 2, 7, 6, 5, 4, 3, 2, plus 4 for T and G, plus 3 for M;
- ``r = s % 11``; the letter is ``"JZIHGFEDCBA"[r]`` for S and T, ``"XWUTRQPNMLK"[r]`` for F and G,
  ``"KLJNPQRTUWX"[10 - r]`` for M.

``S1234567D``, ``T1234567J``, ``F1234567N``, ``G1234567X`` and ``M1234567K`` are valid.
"""

from __future__ import annotations

__all__ = ["calc_check_letter", "is_valid"]

_WEIGHTS = (2, 7, 6, 5, 4, 3, 2)
_OFFSET = {"S": 0, "T": 4, "F": 0, "G": 4, "M": 3}
_TABLE = {"S": "JZIHGFEDCBA", "T": "JZIHGFEDCBA", "F": "XWUTRQPNMLK", "G": "XWUTRQPNMLK"}
_M_TABLE = "KLJNPQRTUWX"


def calc_check_letter(prefix: str, digits: str) -> str:
    """The check letter of ``prefix`` (S, T, F, G or M) and ``digits`` (seven ASCII digits)."""
    r = (_OFFSET[prefix] + sum(w * int(d) for w, d in zip(_WEIGHTS, digits, strict=True))) % 11
    return _M_TABLE[10 - r] if prefix == "M" else _TABLE[prefix][r]


def is_valid(number: str) -> bool:
    """Whether ``number`` (nine characters, any case, no separators) is an NRIC or FIN whose check
    letter matches."""
    number = number.upper()
    if len(number) != 9 or number[0] not in _OFFSET or not number[1:8].isascii():
        return False
    if not number[1:8].isdigit() or not number[8].isalpha():
        return False
    return calc_check_letter(number[0], number[1:8]) == number[8]
