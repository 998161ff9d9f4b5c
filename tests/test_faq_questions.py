"""The questions file of ``teller eval --kb FILE --questions FILE``, read before anything is computed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.choices import HANDOFF_CHOICE, SOMETHING_ELSE, Choice, entry_choice
from bot.errors import InputError
from bot.faq_eval import FaqEvaluation, measure, read_questions, with_typos
from bot.policy import Decision, Route


def test_questions_are_read_with_their_entries(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    path.write_text('text,kb_id\n"my card, it was stolen",lost-card\n  where is my card ,card-late,\n')
    assert read_questions(path, {"lost-card", "card-late"}) == [
        ("my card, it was stolen", "lost-card"),
        ("where is my card", "card-late"),
    ]


def test_an_empty_kb_id_is_a_question_no_entry_answers(tmp_path: Path) -> None:
    path = tmp_path / "q.csv"
    path.write_text(
        "text,kb_id\ntell me a joke,\nmy card was stolen,lost-card\nwhat's my exact balance, \nhi\n"
    )
    assert read_questions(path, {"lost-card"}) == [
        ("tell me a joke", ""),
        ("my card was stolen", "lost-card"),
        ("what's my exact balance", ""),
        ("hi", ""),
    ]


def test_typos_keep_the_empty_kb_ids() -> None:
    questions = [
        (f"can you tell me a joke about branch number {i}", "" if i % 2 else "branches") for i in range(40)
    ]
    typed = with_typos(questions, 11)
    assert [e for _, e in typed] == [e for _, e in questions]
    assert sum(t != q for (t, _), (q, _) in zip(typed, questions, strict=True)) > 10


def _decided(route: Route, rule: str, kb_id: str | None = None, offered: tuple[str, ...] = ()) -> Decision:
    choices = tuple(entry_choice(f"about {e}", e) for e in offered) + (
        (Choice(SOMETHING_ELSE, HANDOFF_CHOICE),) if offered else ()
    )
    return Decision(route, "reply", rule, None, 0.5, kb_id, choices, rule=rule)


#: Questions naming an entry, what the policy did with each and the entries the search ranked.
NAMED = [
    (
        ("my card was stolen", "lost-card"),
        _decided(Route.INTENT, "intent", "lost-card"),
        ["lost-card", "card-late"],
    ),
    (
        ("where is my card", "card-late"),
        _decided(Route.FAQ, "best_entry", "lost-card"),
        ["lost-card", "card-late"],
    ),
    (
        ("card not here yet", "card-late"),
        _decided(Route.CLARIFY, "suggest", offered=("lost-card", "card-late")),
        ["card-late"],
    ),
    (("card???", "card-late"), _decided(Route.HANDOFF, "unsure"), []),
]
#: Questions no entry answers: four not answered (a handoff, small talk, the advice reply without an
#: entry, a suggestion to choose from), two answered anyway (an FAQ entry, an advice entry).
NO_ENTRY = [
    (("I want to complain about the branch manager", ""), _decided(Route.HANDOFF, "human"), ["lost-card"]),
    (("tell me a joke", ""), _decided(Route.SMALLTALK, "smalltalk"), []),
    (("should I buy shares", ""), _decided(Route.ADVICE, "advice"), []),
    (("what's my exact balance", ""), _decided(Route.FAQ, "best_entry", "card-late"), ["card-late"]),
    (("should I move my savings", ""), _decided(Route.ADVICE, "advice", "lost-card"), ["lost-card"]),
    (
        ("which card do you mean", ""),
        _decided(Route.CLARIFY, "suggest", offered=("lost-card",)),
        ["lost-card"],
    ),
]


def _measured(rows: list[tuple[tuple[str, str], Decision, list[str]]]) -> FaqEvaluation:
    return measure([q for q, _, _ in rows], [d for _, d, _ in rows], [r for _, _, r in rows])


def test_questions_no_entry_answers_are_measured_apart() -> None:
    alone = _measured(NAMED)
    # Interleaved with the questions no entry answers, the shares of the others do not move.
    mixed = _measured(NO_ENTRY[:2] + NAMED[:2] + NO_ENTRY[2:4] + NAMED[2:] + NO_ENTRY[4:])
    assert mixed.questions == alone.questions == 4
    for name in ("right", "wrong", "handed_off", "suggested", "retrieval_top1", "retrieval_top5", "by_rule"):
        assert getattr(mixed, name) == getattr(alone, name), name
    assert (alone.right, alone.wrong, alone.handed_off, alone.suggested) == (0.25, 0.25, 0.5, 0.25)
    assert (alone.retrieval_top1, alone.retrieval_top5) == (0.5, 0.75)
    assert alone.no_entry_questions == 0 and alone.no_entry_answered is None and alone.no_entry_by_rule == {}

    assert mixed.no_entry_questions == 6
    assert mixed.no_entry_answered == pytest.approx(2 / 6)
    assert mixed.no_entry_not_answered == pytest.approx(4 / 6)
    assert mixed.no_entry_by_rule == {
        "not_answered:human": 1,
        "not_answered:smalltalk": 1,
        "not_answered:advice": 1,
        "answered:best_entry": 1,
        "answered:advice": 1,
        "not_answered:suggest": 1,
    }
    verdicts = {o.text: o.verdict for o in mixed.outcomes}
    assert len(mixed.outcomes) == 10
    assert verdicts["what's my exact balance"] == "answered" and verdicts["tell me a joke"] == "not_answered"
    assert verdicts["my card was stolen"] == "right"
    assert not any(o.suggested for o in mixed.outcomes if not o.expected)


def test_a_file_of_questions_no_entry_answers_only() -> None:
    result = _measured(NO_ENTRY)
    assert result.questions == 0
    assert result.right is None and result.retrieval_top5 is None and result.by_rule == {}
    assert result.no_entry_questions == 6 and result.no_entry_answered == pytest.approx(2 / 6)
    assert result.to_dict()["right"] is None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("text,kb_id\nmy card, it was stolen,lost-card\n", r"line 2: 3 fields but the header has 2 .*quotes"),
        ("question,kb_id\nhi,lost-card\n", "missing column"),
        ("text,kb_id\n ,lost-card\n", "line 2: empty text"),
        ("text,kb_id\nhi,nope\n", "line 2: kb_id 'nope' is not an entry of the FAQ file"),
        ("text,kb_id\ntell me a joke,\nhi,nope\n", "line 3: kb_id 'nope' is not an entry of the FAQ file"),
        ("text,kb_id\n", "no questions"),
    ],
)
def test_a_bad_questions_file_names_the_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "q.csv"
    path.write_text(content)
    with pytest.raises(InputError, match=message):
        read_questions(path, {"lost-card"})


#: A bank's FAQ file: one entry declaring the intent it answers, one no intent covers.
BANK_FAQ = (
    "id,question,answer,intent\n"
    "bank-card-arrival,When will my new card get here?,Cards arrive within 5 working days.,card_arrival\n"
    "bank-lockers,Do you rent safe deposit boxes?,Yes: boxes from 25 a year at 40 branches.,\n"
)


def test_the_evaluation_names_every_entry_that_answers_an_intent(teller_env: Path, tmp_path: Path) -> None:
    """An intent declared in the FAQ file counts as answered by its entry, as one taken over in the
    import does (the summary named only the latter: "0 entries answer an intent")."""
    from bot.faq_eval import evaluate_operator_faq
    from bot.settings import get_settings

    kb = tmp_path / "bank.csv"
    kb.write_text(BANK_FAQ, encoding="utf-8")
    questions = tmp_path / "questions.csv"
    questions.write_text(
        "text,kb_id\nmy card still hasn't come,bank-card-arrival\ncan I rent a locker,bank-lockers\n",
        encoding="utf-8",
    )
    result = evaluate_operator_faq(get_settings(), kb, questions)
    assert result.questions == 2
    assert result.import_summary["linked"].get("bank-card-arrival") == "card_arrival"
    assert "bank-lockers" not in result.import_summary["linked"]
    assert (result.import_summary["added"], result.import_summary["unchanged"]) == (2, 0)


def test_the_evaluation_of_a_file_added_before_says_its_entries_were_there(
    teller_env: Path, tmp_path: Path, wide_console: None
) -> None:
    """A trial ran `kb add` first, then `teller eval --kb` of the same file, and read "import: 0
    added, 0 updated" as an import that did nothing."""
    from tests.test_cli import run

    kb = tmp_path / "bank.csv"
    kb.write_text(BANK_FAQ, encoding="utf-8")
    questions = tmp_path / "questions.csv"
    questions.write_text("text,kb_id\nmy card still hasn't come,bank-card-arrival\n", encoding="utf-8")
    assert run("kb", "add", str(kb))[0] == 0
    code, stdout, stderr = run("eval", "--kb", str(kb), "--questions", str(questions))
    assert code == 0, stderr
    assert "import: 0 added, 0 updated (2 in the knowledge base already, as in the file), " in stdout


