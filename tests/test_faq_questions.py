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


def test_the_evaluation_names_every_entry_that_answers_an_intent(teller_env: Path, tmp_path: Path) -> None:
    """An intent declared in the FAQ file counts as answered by its entry, as one taken over in the
    import does (the summary named only the latter: "0 entries answer an intent")."""
    from bot.faq_eval import evaluate_operator_faq
    from bot.settings import get_settings

    kb = tmp_path / "bank.csv"
    kb.write_text(
        "id,question,answer,intent\n"
        "bank-card-arrival,When will my new card get here?,Cards arrive within 5 working days.,card_arrival\n"
        "bank-lockers,Do you rent safe deposit boxes?,Yes: boxes from 25 a year at 40 branches.,\n",
        encoding="utf-8",
    )
    questions = tmp_path / "questions.csv"
    questions.write_text(
        "text,kb_id\nmy card still hasn't come,bank-card-arrival\ncan I rent a locker,bank-lockers\n",
        encoding="utf-8",
    )
    result = evaluate_operator_faq(get_settings(), kb, questions)
    assert result.questions == 2
    assert result.import_summary["linked"].get("bank-card-arrival") == "card_arrival"
    assert "bank-lockers" not in result.import_summary["linked"]
