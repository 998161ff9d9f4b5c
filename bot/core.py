"""The channel-agnostic core: a customer's message in, Teller's reply out, both stored.

Channel adapters build an :class:`Incoming` from their platform's update and render the
:class:`Outgoing` back; everything else (policy, buttons, feedback, duplicates, storage) is here.
"""

from __future__ import annotations

import logging
import time
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bot.batching import DecisionBatcher
from bot.choices import (
    ADVISER_CHOICE,
    HANDOFF_CHOICE,
    PRESS_WINDOW,
    Choice,
    earlier_press,
    entry_of,
    intent_of,
    is_feedback_form,
)
from bot.errors import Conflict, InputError
from bot.policy import LANGUAGE_RULE, PERSON_RULE, AnswerPolicy, Decision, Route
from bot.privacy.redaction import redact, scan
from bot.stages import timed
from bot.storage import HUMAN_ROUTE, DuplicateMessage, Feedback, NewExchange, Store, StoredMessage
from bot.text import clean, storable, visible
from nlu.language import HANDOFF_REPLIES, UNSTAFFED_REPLIES, unstaffed_reply
from retrieval.errors import EntryNotFoundError

log = logging.getLogger(__name__)

#: The longest customer message Teller takes, in characters, on every path (the answer policy and a
#: handoff's relay to operators alike); nlu reads at most this much of a text.
MAX_TEXT = 4000


def message_text(text: str) -> str:
    """A customer's message as Teller takes it: control characters dropped, trimmed. Raises
    :class:`InputError` when it is empty or longer than :data:`MAX_TEXT` characters (the customer is
    asked to shorten rather than judged on a part only)."""
    text = clean(text).strip()
    if not visible(text):  # nothing but spaces, zero-width characters or combining marks
        raise InputError("the message is empty")
    if len(text) > MAX_TEXT:
        raise InputError(
            f"the message is too long for me ({len(text):,} characters): please send at most "
            f"{MAX_TEXT:,}, or just your question"
        )
    return text


@dataclass(frozen=True)
class Incoming:
    """A customer's message, as any channel sees it. ``origin``: the client's network address when
    the channel knows it (the web chat and REST API), for the per-address abuse limits."""

    channel: str
    conversation_id: str
    user_id: str
    message_id: str | None
    text: str
    origin: str | None = None
    #: The customer's segment, when the bank's backend names one (web and REST API only).
    segment: str | None = None
    #: A web customer nobody vouched for (no backend key, no signed token): counted in the
    #: anonymous customers' share of the overall message limit too (:mod:`bot.abuse`).
    anonymous: bool = False
    #: The text is the value of a button the platform says was pressed (a Telegram callback query, a
    #: Slack block action), not typed: a stale one is told the option is gone, not classified.
    pressed: bool = False
    #: The knowledge-base entry a link the bank published named (Telegram's
    #: ``t.me/<bot>?start=<entry id>``): answered with that entry, or told the option is gone when
    #: the knowledge base has no such entry. The service gives ``text`` as the entry's question
    #: (what the customer asks by opening the link: stored, reviewed and relayed as such).
    linked: str | None = None


@dataclass(frozen=True)
class MultiSelect:
    """Options to tick several of, sent back as ``submit_prefix`` + the ticked values joined by commas."""

    options: tuple[Choice, ...]
    submit_label: str
    submit_prefix: str


@dataclass(frozen=True)
class Outgoing:
    """Teller's reply: what to show, which buttons to offer, and how it was decided."""

    message_id: str
    text: str
    choices: tuple[Choice, ...] = ()
    route: str = Route.HANDOFF.value
    intent: str | None = None
    confidence: float | None = None
    kb_id: str | None = None
    duplicate: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    #: A line of small print under the text (e.g. an interview's progress).
    note: str | None = None
    multi_select: MultiSelect | None = None
    #: Files that go with the reply (e.g. a positioning brief and its chart).
    attachments: tuple[Path, ...] = ()
    #: Whether chat platforms with threads answer in the thread of the message (customer questions)
    #: or at the top level of the conversation (an interview's next question).
    threaded: bool = True
    #: Nothing to show the customer (their message was passed to a person in a handoff).
    silent: bool = False
    #: For a reply that is not a stored message (an interview's): the id its delivery is recorded
    #: under, one per platform message, so a redelivery does not send it twice.
    turn: str | None = None


