"""PII redaction: card numbers, IBANs, account numbers, emails and phone numbers become typed placeholders.

Used on everything Teller writes: stored messages and logs. Redaction errs on the side of hiding:
any long run of digits that is not a valid card, IBAN or phone number is treated as an account number.
"""

from __future__ import annotations

import re

EMAIL = "[EMAIL]"
IBAN = "[IBAN]"
CARD = "[CARD]"
PHONE = "[PHONE]"
ACCOUNT = "[ACCOUNT]"

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?:[ ]?[A-Z0-9]){11,30}\b", re.IGNORECASE)
# Digit runs, allowing single spaces, dots or dashes between groups, optionally led by "+" or "(".
_DIGITS = re.compile(r"(?<![\w.,])(\+|\(\+?)?\d(?:[ \-.()]{0,2}\d){5,}(?![\w])")
_ACCOUNT_HINT = re.compile(
    r"\b(?:account|acct|a/c|sort code|routing)(?:\s+(?:no\.?|number|num|#))?\s*[:#]?\s*(\d[\d \-]{3,}\d)",
    re.IGNORECASE,
)


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum used by payment card numbers."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def iban_valid(candidate: str) -> bool:
    """ISO 13616 mod-97 check."""
    s = candidate.replace(" ", "").upper()
    if not 15 <= len(s) <= 34:
        return False
    rearranged = s[4:] + s[:4]
    try:
        number = int("".join(str(int(ch, 36)) for ch in rearranged))
    except ValueError:
        return False
    return number % 97 == 1


_DATE = re.compile(r"(\d{4})[-.](\d{1,2})[-.](\d{1,2})|(\d{1,2})[-.](\d{1,2})[-.](\d{4})")


def _is_date(text: str) -> bool:
    match = _DATE.fullmatch(text)
    if not match:
        return False
    if match.group(1):
        month, day = int(match.group(2)), int(match.group(3))
    else:
        day, month = int(match.group(4)), int(match.group(5))
        if month > 12:
            day, month = month, day
    return 1 <= month <= 12 and 1 <= day <= 31


def _classify_digits(match: re.Match[str]) -> str:
    text = match.group(0)
    if _is_date(text):
        return text
    digits = re.sub(r"\D", "", text)
    n = len(digits)
    if 13 <= n <= 19 and luhn_valid(digits):
        return CARD
    if text.startswith(("+", "(")) and 7 <= n <= 15:
        return PHONE
    if digits.startswith("0") and 10 <= n <= 11:
        return PHONE
    if n >= 8:
        return ACCOUNT
    # Six or seven digits with separators, e.g. a sort code 12-34-56: hide it too.
    if re.search(r"[ \-.]", text) and n >= 6:
        return ACCOUNT
    return text


def _replace_iban(match: re.Match[str]) -> str:
    """The longest valid IBAN at the start of the match (it may have swallowed following words)."""
    groups = match.group(0).split(" ")
    for k in range(len(groups), 0, -1):
        candidate = " ".join(groups[:k])
        if iban_valid(candidate):
            rest = " ".join(groups[k:])
            return IBAN + (" " + rest if rest else "")
    return match.group(0)


def redact(text: str) -> str:
    """``text`` with every card number, IBAN, account number, email and phone number replaced."""
    if not text:
        return text
    text = _EMAIL.sub(EMAIL, text)
    text = _IBAN.sub(_replace_iban, text)
    text = _ACCOUNT_HINT.sub(lambda m: m.group(0)[: m.start(1) - m.start(0)] + ACCOUNT, text)
    return _DIGITS.sub(_classify_digits, text)
