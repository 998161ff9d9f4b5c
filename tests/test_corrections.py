"""Corrections that take effect at once (the policy's override memory, followed by every replica) and
spread through the log (proposals confirmed or rejected in bulk), on the toy model."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.assistant import build_core, build_service
from bot.core import Incoming, TellerCore
from bot.corrections import MIN_SCORE
from bot.model_swap import ModelSwapper
from bot.operators import CLI, Actor
from bot.review import ReviewService, normalise
from bot.service import TellerService
from bot.settings import get_settings
from bot.storage import CorrectionAction, NewExchange, Proposal, ProposalStatus, ReviewStatus, Store
from nlu.corrections import OVERRIDE_SIMILARITY, CorrectionMemory, Override, canonical, cross_intent_ceiling
from retrieval.embedder import OnnxSentenceEmbedder

ANA = Actor(CLI, "ana")
BOB = Actor("slack", "UBOB")
CORRECTED = "the cash machine at the station kept my card after i typed my pin"
#: Other customers putting the same need their own way, and messages about something else.
PARAPHRASES = [
    "the atm at the station swallowed my card after i put my pin in",
    "cash machine kept my card when i entered my pin, how do i get it back",
    "the cashpoint took my card and never gave it back",
]
UNRELATED = [
    "what is the exchange rate for dollars",
    "my top up failed this morning",
    "can i change the name on my account",
]


@dataclass
class Replica:
    core: TellerCore
    service: TellerService

    @property
    def review(self) -> ReviewService:
        assert self.service.ops is not None
        return self.service.ops.review

    def ask(self, text: str, user: str = "u1") -> tuple[str | None, str]:
        """The intent Teller answers ``text`` with, and the reason stored with the reply."""
        reply = self.service.handle(Incoming("web", user, user, None, text))
        return reply.intent, self.core.store.conversations.message(reply.message_id).reason or ""

    def correct(self, text: str, label: str, actor: Actor = ANA) -> int:
        """A customer asks ``text``; an operator flags the answer and chooses ``label``."""
        assert self.service.ops is not None
        reply = self.service.handle(Incoming("web", "asker", "asker", None, text))
        item = self.service.ops.flag(reply.message_id, "wrong", actor)
        resolution = self.review.choose(item.id, label, actor)
        assert resolution.correction is not None
        return resolution.correction.id


def replica() -> Replica:
    settings = get_settings()
    core = build_core(settings)
    return Replica(core, build_service(settings, core))


@pytest.fixture()
def teller(teller_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Replica]:
    monkeypatch.setenv("TELLER_OPERATORS", "slack:UBOB")
    get_settings.cache_clear()
    one = replica()
    yield one
    one.service.close()
    one.core.close()


def other_intent(teller: Replica, text: str) -> str:
    """A toy intent the model does not answer ``text`` with."""
    read = teller.core.policy.classifier.predict([text])[0].intent
    return next(label for label in teller.core.policy.classifier.labels if label != read)


# ------------------------------------------------------------------------------ immediate effect


def test_a_correction_answers_the_same_and_nearly_the_same_message_at_once(teller: Replica) -> None:
    label = other_intent(teller, CORRECTED)
    before, _ = teller.ask(CORRECTED)
    assert before != label
    correction = teller.correct(CORRECTED, label)
    # The next customer who writes it (or nearly: a greeting, other casing, a thanks, a word more)
    # gets the answer.
    for text in (CORRECTED, f"Hi, {CORRECTED.upper()}!! thanks", CORRECTED.replace("typed", "typed in")):
        intent, reason = teller.ask(text)
        assert intent == label, (text, reason)
        assert reason.startswith(f"{label}: operator correction #{correction} by cli:ana"), reason
    # Other messages are not captured: the model answers them as before, a paraphrase included.
    for text in [*UNRELATED, *PARAPHRASES, CORRECTED.replace("the station", "the train station")]:
        assert "operator correction" not in teller.ask(text)[1]
    # A newer correction of the same text wins at once.
    newer = next(x for x in teller.core.policy.classifier.labels if x not in (label, before))
    teller.correct(CORRECTED, newer, BOB)
    assert teller.ask(CORRECTED)[0] == newer


def test_a_correction_made_from_a_message_with_personal_data_answers_that_message(teller: Replica) -> None:
    # The correction is stored as the message is, redacted ("... my phone is [PHONE]"); the same
    # words with the number in them must get it, as must another number (a reviewer's finding).
    text = "my transfer to my mum hasn't gone through, my phone is 07700 900123"
    label = other_intent(teller, text)
    correction = teller.correct(text, label)
    stored = teller.core.store.feedback.corrections(correction_id=correction)[0]
    assert "07700" not in stored.text and "[PHONE]" in stored.text
    for again in (text, text.replace("07700 900123", "07911 123456")):
        intent, reason = teller.ask(again)
        assert intent == label and reason.startswith(f"{label}: operator correction #{correction}"), reason


def test_a_newer_correction_of_the_same_question_in_other_words_supersedes_the_older(
    teller: Replica,
) -> None:
    # (too short for the review's likeness alone: the greeting and thanks are a third of it)
    text = "can I use my card in a shop abroad"
    label = other_intent(teller, text)
    first = teller.correct(text, label)
    newer = next(x for x in teller.core.policy.classifier.labels if x not in (label,))
    second = teller.correct("Hello, can I use my card in a shop abroad? Thanks", newer, BOB)
    in_force = [c.id for c in teller.core.store.feedback.corrections() if not c.superseded]
    assert second in in_force and first not in in_force
    assert teller.ask(text)[0] == newer


def test_the_override_cannot_capture_another_intents_question(
    toy_rows: list[tuple[str, str]], embedder_cache: Path
) -> None:
    """The calibration of :data:`OVERRIDE_SIMILARITY`, redone on the toy corpus: no two messages of
    different intents are that similar, so a correction of one never answers another."""
    embedder = OnnxSentenceEmbedder(embedder_cache)
    texts, labels = [t for t, _ in toy_rows], [label for _, label in toy_rows]
    vectors = embedder.embed(texts)
    ceiling = cross_intent_ceiling(vectors, labels)
    assert 0.5 < ceiling < OVERRIDE_SIMILARITY
    # Each message corrected to its own intent: every other-intent message stays below the bar.
    memory = CorrectionMemory(
        [Override(i, t, y, None, "op", "2026-12-01T00:00:00Z") for i, (t, y) in enumerate(toy_rows)], vectors
    )
    for label, match in zip(labels, memory.match(texts, vectors), strict=True):
        assert match is not None and match.override.label == label and match.exact
    assert canonical("Hello, where's my CARD?? Thanks!") == canonical("wheres my card") == "wheres my card"


def test_a_correction_made_on_one_replica_answers_on_another_within_seconds(teller: Replica) -> None:
    other = replica()
    swapper = ModelSwapper(get_settings(), other.core, interval=0.2)
    asyncio.run(swapper.start())
    try:
        label = other_intent(teller, CORRECTED)
        assert other.ask(CORRECTED, "x")[0] != label
        teller.correct(CORRECTED, label)
        started = time.monotonic()
        while other.ask(CORRECTED, "x")[0] != label:
            assert time.monotonic() - started < 5, "the other replica never followed the correction"
            time.sleep(0.1)
        assert "operator correction" in other.ask(CORRECTED, "y")[1]
    finally:
        asyncio.run(swapper.stop())
        other.service.close()
        other.core.close()


# ------------------------------------------------------------------------------ spreading


def log(store: Store, texts: list[str], intent: str) -> dict[str, str]:
    """Customers' messages already in the log (answered with ``intent``); their ids by text."""
    ids = {}
    for i, text in enumerate(texts):
        message, _ = store.conversations.record_exchange(
            NewExchange(
                channel="web",
                conversation=f"log{i}",
                user_id=f"log{i}",
                text=text,
                reply="an answer",
                route="intent",
                intent=intent,
                confidence=0.9,
            )
        )
        ids[text] = message.id
    return ids