#: What a customer who sent a PIN, a card's security code, a password, a one-time code or an access
#: token is told first (their stored message holds only its placeholder, :mod:`bot.privacy.redaction`).
SECRET_WARNING = (
    "Please never send your PIN, passwords or security codes in a chat: we will never ask for them. "
    "We have not stored it."
)
#: How a reply begins with it: the warning, a blank line, then the answer.
SECRET_PREFIX = SECRET_WARNING + "\n\n"
#: The kinds of :mod:`bot.privacy.redaction` that :data:`SECRET_WARNING` is about (PCI DSS's
#: sensitive authentication data, and credentials).
SECRET_KINDS = frozenset({"pin", "cvv", "password", "otp", "credential"})


def split_warning(text: str) -> tuple[str, str]:
    """``(SECRET_PREFIX, the rest)`` for a reply that begins with the warning, else ``("", text)``:
    a reply told otherwise (unstaffed, busy) keeps the warning first."""
    return (SECRET_PREFIX, text[len(SECRET_PREFIX) :]) if text.startswith(SECRET_PREFIX) else ("", text)


def sends_secrets(text: str) -> bool:
    """Whether ``text`` holds one of :data:`SECRET_KINDS` (a redaction scan: about 0.1 ms for a
    short message)."""
    return any(f.kind in SECRET_KINDS for f in scan(text).findings)


def _same_words(stored: str, again: str) -> bool:
    """Whether a resent message's stored form is the first one's: the same words in another Unicode
    normal form count as the same ("café" typed with é, or with e and U+0301 as a macOS text field
    may send it on a retry)."""
    return stored == again or unicodedata.normalize("NFC", stored) == unicodedata.normalize("NFC", again)


