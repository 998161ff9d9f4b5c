"""Abuse limits: how much one customer, one client address and everyone together may ask of Teller.

Every limit is a moving window of the well-kept `limits` library (``"20/minute"``, ``"5/hour"``; the
library's notation), checked in one place here and applied by the application façade
(:class:`bot.service.TellerService`) and the ops desk, whatever the channel:

==========================  =========================  ==============================================
limit (setting)             default                    beyond it
==========================  =========================  ==============================================
messages per customer       20/minute                  429 + Retry-After on the web and REST API; on
(``TELLER_LIMIT_MESSAGES``)                            Telegram and Slack one notice per minute, the
                                                       rest unanswered
messages per client         60/minute                  the same (web and REST only: the address is
address                                                what the HTTP server saw)
(``TELLER_LIMIT_MESSAGES_PER_ADDRESS``)
messages overall, per       1200/minute                the same, for everyone on that channel (a web
channel                                                flood does not silence Telegram)
(``TELLER_LIMIT_MESSAGES_
OVERALL``)
messages from anonymous     600/minute                 the same, for anonymous web customers only:
web customers, per channel                             they count in the overall limit too, so a
(``TELLER_LIMIT_MESSAGES_                              flood of anonymous sessions (new ones from
ANONYMOUS``)                                           many addresses) leaves the rest of it to
                                                       verified customers and the bank's backend
new web sessions per        20/minute                  429 + Retry-After
address (``TELLER_LIMIT_SESSIONS``)
handoffs opened per client  5/hour                     no thread is opened; the customer is told the
address (``TELLER_LIMIT_HANDOFFS_PER_ADDRESS``)        team cannot take the conversation now
open handoffs in total      100                        the same
(``TELLER_MAX_OPEN_HANDOFFS``)
erasures a web customer     3/hour per customer,       429 + Retry-After; each erasure is a large
asks for                    30/hour per address        transaction under the store's write lock and
(``TELLER_LIMIT_ERASURES``,                            an audit row kept for good (an office behind
``..._PER_ADDRESS``)                                   one address holds many customers)
review posts to the ops     10/minute                  the item waits in the review queue (``teller
channel                                                review``, ``/teller queue``) instead of being
(``TELLER_LIMIT_REVIEW_POSTS``)                        posted
replies one customer's      5/hour per customer        the verdict is kept (positioning counts it)
"not helpful" files for                                but files nothing for review: one customer
review (``TELLER_LIMIT_                                cannot fill the queue and the ops channel's
REVIEW_FILINGS``)                                      posts every customer's items share
feedback per reply          once                       409 (a unique check in the store, not here);
                                                       a verdict posted to ``POST /api/feedback``
                                                       or sent as a ``feedback:`` message's text
                                                       also counts as one message above (Slack's
                                                       and Telegram's buttons do not)
==========================  =========================  ==============================================

**A long message counts for more.** A message costs as many units of every message limit above as
the classifier's windows it takes (:meth:`bot.core.TellerCore.message_cost`: 1 for a message that
fits one window, up to 8 for 4,000 characters; never more than a limit holds, so the longest message
is still admitted once the window is empty): by tokens, not characters, so 500 characters of digits
and punctuation, which take 7 windows, cost 7. Measured through the answer policy (2 cores, another
job running, 2026-12-01, median of 15): 32 ms for a 45-character question, 145 ms at 500 characters
(1 window), 333 ms at 1,000 (3), 672 ms at 4,000 (8). A resent message (the same
``client_message_id``, answered from the store) costs 1. A refusal's Retry-After is the time until
the message's cost fits again, not only until one unit is free.

A customer has at most one open handoff (the store reuses the open one). Counters live in
``TELLER_LIMITS_STORAGE`` (a `limits` storage URI): ``memory://`` (the default) counts per replica,
so N replicas admit up to N times the per-address and overall figures; ``redis://host:6379`` (with
``pip install 'limits[redis]'``) shares them. A request refused by one limit does not count
against the others; a replica tests and counts under one lock (across replicas, a shared storage's
counts can let a burst exceed a limit by the requests in flight at that moment).
"""

from __future__ import annotations

import bisect
import logging
import math
import threading
import time
import weakref
from dataclasses import dataclass
from urllib.parse import urlparse

from limits import RateLimitItem, parse
from limits.aio.storage import Storage as AsyncStorage
from limits.storage import MemoryStorage, Storage, storage_from_string
from limits.strategies import MovingWindowRateLimiter

from bot.errors import ConfigError, RateLimited

