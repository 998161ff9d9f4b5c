"""A load generator for the web chat API (``POST /api/messages``): concurrent customers spread over one
or more replicas, what they got back, and a check of the store afterwards.

What is measured
    ``users`` customers send ``messages`` messages each, one at a time, waiting for every reply. Customer
    ``i`` starts on URL ``i % n``. Each message counts once however many attempts it took:

    * *sent*: distinct messages; *attempts*: HTTP requests made for them; *retried*: messages that
      needed more than one attempt;
    * *acknowledged*: messages that got a 2xx response with a reply; *silent*: those of them whose reply
      text is empty (the customer saw nothing: e.g. a message relayed to a person during a handoff);
    * *errors*: messages never acknowledged, after every attempt;
    * latency (ms) from a message's first attempt to its acknowledgement, so a failover's cost is in
      it; throughput: acknowledgements per second of the run; acknowledgements per URL.

Why a retry reuses the ``client_message_id``
    A replica can store a message and die (or time out, or lose the connection) before the customer
    hears back. The server stores each customer message once per ``(channel, platform id)``, the web
    platform id being a keyed digest of the customer and the ``client_message_id``, and answers a
    repeated id with the reply it stored. So a retry under the same id (to whichever replica) is
    answered once and stored once, while a retry under a new id would be a second message. This is what
    a real client must do, and it makes the store check honest: ``check_store`` counts, by platform id,
    every message the run stored, and tells *missing* (acknowledged, not stored: lost), *duplicated*
    (stored twice) and *stored but never acknowledged* (e.g. a replica killed after storing, with the
    client out of attempts) apart.

Who the customers are
    The generator speaks as a bank's backend (``TELLER_BACKEND_API_KEY`` on the replicas, the same
    key here): each request names its customer (``load-<run>-<i>``) in ``X-Teller-Customer``. So the
    per-address limits, meant for browsers, do not apply; the per-customer and overall limits do
    (``TELLER_LIMIT_MESSAGES``, ``TELLER_LIMIT_MESSAGES_OVERALL``: raise them on the replicas for a
    load test, or the run measures them).

Retries: on a connection error, a timeout, or a 5xx or 429 response, the same message goes to the next
URL (a dead replica's customers fail over, and stay on the replica that answered) after a pause that
doubles from ``backoff`` up to ``max_backoff``, or what a ``Retry-After`` header asks; up to
``attempts`` attempts, and none started after the message's ``deadline``. Any other 4xx is final.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import random
import secrets
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import numpy as np

from bot.storage import Store

CHAT_PATH = "/api/messages"
WEB_CHANNEL = "web"
SAMPLES = 5
"""How many example ids or error lines a result keeps of each kind."""


@dataclass
class LoadResult:
    """What a run sent and got back. Latencies in ms, ``seconds`` and ``think_seconds`` in s."""

    run_id: str
    urls: list[str]
    users: int
    messages_per_user: int
    think_seconds: float
    max_attempts: int
    #: Distinct messages (each with one ``client_message_id`` for all its attempts).
    sent: int
    #: Messages answered with a 2xx and a reply (an empty reply included, see ``silent``).
    acknowledged: int
    #: Messages that needed more than one attempt.
    retried: int
    #: HTTP requests made, every attempt of every message.
    attempts: int
    #: Messages never acknowledged.
    errors: int
    #: Acknowledged messages whose reply text was empty or blank.
    silent: int
    latency_ms_p50: float
    latency_ms_p95: float
    latency_ms_p99: float
    latency_ms_max: float
    latency_ms_mean: float
    seconds: float
    #: Acknowledgements per second.
    throughput_per_s: float
    #: Acknowledgements by the URL that gave them.
    acknowledged_by_url: dict[str, int] = field(default_factory=dict)
    #: Failed attempts (retried or final) by kind: an exception name (``ConnectError``,
    #: ``ReadTimeout``, ...) or ``HTTP <status>``.
    failed_attempts: dict[str, int] = field(default_factory=dict)
    error_samples: list[str] = field(default_factory=list)
    #: Platform ids (``user_id:client_message_id``) of a few silent replies.
    silent_samples: list[str] = field(default_factory=list)
    #: Mean milliseconds per stage over the acknowledged messages, from the replicas'
    #: ``Server-Timing`` headers (``TELLER_SERVER_TIMING``; empty without them): :mod:`bot.stages`.
    stage_ms_mean: dict[str, float] = field(default_factory=dict)
    #: Platform ids of every acknowledged message, for :func:`check_store`.
    acknowledged_ids: list[str] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """Everything but ``acknowledged_ids`` (one entry per message), JSON-ready."""
        data = asdict(self)
        data.pop("acknowledged_ids")
        return data


@dataclass
class StoreCheck:
    """The run's customer messages in the database, compared with what the client acknowledged."""

    acknowledged: int
    #: Distinct messages of the run stored (acknowledged or not).
    stored: int
    #: Acknowledged but not stored: lost. Must be 0.
    missing: int
    #: Stored more than once. Must be 0.
    duplicated: int
    #: Stored, but the client never got an answer (a replica died after storing and the client ran out
    #: of attempts). Not a loss, but not answered either.
    stored_not_acknowledged: int
    missing_samples: list[str] = field(default_factory=list)
    duplicated_samples: list[str] = field(default_factory=list)
    stored_not_acknowledged_samples: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Nothing acknowledged is lost and nothing is stored twice."""
        return self.missing == 0 and self.duplicated == 0


@dataclass(frozen=True)
class RetryPolicy:
    """How one message is retried. All times in seconds."""

    #: Attempts per message, the first included (1: no retries).
    attempts: int = 5
    #: Time allowed for one attempt (connect, send, reply).
    timeout: float = 30.0
    #: No attempt starts later than this after the message's first attempt.
    deadline: float = 60.0
    #: Pause before the first retry; doubled before each next one, up to ``max_backoff``.
    backoff: float = 0.2
    max_backoff: float = 2.0


@dataclass
class _Outcome:
    """One message: how many attempts it took and how it ended."""

    platform_id: str
    attempts: int
    url: str | None = None  # the URL that acknowledged it
    latency_ms: float | None = None
    silent: bool = False
    error: str | None = None
    #: What each failed attempt ran into (exception name or ``HTTP <status>``).
    failures: list[str] = field(default_factory=list)
    #: The acknowledging response's ``Server-Timing`` stages (ms), if it had the header.
    stages: dict[str, float] = field(default_factory=dict)


def user_id(run_id: str, user: int) -> str:
    """The web ``user_id`` of customer ``user`` of run ``run_id``."""
    return f"load-{run_id}-{user}"


def platform_id(user: str, client_message_id: str) -> str:
    """The run's own id of a message (the store keeps a digest of it: :func:`check_store` maps)."""
    return f"{user}:{client_message_id}"