class TellerCore:
    """Answers messages with the current policy and stores every exchange. Thread-safe."""

    def __init__(self, policy: AnswerPolicy, store: Store) -> None:
        self.policy = policy  # replaced atomically when a new model is promoted
        self.store = store
        self._batcher = DecisionBatcher(lambda: self.policy)

    def message_cost(self, text: str) -> int:
        """What answering ``text`` costs, in the abuse limits' units: the classifier windows it takes
        (:meth:`nlu.IntentClassifier.windows_needed`; 1 for a message that fits one)."""
        return self.policy.classifier.windows_needed(text)

    def close(self) -> None:
        """Finish queued work, then close the store. Idempotent."""
        self._batcher.close()
        self.store.close()

    def handle(self, incoming: Incoming, replayed: bool = True, staffed: bool = True) -> Outgoing:
        """Answer a text message (or a pressed choice, whose value arrives as the text).

        ``replayed=False``: the caller has just looked for an earlier answer (:meth:`replay`).
        ``staffed=False``: no person can take over (no ops channel): what is stored and returned is
        what such a customer is told (:func:`unstaffed`, with the policy's
        :attr:`~bot.policy.AnswerPolicy.unstaffed_words`)."""
        text = message_text(incoming.text)
        earlier = self.replay(incoming) if replayed else None
        if earlier is not None:
            return earlier
        started = time.perf_counter()
        decision, model_version = self._decide(text, incoming)
        if not staffed:
            decision = unstaffed(decision, self.policy.unstaffed_words)
        if decision.answer and decision.language == "en" and sends_secrets(text):
            decision = replace(decision, answer=SECRET_PREFIX + decision.answer)
        latency_ms = (time.perf_counter() - started) * 1000.0
        try:
            with timed("store_write"):
                _, reply = self.store.conversations.record_exchange(
                    NewExchange(
                        channel=incoming.channel,
                        conversation=incoming.conversation_id,
                        user_id=incoming.user_id,
                        platform_id=incoming.message_id,
                        text=text,
                        reply=decision.answer,
                        route=decision.route.value,
                        intent=decision.intent,
                        confidence=decision.confidence,
                        kb_id=decision.kb_id,
                        model_version=model_version,
                        latency_ms=round(latency_ms, 2),
                        choices=tuple((c.label, c.value) for c in decision.choices),
                        reason=decision.reason,
                        segment=incoming.segment,
                    )
                )
        except DuplicateMessage:
            # Another replica (or thread) stored this platform message first: its answer is the one.
            earlier = self.replay(incoming)
            assert earlier is not None  # the row that made this a duplicate is there
            return earlier
        log.info(
            "message_answered",
            extra={
                "fields": {
                    "channel": incoming.channel,
                    "message_id": reply.id,
                    "route": decision.route.value,
                    "intent": decision.intent,
                    "confidence": round(decision.confidence, 4),
                    "kb_id": decision.kb_id,
                    "latency_ms": round(latency_ms, 2),
                }
            },
        )
        # The customer is told what the bank wrote (its phone numbers included); only the stored copy
        # is redacted.
        return replace(_outgoing(reply), text=decision.answer)

    def replay(self, incoming: Incoming) -> Outgoing | None:
        """What was answered to this platform message before (a redelivery, or a retry that reached
        another replica), marked ``duplicate``; None if it is new. A message that was relayed to a
        person (it has no reply of Teller's) replays as silent. A button press replays the same
        press stored under the bucket before's id within :data:`~bot.choices.PRESS_WINDOW` seconds
        (:func:`~bot.choices.earlier_press`: a double tap across a bucket's end).

        Raises :class:`Conflict` when the id came with other words the first time (a client reusing
        its ``client_message_id`` for a new message would otherwise get the old answer, and the new
        message would be lost without a word), or when it carried a customer's feedback value
        (``feedback:helpful``) and now carries anything else."""
        if not incoming.message_id:
            return None
        with timed("store_read"):
            seen = self.store.conversations.seen(incoming.channel, incoming.message_id)
            if seen is None and (earlier := earlier_press(incoming.message_id)) is not None:
                # The first tap of a double tap may have fallen in the bucket before.
                before = self.store.conversations.seen(incoming.channel, earlier)
                recent = self.store.database.clock.ago(PRESS_WINDOW)
                seen = before if before is not None and before[0].created_at >= recent else None
            rated = (
                seen is None
                and not is_feedback_form(incoming.text.strip())
                and self.store.feedback.by_platform(incoming.channel, incoming.message_id) is not None
            )
        if rated:
            raise Conflict("this message id was used before for feedback; send the message with a new id")
        if seen is None:
            return None
        stored, reply = seen
        if not _same_words(stored.text, redact(storable(incoming.text))):
            raise Conflict("this message id was used before for a different message; send it with a new id")
        if reply is not None:
            return replace(_outgoing(reply, duplicate=True), text=self._as_sent(reply))
        return Outgoing(stored.id, "", route=stored.route or HUMAN_ROUTE, duplicate=True, silent=True)

    def as_unstaffed(self, reply: Outgoing) -> Outgoing:
        """``reply`` as told where no person can take over, for a reply known by its text and route
        alone (one stored before, replayed): a handoff's text becomes :func:`unstaffed_text`, a reply
        that offers a person (:attr:`~bot.policy.AnswerPolicy.unstaffed_words`) its unstaffed words,
        and no button for a person is left. A reply already as told unstaffed stays as it is."""
        warning, said = split_warning(reply.text)
        words = self.policy.unstaffed_words
        if reply.route == Route.HANDOFF.value:
            # A customer who asked for a person is told so in the small talk's unstaffed words
            # (:func:`unstaffed`), already said, or said for a reply stored staffed.
            text = said if said in words.values() else words.get(said) or unstaffed_text(said)
        else:
            text = words.get(said, said)
        return replace(reply, text=warning + text, choices=without_person(reply.choices))

    def stored_reply(self, message_id: str) -> Outgoing:
        """One of Teller's stored replies as it was sent (to send it again). Raises
        :class:`InputError` for an unknown id."""
        reply = self.store.conversations.message(message_id)
        return replace(_outgoing(reply), text=self._as_sent(reply))

    def _as_sent(self, reply: StoredMessage) -> str:
        """The text a stored reply was sent with. The store keeps it redacted (a bank's phone number
        reads as ``[PHONE]``): the text as written is in the outbox while the reply is on its way
        (and for a day after an HTTP answer); after that, when it came from a knowledge-base entry
        whose answer redacts to the same text, that answer is what the customer read."""
        written = self.store.outbox.text(reply.id)
        if written is not None:
            return written
        kb = self.policy.kb
        if reply.kb_id and reply.kb_id in kb:
            answer = kb.get(reply.kb_id).answer
            if redact(answer) == reply.text:
                return answer
        return reply.text

    def feedback(
        self,
        message_id: str,
        helpful: bool,
        comment: str | None = None,
        user_id: str | None = None,
        platform: tuple[str, str] | None = None,
    ) -> Feedback:
        """Record a customer's verdict on one of Teller's replies (``platform``: the channel and id
        of the message that carried it as text, :meth:`bot.storage.FeedbackRepository.add_feedback`)."""
        entry = self.store.feedback.add_feedback(message_id, helpful, comment, user_id, platform)
        log.info("feedback", extra={"fields": {"message_id": message_id, "helpful": helpful}})
        return entry

    def _decide(self, text: str, incoming: Incoming) -> tuple[Decision, str]:
        """A pressed choice is answered directly; free text goes through the batcher. An ``intent:``
        or ``entry:`` value that no recent answer in the conversation offered is read as the text
        it is (a review's finding: a client could send any such value and have it stored as the
        customer's choice, confidence 1.0, past the language gate, corrections and review). A link
        of the bank's (:attr:`Incoming.linked`) is answered with the entry it names."""
        policy = self.policy
        if incoming.linked is not None:  # a link of the bank's names the entry
            try:
                return policy.answer_for_entry(incoming.linked), policy.classifier.version
            except EntryNotFoundError:
                return policy.entry_gone(), policy.classifier.version
        intent = intent_of(text)
        entry_id = entry_of(text)
        if (intent is not None or entry_id is not None) and not self._offered(text, incoming):
            if incoming.pressed:
                # A real button on an old post (its answer out of the recent ones, erased or purged):
                # "that option is no longer available", not "I didn't understand entry:..." (a
                # platform trial's finding).
                return policy.entry_gone(), policy.classifier.version
            return self._batcher.decide(text)
        if intent is not None and policy.has_answer(intent):
            # An intent left without an answer entry since its button was offered (`kb remove`) is
            # read as the text it is, as a typed message would be: no answer to give, no error.
            return policy.answer_for_intent(intent), policy.classifier.version
        # Only a well-formed entry id is a pressed suggestion; anything else is the customer's
        # words ("entry: my card ...") and is classified like any message.
        if entry_id is not None:
            try:
                return policy.answer_for_entry(entry_id), policy.classifier.version
            except EntryNotFoundError:
                # Offered by a suggestion, removed since: the customer is told and asked again.
                return policy.entry_gone(), policy.classifier.version
        if text == ADVISER_CHOICE:
            return policy.handoff("customer asked to book an adviser call"), policy.classifier.version
        if text == HANDOFF_CHOICE:
            return policy.handoff("customer asked for a person"), policy.classifier.version
        return self._batcher.decide(text)

    def _offered(self, value: str, incoming: Incoming) -> bool:
        with timed("store_read"):
            return self.store.conversations.offered(
                incoming.channel, incoming.conversation_id, incoming.user_id, value
            )


