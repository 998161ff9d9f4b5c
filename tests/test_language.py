"""The language gate: foreign messages are handed off, English ones (however short or odd) are served."""
# ruff: noqa: RUF001

from __future__ import annotations

import csv
import dataclasses
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from nlu.corpora import BANKING77_TRAIN, CLINC150_OOS_DEV
from nlu.language import (
    HANDOFF_REPLIES,
    UNSTAFFED_REPLIES,
    LanguageGate,
    LanguageResult,
    handoff_reply,
    unstaffed_reply,
)

SAMPLES = Path(__file__).parent / "data" / "language_samples.csv"

#: Foreign samples the gate keeps as English, knowingly: made of English-looking words, detector unsure.
KNOWN_MISSES = {"Comment changer mon code PIN ?"}

#: Short or odd English banking messages: typos, slang, brand and place names, codes, mixed languages.
TRICKY_ENGLISH = [
    # French merchants in lower case (a reviewer's finding when the foreign bar went to 0.55)
    "paid carrefour bordeaux twice",
    "charge le pain quotidien twice",
    "top up not working",
    "card declined at tesco",
    "pin?",
    "hi",
    "ok thanks",
    "BIC and IBAN pls",
    "wen will my card arive",
    "Apple Pay",
    "a 1099-INT form",
    "hello",
    "thx",
    "cheers mate",
    "yo wheres my money",
    "cant login",
    "Google Pay not werking",
    "refund from Zara",
    "charged twice by Uber Eats",
    "payment to Carrefour pending",
    "atm ate my card",
    "SWIFT code?",
    "IBAN DE89 3704 0044 0532 0130 00",
    "exchange rate EUR to GBP",
    "sent €50 to my mum in Madrid",
    "Monzo to Barclays transfer",
    "Deutsche Bank transfer not arrived",
    "paid Café Nero twice",
    "Hola, my card is not working",
    "gracias for the help",
    "Bonjour card not working",
    "merci",
    "no card yet",
    "still no card",
    "whats the fee",
    "Auto top-up",
    "ur app keeps crashing",
    "y was i charged",
    "u there?",
    "Amazon Prime refund",
    "Airbnb hold on my card",
    "Zalando return refund",
    "transfer to Banco Santander",
    "Credit Agricole transfer",
    "paid at Mercadona",
    "charge from Deutsche Bahn",
    "charge from Schwarzwald Apotheke Freiburg",
    "payment to Zahnarztpraxis Müller",
    "pending at Aldi Süd",
    "Señor Frog's charge",
    "fee for cash at Bancomat",
    "W-8BEN form",
    "3DS verification failing",
    "Amex or Visa?",
    "I prefer Mastecard.",
    "can i use it in españa",
    "is there a fee in Portugal",
    "Can I pay at Carrefour in Montpellier?",
    "Why was my payment to Société Générale returned?",
    "Transfer to Banca Intesa Sanpaolo is pending",
    "I bought tapas at La Boqueria and was charged twice",
    "give me celcius to fahrenheit",
    "can you define the word schadenfreude",
    "sent money to Иван",
    "Transfer to Иван Петров",
    "paid 张伟 for dinner last night",
    "MY CARD IS NOT WORKING",
    "WHERE IS MY CARD",
    "ATM PIN CVV",
    "IBAN BIC SWIFT",
    "USD EUR GBP",
    "𝐇𝐞𝐥𝐥𝐨 𝐦𝐲 𝐜𝐚𝐫𝐝 ｉｓ ｂｒｏｋｅｎ",
    "¯\\_(ツ)_/¯",
    "ಠ_ಠ",
    "(ﾉ◕ヮ◕)ﾉ",
    "π",
    "john.smith@example.com",
    "https://example.com/help",
]

NO_LETTERS = ["", "   ", "\n\t", "😀", "👍👍", "1234", "£20", "12/05/2024", "+44 7700 900123", "?!", "..."]