def retryable(status_code: int) -> bool:
    """Whether a response with this status is worth another attempt (5xx, 429)."""
    return status_code >= 500 or status_code == 429


def retry_after(response: httpx.Response, now: datetime | None = None) -> float | None:
    """The pause (s, at least 0) a ``Retry-After`` header asks for, in seconds or as an HTTP date;
    None without one or if it cannot be read."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def server_timing(header: str) -> dict[str, float]:
    """``{name: milliseconds}`` of a ``Server-Timing`` header (W3C Server Timing: comma-separated
    metrics, each a name with optional ``;dur=ms`` and ``;desc=...`` parameters, values plain or
    quoted). Only a parameter's first occurrence counts, as the specification says; a metric
    without a readable duration is left out, as is a malformed one. A name given twice adds up."""
    stages: dict[str, float] = {}
    for metric in _split_unquoted(header, ","):
        name, *parameters = (part.strip() for part in _split_unquoted(metric, ";"))
        seen: set[str] = set()
        for parameter in parameters:
            key, _, value = parameter.partition("=")
            key = key.strip().lower()
            if key in seen:
                continue
            seen.add(key)
            if name and key == "dur":
                with contextlib.suppress(ValueError):
                    stages[name] = stages.get(name, 0.0) + float(value.strip().strip('"'))
    return stages


def _split_unquoted(text: str, separator: str) -> list[str]:
    """``text`` cut at each ``separator`` outside double quotes (a backslash escapes in quotes)."""
    parts: list[str] = []
    current: list[str] = []
    quoted = escaped = False
    for char in text:
        if escaped:
            escaped = False
        elif quoted and char == "\\":
            escaped = True
        elif char == '"':
            quoted = not quoted
        elif char == separator and not quoted:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


def _reply_text(response: httpx.Response) -> str | None:
    """The reply of a 2xx response, or None if it is not Teller's answer (no JSON, no ``message_id``)."""
    try:
        data = response.json()
    except ValueError:
        return None
    if not isinstance(data, dict) or not data.get("message_id") or not isinstance(data.get("reply"), str):
        return None
    return str(data["reply"])


