"""Messages longer than the classifier's window: judged window by window, by the strongest window.

The tiny toy model (tests/conftest.py) reads 128 tokens. A long message here is an unrelated story
followed (or preceded) by toy-corpus sentences of one intent, so that its start alone reads as
something else: read from its start only, as before, it would be classified wrongly.
"""

from __future__ import annotations

import itertools
import logging
import os
from pathlib import Path

import numpy as np
import pytest

from bot.exemplars import ExemplarSet
from bot.policy import AnswerPolicy, Route, Thresholds, windows_note
from nlu import IntentClassifier, ModelRegistry, Prediction
from nlu.runtime import BATCH_INDEPENDENT, PRECISIONS, OnnxRunner
from nlu.tokenization import MAX_CHARS, MAX_WINDOWS, TextEncoder, length_sorted_batches, pad
from retrieval.entry import KBEntry
from retrieval.knowledge_base import KnowledgeBase
from tests.fakes import HashingEmbedder

STORY = (
    "We spent the summer at my aunt's farm by the sea, walking the dogs and painting the old barn. "
    "My grandmother used to bake bread every Sunday morning. "
    "The weather has been terrible this week and the garden is flooded. "
) * 3


@pytest.fixture(scope="module")
def classifier(trained_models_dir: Path) -> IntentClassifier:
    return IntentClassifier.load(ModelRegistry(trained_models_dir).active_path())


@pytest.fixture(scope="module")
def encoder(classifier: IntentClassifier) -> TextEncoder:
    return TextEncoder(classifier.path / "encoder" / "tokenizer.json", classifier.info.max_length)


def about(classifier: IntentClassifier, toy_rows: list[tuple[str, str]], intent: str) -> str:
    """A dozen of the toy sentences of ``intent`` the model reads best, as one passage (over a window)."""
    texts = [t for t, label in toy_rows if label == intent]
    predictions = classifier.predict(texts)
    best = sorted((p for p in predictions if p.intent == intent), key=lambda p: p.confidence, reverse=True)
    return " ".join(p.text for p in best[:12])


def first_window_text(encoder: TextEncoder, text: str) -> str:
    window = encoder.windows([text])[0][0]
    return text[window.start : window.end]


# ------------------------------------------------------------------------------------ tokenization


def test_a_text_that_fits_is_one_window_with_the_ids_encode_gives(encoder: TextEncoder) -> None:
    text = "where is my new card?"
    [windows] = encoder.windows([text])
    assert len(windows) == 1
    assert windows[0].ids == encoder.encode([text])[0]
    assert text[windows[0].start : windows[0].end] == "where is my new card?"


def test_windows_overlap_cover_the_text_and_keep_the_special_tokens(encoder: TextEncoder) -> None:
    text = " ".join(f"word{i}" for i in range(150))
    [windows] = encoder.windows([text])
    cls, sep = encoder.encode([text])[0][0], encoder.encode([text])[0][-1]
    assert len(windows) > 2
    assert windows[0].ids == encoder.encode([text])[0]  # the first window is what was read before
    assert windows[0].start == 0 and windows[-1].end == len(text)
    for before, after in itertools.pairwise(windows):
        assert before.start < after.start < before.end  # each starts inside the previous: no gap
    for window in windows:
        assert len(window.ids) == encoder.max_length
        assert (window.ids[0], window.ids[-1]) == (cls, sep)


def test_a_very_long_text_gets_at_most_max_windows_spread_from_start_to_end(encoder: TextEncoder) -> None:
    text = "my card has not arrived yet " * 400  # 11,200 characters: cut to MAX_CHARS, then windowed
    [windows] = encoder.windows([text])
    assert len(windows) == MAX_WINDOWS
    assert windows[0].start == 0
    assert windows[-1].end == len(text[:MAX_CHARS].rstrip())
    starts = [w.start for w in windows]
    assert starts == sorted(starts) and len(set(starts)) == MAX_WINDOWS
    [few] = encoder.windows([text], max_windows=3)
    assert len(few) == 3 and few[0].start == 0 and few[-1].end == windows[-1].end


def test_full_width_ascii_reads_as_ascii_with_offsets_into_the_text_as_typed(encoder: TextEncoder) -> None:
    """East Asian input methods type ASCII in its full-width forms (U+FF01-U+FF5E, the ideographic
    space): each such word was [UNK] to the vocabulary."""
    plain = "my card was stolen!"
    typed = "".join("\u3000" if c == " " else chr(ord(c) + 0xFEE0) for c in plain)
    assert typed != plain and encoder.encode([typed]) == encoder.encode([plain])
    [[window]] = encoder.windows([typed])
    assert (window.start, window.end) == (0, len(typed))


