"""bot.privacy.redaction: every kind, every separator, glued scripts, what must stay as typed,
idempotence, offsets, the ``teller pii check`` command and the linear-time bound."""
# ruff: noqa: RUF001 - other scripts and full-width digits are the point here

from __future__ import annotations

import json
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from bot.privacy.bench import HOSTILE_SHAPES, bench_redaction
from bot.privacy.redaction import PLACEHOLDERS, Finding, Scan, _compact, _valid, scan
from bot.privacy.redaction import redact as redact

# --------------------------------------------------------------------------------------------------
# Every kind
# --------------------------------------------------------------------------------------------------

KINDS = [
    # (text, expected output, detector of the one finding)
    ("my card 4111 1111 1111 1111 was stolen", "my card [CARD] was stolen", "stdnum.luhn"),
    ("Amex 3782 822463 10005 charged twice", "Amex [CARD] charged twice", "stdnum.luhn"),
    ("card 5500-0000-0000-0004 please", "card [CARD] please", "stdnum.luhn"),
    ("IBAN GB82 WEST 1234 5698 7654 32 please", "IBAN [IBAN] please", "stdnum.iban"),
    ("to DE89370400440532013000 today", "to [IBAN] today", "stdnum.iban"),
    ("call +44 20 7946 0958 now", "call [PHONE] now", "phonenumbers"),
    ("my number is 07700 900123", "my number is [PHONE]", "phonenumbers"),
    ("ring (212) 555-0198 after 5", "ring [PHONE] after 5", "phonenumbers"),
    ("appelez le 06 12 34 56 78", "appelez le [PHONE]", "phonenumbers"),
    ("email me at john.doe@example.co.uk.", "email me at [EMAIL].", "rule:email"),
    ("SSN 536-90-4399", "SSN [SSN]", "stdnum.us.ssn"),
    ("it is 536-90-4399", "it is [SSN]", "stdnum.us.ssn"),
    ("NI number AB123456C", "NI number [NINO]", "rule:nino"),
    ("NI: AB 12 34 56 C thanks", "NI: [NINO] thanks", "rule:nino"),
    ("DNI 12345678Z", "DNI [NATIONAL_ID]", "stdnum.es.dni"),
    ("mi NIE es X2482300W", "mi NIE es [NATIONAL_ID]", "stdnum.es.nie"),
    ("身份证110101199003074477", "身份证[NATIONAL_ID]", "stdnum.cn.ric"),
    ("Aadhaar 2345 6789 0124", "Aadhaar [NATIONAL_ID]", "stdnum.in_.aadhaar"),
    ("codice fiscale RSSMRA85T10A562S", "codice fiscale [NATIONAL_ID]", "stdnum.it.codicefiscale"),
    ("PESEL 44051401359", "PESEL [NATIONAL_ID]", "stdnum.pl.pesel"),
    ("sort code 12-34-56", "sort code [SORT_CODE]", "rule:sort_code"),
    ("sort code 123456", "sort code [SORT_CODE]", "rule:sort_code"),
    ("pay 20-00-00 please", "pay [SORT_CODE] please", "rule:sort_code"),
    ("account number 12345678", "account number [ACCOUNT]", "rule:account"),
    ("acct no: 1234567", "acct no: [ACCOUNT]", "rule:account"),
    ("a/c 123456789012", "a/c [ACCOUNT]", "rule:account"),
    ("número de cuenta: 0123456789", "número de cuenta: [ACCOUNT]", "rule:account"),
    ("Kontonummer 1234567890", "Kontonummer [ACCOUNT]", "rule:account"),
    ("money went to 87654321 yesterday", "money went to [ACCOUNT] yesterday", "rule:account"),
    ("cvv 123", "cvv [CVV]", "rule:cvv"),
    ("my CVC2 is 8471", "my CVC2 is [CVV]", "rule:cvv"),
    ("security code: 392", "security code: [CVV]", "rule:cvv"),
    ("my pin is 482113", "my pin is [PIN]", "rule:pin"),
    ("PIN: 4821", "PIN: [PIN]", "rule:pin"),
    ("the code is 482913", "the code is [OTP]", "rule:otp"),
    ("OTP: 771204", "OTP: [OTP]", "rule:otp"),
    ("verification code 5521", "verification code [OTP]", "rule:otp"),
    ("2FA code 908172", "2FA code [OTP]", "rule:otp"),
    ("验证码：482913", "验证码：[OTP]", "rule:otp"),
    ("код: 771204", "код: [OTP]", "rule:otp"),
    ("my password is hunter2", "my password is [PASSWORD]", "rule:password"),
    ("passcode = Tr0ub4dor&3", "passcode = [PASSWORD]", "rule:password"),
    ("pwd: x7#kLq", "pwd: [PASSWORD]", "rule:password"),
    ("contraseña: Gato123", "contraseña: [PASSWORD]", "rule:password"),
    ("mon mot de passe est azerty123", "mon mot de passe est [PASSWORD]", "rule:password"),
    ("Passwort: Sommer2024", "Passwort: [PASSWORD]", "rule:password"),
    ("Kennwort ist Blume77", "Kennwort ist [PASSWORD]", "rule:password"),
    ("密码是abc12345", "密码是[PASSWORD]", "rule:password"),
    ("пароль: qwerty123", "пароль: [PASSWORD]", "rule:password"),
    ("DOB 15/03/1990", "DOB [DOB]", "rule:dob"),
    ("d.o.b. 1990-03-15", "d.o.b. [DOB]", "rule:dob"),
    ("I was born on 3 March 1990", "I was born on [DOB]", "rule:dob"),
    ("birthday: March 3rd, 1990", "birthday: [DOB]", "rule:dob"),
    ("fecha de nacimiento 15-03-1990", "fecha de nacimiento [DOB]", "rule:dob"),
    ("née le 3 mars 1990", "née le [DOB]", "rule:dob"),
    ("geboren am 15.03.1990", "geboren am [DOB]", "rule:dob"),
    ("出生日期：1990年3月15日", "出生日期：[DOB]", "rule:dob"),
    ("дата рождения 15.03.1990", "дата рождения [DOB]", "rule:dob"),
    ("my number 123456789012", "my number [NUMBER]", "rule:number"),
    ("a mistyped card 4111 1111 1111 1112", "a mistyped card [NUMBER]", "rule:number"),
]


@pytest.mark.parametrize(("text", "expected", "detector"), KINDS)
def test_every_kind_becomes_its_placeholder(text: str, expected: str, detector: str) -> None:
    result = scan(text)
    assert result.text == expected
    assert [f.detector for f in result.findings] == [detector]


def test_placeholders_are_typed_and_complete() -> None:
    assert set(PLACEHOLDERS) == {
        "card", "iban", "phone", "email", "ssn", "nino", "national_id", "sort_code", "account",
        "cvv", "pin", "otp", "password", "dob", "expiry", "credential", "username", "number",
    }  # fmt: skip
    assert all(p == f"[{k.upper()}]" for k, p in PLACEHOLDERS.items())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("my cvv is 123 and my pin is 4821", "my cvv is [CVV] and my pin is [PIN]"),
        ("password: hunter2! and it still says wrong", "password: [PASSWORD] and it still says wrong"),
        ("the pin of my card is 5813", "the pin of my card is [PIN]"),
        ("el pin de mi tarjeta es 5813", "el pin de mi tarjeta es [PIN]"),
        ("482913 is your verification code", "[OTP] is your verification code"),
        ("got G-582014 as the sign-in code", "got [OTP] as the sign-in code"),
        ("the 3 digits on the back are 615", "the 3 digits on the back are [CVV]"),
        ("login jsmith88 pass Tr0ub4dor&3 not accepted", "login jsmith88 pass [PASSWORD] not accepted"),
        ("my password Blue!Sky_99 expired", "my password [PASSWORD] expired"),
        ("银行卡密码是739105，能帮我改一下吗", "银行卡密码是[PIN]，能帮我改一下吗"),
        ("passport number 123456789", "passport number [NATIONAL_ID]"),
        ("national insurance number QQ 12 34 56 C", "national insurance number [NINO]"),
        ("NIR 1 85 05 78 006 084 36", "NIR [NATIONAL_ID]"),
        ("IBAN DE89 3704 0044 0532 0130 01 (a typo)", "IBAN [IBAN] (a typo)"),
    ],
)
def test_labelled_secrets_replace_the_value_only(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-03-15 07700 900123", "2024-03-15 [PHONE]"),
        (
            "12-34-56 87654321 is where the money should go",
            "[SORT_CODE] [ACCOUNT] is where the money should go",
        ),
        ("4111 1111 1111 1111 4012 8888 8888 1881", "[CARD] [CARD]"),
        ("card 4111 1111 1111 1111 exp 12/26 cvv 123", "card [CARD] exp [EXPIRY] cvv [CVV]"),
        ("call 020 7946 0958 or 020 7946 0959", "call [PHONE] or [PHONE]"),
    ],
)
def test_neighbouring_values_are_told_apart(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "my password is not working",
        "the password is wrong apparently",
        "my password is too short?",
        "password reset please",
        "error code 404 when I open the app",
        "promo code 123456 does not work",
        "postcode 123456",
        "my zip code is 90210",
        "the code is not arriving",
        "my pin was blocked after 3 attempts",
        "card ending 1234",
        "transfer 1000000 please",
        "the 3 cards I have are all blocked",
        "I forgot my password to get into the app!",
        "My passcode was denied.",
        "I don't have my passcode to access the app.",
        "my password is expiring soon",
        "my password is easy to guess",
    ],
)
def test_sentences_about_secrets_are_not_secrets(text: str) -> None:
    assert redact(text) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("my password is dragon", "my password is [PASSWORD]"),
        ("my password is dragon? no, it was reset", "my password is [PASSWORD]? no, it was reset"),
        ("mi contraseña es perro", "mi contraseña es [PASSWORD]"),
    ],
)
def test_a_plain_word_after_password_is_is_the_password(text: str, expected: str) -> None:
    assert redact(text) == expected


# --------------------------------------------------------------------------------------------------
# Separators, normalisation and glued scripts
# --------------------------------------------------------------------------------------------------

SEPARATORS = [
    " ",
    "\u00a0",
    "\u202f",
    "\u2009",
    "\u3000",
    "\t",
    "\n",
    "\u200b",
    "\u2060",
    "-",
    " - ",
    "/",
    ".",
]


@pytest.mark.parametrize("sep", SEPARATORS, ids=[repr(s) for s in SEPARATORS])
def test_a_card_is_found_whatever_separates_its_groups(sep: str) -> None:
    card = sep.join(["4111", "1111", "1111", "1111"])
    text = f"my card {card} was stolen"
    result = scan(text)
    assert result.text == "my card [CARD] was stolen"
    [finding] = result.findings
    assert text[finding.start : finding.end] == card


# (6 + 10, the BIN apart, is a card grouping: see test_card_groupings_of_equal_groups_and_bin_split)
@pytest.mark.parametrize("text", ["41111111 111111 11", "4111 111111111111"])
def test_a_luhn_valid_number_in_an_arbitrary_grouping_is_not_a_card(text: str) -> None:
    assert "card" not in {f.kind for f in scan(f"ref {text} here").findings} | {
        f.kind for f in scan(text).findings
    }


def test_mixed_separators_and_zero_width_characters() -> None:
    assert redact("card 4111\u200b1111 1111 1111 ok") == "card [CARD] ok"
    assert redact("card 4111 \u200b1111-1111/1111 ok") == "card [CARD] ok"
    assert redact("acct 1234\u200b5678") == "acct [ACCOUNT]"
    assert redact("pass\u200bword: hunter2") == "pass\u200bword: [PASSWORD]"


#: Invisible characters other than the zero-width space (Unicode's Default_Ignorable_Code_Point):
#: direction marks and embeddings, invisible operators, variation selectors, Hangul fillers, a tag.
INVISIBLE = [
    "\u200e",
    "\u200f",
    "\u202a",
    "\u202e",
    "\u2063",
    "\u2067",
    "\u061c",
    "\u180e",
    "\u034f",
    "\ufe0f",
    "\u115f",
    "\u3164",
    "\U000e0020",
]


@pytest.mark.parametrize("mark", INVISIBLE, ids=[f"U+{ord(m):04X}" for m in INVISIBLE])
def test_invisible_characters_between_digit_groups_hide_nothing(mark: str) -> None:
    """A direction mark or another invisible character typed (or pasted) between the groups of a
    card, an IBAN or a phone number is read as the separator it stands for: each is found whole."""
    card = mark.join(["4539", "1488", "0343", "6467"])
    result = scan(f"card {card} was stolen")
    assert result.text == "card [CARD] was stolen" and result.findings[0].end - result.findings[
        0
    ].start == len(card)
    assert redact(f"iban GB82{mark}WEST{mark}1234{mark}5698{mark}7654{mark}32") == "iban [IBAN]"
    assert redact(f"call me on 07911{mark}123456") == "call me on [PHONE]"
    assert redact(f"card 4539{mark}1488 0343 6467 ok") == "card [CARD] ok"


def test_full_width_digits_and_ideographic_spaces() -> None:
    assert redact("我的卡号是４１１１\u3000１１１１\u3000１１１１\u3000１１１１") == "我的卡号是[CARD]"
    assert redact("رقم البطاقة ٤١١١١١١١١١١١١١١١") == "رقم البطاقة [CARD]"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("我的卡号是4111111111111111", "我的卡号是[CARD]"),
        ("мой номер карты4111111111111111", "мой номер карты[CARD]"),
        ("pls cancel no.4111111111111111 asap", "pls cancel no.[CARD] asap"),
        ("card#5555555555554444 blocked??", "card#[CARD] blocked??"),
        ("(IBAN:DE89370400440532013000)", "(IBAN:[IBAN])"),
        ("счётDE89370400440532013000", "счёт[IBAN]"),
        ("我的账户是GB82WEST12345698765432", "我的账户是[IBAN]"),
        ("我的手机号是13800138000", "我的手机号是[PHONE]"),
        ("我的邮箱是john@x.com", "我的邮箱是[EMAIL]"),
        ("john@x.com的邮箱", "[EMAIL]的邮箱"),
        ("josé.garcía@example.com", "[EMAIL]"),
        ("müller@straße.de", "[EMAIL]"),
        ("用户@例子.中国", "[EMAIL]"),
        ("почта:иван@почта.рф", "почта:[EMAIL]"),
        ("NI:AB123456C.", "NI:[NINO]."),
    ],
)
def test_values_glued_to_any_script_or_label_are_found(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_an_email_glued_to_cjk_does_not_take_the_sentence() -> None:
    result = scan("我的邮箱是用户@例子.中国的")
    [finding] = result.findings
    assert result.text == "我的邮箱是[EMAIL]的"
    assert "我的邮箱是用户@例子.中国的"[finding.start : finding.end] == "用户@例子.中国"


def test_text_outside_findings_is_kept_byte_for_byte() -> None:
    text = (
        "Ｈｅｌｌｏ\u00a0\u200bthere,\ttab\nnew line "
        "ｃａｒｄ ４１１１ １１１１ １１１１ １１１１ ｅｎｄ\u3000!"
    )
    result = scan(text)
    [finding] = result.findings
    assert result.text == text[: finding.start] + "[CARD]" + text[finding.end :]
    assert text[finding.start : finding.end] == "４１１１ １１１１ １１１１ １１１１"


# --------------------------------------------------------------------------------------------------
# Precision: what must stay as typed
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "charged on 2024-03-15 14:30",
        "charged on 15/03/2024 at 09:15 am",
        "I paid £1,250.00 on 2024-01-15",
        "Betrag 1.250.000,00 € überwiesen",
        "my balance is 1 250 000 EUR",
        "prix: 12 500,50 €",
        "CHF 1'250.00 abgebucht",
        "$3,400 twice",
        "interest went from 3.5% to 4.25 %",
        "I opened it in 2015",
        "order #123456789 never arrived",
        "ref 4829301847",
        "Ref from the SMS: 4829301847",
        "case ID 20240315-0042",
        "ticket 55512345 still open",
        "invoice INV-2024-00123 is wrong",
        "transaction 9876543210 failed",
        "pedido n.º 123456789 sin entregar",
        "SKU 8801643-22, model SM-S918B",
        "USPS tracking number 9400 1000 0000 0000 0000 00 says delivered",
        "server 192.168.1.10 and 2001:db8::1",
        "ISO 2024-03-15T14:30:00Z and 2024-03-15 14:30:00.250+01:00",
        "unix 1710513000 and ms 1710513000123",
        "app v2.13.0 and version 4.12.3",
        "model 20261130-054108-c2db79 deployed",
        "我在2024年3月15日转账了5000元",
        "я перевёл 15000 рублей 15.03.2024",
        "limit is 5000 per day and 20000 per month",
    ],
)
def test_dates_times_amounts_and_references_stay_as_typed(text: str) -> None:
    assert redact(text) == text


def test_a_strong_signal_wins_over_a_protection() -> None:
    assert redact("card 4111111111111111 was declined") == "card [CARD] was declined"
    assert redact("DOB 1990-03-15") == "DOB [DOB]"
    assert redact("account 20240315") == "account [ACCOUNT]"


def test_digits_inside_codes_are_not_numbers() -> None:
    for text in ("SKU12345678901", "hash 3f4a1234567890bc", "build_123456789"):
        assert redact(text) == text


# --------------------------------------------------------------------------------------------------
# Idempotence, offsets, findings, robustness
# --------------------------------------------------------------------------------------------------

ALL_TEXTS = [t for t, _, _ in KINDS] + [
    "hi my card 4111 1111 1111 1111 and it got declined at 14:30 today for £1,250.00",
    "12-34-56 87654321 is where the money should go",
    "[CARD] and [PHONE] were already here, and [EMAIL] too",
]


@pytest.mark.parametrize("text", ALL_TEXTS)
def test_redaction_is_idempotent(text: str) -> None:
    once = redact(text)
    assert redact(once) == once


def test_placeholders_already_there_are_left_alone() -> None:
    text = "my cvv is [CVV], card [CARD], call [PHONE]"
    assert scan(text).findings == ()


def test_findings_point_at_the_original_text() -> None:
    text = "Mail\u00a0josé@example.com,\ncard ４１１１\u200b1111\u200b1111\u200b1111, cvv:\t123"
    result = scan(text)
    assert [f.kind for f in result.findings] == ["email", "card", "cvv"]
    assert [text[f.start : f.end] for f in result.findings] == [
        "josé@example.com",
        "４１１１\u200b1111\u200b1111\u200b1111",
        "123",
    ]
    for finding in result.findings:
        assert isinstance(finding, Finding)
        assert finding.placeholder == PLACEHOLDERS[finding.kind]
        assert finding.why and text[finding.start : finding.end] not in finding.why
    with pytest.raises(AttributeError):
        result.findings[0].kind = "phone"  # type: ignore[misc]


def test_why_names_the_card_network() -> None:
    [finding] = scan("4111 1111 1111 1111").findings
    assert finding.why == "Luhn-valid 16 digits, Visa"


def test_regions_are_configurable() -> None:
    assert scan("it is 612 345 678", regions=("ES",)).text == "it is [PHONE]"
    assert scan("it is 612 345 678", regions=("GB",)).findings == ()
    # after a phone label, a number in a phone grouping is one whatever the regions
    assert scan("ring 612 345 678", regions=("GB",)).text == "ring [PHONE]"


def test_empty_and_clean_texts_come_back_unchanged() -> None:
    for text in ("", " ", "\n", "hello", "ça va? 😀", "\u200b"):
        assert redact(text) == text
        assert scan(text).findings == ()


def test_never_raises_on_any_string() -> None:
    rng = random.Random(7)
    alphabet = (
        "0123456789 +-/.()@#:=\t\n\u00a0\u200b\u3000abcxyzABCXYZ éßñ中文字卡号密码"
        "пароль٤١١١４１１１\ud800\udfff\U0001f600[]"
    )
    for _ in range(300):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 120)))
        result = scan(text)
        assert redact(result.text) == result.text
        last = 0
        for f in result.findings:
            assert last <= f.start < f.end <= len(text)
            assert f.detector != "fallback", f"detection failed on {text!r}"
            last = f.end


