"""``teller kb`` and the policy-aware ``ask`` / ``eval`` through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_cli import json_lines, run


def test_kb_add_list_search_remove(teller_env: Path, tmp_path: Path) -> None:
    before = len(json_lines(run("kb", "list", "--json")[1]))
    assert before >= 117
    md = tmp_path / "extra.md"
    md.write_text(
        "## Do you have a branch in Leeds?\nid: leeds_branch\ntags: branches\n\nNot yet: London, "
        "Manchester and Edinburgh.\n"
    )
    code, stdout, _ = run("kb", "add", str(md), "--json")
    assert code == 0 and json.loads(stdout)["added"] == ["leeds_branch"]
    [top, *_] = json_lines(run("kb", "search", "is there a Leeds branch", "--json", "-k", "3")[1])
    assert top["id"] == "leeds_branch" and top["score"] > 0.6
    listed = {e["id"]: e for e in json_lines(run("kb", "list", "--json")[1])}
    assert listed["leeds_branch"] == {
        "id": "leeds_branch",
        "questions": ["Do you have a branch in Leeds?"],
        "intent": None,
        "tags": ["branches"],
        "source": "bank",
    }
    starter = json_lines(run("kb", "list", "--json", "--starter")[1])
    assert len(starter) == before and {e["source"] for e in starter} == {"starter"}
    code, _, stderr = run("kb", "list", "--starter", "--superseded")
    assert code == 2 and "do not go together" in stderr
    assert run("kb", "remove", "leeds_branch")[0] == 0
    assert len(json_lines(run("kb", "list", "--json")[1])) == before


def test_kb_bad_file_names_the_line_and_changes_nothing(teller_env: Path, tmp_path: Path) -> None:
    before = run("kb", "list", "--json")[1]
    bad = tmp_path / "bad.csv"
    bad.write_text("id,question,answer\nnew_one,A question?,An answer.\nnew_two,Another?,\n")
    code, _, stderr = run("kb", "add", str(bad))
    assert code == 2 and "line 3: empty answer" in stderr
    assert run("kb", "list", "--json")[1] == before
    assert "no knowledge-base entry 'nope'" in run("kb", "remove", "nope")[2]


def test_kb_add_and_sync_refuse_a_misspelt_or_repeated_markdown_field_with_its_line(
    teller_env: Path, tmp_path: Path
) -> None:
    before = run("kb", "list", "--json")[1]
    bad = tmp_path / "faq.md"
    first = "## Do you have a branch in Leeds?\nid: leeds_branch\n\nNot yet.\n\n"
    for fields, message in [
        ("intnet: card_arrival", "line 8: unknown field 'intnet:' (did you mean 'intent:'?)"),
        (
            "tags: cards\ntags: delivery",
            "line 9: field 'tags:' is given twice in this entry (first on line 8)",
        ),
    ]:
        bad.write_text(
            f"{first}## When will my card arrive?\nid: bank-card-arrival\n{fields}\n\nFive days.\n"
        )
        for command in ("add", "sync"):
            code, stdout, stderr = run("kb", command, str(bad), *(["--yes"] if command == "sync" else []))
            said = " ".join(stderr.split())  # the terminal wraps long lines
            assert code == 2 and said.startswith("error:") and "Traceback" not in stdout + stderr
            assert message in said
    assert run("kb", "list", "--json")[1] == before


def test_ask_reports_route_answer_and_reason(teller_env: Path) -> None:
    [faq] = json_lines(run("ask", "What's the overdraft fee?", "--json")[1])
    assert (faq["route"], faq["kb_id"]) == ("faq", "overdraft_fee")
    assert "overdraft" in faq["answer"].lower() and "overdraft_fee" in faq["reason"]
    [hello] = json_lines(run("ask", "hello", "--json")[1])
    assert hello["route"] == "smalltalk" and hello["kb_id"] is None


def test_eval_scores_the_policy_on_oos_rows(teller_env: Path, tmp_path: Path, toy_csv: Path) -> None:
    data = tmp_path / "mixed.csv"
    data.write_text(toy_csv.read_text() + "what's the weather like in Paris,oos\nplay some jazz music,oos\n")
    code, stdout, _ = run("eval", "--data", str(data), "--json", "--out", str(tmp_path / "r"))
    assert code == 0
    report = json.loads(stdout)
    policy = report["policy"]
    assert (policy["in_scope"], policy["out_of_scope"]) == (80, 2)
    for key in ("answered_correctly", "oos_recall", "false_handoff", "clarify_rate"):
        assert 0.0 <= policy[key] <= 1.0
    assert sum(policy["routes"].values()) == 82
    assert report["n"] == 80  # the classifier is scored on in-scope rows only
    assert "## Policy" in (tmp_path / "r" / "report.md").read_text()


def test_removing_an_entry_names_the_general_entry_it_superseded(teller_env: Path, tmp_path: Path) -> None:
    md = tmp_path / "branches.md"
    md.write_text(
        "## What are your branch opening hours?\nid: bank-branches\n\n"
        "Our branches in Leeds and York are open Monday to Friday 9am-5pm and Saturday 10am-1pm, "
        "closed on Sundays and bank holidays; addresses are in the app under Help > Branches.\n"
    )
    code, stdout, _ = run("kb", "add", str(md))
    assert code == 0, stdout
    superseded = {e["id"] for e in json_lines(run("kb", "list", "--superseded", "--json")[1])}
    assert "branches_and_hours" in superseded, stdout
    code, stdout, _ = run("kb", "remove", "bank-branches")
    said = " ".join(stdout.split())
    assert code == 0 and "note: `branches_and_hours` was superseded by it and stays out of answers" in said
    assert "`teller kb restore branches_and_hours` puts it back" in said
    assert "warning" not in said  # no intent lost its answer


def test_removing_the_entry_that_answers_an_intent_warns_and_names_what_it_replaced(
    teller_env: Path, tmp_path: Path
) -> None:
    md = tmp_path / "card.md"
    md.write_text(
        "## When will my new card arrive?\nid: bank-card-arrival\nintent: card_arrival\n\n"
        "Cards from Harbour arrive within five working days.\n"
    )
    code, stdout, _ = run("kb", "add", str(md))
    assert code == 0, stdout
    code, stdout, _ = run("kb", "remove", "bank-card-arrival")
    assert code == 0
    said = " ".join(stdout.split())
    assert "warning: intent `card_arrival` has no answer entry now" in said
    assert "teller kb restore card_arrival" in said
    assert run("kb", "restore", "card_arrival")[0] == 0
    listed = {e["id"]: e for e in json_lines(run("kb", "list", "--json")[1])}
    # Back as it was: the starter's answer to its intent (not listed as the bank's own).
    assert (listed["card_arrival"]["source"], listed["card_arrival"]["intent"]) == ("starter", "card_arrival")


def test_an_added_entry_with_a_starter_entrys_id_is_named_as_replacing_the_starters(
    teller_env: Path, tmp_path: Path
) -> None:
    md = tmp_path / "hours.md"
    md.write_text(
        "## When are you open?\nid: branches_and_hours\n\nOur one branch in Hull opens 9am-4pm on weekdays.\n"
        "\n## Can I bank on a Sunday?\nid: bank-sunday\n\nOnly in the app; branches are closed on Sundays.\n"
    )
    code, stdout, _ = run("kb", "add", str(md), "--dry-run", "--json")
    plan = json.loads(stdout)
    assert code == 0 and plan["updated"] == ["branches_and_hours"]
    assert plan["starter_replaced"] == ["branches_and_hours"]
    code, stdout, _ = run("kb", "add", str(md))
    said = " ".join(stdout.split())
    assert code == 0 and "a starter entry had that id: replaced by yours" in said
    assert "(1): branches_and_hours" in said and "an entry with that id was there" not in said
    # Now the bank's: adding it again changed replaces the bank's own entry, said as such.
    md.write_text(md.read_text().replace("9am-4pm", "9am-5pm"))
    code, stdout, _ = run("kb", "add", str(md), "--dry-run")
    said = " ".join(stdout.split())
    assert "an entry with that id was there: replaced) (1): branches_and_hours" in said
    assert "a starter entry had that id" not in said


def test_kb_list_prints_a_record_per_entry_on_a_narrow_terminal(
    teller_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At 80 columns the table's columns beside the longest id were cut to "…" (a trial's finding):
    below :data:`bot.cli.knowledge.NARROW_COLUMNS` each entry is a record, its id whole."""
    from bot.cli.app import out

    md = tmp_path / "hours.md"
    md.write_text("## When are you open on Sundays?\nid: sunday-opening-hours-in-our-branches\n\nNever.\n")
    assert run("kb", "add", str(md))[0] == 0
    monkeypatch.setattr(out, "width", 80)
    code, stdout, _ = run("kb", "list")
    assert code == 0 and "…" not in stdout and "┃" not in stdout
    assert "sunday-opening-hours-in-our-branches  (bank)\n    When are you open on Sundays?" in stdout
    assert "card_arrival  (starter; intent card_arrival; tags: cards)" in stdout
    assert run("kb", "supersede", "card_arrival", "--by", "sunday-opening-hours-in-our-branches")[0] == 0
    code, stdout, _ = run("kb", "list", "--superseded")
    assert code == 0 and stdout.startswith("1 superseded\ncard_arrival  superseded by sunday-opening")
    assert "intent card_arrival moved" in stdout and "`teller kb restore ID`" in stdout
    monkeypatch.setattr(out, "width", 200)
    code, stdout, _ = run("kb", "list")
    assert code == 0 and "┃ id" in stdout and "sunday-opening-hours-in-our-branches" in stdout
