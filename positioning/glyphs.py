"""Text the brief's PNG charts can actually draw.

Matplotlib's default font (DejaVu Sans) has no Chinese, Japanese or Korean glyphs: a need such as
客户咨询 would be drawn as empty boxes. Before a chart labels anything with a need's wording,
:func:`chart_font` looks at the glyphs, not at the language: if the default font has every
character, nothing changes; else a font installed where matplotlib finds it (``font_manager``) that
has them all is used as a fallback family (the known CJK families first: Noto Sans CJK, Source Han
Sans, WenQuanYi, Droid Sans Fallback, ...); else there is none, and the chart labels the needs with
short keys (``N1``, ``N2``, ...; :func:`need_keys`) that the brief explains beside it.

No CJK font ships with Teller: the PyPI packages that bundle one are either 15 MB and more
installed or carry fonts whose licence does not allow it. A host that has a CJK font installed
(``fonts-noto-cjk``, ``fonts-wqy-microhei``, ``fonts-droid-fallback``) gets the wording drawn.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Sequence

log = logging.getLogger(__name__)

#: Families tried first when the default font lacks glyphs (CJK fonts commonly installed).
PREFERRED = (
    "Noto Sans CJK SC",
    "Noto Sans CJK JP",
    "Noto Sans CJK TC",
    "Noto Sans SC",
    "Source Han Sans SC",
    "Source Han Sans CN",
    "WenQuanYi Micro Hei",
    "WenQuanYi Zen Hei",
    "Droid Sans Fallback",
    "AR PL UMing CN",
    "Microsoft YaHei",
    "SimHei",
    "PingFang SC",
)


#: Matplotlib's own "Last Resort" font maps every code point to a placeholder box: it covers
#: everything and draws nothing, so it never counts.
LAST_RESORT = "Last Resort"


@functools.lru_cache(maxsize=256)
def _charmap(path: str) -> frozenset[int]:
    """The code points the font file at ``path`` has glyphs for (empty when it cannot be read)."""
    from matplotlib.ft2font import FT2Font

    try:
        return frozenset(FT2Font(path).get_charmap())
    except (OSError, RuntimeError, ValueError):
        log.warning("chart_font_unreadable", extra={"fields": {"path": path}})
        return frozenset()


def _needed(texts: Iterable[str]) -> set[int]:
    """The code points of ``texts`` a font must draw (spaces and control characters aside)."""
    return {ord(c) for t in texts for c in str(t) if c.isprintable() and not c.isspace()}


def default_font_path() -> str:
    """The file of the font matplotlib draws text in by default (its ``font.family`` setting)."""
    from matplotlib import font_manager, rcParams

    return str(font_manager.findfont(font_manager.FontProperties(family=rcParams["font.family"])))


def covers(path: str, texts: Iterable[str]) -> bool:
    """Has the font file at ``path`` a glyph for every character of ``texts``?"""
    return _needed(texts) <= _charmap(path)


def chart_font(texts: Sequence[str]) -> tuple[bool, str | None]:
    """Can the charts draw ``texts``, and with which extra family: ``(True, None)`` when the
    default font has every glyph, ``(True, family)`` when an installed font that has them all
    must be added as a fallback, ``(False, None)`` when no font has them (label with keys)."""
    if not texts or covers(default_font_path(), texts):
        return True, None
    from matplotlib import font_manager

    fonts = sorted(
        font_manager.fontManager.ttflist,
        key=lambda f: (PREFERRED.index(f.name) if f.name in PREFERRED else len(PREFERRED), f.name),
    )
    for font in fonts:
        if not font.name.startswith(LAST_RESORT) and covers(str(font.fname), texts):
            return True, str(font.name)
    return False, None


def need_keys(needs: Sequence[str]) -> dict[str, str]:
    """``{"客户咨询": "N1", ...}``: each need's short key, by its place in the list (from 1)."""
    return {need: f"N{i}" for i, need in enumerate(needs, start=1)}


def font_families(fallback: str | None) -> list[str]:
    """The ``font.family`` list for a chart: matplotlib's own, then ``fallback`` (matplotlib takes a
    glyph from the first family that has it)."""
    from matplotlib import rcParams

    families = list(rcParams["font.family"])
    return families if fallback is None or fallback in families else [*families, fallback]