#: Latin-script messages of one or two words are assumed English, whatever their language (by design).
SHORT_FOREIGN_LATIN = ["Hola", "Merci beaucoup", "Kartımı kaybettim", "Danke schön", "Bom dia"]


def _samples() -> list[tuple[str, str]]:
    with SAMPLES.open(newline="", encoding="utf-8") as handle:
        return [(row["text"], row["language"]) for row in csv.DictReader(handle)]


def _english_corpora() -> list[str]:
    texts: list[str] = []
    for path in (BANKING77_TRAIN, CLINC150_OOS_DEV):
        with path.open(newline="", encoding="utf-8") as handle:
            texts.extend(row["text"] for row in csv.DictReader(handle))
    return texts


@pytest.fixture(scope="module")
def gate() -> LanguageGate:
    return LanguageGate()


def test_sample_file_is_large_and_varied() -> None:
    samples = _samples()
    languages = {language for _, language in samples}
    assert len(samples) >= 80
    assert {"zh", "es", "fr", "de", "it", "pt", "nl", "ru", "tr", "ar", "ja", "ko"} <= languages
    assert "en" not in languages


@pytest.mark.parametrize(("text", "language"), _samples())
def test_foreign_sample_detected_in_its_language(gate: LanguageGate, text: str, language: str) -> None:
    if text in KNOWN_MISSES:
        pytest.xfail("known miss: English-looking words, kept as English")
    result = gate.detect([text])[0]
    assert result.language == language, result
    assert not result.served


def test_foreign_samples_meet_the_targets(gate: LanguageGate) -> None:
    samples = _samples()
    results = gate.detect([text for text, _ in samples])
    right = sum(r.language == language for r, (_, language) in zip(results, samples, strict=True))
    not_english = sum(not r.served for r in results)
    assert right / len(samples) >= 0.95
    assert not_english >= len(samples) - len(KNOWN_MISSES)


@pytest.mark.parametrize("text", TRICKY_ENGLISH)
def test_tricky_english_is_served(gate: LanguageGate, text: str) -> None:
    result = gate.detect([text])[0]
    assert result.served, result
    assert result.language == "en"


def test_no_english_corpus_text_is_flagged(gate: LanguageGate) -> None:
    texts = _english_corpora()
    assert len(texts) == 11_403
    flagged = [(text, r) for text, r in zip(texts, gate.detect(texts), strict=True) if not r.served]
    assert flagged == []


@pytest.mark.parametrize("text", NO_LETTERS)
def test_text_without_letters_is_served(gate: LanguageGate, text: str) -> None:
    result = gate.detect([text])[0]
    assert result == LanguageResult("en", 0.0, True, result.reason)
    assert "English assumed" in result.reason


@pytest.mark.parametrize("text", SHORT_FOREIGN_LATIN)
def test_one_or_two_latin_words_are_assumed_english(gate: LanguageGate, text: str) -> None:
    result = gate.detect([text])[0]
    assert (result.language, result.served, result.confidence) == ("en", True, 0.0)


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("卡", "zh"),
        ("카드", "ko"),
        ("ありがとう", "ja"),
        ("口座を解約したいです", "ja"),
        ("спасибо", "ru"),
        ("Моя картка не працює", "uk"),
        ("شكرا", "ar"),
        ("धन्यवाद", "hi"),
        ("Ευχαριστώ", "el"),
        ("הכרטיס שלי לא עובד", "he"),
        ("کارت من هنوز نرسیده است", "fa"),
        ("hi 你好", "zh"),
        ("Apple Pay не работает", "ru"),
        ("我的Visa卡在ATM被吞了", "zh"),
        ("МОЯ КАРТА НЕ РАБОТАЕТ", "ru"),
    ],
)
def test_non_latin_script_decides_even_short_texts(gate: LanguageGate, text: str, language: str) -> None:
    result = gate.detect([text])[0]
    assert result.language == language, result
    assert not result.served
    assert 0.0 < result.confidence <= 1.0