def test_the_corrected_question_with_a_greeting_around_it_is_no_proposal(teller: Replica) -> None:
    # The correction answers it itself; a reviewer was offered it (`teller review choose` runs in a
    # process whose corrections were read before the new one) and accepting it made a second
    # correction of the same question.
    label = other_intent(teller, CORRECTED)
    greeted = f"Hi, {CORRECTED}, thanks"
    log(teller.core.store, [greeted, *PARAPHRASES], "card_arrival")
    correction = teller.correct(CORRECTED, label)
    teller.core.policy.corrections = None  # read before the correction, as that process's were
    texts = [p.text for p in teller.review.propose(correction)]
    assert texts and greeted not in texts


def test_a_correction_proposes_what_other_customers_said_and_bulk_decisions_spread_it(
    teller: Replica,
) -> None:
    store, policy = teller.core.store, teller.core.policy
    label = other_intent(teller, CORRECTED)
    read = {p.text: p for p in policy.classifier.predict(PARAPHRASES + UNRELATED)}
    answered_right = {t for t, p in read.items() if p.intent == label}
    ids = log(store, PARAPHRASES + UNRELATED, "card_arrival")
    # One of them was settled in the review queue already: reviewed, so never proposed.
    settled = UNRELATED[2]
    store.review.create(normalise(settled), settled, "intent", None, [])
    item = next(i for i in store.review.items() if i.text == settled)
    teller.review.ignore(item.id, ANA)

    correction = teller.correct(CORRECTED, label)
    proposals = teller.review.propose(correction)
    texts = [p.text for p in proposals]
    assert CORRECTED not in texts and settled not in texts and not answered_right & set(texts)
    assert texts == [p.text for p in sorted(proposals, key=lambda p: -(p.score or 0))]
    assert all(p.label == label and p.status == ProposalStatus.OPEN for p in proposals)
    assert all(p.model_intent != label and (p.score or 0) >= MIN_SCORE for p in proposals)
    # The customers' ways of saying the same thing come before the other questions.
    paraphrases = [t for t in texts if t in PARAPHRASES]
    assert paraphrases and texts[: len(paraphrases)] == paraphrases
    assert all(
        p.base_similarity is not None and p.base_similarity > 0.5 for p in proposals[: len(paraphrases)]
    )
    # Proposing again adds nothing: they are open already.
    assert [p.id for p in teller.review.propose(correction)] == [p.id for p in proposals]

    # Bulk: confirm the paraphrases, reject the rest, in one go.
    confirm = [p.id for p in proposals if p.text in PARAPHRASES]
    reject = [p.id for p in proposals if p.text not in PARAPHRASES]
    decided = teller.review.decide_proposals(confirm, reject, BOB)
    assert [p.id for p, _ in decided.confirmed] == confirm and [p.id for p in decided.rejected] == reject
    for proposal, made in decided.confirmed:
        assert (made.label, made.author, made.origin_id) == (label, "slack:UBOB", correction)
        assert (made.action, made.message_id, made.text) == (
            CorrectionAction.PROPOSAL,
            ids[proposal.text],
            proposal.text,
        )
        assert proposal.status == ProposalStatus.CONFIRMED and proposal.result_id == made.id
        # In force at once: the next customer who writes it gets the corrected answer, and the
        # reason says where the correction came from.
        intent, reason = teller.ask(proposal.text, "later")
        assert intent == label and f"proposed from #{correction}" in reason
    # A second operator deciding the same proposals changes nothing.
    again = teller.review.decide_proposals(confirm, [], ANA)
    assert not again.confirmed and [p.id for p in again.skipped] == confirm
    # Rejected ones are not proposed for that intent again; nothing is left to propose.
    assert teller.review.propose(correction) == []
    assert teller.review.proposals() == []
    with pytest.raises(Exception, match="no proposal 999"):
        teller.review.decide_proposals([999], [], ANA)