async def _send_message(
    client: httpx.AsyncClient,
    urls: Sequence[str],
    position: int,
    body: dict[str, str],
    policy: RetryPolicy,
    headers: dict[str, str],
) -> tuple[_Outcome, int]:
    """Send one message until it is acknowledged or out of attempts, starting on ``urls[position]``
    and moving to the next URL after each failed attempt; return its outcome and the URL position to
    use next (the one that answered, or the last one tried)."""
    pid = platform_id(headers["X-Teller-Customer"], body["client_message_id"])
    started = time.perf_counter()
    pause = policy.backoff
    attempt = 0
    failures: list[str] = []
    while True:
        attempt += 1
        url = urls[position]
        remaining = policy.deadline - (time.perf_counter() - started)
        asked: float | None = None
        try:
            response = await client.post(
                url + CHAT_PATH,
                json=body,
                headers=headers,
                timeout=max(0.001, min(policy.timeout, remaining)),
            )
        except httpx.TransportError as exc:  # refused, reset, dropped, timed out
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            failures.append(type(exc).__name__)
            again = True
        else:
            if response.is_success:
                reply = _reply_text(response)
                if reply is not None:
                    latency_ms = (time.perf_counter() - started) * 1000.0
                    outcome = _Outcome(
                        pid,
                        attempt,
                        url,
                        latency_ms,
                        not reply.strip(),
                        failures=failures,
                        stages=server_timing(response.headers.get("server-timing", "")),
                    )
                    return outcome, position
                error = f"HTTP {response.status_code} without a reply: {response.text[:120]}"
                again = False
            else:
                error = f"HTTP {response.status_code}: {response.text[:120]}"
                again = retryable(response.status_code)
                asked = retry_after(response) if again else None
            failures.append(f"HTTP {response.status_code}")
        wait = asked if asked is not None else pause
        pause = min(pause * 2, policy.max_backoff)
        out_of_time = time.perf_counter() - started + wait >= policy.deadline
        if not again or attempt >= policy.attempts or out_of_time:
            reason = " (deadline)" if again and out_of_time and attempt < policy.attempts else ""
            note = f"{pid} on {url}, attempt {attempt}{reason}: {error}"
            return _Outcome(pid, attempt, error=note, failures=failures), position
        position = (position + 1) % len(urls)
        await asyncio.sleep(wait)


async def _customer(
    client: httpx.AsyncClient,
    urls: Sequence[str],
    run_id: str,
    user: int,
    texts: Sequence[str],
    count: int,
    think: float,
    rng: random.Random,
    policy: RetryPolicy,
    outcomes: list[_Outcome],
    backend_key: str,
) -> None:
    position = user % len(urls)
    if think > 0:  # customers arrive over the first pause, not all in the same millisecond
        await asyncio.sleep(rng.uniform(0, think))
    for i in range(count):
        body = {"text": rng.choice(texts), "client_message_id": str(i)}
        headers = {"Authorization": f"Bearer {backend_key}", "X-Teller-Customer": user_id(run_id, user)}
        outcome, position = await _send_message(client, urls, position, body, policy, headers)
        outcomes.append(outcome)
        if think > 0:
            await asyncio.sleep(rng.uniform(0.5 * think, 1.5 * think))


