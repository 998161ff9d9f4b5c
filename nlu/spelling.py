"""Spelling correction of a customer's words before the encoders read them.

Customers type fast: "stil no deit card", "waitibng for the one you mailed". WordPiece splits a
misspelt word into pieces that mean little, and the keyword index does not find it at all, so a
typo'd question is handed off or answered with another entry. Measured on the four operator-FAQ dev
banks (``teller eval --kb``, 722 questions; 2 cores, default model, 2026-12-03) with typos put in
(one single-edit typo in half the questions, a second in a fifth, words of four letters or more):
right answers 52.5 % -> 64.5 % with this correction (wrong 7.0 -> 8.0 %); the questions as written
68.3 -> 67.3 % (the knowledge-base re-fit lands elsewhere). The Banking77 dev split with typos put
in alike: answered right 78.3 -> 91.7 %, false handoffs 6.0 -> 1.5 %.

The method is SymSpell's (symmetric delete, Wolf Garbe; the well-kept `symspellpy` package, MIT) over
the English word-frequency list that ships inside that package (82,765 words), within one edit
(a letter left out, put in, changed, or two swapped). A word is left as typed when:

- it is shorter than :data:`MIN_LENGTH` letters ("atm", "chk": short words are too easily another
  word), or is joined to digits, an apostrophe, an underscore, a slash, an @ or a dot and a letter
  (an address, a file name, a code; a hyphen's halves are read apart);
- it has a capital after its first letter ("HELOC", "gPay", "PayPal"), or starts with one anywhere
  but at the start of the message (a name: "Queenstown", "Zelle");
- it is a known word: in the frequency list, in the encoder's own vocabulary (whole words), or in
  the domain vocabulary given (the training corpus, the knowledge base's entries: "topup",
  "cashpoint", the bank's product names), or in the finance terms shipped with Teller
  (:data:`FINANCE_TERMS`: payment schemes and apps, card networks, banks, crypto-assets: "iban",
  "zelle", "payid", "usdt"), or the plural of one; or a contraction typed without its apostrophe
  ("havent", :data:`CONTRACTIONS`);
- no word of the list is within one edit of it.

Chat spellings of common words ("shud", "pls", "u", :data:`TEXT_SPEAK`) are spelt out first,
whatever their length: in lower case anywhere, with a capital first letter only as the message's
first word ("U sent me the wrong card"; "transfer to Wen Li" and "J U Patel" are names), never in
capitals ("UR") or joined to a code.

Only a message in a language Teller serves is corrected (the policy asks the language gate first: a
Spanish or German message is not made into English-looking words). What is stored and shown keeps
what the customer typed; only what the encoders and the keyword index read is corrected. Raises
nothing: any text comes back, corrected or as it was.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.resources
import re
import threading
from collections import Counter
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path

from symspellpy import SymSpell, Verbosity

#: Shorter words are left as typed.
MIN_LENGTH = 4
#: Edits a correction may be away from the word typed (SymSpell's ``max_edit_distance``).
MAX_EDITS = 1
#: Bump when how a correction is chosen changes (2: between domain words, the more frequent; 3:
#: text-speak spelt out first, :data:`TEXT_SPEAK`).
VARIANT = 3
#: The frequency list inside the symspellpy package.
DICTIONARY = "frequency_dictionary_en_82_765.txt"
#: How many of its most frequent words a correction may be (the 40,000th is "oocyte"); the
#: rarer ones are still never corrected.
SUGGESTED_WORDS = 40_000
#: A word of the domain vocabulary counts as this frequent, plus the times it was seen (the domain's
#: own order among its words).
DOMAIN_COUNT = 10**7

#: English contractions as customers type them without the apostrophe: words as they are, though
#: the frequency list (which has no apostrophes) holds none of them ("havent" is not "haven").
CONTRACTIONS = frozenset(
    [
        "arent",
        "cant",
        "couldnt",
        "didnt",
        "doesnt",
        "dont",
        "hadnt",
        "hasnt",
        "havent",
        "hed",
        "hes",
        "id",
        "ill",
        "im",
        "isnt",
        "itll",
        "ive",
        "lets",
        "mightnt",
        "mustnt",
        "neednt",
        "shant",
        "shed",
        "shes",
        "shouldnt",
        "thats",
        "theres",
        "theyd",
        "theyll",
        "theyre",
        "theyve",
        "wasnt",
        "wed",
        "weve",
        "werent",
        "whats",
        "wheres",
        "whos",
        "wont",
        "wouldnt",
        "youd",
        "youll",
        "youre",
        "youve",
    ]
)
#: Chat and text-message spellings of common words, spelt out before anything else, whatever their
#: length: one edit away they read as other words ("shud" is one edit from "shut", two from
#: "should": a student asking "what account shud i get" was read as closing an account). Only
#: spellings that mean nothing else in a bank's chat (not "acc", "yr", "r", "cos").
TEXT_SPEAK: Mapping[str, str] = {
    "abt": "about",
    "becoz": "because",
    "bcos": "because",
    "coz": "because",
    "cuz": "because",
    "cud": "could",
    "cld": "could",
    "pls": "please",
    "plz": "please",
    "plzz": "please",
    "ppl": "people",
    "shud": "should",
    "shld": "should",
    "smth": "something",
    "sth": "something",
    "thx": "thanks",
    "thnx": "thanks",
    "tmrw": "tomorrow",
    "u": "you",
    "ur": "your",
    "wat": "what",
    "wen": "when",
    "wot": "what",
    "wud": "would",
    "wld": "would",
}

_WORD = re.compile(r"[A-Za-z]+")
#: A word next to one of these is part of a longer token (a right single quotation mark included).
_JOINERS = "'_/@\\" + chr(0x2019)
_BASE: tuple[SymSpell, frozenset[str]] | None = None
_BASE_LOCK = threading.Lock()
#: symspellpy's edit distance reuses its work lists from call to call: one lookup at a time.
_LOOKUP_LOCK = threading.Lock()
#: Finance words the English list lacks ("iban", "zelle", "payid", "usdt"...), never corrected.
FINANCE_TERMS = Path(__file__).resolve().parent / "data" / "finance_terms.txt"


def words(text: str) -> set[str]:
    """The lower-case words of letters only in ``text``."""
    return {w.lower() for w in _WORD.findall(text)}


def _base() -> tuple[SymSpell, frozenset[str]]:
    """The frequency list's most frequent :data:`SUGGESTED_WORDS` words as a SymSpell index (what a
    correction may be), and every word of it (what is never corrected); built once per process
    (about 0.8 s and 90 MB on 2 cores)."""
    global _BASE
    with _BASE_LOCK:
        if _BASE is None:
            index = SymSpell(max_dictionary_edit_distance=MAX_EDITS, prefix_length=7)
            path = importlib.resources.files("symspellpy") / DICTIONARY
            rows = [line.split() for line in path.read_text(encoding="utf-8").splitlines()]
            counted = sorted(((int(count), word) for word, count in rows), reverse=True)
            for count, word in counted[:SUGGESTED_WORDS]:
                index.create_dictionary_entry(word, count)
            _BASE = (index, frozenset(word for _, word in counted))
        return _BASE


@cache
def finance_terms() -> frozenset[str]:
    """The words of :data:`FINANCE_TERMS`, lower case."""
    lines = FINANCE_TERMS.read_text(encoding="utf-8").splitlines()
    return frozenset(w.strip().lower() for w in lines if w.strip() and not w.startswith("#"))


@cache
def variant() -> str:
    """What decides a correction besides the domain vocabulary: the constants, the word list, the
    finance terms and the symspellpy version (for the keys of caches of what was read)."""
    terms = hashlib.sha256(FINANCE_TERMS.read_bytes()).hexdigest()[:8]
    version = importlib.metadata.version("symspellpy")
    rules = f"v{VARIANT}-{MAX_EDITS}-{MIN_LENGTH}-{SUGGESTED_WORDS}-{DOMAIN_COUNT}"
    return f"{rules}-{DICTIONARY}-{terms}-{version}"


class SpellingCorrector:
    """Corrects misspelt words of a message (see the module's docstring).

    ``domain``: the domain vocabulary (words, any case), never corrected and offered as corrections
    before rarer English words; ``known``: more words never corrected but not offered (an encoder's
    vocabulary, :func:`finance_terms`, which are always known). Immutable once built (a knowledge
    base that changed gets a new one, :meth:`with_domain`: about 0.1 s for 5,000 words) and
    thread-safe.
    """

    def __init__(self, domain: Iterable[str] | Mapping[str, int] = (), known: Iterable[str] = ()) -> None:
        self._index, self._words = _base()
        self._own = SymSpell(max_dictionary_edit_distance=MAX_EDITS, prefix_length=7)
        # How often each domain word was seen (1 when only listed): between two domain words one
        # edit away, the more frequent is the correction ("deit": "debit", not "edit").
        counts: Counter[str] = Counter()
        if isinstance(domain, Mapping):
            for w, n in domain.items():
                counts[w.lower()] += int(n)
        else:
            counts.update(w.lower() for w in domain)
        self._counts = {w: n for w, n in counts.items() if w.isalpha()}
        self._domain = frozenset(self._counts)
        for word, seen in self._counts.items():
            self._own.create_dictionary_entry(word, DOMAIN_COUNT + seen)
        self._known = frozenset(w.lower() for w in known if w.isalpha()) | finance_terms()

    def with_domain(self, more: Iterable[str]) -> SpellingCorrector:
        """A corrector whose domain vocabulary is this one's and ``more`` (each occurrence counted)."""
        counts = Counter(self._counts)
        counts.update(w.lower() for w in more)
        return SpellingCorrector(counts, self._known)

    def is_known(self, word: str) -> bool:
        """Whether ``word`` (any case) is a word as it is: in a vocabulary, a contraction written
        without its apostrophe ("havent"), or the plural of a known word ("cashpoints")."""
        low = word.lower()
        if low in CONTRACTIONS:
            return True
        forms = [low]
        if low.endswith("s"):
            forms.append(low[:-1])
            if low.endswith("es"):
                forms.append(low[:-2])
        return any(f in self._domain or f in self._known or f in self._words for f in forms)

    def correct(self, text: str) -> str:
        """``text`` with each misspelt word replaced by the nearest known one (its first letter's
        case kept); the rest, spacing and punctuation included, as it was."""
        first = _WORD.search(text)
        start = first.start() if first is not None else -1

        def one(m: re.Match[str]) -> str:
            word = m.group(0)
            spelt = TEXT_SPEAK.get(word.lower())
            # In lower case anywhere; with a capital first letter only at the start of the message
            # (elsewhere a name: "transfer to Wen Li", "J U Patel"); never joined to a code.
            as_typed = word.islower() or (word.istitle() and m.start() == start)
            if spelt is not None and as_typed and not _attached(text, m.start(), m.end()):
                return spelt.capitalize() if word[0].isupper() else spelt
            if len(word) < MIN_LENGTH or not word[1:].islower() or self.is_known(word):
                return word  # short, capitals inside ("HELOC", "gPay", "PayPal"), or known
            if word[0].isupper() and m.start() != start:
                return word
            if _attached(text, m.start(), m.end()):
                return word
            fix = self._suggest(word.lower())
            if fix is None:
                return word
            return fix.capitalize() if word[0].isupper() else fix

        return _WORD.sub(one, text)

    def _suggest(self, word: str) -> str | None:
        with _LOOKUP_LOCK:
            own = self._own.lookup(word, Verbosity.CLOSEST, max_edit_distance=MAX_EDITS)
            english = self._index.lookup(word, Verbosity.CLOSEST, max_edit_distance=MAX_EDITS)
        # A domain word counts as the domain saw it (its own index), not as English does.
        found = [*own, *(s for s in english if s.term not in self._domain)]
        if not found:
            return None
        # The closest; among those, a domain word first (the one the domain uses most), then the
        # most frequent English word.
        best = min(found, key=lambda s: (s.distance, s.term not in self._domain, -s.count))
        return str(best.term)


def _attached(text: str, start: int, end: int) -> bool:
    """Whether the word at ``text[start:end]`` is part of a longer token: joined to digits, an
    apostrophe, an underscore, a slash, an @ or a dot followed by a letter (an address, a file
    name, a code), which is left as typed."""
    before = text[start - 1] if start > 0 else " "
    after = text[end] if end < len(text) else " "
    if before.isdigit() or after.isdigit() or before in _JOINERS or after in _JOINERS:
        return True
    return after == "." and end + 1 < len(text) and text[end + 1].isalpha()
