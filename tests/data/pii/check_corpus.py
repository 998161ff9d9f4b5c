"""Validate the PII redaction corpus (corpus.jsonl next to this file).

Run from the repository root:

    .venv/bin/python tests/data/pii/check_corpus.py [path/to/corpus.jsonl]

Every case is checked for shape (fields, ids, languages, kinds), for every
`pii` and `clean` value being an exact substring of `text`, for spans that do
not collide, and for the validity of each value of its kind (Luhn for cards,
mod-97 for IBANs, phonenumbers for phones, python-stdnum for national ids, the
published format rules for SSNs and NINOs). Long digit runs in the text must
be annotated either way. Prints counts per kind and language; exits 1 if any
case is invalid.
"""

from __future__ import annotations

import itertools
import json
import re
import sys
import unicodedata
from collections import Counter
from pathlib import Path

import phonenumbers
from stdnum import iban as std_iban
from stdnum.br import cpf
from stdnum.ch import ssn as ch_ssn
from stdnum.cn import ric
from stdnum.de import idnr
from stdnum.es import dni, nie
from stdnum.fr import nir
from stdnum.in_ import aadhaar
from stdnum.it import codicefiscale
from stdnum.jp import in_ as jp_in
from stdnum.kr import rrn
from stdnum.mx import curp
from stdnum.nl import bsn
from stdnum.pl import pesel
from stdnum.ru import inn
from stdnum.tr import tckimlik
from stdnum.us import ssn as us_ssn

KINDS = {
    "card",
    "iban",
    "phone",
    "email",
    "ssn",
    "nino",
    "national_id",
    "sort_code",
    "account",
    "cvv",
    "pin",
    "otp",
    "password",
    "dob",
}
LANGS = {"en", "zh", "ru", "es", "fr", "de", "ar", "hi", "ja", "it", "pt", "pl", "nl", "tr", "ko"}
FIELDS = {"id", "lang", "text", "pii", "clean"}
MIN_CASES = 220
MIN_PER_LANG = {"zh": 15, "ru": 15, "es": 15, "fr": 15, "de": 15, "ar": 3, "hi": 3, "ja": 3}

# Separators people (and copy-paste) put between digit groups.
SEPARATORS = set(" -/.\t\n\r\u00a0\u202f\u2009\u2007\u200b\u2060\u3000")
# Regions a number written in national format (no "+") may belong to, by the case's language.
PHONE_REGIONS = {
    "en": ["GB", "US", "CH"],
    "zh": ["CN"],
    "ru": ["RU"],
    "es": ["ES"],
    "fr": ["FR"],
    "de": ["DE"],
    "ar": ["SA", "AE", "EG"],
    "hi": ["IN"],
    "ja": ["JP"],
    "it": ["IT"],
    "pt": ["BR", "PT"],
    "pl": ["PL"],
    "nl": ["NL"],
    "tr": ["TR"],
    "ko": ["KR"],
}
NATIONAL_ID_MODULES = [
    dni,
    nie,
    ric,
    nir,
    idnr,
    codicefiscale,
    cpf,
    aadhaar,
    inn,
    bsn,
    pesel,
    jp_in,
    ch_ssn,
    rrn,
    tckimlik,
    curp,
]
NINO_RE = re.compile(r"^([A-CEGHJ-PR-TW-Z])([A-CEGHJ-NPR-TW-Z]) ?(\d{2}) ?(\d{2}) ?(\d{2}) ?([A-D])$")
NINO_BAD_PREFIX = {"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"}
EMAIL_RE = re.compile(r"^[^\s@]+@[^\s@]+\.[^\s@.]+$")
LONG_DIGITS_RE = re.compile(r"\d{7,}")


def digits_of(value: str) -> str | None:
    """ASCII digits of value if it is only Unicode digits and separators, else None."""
    out = []
    for ch in value:
        if ch.isdigit():
            out.append(str(unicodedata.digit(ch)))
        elif ch not in SEPARATORS:
            return None
    return "".join(out)


