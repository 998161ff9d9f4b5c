"""The operators' side of Teller: human handoff relayed through an ops channel, and the review queue
posted there as it fills.

The ops board (the Slack ops channel) and the customers' channels are ports: an adapter implements
:class:`OpsBoard`, and every channel registers its :class:`~bot.delivery.Transport`, through which
the :class:`~bot.delivery.Courier` delivers (and records the delivery of) a message to one of its
conversations. The rules live here:

- when the policy hands off (or a customer asks for a person), a handoff is opened and the
  conversation so far is posted to the ops channel as a thread;
- while it is open, the customer's messages go into that thread instead of to the policy, and an
  operator's replies in the thread are relayed to the customer on their own channel; everything is
  stored (route ``human``), so the transcript can be read back;
- an operator closes it with a button; the customer is told and Teller answers again;
- replies that qualify for review (handoff, clarify, low confidence, not helpful, flagged, refused by
  the platform) are filed in the review queue and new items are posted to the ops channel with their
  actions, each once: the replica about to post an item claims it in the store first, so an item
  filed again (the same reply for another reason, a flag added again) or filed by two replicas at
  the same moment is not posted again (an operator's ``/teller review`` posts the open items on
  request);
- when an operator corrects a message to an intent, the stored customer messages most likely to
  share that need are proposed in the ops channel, to confirm or reject in bulk;
- an operator's words the customer's platform finally refuses are reported in the operator's thread,
  and so are words to a customer erased while the handoff was open (nothing of them is kept).

Slack calls run on one background worker, in order, so a customer's reply is never held up by the
ops channel and a thread is always opened before anything is posted into it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

from bot.abuse import AbuseLimits
from bot.choices import (
    PRESSED_LABELS,
    ChoiceKind,
    entry_of,
    intent_of,
    is_choice,
    kind_of,
)
from bot.core import SECRET_WARNING, Incoming, Outgoing, sends_secrets
from bot.delivery import Courier, Sent, Transport
from bot.errors import InputError, OpsUnreachable
from bot.operators import Actor, Operators
from bot.policy import Route
from bot.review import ReviewService
from bot.storage import (
    HUMAN_ROUTE,
    TELLER_AUTHOR,
    Correction,
    DeliveryKind,
    DeliveryState,
    Direction,
    DuplicateMessage,
    Handoff,
    HandoffThread,
    NewHandoff,
    Proposal,
    ReviewItem,
    ReviewStatus,
    Store,
    StoredMessage,
    StoreError,
)
from nlu.retraining import MODES
from retrieval.entry import MAX_ANSWER_CHARS

if TYPE_CHECKING:
    from bot.retraining import QueuedRetrain, RetrainOutcome, RetrainRunner

log = logging.getLogger(__name__)

#: Tries of a queued ops job when the database fails (pauses 1, 2, 4 ... s).
OPS_JOB_ATTEMPTS = 4
#: Seconds a replica's claim on posting a handoff's thread holds (:meth:`HandoffRepository.claim_thread`):
#: longer than one post with the Slack client's own retries takes. A handoff still without a thread
#: this long after it opened is posted by the handoff sweep (:meth:`OpsDesk.open_missing_threads`).
THREAD_LEASE_SECONDS = 300
#: At most this many customer messages per handoff wait in memory for the ops channel to take them
#: again (:meth:`OpsDesk.retry_relays`); the oldest beyond it are dropped, with a warning, as the
#: store keeps them all.
PENDING_RELAYS_MAX = 50
CLOSED_NOTICE = (
    "Our colleague has closed this conversation. I'm Teller again: ask me anything, "
    "or say you'd like a person."
)
EXPIRED_NOTICE = (
    "I'm sorry: no colleague was free to reply in time. I'm Teller again: ask me anything, "
    "or ask for a person to try again."
)
#: Told the customer when a handoff an operator did reply in goes quiet and expires: "no colleague
#: was free" would be untrue (a trial's finding).
QUIET_NOTICE = (
    "This conversation with our colleague has been quiet for a while, so I've closed it. I'm Teller "
    "again: ask me anything, or ask for a person to talk to someone again."
)


#: Told in a handoff's thread when an operator attaches a file there (:meth:`OpsDesk.operator_attachment`).
OPERATOR_FILE_NOTE = (
    "The file you attached was not sent to the customer: Teller passes on words only. Describe what "
    "they need in words, or send it to them another way."
)
#: An operator edited or deleted a message in an open handoff's thread (:meth:`OpsDesk.operator_edited`).
OPERATOR_EDIT_NOTE = (
    "Your edit did not reach the customer: they have your message as you first sent it. Send the "
    "correction as a new reply."
)
OPERATOR_DELETE_NOTE = (
    "Deleting a message here does not take it back: the customer still has it. Send a correction as "
    "a new reply if it was wrong."
)


def expiry_notice(store: Store, handoff_id: str) -> str:
    """What the customer of a handoff that expired is told: :data:`QUIET_NOTICE` when an operator's
    message was relayed to them in it, else :data:`EXPIRED_NOTICE`."""
    answered = any(
        m.direction == Direction.OUT and m.route == HUMAN_ROUTE and m.author != TELLER_AUTHOR
        for m in store.handoffs.transcript(handoff_id)
    )
    return QUIET_NOTICE if answered else EXPIRED_NOTICE


#: Told in a handoff's thread when an operator replies there after its customer was erased.
ERASED_NOTE = (
    "Not delivered: this customer's data has been erased (right to erasure), so Teller can no "
    "longer reach them, and your message was not kept. If the bank must still contact them, do it "
    "through its own records."
)
#: Told in an open handoff's thread when its customer is erased while the service runs.
ERASED_NOW_NOTE = (
    "This customer's data has just been erased (right to erasure), and this handoff with it: "
    "nothing more reaches them from this thread, and nothing of theirs is kept."
)
#: ``closed_by`` of a handoff that closed itself after going idle.
IDLE_ACTOR = "system:idle"
#: ``closed_by`` of a handoff whose thread the ops channel refused for good (:class:`OpsUnreachable`).
UNREACHABLE_ACTOR = "system:ops-unreachable"
#: Told the customer then: they were told a colleague would join, and none can.
UNREACHABLE_NOTICE = (
    "I'm sorry: I can't reach a colleague right now. I'm Teller again: ask me anything, or ask for "
    "a person later."
)
#: Seconds the notice waits for the reply that handed off to be delivered (or to fail): a part's
#: whole deadline (:data:`bot.delivery.PART_DEADLINE`) and some.
UNREACHABLE_WAIT = 150.0
#: Minutes of silence (either way) after which a handoff closes itself (TELLER_HANDOFF_IDLE_MINUTES).
IDLE_MINUTES = 30
#: Before a message relayed from a group chat's member other than the handed-off customer.
OTHER_MEMBER = "(another person in this chat)"

#: The longest operator message relayed to a customer (characters): the longest answer Teller itself
#: gives (a knowledge-base answer, :data:`retrieval.entry.MAX_ANSWER_CHARS`); channels split it at
#: their own limits.
MAX_RELAY = MAX_ANSWER_CHARS
#: Handoffs whose first operator reply sets the wait a new customer is told to expect.
WAIT_SAMPLE = 20


def waiting_notice(waits: list[float], idle_minutes: int) -> str:
    """What a customer handed to a person is told: the typical wait (the median of ``waits``,
    seconds to the first operator reply of recent handoffs, rounded up to whole minutes; nothing
    promised without history), and when Teller takes over again."""
    if waits:
        ordered = sorted(waits)
        median = ordered[len(ordered) // 2]
        minutes = max(1, int(-(-median // 60)))
        expect = f"Colleagues usually reply within about {minutes} minute{'s' if minutes > 1 else ''}."
    else:
        expect = "A colleague will reply here as soon as one is free."
    return f"{expect} If nobody has replied within {idle_minutes} minutes, I'll answer you again."


class OpsBoard(Protocol):
    """Where operators work (the Slack ops channel); rendering only, no decisions."""

    #: The board's channel id, recorded with each handoff thread.
    ops_channel: str | None

    def open_handoff(self, handoff: Handoff, transcript: list[StoredMessage]) -> str:
        """Post the conversation as the start of a thread; return the thread's id (ts). Raises
        :class:`OpsUnreachable` when the board refuses for good (nobody can take the handoff)."""
        ...

    def post_in_thread(self, handoff: Handoff, text: str) -> None:
        """Post a customer's words into the handoff's thread; raises as :meth:`open_handoff`."""
        ...

    def warn_in_thread(self, thread: HandoffThread, text: str) -> None:
        """Tell the operators in a handoff's thread something went wrong (Teller's own words)."""
        ...

    def post_review(self, item: ReviewItem, labels: list[str]) -> None: ...

    def post_proposals(self, correction: Correction, proposals: list[Proposal]) -> None:
        """Offer stored messages to correct like ``correction``, to confirm or reject in bulk."""
        ...

    def announce(self, text: str) -> str:
        """Post a message of Teller's own (e.g. retraining progress); return its id."""
        ...

    def amend(self, message_ref: str, text: str) -> None:
        """Replace the text of a message posted with :meth:`announce`."""
        ...


