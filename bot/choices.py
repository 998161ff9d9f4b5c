"""Choices: the buttons a reply offers, and the values they send back, defined once.

A pressed button comes back as its ``value``, as if the customer had typed it; every channel, the
policy, the review queue and the web page read values through this module (the page gets the kind
of each choice in the API's JSON), so nobody spells ``intent:`` or ``feedback:helpful`` by hand.

=============  ============================  =============================================
kind           value                         meaning
=============  ============================  =============================================
``intent``     ``intent:<label>``            "I meant this" (answer that intent)
``entry``      ``entry:<id>``                "I meant this" (answer that knowledge-base entry:
                                             a suggestion when no entry was sure enough)
``handoff``    ``handoff``                   talk to a person
``handoff``    ``handoff:adviser``           book an adviser call (a handoff that also records
                                             the outcome ``adviser_call_booked`` on the advice
                                             reply it was offered under)
``feedback``   ``feedback:helpful`` / ``…``  the customer's verdict on the reply; sent back
                                             as text, it is recorded on their latest answer
                                             in the conversation that offered feedback
                                             buttons (any other ``feedback:<word>``
                                             is refused: :func:`is_feedback_form`)
``interview``  ``iv:<interview>:<rest>``     an answer in a positioning interview
``text``       anything else                 a value the channel sends back as typed text
=============  ============================  =============================================

A platform whose buttons hold less than a value (Telegram: 64 bytes of ``callback_data``; Slack:
2,000 characters) sends a reference instead, :func:`choice_ref` (``ch:<reply id>:<index>``, the
index into the reply's choices as stored), which the service turns back into the value.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from enum import StrEnum

from retrieval.entry import ENTRY_ID_PATTERN


class ChoiceKind(StrEnum):
    INTENT = "intent"
    ENTRY = "entry"
    HANDOFF = "handoff"
    FEEDBACK = "feedback"
    INTERVIEW = "interview"
    TEXT = "text"


INTENT_PREFIX = "intent:"
ENTRY_PREFIX = "entry:"
#: What may follow :data:`INTENT_PREFIX` in a pressed button: an intent's name, right after it (a
#: bank's own label may hold spaces, but does not start with one).
_INTENT_NAME = re.compile(r"\S.{0,199}")
HANDOFF_CHOICE = "handoff"
#: "Book an adviser call", under an advice reply: hands off like :data:`HANDOFF_CHOICE`, and the
#: service records the outcome ``adviser_call_booked`` on that reply (:mod:`bot.storage.outcomes`).
ADVISER_CHOICE = "handoff:adviser"
FEEDBACK_PREFIX = "feedback:"
FEEDBACK_HELPFUL = f"{FEEDBACK_PREFIX}helpful"
FEEDBACK_NOT_HELPFUL = f"{FEEDBACK_PREFIX}not_helpful"
#: A value of the feedback form: ``feedback:`` and one word (letters, digits, ``_``, ``-``), no space.
_FEEDBACK_FORM = re.compile(r"feedback:[A-Za-z0-9_-]*")
INTERVIEW_PREFIX = "iv:"

#: What the answer policy's buttons that are no intent or entry say. :data:`HANDOFF_CHOICE` is
#: "Something else" under a clarifying question and "Talk to a person" elsewhere.
SOMETHING_ELSE, TALK_TO_A_PERSON = "Something else", "Talk to a person"
ADVISER_LABEL, HELPFUL_LABEL, NOT_HELPFUL_LABEL = "Book an adviser call", "Helpful", "Not helpful"
#: Those buttons by value, as an operator reading a press should see them (the ops desk).
PRESSED_LABELS = {
    HANDOFF_CHOICE: f"{TALK_TO_A_PERSON} / {SOMETHING_ELSE}",
    ADVISER_CHOICE: ADVISER_LABEL,
    FEEDBACK_HELPFUL: HELPFUL_LABEL,
    FEEDBACK_NOT_HELPFUL: NOT_HELPFUL_LABEL,
}


@dataclass(frozen=True)
class Choice:
    """A button the customer can press instead of typing: ``value`` is what comes back."""

    label: str
    value: str

    @property
    def kind(self) -> ChoiceKind:
        return kind_of(self.value)

    @property
    def is_feedback(self) -> bool:
        return self.kind == ChoiceKind.FEEDBACK

    @property
    def helpful(self) -> bool | None:
        """For a feedback button, whether it says "helpful"; None otherwise."""
        return helpful(self.value)


def kind_of(value: str) -> ChoiceKind:
    """Which kind of choice ``value`` is (``text`` when it is none of Teller's)."""
    # Only a name right after the prefix is a pressed button: "intent: my card ..." is a customer's
    # words. An intent's name may hold any character (Banking77's ``reverted_card_payment?``; a
    # bank's own labels, spaces included) but does not start with a space.
    if value.startswith(INTENT_PREFIX) and _INTENT_NAME.fullmatch(value.removeprefix(INTENT_PREFIX)):
        return ChoiceKind.INTENT
    if value.startswith(ENTRY_PREFIX) and ENTRY_ID_PATTERN.match(value.removeprefix(ENTRY_PREFIX)):
        return ChoiceKind.ENTRY
    if value in (HANDOFF_CHOICE, ADVISER_CHOICE):
        return ChoiceKind.HANDOFF
    if value in (FEEDBACK_HELPFUL, FEEDBACK_NOT_HELPFUL):
        return ChoiceKind.FEEDBACK
    if value.startswith(INTERVIEW_PREFIX):
        return ChoiceKind.INTERVIEW
    return ChoiceKind.TEXT


def is_choice(text: str) -> bool:
    """Whether a message is a pressed button of the answer policy's (intent, entry, handoff,
    feedback) rather than words of the customer's."""
    return kind_of(text) in (ChoiceKind.INTENT, ChoiceKind.ENTRY, ChoiceKind.HANDOFF, ChoiceKind.FEEDBACK)


def intent_choice(label: str, intent: str) -> Choice:
    return Choice(label, f"{INTENT_PREFIX}{intent}")


def intent_of(value: str) -> str | None:
    """The intent an ``intent:`` value names; None for other values, and for text that merely starts
    so ("intent: my card ...")."""
    return value.removeprefix(INTENT_PREFIX) if kind_of(value) == ChoiceKind.INTENT else None


def entry_choice(label: str, entry_id: str) -> Choice:
    return Choice(label, f"{ENTRY_PREFIX}{entry_id}")


def entry_of(value: str) -> str | None:
    """The knowledge-base entry an ``entry:`` value names; None for other values, and for text that
    merely starts so ("entry: my card ..." is a customer's words, not a pressed button)."""
    return value.removeprefix(ENTRY_PREFIX) if kind_of(value) == ChoiceKind.ENTRY else None


def helpful(value: str) -> bool | None:
    """True for the "helpful" feedback value, False for "not helpful", None for anything else."""
    if value == FEEDBACK_HELPFUL:
        return True
    if value == FEEDBACK_NOT_HELPFUL:
        return False
    return None


def is_feedback_form(text: str) -> bool:
    """Whether ``text`` is written as a feedback value, ``feedback:<word>`` with no space: one of
    Teller's (:data:`FEEDBACK_HELPFUL`, :data:`FEEDBACK_NOT_HELPFUL`) or one it never offered
    (``feedback:xyz``, a client's mistake). A customer's words that merely start so ("feedback: the
    app is slow") are not of this form."""
    return _FEEDBACK_FORM.fullmatch(text) is not None


def feedback_choices() -> tuple[Choice, ...]:
    return (Choice(HELPFUL_LABEL, FEEDBACK_HELPFUL), Choice(NOT_HELPFUL_LABEL, FEEDBACK_NOT_HELPFUL))


def interview_value(interview_id: str, rest: str) -> str:
    """The value of an interview's button: ``iv:<interview id>:<rest>``."""
    return f"{INTERVIEW_PREFIX}{interview_id}:{rest}"


#: A reference to a stored reply's choice, for buttons too small for its value.
CHOICE_REF_PREFIX = "ch:"


#: Seconds within which presses of one button on one post by one person are one press (a double
#: tap or click), the length of :func:`press_id`'s buckets.
PRESS_WINDOW = 600
_PRESS_PREFIX = "press:"


def press_id(chat: str, post: str, user: str, value: str, now: float | None = None) -> str:
    """The platform message id of a button press: one per person, button value and post within ten
    minutes (``press:<chat>:<post>:<user>:<value digest>:<10-minute bucket>``, ``now`` in Unix
    seconds, default the clock's), so that a double tap or click (two callbacks before the buttons
    are gone) is one message, answered once, and a press days later on a post whose buttons could
    not be removed is a new one. A double tap that straddles two buckets is one press too: see
    :func:`earlier_press`."""
    digest = hashlib.sha256(value.encode()).hexdigest()[:16]
    at = time.time() if now is None else now
    return f"{_PRESS_PREFIX}{chat}:{post}:{user}:{digest}:{int(at // PRESS_WINDOW)}"


def earlier_press(platform_id: str) -> str | None:
    """The id the same press had in the bucket before (:func:`press_id`), None for any other id. A
    press stored under it within :data:`PRESS_WINDOW` seconds is the same press: the second tap of
    a double tap made across a bucket's end (about one in 600 double taps a second apart)."""
    head, _, bucket = platform_id.rpartition(":")
    if not platform_id.startswith(_PRESS_PREFIX) or not (bucket.isascii() and bucket.isdigit()):
        return None
    return f"{head}:{int(bucket) - 1}"


def choice_ref(reply_id: str, index: int) -> str:
    """``ch:<reply id>:<index>``: the ``index``-th of the reply's choices (all of them, in order)."""
    return f"{CHOICE_REF_PREFIX}{reply_id}:{index}"


def parse_choice_ref(data: str) -> tuple[str, int] | None:
    """``(reply id, index)`` of a :func:`choice_ref`; None for anything else."""
    reply_id, _, index = data.removeprefix(CHOICE_REF_PREFIX).rpartition(":")
    # (ASCII digits only: "²" is a digit to str.isdigit and not to int, a forged press's crash.)
    if data.startswith(CHOICE_REF_PREFIX) and reply_id and index.isascii() and index.isdigit():
        return reply_id, int(index)
    return None
