"""Delivery: an outgoing message reaches the customer's platform, or somebody is told it did not.

A channel adapter implements :class:`Transport`: it renders an :class:`~bot.core.Outgoing` as the
platform messages it takes (split at the platform's limits, never cut) and posts one of them,
mapping the platform's errors once into :class:`bot.errors.DeliveryError`. The :class:`Courier`
does the rest, the same for every platform:

- the message is taken ``pending`` before the first platform call, by one sender at a time across
  replicas (:mod:`bot.storage.deliveries`); one delivered already, or in flight elsewhere, is not
  sent again;
- each part is posted in order; a transient failure (rate limit, 5xx, network) is retried with
  exponential backoff and jitter (tenacity), never shorter than the platform's Retry-After, for at
  most ``ATTEMPTS`` tries and ``PART_DEADLINE`` seconds (a Retry-After longer than what is left of
  them fails the part at once rather than post before it has passed); each accepted part is
  recorded, so a retry or a later send resumes after it and never duplicates what the customer
  has. A post that timed out may have arrived: it is retried all the same (at least once: a rare
  duplicate rather than a lost answer);
- state writes are retried through database blips (once the platform has a message, losing the
  record of it would send it again);
- the message ends ``delivered`` (with the platform's id of every part) or ``failed`` (with the
  platform's reason). A failed reply is filed in the review queue by the caller (reason
  ``undelivered``); a failed operator relay is reported in the operator's thread.

Rate limits are first handled by the platform libraries themselves where that holds up no other
conversation (slack_sdk's ``RateLimitErrorRetryHandler``; python-telegram-bot's ``AIORateLimiter``
paces requests, but its retries would hold every chat's, so a Telegram 429 comes here); the
courier's retries are for those, for what outlasts the library's and for server errors.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import regex  # type: ignore[import-untyped]
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential,
)
from tenacity.stop import stop_base

from bot.core import Outgoing
from bot.errors import DeliveryError
from bot.storage import DeliveryKind, DeliveryRepository, StoreError

log = logging.getLogger(__name__)

#: Tries per part, the first included (pauses ≈ 0.5, 1, 2, 4, 8 s with jitter, or Retry-After),
#: and the seconds after which a part is not tried again. Teller's choice: a customer waits about
#: half a minute for an answer that a briefly failing platform delays; past two minutes the reply
#: goes to a person (review queue) instead.
ATTEMPTS, PART_DEADLINE = 6, 120.0
#: Backoff: first pause and ceiling, in seconds. A Retry-After is waited out whole when it ends within
#: the part's deadline; one that outlasts it fails the part at once (never posted early).
BACKOFF_INITIAL, BACKOFF_MAX = 0.5, 20.0
#: Seconds a pending delivery stays its sender's without a touch (each attempt touches it); after
#: that a redelivery or :mod:`bot.recovery` takes it over. Longer than any live gap: one post waits
#: at most ``POST_TIMEOUT`` (Telegram, 120 s) and a pause at most ``PART_DEADLINE``.
LEASE = 300.0
#: Tries of a delivery-state write through a database blip.
STORE_ATTEMPTS = 4
T = TypeVar("T")
#: Platform-specific piece of a message (Telegram: text + keyboard; Slack: blocks + text).
Part = TypeVar("Part")


class Transport(Protocol, Generic[Part]):
    """One platform's side of delivery. ``address``: the conversation id the channel gave its
    :class:`~bot.core.Incoming` (a Telegram chat, a Slack ``channel:thread``)."""

    #: The channel's name (``telegram``, ``slack``).
    name: str

    def parts(self, address: str, outgoing: Outgoing) -> Sequence[Part]:
        """The platform messages that carry ``outgoing``, each within the platform's limits, in
        order. Raises :class:`DeliveryError` when the platform cannot take it at all."""
        ...

    def post(self, address: str, part: Part) -> str:
        """Post one part; return the platform's id of it. Raises :class:`DeliveryError`."""
        ...


@dataclass(frozen=True)
class Sent:
    """What one delivery did: the platform ids of the parts that got through, the attempts made,
    and the error that stopped it (None when every part was accepted). ``skipped``: nothing was
    sent because the message was delivered before or another sender has it right now."""

    platform_ids: tuple[str, ...]
    attempts: int
    error: DeliveryError | None = None
    skipped: bool = False

    @property
    def delivered(self) -> bool:
        return self.error is None


