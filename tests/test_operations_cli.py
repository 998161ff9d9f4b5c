"""``teller review``, ``teller flag`` and the operators' part of ``teller feedback list``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bot.storage import Store
from tests.test_cli import json_lines, run
from tests.test_review import say


@pytest.fixture()
def queue(teller_env: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Three questions that need review in the store; the terminal user is robin."""
    monkeypatch.setenv("LOGNAME", "robin")
    monkeypatch.setenv("USER", "robin")
    store = Store(teller_env / "teller.db")
    _, low = say(store, "My card hasn't arrived yet!", confidence=0.3, user="a")
    _, same = say(store, "my card hasnt arrived yet", route="handoff", user="b")
    store.feedback.add_feedback(same.id, False, "still waiting")
    _, faq = say(store, "What's the overdraft fee?", route="handoff", user="c")
    question, confident = say(store, "why was I charged twice", confidence=0.99, user="d")
    store.close()
    return {"low": low.id, "faq": faq.id, "question": question.id, "confident": confident.id}


def test_review_lists_merged_items_with_reasons_and_suggestions(queue: dict[str, str]) -> None:
    code, stdout, _ = run("review")
    assert code == 0
    stdout = " ".join(stdout.split())
    assert "2 review items" in stdout and "still waiting" in stdout and "KB overdraft_fee" in stdout
    code, stdout, _ = run("review", "list", "--json")
    card, fee = json_lines(stdout)
    assert code == 0 and (card["id"], card["count"], card["status"]) == (1, 2, "open")
    assert card["reasons"] == ["low_confidence", "handoff", "not_helpful"] and card["notes"] == [
        "still waiting"
    ]
    assert card["suggestion"]["kind"] == "intent" and card["suggestion"]["intent"]
    assert fee["suggestion"]["kind"] == "kb" and fee["suggestion"]["kb_id"] == "overdraft_fee"
    assert json_lines(run("review", "--json")[1]) == [card, fee]  # listing again files nothing new


def test_review_actions_and_their_effect_in_feedback_list(queue: dict[str, str]) -> None:
    run("review")
    code, stdout, _ = run("review", "choose", "1", "card_arrival")
    assert code == 0 and "Item 1 chosen (card_arrival); correction #1 recorded." in stdout
    code, stdout, _ = run("review", "confirm", "2", "--json")
    result = json.loads(stdout)
    assert code == 0 and result["item"]["status"] == "confirmed"
    assert (result["correction"]["kb_id"], result["correction"]["author"]) == ("overdraft_fee", "cli:robin")
    # The same question comes back with a complaint; the newer correction supersedes the older.
    store = Store(Path(os.environ["TELLER_HOME"]) / "teller.db")
    _, again = say(store, "MY CARD HASN'T ARRIVED YET", confidence=0.9, user="e")
    store.feedback.add_feedback(again.id, False)
    store.close()
    [item] = json_lines(run("review", "--json")[1])
    assert item["id"] == 3
    code, stdout, _ = run(
        "review", "wrong", "3", "Cards arrive within 5 working days; track yours in the app."
    )
    entry = "op_cards_arrive_within_5_working_days_track_yours_in"
    flat = " ".join(stdout.split())
    assert code == 0 and flat.startswith(
        f"Item 3 corrected ({entry}); knowledge-base entry "
        f"'{entry}' added and indexed; correction #3 recorded, superseding #1."
    )
    # Checked as `kb add` checks an entry, and only reported, with the command that would resolve it.
    assert f"`{entry}` overlaps" in flat and "still answers its own questions" in flat
    assert f"--by {entry}`" in flat
    [top] = json_lines(run("kb", "search", "my card hasn't arrived yet", "--json", "-k", "1")[1])
    assert top["id"] == entry and top["answer"].startswith("Cards arrive")
    records = json_lines(run("feedback", "list", "--json")[1])
    kinds = [r["kind"] for r in records]
    assert kinds == ["feedback", "feedback", "correction", "correction", "correction"]
    # each rated reply with the customer's question it answered (a trial read only the replies)
    assert all(r["question"] and r["question"] != r["reply"] for r in records if r["kind"] == "feedback")
    corrections = {r["id"]: r for r in records if r["kind"] == "correction"}
    assert corrections[1]["superseded"] and corrections[1]["superseded_by"] == 3
    assert corrections[1]["label"] == "card_arrival" and corrections[1]["author"] == "cli:robin"
    assert not corrections[3]["superseded"] and corrections[3]["kb_id"] == entry
    code, stdout, _ = run("feedback", "list")
    stdout = " ".join(stdout.split())
    assert code == 0 and "3 corrections" in stdout and "superseded by #3" in stdout and "in force" in stdout
    assert "question" in stdout
    code, stdout, _ = run("review", "--all", "--json")
    assert [r["status"] for r in json_lines(stdout)] == ["chosen", "confirmed", "corrected"]
    assert "The review queue is empty." in run("review")[1]


