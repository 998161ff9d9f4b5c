"""``teller interview`` in the terminal, end to end, and ``teller brief`` on Teller's own log."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from bot.assistant import build_core
from bot.cli import app
from bot.core import Incoming
from bot.settings import get_settings
from positioning.script import load_script
from tests.test_cli import run
from tests.test_interview import ANSWERS

LISTS = {q.id for q in load_script().ordered() if q.type == "list"}


def typed(*answers: str) -> str:
    """What a PM types: each answer, and after a list's lines the empty line that ends it."""
    return "".join(f"{ANSWERS.get(a, a)}\n" + ("\n" if a in LISTS else "") for a in answers)


def test_terminal_interview_pause_resume_and_brief(teller_env: Path) -> None:
    core = build_core(get_settings())
    for i, text in enumerate(["What's the overdraft fee?", "hello", "what's the weather in Paris"]):
        reply = core.handle(Incoming("web", f"u{i}", f"u{i}", None, text))
        if reply.route == "faq":
            core.feedback(reply.message_id, False)
    core.close()

    runner = CliRunner()
    order = ["product", "target_users", "user_traits"]
    first = runner.invoke(app, ["interview"], input=typed(*order))
    assert first.exit_code == 0 and "Paused" in first.stdout and "step 1 of 5" in first.stdout

    rest = [q for q in ANSWERS if q not in order]
    second = runner.invoke(app, ["interview"], input=typed("back", "user_traits", *rest))
    assert second.exit_code == 0, second.output
    assert "Resuming interview" in second.stdout and "is complete" in second.stdout
    brief_path = Path(second.stdout.split("Brief: ")[1].split()[0])
    text = brief_path.read_text()
    assert "# Positioning brief: Teller, a chat assistant for Lumen Bank customers" in text
    assert "Positioning = P(D|U) x M" in text and "Messages: 3" in text
    assert "## The interview" in text and "Go-to-market and continuous optimisation" in text
    # The needs, pasted one per line, are one answer of three needs (not answers to the next questions).
    assert all(need in text for need in ("track a card", "understand a fee", "investment advice"))

    interview_id = brief_path.parent.name
    code, stdout, _ = run("brief", interview_id, "--json", "--days", "7")
    assert code == 0 and json.loads(stdout)["markdown"] == str(brief_path)
    code, _, stderr = run("brief", "iv_missing")
    assert code == 2 and "no interview 'iv_missing'" in stderr


def test_a_new_interview_names_the_one_left_in_progress_and_both_can_be_listed_and_resumed(
    teller_env: Path,
) -> None:
    runner = CliRunner()
    first = runner.invoke(app, ["interview"], input=typed("product"))
    assert first.exit_code == 0, first.output
    first_id = first.stdout.split("Interview ")[1].split(":")[0]
    second = runner.invoke(app, ["interview", "--new"], input="")
    assert second.exit_code == 0, second.output
    second_id = second.stdout.split("Interview ")[1].split(":")[0]
    assert second_id != first_id
    assert f"Interview {first_id} (1 answer so far) stays in progress" in second.stdout

    listed = runner.invoke(app, ["interview", "--list"])
    assert listed.exit_code == 0 and listed.stdout.index(second_id) < listed.stdout.index(first_id)
    assert "1 answer," in listed.stdout and "`" not in listed.stdout

    resumed = runner.invoke(app, ["interview", "--resume", first_id], input="")
    assert resumed.exit_code == 0, resumed.output
    assert f"Resuming interview {first_id} (1 answer so far)" in resumed.stdout
    code, _, stderr = run("interview", "--resume", "iv_missing")
    assert code == 2 and "no interview 'iv_missing'" in stderr
    code, _, stderr = run("interview", "--resume", first_id, "--new")
    assert code == 2 and "--resume carries on" in stderr


def test_no_interviews_listed_says_how_to_start_one(teller_env: Path) -> None:
    listed = CliRunner().invoke(app, ["interview", "--list"])
    assert listed.exit_code == 0 and "No interviews yet" in listed.stdout