class _KeyedLocks:
    """One lock per key (a handoff's id), kept while it is held or waited for. Thread-safe."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, tuple[threading.Lock, int]] = {}

    @contextmanager
    def hold(self, key: str) -> Iterator[None]:
        """Hold ``key``'s lock, waiting for it."""
        lock = self._join(key)
        try:
            with lock:
                yield
        finally:
            self._leave(key)

    @contextmanager
    def attempt(self, key: str) -> Iterator[bool]:
        """Hold ``key``'s lock if it is free now: yields whether it was (then held until exit)."""
        lock = self._join(key)
        if not lock.acquire(blocking=False):
            self._leave(key)
            yield False
            return
        try:
            yield True
        finally:
            lock.release()
            self._leave(key)

    def _join(self, key: str) -> threading.Lock:
        with self._guard:
            lock, users = self._locks.get(key, (threading.Lock(), 0))
            self._locks[key] = (lock, users + 1)
            return lock

    def _leave(self, key: str) -> None:
        with self._guard:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


class OpsDesk:
    """Handoffs and the review queue, between customers' channels and the ops board."""

    def __init__(self, store: Store, review: ReviewService, operators: Operators) -> None:
        self.store = store
        self.review = review
        self.operators = operators
        self.board: OpsBoard | None = None
        self.transports: dict[str, Transport[Any]] = {}
        self.courier = Courier(store.deliveries)
        self.retrainer: RetrainRunner | QueuedRetrain | None = None
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="teller-ops")
        #: Filing review items (and what follows from it) runs apart, so that a burst of filings
        #: never delays a handoff's thread, a relay or a notice on :attr:`_worker`.
        self._review_worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="teller-review")
        review.on_correction.append(self._after_correction)
        self.idle_minutes = IDLE_MINUTES
        #: Caps on handoffs and on review posts to the ops channel (:mod:`bot.abuse`).
        self.limits = AbuseLimits()
        self._handoff_lock = threading.Lock()
        #: Customer messages the ops channel refused, per handoff, in order: posted before anything
        #: newer of that handoff, by the next relay or the handoff sweep (:meth:`retry_relays`).
        #: Kept in memory only: a restart loses them (the store has them, and a thread opened later
        #: opens with the latest of them).
        self._pending_relays: dict[str, list[tuple[str, bool]]] = {}
        self._pending_lock = threading.Lock()
        #: Threads posted whose recording the database refused past its retries: recorded by the
        #: handoff sweep, so the sweep never posts them a second time.
        self._unrecorded: dict[str, tuple[str, str]] = {}
        #: Handoffs with a thread post or a relay flush queued on this replica: the sweep does not
        #: queue another while one waits (Slack down, a backlog would grow with every sweep).
        self._queued_threads: set[str] = set()
        self._queued_flushes: set[str] = set()
        #: An operator's messages to one customer, one at a time: see :meth:`operator_reply`.
        self._relaying = _KeyedLocks()

    def attach_board(self, board: OpsBoard) -> None:
        self.board = board

    def register_transport(self, transport: Transport[Any]) -> None:
        """How to reach the customers of ``transport.name`` (replies in handoffs, notices)."""
        self.transports[transport.name] = transport

    def close(self) -> None:
        self._review_worker.shutdown(wait=True)
        self._worker.shutdown(wait=True)

    def drain(self, timeout: float = 30.0) -> None:
        """Wait until everything queued for the ops board so far has been sent."""
        self._review_worker.submit(lambda: None).result(timeout)
        self._worker.submit(lambda: None).result(timeout)

    # ------------------------------------------------------------------------------ customers

    def relay_in(self, incoming: Incoming) -> Outgoing | None:
        """A customer's message during an open handoff: stored and put into the ops thread."""
        if self.board is None:
            return None
        handoff = self.store.handoffs.active_for(incoming.channel, incoming.conversation_id)
        if handoff is None:
            return None
        try:
            stored = self.store.handoffs.record_relay(
                handoff.id,
                Direction.IN,
                incoming.text,
                platform_id=incoming.message_id,
                segment=incoming.segment,
                sender=incoming.user_id,
            )
        except DuplicateMessage:
            # The same message again (a client's retry racing its first attempt): answered with the
            # stored message's id, which a web page may poll after (``GET /api/messages?after=``).
            seen = self.store.conversations.seen(incoming.channel, incoming.message_id or "")
            stored_id = seen[0].id if seen is not None else f"{handoff.id}:dup"
            return Outgoing(stored_id, "", route=HUMAN_ROUTE, duplicate=True, silent=True)
        other = stored.user_id != handoff.customer_user_id
        self._later(self._to_thread, handoff.id, stored.text, other)
        if sends_secrets(incoming.text):
            # Told at once, as an answered message is (the operator reads only the placeholder, and
            # may not reply for minutes): stored as the message's reply, so a redelivery gets it too.
            try:
                warning = self.store.handoffs.answer_relay(stored, SECRET_WARNING)
            except DuplicateMessage:  # a redelivery that raced this one stored it first
                return Outgoing(stored.id, "", route=HUMAN_ROUTE, silent=True)
            return Outgoing(warning.id, SECRET_WARNING, route=HUMAN_ROUTE)
        return Outgoing(stored.id, "", route=HUMAN_ROUTE, silent=True)

    def attachment_in(self, handoff: Handoff, kind: str, with_words: bool = False) -> None:
        """The customer of open ``handoff`` sent ``kind`` ("a photo"), which Teller does not pass on:
        the operators read that they did, in the thread (``with_words``: with the message relayed
        just before, its caption)."""
        if self.board is not None:
            if with_words:
                note = f"(sent {kind} with the message above: Teller passes on words only, and told them so)"
            else:
                note = f"(sent {kind}: Teller passes on words only, and asked them to describe it)"
            self._later(self._to_thread, handoff.id, note)

    def operator_attachment(self, ops_channel: str, thread_ts: str, actor: Actor) -> None:
        """An operator attached a file in the thread of an open handoff: it is not passed on, and
        they are told so there (a reviewer's finding: the words went, the file was dropped unsaid).
        Raises :class:`bot.errors.NotAuthorised` for someone who is not an operator."""
        handoff = self.store.handoffs.by_thread(thread_ts, ops_channel)
        if handoff is None:
            return  # a file in some other thread: ordinary chatter
        self.operators.require(actor.channel, actor.user_id, "reply to customers")
        if handoff.is_open and self.board is not None:
            self._later(self.board.warn_in_thread, handoff.thread, OPERATOR_FILE_NOTE)

    def operator_edited(self, ops_channel: str, thread_ts: str, actor: Actor, deleted: bool) -> None:
        """An operator edited (or deleted) a message in the thread of an open handoff: the customer
        keeps it as first sent, and the operator is told so there (a reviewer's trial: a corrected
        figure never reached the customer, and nothing said so). Someone else's edit, or one in
        another thread, is ordinary chatter: nothing is said."""
        handoff = self.store.handoffs.by_thread(thread_ts, ops_channel)
        if handoff is None or not handoff.is_open or self.board is None:
            return
        if not self.operators.is_operator(actor.channel, actor.user_id):
            return
        self._later(
            self.board.warn_in_thread, handoff.thread, OPERATOR_DELETE_NOTE if deleted else OPERATOR_EDIT_NOTE
        )

    def _as_pressed(self, text: str) -> str:
        """A button the customer pressed during the handoff (one left from before it), as the
        operator should read it: what the button said, not its value ("entry:lost_card", a trial's
        finding). Anything else as it is."""
        label = self._pressed_label(text)
        return text if label is None else f"(pressed a button from before: “{label}”)"

    def _opening(self, transcript: list[StoredMessage]) -> list[StoredMessage]:
        """The transcript a handoff's thread opens with, each button the customer pressed shown by
        what it said ("(pressed “Where is my new card?”)"), not by its value ("intent:card_arrival",
        a review's finding); a value no answer offered was read as the words it is, and stays so."""
        shown = []
        for m in transcript:
            label = None
            if m.direction == Direction.IN and is_choice(m.text):
                try:
                    if kind_of(m.text) not in (ChoiceKind.INTENT, ChoiceKind.ENTRY):
                        label = self._pressed_label(m.text)
                    elif (answer := self.store.conversations.offering_answer(m.id)) is not None:
                        # What the button said when it was pressed (a review's finding: read from
                        # the knowledge base now, an intent without an entry showed its name).
                        label = next((lbl for lbl, value in answer.choices if value == m.text), None)
                except Exception:  # the knowledge base changing meanwhile: the value as it came
                    log.exception("pressed_label_failed")
            shown.append(m if label is None else replace(m, text=f"(pressed “{label}”)"))
        return shown

    def _pressed_label(self, text: str) -> str | None:
        """What the button whose value is ``text`` said (an intent's or entry's first phrasing, or
        :data:`bot.choices.PRESSED_LABELS`); None for a text that is no button's value."""
        kind = kind_of(text)
        if kind in (ChoiceKind.TEXT, ChoiceKind.INTERVIEW):
            return None
        kb = self.review.policy_provider().kb
        if kind == ChoiceKind.INTENT:
            intent = intent_of(text) or ""
            entry = kb.for_intent(intent)
            label = entry.questions[0] if entry is not None else intent
        elif kind == ChoiceKind.ENTRY:
            entry_id = entry_of(text) or ""
            label = kb.get(entry_id).questions[0] if entry_id in kb else entry_id
        else:
            label = PRESSED_LABELS.get(text, text)
        return label

    def handoff_gate(self, reply: Outgoing) -> AbstractContextManager[object]:
        """Held while a reply that hands off is judged against the caps and its handoff opened, so
        that requests at the same moment cannot all see room for one more (on this replica; across
        replicas the count and the insert are separate statements, and a burst may pass the total
        cap by the handoffs opened in the same instant elsewhere). Other replies pass freely."""
        return self._handoff_lock if reply.route == Route.HANDOFF.value else nullcontext()

    def may_open_handoff(self, incoming: Incoming, reply: Outgoing) -> bool:
        """Whether the handoff this reply asks for may be opened (counted if so): True unless the
        reply hands off to a new handoff and the open handoffs in total, or those opened from the
        customer's address this hour, are at their cap (:class:`bot.abuse.AbuseLimits`). A
        customer who has a handoff open already is never refused: theirs is reused. A redelivered
        message (``reply.duplicate``) is judged again unless its handoff was opened the first time:
        resending a refused request must not get past the caps."""
        if reply.route != Route.HANDOFF.value or self.board is None:
            return True
        handoffs = self.store.handoffs
        if reply.duplicate and handoffs.for_message(reply.message_id) is not None:
            return True
        if handoffs.active_for(incoming.channel, incoming.conversation_id) is not None:
            return True
        return self.limits.handoff(incoming.origin, handoffs.open_count())

    def after_reply(self, incoming: Incoming, reply: Outgoing, open_handoff: bool = True) -> Handoff | None:
        """Open a handoff when the policy handed off (unless ``open_handoff`` is False: a cap was
        reached, see :meth:`may_open_handoff`); file the reply for review if it qualifies.
        Returns the handoff opened for this reply (None when none was).

        Idempotent, so that a redelivered message (``reply.duplicate``) finishes what a replica that
        died after storing the reply left undone: no second handoff for the same reply, no second
        filing."""
        handed_off = reply.route == Route.HANDOFF.value and self.board is not None and open_handoff
        if handed_off and reply.duplicate and self.store.handoffs.for_message(reply.message_id) is not None:
            handed_off = False
        handoff: Handoff | None = None
        if handed_off:
            customer, _ = self.store.conversations.exchange(reply.message_id)
            handoff = self.store.handoffs.start(
                NewHandoff(
                    incoming.channel,
                    customer.conversation_id,
                    incoming.user_id,
                    incoming.conversation_id,
                    message_id=reply.message_id,
                )
            )
            if handoff.thread_ts is None:
                self._later(self._open_thread, handoff.id)
        if reply.route in (Route.HANDOFF.value, Route.CLARIFY.value) or (
            reply.route == Route.INTENT.value
            and reply.confidence is not None
            and reply.confidence < self.review.review_confidence
        ):
            self._later_review(self._file, reply.message_id)
        return handoff if handoff is not None and handoff.message_id == reply.message_id else None

    def waiting_notice(self) -> str:
        """See :func:`waiting_notice`: from the latest handoffs' first replies."""
        return waiting_notice(self.store.handoffs.first_reply_waits(WAIT_SAMPLE), self.idle_minutes)

    def expire_idle(self) -> list[Handoff]:
        """Close every handoff idle for :attr:`idle_minutes` (no message either way): the customer
        is told Teller answers again, the operators see it expired in the handoff's thread. Each is
        closed by one replica only (a conditional update); returns those this call closed."""
        before = self.store.database.clock.ago(self.idle_minutes * 60)
        expired = []
        for idle in self.store.handoffs.idle(before):
            # Not while a relay is on its way (the relay lock, as Close takes it): one that read the
            # handoff open just before the sweep closed it would reach the customer after they were
            # told Teller answers again. Once it has recorded its message, the handoff is not idle.
            with self._relaying.attempt(idle.id) as free:
                # (a relay on its way will record its message: not idle, and never waited for, as a
                # relay can take a platform's whole deadline and this sweep has every handoff to do)
                handoff = self.store.handoffs.expire(idle.id, before, IDLE_ACTOR) if free else None
            if handoff is None:
                continue
            expired.append(handoff)
            log.warning(
                "handoff_expired",
                extra={"fields": {"handoff": handoff.id, "idle_minutes": self.idle_minutes}},
            )
            words = expiry_notice(self.store, handoff.id)
            answered = words == QUIET_NOTICE
            notice = Outgoing(f"{handoff.id}:expired", words, route=HUMAN_ROUTE, threaded=False)
            try:
                self._send(handoff, notice, DeliveryKind.NOTICE)
            except InputError as exc:  # that channel is not running on this replica
                log.error("handoff_expiry_notice_failed", extra={"fields": {"error": str(exc)}})
            if self.board is not None and handoff.thread_ts is not None:
                why = "the conversation went quiet" if answered else "nobody replied in time"
                self._later(
                    self.board.warn_in_thread,
                    handoff.thread,
                    f"Closed after {self.idle_minutes} minutes without a message either way: {why}. "
                    "The customer was told Teller answers again; a reply here no longer reaches them, "
                    "so reach them another way if they still need a person.",
                )
        return expired

    def after_feedback(self, message_id: str, helpful: bool) -> None:
        if not helpful:
            self._later_review(self._file, message_id)

    def relay_interrupted(self, channel: str, address: str, message_id: str | None = None) -> None:
        """An operator's message to this customer was cut off mid-send (its replica stopped): the
        operators are told in the handoff's thread to send it again. The handoff is the open one of
        ``message_id``'s conversation where that is a stored message (a group's address names the
        message it replies to, and a group moved to a supergroup has a new id: found in review), else
        the open one of the conversation at ``address``."""
        handoff = None
        if message_id is not None and self.store.conversations.exists(message_id):
            latest = self.store.handoffs.latest(self.store.conversations.message(message_id).conversation_id)
            handoff = latest if latest is not None and latest.is_open else None
        handoff = handoff or self.store.handoffs.active_for(channel, address)
        if handoff is not None and self.board is not None:
            self._later(
                self.board.warn_in_thread,
                handoff.thread,
                "A message of yours may not have reached the customer: the server sending it "
                "stopped. Please send it again.",
            )

    def undelivered(self, reply_id: str) -> None:
        """The customer's platform refused a reply for good: file it for a person to follow up."""
        self._later_review(self._file, reply_id)

    # ------------------------------------------------------------------------------ operators

    def operator_reply(
        self, ops_channel: str, thread_ts: str, actor: Actor, text: str, platform_id: str
    ) -> bool:
        """An operator wrote in an ops thread: relay it to the customer if the thread is an open
        handoff. False when the thread is not a handoff's (ordinary chatter). If the customer's
        platform refuses it for good, the operator is told in the thread; so too when the handoff
        was open when its customer was erased (:meth:`_erased_reply`: True, nothing delivered)."""
        handoff = self.store.handoffs.by_thread(thread_ts, ops_channel)
        if handoff is None and self.store.handoffs.erased_thread(thread_ts, ops_channel):
            self._erased_reply(ops_channel, thread_ts, actor, text)
            return True
        if handoff is None:
            return False
        if not handoff.is_open:
            self._closed_reply(handoff, actor, text)
            return True
        operator = self.operators.require(actor.channel, actor.user_id, "reply to customers")
        if len(text) > MAX_RELAY:
            if self.board is not None:
                self._later(
                    self.board.warn_in_thread,
                    handoff.thread,
                    f"Not sent: the message has {len(text):,} characters and customers get at most "
                    f"{MAX_RELAY:,} at a time. Please send it in shorter parts.",
                )
            return True
        # Recorded and sent under the handoff's lock: a message the platform holds back (a 429, a
        # retry) is not overtaken by the operator's next one, which Slack hands to another listener
        # thread (a reviewer's trial: "Sorry, correction: it was £15" reached the customer before
        # "Your refund of £50 was approved."). Within this replica; Slack's events of one thread
        # reaching two replicas at once are not ordered.
        with self._relaying.hold(handoff.id):
            handoff = self.store.handoffs.get(handoff.id)
            if not handoff.is_open:  # closed while this waited for the relay before it
                self._closed_reply(handoff, actor, text)
                return True
            try:
                stored = self.store.handoffs.record_relay(
                    handoff.id, Direction.OUT, text, author=str(operator), platform_id=platform_id
                )
            except DuplicateMessage:
                return True  # a redelivery of the operator's message: its first delivery relays it
            reply = Outgoing(stored.id, text, route=HUMAN_ROUTE, threaded=False)
            sent = self._send(handoff, reply, DeliveryKind.RELAY)
        if sent is not None and not sent.delivered and not sent.skipped and self.board is not None:
            reason = sent.error.reason if sent.error else "unknown"
            seen = (
                f"They got the first {len(sent.platform_ids)} part(s) of it only"
                if sent.platform_ids
                else "They have not seen this message"
            )
            # A refusal no retry mends (blocked the bot, left the chat, the chat archived): "try
            # again" would send the operator into the same wall (a trial's finding).
            then = (
                "try again or reach them another way"
                if sent.error is None or sent.error.transient
                else f"{handoff.channel} will refuse them again, so reach them another way"
            )
            self._later(
                self.board.warn_in_thread,
                handoff.thread,
                f"Not delivered to the customer ({handoff.channel} said: {reason}). {seen}; {then}.",
            )
        log.info("handoff_relayed", extra={"fields": {"handoff": handoff.id, "operator": str(operator)}})
        return True

    def _closed_reply(self, handoff: Handoff, actor: Actor, text: str) -> None:
        """An operator wrote in the thread of a handoff closed or expired since: nothing is relayed
        (the customer is back with Teller), and the operator is told so in the thread (a trial's
        finding: the reply was dropped with nothing said). A line is logged without its words."""
        operator = self.operators.require(actor.channel, actor.user_id, "reply to customers")
        expired = handoff.closed_by == IDLE_ACTOR
        log.warning(
            "handoff_reply_not_delivered",
            extra={
                "fields": {
                    "reason": "handoff_expired" if expired else "handoff_closed",
                    "handoff": handoff.id,
                    "operator": str(operator),
                    "characters": len(text),
                }
            },
        )
        if self.board is not None:
            how = (
                "expired (no message either way for a while)"
                if expired
                else f"was closed by {handoff.closed_by}"
            )
            self._later(
                self.board.warn_in_thread,
                handoff.thread,
                f"Not delivered: this handoff {how} at {handoff.closed_at}, and the customer is back "
                "with Teller. If they ask for a person again, a new handoff opens; to reach them now, "
                "use another way.",
            )

    def customer_erased(self, threads: Iterable[tuple[str, str]]) -> None:
        """A customer with open handoffs was erased (:attr:`ErasureReceipt.open_threads`, channel id
        and thread ts): each thread is told, so that no operator goes on writing there unaware."""
        if self.board is None:
            return
        for ops_channel, thread_ts in threads:
            self._later(self.board.warn_in_thread, HandoffThread(ops_channel, thread_ts), ERASED_NOW_NOTE)

    def _erased_reply(self, ops_channel: str, thread_ts: str, actor: Actor, text: str) -> None:
        """An operator replied in the thread of a handoff whose customer has been erased: nothing can
        reach them (who and where they were is gone) and nothing is stored; the operator is told so
        in the thread, and a line is logged without the reply's words."""
        operator = self.operators.require(actor.channel, actor.user_id, "reply to customers")
        log.warning(
            "handoff_reply_not_delivered",
            extra={
                "fields": {
                    "reason": "customer_erased",
                    "ops_channel": ops_channel,
                    "thread_ts": thread_ts,
                    "operator": str(operator),
                    "characters": len(text),
                }
            },
        )
        if self.board is not None:  # the thread is all there is: the handoff went with the customer
            self._later(self.board.warn_in_thread, HandoffThread(ops_channel, thread_ts), ERASED_NOTE)

    def close_handoff(self, handoff_id: str, actor: Actor) -> Handoff:
        self.operators.require(actor.channel, actor.user_id, "close handoffs")
        handoff = self.store.handoffs.get(handoff_id)
        if not handoff.is_open:
            return handoff
        # After any relay on its way (held by the handoff's lock): the customer reads the operator's
        # last words before "closed", and a relay waiting behind one is told it came too late (a
        # reviewer's finding: the notice overtook a relay held by a rate limit).
        with self._relaying.hold(handoff_id):
            closed = self.store.handoffs.close(handoff_id, str(actor))
            if closed.closed_by != str(actor):
                return closed  # another press closed it meanwhile: that one tells the customer and logs
            notice = Outgoing(f"{handoff_id}:closed", CLOSED_NOTICE, route=HUMAN_ROUTE, threaded=False)
            sent = self._send(closed, notice, DeliveryKind.NOTICE)
        if sent is not None and not sent.delivered and not sent.skipped and self.board is not None:
            self._later(
                self.board.warn_in_thread,
                closed.thread,
                f"The customer was not told the conversation is closed ({closed.channel} said: "
                f"{sent.error.reason if sent.error else 'unknown'}); Teller answers them again.",
            )
        log.info("handoff_closed", extra={"fields": {"handoff": handoff_id, "operator": str(actor)}})
        return closed

    def flag(
        self, message_id: str, reason: str | None, actor: Actor, source: str = "command"
    ) -> ReviewItem | None:
        """An operator flags an answer (by command or reaction); the item goes to the ops board unless
        it was posted there before (:meth:`_post_item`; an operator's flag is not held back by the
        review-post limit). None when the flag filed no item (:data:`bot.review.NOTHING_TO_REVIEW`)."""
        result = self.review.flag(message_id, reason, actor, source)
        if self.board is not None and result.item is not None:
            self._later(self._post_item, result.item)
        return result.item

    def flag_post(self, channel: str, platform_id: str, actor: Actor) -> ReviewItem | None:
        """Flag one of Teller's posts found by its platform id (a reaction on it)."""
        self.operators.require(actor.channel, actor.user_id, "flag answers")
        message = self.store.conversations.message_by_platform_id(channel, platform_id)
        if message is None or message.direction != Direction.OUT:
            return None  # not one of Teller's answers (a customer's message, or never stored)
        return self.flag(message.id, "reaction", actor, source="reaction")

    def post_open_items(self, limit: int = 10) -> int:
        """Post the open review items (oldest first) to the ops board, posted before or not (an
        operator asked for them); returns how many."""
        items = self.review.items()[:limit]
        for item in items:
            self._later(self._post_item, item, True)
        return len(items)

    def start_retrain(self, actor: Actor, mode: str = "continue") -> str:
        """``/teller retrain [from-scratch]``: start a background retrain whose progress and verdict
        are posted (one message, updated) to the ops board. Returns what to tell the operator now."""
        self.operators.require(actor.channel, actor.user_id, "retrain the model")
        board, runner = self.board, self.retrainer
        if runner is None or board is None:
            raise InputError(
                "retraining from chat needs an ops channel (TELLER_OPS_CHANNEL) to report to; "
                "run `teller retrain` in a terminal"
            )
        if runner.running:
            return "A retrain is already running; its progress is in the ops channel."
        if mode not in MODES:
            raise InputError(f"unknown retraining mode {mode!r}: use one of {', '.join(MODES)}")
        recipe = "from scratch" if mode == "scratch" else "continuing from the active model"
        ref = board.announce(f"Retraining ({recipe}) requested by {actor}: starting...")
        last = {"time": 0.0, "fraction": -1.0}

        def progress(stage: str, fraction: float) -> None:
            now = time.monotonic()
            if fraction - last["fraction"] >= 0.05 or now - last["time"] >= 15:
                last.update(time=now, fraction=fraction)
                self._later(
                    board.amend, ref, f"Retraining (requested by {actor}): {stage}, {fraction:.0%} done"
                )

        def done(outcome: RetrainOutcome) -> None:
            verdict = "Retraining finished" if outcome.promoted else "Retraining did not promote a model"
            self._later(board.amend, ref, f"{verdict} (requested by {actor}). {outcome.message}")

        if not runner.start(progress, done, mode, actor=str(actor)):
            return "A retrain is already running; its progress is in the ops channel."
        return "Retraining started; progress and the result are posted in the ops channel."

    # ------------------------------------------------------------------------------ worker

    def _later_review(self, job: Callable[..., None], *args: Any) -> Future[None]:
        """:meth:`_later` on the review worker (filing, which may take a while, never delays the
        handoffs' posts)."""
        return self._later(job, *args, worker=self._review_worker)

    def _later(
        self, job: Callable[..., None], *args: Any, worker: ThreadPoolExecutor | None = None
    ) -> Future[None]:
        try:
            return (worker or self._worker).submit(self._retrying, job, *args)
        except RuntimeError:  # shutting down: the ops channel is not told, the store has it all
            log.warning("ops_job_dropped", extra={"fields": {"job": job.__name__}})
            done: Future[None] = Future()
            done.set_result(None)
            return done

    @staticmethod
    def _retrying(job: Callable[..., None], *args: Any) -> None:
        """Run ``job(*args)`` on the calling worker: a database failure is tried again
        (:data:`OPS_JOB_ATTEMPTS` in all, pauses 1, 2, 4 ... s), any other failure logged, none
        raised."""
        for attempt in range(OPS_JOB_ATTEMPTS):
            try:
                job(*args)
                return
            except StoreError as exc:  # a database blip: filing and threads must not be lost
                if attempt + 1 == OPS_JOB_ATTEMPTS:
                    log.error(
                        "ops_job_failed", extra={"fields": {"job": job.__name__, "error": str(exc)[:300]}}
                    )
                    return
                time.sleep(2**attempt)
            except Exception as exc:  # the ops channel being down must not affect customers
                log.error("ops_job_failed", extra={"fields": {"job": job.__name__, "error": repr(exc)[:300]}})
                return

    def open_missing_threads(self) -> int:
        """Queue the posting of every open handoff left without a thread for
        :data:`THREAD_LEASE_SECONDS` (its post failed: Slack down longer than its client retries,
        or the replica died first), oldest first; returns how many were queued. Run by every
        replica's handoff sweep; the store's claim lets one post each."""
        if self.board is None:
            return 0
        for handoff_id, (ops_channel, ts) in list(self._unrecorded.items()):
            self._later(self._record_thread, handoff_id, ops_channel, ts)
        before = self.store.database.clock.ago(THREAD_LEASE_SECONDS)
        waiting = self._queued_threads | self._unrecorded.keys()  # (posted, or about to be)
        missing = [h for h in self.store.handoffs.threadless(before) if h.id not in waiting]
        for handoff in missing:
            log.warning("handoff_thread_retried", extra={"fields": {"handoff": handoff.id}})
            self._queued_threads.add(handoff.id)
            self._later(self._open_thread, handoff.id, True)
        return len(missing)

    def _open_thread(self, handoff_id: str, late: bool = False) -> None:
        """Post a handoff's thread, once (the store's claim), and record it. It opens with the
        conversation up to the reply that handed off; what the customer writes after goes in as
        relays (:meth:`_to_thread`), so nothing shows twice or is lost to a post racing a relay.
        ``late`` (the sweep, after a refused post): it opens with the latest messages, those
        written meanwhile included, and this replica's waiting relays it shows are dropped. A post
        the ops channel refuses gives the claim back and raises. Recording it is retried on its
        own when the database fails, and past the retries by the sweep, so a database outage
        after the post never posts the handoff twice."""
        assert self.board is not None
        self._queued_threads.discard(handoff_id)
        handoffs = self.store.handoffs
        if not handoffs.claim_thread(handoff_id, self.store.database.clock.ago(THREAD_LEASE_SECONDS)):
            return  # posted already, being posted elsewhere, or closed meanwhile
        try:
            handoff = handoffs.get(handoff_id)
            transcript = handoffs.transcript(handoff_id)
            if not late:
                upto = next((i for i, m in enumerate(transcript) if m.id == handoff.message_id), None)
                if upto is not None:
                    transcript = transcript[: upto + 1]
            opening = transcript[-12:]
            ts = self.board.open_handoff(handoff, self._opening(opening))
        except OpsUnreachable as exc:
            self._unreachable(handoff_id, exc)
            return
        except BaseException:
            self._give_back_thread(handoff_id)
            raise
        if late:  # the thread opened with them: not posted again when it is recorded
            self._drop_waiting(handoff_id, [m.text for m in opening if m.direction == Direction.IN])
        ops_channel = self.board.ops_channel or ""
        self._unrecorded[handoff_id] = (ops_channel, ts)
        self._retrying(self._record_thread, handoff_id, ops_channel, ts)

    def _unreachable(self, handoff_id: str, exc: OpsUnreachable) -> None:
        """The ops channel refused a handoff's thread or a relay into it for good (the bot not in
        the channel, the channel gone or archived, a revoked token): the handoff closes and the
        customer is told no colleague can be reached. (A trial's finding: the customer was told a
        colleague would join and their next messages, "my card was stolen, please block it now",
        went nowhere, the post retried every five minutes until the handoff went idle half an hour
        later.) The notice goes on a thread of its own, after the reply that handed off has settled
        (a review: it overtook "I'll connect you" held by a rate limit, and sent from the ops worker
        it held every other handoff's thread up for as long as the customer's platform did)."""
        log.error(
            "handoff_ops_unreachable",
            extra={"fields": {"handoff": handoff_id, "error": exc.reason[:300]}},
        )
        closed = self.store.handoffs.close(handoff_id, UNREACHABLE_ACTOR)
        with self._pending_lock:
            self._pending_relays.pop(handoff_id, None)
        if closed.closed_by != UNREACHABLE_ACTOR:
            return  # closed meanwhile (by an operator, or the customer's own "delete"): told then
        threading.Thread(
            target=self._tell_unreachable, args=(closed,), name="teller-unreachable", daemon=True
        ).start()

    def _tell_unreachable(self, handoff: Handoff) -> None:
        """Send :data:`UNREACHABLE_NOTICE` once the reply that opened ``handoff`` is delivered or
        has failed (at most :data:`UNREACHABLE_WAIT` seconds), under the handoff's relay lock."""
        deadline = time.monotonic() + UNREACHABLE_WAIT
        while handoff.message_id and time.monotonic() < deadline:
            try:
                record = self.store.deliveries.get(handoff.message_id)
            except StoreError:
                record = None
            if record is None or record.state != DeliveryState.PENDING:
                break  # (none: a web chat's reply, which the page fetches, or not yet recorded)
            time.sleep(0.2)
        notice = Outgoing(f"{handoff.id}:unreachable", UNREACHABLE_NOTICE, route=HUMAN_ROUTE, threaded=False)
        try:
            with self._relaying.hold(handoff.id):
                self._send(handoff, notice, DeliveryKind.NOTICE)
        except Exception as err:  # a channel not running on this replica, a database failure
            log.error("handoff_unreachable_notice_failed", extra={"fields": {"error": repr(err)[:300]}})

    def _drop_waiting(self, handoff_id: str, shown: list[str]) -> None:
        """Drop a handoff's waiting relays whose text a post showed, one for each time it did."""
        left = list(shown)
        with self._pending_lock:
            queue = self._pending_relays.get(handoff_id, [])
            kept = []
            for text, other_member in queue:
                if text in left:
                    left.remove(text)
                else:
                    kept.append((text, other_member))
            if kept:
                self._pending_relays[handoff_id] = kept
            else:
                self._pending_relays.pop(handoff_id, None)

    def _give_back_thread(self, handoff_id: str) -> None:
        try:
            self.store.handoffs.release_thread(handoff_id)
        except StoreError as exc:  # the claim lapses by itself after THREAD_LEASE_SECONDS
            log.error(
                "handoff_thread_unclaimed", extra={"fields": {"handoff": handoff_id, "error": str(exc)[:300]}}
            )

    def _record_thread(self, handoff_id: str, ops_channel: str, ts: str) -> None:
        assert self.board is not None
        try:
            handoff = self.store.handoffs.set_thread(handoff_id, ops_channel, ts)
        except InputError:
            # The customer was erased while the thread was being opened (a reviewer's finding: the
            # thread then went on unmarked): it is recorded as erased and the operators are told.
            if self.store.handoffs.lookup(handoff_id) is not None:
                raise
            self.store.handoffs.mark_erased_thread(ops_channel, ts)
            self._unrecorded.pop(handoff_id, None)
            self.board.warn_in_thread(HandoffThread(ops_channel, ts), ERASED_NOW_NOTE)
            log.warning("handoff_erased_while_opening", extra={"fields": {"thread_ts": ts}})
            return
        self._unrecorded.pop(handoff_id, None)
        log.info("handoff_opened", extra={"fields": {"handoff": handoff_id, "channel": handoff.channel}})
        # what the customer wrote while the thread was being posted goes in now
        if handoff_id in self._pending_relays:
            self._flush_relays(handoff_id)

    def _to_thread(self, handoff_id: str, text: str, other_member: bool = False) -> None:
        """Post a relayed message in the handoff's thread; ``other_member``: written by someone in
        the (group) chat other than the handed-off customer, and marked so. Messages the ops channel
        refused before go first, in order; one it refuses now waits for the next relay or the
        handoff sweep (:meth:`retry_relays`). Without a thread yet, it waits for the thread."""
        with self._pending_lock:
            queue = self._pending_relays.setdefault(handoff_id, [])
            queue.append((text, other_member))
            if len(queue) > PENDING_RELAYS_MAX:
                del queue[: len(queue) - PENDING_RELAYS_MAX]
                log.warning("relay_dropped", extra={"fields": {"handoff": handoff_id}})
        # (retried here alone when the database fails, so the message is never queued twice)
        self._retrying(self._flush_relays, handoff_id)

    def retry_relays(self) -> int:
        """Queue another try for every handoff with customer messages the ops channel refused;
        returns how many handoffs. Run by the handoff sweep."""
        with self._pending_lock:
            waiting = [
                h for h, queue in self._pending_relays.items() if queue and h not in self._queued_flushes
            ]
            self._queued_flushes.update(waiting)
        for handoff_id in waiting:
            self._later(self._flush_relays, handoff_id, True)
        return len(waiting)

    def _flush_relays(self, handoff_id: str, swept: bool = False) -> None:
        """Post a handoff's waiting relays in order (on the ops worker, so never two at once); stops
        at the first the ops channel refuses (raised, and logged by :meth:`_retrying`). Those of a
        handoff closed or erased meanwhile are dropped; without a thread yet, they wait for it."""
        assert self.board is not None
        if swept:
            with self._pending_lock:
                self._queued_flushes.discard(handoff_id)
        handoff = self.store.handoffs.lookup(handoff_id)
        if handoff is None or not handoff.is_open:
            with self._pending_lock:  # erased, or closed: no thread will ever show them
                self._pending_relays.pop(handoff_id, None)
            return
        if handoff.thread_ts is None:
            return
        while True:
            with self._pending_lock:
                queue = self._pending_relays.get(handoff_id)
                if not queue:
                    self._pending_relays.pop(handoff_id, None)
                    return
                text, other_member = queue[0]
            try:
                shown = self._as_pressed(text)
            except Exception:  # the knowledge base changing meanwhile: the value as it came
                log.exception("pressed_label_failed")
                shown = text
            try:
                self.board.post_in_thread(handoff, f"{OTHER_MEMBER} {shown}" if other_member else shown)
            except OpsUnreachable as exc:  # the channel archived, or the bot removed, mid-handoff
                self._unreachable(handoff_id, exc)
                return
            with self._pending_lock:
                queue = self._pending_relays.get(handoff_id)
                if queue:
                    queue.pop(0)

    def _file(self, reply_id: str) -> None:
        """File a reply for review (:meth:`ReviewService.file_reply`) and post each open item it
        created or grew that was never posted (:meth:`_post_item`, within the review-post limit).
        Each post is tried again on its own if the database fails, so that one failing neither
        skips the others nor, this job being retried, files or posts anything twice."""
        try:
            items = self.review.file_reply(reply_id)
        except Exception:
            if self.store.conversations.exists(reply_id):
                raise
            # The customer erased their conversation meanwhile (a trial deleted it 40 ms after a
            # handoff, and the filing failed on the gone reply, logged as an error): nothing to file.
            log.info("review_filing_skipped", extra={"fields": {"reason": "reply erased"}})
            return
        for item in items:
            if item.status == ReviewStatus.OPEN:
                self._retrying(self._post_item, item, False, True)

    def _after_correction(self, correction: Correction) -> None:
        """An operator corrected a message to an intent: propose messages that share its need (on
        the worker: reading the log takes a moment, the operator's click must not wait)."""
        if self.board is not None and correction.label and correction.origin_id is None:
            self._later(self._post_proposals, correction)

    def _post_proposals(self, correction: Correction) -> None:
        proposals = self.review.propose(correction.id)
        if proposals and self.board is not None:
            self.board.post_proposals(correction, proposals)

    def _post_item(self, item: ReviewItem, again: bool = False, limited: bool = False) -> None:
        """Post review ``item`` to the ops board, once: not when it was posted before, here or on
        another replica, or is settled (the store's claim decides,
        :meth:`~bot.storage.review.ReviewRepository.claim_post`). ``again``: an operator asked for
        the queue, so it is posted whether or not it was before (and counts as posted from then on).
        ``limited``: only within the review-post limit (:meth:`bot.abuse.AbuseLimits.review_post`);
        beyond it the item waits in the queue (``teller review``, ``/teller review``) and is posted
        when it is next filed, if there is room then. When the ops channel refuses the post, the
        claim is given back (the item may be posted when it is next filed) and the error raised; a
        post that reached Slack though its call failed (a timeout) may so be posted twice."""
        board = self.board
        if board is None:
            return
        claimed = self.store.review.claim_post(item.id)
        if not claimed and not again:
            return
        if limited and not self.limits.review_post():  # a burst: the item waits in the queue
            self._release_post(item.id)
            log.warning("review_post_deferred", extra={"fields": {"item": item.id}})
            return
        try:
            board.post_review(item, self.review.labels())
        except BaseException:
            if claimed:
                self._release_post(item.id)
            raise

    def _release_post(self, item_id: int) -> None:
        """Give back the claim of an item not posted after all (best effort: logged if it fails,
        and the item then waits in the queue for an operator's ``/teller review``)."""
        try:
            self.store.review.release_post(item_id)
        except StoreError as exc:
            log.error("review_post_unclaimed", extra={"fields": {"item": item_id, "error": str(exc)[:300]}})

    def _send(self, handoff: Handoff, reply: Outgoing, kind: DeliveryKind) -> Sent | None:
        """Deliver to the handoff's customer; None for the web chat (it polls for its messages)."""
        transport = self.transports.get(handoff.channel)
        if transport is None:
            if handoff.channel != "web":  # the web chat polls for its messages; the others are pushed
                raise InputError(f"cannot reach {handoff.channel} customers: that channel is not running")
            return None
        return self.courier.send(transport, handoff.customer_chat_id, reply, reply.message_id, kind)