def _wait(state: RetryCallState) -> float:
    """Exponential backoff with jitter, but never less than the platform's Retry-After (one that
    outlasts the part's deadline stopped the retries first: :class:`_ToldToWaitTooLong`)."""
    backoff = min(BACKOFF_MAX, BACKOFF_INITIAL * 2 ** (state.attempt_number - 1))
    pause = random.uniform(backoff / 2, backoff)
    outcome = state.outcome
    error = outcome.exception() if outcome is not None else None
    if isinstance(error, DeliveryError) and error.retry_after:
        pause = max(pause, error.retry_after)
    return pause


def _transient(error: BaseException) -> bool:
    return isinstance(error, DeliveryError) and error.transient


class _ToldToWaitTooLong(stop_base):
    """A stop condition: the platform's Retry-After is longer than what is left of the part's
    ``deadline`` (seconds). Posting again before it has passed would be refused again and, on
    Telegram, lengthens the flood wait: the part fails at once instead (a reviewer's trial: a
    300 s ``retry_after`` was tried again at 60 and 120 s, then failed; a Retry-After of 61-119 s,
    which fits, is waited out whole, not cut to 60 s and posted early)."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline

    def __call__(self, state: RetryCallState) -> bool:
        outcome = state.outcome
        error = outcome.exception() if outcome is not None else None
        if not isinstance(error, DeliveryError) or not error.retry_after:
            return False
        left = self.deadline - (state.seconds_since_start or 0.0)
        return error.retry_after > left


class Courier:
    """Sends messages through a :class:`Transport` and records their delivery state. Thread-safe.

    ``attempts``: tries per part, and ``part_deadline``: seconds after which a part is not tried
    again; ``lease``: seconds a pending delivery nobody touched stays its sender's; ``sleep``: how
    pauses are taken (tests pass a recorder).
    """

    def __init__(
        self,
        deliveries: DeliveryRepository | None,
        attempts: int = ATTEMPTS,
        sleep: Callable[[float], None] | None = None,
        part_deadline: float = PART_DEADLINE,
        lease: float = LEASE,
    ) -> None:
        self.deliveries = deliveries
        self.attempts = attempts
        self.part_deadline = part_deadline
        self.lease = lease
        self._sleep = sleep

    def send(
        self,
        transport: Transport[Part],
        address: str,
        outgoing: Outgoing,
        message_id: str | None = None,
        kind: DeliveryKind = DeliveryKind.REPLY,
    ) -> Sent:
        """Deliver ``outgoing`` to ``address``.

        ``message_id``: the stored message this delivers (its delivery state is recorded; None for
        messages that are not stored, such as an interview's prompts). A message already
        ``delivered``, or being sent by another sender right now, is not sent (``Sent.skipped``);
        one sent partly before resumes after the parts the platform accepted. Never raises for the
        platform's refusal: the result says what happened. Raises
        :class:`bot.storage.StoreError` if the state cannot be recorded (after retries).
        """
        record = self.deliveries if message_id is not None else None
        accepted: list[str] = []
        if record is not None and message_id is not None:
            taken = self._store(record.take, message_id, kind, transport.name, address, self.lease)
            if taken is None:
                return Sent((), 0, skipped=True)
            accepted = list(taken.platform_ids)
        attempts = 0
        error: DeliveryError | None = None
        try:
            parts = list(transport.parts(address, outgoing))
        except DeliveryError as exc:  # nothing the platform can take (e.g. every part too big)
            parts, error = [], exc
        if len(accepted) > len(parts):  # rendered differently since: send it whole again
            accepted = []
        sent = list(accepted)
        for index, part in enumerate(parts[len(accepted) :], start=len(accepted)):
            retrying = Retrying(
                stop=stop_after_attempt(self.attempts)
                | stop_after_delay(self.part_deadline)
                | _ToldToWaitTooLong(self.part_deadline),
                wait=_wait,
                retry=retry_if_exception(_transient),
                reraise=True,
                sleep=self._sleep or time.sleep,
            )
            try:
                for attempt in retrying:
                    with attempt:
                        attempts += 1
                        if record is not None and message_id is not None and attempts > 1:
                            self._store(record.touch, message_id)  # alive: not stale
                        platform_id = transport.post(address, part)
            except DeliveryError as exc:
                error = exc
                break
            sent.append(platform_id)
            if record is not None and message_id is not None and index < len(parts) - 1:
                self._store(record.progress, message_id, sent)
        outcome = Sent(tuple(sent), attempts, error)
        fields = {
            "channel": transport.name,
            "message_id": message_id,
            "parts": len(sent),
            "resumed_after": len(accepted),
            "attempts": attempts,
        }
        if error is None:
            log.info("message_delivered", extra={"fields": fields})
        else:
            log.error("message_undelivered", extra={"fields": {**fields, "reason": error.reason[:300]}})
        if record is not None and message_id is not None:
            if error is None:
                self._store(record.delivered, message_id, sent, attempts)
            else:
                self._store(record.failed, message_id, error.reason, attempts, sent)
        return outcome

    def _store(self, write: Callable[..., T], *args: Any) -> T:
        """A delivery-state write, retried through a database blip: once the platform has a
        message, losing the record of it would send it again."""
        for attempt in Retrying(
            stop=stop_after_attempt(STORE_ATTEMPTS),
            wait=wait_exponential(multiplier=0.5, max=4),
            retry=retry_if_exception_type(StoreError),
            reraise=True,
            sleep=self._sleep or time.sleep,
        ):
            with attempt:
                return write(*args)
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover


# ---------------------------------------------------------------------------------- splitting

#: Where a long text may be split, best first: paragraphs, lines, sentence ends, spaces.
_BREAKS = (re.compile(r"\n\s*\n"), re.compile(r"\n"), re.compile(r"(?<=[.!?])\s+"), re.compile(r"\s+"))


def utf16_length(text: str) -> int:
    """Length in UTF-16 code units, how Telegram counts a message's characters."""
    return len(text.encode("utf-16-le")) // 2


def split_text(text: str, limit: int, measure: Callable[[str], int] = len) -> list[str]:
    """``text`` as consecutive pieces of at most ``limit`` (as ``measure`` counts), split at the
    latest paragraph break that fits, else line break, sentence end or space, and only as a last
    resort inside a word: between two user-perceived characters (Unicode grapheme clusters, UAX
    #29, so a flag, a skin-toned or joined emoji or an accented letter typed as two code points
    stays whole), inside one only if it alone is longer than ``limit``. Joined with the breaks
    they were split at, the pieces give the text back, give or take the whitespace at the splits.

    Raises ValueError for a ``limit`` under 1.
    """
    if limit < 1:
        raise ValueError("limit must be at least 1")
    pieces: list[str] = []
    rest = text.strip()
    while rest and measure(rest) > limit:
        head = _fitting_prefix(rest, limit, measure)
        cut = None
        for pattern in _BREAKS:
            found = [m for m in pattern.finditer(rest, 0, len(head) + 1) if m.start() > 0]
            if found:
                cut = found[-1]
                break
        if cut is None:
            head = _whole_graphemes(rest, head)
            pieces.append(head)
            rest = rest[len(head) :].lstrip()
        else:
            pieces.append(rest[: cut.start()].rstrip())
            rest = rest[cut.end() :].lstrip()
    if rest:
        pieces.append(rest)
    return pieces or [""]


def _whole_graphemes(text: str, head: str) -> str:
    """``head`` (a prefix of ``text``) cut back to the end of its last grapheme cluster that ends
    inside it; ``head`` itself if no cluster ends inside it (one cluster longer than the limit)."""
    if len(head) == len(text):
        return head
    end = 0
    for cluster in _GRAPHEME.finditer(text, 0, min(len(text), len(head) + _LONGEST_CLUSTER)):
        if cluster.end() > len(head):
            break
        end = cluster.end()
    return head[:end] if end else head


#: One extended grapheme cluster (the ``regex`` module's ``\X``, UAX #29).
_GRAPHEME = regex.compile(r"\X")
#: Code points read past a prefix to find whether its last cluster goes on: a cluster going on
#: further (a Zalgo text's hundreds of combining marks) starts the next piece, and is cut as code
#: points there if it alone is longer than the limit.
_LONGEST_CLUSTER = 64


def _fitting_prefix(text: str, limit: int, measure: Callable[[str], int]) -> str:
    """The longest prefix of ``text`` whose measure is at most ``limit`` (at least one character)."""
    low, high = 1, min(len(text), limit * 2)
    while low < high:
        middle = (low + high + 1) // 2
        if measure(text[:middle]) <= limit:
            low = middle
        else:
            high = middle - 1
    return text[:low]
