"""Limits on knowledge-base entries, CSV cells neutralised against formula injection (and still
round-tripping where Teller reads them back), and customer text escaped in Markdown (#15)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from nlu.artifact import _read_examples, _write_examples
from nlu.data import Example
from nlu.textio import neutralise_cell, restore_cell
from positioning.brief import escape_markdown
from retrieval.entry import MAX_ANSWER_CHARS, MAX_QUESTION_CHARS, KBEntry
from retrieval.errors import KBFormatError
from retrieval.exporters import export_entries
from retrieval.loaders import load_entries

TRICKY = ["=1+1", "-5 °C", "+44 20 7946 0000", "@SUM(A1)", "'quoted", "''twice", '=HYPERLINK("http://x")']


def test_entry_limits_name_the_entry_and_the_limit() -> None:
    assert KBEntry.build("ok", ["Q?"], "a" * MAX_ANSWER_CHARS).problems() == []
    [problem] = KBEntry.build("pin_help", ["Q?"], "a" * (MAX_ANSWER_CHARS + 1)).problems()
    assert (
        "'pin_help'" in problem
        and f"{MAX_ANSWER_CHARS + 1:,}" in problem
        and f"{MAX_ANSWER_CHARS:,}" in problem
    )
    [problem] = KBEntry.build("long_q", ["q" * (MAX_QUESTION_CHARS + 1)], "A.").problems()
    assert "'long_q'" in problem and f"{MAX_QUESTION_CHARS}" in problem


def test_a_csv_cell_over_the_csv_limit_says_what_the_limits_are(tmp_path: Path) -> None:
    big = tmp_path / "big.csv"
    big.write_text("id,question,answer\npin_help,How?," + "x" * 200_000 + "\n")
    with pytest.raises(KBFormatError, match=rf"line 2: .*at most {MAX_ANSWER_CHARS:,}"):
        load_entries(big)


def test_cells_are_neutralised_and_restored_exactly() -> None:
    for value in TRICKY:
        cell = neutralise_cell(value)
        assert cell.startswith("'") and restore_cell(cell) == value
    assert neutralise_cell("plain text") == "plain text" == restore_cell("plain text")
    assert neutralise_cell("\tx") == "'\tx" and neutralise_cell("\rx") == "'\rx"


def test_kb_csv_export_is_neutralised_and_round_trips(tmp_path: Path) -> None:
    entries = [
        KBEntry.build(f"e{i}", [value, "Another?"], value, tags=["x"]) for i, value in enumerate(TRICKY)
    ]
    text = export_entries(entries, "csv")
    rows = list(csv.reader(io.StringIO(text)))[1:]
    assert all(row[1].startswith("'") and row[2].startswith("'") for row in rows)
    assert not any(cell.startswith(("=", "+", "-", "@")) for row in rows for cell in row)
    path = tmp_path / "kb.csv"
    path.write_text(text, encoding="utf-8")
    assert load_entries(path) == entries


def test_model_csvs_are_neutralised_and_read_back_exactly(tmp_path: Path) -> None:
    examples = [Example(value, "card_arrival") for value in TRICKY]
    path = tmp_path / "corrections.csv"
    _write_examples(path, examples)
    assert "\n=" not in path.read_text() and "'=HYPERLINK" in path.read_text()
    assert _read_examples(path) == examples


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("[click](http://evil)", r"\[click\]\(http\://evil\)"),
        ("<script>", "&lt;script&gt;"),
        ("**bold**", r"\*\*bold\*\*"),
        ("| table |", r"\| table \|"),
        ("line one\n# not a heading", r"line one \# not a heading"),
        ("- 5 °C at www.evil.com", r"\- 5 °C at www\.evil.com"),
        ("Where is my card?", "Where is my card?"),
    ],
)
def test_escape_markdown(text: str, escaped: str) -> None:
    assert escape_markdown(text) == escaped
