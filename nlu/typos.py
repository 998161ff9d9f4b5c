"""Typing mistakes put into messages, to measure how Teller reads careless input (``teller eval --typos``).

Customers type on phones, in a hurry: a held-out set written with care says how Teller answers
careful customers only. :func:`add_typos` copies a list of messages with single-edit mistakes put
into some of their words, the way people mistype (the kinds of Damerau's 1964 study of spelling
errors, which found over 80 % of misspellings to be one edit: a letter left out, one added, one
replaced, two swapped; an added or replaced letter here is a neighbour on a QWERTY keyboard).

Method, per message, each with its own :class:`random.Random` seeded by the seed and the message's
text (the same seed gives the same mistakes in a message whatever else is in the list, or in what
order):

- with probability ``first`` (default 0.5) one word gets one mistake, and, drawn apart from that,
  with probability ``second`` (default 0.2) a word gets one (another word where the message has
  one): about 60 % of the messages change, 10 % in two words;
- only words of at least :data:`MIN_LETTERS` letters, nothing but ASCII letters between spaces
  (punctuation around them aside), are touched: short words, numbers, amounts, ids, addresses,
  contractions and words with accents keep their form;
- the mistake is one of: delete a letter, insert a keyboard neighbour of the letter before it,
  replace a letter by one of its keyboard neighbours, swap two adjacent letters (two equal letters:
  one of them deleted), each as likely, never at the first letter; an inserted or replacing letter
  takes the case of the letter it is a neighbour of.

Errors: :class:`ValueError` for a probability outside ``[0, 1]``.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

#: Shortest word that may get a mistake.
MIN_LETTERS = 4
#: The seed ``teller eval --typos`` uses unless given another: figures in the README are for it.
DEFAULT_SEED = 11

_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")


def _keyboard_neighbours() -> dict[str, str]:
    """Each letter's neighbours on a QWERTY keyboard: left and right on its row, and the keys above
    and below that touch it."""
    neighbours = {}
    for r, row in enumerate(_ROWS):
        for c, letter in enumerate(row):
            near = [row[j] for j in (c - 1, c + 1) if 0 <= j < len(row)]
            for other in (r - 1, r + 1):
                if 0 <= other < len(_ROWS):
                    near += [_ROWS[other][j] for j in (c - 1, c, c + 1) if 0 <= j < len(_ROWS[other])]
            neighbours[letter] = "".join(dict.fromkeys(near))
    return neighbours


#: Each letter's neighbours on a QWERTY keyboard (:func:`_keyboard_neighbours`).
NEIGHBOURS: dict[str, str] = _keyboard_neighbours()

#: A word of ASCII letters only, between spaces or the ends of the text, with at most the usual
#: punctuation around it: ``(card)``, ``"lost",`` but not ``hasn't``, ``card1234``, ``a.b@c.com``.
_OPEN = "(\"'\u201c\u2018["  # opening brackets and quotes, curly ones too
_CLOSE = ".,!?;:)\"'\u201d\u2019]"
_WORD = re.compile(rf"(?<!\S)[{re.escape(_OPEN)}]*([A-Za-z]{{{MIN_LETTERS},}})[{re.escape(_CLOSE)}]*(?!\S)")


def add_typos(
    texts: Sequence[str], seed: int = DEFAULT_SEED, first: float = 0.5, second: float = 0.2
) -> list[str]:
    """A copy of ``texts`` (same length and order) with mistakes put in as the module describes; a
    message with no word long enough is copied unchanged."""
    for name, p in (("first", first), ("second", second)):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"{name} is a probability in [0, 1], not {p}")
    out = []
    for text in texts:
        rng = random.Random(f"{seed}\0{text}")
        mistakes = (rng.random() < first) + (rng.random() < second)
        out.append(_mistype_words(text, mistakes, rng) if mistakes else text)
    return out


def eligible_words(text: str) -> list[re.Match[str]]:
    """The words of ``text`` a mistake may go into (group 1 of each match is the word)."""
    return list(_WORD.finditer(text))


def _mistype_words(text: str, n: int, rng: random.Random) -> str:
    """``text`` with one mistake in each of ``n`` of its long words (all of them if fewer)."""
    words = eligible_words(text)
    chosen = sorted(rng.sample(words, min(n, len(words))), key=lambda m: m.start(1), reverse=True)
    for m in chosen:  # from the end, so the earlier words' offsets still hold
        text = text[: m.start(1)] + mistype(m.group(1), rng) + text[m.end(1) :]
    return text


def mistype(word: str, rng: random.Random) -> str:
    """``word`` (letters only, at least 3) with one mistake: a letter deleted, a neighbour inserted,
    a letter replaced by a neighbour, or two adjacent letters swapped (a swap of two equal letters
    deletes one of them instead); never its first letter. A shorter word comes back unchanged."""
    if len(word) < 3:
        return word
    kind = rng.randrange(4)
    if kind == 3:
        i = rng.randrange(1, len(word) - 1)
        if word[i] == word[i + 1]:
            return word[:i] + word[i + 1 :]
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    i = rng.randrange(1, len(word))
    if kind == 0:
        return word[:i] + word[i + 1 :]
    if kind == 1:
        return word[:i] + _neighbour(word[i - 1], rng) + word[i:]
    return word[:i] + _neighbour(word[i], rng) + word[i + 1 :]


def _neighbour(letter: str, rng: random.Random) -> str:
    choice = rng.choice(NEIGHBOURS[letter.lower()])
    return choice.upper() if letter.isupper() else choice
