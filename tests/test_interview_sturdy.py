"""The interview's bugs of issue #16, fixed in the engine and the session so that the terminal and
Slack both get the fixes: pasted lists, numbers with thousands separators, commands only as exact
words (or after a slash), ``cancel`` confirmed, ``resume`` after ``pause``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.storage import Store
from positioning.engine import ACTIVE, CANCELLED, InterviewEngine, InterviewState, parse_answer, parse_number
from positioning.script import DEFAULT_SCRIPT, load_script
from positioning.session import InterviewService, parse_command, parse_start
from tests.test_interview import ANSWERS

SCRIPT = load_script(DEFAULT_SCRIPT)


@pytest.fixture()
def service(tmp_path: Path) -> Iterator[InterviewService]:
    store = Store(tmp_path / "p.db")
    yield InterviewService(InterviewEngine(SCRIPT), store.interviews)
    store.close()


def state_of(service: InterviewService, user: str = "pm") -> InterviewState:
    state = service.store.active_for(user)
    assert state is not None
    return state


def answer_up_to(service: InterviewService, question: str, user: str = "pm") -> None:
    """Start an interview and answer every question before ``question``."""
    service.start_or_resume(user, new=True)
    while state_of(service, user).current != question:
        reply = service.handle(user, ANSWERS[state_of(service, user).current or ""])
        assert reply.turn is not None and reply.turn.error is None, reply.text


# --------------------------------------------------------------------------------- pasted lists


def test_a_list_pasted_in_the_terminal_is_one_answer_up_to_an_empty_line(service: InterviewService) -> None:
    answer_up_to(service, "user_traits")
    pasted = iter(["mobile-first", "travels abroad often", "pays by phone", "", "the next answer"])
    typed = service.read_answer(state_of(service), lambda _prompt: next(pasted))
    assert typed == "mobile-first\ntravels abroad often\npays by phone"
    service.handle("pm", typed)
    state = state_of(service)
    assert state.answers["user_traits"] == ["mobile-first", "travels abroad often", "pays by phone"]
    assert state.current == "needs" and next(pasted) == "the next answer"  # left for the next question


def test_a_terminal_reads_one_line_for_other_questions_and_commands_at_once(
    service: InterviewService,
) -> None:
    service.start_or_resume("pm")
    lines = iter(["", "Teller", "ignored"])
    assert service.read_answer(state_of(service), lambda _p: next(lines)) == "Teller"  # blank lines skipped
    answer_up_to(service, "user_traits")
    lines = iter(["back", "more"])
    assert service.read_answer(state_of(service), lambda _p: next(lines)) == "back"  # not a list item

    def eof(_prompt: str) -> str:
        raise EOFError

    first = iter(["mobile-first"])
    assert service.read_answer(state_of(service), lambda p: next(first) if p == "> " else eof(p)) == (
        "mobile-first"
    )


def test_a_multi_line_chat_message_is_one_list_answer_and_bullets_are_dropped(
    service: InterviewService,
) -> None:
    answer_up_to(service, "needs")
    service.handle("pm", "• track a card that hasn't arrived | 5\n2. understand a fee | 4\n- advice | 2")
    assert state_of(service).answers["needs"] == [
        "track a card that hasn't arrived | 5",
        "understand a fee | 4",
        "advice | 2",
    ]


# ------------------------------------------------------------------------------------- numbers


@pytest.mark.parametrize(
    ("question", "typed", "value"),
    [
        ("labelled_examples", "10,003", 10003),
        ("labelled_examples", "10 003", 10003),
        ("labelled_examples", "10\u202f003", 10003),
        ("labelled_examples", "10.003", 10003),  # a count: "." can only group thousands
        ("labelled_examples", "1,234,567", 1234567),
        ("labelled_examples", "1.234.567", 1234567),
        ("target_accuracy", "94.5", 94.5),
        ("target_accuracy", "94,5", 94.5),  # a decimal comma
        ("target_accuracy", "94%", 94),
        ("target_accuracy", "10.003", 10.003),  # not a count: a decimal point
        ("competitor_coverage", "3", 3),
    ],
)
def test_numbers_with_thousands_separators(question: str, typed: str, value: float) -> None:
    parsed = parse_answer(SCRIPT.question(question), typed)
    assert parsed == value and type(parsed) is (float if question == "target_accuracy" else int)


@pytest.mark.parametrize(
    ("typed", "whole", "value"),
    [
        ("10,003.5", False, 10003.5),
        ("10.003,5", False, 10003.5),
        ("10 003,5", False, 10003.5),
        ("1'234", False, 1234.0),
        ("0,125", False, 0.125),
        ("2,5", True, 2.5),  # for the caller to refuse as not whole
        ("12345,678", False, 12345.678),
        ("-3", False, -3.0),
    ],
)
def test_the_number_rule(typed: str, whole: bool, value: float) -> None:
    assert parse_number(typed, whole) == value


@pytest.mark.parametrize("typed", ["1,23,456", "10 3", "1,234.5.6", "1e3", "nan", "", "ten"])
def test_what_is_not_a_number(typed: str) -> None:
    with pytest.raises(ValueError, match="please answer with a number"):
        parse_number(typed)


def test_a_separated_number_out_of_range_says_how_it_was_read() -> None:
    with pytest.raises(ValueError, match=r"at most 100 \(read 10,003 as 10003\)"):
        parse_answer(SCRIPT.question("target_accuracy"), "10,003")


def test_a_number_typed_in_a_chat_keeps_its_thousands(service: InterviewService) -> None:
    answer_up_to(service, "labelled_examples")
    service.handle("pm", "10,003")
    assert state_of(service).answers["labelled_examples"] == 10003


# ------------------------------------------------------------------------------------ commands


@pytest.mark.parametrize(
    ("question", "typed"),
    [
        ("product", "Back-office assistant for tellers"),
        ("product", "Back to basics banking"),
        ("target_users", "Status-conscious professionals who bank on their phones"),
        ("target_users", "Status updates matter to them: people who track every payment"),
        ("gap", "Skip the queue: instant answers"),
        ("gap", "Pause-free answers, day and night"),
        ("gap", "Pause a card in one message, day and night"),
        ("gap", "Cancel anything in one message"),
        ("gap", "edit: instant, accurate answers"),
        ("target_users", "/r/UKPersonalFinance readers"),
        ("gap", "/ instant answers"),
        ("gap", "/instant answers, day and night"),
    ],
)
def test_an_answer_starting_with_a_command_word_is_an_answer(
    service: InterviewService, question: str, typed: str
) -> None:
    answer_up_to(service, question)
    service.handle("pm", typed)
    state = state_of(service)
    assert state.answers[question] == typed and state.current != question


def test_commands_are_exact_words_or_slash_prefixed(service: InterviewService) -> None:
    answer_up_to(service, "user_traits")
    assert state_of(service).current == "user_traits"
    service.handle("pm", "Back")
    assert state_of(service).current == "target_users"
    service.handle("pm", ANSWERS["target_users"])
    service.handle("pm", "/back")
    assert state_of(service).current == "target_users"
    assert "2 answers" in service.handle("pm", "/status").text
    assert "step 1 of 5" in service.handle("pm", "status.").text
    service.handle("pm", "/edit 1")
    assert state_of(service).current == "product"
    service.handle("pm", "edit target_users")
    assert state_of(service).current == "target_users"
    assert "not a command" in service.handle("pm", "/dance").text
    assert state_of(service).answers["target_users"] == ANSWERS["target_users"]
    assert parse_command("back\nto basics") is None  # several lines: an answer
    assert parse_command("edit the fee page", SCRIPT) is None


def test_cancel_asks_for_a_confirmation(service: InterviewService) -> None:
    answer_up_to(service, "user_traits")
    asked = service.handle("pm", "cancel")
    assert "Type yes to cancel it" in asked.text and state_of(service).status == ACTIVE
    carry_on = service.handle("pm", "no")
    assert "Not cancelled" in carry_on.text and carry_on.turn is not None
    assert carry_on.turn.prompt is not None and carry_on.turn.prompt.question.id == "user_traits"
    # Anything else than yes or no also keeps the interview, and counts as what it is (an answer).
    service.handle("pm", "/cancel")
    kept = service.handle("pm", ANSWERS["user_traits"])
    assert kept.text.startswith("Not cancelled.") and state_of(service).current == "needs"
    # Confirmed: cancelled (and its answers kept).
    service.handle("pm", "cancel")
    done = service.handle("pm", "yes")
    assert "was cancelled" in done.text and done.state.status == CANCELLED
    assert service.store.active_for("pm") is None
    assert done.state.answers["user_traits"] == ["mobile-first", "travels abroad"]


def test_resume_after_pause_resumes_and_is_not_an_answer(service: InterviewService) -> None:
    answer_up_to(service, "target_users")
    paused = service.handle("pm", "pause")
    assert "Paused" in paused.text and state_of(service).paused
    assert service.takes(state_of(service), "resume") and not service.takes(state_of(service), "hello")
    resumed = service.handle("pm", "resume")
    state = state_of(service)
    assert "Resuming interview" in resumed.text and not state.paused
    assert "target_users" not in state.answers and state.current == "target_users"
    assert resumed.turn is not None and resumed.turn.prompt is not None  # the question again
    # "resume" when not paused just shows the question; "/resume" too.
    assert (
        service.handle("pm", "/resume").turn is not None and "target_users" not in state_of(service).answers
    )


def test_a_paused_interview_still_takes_an_answer_typed_to_it(service: InterviewService) -> None:
    answer_up_to(service, "target_users")
    service.handle("pm", "pause")
    service.handle("pm", ANSWERS["target_users"])
    state = state_of(service)
    assert not state.paused and state.answers["target_users"] == ANSWERS["target_users"]


def test_start_words() -> None:
    assert parse_start("") == parse_start("start") == parse_start("  ")
    assert parse_start("new quick") == parse_start("quick new") == parse_start("--quick --new")
    quick = parse_start("quick")
    assert quick is not None and quick.mode == "quick" and not quick.new
    new = parse_start("new")
    assert new is not None and new.new and new.mode is None
    assert parse_start("status") is None and parse_start("quick full") is None
