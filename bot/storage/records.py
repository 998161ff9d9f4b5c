"""What the store holds and takes: status enums, the rows it returns and the inputs it accepts.

Statuses are :class:`enum.StrEnum` members, so they are stored as their plain values and compare
equal to them (``HandoffStatus.OPEN == "open"``); rows are frozen dataclasses; writes take typed
inputs (:class:`NewExchange`, :class:`NewCorrection`, :class:`ReviewSource`), never dicts.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Direction(StrEnum):
    """Who wrote a message: the customer (``in``) or Teller / an operator (``out``)."""

    IN = "in"
    OUT = "out"


class HandoffStatus(StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class ReviewStatus(StrEnum):
    """An item of the review queue: open, or how it was settled."""

    OPEN = "open"
    CONFIRMED = "confirmed"
    CHOSEN = "chosen"
    CORRECTED = "corrected"
    IGNORED = "ignored"


class ReviewReason(StrEnum):
    """Why a reply is in the review queue."""

    NOT_HELPFUL = "not_helpful"
    FLAGGED = "flagged"
    HANDOFF = "handoff"
    CLARIFY = "clarify"
    LOW_CONFIDENCE = "low_confidence"
    #: The platform finally refused the reply (after retries): the customer never saw it.
    UNDELIVERED = "undelivered"


class CorrectionAction(StrEnum):
    """What an operator did with a review item: confirmed the suggestion, chose an intent, wrote an answer."""

    CONFIRM = "confirm"
    CHOOSE = "choose"
    ANSWER = "answer"
    #: An operator confirmed Teller's proposal to correct a stored message like another correction.
    PROPOSAL = "proposal"


class ProposalStatus(StrEnum):
    """A proposal to correct a stored customer message like a correction an operator just made."""

    OPEN = "open"
    CONFIRMED = "confirmed"
    REJECTED = "rejected"
    #: Its correction was superseded by a newer one for the same text before it was decided: what it
    #: proposed is no longer what the operators say.
    WITHDRAWN = "withdrawn"


class SuggestionKind(StrEnum):
    INTENT = "intent"
    KB = "kb"


#: The route of a message relayed between a customer and an operator during a handoff.
HUMAN_ROUTE = "human"
#: The author of a message Teller itself says during a handoff (the warning to a customer who sent a
#: secret, :meth:`bot.storage.handoffs.HandoffRepository.answer_relay`); an operator is always
#: ``channel:user``, so it is never theirs.
TELLER_AUTHOR = "Teller"


@dataclass(frozen=True)
class NewExchange:
    """A customer's message and Teller's reply, about to be stored together.

    ``conversation`` is the platform's id of the conversation (a chat id, a web user id);
    ``platform_id`` the platform's id of the customer's message, unique per channel (a redelivery
    of it is a :class:`~bot.storage.DuplicateMessage`). Texts are redacted by the store.
    """

    channel: str
    conversation: str
    user_id: str
    text: str
    reply: str
    platform_id: str | None = None
    route: str | None = None
    intent: str | None = None
    confidence: float | None = None
    kb_id: str | None = None
    model_version: str | None = None
    latency_ms: float | None = None
    #: The buttons offered with the reply, as ``(label, value)`` pairs.
    choices: tuple[tuple[str, str], ...] = ()
    #: Why the policy answered so (its rule and numbers; no customer text).
    reason: str | None = None
    #: The customer's segment as the bank's backend named it (``retail``, ``premier``, ...), if any.
    segment: str | None = None


@dataclass(frozen=True)
class StoredMessage:
    id: str
    conversation_id: str
    direction: Direction
    channel: str
    user_id: str
    text: str
    #: ISO 8601 UTC with microseconds (``2026-11-30T08:15:02.123456Z``), from the database's clock.
    created_at: str
    platform_id: str | None = None
    reply_to: str | None = None
    route: str | None = None
    intent: str | None = None
    confidence: float | None = None
    kb_id: str | None = None
    model_version: str | None = None
    latency_ms: float | None = None
    #: The buttons offered with a reply, as ``(label, value)`` pairs.
    choices: tuple[tuple[str, str], ...] = ()
    #: Who wrote a relayed reply (``"slack:U123"``); None for Teller's own replies and customers.
    author: str | None = None
    #: Why the policy gave a reply (None for customers' messages and relays).
    reason: str | None = None
    #: The customer's segment the bank's backend named with the message (customers' messages only).
    segment: str | None = None


@dataclass(frozen=True)
class Exchange:
    """One customer message with Teller's reply, for reports (texts redacted)."""

    text: str
    route: str | None
    intent: str | None
    kb_id: str | None
    #: The reply was marked not helpful by the customer or flagged by an operator.
    flagged: bool