def test_the_intent_model_reads_a_debit_card_as_a_card_and_a_direct_debit_as_written(
    classifier: IntentClassifier,
) -> None:
    """Banking77's "debit" is the direct debit's word: "someone took my debit card" was read as an
    unrecognised direct debit (0.96). The intent model's tokenizer blanks "debit" before "card", one
    space a letter (offsets unchanged); the retrieval encoder's reads it."""
    path = classifier.path / "encoder" / "tokenizer.json"
    intents, plain = TextEncoder(path, intents=True), TextEncoder(path)
    for debit, card, read_from in (
        ("someone took my debit card", "someone took my card", 0),
        ("Debit Cards: how long to arrive?", "Cards: how long to arrive?", len("Debit ")),
        ("my debit-card was stolen", "my -card was stolen", 0),
        ("my debitcard was stolen", "my card was stolen", 0),
    ):
        assert intents.encode([debit]) == intents.encode([card]) != plain.encode([debit])
        [[window]] = intents.windows([debit])  # offsets into the text as typed
        assert (window.start, window.end) == (read_from, len(debit))
    for kept in ("cancel my direct debit", "a debit I don't recognise", "debit cardholder"):
        assert intents.encode([kept]) == plain.encode([kept])


def test_window_options_are_checked(encoder: TextEncoder) -> None:
    text = " ".join(f"word{i}" for i in range(150))
    [dense] = encoder.windows([text], stride=16, max_windows=100)
    [default] = encoder.windows([text], max_windows=100)
    assert len(dense) > len(default)
    with pytest.raises(ValueError, match="stride"):
        encoder.windows([text], stride=0)
    with pytest.raises(ValueError, match="max_windows"):
        encoder.windows([text], max_windows=0)


# ------------------------------------------------------------------------------------ classifier


@pytest.mark.parametrize("intent", ["card_arrival", "top_up_failed"])
def test_a_long_message_is_judged_by_its_question_at_the_end(
    classifier: IntentClassifier, encoder: TextEncoder, toy_rows: list[tuple[str, str]], intent: str
) -> None:
    question = about(classifier, toy_rows, intent)
    text = f"{STORY}{question}"
    start = classifier.predict_one(first_window_text(encoder, text))
    assert start.intent != intent  # read from its start only (as before), the message is misread

    p = classifier.predict_one(text)
    assert p.intent == intent
    assert p.truncated and p.windows == len(encoder.windows([text])[0]) > 2
    assert p.window > 0 and p.span is not None
    assert p.judged_text == text[p.span[0] : p.span[1]]
    assert p.span[0] >= len(STORY) // 2  # the kept window lies in the question's half
    assert p.confidence > start.confidence
    assert p.to_dict()["windows"] == p.windows and p.to_dict()["span"] == list(p.span)


def test_the_strongest_window_wins_wherever_it_is(
    classifier: IntentClassifier, toy_rows: list[tuple[str, str]]
) -> None:
    text = f"{about(classifier, toy_rows, 'card_arrival')} {STORY}"
    p = classifier.predict_one(text)
    assert p.windows > 2
    assert (p.intent, p.window) == ("card_arrival", 0)