log = logging.getLogger(__name__)

#: Words of the 429 refusal and of the one notice a push channel's customer gets per window.
TOO_FAST = "You're sending messages faster than we can answer them. Please wait {seconds} s and try again."
#: What a customer handed off is told when no handoff can be opened (a cap reached).
BUSY = (
    "Our team can't take new conversations right now. Please try again a little later; for "
    "anything urgent, call us on the number on the back of your card."
)


@dataclass(frozen=True)
class LimitSettings:
    """The limits, in the `limits` library's notation (``"<count>/<period>"``, or several separated
    by ``;``); see the module's table for what each bounds."""

    messages: str = "20/minute"
    messages_per_address: str = "60/minute"
    messages_overall: str = "1200/minute"
    messages_anonymous: str = "600/minute"
    sessions_per_address: str = "20/minute"
    handoffs_per_address: str = "5/hour"
    max_open_handoffs: int = 100
    review_posts: str = "10/minute"
    review_filings: str = "5/hour"
    erasures: str = "3/hour"
    erasures_per_address: str = "30/hour"
    storage: str = "memory://"


#: One limit to check: the item, the identifiers it counts under, and the scope's name.
_Check = tuple[RateLimitItem, tuple[str, ...], str]


def _items(name: str, spec: str) -> tuple[RateLimitItem, ...]:
    try:
        return tuple(parse(part) for part in spec.split(";") if part.strip())
    except ValueError as exc:
        raise ConfigError(f"{name}: {spec!r} is not a limit such as '20/minute' ({exc})") from None


def _rate(items: tuple[RateLimitItem, ...]) -> float:
    """The tightest of ``items`` as messages per second (infinite for none)."""
    return min((item.amount / item.get_expiry() for item in items), default=math.inf)


class _Sweeper:
    """One daemon thread that sweeps the expired entries of every :class:`SweptMemoryStorage` alive
    (held weakly) every ``interval`` seconds."""

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self._storages: weakref.WeakSet[SweptMemoryStorage] = weakref.WeakSet()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def watch(self, storage: SweptMemoryStorage) -> None:
        with self._lock:
            self._storages.add(storage)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="teller-limits-sweep", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            time.sleep(self.interval)
            with self._lock:
                storages = list(self._storages)
            for storage in storages:
                try:
                    storage.sweep()
                except Exception:  # housekeeping: a failed sweep must not stop the next ones
                    log.exception("limits_sweep_failed")


_SWEEPER = _Sweeper()


class SweptMemoryStorage(MemoryStorage):
    """The `limits` library's ``memory://`` storage, its expired entries swept by one long-lived
    thread (:class:`_Sweeper`, once a second) instead of the library's own way.

    Why: the library's storage (5.x) starts a new ``threading.Timer`` thread for a 10 ms sweep on
    any hit that comes after the previous sweep ended, i.e. on nearly every message of a replica
    that is not flooded. Starting a thread waits for it to run: the four checks of a web message
    took 285 µs median with a 13 ms pause between messages, against 8.6 µs back to back (2 cores,
    2026-12-02, 300 messages each). The sweep is only memory housekeeping: a moving window's test
    and hit compare timestamps themselves, so sweeping once a second changes no count.

    It replaces the library's private ``__schedule_expiry`` hook (``pyproject.toml`` keeps `limits`
    below 6, and the tests check that a hit starts no thread); the sweep is its own
    (:meth:`sweep`), which also drops the keys left empty (the library keeps every customer id
    and address it ever saw, so its sweep, every second here, would grow with uptime: 261 ms for
    200,000 keys). Every use of the storage must hold ``guard``: :class:`AbuseLimits` passes the
    lock its tests and hits hold, and the sweep takes it one key at a time, so a hit waits for at
    most one key's sweep."""

    def __init__(
        self,
        uri: str | None = None,
        wrap_exceptions: bool = False,
        guard: threading.Lock | None = None,
        **options: str,
    ) -> None:
        super().__init__(uri, wrap_exceptions=wrap_exceptions, **options)
        self.timer.cancel()  # the library's first sweep, unguarded: the sweeper's are
        #: Held by every test and hit on this storage, and by the sweep for each key.
        self.guard = guard or threading.Lock()
        _SWEEPER.watch(self)

    def _MemoryStorage__schedule_expiry(self) -> None:
        """The library calls this on every hit; the sweeper thread is already watching."""

    def sweep(self) -> None:
        """Drop what has expired: each moving window's events older than their expiry (the events
        are newest first, as the library keeps them) and the key once it has none; each fixed
        window's counter past its expiry."""
        for key in list(self.events):
            with self.guard:
                events = self.events.get(key)
                if events:
                    now = time.time()
                    # The first event already expired, and every older one after it (newest first).
                    keep = bisect.bisect_left(events, -now, key=lambda event: -event.expiry)
                    del events[keep:]
                if not events:
                    self.events.pop(key, None)
                    self.locks.pop(key, None)
        for key in list(self.expirations):
            with self.guard:
                if self.expirations.get(key, math.inf) <= time.time():
                    self.storage.pop(key, None)
                    self.expirations.pop(key, None)
                    self.locks.pop(key, None)