@dataclass(frozen=True)
class Feedback:
    id: str
    message_id: str
    helpful: bool
    comment: str | None
    user_id: str | None
    created_at: str


@dataclass(frozen=True)
class Flag:
    """An operator's mark on one of Teller's replies: this answer is wrong."""

    id: str
    message_id: str
    reason: str | None
    actor: str
    source: str
    created_at: str


@dataclass(frozen=True)
class Suggestion:
    """What the review queue proposes for an item: an intent, or a knowledge-base entry (``kind``)."""

    kind: SuggestionKind
    intent: str | None
    kb_id: str | None
    confidence: float | None
    model_version: str | None


@dataclass(frozen=True)
class ReviewCandidate:
    """A reply that qualifies for review, for one reason, and is not filed for that reason yet."""

    reply_id: str
    message_id: str
    conversation_id: str
    text: str
    reason: ReviewReason
    route: str | None
    intent: str | None
    confidence: float | None
    kb_id: str | None
    created_at: str


@dataclass(frozen=True)
class ReviewSource:
    """One reply filed under a review item, for one reason (``text`` is the customer's, redacted)."""

    reply_id: str
    message_id: str
    text: str
    reason: ReviewReason


@dataclass(frozen=True)
class ReviewItem:
    """A question for an operator: near-identical customer texts merged, with every reply and reason."""

    id: int
    key: str
    text: str
    status: ReviewStatus
    route: str | None
    suggestion: Suggestion | None
    created_at: str
    updated_at: str
    #: Teller's replies filed under this item, first filed first.
    message_ids: tuple[str, ...] = ()
    reasons: tuple[ReviewReason, ...] = ()
    #: The distinct customer texts (redacted) merged into this item.
    texts: tuple[str, ...] = ()
    #: Flag reasons and "not helpful" comments, redacted.
    notes: tuple[str, ...] = ()
    resolution: str | None = None
    resolved_by: str | None = None
    resolved_at: str | None = None

    @property
    def count(self) -> int:
        return len(self.message_ids)


@dataclass(frozen=True)
class ReviewKey:
    """What matching a new text against the queue needs of an item."""

    id: int
    key: str
    status: ReviewStatus
    route: str | None


@dataclass(frozen=True)
class NewCorrection:
    """A correction about to be stored."""

    text: str
    key: str
    action: CorrectionAction
    label: str | None = None
    kb_id: str | None = None
    answer: str | None = None
    #: The correction this one was proposed from, and the stored customer message it is about.
    origin_id: int | None = None
    message_id: str | None = None


@dataclass(frozen=True)
class Correction:
    """A labelled example from an operator; kept when a newer one for the same text supersedes it."""

    id: int
    item_id: int | None
    text: str
    key: str
    action: CorrectionAction
    label: str | None
    kb_id: str | None
    answer: str | None
    author: str
    created_at: str
    superseded_by: int | None = None
    superseded_at: str | None = None
    #: For a confirmed proposal: the correction it was proposed from ...
    origin_id: int | None = None
    #: ... and the stored customer message it is about.
    message_id: str | None = None

    @property
    def superseded(self) -> bool:
        return self.superseded_by is not None


@dataclass(frozen=True)
class NewProposal:
    """A stored customer message Teller is about to propose correcting like correction ``correction_id``."""

    correction_id: int
    message_id: str | None
    text: str
    key: str
    label: str | None
    kb_id: str | None
    #: How likely it shares the corrected message's need (see :mod:`bot.corrections`), and the
    #: similarities behind it: the base encoder's, and the classifier's (to the corrected message or
    #: the intent's training examples).
    score: float
    base_similarity: float
    model_similarity: float
    #: What the classifier reads it as today.
    model_intent: str | None


@dataclass(frozen=True)
class Proposal:
    """A proposal and what became of it."""

    id: int
    correction_id: int
    message_id: str | None
    text: str
    key: str
    label: str | None
    kb_id: str | None
    score: float | None
    base_similarity: float | None
    model_similarity: float | None
    model_intent: str | None
    status: ProposalStatus
    created_at: str
    decided_by: str | None = None
    decided_at: str | None = None
    #: The correction a confirmation made.
    result_id: int | None = None


@dataclass(frozen=True)
class NewHandoff:
    """A conversation about to be handed to people.

    ``conversation_id`` is the store's id (``StoredMessage.conversation_id``); ``customer_chat_id``
    what the channel needs to write to the customer (a Telegram chat id, a Slack channel:thread).
    """

    channel: str
    conversation_id: str
    customer_user_id: str
    customer_chat_id: str
    message_id: str | None = None
    ops_channel: str | None = None
    thread_ts: str | None = None


