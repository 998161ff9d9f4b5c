"""Typing mistakes put into messages for ``teller eval --typos`` (:mod:`nlu.typos`)."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from nlu.typos import NEIGHBOURS, add_typos, eligible_words, mistype

MESSAGES = [
    "My new card still hasn't arrived, what should I do?",
    "how do I change my PIN",
    "pin for my card",
    "Why was I charged twice for the same coffee yesterday?",
    "transfer 250 to account 12345678 ABCD1234 john.smith@example.com",
    "Statement STATEMENT statement",
] * 300


def one_edit_apart(a: str, b: str) -> bool:
    """Damerau's single edit: one letter deleted, inserted or replaced, or two adjacent swapped."""
    if a == b:
        return False
    if len(a) == len(b):
        diff = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
        return len(diff) == 1 or (
            len(diff) == 2
            and diff[1] == diff[0] + 1
            and a[diff[0]] == b[diff[1]]
            and a[diff[1]] == b[diff[0]]
        )
    short, long = sorted((a, b), key=len)
    if len(long) - len(short) != 1:
        return False
    return any(long[:i] + long[i + 1 :] == short for i in range(len(long)))


def changed_words(before: str, after: str) -> list[tuple[str, str]]:
    old, new = before.split(), after.split()
    assert len(old) == len(new), (before, after)
    return [(w, v) for w, v in zip(old, new, strict=True) if w != v]


def test_the_same_seed_gives_a_message_the_same_mistakes_wherever_it_stands() -> None:
    texts = [
        f"please explain the {word} charges on my statement" for word in ("monthly", "weekly", "annual")
    ] * 50
    assert add_typos(texts, seed=5) == add_typos(texts, seed=5)
    assert add_typos(texts, seed=5) != add_typos(texts, seed=6)
    # A message's mistakes do not depend on the others in the list, or on their order.
    assert add_typos(texts[::-1], seed=5) == add_typos(texts, seed=5)[::-1]
    assert add_typos(texts[:1], seed=5)[0] == add_typos(texts, seed=5)[0]


def test_sixty_percent_change_a_tenth_in_two_words_each_by_one_edit() -> None:
    texts = [f"message {i} about the overdraft charges on my current account" for i in range(4000)]
    typed = add_typos(texts, seed=1)
    per_message = Counter(len(changed_words(a, b)) for a, b in zip(texts, typed, strict=True))
    assert 0.37 < per_message[0] / len(texts) < 0.43  # (1 - 0.5) * (1 - 0.2)
    assert 0.47 < per_message[1] / len(texts) < 0.53
    assert 0.08 < per_message[2] / len(texts) < 0.12  # two different words
    assert set(per_message) == {0, 1, 2}
    for before, after in zip(texts, typed, strict=True):
        for w, v in changed_words(before, after):
            assert len(w) >= 4 and w.isalpha() and one_edit_apart(w, v) and v[0] == w[0], (w, v)


def test_only_whole_words_of_letters_are_touched() -> None:
    typed = add_typos(MESSAGES, seed=2)
    for before, after in zip(MESSAGES, typed, strict=True):
        for w, _ in changed_words(before, after):
            assert w.strip(",.?").isalpha() and len(w.strip(",.?")) >= 4, w
    untouched = ("pin", "for", "my", "250", "12345678", "ABCD1234", "john.smith@example.com", "hasn't", "PIN")
    for word in untouched:
        assert all(
            word in t.split() or word not in s.split() for s, t in zip(MESSAGES, typed, strict=True)
        ), word
    assert [m.group(1) for m in eligible_words("(card) 'lost', café card1234 What's")] == ["card", "lost"]


def test_a_mistake_is_one_edit_with_a_keyboard_neighbour_in_the_case_of_its_letter() -> None:
    rng = random.Random(0)
    kinds: Counter[str] = Counter()
    for word in ("statement", "Statement", "STATEMENT"):
        for _ in range(400):
            out = mistype(word, rng)
            assert one_edit_apart(word, out) and out[0] == word[0], out
            if len(out) == len(word) + 1:  # inserted after the letter it neighbours
                i = next(j for j in range(len(word)) if out[j] != word[j]) if out[:-1] != word else len(word)
                assert out[i].lower() in NEIGHBOURS[out[i - 1].lower()] or out[i] == out[i - 1]
                kinds["insert"] += 1
            elif len(out) == len(word):
                diff = [j for j in range(len(word)) if out[j] != word[j]]
                if len(diff) == 1:  # replaced by its own neighbour, in its case
                    j = diff[0]
                    assert out[j].lower() in NEIGHBOURS[word[j].lower()]
                    assert out[j].isupper() == word[j].isupper()
                    kinds["replace"] += 1
                else:
                    kinds["swap"] += 1
            else:
                kinds["delete"] += 1
    assert all(kinds[k] > 150 for k in ("insert", "replace", "swap", "delete")), kinds
    assert NEIGHBOURS["g"].startswith("fh") and "t" in NEIGHBOURS["g"] and "q" not in NEIGHBOURS["g"]
    assert mistype("ab", rng) == "ab"
    # A swap of two equal letters deletes one of them: "aabb" never comes back unchanged.
    assert all(mistype("aabb", rng) != "aabb" for _ in range(200))


def test_probabilities_are_checked() -> None:
    with pytest.raises(ValueError, match="first is a probability"):
        add_typos(["hello there"], first=1.5)
    with pytest.raises(ValueError, match="second is a probability"):
        add_typos(["hello there"], second=-0.1)


def test_a_banks_questions_keep_their_entries_with_typos_put_in() -> None:
    from bot.faq_eval import with_typos

    questions = [(f"where is the nearest branch number {i}", "branches") for i in range(50)]
    typed = with_typos(questions, 11)
    assert [e for _, e in typed] == ["branches"] * 50
    assert sum(t != q for (t, _), (q, _) in zip(typed, questions, strict=True)) > 15
