"""The exception tree of the ``bot`` package: catch :class:`TellerError` to catch them all::

TellerError
├── ConfigError             a setting is missing or invalid
├── InputError              a user-supplied value cannot be used (HTTP 400, a CLI message)
│   ├── NotFound            no such thing for this customer: unknown, or somebody else's (HTTP 404)
│   ├── NotTheAsker         a shared chat's member rates an answer Teller gave another member
│   └── Conflict            done once already, e.g. feedback on a reply (HTTP 409)
│       └── NotRateable     feedback on a reply that offered none (HTTP 409)
├── NotAuthorised           not an operator
├── RateLimited             over an abuse limit (HTTP 429 with Retry-After; bot.abuse)
├── DeliveryError           a platform refused (or never took) an outgoing message
│   └── OpsUnreachable      the ops channel refuses every post (not in it, gone, archived)
├── ShuttingDown            the server is closing: nothing was answered, try again (HTTP 503)
├── BenchServerError        the benchmark's `teller serve` did not start (bot.http_bench)
└── StoreError              the database cannot be opened, migrated or written (HTTP 503)
    └── DuplicateMessage    a platform message stored before (bot.storage.errors)
"""

from __future__ import annotations


class TellerError(Exception):
    """Base class of every error raised by :mod:`bot`."""


class ConfigError(TellerError):
    """A setting is missing or invalid."""


class InputError(TellerError):
    """A user-supplied value (message, file, option) cannot be used."""


class NotFound(InputError):
    """Nothing with that id belongs to the asker. Unknown ids and other customers' ids get this
    same error with the same words, so an answer never tells whether an id exists."""


class NotTheAsker(InputError):
    """Feedback pressed on an answer Teller gave another member of a shared chat (a Telegram group,
    a Slack channel), where everyone sees the answer and its buttons: saying so tells nothing the
    chat does not show. Never raised for the web chat or the REST API, whose replies are each
    customer's own (those get :class:`NotFound`)."""


class Conflict(InputError):
    """The action conflicts with the state of what it acts on: taken once already and allowed only
    once (feedback on a reply), or not allowed on it (:class:`NotRateable`)."""


class NotRateable(Conflict):
    """Feedback on one of Teller's replies that offered no feedback buttons (a clarifying question, a
    handoff, small talk): the reply is the customer's, but it is not rated."""


class RateLimited(TellerError):
    """Over an abuse limit (:mod:`bot.abuse`). ``retry_after``: whole seconds until the window
    admits the request again (at least 1); ``scope``: which limit (``session``, ``address``,
    ``overall``, ...), for logs and the refusal's wording."""

    def __init__(self, message: str, retry_after: int, scope: str) -> None:
        super().__init__(message)
        self.retry_after = max(1, int(retry_after))
        self.scope = scope


class NotAuthorised(TellerError):
    """Someone who is not an operator tried an operator command or button."""


class ShuttingDown(TellerError):
    """The message came while Teller was closing (:meth:`bot.batching.DecisionBatcher.close`):
    nothing was answered or stored, so sending it again (to this replica once it is back, or to
    another) is safe."""


class DeliveryError(TellerError):
    """A platform did not take an outgoing message.

    ``reason``: the platform's own words (``Bad Request: message is too long``, ``ratelimited``);
    ``transient``: worth trying again (rate limits, 5xx, network); ``retry_after``: seconds the
    platform asked to wait, when it said.
    """

    def __init__(self, reason: str, transient: bool = False, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.transient = transient
        self.retry_after = retry_after


class OpsUnreachable(DeliveryError):
    """The ops board refused a post for a reason no retry mends (Slack's ``not_in_channel``,
    ``channel_not_found``, ``is_archived``, a revoked token): nobody can take a handoff over until
    someone fixes the setup."""


def sentence(exc: Exception) -> str:
    """An error's message as a sentence to show a person: first letter capitalised (the rest
    untouched), a full stop at the end."""
    text = str(exc).strip()
    return (text[:1].upper() + text[1:] + ("" if text.endswith((".", "!", "?")) else ".")) if text else ""