def test_a_failing_detector_still_hides_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.privacy import redaction

    def broken(ctx: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(redaction, "_detect_digit_clusters", broken)
    result = scan("card 4111 1111 1111 1111, mail a@b.co, 12 apples")
    assert result.text == "card [NUMBER], mail [EMAIL] 12 apples"
    assert {f.detector for f in result.findings} == {"fallback"}


# --------------------------------------------------------------------------------------------------
# teller pii check
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def cli_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    from bot.settings import get_settings

    monkeypatch.setenv("TELLER_HOME", str(tmp_path / "home"))
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def test_cli_check_prints_what_would_be_stored_and_why(cli_home: Path) -> None:
    from bot.cli import app

    result = CliRunner().invoke(app, ["pii", "check", "card 4111 1111 1111 1111, cvv 123"])
    assert result.exit_code == 0, result.output
    assert "stored: card [CARD], cvv [CVV]" in result.stdout
    assert "stdnum.luhn" in result.stdout and "Luhn-valid 16 digits, Visa" in result.stdout
    assert "4•••••••••••••••••1" in result.stdout
    assert "rule:cvv" in result.stdout and "•••" in result.stdout
    assert "4111 1111" not in result.stdout and "123" not in result.stdout


def test_cli_check_json_and_stdin(cli_home: Path) -> None:
    from bot.cli import app

    text = "mail josé@example.com or call +44 20 7946 0958\n"
    result = CliRunner().invoke(app, ["pii", "check", "-", "--json"], input=text)
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["text"] == "mail [EMAIL] or call [PHONE]\n"
    assert [(f["kind"], f["detector"]) for f in record["findings"]] == [
        ("email", "rule:email"),
        ("phone", "phonenumbers"),
    ]
    email = record["findings"][0]
    assert text[email["start"] : email["end"]] == "josé@example.com"
    assert email["masked"] == "j••••••••••••••m"
    assert "josé" not in result.stdout and "7946" not in result.stdout


def test_cli_check_clean_text(cli_home: Path) -> None:
    from bot.cli import app

    result = CliRunner().invoke(app, ["pii", "check", "what is the exchange rate today?"])
    assert result.exit_code == 0
    assert "no personal data found" in result.stdout


# --------------------------------------------------------------------------------------------------
# Linear time, bounded work
# --------------------------------------------------------------------------------------------------


def _calls(text: str) -> int:
    """Python and C function calls made while scanning ``text`` (deterministic for a given text).

    Calls inside ``phonenumbers`` are left out: at most PHONE_BUDGET parses per text, a constant that
    warm caches can hide on the short text only (its parses are all cached, the long one's are not).
    """
    scan(text)  # warm the caches
    count = 0
    inside = 0  # phonenumbers frames on the stack

    def profile(frame: Any, event: str, arg: object) -> None:
        nonlocal count, inside
        if "phonenumbers" in frame.f_code.co_filename:
            inside += 1 if event == "call" else -1 if event == "return" else 0
        elif event in ("call", "c_call") and not inside:
            count += 1

    sys.setprofile(profile)
    try:
        scan(text)
    finally:
        sys.setprofile(None)
    return count


def _cpu_ms(small: str, large: str, repeats: int = 7) -> tuple[float, float]:
    """Fastest CPU time of ``repeats`` scans of each text, in ms, the two interleaved.

    The minimum, not the median: noise on a shared machine (another process, a collection) only
    ever adds time, and interleaving exposes both texts to the same conditions. Sources: the
    ``timeit`` documentation's advice to read the minimum.
    """
    scan(small)
    scan(large)
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for text, into in ((small, times[0]), (large, times[1])):
            start = time.process_time()
            scan(text)
            into.append(time.process_time() - start)
    return min(times[0]) * 1000, min(times[1]) * 1000


@pytest.mark.parametrize("shape", sorted(HOSTILE_SHAPES))
def test_work_grows_linearly_with_the_length(shape: str) -> None:
    """Four times the text makes at most ~4.5 times the function calls (a quadratic scan would make
    16 times as many), and at most 8 times the CPU time (fastest of seven runs; quadratic: 16)."""
    make = HOSTILE_SHAPES[shape]
    small, large = make(10_000), make(40_000)
    assert _calls(large) <= 4.5 * _calls(small) + 200
    small_ms, large_ms = _cpu_ms(small, large)
    ratio = large_ms / max(small_ms, 0.5)
    assert ratio <= 8, f"{shape}: 4x the text took {ratio:.1f}x the time"


def test_bench_reports_every_shape() -> None:
    result = bench_redaction(chars=2_000, repeats=1)
    assert set(result) == {*HOSTILE_SHAPES, "all"}
    for figures in result.values():
        assert 0 <= figures["p50_ms"] <= figures["max_ms"]


# --------------------------------------------------------------------------------------------------
# Second review: the causes it found
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # 1. a secret label before a longer number does not cut it
        ("pin 5245 4993 9002 6498", "pin [CARD]"),
        ("card + pin: 4604 2972 5793 5225 / 4821", "card + pin: [CARD] / [PIN]"),
        (
            "oops i typed the code 4227 9284 0355 7995 into the otp box",
            "oops i typed the code [CARD] into the otp box",
        ),
        ("pin 1234 5678", "pin [PIN]"),
        ("the verification code is 0770 090 0123", "the verification code is [PHONE]"),
        ("my pin is 1234, card 4111 1111 1111 1111", "my pin is [PIN], card [CARD]"),
    ],
)
def test_a_secret_label_before_a_longer_number_decides_on_the_whole_number(text: str, expected: str) -> None:
    assert redact(text) == expected
    assert redact(expected) == expected


@pytest.mark.parametrize(
    "text",
    [
        "card 4875–3173–0226–5808",  # en dash
        "card 4768—3358—8991—0208",  # em dash
        "card 4864−4438−6369−4427",  # minus sign
        "card 4716‐2866‐7255‐9491",  # U+2010 hyphen
        "card 4716\u20112866\u20117255\u20119491",  # non-breaking hyphen
        "card 4885_6849_6318_8308",
        "card 4910,2471,4762,4397",
        "card 44 35 50 75 25 06 53 80",  # pairs
        "card 4 5 3 4 0 6 3 9 5 6 0 5 0 1 4 5",  # single digits
        "card 438922-2061509850",  # the BIN apart: 6 + 10
        "card 413219 9482157123",
        "card 40881471\r\n30917699",  # split over two lines
        "card " + "\u200b".join("4855501661797022") + ".",  # zero-width spaces, a full stop after
        "\u200b".join("4453335011225012") + " is it",
    ],
)
def test_card_groupings_of_equal_groups_and_bin_split(text: str) -> None:
    result = scan(text)
    assert [f.kind for f in result.findings] == ["card"]
    assert not any(ch.isdigit() for ch in result.text)


def test_zero_width_space_does_not_swallow_the_space_after_a_number() -> None:
    text = "card 4111\u200b1111\u200b1111\u200b1111 ok"
    [finding] = scan(text).findings
    assert text[finding.end :] == " ok"


@pytest.mark.parametrize(
    "text",
    [
        "the total was 1,250,000",
        "appelle-moi au 06 12 34 56 78 demain",
        "years 2019, 2020, 2021, 2022",
        "on 14–03–2024 at 14:30",
        "20 12 30 45 67 89 11 is not a card",  # 14 digits starting with 20: no issuer
    ],
)
def test_new_card_groupings_keep_amounts_dates_and_phones(text: str) -> None:
    assert "card" not in {f.kind for f in scan(text).findings}


def test_french_phone_in_pairs_is_a_phone() -> None:
    assert redact("appelle-moi au 06 12 34 56 78") == "appelle-moi au [PHONE]"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # the whole number, international prefix included: "0044" was left before "[PHONE]"
        ("0044 7700 900 123", "[PHONE]"),
        ("call me on 0044 7700 900 123 please", "call me on [PHONE] please"),
        ("0044 7700 900123", "[PHONE]"),
        # Ofcom's drama range: possible in GB, not valid (not assigned), with + it was kept whole
        ("+44 7700 900123", "[PHONE]"),
        ("my mobile: +44 7700 900123.", "my mobile: [PHONE]."),
        ("+447700900123", "[PHONE]"),
        ("07700 900123 or +44 7700 900124", "[PHONE] or [PHONE]"),
    ],
)
def test_a_possible_number_with_an_international_prefix_is_a_phone_whole(text: str, expected: str) -> None:
    result = scan(text)
    assert result.text == expected
    assert all(f.kind == "phone" for f in result.findings)


@pytest.mark.parametrize(
    "text",
    ["07700 900123", "my number is 07700 900 123", "07700-900-123", "07700900123", "ring 07700 900456 pls"],
)
def test_a_possible_number_of_the_banks_region_with_its_trunk_prefix_is_a_phone(text: str) -> None:
    # A UK bank (regions=["GB"]): no region but Germany called "07700 900123" valid, so it was kept.
    [finding] = scan(text, regions=["GB"]).findings
    assert (finding.kind, finding.detector) == ("phone", "phonenumbers")
    assert finding.why == "possible (not valid) GB number, national format"
    digits = [ch for ch in text if ch.isdigit()]
    assert [ch for ch in text[finding.start : finding.end] if ch.isdigit()] == digits


@pytest.mark.parametrize(
    "text",
    [
        "I paid £1,200.00 on 12/05/2024 at 10:30 for 3 x 500",
        "in 2024 I paid 1200 then 1300, 2 x 250",
        "dial 0044 first, then 20 for London",
        "order no. 07700 900123",  # a labelled reference keeps a possible number
        "ref 0044 7700 900 123",
        "invoice 0123 4567 890 from 03/04/2023",
        "between 08.00 and 20.00 on 01-02-2024",
        "1,200,000.00 EUR on 2024-05-12 10:30:00",
        "07 700 900 123",  # four groups: not a common format of a GB number
    ],
)
def test_possible_numbers_leave_ordinary_numbers_alone(text: str) -> None:
    assert scan(text, regions=["GB"]).text == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            # (the expiry too, since its key's closing quote is read as part of its label)
            '{"card":"4449083716264368","cvv":"914","exp":"08/27"}',
            '{"card":"[CARD]","cvv":"[CVV]","exp":"[EXPIRY]"}',
        ),
        ('{"user":{"pin":"4921"}}', '{"user":{"pin":"[PIN]"}}'),
        ('{"otp":"482913","status":"pending"}', '{"otp":"[OTP]","status":"pending"}'),
        ('{"dob":"1985-03-14","balance":"£1,250.00"}', '{"dob":"[DOB]","balance":"£1,250.00"}'),
        ("| dob | 14/03/1985 |\n| amount | £1,250.00 |", "| dob | [DOB] |\n| amount | £1,250.00 |"),
        ("{'cvv': '914'}", "{'cvv': '[CVV]'}"),
        ('{"password":"hunter2","user":"kim"}', '{"password":"[PASSWORD]","user":"kim"}'),
    ],
)
def test_labelled_values_in_json_and_markdown(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("CID 4821 on the front of my amex", "CID [CVV] on the front of my amex"),
        ("the security code on the back is 552", "the security code on the back is [CVV]"),
        ("security code (on the back) is 552", "security code (on the back) is [CVV]"),
        ("my cvv's 318", "my cvv's [CVV]"),
        ("CVV-Code 318", "CVV-Code [CVV]"),
        ("CVV код 447", "CVV код [CVV]"),
        ("cvv (318)", "cvv ([CVV])"),
        ("cvv 294", "cvv [CVV]"),
        ("pin code is 9 9 3 1", "pin code is [PIN]"),
        ("my pin's 7391", "my pin's [PIN]"),
        ("pin -> 4821", "pin -> [PIN]"),
        ("el código es 6 3 1 8 0 2", "el código es [OTP]"),
        ("one time passcode 90 31 47 just came", "one time passcode [OTP] just came"),
        ("got code 482913 but it says invalid", "got code [OTP] but it says invalid"),
        ("the code they texted was 4829", "the code they texted was [OTP]"),
        ('my password is "correct horse battery staple"', 'my password is "[PASSWORD]"'),
        ("pass: Zx!9qLm", "pass: [PASSWORD]"),
        ("mon mdp c'est Chaton!88", "mon mdp c'est [PASSWORD]"),
        ("changed my password to Tr1cky_Pa55", "changed my password to [PASSWORD]"),
        ("DOB 14-Mar-1985", "DOB [DOB]"),
        ("DOB 14 Mar 85", "DOB [DOB]"),
    ],
)
def test_secret_phrasings(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "my password is 12 characters long",
        "I forgot my PIN",
        "the code never arrived",
        "error code 404",
        "use promo code SAVE20 at checkout",
        "my boarding pass: AB1234",
        "I want to reset my password to get in",
        "what is a maiden name",
        "I forgot my mother's maiden name",
        "my maiden name is not accepted",
        "can I change my surname back to my maiden name",
        # one's own maiden name is a name change to make, not a security answer
        "my maiden name was Patel",
        "My maiden name is Smith, can you update my account to my married name Jones?",
    ],
)
def test_secret_words_in_ordinary_sentences_stay(text: str) -> None:
    assert redact(text) == text


@pytest.mark.parametrize(
    "text",
    [
        "my mobile is 9123 4567",
        "手機 9123 4567",
        "ring mig på 32 12 34 56",
        "mobil 40 61 23 45",
        "Handy: 0151 2345 6789",
        "телефон 8 (912) 345-67-89",
    ],
)
def test_a_number_after_a_phone_label_is_a_phone(text: str) -> None:
    result = scan(text)
    assert [f.kind for f in result.findings] == ["phone"]
    assert not any(ch.isdigit() for ch in result.text)


def test_a_plus_number_glued_to_a_word_is_a_phone() -> None:
    assert redact("whatsapp+6591234567") == "whatsapp[PHONE]"


@pytest.mark.parametrize(
    ("text", "detector"),
    [
        ("DNI: 48302157-H", "stdnum.es.dni"),
        ("SIN 529 346 173", "stdnum.ca.sin"),
        ("henkilötunnus 140385-123B", "stdnum.fi.hetu"),
        ("rijksregisternummer 85.03.14-123.02", "stdnum.be.nn"),
        ("RUT 12.345.678-5", "stdnum.cl.rut"),
        ("CNP 1850314401239", "stdnum.ro.cnp"),  # 13 digits starting with 1: not a timestamp after a label
        ("personnummer 850314-4282", "stdnum.se.personnummer"),
        # labels a trial found read as a phone number's context, or not at all
        ("belgian national number 85.07.30-033.28", "stdnum.be.nn"),
        ("south african ID 8001015009087", "stdnum.za.idnr"),
        ("german steuer id 65929970489", "stdnum.de.idnr"),
    ],
)
def test_national_ids_with_their_check_characters(text: str, detector: str) -> None:
    [finding] = scan(text).findings
    assert finding.kind == "national_id"
    assert finding.end == len(text)
    # the first checksum that accepts the number names it (9 digits also pass ru.inn, us.ssn...)
    assert finding.detector.startswith("stdnum.")
    assert _valid(detector, _compact(text[finding.start : finding.end]))


# Singapore NRIC/FIN: check letters worked out by hand from the published rule (weights 2, 7, 6, 5, 4,
# 3, 2; + 4 for T and G, + 3 for M; r = sum % 11): 1234567 weighs 106, so S: r 7 -> "JZIHGFEDCBA"[7]
# D; T: r 0 -> J; F: r 7 -> "XWUTRQPNMLK"[7] N; G: r 0 -> X; M: r 109 % 11 = 10 -> "KLJNPQRTUWX"[0] K.
# 0000001 weighs 2: S -> I, T (6) -> E, F -> U, M (5) -> "KLJNPQRTUWX"[5] Q. 9876543 weighs 184: S
# (r 8) -> C, T (188, r 1) -> Z.
NRICS = [
    "S1234567D", "T1234567J", "F1234567N", "G1234567X", "M1234567K",
    "S0000001I", "T0000001E", "F0000001U", "M0000001Q", "S9876543C", "T9876543Z",
]  # fmt: skip
# Hong Kong: "A123456(3)": 36*9 + 10*8 + 1*7 + 2*6 + 3*5 + 4*4 + 5*3 + 6*2 = 481, 481 % 11 = 8,
# 11 - 8 = 3; "AB987654(3)": 371 % 11 = 8 -> 3; "E364912(5)": 556 % 11 = 6 -> 5; "C840110(A)":
# 36*9 + 12*8 + 8*7 + 4*6 + 0 + 1*4 + 1*3 + 0 = 507, 507 % 11 = 1, 11 - 1 = 10 -> A.
HKIDS = ["A123456(3)", "AB987654(3)", "E364912(5)", "C840110(A)", "A1234563", "A123456 (3)"]


@pytest.mark.parametrize("number", NRICS)
def test_a_singapore_nric_or_fin_with_its_check_letter_is_a_national_id(number: str) -> None:
    for text in (f"{number}", f"my NRIC is {number}, thanks", f"ic {number.lower()} pls"):
        [finding] = scan(text).findings
        assert (finding.kind, finding.detector) == ("national_id", "bot.privacy.sg_nric")
        assert text[finding.start : finding.end].upper() == number


@pytest.mark.parametrize("number", HKIDS)
def test_a_hong_kong_id_with_its_check_digit_is_a_national_id(number: str) -> None:
    # Alone, only as the card prints it, the check digit in brackets ("A1234563" may be any code).
    alone = (number, f"my id is {number}, thanks") if "(" in number else ()
    for text in (*alone, f"my HKID is {number}, thanks", f"HKID: {number}"):
        [finding] = scan(text).findings
        assert (finding.kind, finding.detector) == ("national_id", "bot.privacy.hk_hkid")
        assert text[finding.start : finding.end] == number  # the brackets too


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # a wrong check character: not an identity number on its own ...
        ("S1234567A", "S1234567A"),
        ("T1234567D and M1234567J", "T1234567D and M1234567J"),
        ("A123456(4) and AB987654(A)", "A123456(4) and AB987654(A)"),
        # ... but after its label (a typo in an identity number is still one)
        ("NRIC S1234567A", "NRIC [NATIONAL_ID]"),
        ("my nric/fin no. is T1234567D.", "my nric/fin no. is [NATIONAL_ID]."),
        ("FIN: G1234567A", "FIN: [NATIONAL_ID]"),
        ("HKID A123456(4) thanks", "HKID [NATIONAL_ID] thanks"),
        ("HKID AB987654(A)", "HKID [NATIONAL_ID]"),
        ("hong kong id card number Z683365(5)", "hong kong id card number [NATIONAL_ID]"),
        # "fin" is a French word: only an NRIC-shaped value after it
        ("à la fin 1234567", "à la fin 1234567"),
        ("la fin du mois 12345678", "la fin du mois [ACCOUNT]"),
        # a labelled reference keeps a value whose check character matches by chance (1 in 11)
        ("booking ref AB9876543", "booking ref AB9876543"),
        ("order no. S1234567D", "order no. S1234567D"),
        # letters and digits of a longer code
        ("SKU S1234567DX", "SKU S1234567DX"),
        ("XS1234567D", "XS1234567D"),
        ("ABC123456(3)", "ABC123456(3)"),
    ],
)
def test_singapore_and_hong_kong_ids_check_characters_and_labels(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "app version 4.12.1 on iOS 17.4.1, running 2024.03.1187",
        "macOS 10.15.7, v2.0.1-beta.3, Chrome/122.0.6261.112",
        "UA: Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/123.0.6312.86 Safari/537.36",
        "Android 14; UP1A.231005.007; app 7.31.2",
        "firmware 1.20.345.6789 installed",
        "номер заказа 9876543210",
        "numer zamówienia 5501234567",
        "رقم الطلب 226520642792",
        "ordine n. 5501234567",
        "Transaktionsnummer 482019384756102938 fehlt",
        "Buchungs-Nr. 5501234567",
        "order 4111111111111111 was declined",  # a Luhn-valid number: the label says what it is
        "at 20240315143022 it failed",  # compact timestamp
    ],
)
def test_versions_references_and_timestamps_stay(text: str) -> None:
    assert redact(text) == text


def test_a_card_label_still_wins_over_luhn_reference_rule() -> None:
    assert redact("order paid with card 4111111111111111") == "order paid with card [CARD]"


def test_a_flood_of_numbers_is_redacted_wholesale_and_nothing_leaks() -> None:
    from bot.privacy.redaction import DENSE_MIN_CHARS, DENSE_VALUES

    line = "card 4111 1111 1111 1111, cvv 123, pin 44 35, mail josé@example.com, my password is dragon. "
    flood = line * (max(DENSE_VALUES, DENSE_MIN_CHARS // len(line)) // 4 + 2)
    result = scan(flood)
    assert result.findings and {f.detector for f in result.findings} == {"dense"}
    for secret in ("4111", "123", "44 35", "josé", "dragon"):
        assert secret not in result.text
    assert result.text.startswith(
        "card [NUMBER] cvv [NUMBER] pin [NUMBER] mail [EMAIL] my password is [PASSWORD]"
    )
    assert redact(result.text) == result.text
    # An ordinary long message is not a flood: every detector runs, typed placeholders, dates kept.
    calm = ("I was charged £1,250.00 on 2024-03-15 and want it back. " * 80) + "card 4111 1111 1111 1111"
    assert len(calm) > DENSE_MIN_CHARS and redact(calm).endswith("card [CARD]")
    assert "2024-03-15" in redact(calm)


# --- Gaps an independent reviewer's corpus found (identity numbers, card groupings, labels) -----------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # India's PAN and Ireland's PPS number (python-stdnum's in_.pan, ie.pps), Australia's TFN
        ("my PAN is BQRPS4821M", "my PAN is [NATIONAL_ID]"),
        ("pan card no: bqrps4821m for kyc", "pan card no: [NATIONAL_ID] for kyc"),
        ("PPSN 1234567T please", "PPSN [NATIONAL_ID] please"),
        ("my pps number is 1234567TW", "my pps number is [NATIONAL_ID]"),
        ("TFN 876 543 210", "TFN [NATIONAL_ID]"),
        ("my social is 123-45-6789", "my social is [SSN]"),
        # CVV, PIN and one-time codes in customers' other words
        ("exp 03/28 ccv 664", "exp [EXPIRY] ccv [CVV]"),
        ("the three numbers on the back are 552", "the three numbers on the back are [CVV]"),
        (
            "the last 3 digits on the back of my card are 211",
            "the last 3 digits on the back of my card are [CVV]",
        ),
        ("my mpin is 2580", "my mpin is [PIN]"),
        ("code from the text: 660217", "code from the text: [OTP]"),
        ("code reçu par SMS : 284017", "code reçu par SMS : [OTP]"),
        # sort codes with other separators and labels; BSB and routing numbers
        ("sort code 20/45/67", "sort code [SORT_CODE]"),
        ("sort code 40.47.84", "sort code [SORT_CODE]"),
        ("NSC 900017", "NSC [SORT_CODE]"),
        ("BSB 062-000 acc 12345678", "BSB [SORT_CODE] acc [ACCOUNT]"),
        ("routing number 021000021", "routing number [SORT_CODE]"),
        # e-mail addresses written out of shape
        ("email: sarah.wilson[at]outlook.com", "email: [EMAIL]"),
        ("john dot smith at gmail dot com", "[EMAIL]"),
        ("write to j.bloggs2 at outlook dot ie", "write to [EMAIL]"),
        ("john.smith@gmail,com", "[EMAIL]"),
        ("john.smith @gmail.com thanks", "[EMAIL] thanks"),
        ("sarah (at) gmail (dot) com", "[EMAIL]"),
    ],
)
def test_more_identity_numbers_labels_and_address_shapes(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "I used a frying pan 123456 times",  # "pan" is a label only before a PAN-shaped value
        "I shop at tesco.com on Fridays",
        "I was at home dot com",
        "meet me at 5 at the branch",
        "look at www.bank.co.uk for rates",
        "I have a routing question",
        "the reference number is 7781234490",
        "transaction reference no. 402918374650",
        "complaint reference CMP-2024-004512",
    ],
)
def test_sentences_and_labelled_references_stay(text: str) -> None:
    assert redact(text) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Luhn fails in a card grouping: hidden whole, not read as a phone number plus a stray group
        ("card 4526 0181 5908 3013", "card [NUMBER]"),
        # Luhn-valid in a grouping of its own: hidden whole (as a number: the grouping is no card's)
        ("card 4532 0151 1283 030 9 (sorry spacing)", "card [NUMBER] (sorry spacing)"),
        ("CARD 4532 0151 12830309", "CARD [NUMBER]"),
        ("card 4 532 0151 1283 0309 was charged twice", "card [NUMBER] was charged twice"),
        ("card 4\u200b532 0151 1283 0309", "card [NUMBER]"),  # a zero-width character inside a group
        ("card 453 201 511 283 0309", "card [NUMBER]"),
        # a sentence word between a reference word and a card does not make the card a reference
        ("the payment is 4532 0151 1283 0309", "the payment is [CARD]"),
        ("my order was 4532015112830309", "my order was [CARD]"),
        # in a card's digit groups a Luhn-valid number is the card it looks like, even labelled
        # as a reference (one run of digits after "order" stays: the label says what it is)
        ("reference 4111-1111-1111-1111 exp 12/27", "reference [CARD] exp [EXPIRY]"),
        ("transaction reference no. 4532 0151 1283 0309", "transaction reference no. [CARD]"),
        ("reference 4111_1111_1111_1111 exp 12/27", "reference [CARD] exp [EXPIRY]"),
        ("reference 4532 O151 1283 0309", "reference [CARD]"),
    ],
)
def test_a_card_number_is_hidden_whole_whatever_its_grouping(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_an_address_out_of_shape_is_found_after_long_prose() -> None:
    prose = "I was at the bank at noon and looked at my statement at home. " * 60  # ~3,800 characters
    assert redact(prose) == prose
    assert redact(prose + "mail me: ann.lee [at] example.com") == prose + "mail me: [EMAIL]"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sms code 571209 not received, got it now 571209", "sms code [OTP] not received, got it now [OTP]"),
        ("my pin is 4921, yes 4921", "my pin is [PIN], yes [PIN]"),
        # a CVV's 3 digits are too often something else; a password's variant is the password changed
        # (session 55: a token starting with its first five characters)
        ("password: Tr0ub4dor3 ... Tr0ub4dor3x", "password: [PASSWORD] ... [PASSWORD]"),
        ("cvv 123 and 123 again", "cvv [CVV] and 123 again"),
    ],
)
def test_a_secret_typed_again_is_hidden_again(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("my memorable word: Rosebud", "my memorable word: [PASSWORD]"),
        ("my mothers maiden name is Fitzgerald", "my mothers maiden name is [PASSWORD]"),
        ("security answer was Fluffy", "security answer was [PASSWORD]"),
        ("the answer to my security question is fluffy", "the answer to my security question is [PASSWORD]"),
        ("my security question answer is fluffy", "my security question answer is [PASSWORD]"),
        ("what is the answer to my security question?", "what is the answer to my security question?"),
        ("I forgot my memorable word", "I forgot my memorable word"),
        ("my memorable word is not working", "my memorable word is not working"),
    ],
)
def test_memorable_words_and_security_answers_are_secrets(text: str, expected: str) -> None:
    assert redact(text) == expected