def superseded_after_proposing(teller: Replica) -> tuple[int, list[Proposal]]:
    """An operator corrects :data:`CORRECTED`, which proposes the logged paraphrases; then another
    operator corrects it to another intent. The first correction's id and its proposals."""
    label = other_intent(teller, CORRECTED)
    log(teller.core.store, PARAPHRASES, "card_arrival")
    first = teller.correct(CORRECTED, label)
    proposals = teller.review.propose(first)
    if not proposals:
        pytest.skip("the toy model answers every paraphrase with the corrected intent already")
    newer = next(x for x in teller.core.policy.classifier.labels if x not in (label, "card_arrival"))
    teller.correct(CORRECTED, newer, BOB)
    return first, proposals


def test_a_superseded_corrections_proposals_are_withdrawn_and_cannot_be_confirmed(teller: Replica) -> None:
    """A reviewer confirmed a proposal of a correction already superseded by a newer one for the
    same text: the old intent went into force for the proposed message, and into the next model."""
    store = teller.core.store
    first, proposals = superseded_after_proposing(teller)
    # Withdrawn with their correction: no longer open, listed with their status.
    assert teller.review.proposals(first) == []
    listed = teller.review.proposals(first, status=None)
    assert [p.status for p in listed] == [ProposalStatus.WITHDRAWN] * len(proposals)
    decided = teller.review.decide_proposals([proposals[0].id], [], ANA)
    assert not decided.confirmed and [p.id for p in decided.skipped] == [proposals[0].id]
    assert decided.skipped_note() == "; 1 withdrawn (their correction was superseded)"
    assert "operator correction" not in teller.ask(proposals[0].text, "later")[1]
    assert [c.id for c in store.feedback.corrections() if c.origin_id == first] == []