#: A handed-off message's reply where no person can take over (no ops channel configured): what the
#: policy or small talk would have said ("I'll connect you with someone") would promise one. After a
#: handoff for the customer's language it is said in that language (:func:`unstaffed`,
#: :data:`nlu.language.UNSTAFFED_REPLIES`, where the English text is kept with its translations).
UNSTAFFED = UNSTAFFED_REPLIES["en"]
#: What a text that would offer a person says instead where no one can take over (Telegram's /help;
#: the small-talk replies' ``unstaffed`` words in bot/data/smalltalk.yaml say it too). It
#: names no number: the one on the back of the customer's card is the bank's, whatever it is.
NO_PERSON = (
    "No one from our team can take over this chat; for anything I can't help with, call us on the "
    "number on the back of your card."
)
#: Prefixes of :attr:`Outgoing.turn`, the delivery ids of Teller's replies that are not stored
#: messages: an interview's turn, and the acknowledgement of feedback sent as a message's text.
INTERVIEW_TURN, FEEDBACK_TURN = "iv:", "fb:"
#: The channel of `teller chat`: an operator trying Teller out in a terminal, never a customer.
TERMINAL_CHANNEL = "terminal"
#: Every such prefix: none of those deliveries carries an operator's words.
TELLER_TURNS = (INTERVIEW_TURN, FEEDBACK_TURN)
#: The buttons that hand the conversation to a person ("Talk to a person", "Book an adviser call").
PERSON_CHOICES = frozenset({HANDOFF_CHOICE, ADVISER_CHOICE})


