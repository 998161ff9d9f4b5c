"""The questions file of ``teller eval --kb FILE --questions FILE``, read before anything is computed."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.errors import InputError
from bot.faq_eval import read_questions


def test_questions_are_read_with_their_entries(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    path.write_text('text,kb_id\n"my card, it was stolen",lost-card\n  where is my card ,card-late,\n')
    assert read_questions(path, {"lost-card", "card-late"}) == [
        ("my card, it was stolen", "lost-card"),
        ("where is my card", "card-late"),
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("text,kb_id\nmy card, it was stolen,lost-card\n", r"line 2: 3 fields but the header has 2 .*quotes"),
        ("question,kb_id\nhi,lost-card\n", "missing column"),
        ("text,kb_id\n ,lost-card\n", "line 2: empty text"),
        ("text,kb_id\nhi,nope\n", "line 2: kb_id 'nope' is not an entry of the FAQ file"),
        ("text,kb_id\n", "no questions"),
    ],
)
def test_a_bad_questions_file_names_the_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "q.csv"
    path.write_text(content)
    with pytest.raises(InputError, match=message):
        read_questions(path, {"lost-card"})
