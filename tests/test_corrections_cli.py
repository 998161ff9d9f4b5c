"""Corrections in the terminal: ``teller review choose`` shows the proposals it makes, ``teller review
proposals`` lists them, ``accept`` and ``reject`` decide them one by one or ``--all``, and ``teller
feedback list`` shows where each correction came from."""

from __future__ import annotations

import json
from pathlib import Path

from bot.settings import get_settings
from bot.storage import Store
from tests.test_cli import json_lines, run
from tests.test_corrections import CORRECTED, PARAPHRASES, UNRELATED, log


def test_review_choose_proposes_and_proposals_are_decided_one_by_one_or_all(teller_env: Path) -> None:
    store = Store(get_settings().database)
    try:
        log(store, [CORRECTED], "card_arrival")
        log(store, PARAPHRASES + UNRELATED, "card_arrival")
        messages = store.conversations.history()
        reply = next(m for m in messages if m.direction == "out" and m.reply_to is not None)
    finally:
        store.close()
    code, stdout, _ = run("flag", reply.id, "--json")
    assert code == 0
    item = json.loads(stdout)["item"]["id"]
    code, stdout, _ = run("ask", CORRECTED, "--json")
    read = json_lines(stdout)[0]["intent"]
    label = next(x for x in ("card_arrival", "lost_or_stolen_card", "exchange_rate") if x != read)

    code, stdout, _ = run("review", "choose", str(item), label)
    assert code == 0 and f"Item {item} chosen ({label}); correction #1 recorded." in stdout
    assert "may mean the same and are answered otherwise now" in stdout and "proposals" in stdout
    code, stdout, _ = run("review", "proposals", "--json")
    proposals = json_lines(stdout)
    assert proposals and all(p["correction_id"] == 1 and p["label"] == label for p in proposals)
    assert CORRECTED not in {p["text"] for p in proposals}
    code, stdout, _ = run("review")
    assert f"{len(proposals)} proposal(s) to correct like an earlier correction" in stdout

    # One by one, then the rest all at once.
    first, *rest = proposals
    code, stdout, _ = run("review", "accept", str(first["id"]), "--json")
    decided = json.loads(stdout)
    [confirmed] = decided["confirmed"]
    assert confirmed["correction"]["origin_id"] == 1 and confirmed["correction"]["label"] == label
    assert confirmed["correction"]["action"] == "proposal" and confirmed["correction"]["author"].startswith(
        "cli:"
    )
    code, stdout, _ = run("review", "reject", "--all")
    assert code == 0 and f"Confirmed 0, rejected {len(rest)}." in stdout
    code, stdout, _ = run("review", "proposals")
    assert "No proposals open." in stdout
    code, stdout, _ = run("review", "accept", str(first["id"]))
    assert code == 0 and "Confirmed 0, rejected 0; 1 decided already." in stdout
    code, _, stderr = run("review", "accept")
    assert code == 2 and "give proposal numbers" in stderr
    code, stdout, _ = run("feedback", "list")
    assert "proposed from #1" in stdout


def flagged_item() -> int:
    """A customer's :data:`CORRECTED` in the log, its answer flagged: the review item's id."""
    store = Store(get_settings().database)
    try:
        log(store, [CORRECTED], "card_arrival")
        reply = next(m for m in store.conversations.history() if m.direction == "out")
    finally:
        store.close()
    code, stdout, _ = run("flag", reply.id, "--json")
    assert code == 0, stdout
    return int(json.loads(stdout)["item"]["id"])