def limits_storage(uri: str, guard: threading.Lock | None = None) -> Storage | AsyncStorage:
    """The `limits` storage of ``uri``: ``memory://`` (with or without options) as
    :class:`SweptMemoryStorage` guarded by ``guard``, any other scheme as the library makes it.
    Raises what the library raises for an unusable URI."""
    if urlparse(uri.strip()).scheme.lower() == "memory":
        return SweptMemoryStorage(uri.strip(), guard=guard)
    return storage_from_string(uri)


class AbuseLimits:
    """The limits of :class:`LimitSettings`, counted in its storage. Thread-safe.

    Raises :class:`ConfigError` for a limit or storage it cannot read."""

    def __init__(self, settings: LimitSettings | None = None) -> None:
        self.settings = settings = settings or LimitSettings()
        if settings.max_open_handoffs < 1:
            raise ConfigError("TELLER_MAX_OPEN_HANDOFFS must be at least 1")
        self._lock = threading.Lock()
        try:
            storage = limits_storage(settings.storage, guard=self._lock)
        except Exception as exc:  # the library raises several kinds for an unusable URI
            raise ConfigError(f"TELLER_LIMITS_STORAGE: cannot use {settings.storage!r} ({exc})") from None
        self._limiter = MovingWindowRateLimiter(storage)
        self._messages = _items("TELLER_LIMIT_MESSAGES", settings.messages)
        self._per_address = _items("TELLER_LIMIT_MESSAGES_PER_ADDRESS", settings.messages_per_address)
        self._overall = _items("TELLER_LIMIT_MESSAGES_OVERALL", settings.messages_overall)
        self._anonymous = _items("TELLER_LIMIT_MESSAGES_ANONYMOUS", settings.messages_anonymous)
        if _rate(self._anonymous) >= _rate(self._overall):
            # Allowed (a deployment with anonymous customers only), but then it protects no one.
            log.warning(
                "limits_anonymous_not_a_share",
                extra={
                    "fields": {
                        "anonymous": settings.messages_anonymous,
                        "overall": settings.messages_overall,
                        "note": "anonymous web customers can take the whole overall limit",
                    }
                },
            )
        self._sessions = _items("TELLER_LIMIT_SESSIONS", settings.sessions_per_address)
        self._handoffs = _items("TELLER_LIMIT_HANDOFFS_PER_ADDRESS", settings.handoffs_per_address)
        self._review_posts = _items("TELLER_LIMIT_REVIEW_POSTS", settings.review_posts)
        self._review_filings = _items("TELLER_LIMIT_REVIEW_FILINGS", settings.review_filings)
        self._erasures = _items("TELLER_LIMIT_ERASURES", settings.erasures)
        self._erasures_per_address = _items(
            "TELLER_LIMIT_ERASURES_PER_ADDRESS", settings.erasures_per_address
        )
        self._notice = parse("1/minute")

    # ------------------------------------------------------------------------------ checks

    def message(
        self,
        channel: str,
        user_id: str,
        address: str | None = None,
        anonymous: bool = False,
        cost: int = 1,
    ) -> None:
        """Count one customer message costing ``cost`` units (see the module's docstring); raises
        :class:`RateLimited` (and counts nothing) when the customer, the client ``address`` (None:
        not known, e.g. Telegram), everyone together or (``anonymous``: a web customer nobody
        vouched for) all anonymous customers together are over a limit."""
        self._take(self._message_checks(channel, user_id, address, anonymous), TOO_FAST, max(1, cost))

    def _message_checks(
        self, channel: str, user_id: str, address: str | None, anonymous: bool
    ) -> list[_Check]:
        checks: list[_Check] = [(item, ("customer", channel, user_id), "customer") for item in self._messages]
        if address:
            checks += [(item, ("address", address), "address") for item in self._per_address]
        if anonymous:
            checks += [(item, ("anonymous", channel), "anonymous") for item in self._anonymous]
        # Per channel: a web flood does not silence Telegram and Slack customers.
        checks += [(item, ("overall", channel), "overall") for item in self._overall]
        return checks

    def session(self, address: str | None) -> None:
        """Count one new web session from ``address``; raises :class:`RateLimited`."""
        if address:
            self._take(
                [(item, ("session", address), "sessions") for item in self._sessions],
                "Too many new conversations from your address. Please wait {seconds} s and try again.",
            )

    def handoff(self, address: str | None, open_now: int) -> bool:
        """Whether a handoff may be opened now (and counted, if so): fewer than
        ``max_open_handoffs`` are open (``open_now``), and the client ``address`` has not opened its
        hourly share."""
        if open_now >= self.settings.max_open_handoffs:
            log.warning("handoff_refused", extra={"fields": {"reason": "open handoffs", "open": open_now}})
            return False
        if not address:
            return True
        try:
            self._take([(item, ("handoff", address), "handoffs") for item in self._handoffs], "")
        except RateLimited:
            log.warning("handoff_refused", extra={"fields": {"reason": "handoffs per address"}})
            return False
        return True

    def erasure(
        self, channel: str, user_id: str, address: str | None = None, anonymous: bool = False
    ) -> None:
        """Count one erasure a customer asks for themselves (``DELETE /api/conversation``), which is
        also one message of the message limits (as :meth:`message` counts it); raises
        :class:`RateLimited`, and counts nothing, when the customer or the client ``address`` is over
        its share of either."""
        checks: list[_Check] = [(item, ("erasure", channel, user_id), "erasures") for item in self._erasures]
        if address:
            checks += [(item, ("erasure", address), "erasures") for item in self._erasures_per_address]
        messages = self._message_checks(channel, user_id, address, anonymous)
        with self._lock:  # both tested before either is counted
            self._test(messages, TOO_FAST)
            self._test(checks, "Your conversation can be deleted again in {seconds} s.")
            self._hit(messages + checks)

    def review_post(self) -> bool:
        """Whether one more review item may be posted to the ops channel now (and counted)."""
        try:
            self._take([(item, ("review_post",), "review posts") for item in self._review_posts], "")
        except RateLimited:
            return False
        return True

    def review_filing(self, channel: str, user_id: str) -> bool:
        """Whether one customer's "not helpful" verdict may file its reply for review now (and
        counted, if so): the review queue and the ops channel's posts are every customer's, and one
        customer's thumbs-down on every reply took them all (a reviewer's finding)."""
        checks: list[_Check] = [
            (item, ("review_filing", channel, user_id), "review filings") for item in self._review_filings
        ]
        try:
            self._take(checks, "")
        except RateLimited:
            log.warning("review_filing_limited", extra={"fields": {"channel": channel}})
            return False
        return True

    def first_notice(self, channel: str, user_id: str) -> bool:
        """Whether a customer over the message limit on a push channel should be told (once a
        minute), rather than left unanswered."""
        with self._lock:
            return self._limiter.hit(self._notice, "notice", channel, user_id)

    # ------------------------------------------------------------------------------ internals

    def _take(self, checks: list[_Check], words: str, cost: int = 1) -> None:
        with self._lock:  # test, then count, as one step (two requests at once are not both let in)
            self._take_now(checks, words, cost)

    def _take_now(self, checks: list[_Check], words: str, cost: int = 1) -> None:
        self._test(checks, words, cost)
        self._hit(checks, cost)

    def _test(self, checks: list[_Check], words: str, cost: int = 1) -> None:
        """Raise :class:`RateLimited` with ``words`` if one of ``checks`` cannot take ``cost`` now."""
        # A cost above what a limit holds would never be admitted: it takes that limit's whole window.
        costs = [min(cost, item.amount) for item, _, _ in checks]
        for (item, identifiers, scope), units in zip(checks, costs, strict=True):
            if not self._limiter.test(item, *identifiers, cost=units):
                reset, _ = self._limiter.get_window_stats(item, *identifiers)
                # The window's oldest unit frees one: a message costing more may need the whole window.
                seconds = max(1, math.ceil(reset - time.time()) if units == 1 else item.get_expiry())
                log.info("rate_limited", extra={"fields": {"scope": scope, "retry_after": seconds}})
                raise RateLimited(words.format(seconds=seconds), seconds, scope)

    def _hit(self, checks: list[_Check], cost: int = 1) -> None:
        for item, identifiers, _ in checks:
            self._limiter.hit(item, *identifiers, cost=min(cost, item.amount))
