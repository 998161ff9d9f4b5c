"""Needs in Chinese in the brief's PNG charts (#16): matplotlib's default font has no CJK glyphs,
so a chart either draws the wording with an installed font that has every glyph (found by looking
at the glyphs, not the language) or names the needs by key (N1, N2, ...) and the brief prints the
key beside the chart."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from matplotlib import font_manager
from matplotlib.axes import Axes

from positioning.brief import write_brief
from positioning.evidence import LoggedExchange, gather
from positioning.glyphs import chart_font, need_keys
from positioning.needs import Need, NeedLink
from positioning.outcomes import judge
from positioning.scoring import score
from positioning.script import load_script

#: The source article's worked example.
NEEDS = [Need("客户咨询", 5, 0.2), Need("理财建议", 4, 0.2), Need("投资分析", 3, 0.2)]
LINKS = [
    NeedLink("客户咨询", intents=("card_arrival",)),
    NeedLink("理财建议", kb_ids=("advice_call",)),
    NeedLink("投资分析", kb_ids=("portfolio",)),
]


def _log() -> list[LoggedExchange]:
    """Each need served for some customers (its linked answer), thumbed down for others."""
    out = []
    for need, link in zip(NEEDS, LINKS, strict=True):
        for i in range(6):
            intent = link.intents[0] if link.intents else None
            out.append(
                LoggedExchange(
                    f"{need.text} {i}",
                    "intent" if intent else "faq",
                    intent,
                    None if intent else link.kb_ids[0],
                    flagged=i % 3 == 0,
                    customer=f"{need.text}-{i}",
                    at=100.0 + len(out),
                )
            )
    return out


@pytest.fixture()
def labels(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, list[str]]]]:
    """The labels the charts annotate, each with the font families it is drawn in."""
    seen: list[tuple[str, list[str]]] = []
    original = Axes.annotate

    def annotate(self: Axes, text: str, *args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        made = original(self, text, *args, **kwargs)  # type: ignore[arg-type]
        seen.append((text, list(made.get_fontfamily())))
        return made

    monkeypatch.setattr(Axes, "annotate", annotate)
    # This machine's fonts only, whatever a test adds.
    monkeypatch.setattr(font_manager.fontManager, "ttflist", list(font_manager.fontManager.ttflist))
    yield seen


def _brief(tmp_path: Path) -> tuple[str, Path]:
    log = _log()
    result = score(NEEDS, judge(log, LINKS))
    assert result.p_d_given_u is not None and result.p_d_given_u > 0  # the worked example, measured
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        files = write_brief(tmp_path, load_script(), {"product": "Teller"}, result, gather(log, "t"))
    missing = [str(w.message) for w in caught if "missing from font" in str(w.message)]
    assert not missing, missing  # no empty boxes: every glyph drawn was in a font
    assert files.opportunity_chart is not None
    assert files.opportunity_chart.read_bytes().startswith(b"\x89PNG")
    return files.markdown.read_text(encoding="utf-8"), files.opportunity_chart


def test_without_a_cjk_font_the_chart_names_the_needs_by_key(
    tmp_path: Path, labels: list[tuple[str, list[str]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    # No font with these glyphs (as on a host without CJK fonts installed); matplotlib's "Last
    # Resort" font claims every code point but draws boxes: it does not count.
    monkeypatch.setattr(
        font_manager.fontManager,
        "ttflist",
        [f for f in font_manager.fontManager.ttflist if f.name.startswith(("DejaVu", "Last Resort"))],
    )
    assert chart_font(["客户咨询"]) == (False, None)
    assert chart_font(["track a card", "Ελληνικά"]) == (True, None)  # the default font has these
    markdown, _ = _brief(tmp_path)
    assert sorted(text.split(" ")[0] for text, _ in labels) == ["N1", "N2", "N3"]
    assert all(not any("\u4e00" <= c <= "\u9fff" for c in text) for text, _ in labels)
    assert "the chart names them by key:" in markdown
    assert "| key | need |\n|---|---|\n| N1 | 客户咨询 |\n| N2 | 理财建议 |\n| N3 | 投资分析 |" in markdown
    assert "| N1 | 客户咨询 | 10 |" in markdown  # the opportunity table uses the same keys
    assert need_keys(["a", "b"]) == {"a": "N1", "b": "N2"}


def _cjk_font(path: Path, text: str) -> Path:
    """A small TrueType font whose only glyphs are ``text``'s characters (squares) and a space."""
    from fontTools.fontBuilder import FontBuilder
    from fontTools.pens.ttGlyphPen import TTGlyphPen

    chars = sorted(set(text))
    names = [".notdef", "space", *(f"uni{ord(c):04X}" for c in chars)]
    builder = FontBuilder(1000, isTTF=True)
    builder.setupGlyphOrder(names)
    builder.setupCharacterMap({32: "space", **{ord(c): f"uni{ord(c):04X}" for c in chars}})
    glyphs = {}
    for name in names:
        pen = TTGlyphPen(None)
        if name != "space":
            pen.moveTo((100, 0))
            pen.lineTo((100, 800))
            pen.lineTo((900, 800))
            pen.lineTo((900, 0))
            pen.closePath()
        glyphs[name] = pen.glyph()
    builder.setupGlyf(glyphs)
    builder.setupHorizontalMetrics({name: (1000, 100) for name in names})
    builder.setupHorizontalHeader(ascent=880, descent=-120)
    builder.setupNameTable({"familyName": "Test CJK Squares", "styleName": "Regular"})
    builder.setupOS2(sTypoAscender=880, sTypoDescender=-120, usWinAscent=880, usWinDescent=120)
    builder.setupPost()
    builder.save(str(path))
    return path


def test_with_a_font_that_has_the_glyphs_the_chart_draws_the_wording(
    tmp_path: Path, labels: list[tuple[str, list[str]]]
) -> None:
    font = _cjk_font(tmp_path / "squares.ttf", "".join(n.text for n in NEEDS))
    font_manager.fontManager.addfont(str(font))
    assert chart_font(["客户咨询"]) == (True, "Test CJK Squares")
    markdown, _ = _brief(tmp_path / "brief")
    drawn = {text.split(" ")[1]: families for text, families in labels}
    assert set(drawn) == {"客户咨询", "理财建议", "投资分析"}
    assert all(families[-1] == "Test CJK Squares" for families in drawn.values())  # the fallback
    assert "the chart names them by key" not in markdown
