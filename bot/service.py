"""The application façade: the one service every channel calls.

Web, REST, Telegram, Slack (HTTP and Socket Mode) and the terminal translate their platform's
updates into the calls below and render what comes back; nothing else in an adapter decides.

- **Customers**: :meth:`TellerService.message` routes a message (a product manager's interview, a
  customer in a handoff, or the answer policy), stores it, and delivers the reply through the
  channel's :class:`~bot.delivery.Transport` with its delivery state recorded. A redelivered message
  gets the reply it got the first time, sent again only if it never arrived. :meth:`feedback` takes
  a verdict on a reply; a feedback value sent as a message's text (``feedback:helpful``) is that
  verdict on the customer's latest answer (:meth:`feedback_message`), never a question. A reply the
  platform finally refuses is filed for review.
  Pressing "Book an adviser call" under an advice reply hands off like "talk to a person" and
  records the outcome ``adviser_call_booked`` on that reply; a bank's backend records other outcomes
  (:meth:`record_outcome`, ``POST /api/outcomes``).
- **Operators**: replies in a handoff thread, flags, the review queue's actions, closing handoffs
  and retraining, each checked against the operator list in one place (the ops desk and the review
  service raise :class:`bot.errors.NotAuthorised`).
- **Product managers**: interview commands and briefs.

Every customer message passes the abuse limits (:mod:`bot.abuse`) and the one length cap
(:data:`bot.core.MAX_TEXT`) here, whether the answer policy takes it or it is relayed to operators in
a handoff.

Errors: :class:`bot.errors.InputError` (unusable input), :class:`bot.errors.NotFound` (an id that is
unknown or not the customer's: the same words either way), :class:`bot.errors.Conflict` (feedback
given twice), :class:`bot.errors.RateLimited`, :class:`bot.errors.NotAuthorised`,
:class:`bot.errors.StoreError`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from bot.abuse import BUSY, AbuseLimits
from bot.choices import (
    ADVISER_CHOICE,
    FEEDBACK_HELPFUL,
    FEEDBACK_NOT_HELPFUL,
    FEEDBACK_PREFIX,
    is_feedback_form,
)
from bot.choices import helpful as verdict_of
from bot.core import FEEDBACK_TURN, TELLER_TURNS, Incoming, Outgoing, TellerCore, message_text, split_warning
from bot.core import UNSTAFFED as UNSTAFFED  # re-exported: what a handoff says without an ops channel
from bot.delivery import Courier, Sent, Transport
from bot.errors import Conflict, DeliveryError, InputError, NotFound, NotRateable, NotTheAsker, RateLimited
from bot.operators import Actor
from bot.ops_desk import CLOSED_NOTICE, IDLE_ACTOR, UNREACHABLE_ACTOR, UNREACHABLE_NOTICE, expiry_notice
from bot.policy import Route
from bot.stages import timed
from bot.storage import (
    HUMAN_ROUTE,
    TELLER_AUTHOR,
    Delivery,
    DeliveryKind,
    Direction,
    Feedback,
    Outcome,
    ReviewItem,
    StoredMessage,
    StoreError,
)
from bot.storage.outcomes import ADVISER_CALL_BOOKED, BACKEND_SOURCE, NO_SUCH_ANSWER
from bot.text import clean
from retrieval.errors import EntryNotFoundError

if TYPE_CHECKING:
    from bot.knowledge import Overlap
    from bot.ops_desk import OpsDesk
    from bot.positioning_desk import PositioningDesk
    from bot.review import Resolution
    from bot.storage import Decided, Handoff
    from retrieval.entry import KBEntry

log = logging.getLogger(__name__)

#: The route of the acknowledgement of feedback sent as a message's text (:meth:`TellerService.
#: feedback_message`): not a stored reply; its ``message_id`` is the reply the feedback is about.
FEEDBACK_ROUTE = "feedback"
#: Routes whose replies are not customer messages of the store (an interview's prompts, the
#: acknowledgement of feedback sent as text).
UNSTORED_ROUTES = frozenset({"interview", FEEDBACK_ROUTE})
#: The one answer to feedback on a reply that is unknown, another customer's, or not Teller's.
NO_SUCH_REPLY = "no reply of Teller's with that id in this conversation"
#: Feedback pressed in a shared chat on an answer Teller gave another member (:class:`NotTheAsker`).
ONLY_THE_ASKER = "only the person who asked can rate this answer"
#: Feedback sent as text before Teller answered anything in the conversation (HTTP 404).
NO_REPLY_TO_RATE = "there is no answer of Teller's to give feedback on in this conversation yet"
#: Feedback on a reply of Teller's that offered no feedback buttons (a clarifying question, a
#: handoff, small talk): :class:`NotRateable`, HTTP 409, as the reply is the customer's but is not
#: rated.
NOT_RATEABLE = (
    "that reply cannot be rated: only Teller's answers that offered feedback are (not a clarifying "
    "question, a handoff or small talk)"
)
#: A ``feedback:<word>`` value Teller never offers (HTTP 400); the value itself is not echoed.
UNKNOWN_FEEDBACK = (
    f"that is not a feedback value of Teller's: send {FEEDBACK_HELPFUL} or {FEEDBACK_NOT_HELPFUL}"
)
#: What the customer is told for a verdict, "helpful" (True) or not (False), by button or as text.
FEEDBACK_THANKS = {True: "Thanks for the feedback!", False: "Thanks, we'll use this to improve."}
#: What a customer is told who sends a photo, a file or anything else without words during a handoff
#: (the operators read that they did): Teller passes only words on, which it can redact.
ATTACHMENT_IN_HANDOFF = (
    "I can't pass photos or files on to our team. Please describe what it shows in words: they are "
    "reading this conversation."
)
#: What a customer in a handoff is told of a photo or file sent with words (the words went on).
ATTACHMENT_WITH_WORDS = (
    "I've passed your message on, but I can't pass photos or files to our team. If it shows something "
    "they need, please describe it in words."
)


@dataclass(frozen=True)
class Relayed:
    """Operators' messages a customer fetched, and whether the handoff is still open."""

    messages: tuple[StoredMessage, ...]
    handoff_open: bool
    #: What to tell the customer when no handoff is open: why the last one closed (an operator
    #: closed it, or nobody replied in time); None for an unknown customer.
    notice: str | None = None