def test_a_proposal_left_open_by_an_older_store_is_withdrawn_when_decided(teller: Replica) -> None:
    """A store written before proposals were withdrawn with their correction may hold open ones of a
    superseded correction: deciding one withdraws it instead."""
    from sqlalchemy import update

    from bot.storage import schema

    store = teller.core.store
    _, proposals = superseded_after_proposing(teller)
    table = schema.correction_proposals
    with store.database.transaction() as connection:  # as an older store left it
        connection.execute(update(table).values(status=ProposalStatus.OPEN.value))
    decided = teller.review.decide_proposals([], [proposals[0].id], ANA)
    assert not decided.rejected and decided.skipped[0].status is ProposalStatus.WITHDRAWN


def test_only_operators_decide_proposals(teller: Replica) -> None:
    with pytest.raises(Exception, match="only operators can confirm proposals"):
        teller.review.decide_proposals([1], [], Actor("slack", "UNOBODY"))


def test_settled_review_items_for_a_confirmed_text_are_closed_with_it(teller: Replica) -> None:
    store = teller.core.store
    label = other_intent(teller, CORRECTED)
    text = PARAPHRASES[0]
    log(store, [text], "card_arrival")
    store.review.create(normalise(text), text, "intent", None, [])
    correction = teller.correct(CORRECTED, label)
    proposals = [p for p in teller.review.propose(correction) if p.text == text]
    if not proposals:
        pytest.skip("the toy model answers this paraphrase with the corrected intent already")
    teller.review.decide_proposals([proposals[0].id], [], ANA)
    [item] = [i for i in store.review.items(None) if i.text == text]
    assert (item.status, item.resolution, item.resolved_by) == (ReviewStatus.CHOSEN, label, "cli:ana")


def test_erasing_a_customer_takes_the_proposals_and_corrections_made_from_their_messages(
    tmp_path: Path,
) -> None:
    from bot.privacy.erasure import Eraser
    from bot.storage import NewCorrection, NewProposal

    store = Store(tmp_path / "t.db")
    try:
        ids = log(store, ["my card is stuck in the atm", "the atm ate my card"], "card_arrival")
        item = store.review.create(
            "my card is stuck in the atm", "my card is stuck in the atm", "intent", None, []
        )
        _, origin, _ = store.review.resolve(
            item,
            ReviewStatus.CHOSEN,
            "cli:ana",
            "card_swallowed",
            NewCorrection(
                "my card is stuck in the atm",
                "my card is stuck in the atm",
                CorrectionAction.CHOOSE,
                "card_swallowed",
            ),
        )
        assert origin is not None
        text = "the atm ate my card"
        [proposal] = store.proposals.add(
            [
                NewProposal(
                    origin.id,
                    ids[text],
                    text,
                    normalise(text),
                    "card_swallowed",
                    None,
                    0.8,
                    0.8,
                    0.8,
                    "pin_blocked",
                )
            ]
        )
        decided = store.proposals.decide([proposal.id], [], "cli:ana", lambda a, b: a == b)
        [(_, made)] = decided.confirmed
        assert made.message_id == ids[text] and made.origin_id == origin.id
        Eraser(store).erase("web", "log1", "cli:ana")  # the customer who wrote it
        assert store.proposals.list(None) == []
        assert [c.id for c in store.feedback.corrections()] == [origin.id]
    finally:
        store.close()