def test_removing_the_entry_a_correction_answers_with_says_so_and_the_list_shows_it(teller_env: Path) -> None:
    """A reviewer removed the entry an operator's correction answered with: `kb remove` said nothing
    of it, and `feedback list` still called the correction "in force" while the policy passed it by."""
    item = flagged_item()
    code, stdout, _ = run("review", "choose", str(item), "lost_or_stolen_card")
    assert code == 0 and "correction #1 recorded" in stdout
    code, stdout, _ = run("kb", "list", "--json")
    [entry] = [e["id"] for e in json_lines(stdout) if e.get("intent") == "lost_or_stolen_card"]
    code, stdout, _ = run("feedback", "list")
    assert "in force" in stdout

    # A sync whose file leaves the entry out says so in its dry run.
    export = teller_env / "export.jsonl"
    code, stdout, _ = run("kb", "export", "--format", "jsonl", "--out", str(export))
    lines = [line for line in export.read_text().splitlines() if f'"id": "{entry}"' not in line]
    export.write_text("\n".join(lines) + "\n")
    code, stdout, _ = run("kb", "sync", str(export), "--dry-run")
    said = " ".join(stdout.split())
    assert code == 0 and "correction #1 answers with an entry or an intent this change takes out" in said
    assert "would no longer apply" in said

    code, stdout, _ = run("kb", "remove", entry)
    said = " ".join(stdout.split())
    assert code == 0 and "correction #1 answers with an entry or an intent this change takes out" in said
    assert "no longer applies" in said
    code, stdout, _ = run("feedback", "list")
    assert "not applied (intent unanswered)" in " ".join(stdout.split())
    code, stdout, _ = run("feedback", "list", "--json")
    [record] = [r for r in json_lines(stdout) if r["kind"] == "correction"]
    assert record["not_applied"] == "no entry answers intent lost_or_stolen_card now"

    # Choosing an intent no entry answers now is recorded, with a warning that it does not apply yet.
    log_store = Store(get_settings().database)
    try:
        log(log_store, ["my card still has not come"], "card_arrival")
        reply = log_store.conversations.history()[-1]  # the answer to it
    finally:
        log_store.close()
    code, stdout, _ = run("flag", reply.id, "--json")
    item = json.loads(stdout)["item"]["id"]
    code, stdout, _ = run("review", "choose", str(item), "lost_or_stolen_card")
    said = " ".join(stdout.split())
    assert code == 0 and "warning: no knowledge-base entry answers intent lost_or_stolen_card now" in said


def test_superseding_the_entry_a_correction_answers_with_says_so(teller_env: Path) -> None:
    """A reviewer: `kb supersede` of an operator's review-queue entry warned of nothing, and `feedback
    list` then said the entry "was removed" where `kb restore` brings it back."""
    item = flagged_item()
    code, stdout, _ = run("review", "wrong", str(item), "Cash machines keep a card after three wrong PINs.")
    assert code == 0, stdout
    code, stdout, _ = run("feedback", "list", "--json")
    [record] = [r for r in json_lines(stdout) if r["kind"] == "correction"]
    entry = record["kb_id"]
    code, stdout, _ = run("kb", "list", "--json")
    other = next(e["id"] for e in json_lines(stdout) if e["id"] != entry)
    code, stdout, _ = run("kb", "supersede", entry, "--by", other)
    said = " ".join(stdout.split())
    assert code == 0 and "correction #1 answers with an entry or an intent this change takes out" in said
    code, stdout, _ = run("feedback", "list", "--json")
    [record] = [r for r in json_lines(stdout) if r["kind"] == "correction"]
    assert record["not_applied"].startswith(f"entry {entry} is superseded by {other}")


def test_a_correction_naming_an_intent_the_model_in_service_lacks_is_not_applied(teller_env: Path) -> None:
    """A reviewer activated a model trained without some intents: `feedback list` went on calling
    their corrections "in force" while the policy passed them by."""
    from bot.assistant import open_kb
    from bot.knowledge import unanswerable_corrections

    item = flagged_item()
    code, stdout, _ = run("review", "choose", str(item), "lost_or_stolen_card")
    assert code == 0 and "correction #1 recorded" in stdout
    # `ask --json` names the intent the answer is for beside the classifier's reading (a reviewer
    # read its `intent`, the classifier's, as the answer's, which the API's `intent` is).
    [asked] = json_lines(run("ask", CORRECTED, "--json")[1])
    assert asked["answered_intent"] == "lost_or_stolen_card" and asked["rule"] == "correction"
    store = Store(get_settings().database)
    kb = open_kb(get_settings())
    try:
        corrections = store.feedback.corrections()
        assert unanswerable_corrections(kb, corrections, frozenset({"lost_or_stolen_card"})) == {}
        [reason] = unanswerable_corrections(kb, corrections, frozenset({"card_arrival"})).values()
        assert (reason.kind, reason.reason) == (
            "intent not in model",
            "the model in service has no intent lost_or_stolen_card",
        )
    finally:
        kb.close()
        store.close()