def test_teller_eval_prints_the_questions_no_entry_answers(
    teller_env: Path, monkeypatch: pytest.MonkeyPatch, wide_console: None
) -> None:
    from tests.test_cli import run

    measured = {
        "mixed.csv": _measured(NO_ENTRY[:2] + NAMED + NO_ENTRY[2:]),
        "named.csv": _measured(NAMED),
        "none.csv": _measured(NO_ENTRY),
    }
    monkeypatch.setattr(
        "bot.faq_eval.evaluate_operator_faq", lambda settings, kb, questions, typos: measured[questions.name]
    )
    code, stdout, stderr = run("eval", "--kb", "bank.csv", "--questions", "mixed.csv")
    assert code == 0, stderr
    assert "4 questions about bank.csv: answered with the bank's entry 25.0%" in stdout
    assert (
        "6 questions no entry answers (kb_id empty): not answered 66.7% (handed off 1, small talk 1, "
        "offered an adviser 1, clarified 1), answered from the FAQ anyway 33.3%"
    ) in stdout
    # The ones answered anyway are listed with the others not right; those not answered are not.
    assert "what's my exact balance" in stdout and "(none)" in stdout
    assert "tell me a joke" not in stdout

    code, stdout, _ = run("eval", "--kb", "bank.csv", "--questions", "named.csv")
    assert code == 0 and "4 questions about bank.csv" in stdout and "no entry answers" not in stdout

    code, stdout, stderr = run("eval", "--kb", "bank.csv", "--questions", "none.csv")
    assert code == 0, stderr
    assert "6 questions about bank.csv, none naming an entry (every kb_id is empty)" in stdout
    assert "not answered 66.7%" in stdout and "retrieval alone" not in stdout

    code, stdout, _ = run("eval", "--kb", "bank.csv", "--questions", "mixed.csv", "--json")
    data = json.loads(stdout)
    assert (data["questions"], data["right"], data["no_entry_questions"]) == (4, 0.25, 6)
    assert data["no_entry_by_rule"]["answered:best_entry"] == 1
    assert [o["verdict"] for o in data["outcomes"][:2]] == ["not_answered", "not_answered"]


