"""How long redaction takes on 40,000-character messages, hostile shapes included.

:func:`bench_redaction` is what ``teller bench`` reports for redaction; :data:`HOSTILE_SHAPES` are the
inputs (also used by the tests that check the work stays linear).
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable

from bot.privacy.redaction import redact

#: Length of every benchmark input, in characters.
BENCH_CHARS = 40_000


def _letters(n: int) -> str:
    rng = random.Random(1)
    return "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(n))


def _digits(n: int) -> str:
    rng = random.Random(2)
    return "".join(rng.choice("0123456789") for _ in range(n))


def _cjk_digits(n: int) -> str:
    """Chinese words and digits at random, as a long pasted statement would mix them."""
    rng = random.Random(3)
    return "".join(rng.choice("我的卡号是账户余额转账手机0123456789") for _ in range(n))


def _mixed_separators(n: int) -> str:
    """Random digits and every separator digit groups may have: spaces, dashes, dots, slashes..."""
    rng = random.Random(4)
    return "".join(rng.choice("0123456789 -./\u00a0\u202f\u200b\t\n") for _ in range(n))


def _digits_and_spaces(n: int) -> str:
    """Digits and spaces one for one, at random."""
    rng = random.Random(5)
    return "".join(rng.choice("0123456789          ") for _ in range(n))


def _labels_and_digits(n: int) -> str:
    """Secret labels each followed by a number: "cvv 318 pin 4821 sort code 123456..."."""
    rng = random.Random(6)
    labels = ["cvv", "pin", "otp", "code", "dob", "sort code", "acc", "ssn", "NI"]
    words = (f"{rng.choice(labels)} {rng.randint(100, 999999)}" for _ in range(n // 4))
    return " ".join(words)[:n]


def _chat(n: int) -> str:
    """An ordinary conversation full of personal data, repeated."""
    block = (
        "hi, my card 4111 1111 1111 1111 was charged £1,250.00 on 2024-03-15 14:30, call me on "
        "+44 20 7946 0958 or write to josé.garcía@example.com; IBAN DE89 3704 0044 0532 0130 00, "
        "sort code 12-34-56, account 12345678, my password is hunter2 and the code is 482913. "
    )
    return (block * (n // len(block) + 1))[:n]


def _repeat(unit: str) -> Callable[[int], str]:
    return lambda n: (unit * (n // len(unit) + 1))[:n]


#: Name -> a function giving that input at a given length.
HOSTILE_SHAPES: dict[str, Callable[[int], str]] = {
    "letters": _letters,
    "digits": _digits,
    "one_space": _repeat("1 "),
    "card_groups": _repeat("4111 "),
    "at_signs": _repeat("a@"),
    "dotted_local_part": lambda n: ("a." * ((n - 6) // 2)) + "@x.com",
    "cjk_and_digits": _cjk_digits,
    "plus_signs": _repeat("+"),
    "password_is": _repeat("password is "),
    "chat": _chat,
    "mixed_separators": _mixed_separators,
    "digits_and_spaces": _digits_and_spaces,
    "labels_and_digits": _labels_and_digits,
    "emails": _repeat("a@b.co "),
    "sort_codes": _repeat("12-34-56 "),
    "letters_in_card_groups": _repeat(
        "my card 4532 O151 1283 0309 was declined, I looked online and it looks like the bank blocked it"
        " all; I would like to know how long it will take to unlock it, or should I call you? hello? "
        "Ollie looked lOst in the lOng Old hall "
    ),
    "memorable_word_is": _repeat("memorable word is "),
    # Security questions and answers, one-time codes said in a sentence (session 53's rules).
    "security_questions": _repeat("what is your first pet ? "),
    "security_answer_pairs": _repeat("security answers: first car = Fiesta, "),
    "codes_said": _repeat("got codes, your bank code is "),
    "digits_spelt": _repeat("four nine six seven "),
    "key_names": _repeat("api_key=a1b2c3d4 token: "),
    "digits_one_by_one": _repeat("4 9 6 7 - "),
    # corrections and values given after a secret's name, chained (a review's finding: 27 s at 40,000)
    "corrections": _repeat("otp 123456 no wait let me check it again please wait "),
    "pins_corrected": _repeat("pin 1234, sorry, 4321, "),
    # a form's dotted leaders after an expiry label, next to a card (a review's finding: 1.6 s)
    "expiry_dotted_leaders": _repeat("card 4111 1111 1111 1111 " + ("exp " + "." * 40 + " ") * 50),
    "secrets_given": _repeat("they asked for the code and I gave them 558102. "),
    "password_tokens": _repeat("password Tr0ub4dor&3 A$1,200+fee "),
    "table_rows": lambda n: "name,sort_code,account\n" + "J Patel,20-11-44,73920185\n" * (n // 26),
    # The credential patterns' literals, repeated (each shape stays under the dense path's number count).
    "jwt_starts": _repeat("eyJ"),
    "private_key_begins": _repeat("-----BEGIN PRIVATE KEY-----"),
    "bearer_tokens": _repeat("Bearer abcdefghijklmnopqrstuvwxyz-"),
    "bot_token_prefixes": _repeat("1234567:" + "aB" * 25 + " "),
    "slack_prefixes": _repeat("xoxb-"),
    "slack_webhooks": _repeat("hooks.slack.com/services/"),
    "url_user_info": _repeat("://a:"),
    "secret_access_keys": _repeat("secret_access_key="),
    # One key header, then short "name: value" lines (a private key's header lines, never base64).
    "private_key_then_lines": lambda n: ("-----BEGIN PRIVATE KEY-----" + "a:b\n" * n)[:n],
}


def bench_redaction(chars: int = BENCH_CHARS, repeats: int = 7) -> dict[str, dict[str, float]]:
    """CPU milliseconds to redact each shape of ``chars`` characters: ``{shape: {"p50_ms", "max_ms"}}``,
    plus ``"all"`` over every run. ``repeats`` timed runs per shape, after one warm-up run."""
    results: dict[str, dict[str, float]] = {}
    every: list[float] = []
    for name, make in HOSTILE_SHAPES.items():
        text = make(chars)
        redact(text)
        times = []
        for _ in range(repeats):
            start = time.process_time()  # CPU time: steadier than wall time on a shared machine
            redact(text)
            times.append((time.process_time() - start) * 1000)
        every.extend(times)
        results[name] = {"p50_ms": round(statistics.median(times), 3), "max_ms": round(max(times), 3)}
    results["all"] = {"p50_ms": round(statistics.median(every), 3), "max_ms": round(max(every), 3)}
    return results