def test_shouted_foreign_text_is_detected(gate: LanguageGate) -> None:
    result = gate.detect(["NO FUNCIONA MI TARJETA DESDE AYER"])[0]
    assert (result.language, result.served) == ("es", False)


def test_results_keep_order_and_shape(gate: LanguageGate) -> None:
    texts = ["Wo ist meine neue Karte?", "where is my new card?", "", "我的卡还没到"]
    results = gate.detect(texts)
    assert [r.language for r in results] == ["de", "en", "en", "zh"]
    assert [r.served for r in results] == [False, True, True, False]
    for result in results:
        assert 0.0 <= result.confidence <= 1.0
        assert result.reason
    with pytest.raises(dataclasses.FrozenInstanceError):
        results[0].served = True  # type: ignore[misc]
    assert gate.detect([]) == []
    assert gate.detect_one("Ma carte est bloquée").language == "fr"


def test_served_languages_are_configurable() -> None:
    gate = LanguageGate(served={"en", "ES"})
    spanish, french = gate.detect(["¿Dónde está mi tarjeta nueva?", "Ma carte est bloquée"])
    assert (spanish.language, spanish.served) == ("es", True)
    assert (french.language, french.served) == ("fr", False)


def test_bad_arguments_raise() -> None:
    gate = LanguageGate()
    with pytest.raises(TypeError):
        gate.detect("a single string")
    with pytest.raises(TypeError):
        gate.detect([None])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="'en'"):
        LanguageGate(languages=["fr", "de"])
    with pytest.raises(ValueError, match="xx"):
        LanguageGate(languages=["en", "fr", "xx"])


def test_detector_is_built_lazily_and_once_across_threads() -> None:
    gate = LanguageGate()
    assert not gate.loaded
    gate.detect(["hi", "我的卡还没到", "12345"])
    assert not gate.loaded  # decided without the detector
    texts = ["where is my card", "Ma carte est bloquée", "Моя карта не работает"]
    outcomes: list[list[LanguageResult]] = []
    lock = threading.Lock()

    def run() -> None:
        results = gate.detect(texts)
        with lock:
            outcomes.append(results)

    threads = [threading.Thread(target=run) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert gate.loaded
    assert len(outcomes) == 8
    assert all(outcome == outcomes[0] for outcome in outcomes)
    assert [r.language for r in outcomes[0]] == ["en", "fr", "ru"]
    gate.warm_up()
    assert gate.detect(texts) == outcomes[0]


@pytest.mark.parametrize("language", sorted(HANDOFF_REPLIES))
def test_handoff_reply_in_each_language(language: str) -> None:
    reply = handoff_reply(language)
    assert reply == HANDOFF_REPLIES[language]
    assert reply.strip() and len(reply) < 200
    if language != "en":
        assert reply != HANDOFF_REPLIES["en"]


def test_handoff_reply_covers_the_languages_and_falls_back_to_english() -> None:
    required = {"zh", "es", "fr", "de", "it", "pt", "nl", "pl", "ru", "tr", "ar", "ja", "ko"}
    assert required <= set(HANDOFF_REPLIES)
    english = "Sorry, I can only answer in English for now. I'm passing you to a colleague from our team."
    assert handoff_reply("en") == english
    assert handoff_reply("xx") == english
    assert handoff_reply("und") == english
    assert handoff_reply("") == english
    assert handoff_reply("pt-BR") == HANDOFF_REPLIES["pt"]
    assert handoff_reply(" ZH_hans ") == HANDOFF_REPLIES["zh"]


def test_the_unstaffed_reply_covers_the_same_languages_and_falls_back_to_english() -> None:
    """Where no person can take over, a customer handed off for their language is told so in it."""
    assert set(UNSTAFFED_REPLIES) == set(HANDOFF_REPLIES)
    english = UNSTAFFED_REPLIES["en"]
    assert english.startswith("I'm sorry, I can't answer that here, and no one from our team")
    assert len(set(UNSTAFFED_REPLIES.values())) == len(UNSTAFFED_REPLIES)  # each one translated
    assert all(text.strip() and len(text) < 260 for text in UNSTAFFED_REPLIES.values())
    assert (
        unstaffed_reply("zh") == UNSTAFFED_REPLIES["zh"]
        and unstaffed_reply("pt-BR") == UNSTAFFED_REPLIES["pt"]
    )
    assert unstaffed_reply("xx") == unstaffed_reply("und") == unstaffed_reply("") == english


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("הכרטיס שלי לא עובד", "he"),
        ("Η κάρτα μου δεν λειτουργεί", "el"),
        ("บัตรของฉันใช้ไม่ได้", "th"),
        ("کارت من هنوز نرسیده است", "fa"),
        ("میرا کارڈ کام نہیں کر رہا", "ur"),
    ],
)
def test_a_language_told_by_its_script_is_answered_in_it(
    gate: LanguageGate, text: str, language: str
) -> None:
    """A customer whose script alone names the language is not told in English that Teller only
    speaks English (a trial found Hebrew answered so)."""
    result = gate.detect([text])[0]
    assert (result.language, result.served) == (language, False)
    assert handoff_reply(result.language) == HANDOFF_REPLIES[language] != HANDOFF_REPLIES["en"]
    assert unstaffed_reply(result.language) == UNSTAFFED_REPLIES[language] != UNSTAFFED_REPLIES["en"]