def without_person(choices: tuple[Choice, ...]) -> tuple[Choice, ...]:
    """``choices`` less the buttons that hand the conversation to a person (:data:`PERSON_CHOICES`)."""
    return tuple(c for c in choices if c.value not in PERSON_CHOICES)


def unstaffed(decision: Decision, words: Mapping[str, str]) -> Decision:
    """``decision`` as said where no person can take over: a handoff says so (:data:`UNSTAFFED`; for
    a customer who asked for a person or complained, :data:`~bot.policy.PERSON_RULE`, its small
    talk's ``unstaffed`` words) instead of promising someone, any other reply that offers a person
    says what ``words`` (the policy's :attr:`~bot.policy.AnswerPolicy.unstaffed_words`) has for it
    instead ("who are you?": no "I'll connect you"), and no reply offers a button for a person. A
    message handed off for its language (rule ``language``, answered in the customer's language) is
    told so in that language (:func:`unstaffed_reply` of :attr:`Decision.language`); every other
    handoff in English, as the policy's replies are."""
    choices = without_person(decision.choices)
    if decision.route == Route.HANDOFF:
        if decision.rule == LANGUAGE_RULE:
            said = unstaffed_reply(decision.language)
        else:
            # A customer who asked for a person, or said only that they are unhappy, is answered as
            # such (the small talk's ``unstaffed`` words), not with "I can't answer that here".
            said = words.get(decision.answer, UNSTAFFED) if decision.rule == PERSON_RULE else UNSTAFFED
        return replace(decision, answer=said, choices=choices)
    return replace(decision, answer=words.get(decision.answer, decision.answer), choices=choices)


def unstaffed_text(said: str) -> str:
    """What a handoff reply that said ``said`` becomes where no person can take over, for a reply
    known by its text alone (one stored before, replayed): an unstaffed reply
    (:data:`UNSTAFFED_REPLIES`) stays as it is, a language handoff's
    (:data:`nlu.language.HANDOFF_REPLIES`, alone or with the expected wait after it) becomes
    :data:`UNSTAFFED` in its language, anything else :data:`UNSTAFFED`."""
    if said in UNSTAFFED_REPLIES.values():
        return said
    for code, reply in HANDOFF_REPLIES.items():
        if said.startswith(reply):  # as stored, or as sent with the expected wait after it
            return unstaffed_reply(code)
    return UNSTAFFED


def _outgoing(reply: StoredMessage, duplicate: bool = False) -> Outgoing:
    choices = tuple(Choice(label, value) for label, value in reply.choices)
    route = reply.route or Route.HANDOFF.value
    return Outgoing(
        reply.id,
        reply.text,
        choices,
        route,
        # Small talk answers no intent: the classifier's guess for "hello" (edit_personal_details,
        # say; kept in the store, as for every message) would read as traffic on that intent.
        None if route == Route.SMALLTALK.value else reply.intent,
        reply.confidence,
        reply.kb_id,
        duplicate,
    )
