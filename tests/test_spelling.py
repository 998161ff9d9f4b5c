"""Spelling correction before the encoders read a message (:mod:`nlu.spelling`)."""

from __future__ import annotations

import pytest

from nlu.spelling import SpellingCorrector, words


@pytest.fixture(scope="module")
def speller() -> SpellingCorrector:
    return SpellingCorrector(["debit", "topup", "cashpoint", "Zelle", "paperless"], known=["neighbor"])


@pytest.mark.parametrize(
    ("typed", "read"),
    [
        ("stil no deit card in the mail", "still no debit card in the mail"),
        ("freeze my card uwtil i figuer out where", "freeze my card until i figure out where"),
        ("Waitibng for my card", "Waiting for my card"),  # the first word may start with a capital
        ("my topuo failed", "my topup failed"),  # the domain's word, not a rarer English one
        ("zelel payment", "zelle payment"),
        # Chat spellings, spelt out whatever their length (a trial: "shud" read as "shut").
        ("im starting uni what account shud i get", "im starting uni what account should i get"),
        ("U sent me the wrong card pls fix it thx", "You sent me the wrong card please fix it thanks"),
        ("wat is ur fee", "what is your fee"),
    ],
)
def test_misspelt_words_are_corrected(speller: SpellingCorrector, typed: str, read: str) -> None:
    assert speller.correct(typed) == read


@pytest.mark.parametrize(
    "typed",
    [
        "is it free to use cashpoints",  # a plural of a domain word is not another word
        "My neighbor uses Zelle",  # known words
        "send it to Queenstown",  # a capital mid-message: a name
        "is my HELOC rate fixed",  # capitals kept
        "my pin was blocked",  # words shorter than four letters are not read
        "email jonh.smith@example.com or file reprot.pdf",  # parts of an address or a file name
        "ref abc123x and order_numbr",  # joined to digits or an underscore
        "i havent got it, isnt it sent",  # an apostrophe left out is the customer's way of writing
        "iban and bacs, my revolut via zelle or mpesa, usdt, bpay billers",  # finance terms shipped
        "pay with gPay at mBank or PayPal",  # a capital inside: a brand
        "UR 4477 and U2 or ref u_4",  # a chat spelling in capitals, or joined to a code, is not one
        "pay Wen Li and J U Patel",  # with a capital past the first word: a name
        "¿Dónde está?",  # letters outside ASCII are not read as words
        "",
        "   ",
    ],
)
def test_what_is_not_a_misspelt_word_is_left_as_typed(speller: SpellingCorrector, typed: str) -> None:
    assert speller.correct(typed) == typed


def test_between_two_domain_words_the_more_frequent_is_the_correction() -> None:
    """ "deit" is one edit from "debit" and from "edit": the word the domain uses more wins."""
    assert SpellingCorrector({"debit": 900, "edit": 40}).correct("no deit card") == "no debit card"
    assert SpellingCorrector({"debit": 40, "edit": 900}).correct("no deit card") == "no edit card"
    assert SpellingCorrector(["edit"]).with_domain(["debit", "debit"]).correct("deit") == "debit"


def test_spacing_and_punctuation_are_kept(speller: SpellingCorrector) -> None:
    assert speller.correct("  stil, no card!!\n(waitibng)") == "  still, no card!!\n(waiting)"


def test_a_corrector_with_more_domain_words_knows_and_offers_them() -> None:
    fresh = SpellingCorrector()
    assert fresh.correct("open a kiwisavr") == "open a kiwisavr"  # no known word one edit away
    assert fresh.correct("my saltbush account") == "my saltbush account"  # in the word list
    banks = fresh.with_domain(words("How do I join KiwiSaver?"))
    assert banks.correct("open a kiwisavr") == "open a kiwisaver"
    assert fresh.correct("open a kiwisavr") == "open a kiwisavr"  # the first is unchanged


def test_correcting_from_many_threads_gives_what_one_thread_gives(speller: SpellingCorrector) -> None:
    """symspellpy's edit distance reuses its work lists: lookups are made one at a time."""
    from concurrent.futures import ThreadPoolExecutor

    texts = ["deit stil waitibng uwtil figuer brnch walelet replcaement"] * 400
    alone = [speller.correct(t) for t in texts]
    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(speller.correct, texts)) == alone


def test_the_policy_reads_corrected_words_and_learns_the_banks_own(teller_env: object) -> None:
    """What the encoders read is corrected, with the knowledge base's words learnt as it changes;
    the signals keep the text as typed (what is stored and what the language is told from)."""
    from bot.assistant import build_policy
    from bot.settings import get_settings
    from retrieval.entry import KBEntry

    policy = build_policy(get_settings())
    assert policy.read(["still waitibng for my card"]) == ["still waiting for my card"]
    assert policy.read(["join kiwisavr"]) == ["join kiwisavr"]  # no word near it yet
    policy.kb.add([KBEntry.build("kiwisaver", ["How do I join KiwiSaver?"], "Ask us in the app.")])
    assert policy.read(["join kiwisavr", "my KiwiSaver"]) == ["join kiwisaver", "my KiwiSaver"]
    # A message in a language Teller does not serve is read as typed.
    assert policy.read(["ich habe meine karte verloren"], served=[False]) == ["ich habe meine karte verloren"]
    [german] = policy.signals(["Ich habe meine Karte verloren, bitte sperren"])
    assert not german.language.served and german.prediction.text == german.text
    [signals] = policy.signals(["still waitibng for my card"])
    assert signals.text == "still waitibng for my card"
    assert signals.prediction.text == "still waiting for my card"