# --- A reviewer's finding: "is" said short ("password's"), and a login given as a pair ---------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("My password's Hunter2xyz", "My password's [PASSWORD]"),
        ("my password’s Hunter2xyz", "my password’s [PASSWORD]"),
        ("pw's Hunter2xyz", "pw's [PASSWORD]"),
        ("my pwd's hunter2", "my pwd's [PASSWORD]"),
        ("my memorable word's butterfly", "my memorable word's [PASSWORD]"),
        ("my memorable word's butterfly, is that right?", "my memorable word's [PASSWORD], is that right?"),
        ("мой пароль от приложения Qwerty_1984 и он", "мой пароль от приложения [PASSWORD] и он"),
        ("login: janedoe88 / s3cretP@ss", "login: [USERNAME] / [PASSWORD]"),
        ("my login: jdoe88/Passw0rd", "my login: [USERNAME]/[PASSWORD]"),
        ("sign-in: bob@example.com / qwerty123", "sign-in: [EMAIL] / [PASSWORD]"),
        ("user: admin / adm1n!", "user: [USERNAME] / [PASSWORD]"),
        # a reviewer's, on the rules that kept possessives: the word before another clause is read
        ("my password's hunter and I can't log in", "my password's [PASSWORD] and I can't log in"),
        ("my memorable word's rosebud I think", "my memorable word's [PASSWORD] I think"),
        ("login: jdoe / sunshine", "login: [USERNAME] / [PASSWORD]"),
        ("username: marco | letmein", "username: [USERNAME] | [PASSWORD]"),
        ("password for online banking abc123", "password for online banking [PASSWORD]"),
        ("пароль от приложения Qw1984", "пароль от приложения [PASSWORD]"),
        # the fourth held-out set's: a relative clause, and two PINs offered as alternatives
        ("my mums maiden name which is O'Sullivan and", "my mums maiden name which is [PASSWORD] and"),
        (
            "Forgot my pin, i think its either 2580 or 1379??",
            "Forgot my pin, i think its either [PIN] or [PIN]??",
        ),
    ],
)
def test_a_secret_after_an_apostrophe_s_or_a_user_name_and_a_slash(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "the password's wrong",
        "my password's been reset",
        "password's expired, can you help",
        "my password's got a symbol in it",
        "my password's stopped working",
        "memorable word's wrong",
        "my password's too long",
        "login failed / error 500",
        "username: jdoe88 / not working",
        "the login/logout buttons 2 / 3",
        # a reviewer's: possessives, a pair's second word that is no password, versions and times
        "the password's requirements are confusing",
        "the password's field is greyed out",
        "my password's expiry date passed",
        "my memorable word's first letter is capital",
        "the password's strength meter says weak",
        "my password which is not working",
        "the password that was sent to me expired",
        "login: jdoe88 / email",
        "username: jdoe88 / thanks",
        "password for the app v2.3 not accepted",
        "password for online banking 10mins ago",
        "password for the app iOS17 not working",
        "password for the app iOS17.2.1",
        "password for the app v2.3.14b",
        "password for the app 10minutes",
    ],
)
def test_a_sentence_about_a_password_after_apostrophe_s_stays(text: str) -> None:
    assert redact(text).replace("[USERNAME]", "jdoe88") == text


# --- Known misses fixed: word secrets, a PIN after "card ending 3012", letters typed for digits -------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("my memorable word is butterfly", "my memorable word is [PASSWORD]"),
        ("security answer is fluffy", "security answer is [PASSWORD]"),
        ("mother's maiden name is smith", "mother's maiden name is [PASSWORD]"),
        ("my mother's maiden name: smith", "my mother's maiden name: [PASSWORD]"),
        ("memorable word = butterfly", "memorable word = [PASSWORD]"),
        (
            "my memorable word is pudding, it says incorrect",
            "my memorable word is [PASSWORD], it says incorrect",
        ),
        ("my secret answer is rex", "my secret answer is [PASSWORD]"),
        ("my memorable place is paris", "my memorable place is [PASSWORD]"),
        ("my mother's maiden name is Ahmed", "my mother's maiden name is [PASSWORD]"),
        # a mum's or mom's, with a typographic apostrophe, or MMN (a trial's miss: "mum's")
        ("my mum's maiden name is Higgins", "my mum's maiden name is [PASSWORD]"),
        ("moms maiden name is garcia", "moms maiden name is [PASSWORD]"),
        ("mother’s maiden name: smith", "mother’s maiden name: [PASSWORD]"),
        ("MMN: smith", "MMN: [PASSWORD]"),
        # an answer, a name or a phrase may be several words, up to one that goes on with the sentence
        ("my passphrase is correct horse battery staple", "my passphrase is [PASSWORD]"),
        (
            "my security answer is new york but it says wrong",
            "my security answer is [PASSWORD] but it says wrong",
        ),
        (
            "mother's maiden name is van der berg, can you check",
            "mother's maiden name is [PASSWORD], can you check",
        ),
        (
            "mother's maiden name is smith and my dob is 01/02/1980",
            "mother's maiden name is [PASSWORD] and my dob is [DOB]",
        ),
        # a label in those words is still read
        ("my security answer is rex pin 4921", "my security answer is [PASSWORD] pin [PIN]"),
        ("mother's maiden name is smith dob 01/02/1980", "mother's maiden name is [PASSWORD] dob [DOB]"),
        # a memorable *word* is one token: what follows is the sentence
        ("my memorable word is butterfly i think", "my memorable word is [PASSWORD] i think"),
        # after "password is": a word in -ly ending its clause is the password, digits as before
        ("my password is butterfly", "my password is [PASSWORD]"),
        ("my password is holly and it won't let me in", "my password is [PASSWORD] and it won't let me in"),
        ("my password is hunter2", "my password is [PASSWORD]"),
    ],
)
def test_a_word_after_a_word_secret_label_is_the_secret(text: str, expected: str) -> None:
    assert redact(text) == expected
    assert redact(expected) == expected


@pytest.mark.parametrize(
    "text",
    [
        "my memorable word is wrong",
        "my memorable word is not working",
        "my memorable word is stuck",
        "my security answer is broken",
        "my memorable word is down again",
        "security answer is done",
        "my memorable word is case sensitive",
        "is my memorable word case sensitive?",
        "the security answer is case-sensitive?",
        "my security answer is the same as before",
        "my memorable word is locked",
        "my memorable word is expired",
        "my memorable word is forgotten",
        "my memorable word is new",
        "my memorable word is correct but it says wrong",
        "my security answer is being rejected",
        "my security answer is too long",
        "my memorable word is showing as incorrect",
        "my memorable word is asking for the 2nd and 5th letters",
        "my memorable word is apparently wrong",
        "my memorable word is 8 letters long",
        "my memorable word is an animal",
        "my memorable word is my dog's name",
        "my memorable word is something I can't remember",
        "my mother's maiden name is hyphenated",
        "my mother's maiden name is on file",
        "mother's maiden name is the security question",
        "the passphrase is four words long",
        "my passphrase is in my notes",
        "my memorable word isn't working",
        "my memorable word was changed yesterday",
        "what is my memorable word",
        "I forgot my memorable word",
        # after "password is", the sentences that stay
        "my password is wrong",
        "my password is not working",
        "my password is too long",
        "my password is too short",
        "my password is expired",
        "my password is apparently wrong",
        "my password is currently locked",
        "my password is easily guessed",
        "my password is silly",
    ],
)
def test_a_state_after_a_word_secret_label_stays(text: str) -> None:
    assert redact(text) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("the pin for card ending 3012 is 4921", "the pin for card ending 3012 is [PIN]"),
        ("pin for my card ending in 3012: 4921", "pin for my card ending in 3012: [PIN]"),
        ("the PIN for my card ending in ****3012 is 4921", "the PIN for my card ending in ****3012 is [PIN]"),
        ("pin for card number ending with 3012 = 4921", "pin for card number ending with 3012 = [PIN]"),
        ("pin for my debit card (ending 3012) is 4921", "pin for my debit card (ending 3012) is [PIN]"),
        (
            "pin for the card with the last 4 digits 3012 is 4921",
            "pin for the card with the last 4 digits 3012 is [PIN]",
        ),
        ("pin for card 3012 is 4921", "pin for card 3012 is [PIN]"),
        ("the cvv for card ending 3012 is 123", "the cvv for card ending 3012 is [CVV]"),
        ("the password for card ending 3012 is hunter2", "the password for card ending 3012 is [PASSWORD]"),
        ("card ending 3012, pin is 4921", "card ending 3012, pin is [PIN]"),
    ],
)
def test_a_pin_after_the_card_ending_it_belongs_to(text: str, expected: str) -> None:
    assert redact(text) == expected
    pins = [f for f in scan(text).findings if f.kind in ("pin", "cvv", "password")]
    assert [text[f.start : f.end] for f in pins] == [text.rsplit(" ", 1)[1]]


@pytest.mark.parametrize(
    "text",
    [
        "card ending 3012",
        "my card ending 3012 was declined",
        "the pin for card ending 3012 is wrong",
        "what is the pin for card ending 3012",
        "reset the pin for card ending 3012 2 days ago",
        "pin for card ending 3012 was blocked on 12/03/2024",
        "the pin for my card ending 3012 was changed in 2024",
    ],
)
def test_the_last_four_digits_of_a_card_stay(text: str) -> None:
    assert redact(text) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4532 O151 1283 0309", "[CARD]"),
        ("my card is 4532 o151 1283 0309 thanks", "my card is [CARD] thanks"),
        ("4532 O151 1283 O3O9", "[CARD]"),
        ("4532-O151-1283-0309", "[CARD]"),
        ("4111 l111 1111 1111", "[CARD]"),
        ("4111 I111 1111 111l", "[CARD]"),
        ("4111lll111111111", "[CARD]"),
        ("3782 822463 1OOO5", "[CARD]"),
        ("card 4111 I111 1111 1111 exp 12/26 cvv 123", "card [CARD] exp [EXPIRY] cvv [CVV]"),
    ],
)
def test_a_card_typed_with_letters_for_digits_is_a_card(text: str, expected: str) -> None:
    assert redact(text) == expected
    cards = [f for f in scan(text).findings if f.kind == "card"]
    assert len(cards) == 1 and cards[0].detector == "stdnum.luhn" and "read as 0 or 1" in cards[0].why


@pytest.mark.parametrize(
    "text",
    [
        "4111 I111 1111 1112",  # fails Luhn once read
        "4532 O151 1283 0308",
        "4111-1111-llll-1111",  # a group without a digit
        "4532 OOOO OOOO OOOO",
        "4532O151 1283 0309",  # not a card grouping
        "room 4O1 at 12:00",
        "Iphone 12 on order 2O24",
        "flight BA2O1 lands at 10:15, seat 14I",
    ],
)
def test_letters_for_digits_outside_a_valid_card_stay(text: str) -> None:
    assert redact(text) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "the pin for my card ending 3012 is 4921 and for card ending 4455 is 1234",
            "the pin for my card ending 3012 is [PIN] and for card ending 4455 is [PIN]",
        ),
        (
            "pin for card ending 3012 is 4921, and for the one ending 4455 it is 1234",
            "pin for card ending 3012 is [PIN], and for the one ending 4455 it is [PIN]",
        ),
        ("my pin is 4921 and for card 4455 is 1234", "my pin is [PIN] and for card 4455 is [PIN]"),
        (
            "my pin is 4921 and for my wife’s card it's 1234",
            "my pin is [PIN] and for my wife’s card it's [PIN]",
        ),
        ("my cvv is 123 and on the other card it's 456", "my cvv is [CVV] and on the other card it's [CVV]"),
        ("my pin is 4921 and card ending 4455 is 1234", "my pin is [PIN] and card ending 4455 is [PIN]"),
        ("my pin is 4921 and the old one was 1234", "my pin is [PIN] and the old one was [PIN]"),
        (
            "the code they sent was 482913 and then a second one 119034",
            "the code they sent was [OTP] and then a second one [OTP]",
        ),
        (
            "my pin is 4921 and for the other one 5831 and for the business card ending 9999 is 5555",
            "my pin is [PIN] and for the other one [PIN] and for the business card ending 9999 is [PIN]",
        ),
    ],
)
def test_a_second_secret_in_a_joined_clause_is_hidden_too(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Another thing named, or a value of another shape: not a second PIN.
        ("my PIN is 4921 and my balance is 1234", "my PIN is [PIN] and my balance is 1234"),
        ("my PIN is 4921 and for 2 years it worked", "my PIN is [PIN] and for 2 years it worked"),
        (
            "my pin is 4921 and then 1234 pounds went missing",
            "my pin is [PIN] and then 1234 pounds went missing",
        ),
        ("my cvv is 123 and for the other card 45", "my cvv is [CVV] and for the other card 45"),
    ],
)
def test_a_joined_clause_naming_something_else_stays(text: str, expected: str) -> None:
    assert redact(text) == expected


# Example tokens in their issuers' documented formats (none is a live credential).
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0."
    "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"
)


@pytest.mark.parametrize(
    ("text", "expected", "detector"),
    [
        (
            "GET https://api.telegram.org/bot110201543:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/getMe failed",
            "GET https://api.telegram.org/bot[CREDENTIAL]/getMe failed",
            "rule:telegram_bot_token",
        ),
        (
            "token xoxb-1234567890-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
            "token [CREDENTIAL]",
            "rule:slack_token",
        ),
        ("xapp-1-A0123456789-1234567890123-0123456789abcdef", "[CREDENTIAL]", "rule:slack_app_token"),
        (f"Authorization: Bearer {JWT}", "Authorization: Bearer [CREDENTIAL]", "rule:jwt"),
        (f"my token is {JWT}.", "my token is [CREDENTIAL].", "rule:jwt"),
        (
            "Authorization: Bearer 9f8e7d6c5b4a39281706f5e4",
            "Authorization: Bearer [CREDENTIAL]",
            "rule:bearer_token",
        ),
        ("key id AKIAIOSFODNN7EXAMPLE here", "key id [CREDENTIAL] here", "rule:aws_access_key_id"),
        ("ghp_" + "a1B2" * 9, "[CREDENTIAL]", "rule:github_token"),
        ("sk_live_4eC39HqLyjWDarjtT1zdp7dc", "[CREDENTIAL]", "rule:stripe_key"),
        ("key=AIza" + "SyA1" * 8 + "bcd", "key=[CREDENTIAL]", "rule:google_api_key"),
        (
            "here:\n-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nMIIEow+/=\n"
            "-----END RSA PRIVATE KEY-----\nthanks",
            "here:\n[CREDENTIAL]\nthanks",
            "rule:private_key",
        ),
        # Pasted without its END line (cut off, or the rest sent apart).
        (
            "my key: -----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7",
            "my key: [CREDENTIAL]",
            "rule:private_key",
        ),
        (
            "post to https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX failed",
            "post to https://hooks.slack.com/[CREDENTIAL] failed",
            "rule:slack_webhook",
        ),
        # A password in a connection URL, however short; the user and host stay readable.
        (
            "could not connect to postgresql://teller:pw1@db:5432/teller",
            "could not connect to postgresql://teller:[CREDENTIAL]@db:5432/teller",
            "rule:url_password",
        ),
        ("redis://:s3cr@cache:6379/0", "redis://:[CREDENTIAL]@cache:6379/0", "rule:url_password"),
        (
            "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "aws_secret_access_key = [CREDENTIAL]",
            "rule:aws_secret_access_key",
        ),
        (
            '{"SecretAccessKey": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}',
            '{"SecretAccessKey": "[CREDENTIAL]"}',
            "rule:aws_secret_access_key",
        ),
        # (a second reviewer's cases)
        (
            "--aws-secret-access-key wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "--aws-secret-access-key [CREDENTIAL]",
            "rule:aws_secret_access_key",
        ),
        (
            "<SecretAccessKey>wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY</SecretAccessKey>",
            "<SecretAccessKey>[CREDENTIAL]</SecretAccessKey>",
            "rule:aws_secret_access_key",
        ),
        ("postgres://u:p@ss@db:5432/x", "postgres://u:[CREDENTIAL]@db:5432/x", "rule:url_password"),
        ("https://user:" + "x" * 300 + "@host", "https://user:[CREDENTIAL]@host", "rule:url_password"),
        (
            '{"url":"https:\\/\\/HOOKS.SLACK.COM\\/services\\/T00000000\\/B00000000\\/XXXXXXXXXXXXXXXXXXXXXXXX"}',
            '{"url":"https:\\/\\/HOOKS.SLACK.COM\\/[CREDENTIAL]"}',
            "rule:slack_webhook",
        ),
    ],
)
def test_access_tokens_and_keys_are_hidden_whole(text: str, expected: str, detector: str) -> None:
    result = scan(text)
    assert result.text == expected
    assert [(f.kind, f.detector) for f in result.findings] == [("credential", detector)]
    assert redact(expected) == expected