def test_questions_no_entry_answers_do_not_move_the_figures_of_the_others(
    teller_env: Path, tmp_path: Path
) -> None:
    """A bank's questions its FAQ should not answer, put in the same file: the shares of the
    questions naming an entry are the same as without them, the others measured apart."""
    from bot.faq_eval import evaluate_operator_faq
    from bot.settings import get_settings
    from tests.test_cli import run

    kb = tmp_path / "bank.csv"
    kb.write_text(BANK_FAQ, encoding="utf-8")
    named = ["my card still hasn't come,bank-card-arrival", "can I rent a locker,bank-lockers"]
    no_entry = ["tell me a joke,", "what's my exact balance", "I want to complain about the branch manager,"]
    files = {}
    for name, rows in (
        ("named", named),
        ("mixed", [no_entry[0], named[0], *no_entry[1:], named[1]]),
        ("none", no_entry),
    ):
        files[name] = tmp_path / f"{name}.csv"
        files[name].write_text("text,kb_id\n" + "\n".join(rows) + "\n", encoding="utf-8")

    alone = evaluate_operator_faq(get_settings(), kb, files["named"]).to_dict()
    code, stdout, stderr = run("eval", "--kb", str(kb), "--questions", str(files["mixed"]), "--json")
    assert code == 0, stderr
    mixed = json.loads(stdout)
    for name in (
        "questions",
        "right",
        "wrong",
        "handed_off",
        "suggested",
        "retrieval_top1",
        "retrieval_top5",
    ):
        assert mixed[name] == alone[name], name
    assert mixed["by_rule"] == alone["by_rule"]
    assert alone["no_entry_questions"] == 0 and alone["no_entry_answered"] is None
    assert mixed["no_entry_questions"] == 3
    outcomes = [o for o in mixed["outcomes"] if o["expected"] == ""]
    assert [o["text"] for o in outcomes] == [q.rstrip(",") for q in no_entry]
    answered = [o["route"] in ("intent", "faq", "advice") and o["kb_id"] is not None for o in outcomes]
    assert [o["verdict"] for o in outcomes] == ["answered" if a else "not_answered" for a in answered]
    assert mixed["no_entry_answered"] == pytest.approx(sum(answered) / 3)
    assert mixed["no_entry_not_answered"] == pytest.approx(1 - sum(answered) / 3)
    assert sum(mixed["no_entry_by_rule"].values()) == 3

    code, stdout, stderr = run("eval", "--kb", str(kb), "--questions", str(files["none"]), "--json")
    assert code == 0, stderr
    only = json.loads(stdout)
    assert only["questions"] == 0 and only["right"] is None and only["no_entry_questions"] == 3

    bad = tmp_path / "bad.csv"
    bad.write_text("text,kb_id\ntell me a joke,\nwhere is my card,bank-card\n", encoding="utf-8")
    code, stdout, stderr = run("eval", "--kb", str(kb), "--questions", str(bad))
    assert code == 2
    assert "line 3: kb_id 'bank-card' is not an entry of the FAQ file" in stderr
    assert "Traceback" not in stdout + stderr
