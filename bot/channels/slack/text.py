"""Slack's text dialect, translated at the boundary (both ways).

Slack sends message text with ``&``, ``<`` and ``>`` escaped and with links and mentions in angle
brackets (``<@U123>``, ``<#C123|general>``, ``<https://x.org|label>``, ``<!channel>``); it reads
posted ``mrkdwn`` the same way, so customer text posted raw can ping a channel (``<!channel>``) or
fake a link. Source: Slack's "Formatting text for app surfaces" (escaping, and the ``<…>`` forms).

- :func:`readable` turns incoming Slack text into what a person meant, for the policy and relays.
- :func:`escape` makes any text (a customer's, an operator's) inert in a ``mrkdwn`` or ``text``
  field: it shows as typed and pings nobody.
"""

from __future__ import annotations

import re

_ANGLE = re.compile(r"<([^<>]*)>")
_SPECIAL = {"channel": "@channel", "here": "@here", "everyone": "@everyone"}


def _spelled(token: str) -> str:
    """One ``<…>`` form as a person would write it."""
    target, _, label = token.partition("|")
    # Slack sends mentions without their label now: the internal id means nothing to a customer
    # reading an operator's words, so it is not shown (a reviewer's finding).
    if target.startswith("@"):  # <@U123> or <@U123|name>
        return f"@{label}" if label else "a colleague"
    if target.startswith("#"):  # <#C123> or <#C123|general>
        return f"#{label}" if label else "another channel"
    if target.startswith("!"):  # <!channel>, <!here>, <!subteam^S1|@team>, <!date^…|fallback>
        name = target[1:].split("^", 1)[0]
        return label or _SPECIAL.get(name, f"@{name}")
    if label:  # <https://example.org|the fee table>, <mailto:a@b.co|a@b.co>
        return label if label in (target, target.removeprefix("mailto:")) else f"{label} ({target})"
    return target  # <https://example.org>, <mailto:a@b.co>


def readable(text: str) -> str:
    """Incoming Slack text as the person wrote it: ``<…>`` forms spelled out, entities unescaped."""
    spelled = _ANGLE.sub(lambda m: _spelled(m.group(1)), text)
    return spelled.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def escape(text: str) -> str:
    """Text to post as it reads: ``&``, ``<`` and ``>`` escaped, so nothing in it is a mention,
    a link or a broadcast."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
