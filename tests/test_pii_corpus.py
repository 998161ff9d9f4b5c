"""The independent PII corpora (tests/data/pii/corpus.jsonl, and review.jsonl from a second reviewer)
through bot.privacy.redaction, each with the same asserts.

Each case lists the personal values in its text (``pii``: kind and value as typed) and values that
must survive as typed (``clean``). A value is *caught* when nothing of it is left to read in the
redacted text:

- the value as written is not in the output;
- for a value of 6 or more letters and digits, its compact form (NFKC, letters and digits only) is
  not in the compact form of any stretch of the output between placeholders, so that no separator
  trick (``4111 1111`` -> ``4111-1111``) and no partial redaction hides a leak;
- for a shorter value (a CVV, a PIN), it does not stand in the output as a token of its own.

A caught value must also be replaced by a placeholder of its kind (``national_id`` may also be a more
specific ``[SSN]`` or ``[NINO]``). The test prints the figures, then asserts full recall, every
placeholder of its kind, at most one clean value altered, and idempotence.
"""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path
from typing import Any

import pytest
import regex

from bot.privacy.redaction import PLACEHOLDERS, redact, scan

DATA = Path(__file__).parent / "data" / "pii"
CORPORA = ("corpus.jsonl", "review.jsonl")
ACCEPTED = {kind: {kind} for kind in PLACEHOLDERS}
ACCEPTED["national_id"] = {"national_id", "ssn", "nino"}
PLACEHOLDER = regex.compile(r"\[(?:" + "|".join(p[1:-1] for p in PLACEHOLDERS.values()) + r")\]")


def load(name: str) -> list[dict[str, Any]]:
    path = DATA / name
    if not path.exists():
        pytest.skip(f"{path} is not there yet")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def compact(text: str) -> str:
    return "".join(ch for ch in unicodedata.normalize("NFKC", text) if ch.isalnum())


def caught(value: str, output: str) -> bool:
    if value in output:
        return False
    short = compact(value)
    if len(short) >= 6:
        return not any(short in compact(stretch) for stretch in PLACEHOLDER.split(output))
    return regex.search(rf"(?<![\p{{L}}\p{{N}}]){regex.escape(value)}(?![\p{{L}}\p{{N}}])", output) is None


def occurrences(text: str, value: str) -> list[tuple[int, int]]:
    spans, start = [], text.find(value)
    while start != -1:
        spans.append((start, start + len(value)))
        start = text.find(value, start + 1)
    return spans


@pytest.mark.parametrize("name", CORPORA)
def test_corpus_recall_kinds_and_clean_values(name: str) -> None:
    cases = load(name)
    values = caught_values = right_kind = 0
    clean_values = 0
    missed: list[str] = []
    wrong_kind: list[str] = []
    altered: list[str] = []
    not_idempotent: list[str] = []
    for case in cases:
        text = case["text"]
        result = scan(text)
        if redact(result.text) != result.text:
            not_idempotent.append(case["id"])
        for item in case["pii"]:
            values += 1
            kind, value = item["kind"], item["value"]
            if not caught(value, result.text):
                missed.append(f"{case['id']} {kind} {value!r} -> {result.text!r}")
                continue
            caught_values += 1
            spans = occurrences(text, value)
            kinds = {f.kind for f in result.findings if any(f.start < e and s < f.end for s, e in spans)}
            if kinds and kinds <= ACCEPTED[kind]:
                right_kind += 1
            else:
                wrong_kind.append(f"{case['id']} {kind} {value!r} -> {sorted(kinds)}")
        for value in case["clean"]:
            clean_values += 1
            if value not in result.text:
                altered.append(f"{case['id']} {value!r} -> {result.text!r}")

    print(
        f"\nPII corpus {name}: {len(cases)} cases; recall {caught_values}/{values} "
        f"({100 * caught_values / max(values, 1):.1f} %); placeholder of the right kind "
        f"{right_kind}/{caught_values}; clean values altered {len(altered)}/{clean_values}"
    )
    for line in missed + wrong_kind + altered:
        print("  ", line)
    assert not missed, "values left readable:\n" + "\n".join(missed)
    assert not wrong_kind, "placeholders of the wrong kind:\n" + "\n".join(wrong_kind)
    assert len(altered) <= 1, "clean values altered:\n" + "\n".join(altered)
    assert not not_idempotent, f"redact(redact(x)) != redact(x): {not_idempotent}"