async def run_load(
    urls: str | Sequence[str],
    texts: Sequence[str],
    users: int = 50,
    messages: int = 20,
    think: float = 0.0,
    seed: int = 0,
    timeout: float = 30.0,
    attempts: int = 5,
    deadline: float = 60.0,
    backoff: float = 0.2,
    max_backoff: float = 2.0,
    backend_key: str = "",
    trust_env: bool = True,
) -> LoadResult:
    """``users`` customers at once, each sending ``messages`` messages (texts drawn from ``texts``) and
    waiting for every reply, spread round-robin over ``urls`` (base URLs of Teller replicas).

    ``think``: mean pause (s) between a reply and the next message. ``timeout``: limit (s) of one
    attempt. A message is retried as the module docstring says: ``attempts`` attempts at most (the
    first included), none started ``deadline`` s after its first; pauses from ``backoff`` s doubling up
    to ``max_backoff`` s. ``backend_key``: the replicas' ``TELLER_BACKEND_API_KEY`` (the customers
    are the run's, vouched for by this "backend"). ``trust_env=False`` ignores proxy variables (a
    replica on this host). Raises ``ValueError`` without URLs or a key.
    """
    if not backend_key:
        raise ValueError("no backend key: set TELLER_BACKEND_API_KEY on the replicas and pass the same key")
    targets = [u.rstrip("/") for u in ([urls] if isinstance(urls, str) else urls)]
    if not targets:
        raise ValueError("no URL to load")
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    policy = RetryPolicy(attempts, timeout, deadline, backoff, max_backoff)
    run_id = secrets.token_hex(4)
    outcomes: list[_Outcome] = []
    limits = httpx.Limits(max_connections=users, max_keepalive_connections=users)
    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=timeout, limits=limits, trust_env=trust_env) as client:
        await asyncio.gather(
            *(
                _customer(
                    client,
                    targets,
                    run_id,
                    u,
                    texts,
                    messages,
                    think,
                    random.Random(seed * 1000 + u),
                    policy,
                    outcomes,
                    backend_key,
                )
                for u in range(users)
            )
        )
    seconds = time.perf_counter() - started
    acked = [o for o in outcomes if o.url is not None]
    failed = [o for o in outcomes if o.url is None]
    silent = [o for o in acked if o.silent]
    latencies = [o.latency_ms for o in acked if o.latency_ms is not None]
    lat = np.asarray(latencies) if latencies else np.zeros(1)
    by_url = dict.fromkeys(targets, 0)
    for o in acked:
        by_url[o.url or ""] += 1
    failed_attempts = Counter(f for o in outcomes for f in o.failures)
    stage_totals: Counter[str] = Counter()
    for o in acked:
        stage_totals.update(o.stages)
    return LoadResult(
        run_id=run_id,
        urls=targets,
        users=users,
        messages_per_user=messages,
        think_seconds=think,
        max_attempts=attempts,
        sent=len(outcomes),
        acknowledged=len(acked),
        retried=sum(1 for o in outcomes if o.attempts > 1),
        attempts=sum(o.attempts for o in outcomes),
        errors=len(failed),
        silent=len(silent),
        latency_ms_p50=round(float(np.percentile(lat, 50)), 2),
        latency_ms_p95=round(float(np.percentile(lat, 95)), 2),
        latency_ms_p99=round(float(np.percentile(lat, 99)), 2),
        latency_ms_max=round(float(lat.max()), 2),
        latency_ms_mean=round(float(lat.mean()), 2),
        seconds=round(seconds, 2),
        throughput_per_s=round(len(acked) / seconds, 1) if seconds else 0.0,
        acknowledged_by_url=by_url,
        failed_attempts=dict(failed_attempts.most_common()),
        error_samples=[o.error or "" for o in failed[:SAMPLES]],
        silent_samples=[o.platform_id for o in silent[:SAMPLES]],
        stage_ms_mean={name: round(total / len(acked), 3) for name, total in stage_totals.items()},
        acknowledged_ids=[o.platform_id for o in acked],
    )


def check_store(
    store: Store, run_id: str, acknowledged: Sequence[str], users: int, messages: int
) -> StoreCheck:
    """Compare the customer messages of run ``run_id`` in ``store`` (web channel, by platform id) with
    the ids the client had acknowledged (:attr:`LoadResult.acknowledged_ids`, ``customer:message``).
    The run's ``users`` customers sent ``messages`` ids each; each is mapped to the digest the store
    keeps (:meth:`bot.web.sessions.Identities.platform_id`)."""
    from bot.web.sessions import Identities

    identities = Identities.from_store(store)
    counts: dict[str, int] = {}
    for user in range(users):
        customer = user_id(run_id, user)
        who = identities.verified(customer)
        own = {identities.platform_id(who, str(n)): platform_id(customer, str(n)) for n in range(messages)}
        for pid, count in store.conversations.platform_counts(WEB_CHANNEL, who.user_id + ":").items():
            counts[own.get(pid, pid)] = count
    acked = set(acknowledged)
    missing = sorted(a for a in acked if a not in counts)
    duplicated = sorted(p for p, n in counts.items() if n > 1)
    unacknowledged = sorted(p for p in counts if p not in acked)
    return StoreCheck(
        acknowledged=len(acked),
        stored=len(counts),
        missing=len(missing),
        duplicated=len(duplicated),
        stored_not_acknowledged=len(unacknowledged),
        missing_samples=missing[:SAMPLES],
        duplicated_samples=duplicated[:SAMPLES],
        stored_not_acknowledged_samples=unacknowledged[:SAMPLES],
    )