def read_as_before(classifier: IntentClassifier, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(probabilities, nearest similarity)`` by the pre-window algorithm: each text's first
    ``max_length`` tokens, in length-sorted batches of 64 (one text per batch for a graph whose
    results depend on batch-mates), spelled out from the artifact's files."""
    path = classifier.path
    tokenizer = TextEncoder(path / "encoder" / "tokenizer.json", classifier.info.max_length)
    runner = OnnxRunner(path / PRECISIONS[classifier.precision])
    ids = tokenizer.encode(texts)
    logits = np.zeros((len(texts), len(classifier.labels)), dtype=np.float32)
    embeddings: np.ndarray | None = None
    alone = classifier.precision not in BATCH_INDEPENDENT
    batches = [[i] for i in range(len(ids))] if alone else length_sorted_batches([len(x) for x in ids], 64)
    for batch in batches:
        out_logits, out_embeddings = runner.run(*pad([ids[i] for i in batch]))
        if embeddings is None:
            embeddings = np.zeros((len(texts), out_embeddings.shape[1]), dtype=np.float32)
        logits[batch], embeddings[batch] = out_logits, out_embeddings
    assert embeddings is not None
    return classifier.scorer.from_embeddings(logits, embeddings)


def test_short_texts_are_read_exactly_as_before(
    classifier: IntentClassifier, toy_rows: list[tuple[str, str]]
) -> None:
    texts = [t for t, _ in toy_rows]
    probs, nearest = read_as_before(classifier, texts)
    for i, p in enumerate(classifier.predict(texts)):
        assert p.intent == classifier.labels[int(probs[i].argmax())]
        assert p.confidence == float(probs[i].max())
        assert p.nearest_similarity == float(nearest[i])
        assert (p.truncated, p.windows, p.window, p.span) == (False, 1, 0, None)
        assert p.judged_text == p.text


def test_a_long_batch_mate_leaves_the_others_as_they_were(
    classifier: IntentClassifier, toy_rows: list[tuple[str, str]]
) -> None:
    """Its further windows run in batches of their own: short batch-mates get what they always got
    (the first window of a long text shares their batch, as it always did)."""
    long = f"{STORY}{about(classifier, toy_rows, 'card_arrival')}"
    texts = [toy_rows[0][0], long, *(t for t, _ in toy_rows[4::4])]
    probs, _ = read_as_before(classifier, texts)
    mixed = classifier.predict(texts)
    for i, p in enumerate(mixed):
        if i != 1:
            assert (p.intent, p.confidence) == (
                classifier.labels[int(probs[i].argmax())],
                float(probs[i].max()),
            )
    assert mixed[1].windows > 2 and mixed[1].intent == "card_arrival"
    assert classifier.labels[int(probs[1].argmax())] != "card_arrival"  # as it was read before

    fp32 = IntentClassifier.load(classifier.path, precision="fp32")
    alone = fp32.predict_one(long)
    in_batch = fp32.predict(texts)[1]
    assert (in_batch.intent, in_batch.window, in_batch.windows) == (alone.intent, alone.window, alone.windows)
    assert in_batch.confidence == pytest.approx(alone.confidence, abs=1e-5)


# ------------------------------------------------------------------------------------ policy

T = Thresholds(
    smalltalk=0.8,
    advice=0.8,
    in_scope=0.0,
    intent=0.3,
    clarify_gap=0.0,
    clarify_second=1.0,
    faq=1.0,
    faq_margin=1.0,
    faq_fallback=1.0,
)


@pytest.fixture(scope="module")
def policy_and_embedder(
    classifier: IntentClassifier, tmp_path_factory: pytest.TempPathFactory
) -> tuple[AnswerPolicy, HashingEmbedder]:
    embedder = HashingEmbedder()
    kb = KnowledgeBase.open(tmp_path_factory.mktemp("kb"), embedder, seed=None)
    kb.add(
        [
            KBEntry.build(intent, [intent.replace("_", " ")], f"About {intent}.", intent)
            for intent in classifier.labels
        ]
    )
    smalltalk = ExemplarSet(["hello"], ["greeting"], {"greeting": "Hello!"})
    advice = ExemplarSet(["where should I invest"], ["advice"], {"advice": "Not advice."})
    # fp32: the policy's figures below are compared with the fp32 graph's.
    fp32 = IntentClassifier.load(classifier.path, precision="fp32")
    return AnswerPolicy(fp32, kb, smalltalk, advice, T), embedder


def test_the_decision_says_which_window_of_a_long_message_it_judged(
    policy_and_embedder: tuple[AnswerPolicy, HashingEmbedder],
    toy_rows: list[tuple[str, str]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    policy, embedder = policy_and_embedder
    text = f"{STORY}{about(policy.classifier, toy_rows, 'card_arrival')}"
    [s] = policy.signals([text])
    p = s.prediction
    assert p.windows > 2 and p.span is not None
    with caplog.at_level(logging.INFO, logger="bot.policy"):
        decision = policy.answer(text)
    assert (decision.route, decision.intent) == (Route.INTENT, "card_arrival")
    assert decision.reason.endswith(
        f"long message: judged {p.windows} windows, kept window {p.window + 1} "
        f"(characters {p.span[0]}-{p.span[1]} of {len(text)})"
    )
    # Retrieval and the exemplars read the kept window, not the story around it.
    assert embedder.embedded[-1] == p.judged_text != text
    assert s.query == p.judged_text
    [record] = [r for r in caplog.records if r.getMessage() == "long_message"]
    fields = record.fields  # type: ignore[attr-defined]
    assert (fields["windows"], fields["kept_window"], fields["route"]) == (p.windows, p.window + 1, "intent")


def test_a_short_message_decision_is_unchanged(
    policy_and_embedder: tuple[AnswerPolicy, HashingEmbedder], toy_rows: list[tuple[str, str]]
) -> None:
    policy, embedder = policy_and_embedder
    text = toy_rows[0][0]
    decision = policy.answer(text)
    assert "long message" not in decision.reason
    assert embedder.embedded[-1] == text
    assert windows_note(Prediction(text, "card_arrival", 0.9, [("card_arrival", 0.9)])) == ""


def test_batched_decisions_match_one_by_one(
    policy_and_embedder: tuple[AnswerPolicy, HashingEmbedder], toy_rows: list[tuple[str, str]]
) -> None:
    policy, _ = policy_and_embedder
    texts = [toy_rows[0][0], f"{STORY}{about(policy.classifier, toy_rows, 'top_up_failed')}", toy_rows[30][0]]
    batched = policy.answer_many(texts)
    single = [policy.answer(t) for t in texts]
    assert [(d.route, d.intent, d.reason) for d in batched] == [(d.route, d.intent, d.reason) for d in single]
    assert "long message" in batched[1].reason and batched[1].intent == "top_up_failed"


# ------------------------------------------------------------------------------------ real model

#: Long messages written for this test (not from any corpus): a story first, the question last.
REAL_LONG = [
    (
        "transaction_charged_twice",
        "Hi there. Last Saturday was my daughter's birthday and we took the whole family out for dinner "
        "at an Italian restaurant in the city centre, twelve of us in total, grandparents included. It "
        "was a lovely evening, the staff were very kind and brought out a cake with candles. At the end "
        "of the night the bill was quite large, so I offered to pay and everyone would send me their "
        "share later. The waiter brought the card machine, the first attempt seemed to fail because the "
        "connection was bad, so he tried again and the second time it printed a receipt. I didn't think "
        "about it any more until this morning when I was checking my statement before paying the rent. "
        "The same restaurant payment appears two times for the exact same amount. Why was I charged "
        "twice?",
    ),
    (
        "passcode_forgotten",
        "Hello, I feel a bit embarrassed writing this. I got a new phone for my birthday last week, a "
        "much nicer one than my old one which had a cracked screen, and I spent the weekend moving "
        "everything across, photos, messages, music, all my apps. Most of them worked straight away after "
        "logging in. I used to open your app with my fingerprint, so I honestly have not typed the code "
        "in for probably two years. On the new phone the fingerprint is not set up in the app yet, and it "
        "asked me for the code. I tried my usual numbers, my birthday, my old house number, and none of "
        "them were right. I now need to pay a bill by Friday. I forgot my passcode, how do I reset it?",
    ),
    (
        "cash_withdrawal_charge",
        "Hello. I work as a tradesman and a lot of my customers still like to pay in cash, and I also pay "
        "some of my suppliers and the lad who helps me on bigger jobs in cash. Because of that I tend to "
        "take money out of cash machines quite often, sometimes three or four times a week, and in "
        "different places depending on where the job is that day. Last month, looking through my "
        "statement to do my accounts for the accountant, I noticed some small amounts next to some of the "
        "withdrawals that I don't remember seeing before. I'm not very good with this kind of thing and "
        "my accountant asked me to find out before he files everything. Do you charge a fee for taking "
        "out cash at an ATM?",
    ),
]


@pytest.mark.slow
def test_the_real_model_reads_the_question_at_the_end_of_a_long_message() -> None:
    registry = ModelRegistry(Path(os.environ.get("TELLER_MODELS", "models")))
    try:
        path = registry.active_path()
    except Exception:
        pytest.skip("no active default model (make model)")
    classifier = IntentClassifier.load(path)
    if "card_swallowed" not in classifier.labels:
        pytest.skip("the active model is not the Banking77 default")
    encoder = TextEncoder(path / "encoder" / "tokenizer.json", classifier.info.max_length)
    texts = [t for _, t in REAL_LONG]
    predictions = classifier.predict(texts)
    starts = classifier.predict([first_window_text(encoder, t) for t in texts])
    assert [p.intent for p in predictions] == [intent for intent, _ in REAL_LONG]
    assert all(p.windows > 1 and p.window > 0 for p in predictions)
    # Read from its start only, as before, each was misread.
    assert all(s.intent != intent for s, (intent, _) in zip(starts, REAL_LONG, strict=True))


def test_the_real_model_test_messages_are_longer_than_a_window(encoder: TextEncoder) -> None:
    """(With the toy model's tokenizer, the same MiniLM one the default model uses.)"""
    assert all(len(windows) > 1 for windows in encoder.windows([t for _, t in REAL_LONG]))


@pytest.mark.parametrize("seed", range(5))
def test_inference_batches_keep_within_the_token_budget(seed: int) -> None:
    rng = np.random.default_rng(seed)
    lengths = [int(n) for n in rng.integers(3, 130, size=70)] + [300]
    batches = length_sorted_batches(lengths, 64, 256)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    flat = [lengths[i] for b in batches for i in b]
    assert flat == sorted(flat)  # shortest first, so little padding
    for b in batches:
        longest = max(lengths[i] for i in b)
        assert len(b) <= 64
        assert len(b) * longest <= 256 or len(b) == 1  # only a row over the budget alone exceeds it
    assert [len(lengths) - 1] in batches  # the 300-token row, alone
    for a, b in itertools.pairwise(batches):  # and each batch as full as allowed
        assert len(a) == 64 or (len(a) + 1) * lengths[b[0]] > 256
    # Without a budget, batches are as before: sorted, batch_size rows each.
    assert [len(b) for b in length_sorted_batches(lengths, 64)] == [64, 7]