@pytest.mark.parametrize(
    "text",
    [
        "the meeting is at 10:30 and the bearer of bad news is late",
        "time 12:34:56, ratio 123456:7890",
        "order 123456789:ABCDEF",  # too short for a bot token
        "AKIA is not a key on its own, nor is AKIAIOSFODNN7",
        "Bearer token expired",  # no digit: a sentence, not a token
        "sk_live is the prefix of a secret key",
        "-----BEGIN PRIVATE KEY----- with no end",
        "see http://example.com:8080/path and postgresql://teller@db:5432/teller",
        "meet at 10:30@the branch",
        "what is the secret access key for my account? the hooks.slack.com page says nothing",
        "secret_access_key = short",
        # A port, then JSON or a log line: no URL holds a quote, so no password runs on to an "@".
        '{"url":"http://example.com:8080","note":"call bob at the branch@noon"}',
    ],
)
def test_token_lookalikes_stay(text: str) -> None:
    assert redact(text) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # A labelled secret's rule never leaves a token's tail: the credential wins whole.
        ("the code is 110201543:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw", "the code is [CREDENTIAL]"),
        (f"my password is {JWT}{'x' * 80}", "my password is [CREDENTIAL]"),
        # The numbers beside a token are read as beside a placeholder (one pass is enough).
        ("sk_live_abcdefghijklmnop1234 +44 7911 123456", "[CREDENTIAL] [PHONE]"),
        ("my pin is 4921 110201543:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw", "my pin is [PIN] [CREDENTIAL]"),
        # The user of a connection URL may be an e-mail address: both hidden, in one pass.
        ("postgres://user@domain.com:pw@db/x", "postgres://[EMAIL]:[CREDENTIAL]@db/x"),
        # The console's CSV: the key id and its secret beside it.
        ("AKIAIOSFODNN7EXAMPLE,wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "[CREDENTIAL],[CREDENTIAL]"),
        # A key cut off before its END line takes its base64 lines, not the question after it.
        (
            "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\nab3=\n"
            "Thanks, can you tell me my balance please.",
            "[CREDENTIAL]\nThanks, can you tell me my balance please.",
        ),
    ],
)
def test_a_credential_is_hidden_whole_beside_other_kinds(text: str, expected: str) -> None:
    assert redact(text) == expected
    assert redact(expected) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Transaction 20261130:PAYMENT_RECEIVED_FROM_JOHN_SMITH_LTD",
        "timestamp 1700000000:received-payment-confirmation-from-bank",
        "order 1234567:ThisIsMyVeryLongOrderDescriptionHere",
        "xoxo-hugs-and-kisses-to-you",
        "sent xoxo-1234567890 love",
        "ANPAANPAANPAANPAANPA",
    ],
)
def test_banking_text_shaped_like_a_token_stays(text: str) -> None:
    assert redact(text) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # The value after "another card" is a whole card, a date, an amount, a year: not a second PIN.
        (
            "my cvv is 123 and for my other card 4111 1111 1111 1111",
            "my cvv is [CVV] and for my other card [CARD]",
        ),
        ("my pin is 4921 and another 4111-1111-1111-1111", "my pin is [PIN] and another [CARD]"),
        ("my pin is 4921 and the new one 2024-05-01", "my pin is [PIN] and the new one 2024-05-01"),
        (
            "my pin is 4921 and for my other account 1234.56 is the balance",
            "my pin is [PIN] and for my other account 1234.56 is the balance",
        ),
        (
            "my pin is 4921 and another 1000 was taken; I only had 1000 left",
            "my pin is [PIN] and another 1000 was taken; I only had 1000 left",
        ),
        (
            "the code is 482913 and the second one 2024 did not arrive",
            "the code is [OTP] and the second one 2024 did not arrive",
        ),
        # A card's last four without "is" stay.
        ("my cvv is 123 and for my other card 4455", "my cvv is [CVV] and for my other card 4455"),
        ("my pin is 4921 and for my account 1234 please", "my pin is [PIN] and for my account 1234 please"),
    ],
)
def test_a_joined_clause_never_cuts_or_invents_a_secret(text: str, expected: str) -> None:
    assert redact(text) == expected


# --- A password of several words is hidden whole, up to the end of its clause ----------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("my password is blue sky", "my password is [PASSWORD]"),
        ("my password is correct horse battery staple", "my password is [PASSWORD]"),
        ("password: blue sky", "password: [PASSWORD]"),
        ("the passcode is red fox jumps", "the passcode is [PASSWORD]"),
        ("password: correct horse battery staple", "password: [PASSWORD]"),
        ("my password is Correct Horse Battery Staple", "my password is [PASSWORD]"),
        ("my new password is red fox", "my new password is [PASSWORD]"),
        ("my password is blue sky42", "my password is [PASSWORD]"),
        ("the password for card ending 3012 is blue sky", "the password for card ending 3012 is [PASSWORD]"),
        # "now" goes on with the sentence ("it's X now"), as after a one-word password
        ("pwd = open sesame now", "pwd = [PASSWORD] now"),
        # the labels the module reads in other languages, and their clause words
        ("mi contraseña es cielo azul", "mi contraseña es [PASSWORD]"),
        ("mi contraseña es cielo azul y no puedo entrar", "mi contraseña es [PASSWORD] y no puedo entrar"),
        ("mon mot de passe est ciel bleu", "mon mot de passe est [PASSWORD]"),
        (
            "mon mot de passe est ciel bleu et je ne peux pas me connecter",
            "mon mot de passe est [PASSWORD] et je ne peux pas me connecter",
        ),
        ("mein Passwort ist blauer Himmel", "mein Passwort ist [PASSWORD]"),
        (
            "mein Kennwort ist blauer Himmel und ich kann mich nicht anmelden",
            "mein Kennwort ist [PASSWORD] und ich kann mich nicht anmelden",
        ),
        ("Passwort: blauer Himmel aber es geht nicht", "Passwort: [PASSWORD] aber es geht nicht"),
        ("пароль: синее небо не подходит", "пароль: [PASSWORD] не подходит"),
    ],
)
def test_a_password_of_several_words_is_hidden_whole(text: str, expected: str) -> None:
    assert redact(text) == expected
    assert redact(expected) == expected
    [finding] = scan(text).findings
    assert finding.kind == "password"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # the clause ends at a clause word, a punctuation mark, a line break or another script...
        ("my password is blue sky and I can't log in", "my password is [PASSWORD] and I can't log in"),
        ("my password is blue sky but it says wrong", "my password is [PASSWORD] but it says wrong"),
        ("my password is blue sky so why is it locked", "my password is [PASSWORD] so why is it locked"),
        ("my password is blue sky because I like it", "my password is [PASSWORD] because I like it"),
        ("my password is blue sky which I set yesterday", "my password is [PASSWORD] which I set yesterday"),
        ("my password is blue sky then it locked me out", "my password is [PASSWORD] then it locked me out"),
        ("my password is blue sky not working", "my password is [PASSWORD] not working"),
        ("my password is blue sky for the app", "my password is [PASSWORD] for the app"),
        ("my password is blue sky. I can't log in", "my password is [PASSWORD]. I can't log in"),
        ("my password is blue sky, help", "my password is [PASSWORD], help"),
        ("password: blue sky\nHelp me please", "password: [PASSWORD]\nHelp me please"),
        # (the next line's user name is a finding of its own)
        ("password: blue sky\r\nUsername: kim", "password: [PASSWORD]\r\nUsername: [USERNAME]"),
        ("password: blue sky\u2028Help me", "password: [PASSWORD]\u2028Help me"),
        ("pass\u200bword: blue sky\nHelp me", "pass\u200bword: [PASSWORD]\nHelp me"),
        ("password: blue sky\nkonto 1234567", "password: [PASSWORD]\nkonto [ACCOUNT]"),
        # ...or with the first word that may not be a passphrase's after a doubtful first word
        ("my password is correct horse battery staple too", "my password is [PASSWORD] too"),
        # a label in the clause is read as one
        ("my password is blue sky pin 4921", "my password is [PASSWORD] pin [PIN]"),
        ("my password is blue sky, pin 4921", "my password is [PASSWORD], pin [PIN]"),
        # and it is bounded: six words, 64 characters
        (
            "my password is blue sky mountain river stone lake forest tree",
            "my password is [PASSWORD] forest tree",
        ),
        (f"password: {'a' * 40} {'b' * 20} {'c' * 10}", f"password: [PASSWORD] {'c' * 10}"),
    ],
)
def test_a_passphrase_ends_with_its_clause(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_a_passphrase_finding_covers_its_words_only() -> None:
    text = "Hi, my password is blue sky and I can't log in"
    [finding] = scan(text).findings
    assert (finding.kind, text[finding.start : finding.end]) == ("password", "blue sky")


@pytest.mark.parametrize(
    "sentence",
    [
        "I forgot my password",
        "how do I reset my password?",
        "my password is not working",
        "my password is wrong",
        "my password is expired",
        "the password is too short",
        "the password is too long for the field",
        "my password is way too long",
        "my password is 12 characters long",
        "my password is max 20 characters",
        "my password is correct but it won't let me in",
        "my password is correct every time",
        "my password is strong enough",
        "my password is big enough",
        "my password is easy to guess",
        "my password is expiring soon",
        "my password is the same as before",
        "my password is one word",
        "my password is in my notes",
        "my password is apparently wrong",
        "my passcode was denied by the app",
        "my password was changed yesterday",
        "mi contraseña es incorrecta",
    ],
)
def test_sentences_about_a_password_lose_no_word(sentence: str) -> None:
    """Sentences that only talk about a password stay whole, alone and after a passphrase."""
    assert redact(sentence) == sentence
    text = f"my password is blue sky. {sentence}"
    assert redact(text) == f"my password is [PASSWORD]. {sentence}"
    text = f"password: red fox jumps\n{sentence}"
    assert redact(text) == f"password: [PASSWORD]\n{sentence}"


@pytest.fixture
def singapore_bank() -> Iterator[None]:
    from bot.privacy.redaction import configure_regions

    assert configure_regions(["sg"])[:2] == ("SG", "GB")
    try:
        yield
    finally:
        configure_regions(())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("my mobile number 9123 4567", "my mobile number [PHONE]"),
        ("call 9123 4567 after 6", "call [PHONE] after 6"),
        ("my number 8123-4567 thanks", "my number [PHONE] thanks"),
        ("office 6123 4567", "office [PHONE]"),
        ("ref 1234 5678", "ref 1234 5678"),  # valid nowhere in Singapore (no 1xxx numbers)
        ("order 8123 4567 shipped", "order 8123 4567 shipped"),  # a labelled reference
        ("I paid 2500 0000 on 12/05/2024", "I paid 2500 0000 on 12/05/2024"),
        ("+65 9123 4567", "[PHONE]"),
    ],
)
def test_eight_digit_numbers_are_phones_only_in_the_banks_own_regions(
    singapore_bank: None, text: str, expected: str
) -> None:
    """A Singapore bank (``TELLER_PHONE_REGIONS=SG``): its customers write mobile numbers as eight
    digits, which no region of the built-in list has; without the setting they are kept."""
    assert redact(text) == expected


def test_eight_digit_numbers_are_kept_without_a_banks_region() -> None:
    assert redact("my number 9123 4567") == "my number 9123 4567"


def test_an_unknown_phone_region_is_refused() -> None:
    from bot.privacy.redaction import configure_regions

    with pytest.raises(ValueError, match="XX"):
        configure_regions(["XX"])
    assert redact("my number 9123 4567") == "my number 9123 4567"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Spaces or hyphens inside an NRIC, as typed for legibility or copied from a form.
        ("NRIC: S 1234567 D", "NRIC: [NATIONAL_ID]"),
        ("NRIC S-1234567-D", "NRIC [NATIONAL_ID]"),
        # A Hong Kong check digit in square brackets goes with the number.
        ("my id card A123456[3]", "my id card [NATIONAL_ID]"),
        ("HKID: Z683365[5] thanks", "HKID: [NATIONAL_ID] thanks"),
        # "NI number" and "NINO" label a National Insurance number whatever its prefix letters.
        ("my NI number is QQ 12 34 56 C", "my NI number is [NINO]"),
        ("NINO: QQ123456C", "NINO: [NINO]"),
        ("ni no idea", "ni no idea"),
    ],
)
def test_identity_numbers_typed_with_separators_brackets_or_short_labels(text: str, expected: str) -> None:
    """A trial's findings: each was kept, or left its check digit ("[NATIONAL_ID][3]")."""
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "In 2024 I paid 12000 and in 2025 15000",
        "paid 2023 12500 total",
        "budget 2026 150000",
        "in 2025 15000 was paid",
        "salary 2024 45000 2025 48000",
    ],
)
def test_a_year_and_an_amount_are_not_a_phone_number(text: str) -> None:
    """ "2025 15000" read whole is a valid German number without its trunk prefix, which nobody
    writes: the amount a customer disputes was stored as [PHONE]."""
    assert redact(text) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Several numbers in a row: each is hidden (the second and later were kept as typed).
        ("+44 7911 123456 / +44 7911 654321", "[PHONE] / [PHONE]"),
        ("+44 7911 123456 +44 7911 654321", "[PHONE] [PHONE]"),
        ("+44 7911 123456\n+44 7911 654321\n+44 7911 111222", "[PHONE]\n[PHONE]\n[PHONE]"),
        ("+44 7911 123456 07911 654321", "[PHONE] [PHONE]"),
        # The country code in brackets, and a trunk prefix in brackets after it.
        ("(+65) 9123 4567", "[PHONE]"),
        ("call (+44) 7911 123456 now", "call [PHONE] now"),
        ("+65 (0) 9123 4567", "[PHONE]"),
        ("see (+5) items", "see (+5) items"),
        # An HKID's letter typed apart from its digits, after its label.
        ("HKID: A 123456 3", "HKID: [NATIONAL_ID]"),
        ("my HKID is A 123456 (3)", "my HKID is [NATIONAL_ID]"),
        ("my id is a 5 minute walk", "my id is a 5 minute walk"),
        # An amount with its cents is not a phone number.
        ("my balance is 1234567.89", "my balance is 1234567.89"),
        ("call 06.12.34.56.78", "call [PHONE]"),
    ],
)
def test_numbers_in_a_row_bracketed_codes_and_spaced_ids(text: str, expected: str) -> None:
    """A trial's findings: only the first of several numbers was hidden (a list of 30 mobiles kept
    29), "(+65) 9123 4567" and "+65 (0) 9123 4567" were kept, and so was an HKID typed "A 123456 3"
    after its label; an amount with cents became [PHONE]."""
    assert redact(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # More digit groups in a row than one number has: every number of the list is hidden.
        ("07911 123 456 / 07911 654 321 / 07911 111 222", "[PHONE] / [PHONE] / [PHONE]"),
        ("07911 123 456\n07911 654 321\n07911 111 222", "[PHONE]\n[PHONE]\n[PHONE]"),
        ("020 7946 0958 / 020 7946 0123 / 020 7946 0456", "[PHONE] / [PHONE] / [PHONE]"),
        ("07911-123-456 / 07911-654-321 / 07911-111-222", "[PHONE] / [PHONE] / [PHONE]"),
        ("07911 123 456 07911 654 321 07911 111 222", "[PHONE] [PHONE] [PHONE]"),
        (
            "+44 20 7946 0958 / 020 7946 0123 / 020 7946 0456 / 0161 496 0000",
            "[PHONE] / [PHONE] / [PHONE] / [PHONE]",
        ),
        (
            "numbers: " + " / ".join(f"07911 {i:03d} 456" for i in range(100, 130)),
            "numbers: " + " / ".join(["[PHONE]"] * 30),
        ),
    ],
)
def test_a_list_of_national_numbers_longer_than_one_candidate(text: str, expected: str) -> None:
    """A session's finding: a run of more than seven digit groups was no candidate at all, so three
    national numbers in a row ("07911 123 456 / ...", one per line as pasted) were all kept; and a
    "+44" number ahead of them was read as a card "in a grouping no card uses" across the slash,
    leaving the next number's last group."""
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "I paid 100 200 300 on those days",
        "limit 500 1000 2000 5000",
        # Valid Indian or Brazilian numbers read so, but numbers are not written in pairs without
        # their 0 or "+" (a review's finding).
        "fees 15 20 25 30 35",
        "the fees were 5 10 15 20 25",
        "scores 10 20 30 40 50 60 70 80",
    ],
)
def test_amounts_in_a_row_are_not_a_number_without_its_trunk_prefix(text: str) -> None:
    """Read without a trunk prefix "100 200 300" is a valid French number and "500 1000 2000" a
    British one; in national format of three or more groups such regions need their 0. Groups of one
    or two digits, each a multiple of five, without a 0 are amounts unless a phone word is near."""
    assert redact(text) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("my number is 98 76 54 32 10", "my number is [PHONE]"),
        ("98 76 54 32 10 is my whatsapp", "[PHONE] is my whatsapp"),
        ("06 12 34 56 78", "[PHONE]"),
        # Without a cue word: a country code without its "+", or plain pairs (a review's findings:
        # the first rule let every one of these through).
        ("44 79 11 12 34 56", "[PHONE]"),
        ("33 6 12 34 56 78", "[PHONE]"),
        ("91 98 76 54 32 10", "[PHONE]"),
        ("55 11 91 23 45 67 8", "[PHONE]"),
        ("98 76 54 32 10", "[PHONE]"),
        ("meine Nummer ist 98 76 54 32 10", "meine Nummer ist [PHONE]"),
        ("mon numéro est le 6 12 34 56 78", "mon numéro est le [PHONE]"),
        ("meu número é 11 91 23 45 67 8", "meu número é [PHONE]"),
        ("benim numaram 5 32 12 34 56 7", "benim numaram [PHONE]"),
        ("my numbers are 98 76 54 32 10 and 98 11 22 33 44", "my numbers are [PHONE] and [PHONE]"),
        (
            "call me on 98 76 54 32 10 or 98 11 22 33 44 or 97 11 22 33 44 or 96 11 22 33 44",
            "call me on [PHONE] or [PHONE] or [PHONE] or [PHONE]",
        ),
        # Typed digit by digit: no window of seven groups held a whole number (a trial's finding).
        ("ring me 9 8 7 6 5 4 3 2 1 0", "ring me [PHONE]"),
        ("my number is 0 7 9 1 1 1 2 3 4 5 6 ok", "my number is [PHONE] ok"),
        ("call + 4 4 7 9 1 1 1 2 3 4 5 6", "call [PHONE]"),
        ("mobile 9 1 2 3 4 5 6 7", "mobile [PHONE]"),
        ("steps 1 2 3 4 5 6 7 8 9 10", "steps 1 2 3 4 5 6 7 8 9 10"),
    ],
)
def test_numbers_in_pairs_or_digit_by_digit_are_phones(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # A country code without its "+": an international number (a review's finding: these were
        # hidden only as German numbers without their 0, which the trunk rule no longer reads).
        ("my number is 4420 7946 0958", "my number is [PHONE]"),
        ("call me on 44 7911 123 456", "call me on [PHONE]"),
        ("44-7911-123-456", "[PHONE]"),
        ("whatsapp 49 171 1234567", "whatsapp [PHONE]"),
        # A trunk prefix after a slash starts the next number of a list; a German area code's slash
        # does not.
        ("06 12 34 56 78 / 06 22 34 56 78 / 06 13 34 56 78", "[PHONE] / [PHONE] / [PHONE]"),
        ("087 123 4567 / 087 765 4321 / 087 111 2222", "[PHONE] / [PHONE] / [PHONE]"),
        ("call 030/12345678 or 0221 / 1234567", "call [PHONE] or [PHONE]"),
        # A number with its trunk 0 whose last group reads as a year, another number after it.
        ("06221 2024 06221 2025", "[PHONE] [PHONE]"),
        # Digits right after an area code in brackets are that number's, not the start of another.
        ("(212) 736-1234 / (212) 736-4321 / (212) 736-9999", "[PHONE] / [PHONE] / [PHONE]"),
    ],
)
def test_numbers_with_a_bare_country_code_and_lists_split_by_slashes(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_a_number_without_its_trunk_prefix_in_two_groups_is_still_hidden() -> None:
    assert redact("my number 7911 123456") == "my number [PHONE]"
    assert redact("7911 123 456") == "[PHONE]"  # valid elsewhere, and hidden


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "My IBAN is DE89 3704 0044 0532 0130 00 and my DOB is 12/03/1985",
            "My IBAN is [IBAN] and my DOB is [DOB]",
        ),
        ("IBAN: DE89370400440532013000 DOB 12/03/1985", "IBAN: [IBAN] DOB [DOB]"),
        ("IBAN DE89 3704 0044 0532 0130 01 dob 12/03/1985", "IBAN [IBAN] dob [DOB]"),
        ("IBAN GB82 WEST 1234 5698 7654 32 and my pin is 4821", "IBAN [IBAN] and my pin is [PIN]"),
        ("NI number QQ123456C and my DOB is 12/03/1985", "NI number [NINO] and my DOB is [DOB]"),
        ("my NRIC is S1234567D and my DOB is 12/03/1985", "my NRIC is [NATIONAL_ID] and my DOB is [DOB]"),
        (
            "my passport number is 123456789 and my DOB is 12/03/1985",
            "my passport number is [NATIONAL_ID] and my DOB is [DOB]",
        ),
    ],
)
def test_a_label_after_an_iban_or_an_id_is_still_read(text: str, expected: str) -> None:
    """A trial's findings: the IBAN or identity-number label's value took the words after the
    number with it, so the date of birth labelled after it was stored (and posted to the ops
    thread) as typed."""
    assert redact(text) == expected


def test_configuring_regions_forgets_what_was_read_before() -> None:
    """A reviewer's finding: results cached under the default regions were reused after
    ``configure_regions(["GB"])`` (the same list of regions, GB first), and after a reset."""
    from bot.privacy.redaction import configure_regions

    assert redact("08001111") == "[ACCOUNT]"  # eight digits: a UK account number
    try:
        configure_regions(["GB"])
        assert redact("08001111") == "[PHONE]"  # eight digits: a number of the bank's region
    finally:
        configure_regions(())
    assert redact("08001111") == "[ACCOUNT]"
    assert redact("8216 4490") == "8216 4490"
    try:
        configure_regions(["SG"])
        assert redact("8216 4490") == "[PHONE]"  # a Singapore mobile
    finally:
        configure_regions(())
    assert redact("8216 4490") == "8216 4490"


@pytest.mark.parametrize("text", ["my tracking code is A1234563", "flight A1234563 was cancelled"])
def test_an_hkid_without_label_or_brackets_is_a_code(text: str) -> None:
    assert redact(text) == text
    assert redact(text.replace("A1234563", "A123456(3)")) != text.replace("A1234563", "A123456(3)")