def luhn_ok(number: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def check_card(value: str) -> str | None:
    d = digits_of(value)
    if d is None:
        return "card has characters other than digits and separators"
    if not 13 <= len(d) <= 19:
        return f"card has {len(d)} digits"
    if d[0] not in "23456":
        return "card does not start with a network prefix (2-6)"
    if d.startswith(("34", "37")) and len(d) != 15:
        return "Amex card must have 15 digits"
    if not luhn_ok(d):
        return "card fails Luhn"
    return None


def check_iban(value: str) -> str | None:
    compact = "".join(ch for ch in value if ch not in SEPARATORS).upper()
    if not re.fullmatch(r"[A-Z]{2}\d{2}[A-Z0-9]{10,30}", compact):
        return "IBAN has a bad shape"
    rearranged = compact[4:] + compact[:4]
    if int("".join(str(int(c, 36)) for c in rearranged)) % 97 != 1:
        return "IBAN fails mod-97"
    if not std_iban.is_valid(compact):
        return "IBAN rejected by stdnum (country length / national check)"
    return None


def check_phone(value: str, lang: str) -> str | None:
    d = digits_of(value.replace("+", "").replace("(", "").replace(")", ""))
    if d is None:
        return "phone has unexpected characters"
    if len(d) < 7:
        return "phone too short"
    # "+..." must stand on its own; national format must fit a region of the case's language.
    regions: list[str | None] = (
        [None] if value.lstrip().startswith("+") else list(PHONE_REGIONS.get(lang, []))
    )
    for region in regions:
        try:
            num = phonenumbers.parse(value, region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_valid_number(num):
            return None
    return f"phone is not a valid number (tried {regions})"


def check_email(value: str) -> str | None:
    return None if EMAIL_RE.match(value) else "email has a bad shape"


def check_ssn(value: str) -> str | None:
    m = re.fullmatch(r"(\d{3})([- ]?)(\d{2})\2(\d{4})", value)
    if not m:
        return "SSN has a bad shape"
    area, group, serial = m.group(1), m.group(3), m.group(4)
    if area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000":
        return "SSN area/group/serial not valid"
    if not us_ssn.is_valid(area + group + serial):
        return "SSN rejected by stdnum (blacklisted)"
    return None


def check_nino(value: str) -> str | None:
    m = NINO_RE.match(value.upper())
    if not m:
        return "NINO has a bad shape or forbidden letters"
    if m.group(1) + m.group(2) in NINO_BAD_PREFIX:
        return "NINO has a forbidden prefix"
    return None


def check_national_id(value: str) -> str | None:
    for module in NATIONAL_ID_MODULES:
        try:
            if module.is_valid(value):
                return None
        except Exception:  # any stdnum failure means "not this kind"
            continue
    return "national id not validated by any stdnum module"


def check_sort_code(value: str) -> str | None:
    return None if re.fullmatch(r"\d{2}([- ]?)\d{2}\1\d{2}", value) else "sort code has a bad shape"


def check_account(value: str) -> str | None:
    d = digits_of(value)
    if d is None or not 6 <= len(d) <= 12:
        return "account number should be 6-12 digits"
    return None


def check_cvv(value: str) -> str | None:
    d = digits_of(value)
    return None if d is not None and len(d) in (3, 4) and d == value else "cvv should be 3-4 digits"


def check_pin(value: str) -> str | None:
    d = digits_of(value)
    return None if d is not None and 4 <= len(d) <= 6 and " " not in value else "pin should be 4-6 digits"


def check_otp(value: str) -> str | None:
    if not re.fullmatch(r"[A-Za-z0-9-]{4,10}", value) or not any(ch.isdigit() for ch in value):
        return "otp should be 4-10 alphanumerics with a digit"
    return None


def check_password(value: str) -> str | None:
    if not value or any(ch.isspace() for ch in value):
        return "password should be non-empty without whitespace"
    return None


def check_dob(value: str) -> str | None:
    if not any(ch.isdigit() for ch in value):
        return "dob should contain a digit"
    if re.fullmatch(r"\d{4}", value):
        return "a bare year is not a date of birth"
    return None


CHECKS = {
    "card": check_card,
    "iban": check_iban,
    "email": check_email,
    "ssn": check_ssn,
    "nino": check_nino,
    "national_id": check_national_id,
    "sort_code": check_sort_code,
    "account": check_account,
    "cvv": check_cvv,
    "pin": check_pin,
    "otp": check_otp,
    "password": check_password,
    "dob": check_dob,
}


def spans(text: str, value: str) -> list[tuple[int, int]]:
    out, start = [], 0
    while (i := text.find(value, start)) != -1:
        out.append((i, i + len(value)))
        start = i + 1
    return out


def overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def check_case(case: dict) -> list[str]:
    errors: list[str] = []
    if set(case) != FIELDS:
        return [f"fields {sorted(case)} != {sorted(FIELDS)}"]
    text, lang = case["text"], case["lang"]
    if lang not in LANGS:
        errors.append(f"unknown lang {lang!r}")
    if not case["id"].startswith(lang + "-"):
        errors.append("id should start with the language code")
    if not isinstance(text, str) or not text.strip():
        return [*errors, "empty text"]

    pii_spans: list[tuple[int, int]] = []
    seen = set()
    for item in case["pii"]:
        if set(item) != {"kind", "value"}:
            errors.append(f"pii item fields {sorted(item)}")
            continue
        kind, value = item["kind"], item["value"]
        if (kind, value) in seen:
            errors.append(f"duplicate pii {kind} {value!r}")
        seen.add((kind, value))
        if kind not in KINDS:
            errors.append(f"unknown kind {kind!r}")
            continue
        if not value or value != value.strip():
            errors.append(f"{kind} {value!r} is empty or has surrounding whitespace")
        found = spans(text, value)
        if not found:
            errors.append(f"{kind} {value!r} is not a substring of text")
            continue
        problem = check_phone(value, lang) if kind == "phone" else CHECKS[kind](value)
        if problem:
            errors.append(f"{kind} {value!r}: {problem}")
        pii_spans.extend(found)

    pii_spans.sort()
    for a, b in itertools.pairwise(pii_spans):
        if overlaps(a, b):
            errors.append(f"pii spans overlap: {text[a[0] : a[1]]!r} / {text[b[0] : b[1]]!r}")

    clean_spans: list[tuple[int, int]] = []
    for value in case["clean"]:
        if not isinstance(value, str) or not value:
            errors.append(f"bad clean value {value!r}")
            continue
        found = spans(text, value)
        if not found:
            errors.append(f"clean {value!r} is not a substring of text")
            continue
        free = [s for s in found if not any(overlaps(s, p) for p in pii_spans)]
        if not free:
            errors.append(f"clean {value!r} only occurs inside a pii value")
        d = digits_of(value)
        if d and 13 <= len(d) <= 19 and d[0] in "23456" and luhn_ok(d):
            errors.append(f"clean {value!r} looks like a Luhn-valid card number")
        clean_spans.extend(free)

    covered = pii_spans + clean_spans
    for m in LONG_DIGITS_RE.finditer(text):
        if not any(s[0] <= m.start() and m.end() <= s[1] for s in covered):
            errors.append(f"digit run {m.group()!r} is neither pii nor clean")
    return errors


def main(argv: list[str]) -> int:
    path = Path(argv[1]) if len(argv) > 1 else Path(__file__).with_name("corpus.jsonl")
    failures = 0
    cases = []
    ids: Counter[str] = Counter()
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            case = json.loads(line)
        except json.JSONDecodeError as exc:
            print(f"line {lineno}: bad JSON: {exc}")
            failures += 1
            continue
        ids[case.get("id", "")] += 1
        for err in check_case(case):
            print(f"line {lineno} {case.get('id')}: {err}")
            failures += 1
        cases.append(case)

    for cid, n in ids.items():
        if n > 1:
            print(f"duplicate id {cid} ({n}x)")
            failures += 1

    kinds = Counter(item["kind"] for c in cases for item in c["pii"])
    langs = Counter(c["lang"] for c in cases)
    with_pii = sum(1 for c in cases if c["pii"])
    both = sum(1 for c in cases if c["pii"] and c["clean"])
    print(
        f"cases: {len(cases)}  with pii: {with_pii}  without pii: {len(cases) - with_pii}  "
        f"pii+clean: {both}  clean values: {sum(len(c['clean']) for c in cases)}"
    )
    print("pii per kind:", ", ".join(f"{k}={kinds[k]}" for k in sorted(KINDS)))
    print("cases per lang:", ", ".join(f"{k}={v}" for k, v in sorted(langs.items(), key=lambda kv: -kv[1])))

    if len(cases) < MIN_CASES:
        print(f"too few cases: {len(cases)} < {MIN_CASES}")
        failures += 1
    for lang, n in MIN_PER_LANG.items():
        if langs[lang] < n:
            print(f"too few {lang} cases: {langs[lang]} < {n}")
            failures += 1
    missing = KINDS - set(kinds)
    if missing:
        print("kinds with no case:", ", ".join(sorted(missing)))
        failures += 1
    if failures:
        print(f"FAILED: {failures} problem(s)")
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
