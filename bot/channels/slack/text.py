"""Slack's text dialect, translated at the boundary (both ways).

Slack sends message text with ``&``, ``<`` and ``>`` escaped and with links and mentions in angle
brackets (``<@U123>``, ``<#C123|general>``, ``<https://x.org|label>``, ``<!channel>``); it reads
posted ``mrkdwn`` the same way, so customer text posted raw can ping a channel (``<!channel>``) or
fake a link. Source: Slack's "Formatting text for app surfaces" (escaping, and the ``<…>`` forms).

- :func:`readable` turns incoming Slack text into what a person meant, for the policy and relays.
- :func:`unformatted` also drops Slack's bold and italic marks (``*bold*``, ``_italic_``) and code
  marks (`` `code` `` and code blocks, whose text is kept as typed), for an operator's words
  relayed to a customer: Telegram and the web chat show text as typed, where the marks would read
  as stray asterisks and underscores. Strikethrough keeps its tildes (a struck-out figure must not
  read as current). Slack's emoji codes (``:wave:``, ``:+1::skin-tone-3:``: Slack sends every emoji
  so, even one typed as the character) become the emoji (the ``emoji`` package's names, and
  Slack's own spellings of them, :func:`_glyph`; a code neither knows, a workspace's own emoji say,
  stays as written).
  A mark counts only as Slack reads it: at a word's edge, around words with no space inside
  the marks (``5 * 3 * 2``, ``file_name_v2`` and ``*`` alone stay as they are).
- :func:`escape` makes any text (a customer's, an operator's) inert in a ``mrkdwn`` or ``text``
  field: it shows as typed and pings nobody.
"""

from __future__ import annotations

import re

import emoji

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


#: Slack's emphasis: the mark, then words touching it at both ends, then the same mark, with no
#: word character or the same mark on either side (``a*b*c`` is not bold in Slack either).
#: Strikethrough (``~£25~``) keeps its marks: without them a withdrawn figure would read as current.
_EMPHASIS = [
    re.compile(rf"(?<![\w{m}]){m}(?=[^\s{m}])([^\n{m}]*?[^\s{m}]){m}(?![\w{m}])") for m in (r"\*", "_")
]
_CODE = re.compile(r"```\n?(.*?)\n?```|`([^`\n]+)`", re.DOTALL)
#: ``<…>`` forms and code stand in as private-use characters (never word characters) while marks
#: are read, so neither a link's nor code's own ``*`` and ``_`` are taken for emphasis.
_HELD, _MOST_HELD = 0xF0000, 60000


#: An emoji code, and a skin tone after it (``:+1::skin-tone-3:``: tones 2-6 are Unicode's five
#: modifiers, U+1F3FB-U+1F3FF).
#: Not inside a word or number ("10:30:45", "5:100:20" stay as typed).
_EMOJI_CODE = re.compile(r"(?<!\w):([a-z0-9_+'-]+):(?::skin-tone-([2-6]):)?(?!\w)")


def _glyph(name: str) -> str | None:
    """The emoji of a Slack code's name, or None. Slack writes some names with hyphens
    ("man-gesturing-no"), its flags as ``flag-<country>`` and some people as ``male-`` /
    ``female-`` ("female-technologist"), where the ``emoji`` package has underscores, the country
    code alone ("gb") and ``man_`` / ``woman_`` (found in review)."""
    tries = [name, name.replace("-", "_")]
    if name.startswith("flag-"):
        tries.append(name.removeprefix("flag-"))
    for old, new in (("male-", "man_"), ("female-", "woman_")):
        if name.startswith(old):
            tries.append(new + name.removeprefix(old).replace("-", "_"))
    for attempt in tries:
        glyph = emoji.emojize(f":{attempt}:", language="alias")
        if glyph != f":{attempt}:":
            return glyph
    country = name.removeprefix("flag-")
    if name.startswith("flag-") and len(country) == 2 and country.isascii() and country.isalpha():
        flag = "".join(chr(0x1F1E6 + ord(c) - ord("a")) for c in country.lower())  # regional indicators
        if emoji.is_emoji(flag):
            return flag
    return None


def _toned(glyph: str, tone: int) -> str:
    """``glyph`` in Slack's skin tone ``tone`` (2-6: Unicode's modifiers U+1F3FB-U+1F3FF), the
    modifier after its first character (a joined emoji's person: "🙋🏼‍♀️"), where Unicode has that
    sequence; else ``glyph`` as it is (a tone on "💯" is no emoji)."""
    modifier = chr(0x1F3FB + tone - 2)
    base, rest = glyph[0], glyph[1:].removeprefix("\ufe0f")
    toned = base + modifier + rest
    return toned if emoji.is_emoji(toned) else glyph


def _emoji(match: re.Match[str]) -> str:
    glyph = _glyph(match.group(1))
    if glyph is None:
        return match.group(0)  # not an emoji the package knows (a workspace's own): as written
    return _toned(glyph, int(match.group(2))) if match.group(2) else glyph


def _unmarked(text: str) -> str:
    """``text`` (forms and code held) without Slack's emphasis marks."""
    for _ in range(2):  # nested emphasis (*_both_*, _*both*_) comes off one mark at a time
        for pattern in _EMPHASIS:
            text = pattern.sub(r"\1", text)
    return text


def unformatted(text: str) -> str:
    """:func:`readable` text without Slack's bold, italic and code marks (the words inside kept; code
    as typed). A link's label loses its marks unless it is the link itself."""
    held: list[str] = []

    def hold(value: str) -> str:
        held.append(value)
        return chr(_HELD + len(held) - 1)

    def form(match: re.Match[str]) -> str:
        target, bar, label = match.group(1).partition("|")
        bare = re.sub(r"^(?:https?://|mailto:)", "", target)
        if label and label not in (target, bare):
            label = _unmarked(label)  # a link's label may be emphasised
        return hold(f"<{target}{bar}{label}>")

    if len(_ANGLE.findall(text)) + text.count("`") > _MOST_HELD or any(ord(c) >= _HELD for c in text):
        return readable(text)
    text = _ANGLE.sub(form, text)
    text = _CODE.sub(lambda m: hold(m.group(1) if m.group(1) is not None else m.group(2)), text)
    text = _EMOJI_CODE.sub(_emoji, text)  # (code held: ":wave:" in code stays as typed)
    text = _unmarked(text)
    restored = "".join(held[ord(c) - _HELD] if _HELD <= ord(c) < _HELD + len(held) else c for c in text)
    return readable(restored)


def escape(text: str) -> str:
    """Text to post as it reads: ``&``, ``<`` and ``>`` escaped, so nothing in it is a mention,
    a link or a broadcast."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