@pytest.mark.parametrize(
    "text",
    ["I sent 150000000.00 IDR", "my balance is 1 234 567.89", "balance 1'234'567.89", "1.234.567,89 EUR"],
)
def test_an_amount_with_its_cents_keeps_its_whole_part(text: str) -> None:
    """A reviewer's finding: the digits before the cents were read as a phone number
    ("I sent [PHONE].00 IDR")."""
    assert redact(text) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # A card's expiry: after its label, or right after the card number with the code after it
        # (a pasted card line: number, expiry and code are what a card-not-present payment needs).
        ("card 4111 1111 1111 1111, cvv 123, exp 12/25 pls", "card [CARD], cvv [CVV], exp [EXPIRY] pls"),
        ("Expiry: 11/26", "Expiry: [EXPIRY]"),
        ("exp 0428", "exp [EXPIRY]"),
        ("my card expires march 2027", "my card expires [EXPIRY]"),
        ("my pin has been changed to 4921", "my pin has been changed to [PIN]"),
        ("valid thru 09/2028", "valid thru [EXPIRY]"),
        ("4111 1111 1111 1111 12/26 123", "[CARD] [EXPIRY] [CVV]"),
        ("4111 1111 1111 1111, 12/26", "[CARD], [EXPIRY]"),
        # A date of birth a few words after its label, the label's clause only.
        ("my DOB on the account is wrong, it says 01/01/1970 but it's 11/01/1970",
         "my DOB on the account is wrong, it says [DOB] but it's [DOB]"),
        ("DOB on file is wrong: 14/02/1985", "DOB on file is wrong: [DOB]"),
        # A PIN being set or changed.
        ("new pin should be 1357 pls", "new pin should be [PIN] pls"),
        ("pin changed to 4921", "pin changed to [PIN]"),
        ("set my pin as 4921", "set my pin as [PIN]"),
        ("my pin is four nine two one", "my pin is [PIN]"),
        ("security code is nine nine nine", "security code is [CVV]"),
        ("card 4111111111111111, 12/26, 150.00 charged", "card [CARD], [EXPIRY], 150.00 charged"),
        ("4111 1111 1111 1111 12/26 1234 5678", "[CARD] [EXPIRY] 1234 5678"),
        # A card after another number's digit groups (a year, a phone number) was left in the clear.
        ("paid on 14/02/2024 4111 1111 1111 1111", "paid on 14/02/2024 [CARD]"),
        ("call 020 7946 0958 4111 1111 1111 1111", "call [PHONE] [CARD]"),
        ("order 1234 5678 9012 5555 5555 5555 4444", "order 1234 5678 9012 [CARD]"),
        ("paid by card 4111 1111 1111 1111 12/25 1200 pounds", "paid by card [CARD] [EXPIRY] 1200 pounds"),
        # New Zealand's account numbers and IRD numbers.
        ("my NZ account is 12-3456-7890123-00", "my NZ account is [ACCOUNT]"),
        ("02 0248 0123456 002", "[ACCOUNT]"),
        ("IRD number 49-091-850", "IRD number [NATIONAL_ID]"),
        ("s/c 404784 acc 71234567", "s/c [SORT_CODE] acc [ACCOUNT]"),
    ],
)  # fmt: skip
def test_card_details_dates_of_birth_and_pins_said_in_passing(text: str, expected: str) -> None:
    assert redact(text) == expected
    assert redact(expected) == expected  # idempotent: "[DOB]" is no date-of-birth label


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # A card after a reference's or an account's first group was left in the clear (or its last
        # twelve digits were): the reference or account is the first group, the card is the card.
        ("ref 123456 4111111111111111", "ref 123456 [CARD]"),
        ("order 12345678 378282246310005", "order 12345678 [CARD]"),
        ("acct 12345678 4111.1111.1111.1111", "acct [ACCOUNT] [CARD]"),
        # A PIN right before a sort code was kept (the two read as one phone number).
        ("my pin is 0428 12-34-56", "my pin is [PIN] [SORT_CODE]"),
        ("set my pin as 0428 12-34-56", "set my pin as [PIN] [SORT_CODE]"),
        # An IBAN with a typo in it, unlabelled: its country's length and national format.
        ("sent money to DE89370400440532013001 (I think one digit is off)",
         "sent money to [IBAN] (I think one digit is off)"),
        ("GB29 NWBK 6016 1331 9268 18", "[IBAN]"),
        # A card's expiry after the card in words.
        ("card 4111 1111 1111 1111 expiring 10/2027", "card [CARD] expiring [EXPIRY]"),
        ("the number is 4929 8230 2347 5127 and it expires march 2027",
         "the number is [CARD] and it expires [EXPIRY]"),
        # Labels customers use: "acc", "N digit code", UTR, a secret question's answer.
        ("BSB 062-000 acc 1234 5678", "BSB [SORT_CODE] acc [ACCOUNT]"),
        ("the 6 digit code 482913 expired", "the 6 digit code [OTP] expired"),
        ("enter 6-digit code: 123456", "enter 6-digit code: [OTP]"),
        ("NI: JG103724B, unique taxpayer reference 1234567890",
         "NI: [NINO], unique taxpayer reference [NATIONAL_ID]"),
        ("my secret question answer: rex", "my secret question answer: [PASSWORD]"),
        # An address with its dots written in brackets.
        ("my email is john(dot)smith(at)gmail(dot)com", "my email is [EMAIL]"),
        ("reach me at mary(dot)jones@example.co.uk", "reach me at [EMAIL]"),
        # (a reviewer's findings on the first version: an amount after a grouped account, a card)
        ("account 1234 5678 12.50 was charged", "account [ACCOUNT] 12.50 was charged"),
        ("account 1234 5678 4111.1111.1111.1111", "account [ACCOUNT] [CARD]"),
        # A trial's phrasings of secrets (a compliance officer's, session 52): the service named
        # between label and value, the value before its label, a code with where it came from.
        ("the password for my app is hunter2", "the password for my app is [PASSWORD]"),
        ("password for online banking: Rosebud#77", "password for online banking: [PASSWORD]"),
        ("le mot de passe de mon appli est Chat456", "le mot de passe de mon appli est [PASSWORD]"),
        ("mon code secret est 5678", "mon code secret est [PIN]"),
        ("4821 is my pin", "[PIN] is my pin"),
        ("my pin? 4821", "my pin? [PIN]"),
        ("the new pin I chose is 7788", "the new pin I chose is [PIN]"),
        ("code 123456 from the SMS", "code [OTP] from the SMS"),
        ("I got 654321 by text", "I got [OTP] by text"),
        ("mom maiden name is Jones", "mom maiden name is [PASSWORD]"),
        ("my first pet was called Fluffy", "my first pet was called [PASSWORD]"),
        # Accounts: before an amount in thousands, before a card; UTR's ten digits; expiry months.
        ("account 12345678 2 500.00 taken", "account [ACCOUNT] 2 500.00 taken"),
        ("account 12 34 56 78 9.99 taken", "account [ACCOUNT] 9.99 taken"),
        ("account number 1234 5678 4111 1111 1111 1111", "account number [ACCOUNT] [CARD]"),
        ("my UTR is 1234567890 for self assessment", "my UTR is [NATIONAL_ID] for self assessment"),
        ("card expiry: febuary 2027", "card expiry: [EXPIRY]"),
        ("expiry date: marzo 2027", "expiry date: [EXPIRY]"),
        # What is not part of them stays.
        ("card 4111 1111 1111 1111 and it expires soon", "card [CARD] and it expires soon"),
        ("account 12345678.12", "account [ACCOUNT].12"),
    ],
)  # fmt: skip
def test_values_after_other_numbers_and_in_customers_words(text: str, expected: str) -> None:
    assert redact(text) == expected
    assert redact(expected) == expected


@pytest.mark.parametrize(
    "text",
    [
        "order 4111111111111111",  # a labelled Luhn-valid run is the order's number
        "ref AB1234567",
        "model DE12 3456 789 0123",  # not in fours
        "the 6 digit code is wrong",
        "acc 12",
        # (a reviewer's findings on the first version)
        "my order is ORDERNO1234567890123 thanks",  # inside a word
        "the serial number is BE12345678901234",  # as short as a serial
        "voucher NO12 3456 7890 123",
        "the UTR no. SBIN324123456789 shows success",  # India's transfer reference
        "4111111111111111 and it expires maybe 2027".replace("4111111111111111", "the card"),
        "IMPS UTR SBIN324123456789 credited",
        "the fee 2024 is my pin problem",
        "password for my account is not working",
        "my first pet was called what?",
        "the card expires decade 2030",
    ],
)
def test_near_misses_of_those_stay(text: str) -> None:
    assert redact(text) == text


@pytest.mark.parametrize(
    "text",
    [
        "the expiry date of my card passed",
        "my card expired on 12/03/2024 what now",
        "I expect 12/25 delivery",
        "paid £12.50 on 12/03 at 10:30",
        "my pin should be 4 digits right?",
        "my pin is one of the four I use",
        "pin two three",
        "my card expires in may",
        "card ending 1234 exp soon",
        "the sc game is on 12/03",
        "Please send to SC 123456 ticket",
        # dates of other things near a date-of-birth label (a reviewer's findings)
        "my dob is fine, but the payment on 14/02/2024 failed",
        "Birthday gift: I sent £50 on 12/05/2023 to my niece",
        # "expires" of something else than a card; times and ranges after an expiry word
        "my fixed rate expires march 2026",
        "the ISA allowance expires 04/26",
        "my session expires at 11.30",
        "the offer expires 9-10 working days after",
        "I've tried the pin one, two, three, four times",
        # lists of 4-digit numbers: a card read again from a later group must end the run
        "years 2019 2020 2021 2022 2023",
        "times 1443 1622 1780 1785 1002",
        # amounts in the currencies of customers' families abroad (IDR was read as a German phone)
        "transfer 400000000 IDR to my family",
        "IDR 400000000 was debited",
        "paid 1500000 VND",
    ],
)
def test_what_only_looks_like_card_details_stays(text: str) -> None:
    assert redact(text) == text


def test_a_second_date_after_a_date_of_birth_found_is_not_one() -> None:
    assert (
        redact("my dob is 3 March 1990 and the payment on 4 March 2024 failed")
        == "my dob is [DOB] and the payment on 4 March 2024 failed"
    )


def test_recurring_texts_are_remembered_only_when_clean_and_forgotten_when_regions_change() -> None:
    """``redact_recurring`` (log fields): the same result as ``redact``; a clean short text is not
    read again, a text holding personal data is never remembered, and a text clean in the default
    regions is read anew once the bank's regions make it a phone number."""
    from bot.privacy import redaction

    redaction.configure_regions(())
    known = redaction._KNOWN_CLEAN
    for text in ("card_arrival", "web", "m_9f3a2b1c5d6e7f80", "card 4111 1111 1111 1111", "x" * 300):
        assert redaction.redact_recurring(text) == redact(text)
    assert "card_arrival" in known._state[0] and "web" in known._state[0]
    assert not any("4111" in t for t in known._state[0]) and "x" * 300 not in known._state[0]
    local = "call 9123 4567 after 6"
    assert redaction.redact_recurring(local) == local and local in known._state[0]
    try:
        redaction.configure_regions(["sg"])
        assert local not in known._state[0]
        assert redaction.redact_recurring(local) == "call [PHONE] after 6"
    finally:
        redaction.configure_regions(())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # expiry dates: a sentence's end after them, other languages' labels, the card's last digits
        # before the verb, words between the label and the date, MMYY with the code after the card
        (
            "Card: 5382-4646-9246-9971. Expiry: 10/25. Security code: 364.",
            "Card: [CARD]. Expiry: [EXPIRY]. Security code: [CVV].",
        ),
        (
            "the card ending 3181 - expires 12/27 and security code is 702.",
            "the card ending 3181 - expires [EXPIRY] and security code is [CVV].",
        ),
        (
            "Kartennummer: 4518 1756 0480 6353, Ablaufdatum 06/29. Danke",
            "Kartennummer: [CARD], Ablaufdatum [EXPIRY]. Danke",
        ),
        (
            "carta 4817 8397 0523 2797 scadenza 03/27 - addebito di 59,00 €",
            "carta [CARD] scadenza [EXPIRY] - addebito di 59,00 €",
        ),
        ("tarjeta 5591 9075 9337 9944, caduca 04/28", "tarjeta [CARD], caduca [EXPIRY]"),
        ("expiry date on the new card says 07/30", "expiry date on the new card says [EXPIRY]"),
        ("5210132923627257 0926 552", "[CARD] [EXPIRY] [CVV]"),
        ("card 5210132923627257 1225 1500 pounds", "card [CARD] 1225 1500 pounds"),
        ("my fixed rate expires 10/27", "my fixed rate expires 10/27"),
        # one-time codes as banks' texts and customers say them
        (
            '"Your OTP for txn of INR 12,000.00 at FLIPKART is 582041. Valid for 10 mins."',
            '"Your OTP for txn of INR 12,000.00 at FLIPKART is [OTP]. Valid for 10 mins."',
        ),
        (
            "Your Harbour Bank code is 77 31 58. We will never call",
            "Your Harbour Bank code is [OTP]. We will never call",
        ),
        ("code 739 204 came by sms but the page timed out", "code [OTP] came by sms but the page timed out"),
        (
            "Got a text from you with code 664120 but it expired.",
            "Got a text from you with code [OTP] but it expired.",
        ),
        (
            "i got two codes, 902114 and 118630, which one do I use",
            "i got two codes, [OTP] and [OTP], which one do I use",
        ),
        ("Transaktionsnummer aus der pushTAN-App: 839 217", "Transaktionsnummer aus der pushTAN-App: [OTP]"),
        ("6 digit code from the app: 0 0 4 7 1 9", "6 digit code from the app: [OTP]"),
        ("your promo code for the offer is 2024", "your promo code for the offer is 2024"),
        ("your sort code is 12 34 56", "your sort code is [SORT_CODE]"),
        ("Your code to log in is 1234 5678 9012", "Your code to log in is 1234 5678 9012"),
        # PINs and passcodes said with doubt, a second guess, a telephone-banking PIN, digit groups
        ("forgot my pin, i think its 0007 or maybe 7000", "forgot my pin, i think its [PIN] or maybe [PIN]"),
        ("telepin 773920, please verify me", "telepin [PIN], please verify me"),
        ("my phone banking passcode is 55 21 09", "my phone banking passcode is [PIN]"),
        ("my pin, maybe you can reset it", "my pin, maybe you can reset it"),
        # security answers: a name straight after "maiden name", the question in brackets, pairs, a
        # question then its answer
        ("my mothers maiden name Henderson and my dob", "my mothers maiden name [PASSWORD] and my dob"),
        ("mother's maiden name question is wrong", "mother's maiden name question is wrong"),
        ("maiden name of my mother is O'Sullivan", "maiden name of my mother is [PASSWORD]"),
        (
            "the answer to my security question (city I was born in) is Galway",
            "the answer to my security question (city I was born in) is [PASSWORD]",
        ),
        ("security question answer: first pet - biscuit", "security question answer: first pet - [PASSWORD]"),
        (
            "security answers: favourite teacher = Mrs Patel, first car = Fiesta",
            "security answers: favourite teacher = [PASSWORD], first car = [PASSWORD]",
        ),
        (
            "what was the name of your first school? St Brigid's",
            "what was the name of your first school? [PASSWORD]",
        ),
        ("whats your first pet's name? rex", "whats your first pet's name? [PASSWORD]"),
        ("Where was your first job? it's for the app", "Where was your first job? it's for the app"),
        ("what time does your branch open? 9am?", "what time does your branch open? 9am?"),
        ("the security answer is case-sensitive?", "the security answer is case-sensitive?"),
        # numbers spelt out or typed a digit at a time
        (
            "the long number is four nine six seven five one one two zero zero seven five four six"
            " seven eight",
            "the long number is [CARD]",
        ),
        ("2 7 2 0 - 3 6 7 4 - 9 5 7 6 - 3 0 4 5 ... thats my mastercard", "[CARD] ... thats my mastercard"),
        (
            "acc number seven six seven three three three six six, sort code four zero, four seven,"
            " zero eight",
            "acc number [ACCOUNT], sort code [SORT_CODE]",
        ),
        ("account 0 9 1 5 6 1 6 5 sort 4 0 4 7 0 8", "account [ACCOUNT] sort [SORT_CODE]"),
        ("zero seven seven zero zero nine zero zero five one two", "[PHONE]"),
        ("ssn four zero six, eight eight, seven seven one two", "ssn [SSN]"),
        ("one two three four five six seven", "one two three four five six seven"),
        ("steps 1 2 3 4 5 6 7 8 9 10", "steps 1 2 3 4 5 6 7 8 9 10"),
        # keys and tokens after their names; an AWS secret after its key id
        (
            "token request: client_id=teller-biz-4471&client_secret=cc8c928344b16103485a1c292be01e4f&grant",
            "token request: client_id=teller-biz-4471&client_secret=[CREDENTIAL]&grant",
        ),
        ("API key: c2d031c41885221c25f6aaf76fdc6c36 (for the feed)", "API key: [CREDENTIAL] (for the feed)"),
        ('refresh_token: "rt_9Xk2LpQ7vN4mZs8TfW1cYb6HjD3aRe0U"', 'refresh_token: "[CREDENTIAL]"'),
        ("x-api-key: 7Fq2-Kd9P-Lm4X-Zr8T-Wn3B", "x-api-key: [CREDENTIAL]"),
        (
            "webhook secret whsec_UOLc877EgNB6bfbdUwFDrzIe3mGxHoL4 since May",
            "webhook secret [CREDENTIAL] since May",
        ),
        (
            "AKIA9HW7DZ7PO4ZIYACD / +fT3pG/h8msMlc/T1ah9sdbEl7oX8nrEHAluvtdg rotated",
            "[CREDENTIAL] / [CREDENTIAL] rotated",
        ),
        ("the token is invalid", "the token is invalid"),
        ("the secret to saving is consistency2024andmore", "the secret to saving is consistency2024andmore"),
        # more expiry labels, and a quoted date
        (
            "karta 2720 2588 6442 9633, CVV 903, ważna do 10/26.",
            "karta [CARD], CVV [CVV], ważna do [EXPIRY].",
        ),
        ("kaart 4518 1756 0480 6353 vervaldatum 03/27", "kaart [CARD] vervaldatum [EXPIRY]"),
        ("mi tarjeta es válida hasta el 12/26", "mi tarjeta es válida hasta el [EXPIRY]"),
        ("De voucher is geldig tot 12/27.", "De voucher is geldig tot 12/27."),
        ("L'offre est valable jusqu'à 12/26", "L'offre est valable jusqu'à 12/26"),
        ("loyalty token ABC123DEF456GHI7 at the till", "loyalty token ABC123DEF456GHI7 at the till"),
        (
            "USDT token 0xdAC17F958D2ee523a2206206994597C13D831ec7 sent",
            "USDT token 0xdAC17F958D2ee523a2206206994597C13D831ec7 sent",
        ),
        ("the secret rzp_secret_yV4J1TQt7frRgjix7YSdn60LNJMRLdHb2U9LhOS0 now", "the secret [CREDENTIAL] now"),
        ("api key (live): c2d031c41885221c25f6aaf76fdc6c36", "api key (live): [CREDENTIAL]"),
        # a phone typed a digit at a time, three spaces between groups, after "telephone"
        ("Contact telephone:   0 7 7 0 0   9 0 0   5 1 3\nEmail", "Contact telephone:   [PHONE]\nEmail"),
        # "double" and "triple" said aloud; a date of birth spaced round its signs; a second one
        (
            "you can reach me on oh seven seven double oh nine double oh three four five",
            "you can reach me on [PHONE]",
        ),
        ("Date of birth:   14 / 02 / 1976\nNational", "Date of birth:   [DOB]\nNational"),
        (
            "My son's DOB is 21/07/2011 and mine is 30/01/1980, we want",
            "My son's DOB is [DOB] and mine is [DOB], we want",
        ),
        ("the payment 14 / 02 / 2024 failed", "the payment 14 / 02 / 2024 failed"),
        ("my dob is 3 March 1990 and mine is the same", "my dob is [DOB] and mine is the same"),
        # identity documents' labels
        ("driver license # D4127785 (California)", "driver license # [NATIONAL_ID] (California)"),
        (
            "Ausweisnummer LZ6311T48, für die Kontoeröffnung",
            "Ausweisnummer [NATIONAL_ID], für die Kontoeröffnung",
        ),
    ],
)
def test_secrets_found_by_an_independent_dev_set(text: str, expected: str) -> None:
    """Misses of a dev set a helper wrote without reading the rules (343 messages, 2026-12-05), and
    the look-alikes each rule must leave alone."""
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        # a reviewer's ordinary messages that the first version of session 53's rules hid
        "Where is my first statement? Thanks!",
        "What happened to my car loan? help",
        "what is your favourite product? Savings",
        "whats my first pet question for? lol",
        "what is your first pet? Thanks",
        "Mother's maiden name Verification failed",
        "my mother's maiden name I forgot",
        "Mother's Maiden Name Question",
        "my mother's maiden name Has to be entered?",
        "mother's maiden name\nHello, can you help",
        "security answers: locked out - please reset",
        "security answers: first car - I don't remember",
        "Security questions - help: I can't remember them",
        "security answers: pet = forgotten, car = unknown",
        "Reference code 20231145 was sent by email",
        "Promo code 2024 came by email",
        "the app shows an error message with code 5001",
        "I got a text from Royal Mail with code 7731",
        "the ATM showed two codes, 5001 and 5002",
        "I received codes 2019 and 2020 on my tax form",
        "your store code is 4410",
        "your parcel code is 4431 2290",
        "Le virement expire le 12/05",
        "Scadenza: 10/06 per la rata",
        "mi oferta caduca 10/06",
        "Gutschein verfällt 12/25",
        "I paid by card, the offer expires 03/26",
        "the ISA expiry date is on the 04/26",
        "I set my pin probably 2019",
        "pin maybe 2020 when I opened the account",
        "can you sort this out, the menu made me press 1 2 3 4 5 6",
        "the acc menu: 3 3 3 3 3 3",
        "my account was charged one, two, three, four, five, six times",
        "I've called one, two, three, four, five, six, seven, eight times now",
        "my gym pass number is 4421",
    ],
)
def test_ordinary_messages_near_session_53s_rules_stay(text: str) -> None:
    assert redact(text) == text


@pytest.mark.parametrize(
    "text",
    [
        "my passcode is i think its 0007",
        "sort code for john.smith.longname@example.com: two oh four five six seven",
        "my sort code for the IBAN GB29 NWBK 6016 1331 9268 19 is 2 0 4 5 6 7",
        "security answers:\nteacher - Mrs Patel\ncar - Fiesta",
    ],
)
def test_redacting_twice_changes_nothing_more(text: str) -> None:
    once = redact(text)
    assert redact(once) == once