@dataclass(frozen=True)
class HandoffThread:
    """Where a handoff is relayed in the ops channel: all the board needs to post into its thread
    (a handoff's :attr:`Handoff.thread`; kept alone for one whose customer was erased)."""

    ops_channel: str | None
    thread_ts: str | None


@dataclass(frozen=True)
class Handoff:
    """A conversation handed to people: where the customer is, and the ops thread relaying it."""

    id: str
    channel: str
    conversation_id: str
    customer_user_id: str
    customer_chat_id: str
    status: HandoffStatus
    opened_at: str
    message_id: str | None = None
    ops_channel: str | None = None
    thread_ts: str | None = None
    closed_at: str | None = None
    closed_by: str | None = None
    #: When a replica claimed posting the thread (None: nobody is; see
    #: :meth:`~bot.storage.handoffs.HandoffRepository.claim_thread`).
    thread_claimed_at: str | None = None

    @property
    def is_open(self) -> bool:
        return self.status == HandoffStatus.OPEN

    @property
    def thread(self) -> HandoffThread:
        return HandoffThread(self.ops_channel, self.thread_ts)


@dataclass(frozen=True)
class Counts:
    """How many rows each kind of data has (for ``/healthz``, ``teller status`` and tests)."""

    conversations: int = 0
    messages: int = 0
    feedback: int = 0
    flags: int = 0
    review_items: int = 0
    corrections: int = 0
    handoffs: int = 0
    interviews: int = 0
    briefs: int = 0
    deliveries: int = 0


class KbChangeKind(StrEnum):
    """What a knowledge-base change is about: a live entry, or the record of a superseded one."""

    ENTRY = "entry"
    SUPERSEDED = "superseded"


@dataclass(frozen=True)
class KbChange:
    """One row of the knowledge base's change log: the new state of an item, or its removal
    (``payload`` None). ``seq`` grows with every change, across all replicas."""

    seq: int
    kind: KbChangeKind
    item_id: str
    payload: dict[str, Any] | None
    origin: str | None
    at: str


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True)
class Job:
    """Work for ``teller worker``: ``kind`` (``retrain``), its parameters and, once finished, its result."""

    id: int
    kind: str
    params: dict[str, Any]
    status: JobStatus
    requested_by: str | None
    created_at: str
    worker: str | None = None
    result: dict[str, Any] | None = None
    started_at: str | None = None
    finished_at: str | None = None


class DeliveryState(StrEnum):
    """Where an outgoing message stands with its platform."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class DeliveryKind(StrEnum):
    """What an outgoing message is: Teller's reply, an operator's relayed words, or a notice."""

    REPLY = "reply"
    RELAY = "relay"
    NOTICE = "notice"


@dataclass(frozen=True)
class Delivery:
    """One outgoing message's delivery: ``parts`` platform messages it was split into, their
    ``platform_ids``, the ``attempts`` made (retries included) and, when it failed, the platform's
    ``reason``."""

    message_id: str
    kind: DeliveryKind
    channel: str
    address: str
    state: DeliveryState
    attempts: int
    parts: int
    platform_ids: tuple[str, ...]
    reason: str | None
    created_at: str
    updated_at: str

    @property
    def delivered(self) -> bool:
        return self.state == DeliveryState.DELIVERED


class AuditAction(StrEnum):
    """What an audit-log entry records. Erasure and retention write theirs today; the others are
    reserved for knowledge-base changes, corrections, retrains and model activations."""

    ERASURE = "erasure"
    #: A customer's stored data handed out (``teller access``, :mod:`bot.privacy.access`).
    ACCESS = "access"
    RETENTION = "retention"
    KB_CHANGE = "kb.change"
    CORRECTION = "correction"
    RETRAIN = "retrain"
    ACTIVATION = "activation"
    #: A business outcome a bank's backend recorded for one of Teller's replies (``POST /api/outcomes``).
    OUTCOME = "outcome"


@dataclass(frozen=True)
class AuditEntry:
    """One row of the append-only audit log: who (``actor``, e.g. ``cli:ana``, ``api:operator``,
    ``system:retention``) did what (``action``) to what (``subject``: never a customer's id in
    clear, a keyed pseudonym instead), when, with the receipt (``details``)."""

    id: int
    at: str
    actor: str
    #: An :class:`AuditAction` (a plain string for an action this Teller does not know).
    action: AuditAction | str
    subject: str | None
    details: dict[str, Any]


@dataclass(frozen=True)
class Outcome:
    """A business outcome of one of Teller's replies (``adviser_call_booked``, ``card_activated``):
    what happened after it, as the customer's own button press or the bank's backend recorded it.
    ``source``: who recorded it (``customer``: the customer pressed the button that books it;
    ``api:backend``: the bank's backend, ``POST /api/outcomes``)."""

    id: str
    message_id: str
    name: str
    source: str
    created_at: str
