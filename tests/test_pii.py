from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from bot.logs import configure_logging
from bot.pii import luhn_valid, redact


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("my card 4111 1111 1111 1111 was stolen", "my card [CARD] was stolen"),
        ("card 5500-0000-0000-0004 please", "card [CARD] please"),
        ("email me at john.doe@example.co.uk", "email me at [EMAIL]"),
        ("call +44 20 7946 0958 now", "call [PHONE] now"),
        ("my number is 07700 900123", "my number is [PHONE]"),
        ("IBAN GB82 WEST 1234 5698 7654 32", "IBAN [IBAN]"),
        ("to DE89370400440532013000 today", "to [IBAN] today"),
        ("account number 12345678", "account number [ACCOUNT]"),
        ("acct no: 1234567", "acct no: [ACCOUNT]"),
        ("sort code 12-34-56", "sort code [ACCOUNT]"),
        ("a mistyped card 4111 1111 1111 1112", "a mistyped card [ACCOUNT]"),
    ],
)
def test_sensitive_numbers_become_placeholders(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "I paid £2,500.00 on 2024-01-15",
        "top up 100 euros",
        "my pin 1234",
        "card ending 1234",
        "charged 3.50 twice",
        "transfer 1000000 please",
    ],
)
def test_ordinary_numbers_are_kept(text: str) -> None:
    assert redact(text) == text


def test_luhn() -> None:
    assert luhn_valid("4111111111111111")
    assert not luhn_valid("4111111111111112")


def test_log_lines_are_json_and_redacted(tmp_path: Path) -> None:
    path = configure_logging(tmp_path, "INFO")
    logger = logging.getLogger("teller.test")
    logger.info(
        "message from %s",
        "jane@bank.example",
        extra={"fields": {"text": "card 4111111111111111", "nested": ["+44 20 7946 0958"]}},
    )
    for handler in logging.getLogger().handlers:
        handler.flush()
    entry = json.loads(path.read_text().splitlines()[-1])
    assert entry["event"] == "message from [EMAIL]"
    assert entry["text"] == "card [CARD]"
    assert entry["nested"] == ["[PHONE]"]
    assert "4111" not in path.read_text()