def test_messages_found_clean_are_read_once_and_nothing_personal_is_remembered(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``redact`` and ``scan`` remember a clean message (read several times on its way: the secrets
    check, the policy's memo, the store) and read it once; a message holding personal data is read
    every time and never kept; a bank's regions read a remembered text anew."""
    from bot.privacy import redaction

    redaction.configure_regions(())
    reads: list[str] = []
    spans = redaction._spans

    def counted(text: str, regions: tuple[str, ...]) -> list[tuple[int, int, object]]:
        reads.append(text)
        return spans(text, regions)

    monkeypatch.setattr(redaction, "_spans", counted)
    known = redaction._KNOWN_CLEAN_MESSAGES
    clean, personal = "is there a fee for a second card?", "my card is 4111 1111 1111 1111"
    local = "call 9123 4567 after 6"
    for _ in range(3):
        assert redact(clean) == clean and scan(clean) == Scan(clean, ())
        assert redact(personal) == "my card is [CARD]" and scan(personal).findings
        assert redact(local) == local
    assert reads.count(clean) == 1 and reads.count(personal) == 6 and reads.count(local) == 1
    assert clean in known._state[0] and not any("4111" in t for t in known._state[0])
    # Regions asked for by name are not the memo's: the text is read in them.
    assert scan(clean, regions=["GB"]) == Scan(clean, ()) and reads.count(clean) == 2
    long = "where is my card " * 150  # 2,550 characters: read every time
    redact(long), redact(long)
    assert reads.count(long) == 2 and long not in known._state[0]
    try:
        redaction.configure_regions(["sg"])
        assert local not in known._state[0]
        assert redact(local) == "call [PHONE] after 6" and scan(local).findings
    finally:
        redaction.configure_regions(())
    # Not kept more than two minutes: the memo empties once its oldest text is that old.
    redact(clean)
    started = known._state[2]
    monkeypatch.setattr(redaction.time, "monotonic", lambda: started + 121.0)
    assert not known.is_clean(clean)
    redact(clean)
    assert reads.count(clean) == 4 and known._state[2] == started + 121.0


def test_a_clean_text_remembered_under_other_regions_is_read_again() -> None:
    """A reviewer's finding: a thread that read a text under the old regions could keep it after
    `configure_regions` emptied the cache, and a phone number reached the log. The cache is tied to
    the regions it was filled under, whoever changed them."""
    from bot.privacy import redaction

    redaction.configure_regions(())
    local = "call 9123 4567 after 6"
    assert redaction.redact_recurring(local) == local
    try:
        old = redaction._regions
        redaction.configure_regions(["sg"])
        for known in (redaction._KNOWN_CLEAN, redaction._KNOWN_CLEAN_MESSAGES):
            # A late writer that read the text under the old regions, after a reader under the new
            # ones started the memo afresh (a reviewer's second finding): not kept.
            assert not known.is_clean("hello")
            known.remember_if_clean("hello", "hello", redaction._regions)
            known.remember_if_clean(local, local, old)
            assert local not in known._state[0] and "hello" in known._state[0]
        assert redaction.redact_recurring(local) == "call [PHONE] after 6"
        assert redact(local) == "call [PHONE] after 6"
    finally:
        redaction.configure_regions(())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # An organisation's freephone, shared-cost or UK 03 line, written as its country groups it.
        ("I rang 0345 300 0116 like it says online", "I rang 0345 300 0116 like it says online"),
        ("is 0800 028 4176 your fraud line?", "is 0800 028 4176 your fraud line?"),
        ("call 1-800-432-1000 is what they told me", "call 1-800-432-1000 is what they told me"),
        ("their line +44 345 300 0116 was busy", "their line +44 345 300 0116 was busy"),
        # Not so grouped: the digits are also other countries' landlines (Halle, Berlin), hidden.
        ("call 030/12345678 tomorrow", "call [PHONE] tomorrow"),
        ("ring 03453000116 please", "ring [PHONE] please"),
        # A personal number stays hidden, and so do digits only a business number without its
        # trunk prefix would read ("8003 4417 29" is a UK freephone number without its 0).
        ("my mobile is 07911 238450", "my mobile is [PHONE]"),
        ("call me on 9823145670", "call me on [PHONE]"),
        ("UK premium rate reads PH mobiles: 0918 227 4490", "UK premium rate reads PH mobiles: [PHONE]"),
    ],
)
def test_an_organisations_number_is_not_personal_data(text: str, expected: str) -> None:
    """Four labelled sets written independently all marked a bank's or a merchant's freephone and
    03 numbers as values to keep: an agent needs them, and they identify no one."""
    assert redact(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # A secret asked for, then given: how fraud victims write to their bank.
        (
            "they asked for my TAC. I gave them 558102. Then RM18,700 was transferred out",
            "they asked for my TAC. I gave them [OTP]. Then RM18,700 was transferred out",
        ),
        (
            "he needed my pin to 'cancel the transaction'. I told him 7 3 9 1. then they took $800",
            "he needed my pin to 'cancel the transaction'. I told him [PIN]. then they took $800",
        ),
        (
            "asked me to reply with my online banking password. I sent HuskyMom#77 before I realized",
            "asked me to reply with my online banking password. I sent [PASSWORD] before I realized",
        ),
        (
            "it asked for the 3 numbers on the back so I put 482, then £1,199 went to CURRYS",
            "it asked for the 3 numbers on the back so I put [CVV], then £1,199 went to CURRYS",
        ),
        ("I gave him the code, 482913, and he hung up", "I gave him the code, [OTP], and he hung up"),
        ("I gave them my current PIN which is 2580.", "I gave them my current PIN which is [PIN]."),
        # ... not an amount, a count, a shape no such secret has, or a secret two sentences back
        ("I forgot my PIN so I sent 1000 to my son", "I forgot my PIN so I sent 1000 to my son"),
        ("the code didn't arrive so I sent 2 messages", "the code didn't arrive so I sent 2 messages"),
        ("what is a password? I sent money to Bob", "what is a password? I sent money to Bob"),
        (
            "I changed my PIN. Then I went to the shop. I typed 4455 there",
            "I changed my PIN. Then I went to the shop. I typed 4455 there",
        ),
        ("my password expired. I typed something wrong", "my password expired. I typed something wrong"),
        # A second value of the secret: "or", and a correction.
        (
            "whether my PIN is 4471 or 4417. Can you send a reminder?",
            "whether my PIN is [PIN] or [PIN]. Can you send a reminder?",
        ),
        (
            "the code is 7 7 2 9 1 4 no wait I read it wrong, 7 7 2 9 4 1",
            "the code is [OTP] no wait I read it wrong, [OTP]",
        ),
        ("my pin is 1234 or 5 times wrong", "my pin is [PIN] or 5 times wrong"),
        # What the answer is for, before "is"; and the answer in the next sentence.
        (
            "Mom's maiden name for the security question is Fitzgerald.",
            "Mom's maiden name for the security question is [PASSWORD].",
        ),
        (
            "Security answer for 'first school' is St Bartholomew's Primary - it was accepted",
            "Security answer for 'first school' is [PASSWORD] - it was accepted",
        ),
        ("the password for the app is not working", "the password for the app is not working"),
        (
            "Security question was mother's maiden name. It's Okonkwo. The man said it was wrong",
            "Security question was mother's maiden name. It's [PASSWORD]. The man said it was wrong",
        ),
        (
            "characters 2, 5 and 7 of my memorable word. The word is CHARLOTTE so that's H, L and T",
            "characters 2, 5 and 7 of my memorable word. The word is [PASSWORD] so that's H, L and T",
        ),
        ("my memorable word. It's Wrong apparently", "my memorable word. It's Wrong apparently"),
        # Tokens: a Stripe webhook secret, and a JWT-shaped token whose payload is not JSON.
        (
            "Webhook secret for the payments feed is whsec_19FlY0mG1ylvuhfJXqIEnomef2mSJ5CM, rotate?",
            "Webhook secret for the payments feed is [CREDENTIAL], rotate?",
        ),
        (
            "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.irYkPvdRHUNL9yf4StfxDPNV2a.hcyXic6YOZq0M7qO60lI5Qfec ok",
            "[CREDENTIAL] ok",
        ),
    ],
)
def test_secrets_given_named_again_or_corrected(text: str, expected: str) -> None:
    """Misses of a labelled set written without reading the rules (session 54): secrets told in a
    scam's story, a second value or a correction, an answer's purpose before "is" or the answer in
    the next sentence, and two token formats."""
    assert redact(text) == expected
    assert redact(expected) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # Labels as customers and their forms write them.
        ("Name Gareth Pugh, SC 09-01-28, Acc 55102938", "Name Gareth Pugh, SC [SORT_CODE], Acc [ACCOUNT]"),
        ("sc 404784 acc 71234567", "sc [SORT_CODE] acc [ACCOUNT]"),
        ("Please send to SC 123456 ticket", "Please send to SC 123456 ticket"),
        ('{"sort_code": "112233", "amount": 250.00}', '{"sort_code": "[SORT_CODE]", "amount": 250.00}'),
        ("PAN card: AQTPM 7302 K", "PAN card: [NATIONAL_ID]"),
        ("Reisepassnummer C4J7F2L9X", "Reisepassnummer [NATIONAL_ID]"),
        ("DL# D4829137 (California)", "DL# [NATIONAL_ID] (California)"),
        ("Licence number is PATEL 806154 AR9KL", "Licence number is [NATIONAL_ID]"),
        ("card 4202.6355.3217.5511 exp 10.27 and the cvc 339", "card [CARD] exp [EXPIRY] and the cvc [CVV]"),
        ("meeting at 10.27 exp. time", "meeting at 10.27 exp. time"),
        ("here u go 4990302430119325 exp 0928 sec code 771", "here u go [CARD] exp [EXPIRY] sec code [CVV]"),
        (
            "asked me to read back the 6-digit code and i did, it was 390118, then £2,950 left",
            "asked me to read back the 6-digit code and i did, it was [OTP], then £2,950 left",
        ),
        # Security answers as a form's fields, and a memorable word's letters by position.
        (
            "First school: St Bride's Primary. First car: a red Fiat Panda.",
            "First school: [PASSWORD]. First car: [PASSWORD].",
        ),
        ("Answer to 'city where we met': Bulawayo", "Answer to 'city where we met': [PASSWORD]"),
        (
            "for the security question the answer is Biscuit, that was my first dog's name",
            "for the security question the answer is [PASSWORD], that was my first dog's name",
        ),
        (
            "you asked for the 2nd 5th and 8th letters: E, O, R",
            "you asked for the 2nd 5th and 8th letters: [PASSWORD]",
        ),
        ("the 3rd, 4th and 7th characters are l, m, e", "the 3rd, 4th and 7th characters are [PASSWORD]"),
        ("my first car: I don't remember", "my first car: I don't remember"),
        ("the 1st and 2nd payments are 50 and 60", "the 1st and 2nd payments are 50 and 60"),
        # A made-up token in a message about a password; not an amount or an address.
        (
            "the password I gave was wrong, it's actually Marmalade#77 not Marmelade#77",
            "the password I gave was wrong, it's actually [PASSWORD] not [PASSWORD]",
        ),
        (
            "password reset fails; I'm sending A$10,000 from order #08-1134",
            "password reset fails; I'm sending A$10,000 from order #08-1134",
        ),
        ("bypass the 2FA: abc#123def", "bypass the 2FA: abc#123def"),
    ],
)
def test_labels_forms_and_made_up_passwords(text: str, expected: str) -> None:
    """Misses of a labelled set written without reading the rules (session 54, `/tmp/pii54`)."""
    assert redact(text) == expected
    assert redact(expected) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # A pasted table: the columns its header names.
        (
            "name,sort_code,account,amount\nJ Patel,20-11-44,73920185,120.00",
            "name,sort_code,account,amount\nJ Patel,[SORT_CODE],[ACCOUNT],120.00",
        ),
        ("date;description;amount\n01/03;TESCO;12.50\n02/03;AMAZON;30.00", None),
        # A card's security code right after it, named by its place.
        (
            "number 4377 6357 5739 1396\nexpires 09 / 27\nback 220",
            "number [CARD]\nexpires [EXPIRY]\nback [CVV]",
        ),
        (
            "i read it out 4385 7133 8485 4183 and then the 3 numbers 617, then",
            "i read it out [CARD] and then the 3 numbers [CVV], then",
        ),
        (
            "card 4385 7133 8485 4183 and then the 3 numbers 617 pounds",
            "card [CARD] and then the 3 numbers 617 pounds",
        ),
        # A memorable word given; a South African ID as printed; user names.
        (
            "They asked for my memorable word and I typed it into the link: Caravaggio. And",
            "They asked for my memorable word and I typed it into the link: [PASSWORD]. And",
        ),
        ("they wanted my memorable word and I said no", None),
        ("my id is 780328 6060 082", "my id is [NATIONAL_ID]"),
        ("ref 123456 7890 123 ok", None),
        ("username: dkowalski88 password: Warsaw2019$$", "username: [USERNAME] password: [PASSWORD]"),
        ("Login ID priya.r.1990 — locked out", "Login ID [USERNAME] — locked out"),
        # (an IP address stays: earlier reviewers' corpora label it a value to keep)
        (
            "user=ana.silva.lx ip=94.63.118.201 error=TIMEOUT",
            "user=[USERNAME] ip=94.63.118.201 error=TIMEOUT",
        ),
        ("my username is wrong", None),
        ("the user experience is bad", None),
    ],
)
def test_tables_codes_by_place_and_user_names(text: str, expected: str | None) -> None:
    """Misses of a labelled set written without reading the rules (session 54, `/tmp/pii54`)."""
    assert redact(text) == (text if expected is None else expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # A terminal's, a merchant's or an order's number is the business's: it stays.
        (
            "our card terminal (TID 21849377) drops payments",
            "our card terminal (TID 21849377) drops payments",
        ),
        ("ATM in Lisbon, terminal ID 10472839 at 19:47", "ATM in Lisbon, terminal ID 10472839 at 19:47"),
        (
            "aan Coolblue op 9 mei, ordernummer 78123456, is",
            "aan Coolblue op 9 mei, ordernummer 78123456, is",
        ),
        ("mid March my account 12345678 was", "mid March my account [ACCOUNT] was"),
        # What a code is for before "is", and a code used to approve something.
        (
            "OTP for the PayLah top up is 170546, can confirm",
            "OTP for the PayLah top up is [OTP], can confirm",
        ),
        ("Used code 993104 to approve a £1,250.00 payment", "Used code [OTP] to approve a £1,250.00 payment"),
        ("error code 4040 to confirm", "error code 4040 to confirm"),
        # Identity documents' labels; a sort code with spaced dashes.
        ("California DL D4827716", "California DL [NATIONAL_ID]"),
        ("dl 2 files please", "dl 2 files please"),
        ("Dowód osobisty AYZ 482917, ważny do 2029", "Dowód osobisty [NATIONAL_ID], ważny do 2029"),
        ("Sort Code\n60 - 83 - 71\nAccount", "Sort Code\n[SORT_CODE]\nAccount"),
    ],
)
def test_business_numbers_codes_for_something_and_document_labels(text: str, expected: str) -> None:
    """Session 53's second dev set (`/tmp/pii53b`) and session 54's (`/tmp/pii54`)."""
    assert redact(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "My IBAN for the transfer from Switzerland is CH63 0483 0123 4567 8009, ok",
            "My IBAN for the transfer from Switzerland is [IBAN], ok",
        ),
        ("my account for the salary is 12345678", "my account for the salary is [ACCOUNT]"),
        ("the account for my business is closed", "the account for my business is closed"),
        ("cvv '732' exp '06/28'", "cvv '[CVV]' exp '[EXPIRY]'"),
        ('{"exp": "06/28", "expiry_date": "06/2028"}', '{"exp": "[EXPIRY]", "expiry_date": "[EXPIRY]"}'),
        ("the CVV, 336, before I realised", "the CVV, [CVV], before I realised"),
        ("my PIN, 3 times wrong", "my PIN, 3 times wrong"),
    ],
)
def test_what_a_value_is_for_quotes_and_commas(text: str, expected: str) -> None:
    """Session 53's dev sets (`/tmp/pii53b`, `/tmp/pii53c`)."""
    assert redact(text) == expected


def test_a_polish_account_number_without_its_country_code() -> None:
    assert redact("nr rachunku 42 8168 5641 2264 0158 8854 1538 (mBank)") == "nr rachunku [IBAN] (mBank)"
    kept = "ref 12 3456 7890 1234 5678 9012 3456 ok"  # the check digits fail: not an NRB
    assert redact(kept) == kept


@pytest.mark.parametrize(
    ("question", "answer", "expected"),
    [
        ("Can you confirm your date of birth?", "12/03/1985", "[DOB]"),
        ("Can you confirm your date of birth?", "yes it's 12 march 1985", "yes it's [DOB]"),
        ("What are the 3 digits on the back of your card?", "its 774", "its [CVV]"),
        ("Please read me the code we just sent you", "119275", "[OTP]"),
        ("What's your sort code?", "20-11-44", "[SORT_CODE]"),
        ("What's your memorable word?", "Caravaggio", "[PASSWORD]"),
        ("What is your account number?", "41 87 26 09", "[ACCOUNT]"),
        # not what was asked, or nothing asked: as :func:`redact` reads it
        ("What's your sort code?", "I don't know it, sorry", "I don't know it, sorry"),
        (
            "Can you confirm your date of birth?",
            "I paid 120 on 12/03/2024 though",
            "I paid 120 on 12/03/2024 though",
        ),
        ("How much was the payment?", "£120 on 12/03/2024", "£120 on 12/03/2024"),
        (None, "my card 4111 1111 1111 1111", "my card [CARD]"),
    ],
)
def test_a_reply_is_read_as_the_answer_to_its_question(
    question: str | None, answer: str, expected: str
) -> None:
    from bot.privacy.redaction import redact_answer

    assert redact_answer(answer, question) == expected


@pytest.mark.parametrize(
    "text",
    [
        # A review of this session's rules (session 54): ordinary messages they hid parts of.
        "I got a code from the bank to confirm, then I sent 2500 on Monday to my landlord",
        "I forgot my PIN so I put 2000 in my savings instead",
        "the app asked for a verification code, I entered 2024 by mistake as the year",
        "they asked my zip code and i gave them 90210",
        "my password stopped working so I told NatWest about it",
        "they asked for my memorable word but I told them nothing",
        "i changed my password and now the payment to ref INV#20245 failed",
        "I forgot my password and the fee was €15,50+tax",
        "forgot password; my business is called Smith&Sons2 Ltd",
        "I failed the security question. It's Monday and I still cant get in",
        "security question keeps failing, the answer is definitely right",
        "My first job: paid weekly into this account",
        'Answer to "did you make this transaction": Yes I did',
        "the 2nd and 3rd digits of the reference are 4 and 7",
        "card, pin, password all stolen\n12 March, 3pm, outside Tesco",
        "Phone, email, post - none worked\nI tried 3 times, 2 days, 1 week ago",
        "Card,Date,Amount\nending 4455,01/03,45.20",
        "My username keeps getting locked, can you help?",
        "Username: unknown",
        "the user ID number on my card letter is missing",
        "DL 15/03/2025 for the mortgage docs",
        "I expect the refund exp 11.30 tomorrow",
        "I called 03457 404 404 and nobody answered",
        "I rang 0800 9 123 123 yesterday about my santander card",
    ],
)
def test_what_this_sessions_rules_must_leave_alone(text: str) -> None:
    assert redact(text) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("my username is dkowalski88", "my username is [USERNAME]"),
        ("mein Benutzername ist kmueller12", "mein Benutzername ist [USERNAME]"),
        ("pin was 0007 - sorry, 0070", "pin was [PIN] - sorry, [PIN]"),
        ("The caller asked for my pin. I said 7 3 9 1", "The caller asked for my pin. I said [PIN]"),
        (
            "my security question is my first pet, answer: Rex",
            "my security question is my first pet, answer: [PASSWORD]",
        ),
        (
            "changed it to Tr0ub4dor&3, my online banking password",
            "changed it to [PASSWORD], my online banking password",
        ),
        ('Answer to "first school": St Mary\'s. The ref was INV#2024A', None),
    ],
)
def test_what_this_sessions_rules_must_still_find(text: str, expected: str | None) -> None:
    once = redact(text)
    if expected is not None:
        assert once == expected
    assert redact(once) == once  # a placeholder ("[PASSWORD]") never names a password itself


@pytest.mark.parametrize(
    ("question", "answer"),
    [
        # A second review (session 54): replies to a memorable-word, maiden-name or password question
        # that are no such word stay as written.
        ("What's your memorable word?", "Are you allowed to ask that?"),
        ("What's your mother's maiden name?", "Can you call me instead?"),
        ("What's your mother's maiden name?", "Adopted, so not sure"),
        ("What's your password?", "Thanks but no"),
        ("What's your memorable word?", "OK thanks"),
        ("What's your memorable word?", "Scam"),
    ],
)
def test_a_reply_that_is_no_secret_word_stays(question: str, answer: str) -> None:
    from bot.privacy.redaction import redact_answer

    assert redact_answer(answer, question) == answer