def test_review_ignore(queue: dict[str, str]) -> None:
    run("review")
    code, stdout, _ = run("review", "ignore", "2")
    assert code == 0 and "Item 2 ignored." in stdout
    assert [r["id"] for r in json_lines(run("review", "--json")[1])] == [1]


def test_flag_from_the_terminal(queue: dict[str, str]) -> None:
    assert run("review")[0] == 0  # items 1 and 2
    code, stdout, _ = run("flag", queue["question"], "--reason", "double charge is a known bug")
    assert code == 0 and f"Flagged {queue['confident']}; review item 3 (1 message)." in stdout
    [flag] = [r for r in json_lines(run("feedback", "list", "--json")[1]) if r["kind"] == "flag"]
    assert (flag["message_id"], flag["actor"], flag["source"]) == (queue["confident"], "cli:robin", "cli")
    assert flag["reason"] == "double charge is a known bug"
    assert "1 flags" in run("feedback", "list")[1]
    [item] = [r for r in json_lines(run("review", "--json")[1]) if r["id"] == 3]
    assert item["reasons"] == ["flagged"] and item["notes"] == ["double charge is a known bug"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["review", "confirm", "99"], "no review item 99"),
        (
            ["review", "choose", "1", "card_arival"],
            "unknown intent 'card_arival' (and no knowledge-base entry has that id); "
            "did you mean card_arrival?",
        ),
        (["review", "wrong", "1", "  "], "the corrected answer is empty"),
        (["flag", "m_nope"], "no message 'm_nope'"),
    ],
)
def test_bad_input_is_one_clear_line(queue: dict[str, str], args: list[str], message: str) -> None:
    run("review")
    code, stdout, stderr = run(*args)
    assert code == 2 and stderr.strip() == f"error: {message}"
    assert "Traceback" not in stdout + stderr


def test_a_settled_item_cannot_be_settled_again(queue: dict[str, str]) -> None:
    run("review")
    assert run("review", "ignore", "1")[0] == 0
    code, _, stderr = run("review", "confirm", "1")
    assert code == 2 and "review item 1 is ignored already (by cli:robin)" in stderr
    assert "flag Teller's latest answer to it" in " ".join(stderr.split())  # how to change it


def test_a_corrected_answer_is_published_to_the_other_replicas_at_once(
    queue: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With replication on, `review wrong` appends its entry to the change log before it exits (a
    trial found it only there after the next `teller kb` command: other replicas never saw it)."""
    monkeypatch.setenv("TELLER_KB_REPLICATION", "on")
    run("review")
    code, _, _ = run("review", "wrong", "2", "The overdraft fee is 5 pounds a month.")
    assert code == 0
    store = Store(Path(os.environ["TELLER_HOME"]) / "teller.db")
    try:
        logged = {c.item_id: c for c in store.kb_log.since(0)}
    finally:
        store.close()
    [entry_id] = [i for i in logged if i.startswith("op_")]
    payload = logged[entry_id].payload
    assert payload is not None and "5 pounds" in json.dumps(payload)
