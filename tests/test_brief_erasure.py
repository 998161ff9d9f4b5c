"""Customers' words leave a brief already written (``positioning.brief.erase_quotes`` and
``rewrite_files``): the quotes of erased messages, and nothing else, read “[erased]”, in the
Markdown and in the HTML rendered again from it."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from positioning.brief import ERASED, BriefExtras, erase_quotes, escape_markdown, rewrite_files, write_brief
from positioning.evidence import LoggedExchange, gather
from positioning.needs import Need, NeedLink
from positioning.outcomes import judge
from positioning.scoring import score
from positioning.script import load_script

CARD = ["where is my card 156", "where   is my card 157", "my *card* [is](late) 158"]
OTHER = "how do I close my account"
SHOWN = f"“{escape_markdown(ERASED)}”"


def by_topic(texts: Sequence[str]) -> np.ndarray:
    """A stand-in encoder: card questions on one axis, the rest on the other."""
    return np.asarray([[1.0, 0.0] if "card" in t else [0.0, 1.0] for t in texts], dtype=np.float32)


def write_quoting_brief(directory: Path, texts: Sequence[str], product: str = "Teller") -> str:
    """A brief (files in ``directory``) whose candidate new needs quote ``texts``, each an
    unanswered customer question; its Markdown."""
    log = [LoggedExchange(t, "handoff", customer=f"c{i}", at=100.0 + i) for i, t in enumerate(texts)]
    needs = [Need("track a card", 5, 0.2)]
    result = score(needs, judge(log, [NeedLink("track a card", intents=("card_arrival",))]))
    answers = {"product": product, "needs": ["track a card | 5"]}
    evidence = gather(log, "last 30 days", embed=by_topic)
    files = write_brief(directory, load_script(), answers, result, evidence, extras=BriefExtras(asked=log))
    return files.markdown.read_text(encoding="utf-8")


def test_the_quotes_of_the_texts_and_nothing_else_are_replaced(tmp_path: Path) -> None:
    markdown = write_quoting_brief(tmp_path, [*CARD, OTHER])
    assert "“where is my card 156”" in markdown and "- how do I close my account: 1 message" in markdown

    # Stored with other spacing than the brief folds it to: still the same quote.
    after, count = erase_quotes(markdown, ["where is my card 156", "  where is my card 157 "])
    assert count == 3  # the cluster's label (its most central question) is one of its examples
    assert "my card 156" not in after and "my card 157" not in after
    assert after.count(SHOWN) == 2 and "\\*card\\*" in after  # the third example stays
    assert after.replace(SHOWN, "").count("“") == markdown.count("“") - 2
    # Everything but the quotes is as it was.
    assert after.split("## What customers actually asked")[0] == markdown.split("## What customers")[0]
    assert after.split("## The interview")[1] == markdown.split("## The interview")[1]

    # A label erased: the line keeps its counts.
    alone, count = erase_quotes(markdown, [OTHER])
    assert count == 2 and f"- {escape_markdown(ERASED)}: 1 message (1 distinct" in alone
    assert OTHER not in alone

    # Markup in a message is matched as the brief escaped it.
    escaped, count = erase_quotes(markdown, ["my *card* [is](late) 158"])
    assert count == 1 and "(late)" not in escaped.replace("\\", "") and "where is my card 156" in escaped


def test_words_that_are_not_a_whole_quote_change_nothing(tmp_path: Path) -> None:
    markdown = write_quoting_brief(tmp_path, [*CARD, OTHER], product="where is my card 156")
    for texts in (["card"], ["where is my card"], ["Teller"], [""], []):
        assert erase_quotes(markdown, texts) == (markdown, 0)
    # The PM's product (the title, the interview's answers) is not a customer's quote.
    after, _ = erase_quotes(markdown, ["where is my card 156"])
    assert after.startswith("# Positioning brief: where is my card 156")
    assert "where is my card 156" in after.split("## The interview")[1]
    assert erase_quotes("# A brief with no candidate needs", ["anything"]) == (
        "# A brief with no candidate needs",
        0,
    )


def test_the_files_lose_the_quotes_whatever_version_of_the_brief_they_hold(tmp_path: Path) -> None:
    markdown = write_quoting_brief(tmp_path, [*CARD, OTHER])
    page = (tmp_path / "brief.html").read_text(encoding="utf-8")
    assert "where is my card 156" in page and "data:image/png;base64," in page
    after, _ = erase_quotes(markdown, [CARD[0]])

    assert rewrite_files(tmp_path, [CARD[0]], dry_run=True)
    assert (tmp_path / "brief.md").read_text(encoding="utf-8") == markdown  # a dry run writes nothing
    assert rewrite_files(tmp_path, [CARD[0]])
    assert (tmp_path / "brief.md").read_text(encoding="utf-8") == after
    rewritten = (tmp_path / "brief.html").read_text(encoding="utf-8")
    assert "where is my card 156" not in rewritten and "“[erased]”" in rewritten
    assert rewritten.count("data:image/png;base64,") == page.count("data:image/png;base64,")
    assert "<title>Positioning brief: Teller</title>" in rewritten
    assert not list(tmp_path.glob(".*.tmp"))

    # Nothing left to erase, or no brief: left alone.
    assert not rewrite_files(tmp_path, [CARD[0]])
    assert not rewrite_files(tmp_path, ["words no brief quotes"])
    assert not rewrite_files(tmp_path / "missing", [CARD[0]])
    assert not (tmp_path / "missing").exists()

    # A file on another version of the brief (another erasure got there first, or a newer brief):
    # these texts' quotes go from it all the same, in any order.
    assert rewrite_files(tmp_path, [OTHER])
    assert rewrite_files(tmp_path, [CARD[1]])
    final = (tmp_path / "brief.md").read_text(encoding="utf-8")
    assert final == erase_quotes(markdown, [OTHER, CARD[1], CARD[0]])[0]
    assert not any(t in (tmp_path / "brief.html").read_text(encoding="utf-8") for t in (OTHER, "card 157"))


def test_a_customer_who_typed_the_listed_need_marker_hides_no_quote(tmp_path: Path) -> None:
    """Only the renderer's own marker, right before the last quote of the line, opens the PM's
    listed need; a customer's message holding the same words is still a quote like any other."""
    marked = "where is my card. Already a listed need: “y"
    markdown = write_quoting_brief(tmp_path, [marked, "secret card words here", "my card 159"])
    assert "“secret card words here”" in markdown
    after, count = erase_quotes(markdown, ["secret card words here"])
    assert count >= 1 and "secret card words here" not in after
    after, count = erase_quotes(after, [marked, "my card 159"])
    assert count >= 2 and "my card 159" not in after and "Already a listed need" not in after

    # The PM's own listed need, after the examples, stays even when a customer wrote the same words.
    line = "- track it: 2 messages (2 distinct); e.g. “x. Already a listed need: “y”; “track a card”"
    listed = f"{_CANDIDATES_LINE}\n\n{line}. Already a listed need: “track a card”"
    erased, count = erase_quotes(listed, ["track a card"])
    assert count == 1
    assert erased.endswith(f"; {SHOWN}. Already a listed need: “track a card”")
    erased, count = erase_quotes(listed, ["x. Already a listed need: “y"])
    assert count == 1 and f"e.g. {SHOWN}; “track a card”. Already" in erased


_CANDIDATES_LINE = "**Candidate new needs** (all 2 unresolved messages, clustered by meaning):"


def test_the_score_beside_a_brief_loses_the_same_quotes() -> None:
    """Every string of the score JSON equal to an erased text (spaces folded) reads "[erased]",
    nested at any depth; other strings, numbers and keys stay; not JSON: left as it is."""
    from positioning.brief import erase_from_score

    score = json.dumps(
        {
            "candidates": [{"label": "my  card\nis lost", "examples": ["my card is lost", "where is it"]}],
            "m": 0.8,
        }
    )
    after, count = erase_from_score(score, ["my card is lost"])
    assert count == 2
    data = json.loads(after)
    assert (
        data["candidates"][0] == {"label": ERASED, "examples": [ERASED, "where is it"]} and data["m"] == 0.8
    )
    assert erase_from_score(score, ["nothing like it"]) == (score, 0)
    assert erase_from_score("not json {", ["not json {"]) == ("not json {", 0)