@pytest.mark.parametrize(
    "text",
    [
        "my password is shorter than 8 characters, is that allowed?",
        'the API returns {"status": "failed", "code": 4012, "message": "limit exceeded"}',
        "I forgot my memorable word so I told Monzo",
        "Is 1800 033 103 the right number in Ireland?",
        "I tried 1800 555 123 in Australia, it's free right?",
    ],
)
def test_what_a_second_review_found_hidden(text: str) -> None:
    assert redact(text) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("I don't recognise PAYPAL *STEAMGAMES 4029357733", None),
        ("AMAZON PRIME*2T4RF 8885550199 on my statement", None),
        ("my *new* number 07911 123456", "my *new* number [PHONE]"),
        ("the offer is valid until 12/25", None),
        ("my savings account 2025-03-14 shows the wrong balance", None),  # an ISO date, not an account
        ("my card is valid until 12/27", "my card is valid until [EXPIRY]"),
        ("VALID THRU 09/29", "VALID THRU [EXPIRY]"),
    ],
)
def test_merchant_descriptors_and_offers_stay(text: str, expected: str | None) -> None:
    """A card statement's merchant descriptor carries the merchant's number; an offer is valid until
    a date (a second review's findings, session 54)."""
    assert redact(text) == (text if expected is None else expected)


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        # asked back, then given
        ("do you need the cvc? its 658", "do you need the cvc? its [CVV]"),
        ("you asked for my pin? fine its 7319", "you asked for my pin? fine its [PIN]"),
        (
            "my memorable info? its blackpool1985 so l, k and o",
            "my memorable info? its [PASSWORD] so l, k and o",
        ),
        # a PIN changed from one value to another, and "or" in other languages
        ("Change my PIN from 1357 to 8642 please", "Change my PIN from [PIN] to [PIN] please"),
        ("el pin es 5820 o 5028, no me acuerdo", "el pin es [PIN] o [PIN], no me acuerdo"),
        # who gave or keeps it, between the label and "is"
        ("her pin she wrote on a post-it is 1940 and", "her pin she wrote on a post-it is [PIN] and"),
        ("el código que me llegó por SMS es 583 201, no", "el código que me llegó por SMS es [OTP], no"),
        (
            "got a text with a code 390271 which I didn't ask for",
            "got a text with a code [OTP] which I didn't ask for",
        ),
        # labels: an ATM's PIN, BLIK, a secret word, a maiden name, a birthday, Quebec's NAS
        ("PIN del bancomat 30571, bloccato", "PIN del bancomat [PIN], bloccato"),
        ("kod BLIK 739 481 – oszustwo?", "kod BLIK [OTP] – oszustwo?"),
        ("la parola segreta è girasole", "la parola segreta è [PASSWORD]"),
        ("Maiden name of mother - O'Sullivan", "Maiden name of mother - [PASSWORD]"),
        ("b-day 19/11/01", "b-day [DOB]"),
        ("mon NAS est 209-956-937", "mon NAS est [NATIONAL_ID]"),
        ("numéro national belge 85.07.30-477.69 et", "numéro national belge [NATIONAL_ID] et"),
        # a Japanese era's date of birth
        ("生年月日：昭和63年4月2日", "生年月日：[DOB]"),
        # a form pasted line by line
        (
            "Sort code\n30-90-89\nSecurity answer\nRover",
            "Sort code\n[SORT_CODE]\nSecurity answer\n[PASSWORD]",
        ),
        ("Memorable word\nbutterfly\nthanks", "Memorable word\n[PASSWORD]\nthanks"),
    ],
)
def test_secrets_given_in_session_55s_shapes_are_hidden(text: str, stored: str) -> None:
    assert redact(text) == stored


@pytest.mark.parametrize(
    "text",
    [
        "same pin from 2019 to 2024",
        "my password? its not working",
        "what is my pin? it's 4 digits right",
        "The password\nis wrong",
        "Password:\nnot set yet",
        "mother's maiden name\nHello, can you help",
        "the NAS drive has 256 GB",
        # an organisation's line named right before its number
        "j'ai appelé votre service client au 09 69 32 15 15, taux",
        "御行のフリーダイヤル0120-123-456にかけても",
        "I called the fraud line on 020 7946 0123 twice",
    ],
)
def test_ordinary_messages_near_session_55s_rules_stay(text: str) -> None:
    assert redact(text) == text


def test_a_number_after_customer_service_words_that_is_the_customers_own_is_hidden() -> None:
    assert redact("customer service, my number is 07700 900123") == "customer service, my number is [PHONE]"


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        # a conversation pasted into one message: the answers to the questions that ask for a value
        (
            "Agent: Can you confirm your date of birth?\nMe: 03/04/1979\nAgent: Thanks.",
            "Agent: Can you confirm your date of birth?\nMe: [DOB]\nAgent: Thanks.",
        ),
        (
            "Conseiller : Pouvez-vous me confirmer votre date de naissance ?\nMoi : 10/04/1985",
            "Conseiller : Pouvez-vous me confirmer votre date de naissance ?\nMoi : [DOB]",
        ),
        (
            'Agent: What\'s the answer to your security question "first pet"?\nMe: Biscuit',
            'Agent: What\'s the answer to your security question "first pet"?\nMe: [PASSWORD]',
        ),
        (
            "Agent: I'll need the 3 digit security code from the back.\nCustomer: 4\nCustomer: sorry, 947",
            "Agent: I'll need the 3 digit security code from the back.\nCustomer: 4\nCustomer: sorry, [CVV]",
        ),
        # a secret word spelt out, in a text that gives it
        (
            "my mother's maiden name is Whitlock. W H I T L O C K. Thanks",
            "my mother's maiden name is [PASSWORD]. [PASSWORD]. Thanks",
        ),
        # digits spelt out in other languages
        (
            "mi tarjeta es cuatro cero siete uno seis dos cero dos uno ocho tres dos dos cero cero siete",
            "mi tarjeta es [CARD]",
        ),
        ("und die PIN ist vier zwo sieben eins", "und die PIN ist [PIN]"),
        # a bank's text message naming what the code is for
        (
            "Ihre mTAN für die Überweisung über 1.250,00 EUR an M. Schulz lautet: 604318. Gültig bis 14:35",
            "Ihre mTAN für die Überweisung über 1.250,00 EUR an M. Schulz lautet: [OTP]. Gültig bis 14:35",
        ),
        (
            "il codice OTP per autorizzare il bonifico di 2.500,00 EUR è 718204. Non",
            "il codice OTP per autorizzare il bonifico di 2.500,00 EUR è [OTP]. Non",
        ),
    ],
)
def test_pasted_conversations_spelt_words_and_bank_texts_are_read(text: str, stored: str) -> None:
    assert redact(text) == stored


@pytest.mark.parametrize(
    "text",
    [
        "Agent: Can you confirm your date of birth?\nMe: can you call me instead?",
        "Agent: And the first line of your address?\nMe: 14 Elm Grove",
        "I called the F B I about it, my password is fine",
        "the rent is due one day late",
        "un deux trois quatre cinq six",
        # a parcel's tracking number, with its carrier between; references
        "Seguimiento SEUR: 0740938271650",
        "Spedizione BRT 0512345678901",
        "kargo takip no: 7281940356, tutar",
        "kreeg kenmerk KL-2024-55102, maar",
        "order_id=ORD-77120394",
        "Reference you gave me last time was 66120934. Sort it out",
        # an organisation's line, a word or a bracket between
        "J'ai appelé le service client (0 800 123 456, le numéro indiqué sur votre site)",
        "Ik heb jullie klantenservice gebeld (020 123 4567 volgens jullie website)",
        "コールセンター（0120-123-456、平日9:00〜17:00）",
    ],
)
def test_ordinary_messages_near_session_55s_later_rules_stay(text: str) -> None:
    assert redact(text) == text


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        ("我的手机号是幺三九幺二三四五六七八麻烦", "我的手机号是[NUMBER]麻烦"),
        ("携帯は〇九〇の一二三四の五六七八です", "携帯は[PHONE]です"),
        ("제 번호는 공일공 구팔칠육 오사삼이 입니다", "제 번호는 [PHONE] 입니다"),
        # numerals in words and amounts stay
        ("我一二三年级", "我一二三年级"),
        ("这个月一万二千三百元", "这个月一万二千三百元"),
        ("사이 이사 오일", "사이 이사 오일"),
    ],
)
def test_numbers_said_in_cjk_numerals_are_read_as_digits(text: str, stored: str) -> None:
    assert redact(text) == stored


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        # a date of birth corrected
        ("DOB 14/02/1990 wait no 14/02/1991 I always do", "DOB [DOB] wait no [DOB] I always do"),
        # a password changed or corrected: a token like it
        (
            "I typed my password Summer2023! like five times. I changed it in January to Summer2024! sorry",
            "I typed my password [PASSWORD] like five times. I changed it in January to [PASSWORD] sorry",
        ),
        (
            "la password è Gatto_Nero88, anzi no, l'ho cambiata ieri in Gatto_Nero89",
            "la password è [PASSWORD], anzi no, l'ho cambiata ieri in [PASSWORD]",
        ),
        # what only looks like it stays
        (
            "dob 01/02/1985, sorry payment on 14/03/2024 failed",
            "dob [DOB], sorry payment on 14/03/2024 failed",
        ),
        (
            "my password is hunter22 and my order hunt-2024 arrived",
            "my password is [PASSWORD] and my order hunt-2024 arrived",
        ),
    ],
)
def test_corrected_dates_of_birth_and_changed_passwords_are_hidden(text: str, stored: str) -> None:
    assert redact(text) == stored


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        ("Born ........ 05 Jun 1995\nCVV ......... 208", "Born ........ [DOB]\nCVV ......... [CVV]"),
        ("security_answer: Greenbank Primary", "security_answer: [PASSWORD]"),
        ("nazwisko panieńskie matki: Zielińska", "nazwisko panieńskie matki: [PASSWORD]"),
        ("a senha que cadastrei é Flamengo@1981, mas", "a senha que cadastrei é [PASSWORD], mas"),
        (
            "OTP for txn of Rs.4,999.00 at FLIPKART is 839201. Valid",
            "OTP for txn of Rs.4,999.00 at FLIPKART is [OTP]. Valid",
        ),
        ("رمز التحقق الخاص بك هو 604927. لا", "رمز التحقق الخاص بك هو [OTP]. لا"),
        ("口座番号：普通 3051927", "口座番号：普通 [ACCOUNT]"),
        (
            "Оператор: Назовите, пожалуйста, дату рождения.\nЯ: 12.09.1985",
            "Оператор: Назовите, пожалуйста, дату рождения.\nЯ: [DOB]",
        ),
        ("wait... 2 days later my card came", "wait... 2 days later my card came"),
    ],
)
def test_forms_with_leaders_field_names_and_more_languages_labels(text: str, stored: str) -> None:
    assert redact(text) == stored


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        # a second reviewer's findings
        ("customer service my 07700 900123", "customer service my [PHONE]"),
        ("klantenservice mijn 0612345678", "klantenservice mijn [PHONE]"),
        ("customer service on 07700 900123 is my own mobile", "customer service on [PHONE] is my own mobile"),
        ("Agent: What's your PIN?\r\nMe: 4921", "Agent: What's your PIN?\r\nMe: [PIN]"),
        ("Agent: Your date of birth?\n\nMe: 03/04/1979", "Agent: Your date of birth?\n\nMe: [DOB]"),
        (
            "[10:02] Agent: And your date of birth?\n[10:03] Me: 03/04/1979",
            "[10:02] Agent: And your date of birth?\n[10:03] Me: [DOB]",
        ),
        (
            "Your OTP for the transfer to Mr. Smith is 551204",
            "Your OTP for the transfer to Mr. Smith is [OTP]",
        ),
        (
            "Uw code voor de betaling van 45,90 EUR is 551204",
            "Uw code voor de betaling van 45,90 EUR is [OTP]",
        ),
        (
            "O seu código para a compra de 45,90 EUR é 551204",
            "O seu código para a compra de 45,90 EUR é [OTP]",
        ),
        ("Ваш код для перевода 5 000,00 RUB — 551204", "Ваш код для перевода 5 000,00 RUB — [OTP]"),
        (
            "Votre code de sécurité pour le paiement de 45,90 EUR chez AMAZON est 123456",
            "Votre code de sécurité pour le paiement de 45,90 EUR chez AMAZON est [OTP]",
        ),
        ("PIN changed from 1234 to 5678", "PIN changed from [PIN] to [PIN]"),
        ("change PIN from 1234 → 5678", "change PIN from [PIN] → [PIN]"),
        ("Мой пин-код четыре девять два один", "Мой пин-код [PIN]"),
        ("Mijn pincode is vier negen twee een", "Mijn pincode is [PIN]"),
        (
            "my memorable word is pineapple p-i-n-e-a-p-p-l-e ok",
            "my memorable word is [PASSWORD] [PASSWORD] ok",
        ),
        ("my password is HUNTER2 H U N T E R 2", "my password is [PASSWORD]"),
        (
            "My password is Rosebud1! and then the man from B A N K said OK",
            "My password is [PASSWORD] and then the man from B A N K said OK",
        ),
    ],
)
def test_a_second_reviewers_redaction_findings(text: str, stored: str) -> None:
    assert redact(text) == stored


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        (
            "card blocked after wrong pin, I thought it was 8630 but maybe",
            "card blocked after wrong pin, I thought it was [PIN] but maybe",
        ),
        (
            "Forgot MPIN for mobile banking, old one was 973658, how",
            "Forgot MPIN for mobile banking, old one was [PIN], how",
        ),
        (
            "Olvidé el PIN de la tarjeta, creo que era 2096 o algo así",
            "Olvidé el PIN de la tarjeta, creo que era [PIN] o algo así",
        ),
        ("falscher PIN. Ich dachte, es wäre 1222. Wie", "falscher PIN. Ich dachte, es wäre [PIN]. Wie"),
        ("les di el código 780627. Luego", "les di el código [OTP]. Luego"),
        ("o código que chegou por SMS foi 042681, mas", "o código que chegou por SMS foi [OTP], mas"),
        (
            "minha senha da internet é Flamengo@81 e não entra",
            "minha senha da internet é [PASSWORD] e não entra",
        ),
        (
            "Réponse à ma question secrète : Minouche, c'était",
            "Réponse à ma question secrète : [PASSWORD], c'était",
        ),
        # an amount spent at a shop's web address, India's payment references, air waybills
        ("card 6011 0012 8169 8508, $249.00 at BESTBUY.COM", "card [CARD], $249.00 at BESTBUY.COM"),
        ("I paid 45.99 at amazon.co.uk yesterday", "I paid 45.99 at amazon.co.uk yesterday"),
        ("UPI failed, UTR 412398765012, date 12-04-2024", "UPI failed, UTR 412398765012, date 12-04-2024"),
        ("my UTR 1234567890 for self assessment", "my UTR [NATIONAL_ID] for self assessment"),
        (
            "dispatched via Blue Dart, AWB 50412398761. Courier",
            "dispatched via Blue Dart, AWB 50412398761. Courier",
        ),
        # not a PIN: an amount, a year
        (
            "my pin got blocked, it was 1500 pounds I tried to take out",
            "my pin got blocked, it was 1500 pounds I tried to take out",
        ),
        (
            "new pin arrived. it was 2019 when I last changed it",
            "new pin arrived. it was 2019 when I last changed it",
        ),
    ],
)
def test_pii58s_shapes_after_its_held_out_figure(text: str, stored: str) -> None:
    assert redact(text) == stored


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        ("et mon mail c'est camille point durand arobase example point fr", "et mon mail c'est [EMAIL]"),
        ("il mio indirizzo è mario punto rossi chiocciola example punto it", "il mio indirizzo è [EMAIL]"),
        ("Agent: और जन्मतिथि?\nमैं: 21/08/1992", "Agent: और जन्मतिथि?\nमैं: [DOB]"),
        ("Nasci a 2 de março de 1966.", "Nasci a [DOB]."),
        ("пароль от интернет-банка был Медведь2022, а", "пароль от интернет-банка был [PASSWORD], а"),
        (
            "Mijn pincode is 4490. Nee wacht, de nieuwe is 4409",
            "Mijn pincode is [PIN]. Nee wacht, de nieuwe is [PIN]",
        ),
        # words that only look like it stay
        ("à ce point je ne sais pas", "à ce point je ne sais pas"),
        ("I shop at tesco point com", "I shop at tesco point com"),
        (
            "my pin is 1234. Sorry I meant the card arrived on 12/05",
            "my pin is [PIN]. Sorry I meant the card arrived on 12/05",
        ),
    ],
)
def test_addresses_spoken_in_other_languages_and_more_answers(text: str, stored: str) -> None:
    assert redact(text) == stored


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        ("the code they texted me is four eight two nine one three", "the code they texted me is [OTP]"),
        ("security code on the back is nine one two", "security code on the back is [CVV]"),
        ("the code is one two three four five six seven", "the code is one two three four five six seven"),
    ],
)
def test_one_time_codes_and_security_codes_said_aloud(text: str, stored: str) -> None:
    assert redact(text) == stored


@pytest.mark.parametrize(
    "text",
    [
        # a third reviewer's over-redactions: kept now
        "PIN blocked at the ATM, it was 2300 CHF I wanted to withdraw",
        "pin falló en el cajero, creo que era 1500 pesos lo que quería sacar",
        "My PIN was declined at the petrol station. It was 2145 when it happened",
        "Meine PIN wurde abgelehnt, es war 1430 Uhr",
        "The PIN pad at the counter was broken, it was 4200 series model",
        "il codice 1001 del prodotto non è disponibile",
        "Me sale el código 5001 al pagar",
        "The app says the code for this error is 4012",
        "the code for the 20% discount is SAVE20",
        "der Code für den Rabatt ist 2024",
        "the merchant category code is 5411",
        "the decline code was 1015",
        "Agent: For security we will never ask for your PIN. How much did you try to withdraw?\nMe: 2000",
        "Agent: I won't ask for your PIN. What year did you open the account?\nMe: 2015",
        "o código de barras é 7891234567895",
        "我二〇二三-二〇二四学年的学费已经付了",
    ],
)
def test_a_third_reviewers_ordinary_messages_stay(text: str) -> None:
    assert redact(text) == text


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        (
            "My password was paypal2020 and now I see PAYPAL*STEAMGAMES charges",
            "My password was [PASSWORD] and now I see PAYPAL*STEAMGAMES charges",
        ),
        (
            "password: Teller#2024, the app is Teller-v4.12.3 on Android",
            "password: [PASSWORD], the app is Teller-v4.12.3 on Android",
        ),
        (
            "My password was Rover99. 2-0-2-4 is when I opened the account",
            "My password was [PASSWORD]. 2-0-2-4 is when I opened the account",
        ),
        ("la clave que me dieron es la misma de 2019", "la clave que me dieron es la misma de 2019"),
        ("I gave them the code 482913 on the phone", "I gave them the code [OTP] on the phone"),
    ],
)
def test_a_third_reviewers_near_misses_keep_what_is_not_the_secret(text: str, stored: str) -> None:
    assert redact(text) == stored


# --- A fourth held-out set's findings (329 messages in 15 languages, written apart from these rules) -


def _held_out(number: int) -> list[tuple[str, list[str], list[str]]]:
    """A held-out set's cases as ``(text, secrets to hide, look-alikes to keep)``."""
    path = Path(__file__).parent / "data" / f"pii_held_out_{number}.json"
    return [tuple(case) for case in json.loads(path.read_text(encoding="utf-8"))]  # type: ignore[misc]


@pytest.mark.parametrize(("text", "secrets", "clean"), _held_out(59))
def test_the_fourth_held_out_sets_misses_and_over_redactions_mended(
    text: str, secrets: list[str], clean: list[str]
) -> None:
    """Labels in other languages (expiry: validade, 有効期限, son kullanma; birth: doğum tarihim, janm
    tithi; user names: Gebruikersnaam, ログインID; "code de validation"; a password after what it
    opens; "وكلمة المرور"; "pin numbr") and references read as phone numbers (operazione n.,
    номер операции, 注文番号は, PR-2025-..., FV/03/2025/118, a UEN "201912345K")."""
    said = redact(text)
    assert not [s for s in secrets if s in said], said
    assert not [c for c in clean if c not in said], said


@pytest.mark.parametrize(
    "text",
    [
        "Call me on 07911 123456x",
        "My number is +44 7911 123456x",
        "ring me on 07911123456asap",
        "phone:07911 123456thanks",
        "TEL-07700 900123",
        "MOB-07911 123456",
        "UK-07911 123456",
        "WA/07911 123456",
        "NY-212-555-0187",
    ],
)
def test_a_phone_number_with_a_word_glued_after_or_a_prefix_before_is_still_one(text: str) -> None:
    """A reviewer's finding on the first version of the reference rules ("PR-2025-118274",
    "201912345K" not phones): these numbers leaked."""
    assert "[PHONE]" in redact(text)


# --- A fifth held-out set's findings (302 messages in 15 languages, written apart from these rules) --


@pytest.mark.parametrize(("text", "secrets", "clean"), _held_out(60))
def test_the_fifth_held_out_sets_misses_and_over_redactions_mended(
    text: str, secrets: list[str], clean: list[str]
) -> None:
    """A card number after "just in case:", HTTP Basic credentials, "me llegó el código", "ورمز
    التحقق", a PAN after "पैन नंबर", a UPI id."""
    test_the_fourth_held_out_sets_misses_and_over_redactions_mended(text, secrets, clean)


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        ("Authorization: Basic Authentication fails", "Authorization: Basic Authentication fails"),
        ("Authorization: basic dXNlcjpwYXNz", "Authorization: basic [CREDENTIAL]"),
        ("case: 4937445638268133", "case: 4937445638268133"),  # a case number stays one
        ("pay to 9876543210@ybl now", "pay to [ACCOUNT] now"),
        ("mail me at a@ybl.com", "mail me at [EMAIL]"),
        ("me llegó el código postal 28001", "me llegó el código postal 28001"),
        ("ricevuto il codice 483920", "ricevuto il codice [OTP]"),
        # A reviewer's: a case reference after "in case" stays one; quoted headers; a PAN card's
        # number; more UPI handles. Not kept as helplines or references (they shielded a customer's
        # own mobile or card): "müşteri hizmetleri", "CRO"; "NIP" is Poland's tax id, not a PIN.
        ("In case no. 48213377 the court ordered", "In case no. 48213377 the court ordered"),
        ("in case, 4937445638268133", "in case, [CARD]"),
        ('{"Authorization": "Basic YWxpY2U6d29uZGVybGFuZA=="}', '{"Authorization": "Basic [CREDENTIAL]"}'),
        ("पैन कार्ड का नंबर ABCDE1234F", "पैन कार्ड का नंबर [NATIONAL_ID]"),
        ("ravi@kmbl pe bhejo", "[ACCOUNT] pe bhejo"),
        ("müşteri hizmetleri 0532 123 45 67 numaramı aramadı", "müşteri hizmetleri [PHONE] numaramı aramadı"),
        ("CRO 4937445638268133", "CRO [CARD]"),
        ("faktura z NIP 2023", "faktura z NIP 2023"),
    ],
)
def test_the_fifth_sets_rules_keep_their_look_alikes(text: str, stored: str) -> None:
    assert redact(text) == stored


# --- A sixth held-out set's findings (300 messages: how customers paste, forward and dictate) -------