def test_every_detected_language_has_a_reply(gate: LanguageGate) -> None:
    for text, _ in _samples():
        result = gate.detect([text])[0]
        if not result.served:
            assert handoff_reply(result.language) == HANDOFF_REPLIES[result.language]


def test_language_module_does_not_import_bot() -> None:
    code = (
        "import sys, nlu.language; "
        "bad = [m for m in sys.modules if m == 'bot' or m.startswith('bot.')]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent.parent)


def test_three_english_function_words_skip_the_detector(monkeypatch: pytest.MonkeyPatch) -> None:
    """Three different English function words decide English before the detector's pass; two do
    not (the detector still judges "Hola, my card is not working" and every foreign sample)."""
    gate = LanguageGate()
    asked: list[str] = []
    real = gate._confidences

    def counted(texts: list[str]) -> list[dict[str, float]]:
        asked.extend(texts)
        return real(texts)

    monkeypatch.setattr(gate, "_confidences", counted)
    sure = gate.detect_one("why has my card still not arrived")
    assert sure.language == "en" and sure.served and "without the detector" in sure.reason
    assert asked == []
    assert gate.detect_one("Hola, my card is not working").language == "en"
    assert asked == ["Hola my card is not working"]
    assert gate.detect_one("Ho perso la mia carta di credito").language == "it"
    # A reviewer's: foreign messages quoting an English error hold three such words too; their
    # letters, or the share of English words, leave them to the detector (which names these two).
    quoting = {
        "Dzień dobry, przy płatności kartą pojawia się komunikat „Your card has been declined, please "
        "contact your bank”. Co się dzieje?": "pl",
        "Ik heb mijn been gebroken en kan niet naar het filiaal komen, kunnen jullie mijn pas "
        "opsturen? Thanks for the help": "nl",
    }
    for text, language in quoting.items():
        assert gate.detect_one(text).language == language, text


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("mi card está bloqueada desde ayer", "es"),
        ("le payment a été refusé deux fois", "fr"),
        ("la mia card è bloccata da ieri", "it"),
        ("quero o refund do pagamento de hoje", "pt"),
        ("mi tarjeta fue charged dos veces", "es"),
        ("la carte a été refusée, je veux mon money", "fr"),
    ],
)
def test_an_english_banking_loanword_leaves_a_foreign_text_foreign(
    gate: LanguageGate, text: str, language: str
) -> None:
    """A reviewer's finding: when an English banking word counted as a function word, one loanword
    ("card", "payment", "refund") kept these as English, even at French 0.92."""
    assert gate.detect_one(text).language == language
