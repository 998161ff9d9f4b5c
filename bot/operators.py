"""Who may act as an operator: the ``TELLER_OPERATORS`` allowlist, plus the local terminal.

Operators review Teller's answers (confirm, choose, correct, ignore), flag replies and take over
handed-off conversations. On Slack and Telegram only the listed user ids qualify
(:attr:`bot.settings.Settings.operator_ids`, keys such as ``"slack:U123"``); everyone else is
refused with :class:`~bot.errors.NotAuthorised` and the attempt is logged (``operator_refused``).
The terminal (channel ``"cli"``) is always an operator: whoever can run ``teller`` on the host can
open its database anyway, so the allowlist would protect nothing there.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from bot.errors import NotAuthorised
from bot.settings import Settings

log = logging.getLogger(__name__)

#: The local terminal's channel name; always an operator.
CLI = "cli"


@dataclass(frozen=True)
class Actor:
    """Someone acting on the review queue or a handoff: a channel and that channel's user id."""

    channel: str
    user_id: str

    def __str__(self) -> str:
        return f"{self.channel}:{self.user_id}"

    @classmethod
    def parse(cls, key: str) -> Actor:
        """``"slack:U123"`` -> ``Actor("slack", "U123")``."""
        channel, sep, user_id = key.partition(":")
        if not sep or not channel or not user_id:
            raise ValueError(f"not a channel:user key: {key!r}")
        return cls(channel, user_id)


class Operators:
    """The operator allowlist; cheap to build, immutable, safe to share between threads."""

    def __init__(self, ids: Iterable[str] = ()) -> None:
        self.ids = frozenset(ids)

    @classmethod
    def from_settings(cls, settings: Settings) -> Operators:
        return cls(settings.operator_ids)

    def is_operator(self, channel: str, user_id: str) -> bool:
        """True for listed ``channel:user_id`` keys, and always for the terminal."""
        return channel == CLI or f"{channel}:{user_id}" in self.ids

    def require(self, channel: str, user_id: str, action: str) -> Actor:
        """The actor, if an operator; otherwise log the attempt and raise :class:`NotAuthorised`."""
        if self.is_operator(channel, user_id):
            return Actor(channel, user_id)
        log.warning(
            "operator_refused",
            extra={"fields": {"channel": channel, "user_id": user_id, "action": action}},
        )
        raise NotAuthorised(
            f"only operators can {action}; {channel} user {user_id} is not one "
            "(operators are listed in TELLER_OPERATORS)"
        )