@pytest.mark.parametrize(("text", "secrets", "clean"), _held_out(61))
def test_the_sixth_held_out_sets_misses_and_over_redactions_mended(
    text: str, secrets: list[str], clean: list[str]
) -> None:
    """An expiry near a card after a short or foreign label, in a table cell or brackets, or with O
    for 0 ("| Expiry | 09/28 |", "exp (06/26)", "VALID THRU O8/27", "val", "scad.", "期限"); a code
    before an emoji and "there's your code"; "el código SMS que me llegó es"; "código do SMS"; "Die
    PIN ist doch"; a sort code in a link's query; an e-mail URL-encoded; a date of birth under a
    prefixed JSON key; a KRA PIN; kept: a NIBSS session id."""
    test_the_fourth_held_out_sets_misses_and_over_redactions_mended(text, secrets, clean)


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        # with a card, a date with no expiry label stays a date; without a card, "val" and "期限" are words
        ("card 4111 1111 1111 1111 charged on 03/25 for £20", "card [CARD] charged on 03/25 for £20"),
        ("val 03/29 is the promo end", "val 03/29 is the promo end"),
        ("期限：09/27 までに支払う", "期限：09/27 までに支払う"),
        ("123456 that's the order number", "123456 that's the order number"),
        ("the 2019 👉 that's the year", "the 2019 👉 that's the year"),
        ("zwrot miał być do 14.04.2025, a BLIK pokazuje", "zwrot miał być do 14.04.2025, a BLIK pokazuje"),
        ('{"orderDate":"2024-11-23"}', '{"orderDate":"2024-11-23"}'),
        ("sort=asc&acct=1", "sort=asc&acct=1"),
        # a session id's label shields only a session id's length, never a card
        ("session id 4111111111111111", "session id [CARD]"),
        ("the call center 07911 123456 is my mobile", "the call center [PHONE] is my mobile"),
        # a reviewer's: each was hidden or shown by the first version of these rules
        ("the call centre called 07700 900123 (my mobile)", "the call centre called [PHONE] (my mobile)"),
        (
            "el código SMS que no me llega y el importe es 2500 euros",
            "el código SMS que no me llega y el importe es 2500 euros",
        ),
        ("🎁 WELCOME25 that's the code for 10% off", "🎁 WELCOME25 that's the code for 10% off"),
        ("see /img/logo%402x.png", "see /img/logo%402x.png"),
        ("?page=2&sort=202412", "?page=2&sort=202412"),
        ('{"rebirth_date":"2024-05-01"}', '{"rebirth_date":"2024-05-01"}'),
        (
            "card 4111 1111 1111 1111 and my promo rate expires 03/27",
            "card [CARD] and my promo rate expires 03/27",
        ),
        (
            "the 0% offer expires (03/26) on card 4111 1111 1111 1111",
            "the 0% offer expires (03/26) on card [CARD]",
        ),
        ("Karte 4111 1111 1111 1111 val 01/24 - 12/27", "Karte [CARD] val 01/24 - 12/27"),
        ("KRA PIN is: A123456789B", "KRA PIN is: [NATIONAL_ID]"),
        ("die SMS-TAN die ich bekommen habe ist 583920", "die SMS-TAN die ich bekommen habe ist [OTP]"),
    ],
)
def test_the_sixth_sets_rules_keep_their_look_alikes(text: str, stored: str) -> None:
    assert redact(text) == stored


# --- A seventh held-out set's findings (266 messages: the Americas, Africa, the Nordics, Southeast
# Asia and the Middle East, in 15 languages) -----------------------------------------------------------


@pytest.mark.parametrize(("text", "secrets", "clean"), _held_out(62))
def test_the_seventh_held_out_sets_misses_and_over_redactions_mended(
    text: str, secrets: list[str], clean: list[str]
) -> None:
    """An expiry near a card after "udløb", "voimassa", "תוקף", or right after it after "vence"; a
    six-digit code in two groups ("804 117"), Malaysia's TAC, "kode OTP nya"; "tanggal lahir";
    identity numbers after "cédula", "RFC", "kad pengenalan saya", "henkilötunnukseni on", "BVN"
    (glued on too), and MyKad and a henkilötunnus by their printed shape and check; a Canadian
    transit-institution-account; Norway's 4.2.5 account; a PIX random key; "كلمة السر القديمة
    كانت"; kept: "conf#", OCR, KID, lainanumero, "no transaksi", "nombor rujukan", "REF-"."""
    test_the_fourth_held_out_sets_misses_and_over_redactions_mended(text, secrets, clean)


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        # A reviewer's findings on the first version: a reference's "for ... is" let any secret
        # through, "kid" kept a child's phone number, the Malay and Indonesian labels took words,
        # the shapes took file names and batch numbers, "vence" took an instalment's due date.
        (
            "I raised a case for my blocked card, my pin is 4921",
            "I raised a case for my blocked card, my pin is [PIN]",
        ),
        (
            "the transaction for £45 at Tesco is 4111111111111111",
            "the transaction for £45 at Tesco is [CARD]",
        ),
        (
            "There is an order for my wife, her phone is 07911 123456",
            "There is an order for my wife, her phone is [PHONE]",
        ),
        ("Please call my kid 07911123456 if I don't answer", "Please call my kid [PHONE] if I don't answer"),
        ("TAC 5minit tak sampai", "TAC 5minit tak sampai"),
        ("kode verifikasi 3kali salah", "kode verifikasi 3kali salah"),
        ("Pagué el TAC 2024 con mi tarjeta", "Pagué el TAC 2024 con mi tarjeta"),
        ("Kode OTP Anda adalah 804117", "Kode OTP Anda adalah [OTP]"),
        ("nomor rekening saya adalah 1640215877", "nomor rekening saya adalah [ACCOUNT]"),
        ("Baki akaun 150000 tapi", "Baki akaun 150000 tapi"),
        ("Saldo no rek 250000 kok berkurang", "Saldo no rek 250000 kok berkurang"),
        ("My order 12345-678-1234567 never arrived", "My order 12345-678-1234567 never arrived"),
        ("The file statement_150324-1150.pdf", "The file statement_150324-1150.pdf"),
        ("My statement batch 231231-14-0001", "My statement batch 231231-14-0001"),
        ("tarjeta 4111 1111 1111 1111 y la cuota vence 05/12", "tarjeta [CARD] y la cuota vence 05/12"),
        ("tarjeta 4111 1111 1111 1111 vence el 12/27", "tarjeta [CARD] vence el [EXPIRY]"),
        ("kort 4111 1111 1111 1111 giltigt till 12/27", "kort [CARD] giltigt till [EXPIRY]"),
        ("min fødselsdato er 17.08.1985", "min fødselsdato er [DOB]"),
        ("kontonummeret mitt er 9710.87.74839", "kontonummeret mitt er [ACCOUNT]"),
        ("code de vérification reçu par mail : 482913", "code de vérification reçu par mail : [OTP]"),
        ("my kid 12 loves the app", "my kid 12 loves the app"),  # "KID" is Norway's only before 6+ digits
        ("otp for INR 12 000 purchase", "otp for INR 12 000 purchase"),
        ("the code 804 117", "the code [OTP]"),
        # a UUID is a PIX key only after "pix" or where a "chave" is named ("pixel" is not "pix")
        (
            "My Pixel 8 app crashed, error id 9d5d44f6-0e06-4e12-9fac-fd64a48673fa",
            "My Pixel 8 app crashed, error id 9d5d44f6-0e06-4e12-9fac-fd64a48673fa",
        ),
        ("chave pix 9d5d44f6-0e06-4e12-9fac-fd64a48673fa", "chave pix [ACCOUNT]"),
        # A second reviewer's: a reference never starts with an Indonesian or Malay word, "kid"
        # alone is a child, a capitals-dash prefix keeps no phone or account, a balance is no
        # account, a payment's receipt id no PIX key, "vence el 10/12" after a card a due date.
        ("transaksi ke 081234567890 gagal", "transaksi ke [PHONE] gagal"),
        ("Kid: 07911123456", "Kid: [PHONE]"),
        ("account AC-12345678", "account AC-[ACCOUNT]"),
        ("TAC-nya 482913", "TAC-nya [OTP]"),
        ("saldo no rek saya 2500000", "saldo no rek saya 2500000"),
        ("baki akaun saya ialah 150000", "baki akaun saya ialah 150000"),
        (
            "I changed my password from iPhone15 to my laptop",
            "I changed my password from iPhone15 to my laptop",
        ),
        (
            "la tarjeta 4111 1111 1111 1111 vence el 10/12 el pago minimo",
            "la tarjeta [CARD] vence el 10/12 el pago minimo",
        ),
        (
            "comprovante do pix 9d5d44f6-0e06-4e12-9fac-fd64a48673fa",
            "comprovante do pix 9d5d44f6-0e06-4e12-9fac-fd64a48673fa",
        ),
        ("serial 850512-14-5023", "serial 850512-14-5023"),
        ("Mandatsreferenz VF-55120348", "Mandatsreferenz VF-55120348"),
        ("order 991399-01-5309", "order 991399-01-5309"),  # a MyKad's date must hold
        ("la oferta vence 10/27", "la oferta vence 10/27"),  # no card: an offer's date
        ("hetu on 180784-554T ok", "hetu on [NATIONAL_ID] ok"),  # Finnish "on" (is) stays
        ("Auto loan #AL-00291774 payoff", "Auto loan #AL-00291774 payoff"),
        ("MOB-07911123456", "MOB-[PHONE]"),
        ("Réf. opération 2503110044871", "Réf. opération 2503110044871"),
        ("business ABN 51 824 753 556, looking", "business ABN 51 824 753 556, looking"),
    ],
)
def test_the_seventh_sets_rules_keep_their_look_alikes(text: str, stored: str) -> None:
    assert redact(text) == stored


# --- An eighth held-out set's findings (295 messages, 919 look-alikes: precision first) -----------------


@pytest.mark.parametrize(("text", "secrets", "clean"), _held_out(63))
def test_the_eighth_held_out_sets_misses_and_over_redactions_mended(
    text: str, secrets: list[str], clean: list[str]
) -> None:
    """Kept: "the ref on the bill is", a rental agreement's, an energy certificate's and a meter
    point's (MPRN) numbers; hidden: "the security code you sent was" and six digits, "un SMS con
    codice"."""
    test_the_fourth_held_out_sets_misses_and_over_redactions_mended(text, secrets, clean)


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        ("the security code you sent was 123", "the security code you sent was [CVV]"),  # 3-4: a card's
        ("the ref from the app is my card 4111 1111 1111 1111", "the ref from the app is my card [CARD]"),
        ("MPRN is 10008123456.", "MPRN is 10008123456."),
    ],
)
def test_the_eighth_sets_rules_keep_their_look_alikes(text: str, stored: str) -> None:
    assert redact(text) == stored


# --- A ninth held-out set's findings (222 documents pasted into a chat: e-mails, forms, tables, chat
# exports) -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "secrets", "clean"), _held_out(64))
def test_the_ninth_held_out_sets_misses_and_over_redactions_mended(
    text: str, secrets: list[str], clean: list[str]
) -> None:
    """An expiry after a form's dotted leader ("Expiry ....... 11/2030"); a spreadsheet's
    tab-separated rows under "Sort code", "Account number" headers (normalising had made the tabs
    spaces); "caduca" near a card and "el código de atrás"; "né(e) le"; kept: SIRET, an employer's
    NIP, each before a number of its own length."""
    test_the_fourth_held_out_sets_misses_and_over_redactions_mended(text, secrets, clean)


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        (
            "Name\tSort code\tAccount number\nJ Patel\t607046\t74164954",
            "Name\tSort code\tAccount number\nJ Patel\t[SORT_CODE]\t[ACCOUNT]",
        ),
        ("Name\tNotes\tAmount\nJ Patel\t607046\t74164954", "Name\tNotes\tAmount\nJ Patel\t607046\t[ACCOUNT]"),
        ("Expiry date ....... 11/2030", "Expiry date ....... [EXPIRY]"),
        ("la oferta caduca 10/26", "la oferta caduca 10/26"),  # no card: an offer's date
        ("NIP pracodawcy: 017-598-36-25", "NIP pracodawcy: 017-598-36-25"),  # an employer's tax id
        ("VAT number GB123456789", "VAT number GB123456789"),
        # A reviewer's findings on the first version: "btw" is "by the way", a business label kept
        # a card or a phone after it, a dotted leader after any reference kept a phone, "caduca" of
        # an offer near a card, and a flood of dotted leaders after "exp" took 1.6 s.
        ("btw 4111111111111111", "btw [CARD]"),
        ("btw 07911 123456 is my new number", "btw [PHONE] is my new number"),
        ("My KvK 07911123456", "My KvK [PHONE]"),
        ("umowa nr 12345678", "umowa nr [ACCOUNT]"),
        ("Kundennummer ........ 12345678", "Kundennummer ........ [ACCOUNT]"),
        ("Tarjeta 4111 1111 1111 1111, la oferta caduca 12/25", "Tarjeta [CARD], la oferta caduca 12/25"),
        # "NIP", a card's PIN in Mexico and Quebec, said of a card or as one's own (pii60's miss);
        # Poland's NIP stays
        (
            "el NIP de mi tarjeta 4111 1111 1111 1111 es 9031 y no me deja",
            "el NIP de mi tarjeta [CARD] es [PIN] y no me deja",
        ),
        ("mon NIP est 4821", "mon NIP est [PIN]"),
        ("faktura z NIP 2023", "faktura z NIP 2023"),
        ("mi nip no funciona", "mi nip no funciona"),
    ],
)
def test_the_ninth_sets_rules_keep_their_look_alikes(text: str, stored: str) -> None:
    assert redact(text) == stored


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        # An independent PII probe's misses (session 63): an expiry with a dash, a PIN after "its",
        # a CVV as "security number", slang for a password, German passport and tax-id labels, a
        # date of birth before its verb, a code named as the number sent.
        ("Visa 4532-0188-7744-5610 valid thru 05-28", "Visa [CARD] valid thru [EXPIRY]"),
        ("card 4929 1827 3645 1028 exp 05-28", "card [CARD] exp [EXPIRY]"),
        ("expiry 05-2028 on my card", "expiry [EXPIRY] on my card"),
        ("forgot my pin its 4821 i think, can i reset it", "forgot my pin its [PIN] i think, can i reset it"),
        ("pin it is 4821", "pin it is [PIN]"),
        ("security number on the back: 482", "security number on the back: [CVV]"),
        ("my pword is Sunflower23", "my pword is [PASSWORD]"),
        ("pswd: Tr1cky99", "pswd: [PASSWORD]"),
        ("Passnummer: C01X00T47", "Passnummer: [NATIONAL_ID]"),
        (
            "steuerliche Identifikationsnummer: 47 036 892 816",
            "steuerliche Identifikationsnummer: [NATIONAL_ID]",
        ),
        ("Steuer-IdNr. 47 036 892 816", "Steuer-IdNr. [NATIONAL_ID]"),
        ("Ich bin am 12.05.1979 geboren", "Ich bin am [DOB] geboren"),
        ("我是1985年6月15日出生的", "我是[DOB]出生的"),
        ("the 6 digit number you sent: 482913", "the 6 digit number you sent: [OTP]"),
        ("the number you texted me is 482913", "the number you texted me is [OTP]"),
        # Its over-redactions: lists of round amounts read as phone numbers without their 0, an
        # amount in won read as an account number.
        ("payments of 250 500 750 and 1000", "payments of 250 500 750 and 1000"),
        ("I paid 600 700 800", "I paid 600 700 800"),
        ("payments 200 300 400 500", "payments 200 300 400 500"),
        # and what the new rules must leave alone, or still hide
        ("my social security number is 078-05-1120", "my social security number is [SSN]"),
        ("the pin its locked", "the pin its locked"),
        ("card 4929 1827 3645 1028 exp 10-12 days", "card [CARD] exp 10-12 days"),
        ("the card arrives in 10-12 days", "the card arrives in 10-12 days"),
        ("ich habe meinen Pass verloren", "ich habe meinen Pass verloren"),
        ("Das Konto wurde am 12.05.2024 eröffnet", "Das Konto wurde am 12.05.2024 eröffnet"),
        ("call me on 612 345 678", "call me on [PHONE]"),
        ("my number is 600 700 800", "my number is [PHONE]"),
        ("scores 512 600 710", "scores [PHONE]"),  # not every group round: a number
        ("my account 12345678 won the draw", "my account [ACCOUNT] won the draw"),
        ("what is the 16 digit number on my card", "what is the 16 digit number on my card"),
        # A review of the first version of these rules: what they took or let through.
        ("my phone 07700 900123 won't get the sms", "my phone [PHONE] won't get the sms"),
        ("llámame al 690 120 450", "llámame al [PHONE]"),
        ("the pin it is 2000 withdrawals per day limit?", "the pin it is 2000 withdrawals per day limit?"),
        ("my pin it is 2026 and you still post pins?", "my pin it is 2026 and you still post pins?"),
        ("The code, it was 2000 euros for the transfer", "The code, it was 2000 euros for the transfer"),
        ("cvv it was 150 pounds charged", "cvv it was 150 pounds charged"),
        ("the otp it was 482913 but it expired", "the otp it was [OTP] but it expired"),
        ("passcode it is 123456", "passcode it is [PIN]"),
        ("Kunden, die vor dem 01.01.1960 geboren sind?", "Kunden, die vor dem 01.01.1960 geboren sind?"),
        ("1990年1月1日出生的客户有优惠吗", "1990年1月1日出生的客户有优惠吗"),
        ("2005年4月1日生まれ以降の方", "2005年4月1日生まれ以降の方"),
        ("私は1985年6月15日に生まれました", "私は[DOB]に生まれました"),
        ("a 6 digit number 250000 on my statement", "a 6 digit number 250000 on my statement"),
        ("card delivery exp 10-30 days", "card delivery exp 10-30 days"),
        ("my card expiry is 05-2029", "my card expiry is [EXPIRY]"),
        ("Pass-Nummer: C01X00T47", "Pass-Nummer: [NATIONAL_ID]"),
        ("security no. 482", "security no. [CVV]"),
        ("pswrd: Tr1cky99", "pswrd: [PASSWORD]"),
        # Session 63's note: three round groups of three after a name were read as amounts. They
        # are amounts only after a word of money now; a Spanish mobile has that shape.
        ("Juan Perez 690 120 450", "Juan Perez [PHONE]"),
        ("Maria Lopez 612 340 560 thanks", "Maria Lopez [PHONE] thanks"),
        ("pagué 300 450 600 este mes", "pagué 300 450 600 este mes"),
        ("the fees were 250 300 350", "the fees were 250 300 350"),
        # A reviewer's probe of that rule: money words of other sentences, a currency after, more
        # words of money, a payment sent to a phone number (Bizum)
        ("Payments failed again. Laura 690 120 450", "Payments failed again. Laura [PHONE]"),
        ("I sent money to 650 230 780 via Bizum", "I sent money to [PHONE] via Bizum"),
        ("Płatności nie doszły, kontakt 790 560 210", "Płatności nie doszły, kontakt [PHONE]"),
        ("Ich habe 150 250 350 Euro überwiesen.", "Ich habe 150 250 350 Euro überwiesen."),
        ("three debits 120 340 560 on my statement", "three debits 120 340 560 on my statement"),
        ("Prelievi 600 700 800 non autorizzati", "Prelievi 600 700 800 non autorizzati"),
        # Session 64's note: a money word earlier in the sentence, then where one can be reached
        ("Trouble with the payment, I am on 690 120 450", "Trouble with the payment, I am on [PHONE]"),
        ("problem with the fees, I'm on 612 340 560", "problem with the fees, I'm on [PHONE]"),
        ("I paid 600 700 800 on my card", "I paid 600 700 800 on my card"),
        (
            "I'm on holiday and payments of 250 500 750 failed",
            "I'm on holiday and payments of 250 500 750 failed",
        ),
        ("payments of 250 500 750, I am on", "payments of 250 500 750, I am on"),
        # and session 63's: "won" and "rand" after a round number are currencies
        ("I sent 25000000 won to my sister", "I sent 25000000 won to my sister"),
        ("sent 15 000 rand", "sent 15 000 rand"),
        ("account 12345678 won", "account [ACCOUNT] won"),
        ("my number is 0821234000 won't work", "my number is [PHONE] won't work"),
        # A reviewer's probe of both: a rate after the groups is an income; "rand" and "won" as verbs
        # or a bank's name after a phone or an account number
        ("Budget help please, I'm on 120 150 180 a week", "Budget help please, I'm on 120 150 180 a week"),
        ("Paid €120 twice, I'm now on: 690 120 450", "Paid €120 twice, I'm now on: [PHONE]"),
        ("07700 900000 rand me twice today", "[PHONE] rand me twice today"),
        ("Got a text from 07700900000 won a prize", "Got a text from [PHONE] won a prize"),
        ("Transfer 200 pounds to 44012000 rand me back", "Transfer 200 pounds to [ACCOUNT] rand me back"),
        ("Paid €120 twice, I'm at 690 120 450 all day", "Paid €120 twice, I'm at [PHONE] all day"),
        (
            "The 50 euro charge is wrong, I am reachable on 690 120 450",
            "The 50 euro charge is wrong, I am reachable on [PHONE]",
        ),
        ("I sent 25000000 Euros to my sister", "I sent 25000000 Euros to my sister"),
        ("I sent 25000000 Won to my sister", "I sent 25000000 Won to my sister"),
        # and its expiry look-alikes: an expense after "exp.", a range of days before a month
        ("travel exp. 12.50 on my card", "travel exp. 12.50 on my card"),
        ("card renewal exp 12-26 dec", "card renewal exp 12-26 dec"),
        ("card exp 12-26 may be wrong", "card exp [EXPIRY] may be wrong"),
        ("card 4202.6355.3217.5511 exp 10.27", "card [CARD] exp [EXPIRY]"),
    ],
)
def test_an_independent_probes_misses_and_over_redactions_mended(text: str, stored: str) -> None:
    assert redact(text) == stored
    assert redact(stored) == stored