class TellerService:
    """What channels call. Thread-safe; blocking (async adapters call it in a worker thread)."""

    def __init__(
        self,
        core: TellerCore,
        desk: PositioningDesk | None = None,
        ops: OpsDesk | None = None,
        courier: Courier | None = None,
        limits: AbuseLimits | None = None,
    ) -> None:
        self.core = core
        self.desk = desk
        self.ops = ops
        self.courier = courier or (ops.courier if ops is not None else Courier(core.store.deliveries))
        #: Shared with the ops desk (handoff caps, review posts); the defaults when neither has any.
        self.limits = limits or (ops.limits if ops is not None else AbuseLimits())

    # ------------------------------------------------------------------------------ customers

    def handle(self, incoming: Incoming, private: bool = False) -> Outgoing:
        """Route and answer one message; the reply is stored, not sent (the web chat returns it in
        its HTTP response). ``private``: it came in a one-to-one conversation with Teller (a DM).

        Raises :class:`InputError` (empty, or longer than :data:`bot.core.MAX_TEXT`) and
        :class:`RateLimited` (over an abuse limit; nothing is stored). A redelivered message is
        answered as the first time, counting one unit of the limits (a new one counts its
        classifier windows, :meth:`TellerCore.message_cost`). Pressing "Book an adviser call"
        (:data:`~bot.choices.ADVISER_CHOICE`) also records the outcome ``adviser_call_booked`` on the
        customer's latest reply that offered the button (:meth:`book_adviser_call`), where someone
        can take the call (:attr:`staffed`; without an ops channel no reply offers it), and not when
        the handoff was refused at a cap (:data:`BUSY`). A redelivered press books it too, on the
        same reply: a replica that stored the press and stopped before booking leaves the booking
        to the redelivery, and booking again records nothing new (once per reply, on any replica)."""
        staffed = self.staffed
        if incoming.linked is not None:
            incoming = self._asked_by_link(incoming)
        reply = self._handle(incoming, private, staffed)
        if (
            staffed
            and incoming.text.strip() == ADVISER_CHOICE
            and reply.route not in UNSTORED_ROUTES
            # A redelivery too: the replica that stored the press may have died before booking. The
            # booking is idempotent (a unique index on the reply and the outcome's name decides,
            # across replicas) and lands on the reply the press came under (``before``), as the
            # first time.
            and not reply.text.endswith(BUSY)  # turned away at a handoff cap: no call was booked
        ):
            self.book_adviser_call(incoming, reply)
        if not staffed and reply.route not in UNSTORED_ROUTES:
            # Nobody can take over here (no ops channel): the core stored what is said (UNSTAFFED, in
            # the customer's language after a handoff for it; small talk that offers no person; no
            # button for a person); a reply stored before it knew, replayed, is told the same.
            if reply.route == Route.HANDOFF.value:
                log.warning("handoff_unstaffed", extra={"fields": {"channel": incoming.channel}})
            reply = self.core.as_unstaffed(reply)
        return reply

    @property
    def staffed(self) -> bool:
        """Whether a person can take a handed-off conversation over (an ops channel is configured)."""
        return self.ops is not None and self.ops.board is not None

    def book_adviser_call(self, incoming: Incoming, reply: Outgoing) -> Outcome | None:
        """Record ``adviser_call_booked`` on the latest reply of the customer's that offered the
        adviser button before ``reply`` (the answer to the press; so the advice reply it was pressed
        under). Idempotent: once per reply, so a redelivery, on this replica or another, records
        nothing new, and books what a replica that stopped before booking left undone. A store
        failure is logged, never raised: the customer's handoff has been answered already. Returns
        the outcome (the one recorded earlier, if any); None when no recent reply offered the button
        (the value typed) or the store failed."""
        try:
            booked = self.core.store.outcomes.book(
                incoming.channel,
                incoming.user_id,
                ADVISER_CHOICE,
                ADVISER_CALL_BOOKED,
                before=reply.message_id,
            )
        except (StoreError, InputError) as exc:
            log.error(
                "outcome_not_recorded",
                extra={"fields": {"outcome": ADVISER_CALL_BOOKED, "error": repr(exc)[:300]}},
            )
            return None
        if booked is None:
            return None
        outcome, new = booked
        if new:
            log.info(
                "outcome_recorded",
                extra={"fields": {"message_id": outcome.message_id, "outcome": outcome.name}},
            )
        return outcome

    def record_outcome(
        self,
        name: str,
        actor: str,
        message_id: str | None = None,
        customer: tuple[str, str] | None = None,
    ) -> tuple[Outcome, bool]:
        """A bank's backend records business outcome ``name`` (a short slug) on one of Teller's
        answers: ``message_id``, or without it the latest answer to ``customer`` (channel, stored user
        id); with both, the answer must be that customer's. Audited under ``actor`` when new.
        Returns the outcome and whether it is new (recording it again changes nothing).

        Raises :class:`InputError` (a malformed name, or neither reply nor customer named) and
        :class:`NotFound` (not one of Teller's answers, or not the customer's: the same words)."""
        outcomes = self.core.store.outcomes
        if message_id is None and customer is None:
            raise InputError(
                "name the reply (message_id) or the customer (X-Teller-Customer) the outcome is about"
            )
        if message_id is None:
            assert customer is not None
            message_id = outcomes.latest_answer(*customer).id
        elif customer is not None:
            answer = outcomes.answer(message_id)
            if (answer.channel, answer.user_id) != customer:
                raise NotFound(NO_SUCH_ANSWER)
        return outcomes.record(message_id, name, BACKEND_SOURCE, actor=actor)

    def _handle(self, incoming: Incoming, private: bool, staffed: bool) -> Outgoing:
        if private and self.desk is not None:
            earlier = self.desk.replay(incoming)  # an interview message seen before: same reply
            if earlier is not None:
                return earlier
        if is_feedback_form(clean(incoming.text).strip()):
            # A feedback button's value sent back as text: a verdict on the latest answer, never a
            # question, an interview's answer or words for the operator of an open handoff.
            return self.feedback_message(incoming)
        if private and self.desk is not None and self.desk.wants(incoming):
            return self.desk.converse(incoming)
        incoming = replace(incoming, text=message_text(incoming.text))
        # A redelivery (or a retry that reached another replica) gets what was answered the first
        # time, whatever has happened since (a handoff opened meanwhile, say).
        replayed = self.core.replay(incoming)
        # One cap and one set of limits for every path: the answer policy, a handoff's relay and a
        # resent message alike. A resent one costs a unit (resending cannot get past the limits), a
        # new one what reading it costs (its classifier windows).
        with timed("limits"):
            cost = 1 if replayed is not None else self.core.message_cost(incoming.text)
            self.limits.message(incoming.channel, incoming.user_id, incoming.origin, incoming.anonymous, cost)
        if replayed is not None:
            if self.ops is not None and not replayed.silent:
                # Finishes what a crash may have cut short, under the same caps as the first time: a
                # retry of a handoff refused at capacity is refused again (and told so again).
                return self._after_reply(incoming, replayed, waiting=False)
            return replayed
        if self.ops is not None and (relayed := self.ops.relay_in(incoming)) is not None:
            if relayed.duplicate:
                # A retry that raced its first attempt past the replay above: judged as a replay now
                # that the first is stored (the same words: its id; other words: Conflict, a 409).
                return self.core.replay(incoming) or relayed
            return relayed
        reply = self.core.handle(incoming, replayed=False, staffed=staffed)
        return reply if self.ops is None else self._after_reply(incoming, reply, waiting=True)

    def _after_reply(self, incoming: Incoming, reply: Outgoing, waiting: bool) -> Outgoing:
        """The ops desk's part after a reply: a handoff opened if the caps allow (judged and opened
        as one step on this replica), the reply filed for review if it qualifies. Returns what the
        customer is told: with the expected wait (``waiting``) when a handoff opened, the busy notice
        when a cap refused one."""
        assert self.ops is not None
        with self.ops.handoff_gate(reply):
            may_open = self.ops.may_open_handoff(incoming, reply)
            opened = self.ops.after_reply(incoming, reply, open_handoff=may_open)
        if opened is not None and waiting:
            # Handed to a person: say roughly how long they wait, and when Teller takes over again.
            return replace(reply, text=f"{reply.text}\n\n{self.ops.waiting_notice()}")
        if opened is None and not may_open:
            # No person can take it now (a cap was reached); a warning about a secret stays first.
            return replace(reply, text=split_warning(reply.text)[0] + BUSY)
        return reply

    def _asked_by_link(self, incoming: Incoming) -> Incoming:
        """A link's message as the customer asking its entry's first question (what review, a
        handoff's operators and positioning read); as it came when there is no such entry."""
        try:
            question = self.core.policy.kb.get(incoming.linked or "").questions[0]
        except (EntryNotFoundError, IndexError):
            return incoming
        return replace(incoming, text=question)

    def message(
        self,
        incoming: Incoming,
        transport: Transport[Any],
        address: str | None = None,
        private: bool = False,
    ) -> Outgoing:
        """Answer one message and deliver the reply through ``transport``: to ``address`` (where a
        threaded reply goes, e.g. the Slack thread of the message) when the reply is threaded, else
        to the conversation itself (``incoming.conversation_id`` is always an address its channel
        can deliver to: operators' relays use it too). A replayed reply is sent again only if it
        was never delivered. A customer over an abuse limit gets one notice a minute and no answer
        (a silent reply is returned)."""
        try:
            reply = self.handle(incoming, private)
        except RateLimited as exc:
            if self.limits.first_notice(incoming.channel, incoming.user_id):
                self._notify(transport, incoming.conversation_id, str(exc))
            return Outgoing(f"limited:{incoming.message_id}", "", route="limited", silent=True)
        if not reply.silent:
            target = address if address is not None and reply.threaded else incoming.conversation_id
            self.deliver(reply, transport, target)
        return reply

    def deliver(
        self,
        reply: Outgoing,
        transport: Transport[Any],
        address: str,
        kind: DeliveryKind = DeliveryKind.REPLY,
    ) -> Sent:
        """Send a reply; a stored reply's delivery state is recorded, and one the platform finally
        refused is filed in the review queue (reason ``undelivered``)."""
        stored = reply.route not in UNSTORED_ROUTES and kind == DeliveryKind.REPLY
        if stored:
            record: str | None = reply.message_id
        else:  # an interview's reply: recorded per platform message, when it answers one
            record, kind = reply.turn, DeliveryKind.NOTICE
        sent = self.courier.send(transport, address, reply, record, kind)
        if stored and sent.platform_ids and self.ops is not None:
            # A reaction on the post (the part with the buttons, the last) finds the reply again.
            self.core.store.conversations.set_platform_id(reply.message_id, sent.platform_ids[-1])
        if stored and not sent.delivered and not sent.skipped and self.ops is not None:
            self.ops.undelivered(reply.message_id)
        return sent

    def _notify(self, transport: Transport[Any], address: str, text: str) -> None:
        """Post a notice that is not a stored reply (best effort: not retried, not recorded)."""
        notice = Outgoing("notice", text, route="limited", threaded=False)
        try:
            for part in transport.parts(address, notice):
                transport.post(address, part)
        except DeliveryError as exc:
            log.warning("notice_not_sent", extra={"fields": {"reason": exc.reason[:200]}})

    def resume(self, delivery: Delivery, transport: Transport[Any]) -> bool:
        """Finish a stale pending delivery, whose sender stopped mid-way (a replica that crashed or
        was restarted while sending; see :class:`bot.recovery.DeliveryRecovery`). A reply or an
        operator's relay is sent again as it was written (the outbox keeps the text until it is
        delivered), from its first part not yet accepted; a notice is not stored, so it is marked
        failed and the operators are told in the handoff's thread. False when another replica took
        it first."""
        store = self.core.store
        if delivery.kind in (DeliveryKind.REPLY, DeliveryKind.RELAY):
            if delivery.kind == DeliveryKind.REPLY:
                reply = self.core.stored_reply(delivery.message_id)
            else:
                relay = store.conversations.message(delivery.message_id)
                text = store.outbox.text(relay.id) or relay.text
                reply = Outgoing(relay.id, text, route=HUMAN_ROUTE, threaded=False)
            sent = self.courier.send(transport, delivery.address, reply, delivery.message_id, delivery.kind)
            if sent.skipped:
                return False
            if not sent.delivered and self.ops is not None:
                if delivery.kind == DeliveryKind.REPLY:
                    self.ops.undelivered(delivery.message_id)
                else:
                    self.ops.relay_interrupted(delivery.channel, delivery.address, delivery.message_id)
            return True
        if not store.deliveries.claim(delivery):
            return False
        reason = "interrupted: the replica sending it stopped, and a notice is not stored"
        store.deliveries.failed(delivery.message_id, reason, 0, list(delivery.platform_ids))
        # Teller's own notices (an interview's turn, a thank-you for feedback) are no operator's
        # words: telling the handoff's thread that a message of theirs may be lost would mislead.
        if self.ops is not None and not delivery.message_id.startswith(TELLER_TURNS):
            self.ops.relay_interrupted(delivery.channel, delivery.address)
        return True

    def feedback_message(self, incoming: Incoming) -> Outgoing:
        """A feedback value sent as a message's text (``feedback:helpful``, ``feedback:not_helpful``:
        a pressed button's value, posted back as text by a REST client or a platform, as every other
        choice's is): the customer's verdict on Teller's latest answer to them in this conversation
        that offered feedback buttons (a greeting's or a handoff's reply is never rated), recorded
        as :meth:`feedback` records a button's (once per answer; "not helpful" filed for review), and
        acknowledged with :data:`FEEDBACK_THANKS` on route :data:`FEEDBACK_ROUTE`. The
        acknowledgement is not stored; its ``message_id`` is the answer the feedback is about.
        Nothing is classified, stored as the customer's message, or relayed to an operator. It
        counts one unit of the abuse limits, as a message does.

        The same platform message again (a redelivery, or a retry with the same
        ``client_message_id``, reaching any replica) gets the same acknowledgement, marked
        ``duplicate``, and records nothing.

        Raises :class:`InputError` (:data:`UNKNOWN_FEEDBACK`: ``feedback:<word>`` that Teller never
        offers, e.g. ``feedback:xyz``), :class:`NotFound` (:data:`NO_REPLY_TO_RATE`: Teller has not
        answered this customer in this conversation yet), :class:`Conflict` (that answer has
        feedback already, or the message id came before with other words) and
        :class:`RateLimited`."""
        incoming = replace(incoming, text=message_text(incoming.text))
        # The id used before for a message stored as a question: Conflict if it had other words; the
        # answer it got if it was this value (stored so before Teller read feedback values as such).
        earlier = self.core.replay(incoming)
        with timed("limits"):
            self.limits.message(incoming.channel, incoming.user_id, incoming.origin, incoming.anonymous, 1)
        if earlier is not None:
            return earlier
        verdict = verdict_of(incoming.text)
        if verdict is None:
            raise InputError(UNKNOWN_FEEDBACK)
        feedback = self.core.store.feedback
        platform = (incoming.channel, incoming.message_id) if incoming.message_id else None
        if platform is not None and (given := feedback.by_platform(*platform)) is not None:
            return _thanks(incoming, given, verdict, duplicate=True)
        answer = self.core.store.conversations.latest_answer(
            incoming.channel, incoming.conversation_id, incoming.user_id, offering=FEEDBACK_PREFIX
        )
        if answer is None:
            raise NotFound(NO_REPLY_TO_RATE)
        try:
            entry = self.feedback(answer.id, verdict, None, incoming.user_id, incoming.channel, platform)
        except Conflict:
            # The same message taken by another replica (or thread) a moment ago: its record stands.
            given = feedback.by_platform(*platform) if platform is not None else None
            if given is None:
                raise  # feedback on that answer was given before, by a button or another message
            return _thanks(incoming, given, verdict, duplicate=True)
        return _thanks(incoming, entry, verdict, duplicate=False)

    def feedback(
        self,
        message_id: str,
        helpful: bool,
        comment: str | None = None,
        user_id: str | None = None,
        channel: str | None = None,
        platform: tuple[str, str] | None = None,
        shared: bool = False,
        speaking_as: str | None = None,
        post: str | None = None,
    ) -> Feedback:
        """A customer's verdict on one of Teller's replies, once per reply; "not helpful" is filed for
        review (at most ``TELLER_LIMIT_REVIEW_FILINGS`` a customer: beyond, the verdict is kept and
        files nothing). With ``channel`` (every customer-facing adapter passes it), the reply must be
        Teller's own answer to that ``user_id`` on that channel. ``platform``: the channel and id of
        the message that carried the verdict as its text (:meth:`feedback_message`). ``shared``: the
        press came from a chat whose members all see the reply (a Telegram group, a Slack channel);
        ``speaking_as``: there, the id of that chat, which its anonymous administrators speak as
        (their answer is theirs to rate, though each press names the person); ``post``: the
        platform id of the post pressed, which must be the reply for :class:`NotTheAsker` (else a
        forged press naming another chat's answer would learn that the id exists).

        Raises :class:`NotFound` (:data:`NO_SUCH_REPLY`: the reply is unknown, another customer's,
        or an operator's; the same words for each), with ``shared`` :class:`NotTheAsker`
        (:data:`ONLY_THE_ASKER`: Teller's answer there to another member) and
        :class:`bot.errors.Conflict` (feedback on this reply was given before) and, with
        ``channel``, :class:`bot.errors.NotRateable` (a Conflict, :data:`NOT_RATEABLE`: the reply
        offered no feedback buttons)."""
        if channel is not None:
            conversations = self.core.store.conversations
            reply = conversations.message(message_id) if conversations.exists(message_id) else None
            if (
                reply is None
                or reply.direction != Direction.OUT
                or reply.route in (None, HUMAN_ROUTE)
                or reply.channel != channel
            ):
                raise NotFound(NO_SUCH_REPLY)
            if reply.user_id != user_id and not (shared and speaking_as and reply.user_id == speaking_as):
                # In a shared chat, on the reply's own post, the press says nothing the chat does
                # not show (a trial's group member was told "That answer is no longer on record";
                # on Slack, nothing).
                seen = shared and post is not None and reply.platform_id == post
                raise NotTheAsker(ONLY_THE_ASKER) if seen else NotFound(NO_SUCH_REPLY)
            if not any(value.startswith(FEEDBACK_PREFIX) for _, value in reply.choices):
                raise NotRateable(NOT_RATEABLE)
        entry = self.core.feedback(message_id, helpful, comment, user_id, platform)
        if self.ops is not None and (
            helpful or channel is None or self.limits.review_filing(channel, user_id or "")
        ):
            self.ops.after_feedback(message_id, helpful)
        return entry

    def relayed(self, channel: str, conversation: str, after: str | None = None, limit: int = 200) -> Relayed:
        """For a channel whose customers fetch their messages (the web chat polls during a
        handoff): the operators' messages after the message ``after``, or without it (or with an id
        not of this conversation) since the latest handoff opened (oldest first, at most
        ``limit``; Teller's own warnings, which answered the message that brought them, left
        out), each recorded as delivered now that it is fetched, and whether a person still handles
        the conversation."""
        store = self.core.store
        conversation_id = store.conversations.conversation_id(channel, conversation)
        if conversation_id is None:
            return Relayed((), False)  # an unknown customer has nothing to be told
        conversations = store.conversations
        seen = conversations.message(after) if after and conversations.exists(after) else None
        since = seen.created_at if seen is not None and seen.conversation_id == conversation_id else None
        latest = store.handoffs.latest(conversation_id)
        if since is None and latest is not None:
            # From the latest handoff's start: a page reloaded during one shows what the operators
            # said in it (a reviewer's finding: it polled after the customer's next message, and
            # every operator message before that was lost to it), not earlier handoffs' words.
            since = _just_before(latest.opened_at)
        messages = tuple(
            m
            for m in conversations.messages_since(
                conversation_id, since, limit=limit, direction=Direction.OUT, route=HUMAN_ROUTE
            )
            # Teller's own warning was the answer to the message that brought it (the HTTP response)
            if m.author != TELLER_AUTHOR
        )
        # The operator's words as written (the stored copy is redacted), while they are on their way.
        written = store.outbox.texts([m.id for m in messages])
        messages = tuple(replace(m, text=written.get(m.id, m.text)) for m in messages)
        for message in messages:
            delivery = store.deliveries.begin(message.id, DeliveryKind.RELAY, channel, conversation)
            if not delivery.delivered:
                store.deliveries.delivered(message.id, [message.id], attempts=1)
        if store.handoffs.active_for(channel, conversation) is not None:
            return Relayed(messages, True)
        latest = store.handoffs.latest(conversation_id)  # (again: it may have closed meanwhile)
        if latest is None:  # never handed to a person: nothing was closed
            return Relayed(messages, False)
        if since is not None and latest.closed_at is not None and latest.closed_at < since:
            return Relayed(messages, False)  # closed before what the page saw: told then
        if latest.closed_by == IDLE_ACTOR:
            notice = expiry_notice(store, latest.id)
        elif latest.closed_by == UNREACHABLE_ACTOR:
            notice = UNREACHABLE_NOTICE  # no colleague ever saw it: none "closed" it
        else:
            notice = CLOSED_NOTICE
        return Relayed(messages, False, notice=notice)

    def attachment(
        self, channel: str, conversation_id: str, user_id: str, kind: str, with_words: bool = False
    ) -> str | None:
        """A customer sent something Teller does not read (``kind``: "a photo", "a file"...): during
        an open handoff its operators are told (nothing of it is stored or passed on: no redaction
        reads a picture) and :data:`ATTACHMENT_IN_HANDOFF` is what the customer is told; None
        otherwise (the channel says what it says to anything it cannot read). ``with_words``: it came
        with words (a caption), handled first as a message of their own; the customer is told
        :data:`ATTACHMENT_WITH_WORDS`. Without words each counts as a message of the abuse limits:
        beyond them, "" (nothing is said, and the operators are not told)."""
        if self.ops is None or self.ops.board is None:
            return None
        handoff = self.core.store.handoffs.active_for(channel, conversation_id)
        if handoff is None:
            return None
        if not with_words:  # (the words were counted as the message they are)
            try:
                self.limits.message(channel, user_id)
            except RateLimited:
                return ""
        self.ops.attachment_in(handoff, kind, with_words)
        return ATTACHMENT_WITH_WORDS if with_words else ATTACHMENT_IN_HANDOFF

    def operator_attachment(self, ops_channel: str, thread_ts: str, actor: Actor) -> None:
        """An operator attached a file in a handoff's thread: not passed on, and they are told so
        (:class:`bot.errors.NotAuthorised` for someone who is not an operator)."""
        self._desk().operator_attachment(ops_channel, thread_ts, actor)

    def operator_edited(self, ops_channel: str, thread_ts: str, actor: Actor, deleted: bool = False) -> None:
        """An operator edited (``deleted``: deleted) a message in an ops thread; see
        :meth:`bot.ops_desk.OpsDesk.operator_edited`."""
        self._desk().operator_edited(ops_channel, thread_ts, actor, deleted)

    def thread_message(self, incoming: Incoming, transport: Transport[Any], address: str) -> Outgoing | None:
        """A message in a channel thread that does not name Teller (a Slack channel's thread, say):
        during an open handoff of that thread's conversation it is the customer's (or another
        member's) words for the operators, relayed as :meth:`message` relays them; otherwise it is
        the channel's own chatter, neither stored nor answered (None)."""
        if (
            self.ops is None
            or self.core.store.handoffs.active_for(incoming.channel, incoming.conversation_id) is None
        ):
            return None
        return self.message(incoming, transport, address)

    def conversation_moved(self, channel: str, old: str, new: str) -> bool:
        """A platform conversation goes on under a new id (a Telegram group upgraded to a
        supergroup): its history, its open handoff and the choices Teller offered in it follow
        (:meth:`bot.storage.ConversationRepository.move`). False when nothing moved: no conversation
        under ``old``, or one under ``new`` already (the supergroup's first message came first)."""
        moved = self.core.store.conversations.move(channel, old, new)
        fields = {"channel": channel, "from": old, "to": new}
        log.info("conversation_moved" if moved else "conversation_not_moved", extra={"fields": fields})
        return moved is not None

    def address_of_post(self, channel: str, platform_id: str) -> str | None:
        """Where the conversation of Teller's post with this platform id is (the chat, or its forum
        topic), for a press on a message the platform no longer shows in full (Telegram's
        ``InaccessibleMessage``, which carries the chat but not the topic); None if unknown."""
        return self.core.store.conversations.address_of_post(channel, platform_id)

    def choice_value(self, message_id: str, index: int) -> str:
        """The value of the ``index``-th choice offered with a stored reply (for platforms whose
        buttons cannot carry the value itself). Raises :class:`InputError`."""
        conversations = self.core.store.conversations
        if not conversations.exists(message_id):
            raise InputError("that message is no longer on record")
        choices = conversations.message(message_id).choices
        if not 0 <= index < len(choices):
            raise InputError("that choice is no longer offered")
        return choices[index][1]

    # ------------------------------------------------------------------------------ operators

    def _desk(self) -> OpsDesk:
        if self.ops is None:
            raise InputError("the operators' desk is not running")
        return self.ops

    def operator_reply(
        self, ops_channel: str, thread_ts: str, actor: Actor, text: str, platform_id: str
    ) -> bool:
        """An operator wrote in an ops thread: relayed to the customer when the thread is an open
        handoff (True); reported as not delivered in the thread when that customer was erased
        (True); False for ordinary chatter."""
        return self._desk().operator_reply(ops_channel, thread_ts, actor, text, platform_id)

    def flag(self, message_id: str, reason: str | None, actor: Actor) -> ReviewItem | None:
        """Flag one of Teller's replies; the review item it is filed under, None when there is
        nothing to review (:data:`bot.review.NOTHING_TO_REVIEW`)."""
        return self._desk().flag(message_id, reason, actor)

    def flag_post(self, channel: str, platform_id: str, actor: Actor) -> ReviewItem | None:
        """Flag one of Teller's posts by its platform id (a reaction on it); None if it is not one."""
        return self._desk().flag_post(channel, platform_id, actor)

    def post_review_queue(self, actor: Actor, limit: int = 10) -> int:
        """Post the open review items to the ops board; returns how many."""
        ops = self._desk()
        ops.operators.require(actor.channel, actor.user_id, "review the queue")
        if ops.board is None:
            raise InputError(
                "no ops channel is configured (TELLER_OPS_CHANNEL); use `teller review` in a terminal"
            )
        return ops.post_open_items(limit)

    def item_to_correct(self, item_id: int, actor: Actor) -> ReviewItem:
        """The review item an operator is about to write the right answer for."""
        ops = self._desk()
        ops.operators.require(actor.channel, actor.user_id, "correct answers")
        return ops.review.item(item_id)

    def confirm(self, item_id: int, actor: Actor) -> Resolution:
        return self._desk().review.confirm(item_id, actor)

    def choose(self, item_id: int, intent: str, actor: Actor) -> Resolution:
        return self._desk().review.choose(item_id, intent, actor)

    def ignore(self, item_id: int, actor: Actor) -> Resolution:
        return self._desk().review.ignore(item_id, actor)

    def wrong_answer(
        self, item_id: int, answer: str, actor: Actor, check_overlaps: bool = True
    ) -> Resolution:
        return self._desk().review.wrong_answer(item_id, answer, actor, check_overlaps)

    def entry_overlaps(self, entry: KBEntry) -> tuple[Overlap, ...]:
        """What an operator's new entry overlaps (:meth:`bot.review.ReviewService.overlaps`)."""
        return self._desk().review.overlaps(entry)

    def decide_proposals(self, confirm: list[int], reject: list[int], actor: Actor) -> Decided:
        """Confirm and reject proposals to correct stored messages like an earlier correction."""
        return self._desk().review.decide_proposals(confirm, reject, actor)

    def close_handoff(self, handoff_id: str, actor: Actor) -> Handoff:
        return self._desk().close_handoff(handoff_id, actor)

    def retrain(self, actor: Actor, mode: str = "continue") -> str:
        """Start a retrain from chat; returns what to tell the operator now."""
        return self._desk().start_retrain(actor, mode)

    # ------------------------------------------------------------------------------ lifecycle

    def close(self) -> None:
        if self.desk is not None:
            self.desk.close()
        if self.ops is not None:
            self.ops.close()


def _just_before(moment: str) -> str:
    """An ISO time that sorts just before ``moment`` (the store's ``...Z`` stamps compare as text), so
    that "stamped after it" includes ``moment`` itself."""
    return moment[:-1] if moment.endswith("Z") else moment


def _thanks(incoming: Incoming, entry: Feedback, verdict: bool, duplicate: bool) -> Outgoing:
    """The acknowledgement of feedback sent as text (:meth:`TellerService.feedback_message`),
    delivered once per platform message (its delivery recorded under ``turn``). Raises
    :class:`Conflict` when the message's id carried the other verdict the first time."""
    if entry.helpful != verdict:
        raise Conflict("this message id was used before for a different message; send it with a new id")
    turn = f"{FEEDBACK_TURN}{incoming.channel}:{incoming.message_id}" if incoming.message_id else None
    return Outgoing(
        entry.message_id,
        FEEDBACK_THANKS[entry.helpful],
        route=FEEDBACK_ROUTE,
        duplicate=duplicate,
        threaded=True,
        turn=turn,
    )
