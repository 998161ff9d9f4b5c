"""Knowledge base: import formats, bad files, incremental FAISS updates, persistence and repair."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from retrieval.entry import KBEntry
from retrieval.errors import EntryNotFoundError, KBFormatError
from retrieval.exporters import export_entries
from retrieval.index import APPROX, EXACT, VectorIndex
from retrieval.knowledge_base import DEFAULT_KB_FILE, KnowledgeBase
from retrieval.loaders import ESCAPE, load_entries, markup_line
from tests.fakes import HashingEmbedder

ENTRIES = [
    KBEntry.build(
        "overdraft_fee",
        ["What's the overdraft fee?", "how much does an overdraft cost"],
        "Arranged overdrafts cost 19.9% EAR.",
        None,
        ["fees"],
    ),
    KBEntry.build(
        "card_arrival",
        ["where is my new card", "my card has not arrived"],
        "Cards arrive in 3-5 working days.",
        "card_arrival",
        ["cards"],
    ),
    KBEntry.build(
        "branch_hours", ["when are branches open"], "Branches open 9-5 on weekdays.", None, ["branches"]
    ),
]


@pytest.fixture()
def kb(tmp_path: Path) -> KnowledgeBase:
    kb = KnowledgeBase.open(tmp_path / "kb", HashingEmbedder(), seed=None)
    kb.add(ENTRIES)
    return kb


def test_search_finds_the_entry_by_any_phrasing(kb: KnowledgeBase) -> None:
    [hit, *_] = kb.search("how much does an overdraft cost me", k=2)
    assert hit.entry.id == "overdraft_fee"
    assert hit.question == "how much does an overdraft cost"
    assert 0 < hit.score <= 1.0001
    assert kb.search("my card", k=3)[0].entry.id == "card_arrival"
    assert len({h.entry.id for h in kb.search("card", k=3)}) == 3


def test_for_intent(kb: KnowledgeBase) -> None:
    assert kb.for_intent("card_arrival") == kb.get("card_arrival")
    assert kb.for_intent("exchange_rate") is None


def test_for_intent_gives_the_banks_own_entry_before_the_starters(tmp_path: Path) -> None:
    """As the answer policy picks among its search results: a starter entry restored beside the
    bank's entry on its intent answered a pressed "Did you mean" button while typed questions got
    the bank's."""
    kb = KnowledgeBase.open(tmp_path / "kb", HashingEmbedder(), seed=None)
    kb.add(ENTRIES, source="starter")
    assert kb.for_intent("card_arrival") == kb.get("card_arrival")
    ours = KBEntry.build("parcel", ["my new card has not come"], "Tracked: 2 days.", intent="card_arrival")
    kb.add([ours])
    assert kb.for_intent("card_arrival") == kb.get("parcel")


def test_adding_and_removing_is_incremental(tmp_path: Path) -> None:
    embedder = HashingEmbedder()
    kb = KnowledgeBase.open(tmp_path / "kb", embedder, seed=None)
    kb.add(ENTRIES)
    # Each phrasing and each answer (one sentence each, so one passage) is embedded once.
    assert len(embedder.embedded) == 5 + 3
    report = kb.add(
        [*ENTRIES[:2], KBEntry.build("atm", ["where is the nearest atm"], "Use the map in the app.")]
    )
    assert (report.added, report.unchanged, report.embedded) == (
        ["atm"],
        ["overdraft_fee", "card_arrival"],
        2,
    )
    assert len(embedder.embedded) == 10
    # New tags only need no embedding; a new answer or new questions embed only that entry.
    retagged = KBEntry.build("branch_hours", ["when are branches open"], ENTRIES[2].answer, None, ["hours"])
    assert kb.add([retagged]).embedded == 0
    changed = KBEntry.build(
        "branch_hours", ["when are branches open"], "Branches open 9-6 on weekdays.", None, ["branches"]
    )
    assert kb.add([changed]).embedded == 2
    assert kb.get("branch_hours").answer == "Branches open 9-6 on weekdays."
    kb.add([KBEntry.build("branch_hours", ["opening times of branches", "branch hours"], "9-6.")])
    assert len(embedder.embedded) == 15 and len(kb.index) == 11
    keys_before = dict(kb._keys)
    kb.remove("overdraft_fee")
    assert len(kb.index) == 8
    assert all(kb._keys[k] == v for k, v in keys_before.items() if k != "overdraft_fee")
    assert "overdraft_fee" not in [h.entry.id for h in kb.search("overdraft fee", k=5)]
    with pytest.raises(EntryNotFoundError):
        kb.remove("overdraft_fee")


def test_restart_loads_without_re_embedding(kb: KnowledgeBase, tmp_path: Path) -> None:
    kb.close()
    embedder = HashingEmbedder()
    again = KnowledgeBase.open(tmp_path / "kb", embedder, seed=None)
    assert [e.id for e in again.entries()] == [e.id for e in ENTRIES]
    assert embedder.embedded == []
    assert again.search("overdraft cost", k=1)[0].entry.id == "overdraft_fee"


def test_a_crash_between_database_and_index_is_repaired(kb: KnowledgeBase, tmp_path: Path) -> None:
    # Simulate a crash after the database commit but before the index reached disk.
    kb._db.execute("UPDATE entries SET indexed = 0 WHERE id = 'branch_hours'")
    kb._db.conn.commit()
    kb.close()
    embedder = HashingEmbedder()
    again = KnowledgeBase.open(tmp_path / "kb", embedder, seed=None)
    assert embedder.embedded == ["when are branches open", "Branches open 9-5 on weekdays."]
    assert again.search("when are branches open", k=1)[0].entry.id == "branch_hours"


class _Variant(HashingEmbedder):
    """The same model run by another graph: vectors a little off the plain ones."""

    variant = "w8"

    def embed(self, texts: list[str]) -> np.ndarray:  # type: ignore[override]
        vectors = super().embed(texts) + 0.01
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


class _Broken(_Variant):
    """That graph failing to export (or to run) at the first embedding."""

    def embed(self, texts: list[str]) -> np.ndarray:  # type: ignore[override]
        raise RuntimeError("export failed")


def _texts(entries: list[KBEntry]) -> list[str]:
    return sorted(t for e in entries for t in (*e.questions, e.answer))


def test_another_graph_of_the_same_model_embeds_every_entry_again(kb: KnowledgeBase, tmp_path: Path) -> None:
    revision = kb.revision
    kb.close()
    variant = _Variant()
    again = KnowledgeBase.open(tmp_path / "kb", variant, seed=None)
    assert sorted(variant.embedded) == _texts(ENTRIES)
    assert (again.get_meta("embedder"), again.get_meta("embedder_variant")) == (
        "test-hashing:64",
        f"w8@{revision}",
    )
    query = variant.embed(["when are branches open"])
    assert again.search_vectors(query, 1)[0][0].question_score == pytest.approx(1.0, abs=1e-5)
    # A change made by this graph keeps the mark up to date: nothing to embed at the next open.
    new = KBEntry.build("lost_pin", ["i forgot my pin"], "Reset it in the app.", None, [])
    again.add([new])
    assert again.get_meta("embedder_variant") == f"w8@{revision + 1}"
    again.close()
    variant = _Variant()
    KnowledgeBase.open(tmp_path / "kb", variant, seed=None).close()
    assert variant.embedded == []
    # Opened by the plain graph: everything once more.
    plain = HashingEmbedder()
    KnowledgeBase.open(tmp_path / "kb", plain, seed=None).close()
    assert sorted(plain.embedded) == _texts([*ENTRIES, new])


def test_a_change_by_a_teller_that_records_no_graph_is_embedded_again(
    kb: KnowledgeBase, tmp_path: Path
) -> None:
    """A rolled-back Teller moves the revision but not the graph's mark: its vectors are its own
    graph's, so the next open by this one embeds every entry again."""
    kb.close()
    KnowledgeBase.open(tmp_path / "kb", _Variant(), seed=None).close()
    earlier = KnowledgeBase.open(tmp_path / "kb", _Variant(), seed=None)
    earlier._variant_marker = lambda revision: "earlier Teller"  # type: ignore[method-assign]
    earlier.add([KBEntry.build("lost_pin", ["i forgot my pin"], "Reset it in the app.", None, [])])
    earlier._db.execute("UPDATE meta SET value = ? WHERE key = 'embedder_variant'", ["w8@1"])
    earlier._db.conn.commit()
    earlier.close()
    variant = _Variant()
    KnowledgeBase.open(tmp_path / "kb", variant, seed=None).close()
    assert len(variant.embedded) == len(_texts(ENTRIES)) + 2


def test_a_failed_export_leaves_the_graph_unmarked(kb: KnowledgeBase, tmp_path: Path) -> None:
    kb.close()
    with pytest.raises(RuntimeError, match="export failed"):
        KnowledgeBase.open(tmp_path / "kb", _Broken(), seed=None)
    # An earlier Teller opening it meanwhile repairs with its own graph; this one still re-embeds.
    KnowledgeBase.open(tmp_path / "kb", HashingEmbedder(), seed=None).close()
    variant = _Variant()
    KnowledgeBase.open(tmp_path / "kb", variant, seed=None).close()
    assert sorted(variant.embedded) == _texts(ENTRIES)


def test_another_model_is_refused(kb: KnowledgeBase, tmp_path: Path) -> None:
    from retrieval.errors import IndexCorruptError

    kb.close()
    other = HashingEmbedder()
    other.name = "another-model"
    with pytest.raises(IndexCorruptError, match="built with embedder test-hashing:64"):
        KnowledgeBase.open(tmp_path / "kb", other, seed=None)


def test_changes_from_another_process_are_picked_up(kb: KnowledgeBase, tmp_path: Path) -> None:
    """Two instances on one directory stand for the server and a terminal (own SQLite connections)."""
    embedder = HashingEmbedder()
    terminal = KnowledgeBase.open(tmp_path / "kb", embedder, seed=None)
    assert kb.refresh() is False  # nothing changed: one pragma, no reload
    new = KBEntry.build("lost_pin", ["i forgot my pin"], "Reset it in the app.", None, [])
    terminal.add([new])
    assert "lost_pin" not in kb
    assert kb.refresh() is True and kb.refresh() is False
    assert kb.get("lost_pin") == new
    assert kb.search("i forgot my pin", k=1)[0].entry.id == "lost_pin"
    terminal.remove("branch_hours")
    assert kb.refresh() is True and "branch_hours" not in kb
    assert all(h.entry.id != "branch_hours" for h in kb.search("when are branches open", k=3))
    # The server reused the terminal's index file.
    assert embedder.embedded == ["i forgot my pin", "Reset it in the app."]


def test_a_stale_writer_does_not_drop_the_other_writers_entries(kb: KnowledgeBase, tmp_path: Path) -> None:
    terminal = KnowledgeBase.open(tmp_path / "kb", HashingEmbedder(), seed=None)
    terminal.add([KBEntry.build("lost_pin", ["i forgot my pin"], "Reset it in the app.", None, [])])
    # The server, not yet refreshed, writes too: it catches up first, so its index file has both.
    kb.add([KBEntry.build("iban", ["what is my iban"], "It is in the app under Account.", None, [])])
    kb.close()
    terminal.close()
    embedder = HashingEmbedder()
    again = KnowledgeBase.open(tmp_path / "kb", embedder, seed=None)
    assert embedder.embedded == []  # no repair needed
    assert again.search("i forgot my pin", k=1)[0].entry.id == "lost_pin"
    assert again.search("what is my iban", k=1)[0].entry.id == "iban"


def test_default_kb_seeds_once(tmp_path: Path) -> None:
    kb = KnowledgeBase.open(tmp_path / "kb", HashingEmbedder(), seed=DEFAULT_KB_FILE)
    count = len(kb)
    assert count >= 77 + 40
    kb.remove("overdraft_fee")
    kb.close()
    assert len(KnowledgeBase.open(tmp_path / "kb", HashingEmbedder(), seed=DEFAULT_KB_FILE)) == count - 1


def test_default_kb_covers_every_intent() -> None:
    intents = json.loads((Path(__file__).parents[1] / "nlu/corpora/banking77/categories.json").read_text())
    entries = load_entries(DEFAULT_KB_FILE)
    assert {e.intent for e in entries if e.intent} == set(intents)
    assert sum(e.intent is None for e in entries) >= 40
    assert any("advice" in e.tags for e in entries)


# ------------------------------------------------------------------------------------------ file formats


def test_csv_jsonl_and_markdown(tmp_path: Path) -> None:
    csv_file = tmp_path / "kb.csv"
    csv_file.write_text(
        "id,question,answer,intent,tags\nfee,What is the fee? | How much is it,It is free.,,fees; general\n"
    )
    [entry] = load_entries(csv_file)
    assert entry == KBEntry(
        "fee", ("What is the fee?", "How much is it"), "It is free.", None, ("fees", "general")
    )

    jsonl = tmp_path / "kb.jsonl"
    jsonl.write_text(
        json.dumps({"id": "a", "question": "q?", "answer": "A.", "intent": "card_arrival"})
        + "\n\n"
        + json.dumps({"id": "b", "questions": ["x", "y"], "answer": "B.", "tags": "cards"})
        + "\n"
    )
    assert [(e.id, e.questions, e.intent, e.tags) for e in load_entries(jsonl)] == [
        ("a", ("q?",), "card_arrival", ()),
        ("b", ("x", "y"), None, ("cards",)),
    ]

    md = tmp_path / "kb.md"
    md.write_text(
        "# Our FAQ\n\n## What's the overdraft fee?\nid: overdraft\ntags: fees\nalso: overdraft cost\n\n"
        "It costs 19.9% EAR.\n\nNo fixed fee.\n\n## Branch hours?\nNine to five.\n"
    )
    first, second = load_entries(md)
    assert first == KBEntry(
        "overdraft",
        ("What's the overdraft fee?", "overdraft cost"),
        "It costs 19.9% EAR.\n\nNo fixed fee.",
        None,
        ("fees",),
    )
    assert (second.id, second.answer) == ("branch_hours", "Nine to five.")


MISSPELT = "# Our FAQ\n\n## When will my card arrive?\nid: card_delivery\n{line}\ntags: cards\n\nFive days.\n"


@pytest.mark.parametrize(
    ("line", "written", "meant"),
    [
        ("intnet: card_arrival", "intnet", "intent"),
        ("tag: fees", "tag", "tags"),
        ("Tgas: fees", "Tgas", "tags"),
        ("aslo: where is my card", "aslo", "also"),
        ("ids: card_delivery", "ids", "id"),
        ("intents : card_arrival", "intents", "intent"),
    ],
)
def test_a_misspelt_markdown_field_is_refused_not_published(
    tmp_path: Path, line: str, written: str, meant: str
) -> None:
    """Among an entry's metadata lines, a key close to id/intent/tags/also is a typo: read as the
    answer's first line, it would be published to customers."""
    path = tmp_path / "kb.md"
    path.write_text(MISSPELT.format(line=line), encoding="utf-8")
    message = f"line 5: unknown field '{written}:' (did you mean '{meant}:'?)"
    with pytest.raises(KBFormatError, match=re.escape(f"{path}, {message}")):
        load_entries(path)


def test_an_answer_may_start_with_a_word_and_a_colon(tmp_path: Path) -> None:
    """Only a key close to a field counts, and only where the metadata lines go."""
    path = tmp_path / "kb.md"
    path.write_text(
        "## When will my card arrive?\nid: card_delivery\n\nNote: cards arrive in 5 days.\n"
        "tag: not metadata here\n\n## What do you charge?\ntags: fees\n\nFees: none\n\n"
        "## Any tips?\n\nTip: keep your PIN to yourself.\n\n## Tax?\nTax: 20% on interest.\n\n"
        "## Spelt as a field?\n\\Intnet: is how it is spelt, taken literally.\n",
        encoding="utf-8",
    )
    assert [e.answer for e in load_entries(path)] == [
        "Note: cards arrive in 5 days.\ntag: not metadata here",
        "Fees: none",
        "Tip: keep your PIN to yourself.",
        "Tax: 20% on interest.",
        "Intnet: is how it is spelt, taken literally.",
    ]


def test_an_answer_starting_like_a_misspelt_field_is_exported_escaped(tmp_path: Path) -> None:
    entries = [
        KBEntry.build("tagged", ["Tagged?"], "Tag: looks like a misspelt field\nTag: a later line"),
        KBEntry.build("escaped", ["Escaped?"], "\\intnet: starts with a backslash"),
    ]
    path = tmp_path / "kb.md"
    path.write_text(export_entries(entries, "md"), encoding="utf-8")
    assert "\n\\Tag: looks like" in path.read_text() and "\nTag: a later line" in path.read_text()
    assert load_entries(path) == entries


@pytest.mark.parametrize(
    ("lines", "line", "field", "first"),
    [
        ("id: card_delivery\nid: card-delivery", 5, "id", 4),
        ("intent: card_arrival\ntags: cards\nIntent: card_delivery_estimate", 6, "intent", 4),
        ("tags: cards\nalso: where is my card\ntags: delivery", 6, "tags", 4),
        ("TAGS : cards\ntags:", 5, "tags", 4),
    ],
)
def test_a_markdown_field_given_twice_is_refused_with_its_line(
    tmp_path: Path, lines: str, line: int, field: str, first: int
) -> None:
    """One of the two would be dropped without a word: refused, naming the file, the line and the field."""
    path = tmp_path / "kb.md"
    path.write_text(f"# Our FAQ\n\n## When will my card arrive?\n{lines}\n\nFive days.\n", encoding="utf-8")
    message = f"{path}, line {line}: field '{field}:' is given twice in this entry (first on line {first})"
    with pytest.raises(KBFormatError, match=re.escape(message)):
        load_entries(path)


def test_headings_without_latin_letters_get_ids_of_their_own(tmp_path: Path) -> None:
    """An id made from a heading with no Latin letter or digit is ``entry_`` and a digest of the
    heading (each was ``entry``, so a second such heading failed as a duplicate id)."""
    path = tmp_path / "kb.md"
    path.write_text(
        "## 如何开户\n在网上开户。\n\n## 如何销户\n来分行。\n\n## ???\nAsk us.\n", encoding="utf-8"
    )
    ids = [e.id for e in load_entries(path)]
    assert len(set(ids)) == 3 and all(re.fullmatch(r"entry_[0-9a-f]{8}", i) for i in ids)
    assert ids == [e.id for e in load_entries(path)]  # the same file gives the same ids
    path.write_text("## 如何开户 ?\n在网上开户。\n", encoding="utf-8")  # punctuation does not move it
    assert [e.id for e in load_entries(path)] == ids[:1]


def test_two_headings_giving_one_id_say_to_add_an_id_line(tmp_path: Path) -> None:
    path = tmp_path / "kb.md"
    path.write_text("## What is X?\nIt is X.\n\n## What is X!\nStill X.\n", encoding="utf-8")
    with pytest.raises(
        KBFormatError, match=re.escape(f"{path}, line 4: this heading gives the id 'what_is_x'")
    ):
        load_entries(path)
    path.write_text("## What is X?\nIt is X.\n\n## What is X!\nid: x-again\nStill X.\n", encoding="utf-8")
    assert [e.id for e in load_entries(path)] == ["what_is_x", "x-again"]


def test_a_jsonl_key_given_twice_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "kb.jsonl"
    path.write_text('{"id": "a", "question": "q?", "answer": "A.", "id": "b"}\n', encoding="utf-8")
    with pytest.raises(KBFormatError, match=re.escape(f"{path}, line 1: key `id` is given twice")):
        load_entries(path)
    for line, said in (
        ('{"id": "a", "question": "q?", "answer": "A.", "n": ' + "9" * 5000 + "}", "too many digits"),
        ("[" * 20_000 + "]" * 20_000, "nested too deeply"),
    ):
        path.write_text(line + "\n", encoding="utf-8")
        with pytest.raises(KBFormatError, match=re.escape(f"{path}, line 1: ") + ".*" + said):
            load_entries(path)


def test_also_lines_may_repeat_and_add_up(tmp_path: Path) -> None:
    path = tmp_path / "kb.md"
    path.write_text(
        "## When will my card arrive?\nalso: where is my card\ntags: cards\n"
        "Also: card delivery | card late\n\nFive days.\n",
        encoding="utf-8",
    )
    [entry] = load_entries(path)
    questions = ("When will my card arrive?", "where is my card", "card delivery", "card late")
    assert (entry.questions, entry.tags, entry.answer) == (questions, ("cards",), "Five days.")


def test_an_answer_may_start_with_a_field_name_once_the_fields_end(tmp_path: Path) -> None:
    """A line such as "Tags: ..." is the answer's once the answer has started (any line after its
    first), and its first line when escaped; "tags: x" is a field only among the lines directly under
    the '## ' line."""
    path = tmp_path / "kb.md"
    path.write_text(
        "## Can I label payments?\nid: labels\ntags: app\n\n\\Tags: add them to any payment in the app.\n\n"
        "Also: search by them.\n\n"
        "## Anything else?\nid: else\n\nWe open on Saturdays.\nintent: not a field here\n\n"
        "## Do I need ID?\nintent: verify_my_identity\n\n\\ID: a passport or a driving licence.\n\n"
        "## Spelt as a field?\nid: spelt\n\nA tag or an intent. Tag: or intnet: are words here.\n\n"
        "## Escaped?\nid: escaped\n\n\\Intent: the backslash is dropped, as before.\n",
        encoding="utf-8",
    )
    assert [(e.id, e.answer, e.intent, e.tags) for e in load_entries(path)] == [
        ("labels", "Tags: add them to any payment in the app.\n\nAlso: search by them.", None, ("app",)),
        ("else", "We open on Saturdays.\nintent: not a field here", None, ()),
        ("do_i_need_id", "ID: a passport or a driving licence.", "verify_my_identity", ()),
        ("spelt", "A tag or an intent. Tag: or intnet: are words here.", None, ()),
        ("escaped", "Intent: the backslash is dropped, as before.", None, ()),
    ]


@pytest.mark.parametrize(
    ("text", "line", "written", "meant"),
    [
        ("## Do I need ID?\n\nID: a passport or a driving licence.\n", 5, "ID", "'id:'"),
        ("## Where is my card?\n\nid: card_delivery\ntags: cards\n\nFive days.\n", 5, "id", "'id:'"),
        ("## Can I label payments?\n\n\nTag: add one in the app.\n", 6, "Tag", "'tags:'?"),
        # After fields and a blank line: a field among them (a blank line in an older file) or an
        # answer that starts so; before, the answer took the line and the field was lost.
        ("## Where is my card?\nid: card\n\nintent: card_arrival\n\nFive days.\n", 6, "intent", "'intent:'"),
        ("## Where is my card?\nid: card\n\nintnet: card_arrival\n\nFive days.\n", 6, "intnet", "'intent:'?"),
        ("## Can I label payments?\nid: labels\ntags: app\n\nTags: add them.\n", 7, "Tags", "'tags:'"),
        ("## Anything else?\nid: else\n\n\nalso: we open on Saturdays.\n", 7, "also", "'also:'"),
    ],
)
def test_a_field_after_a_blank_line_before_the_answer_is_refused(
    tmp_path: Path, text: str, line: int, written: str, meant: str
) -> None:
    """Files written before fields had to be directly under the '## ' line could put a blank line
    there: a field or the answer's first line, either could be meant, so neither is guessed."""
    path = tmp_path / "kb.md"
    path.write_text("# Our FAQ\n\n" + text, encoding="utf-8")
    message = f"{path}, line {line}: '{written}:' follows a blank line before the answer"
    with pytest.raises(KBFormatError, match=re.escape(message)) as caught:
        load_entries(path)
    assert f"a field ({meant}) or the answer's first line?" in str(caught.value)
    assert f"('\\{written}: ...')" in str(caught.value)
    path.write_text("# Our FAQ\n\n" + text.replace(f"\n{written}:", f"\n\\{written}:"), encoding="utf-8")
    assert load_entries(path)[0].answer.startswith(f"{written}:")


#: Answer lines that read, or once read, as markup: the fields in every case, misspellings of them,
#: headings, and backslashes before them; and lines that never did.
FIELD_LIKE_LINES = [
    f"{slash}{key}{space}: {value}"
    for key in (
        "id",
        "ID",
        "Intent",
        "intent",
        "TAGS",
        "Tags",
        "also",
        "Also",
        "tag",
        "Intnet",
        "Note",
        "Tip",
    )
    for slash in ("", "\\", "\\\\")
    for space in ("", " ")
    for value in ("x", "card_arrival | a, b", "")
] + ["## not a heading", "\\## escaped heading", "\\\\## two", "plain text", "C:\\temp", "\\"]


def _answers(count: int, seed: int = 0) -> list[str]:
    """``count`` answers of one to four lines, each a field-like line or plain text, seeded."""
    import random

    rng = random.Random(seed)
    answers = []
    for _ in range(count):
        lines = [rng.choice(FIELD_LIKE_LINES) for _ in range(rng.randint(1, 4))]
        if rng.random() < 0.3:
            lines.insert(rng.randint(1, len(lines)), "")
        answers.append("\n".join(lines))
    return answers


@pytest.mark.parametrize("fields", ["none", "all"])
def test_markdown_round_trips_answers_that_look_like_fields_exactly(tmp_path: Path, fields: str) -> None:
    """Property-style: whatever an answer's lines look like (each field, misspelt or not, in any
    case, a heading, backslashes before them), export then import gives back exactly the entries,
    and so does the file with the first line's escape removed, where the blank line ends the fields."""
    entries = []
    for number, answer in enumerate([*FIELD_LIKE_LINES, *_answers(400)]):
        entry = KBEntry.build(
            f"e{number}",
            [f"Question {number}?", *(["another | phrasing"] if fields == "all" else [])],
            answer,
            "card_arrival" if fields == "all" else None,
            ["a,b", "c"] if fields == "all" else [],
        )
        if entry.answer.strip():
            entries.append(entry)
    text = export_entries(entries, "md")
    path = tmp_path / "kb.md"
    path.write_text(text, encoding="utf-8")
    assert load_entries(path) == entries
    # Written by hand without the first line's escape, such an answer is refused with its line,
    # never read otherwise without a word.
    blocks = text.split("\n## ")
    unescaped = []
    for block, entry in zip(blocks, entries, strict=True):
        head, _, answer = block.partition("\n\n")
        first = entry.answer.split("\n")[0]
        if answer.startswith(ESCAPE) and not first.startswith(("## ", ESCAPE)):
            answer = answer[1:]
        unescaped.append(f"{head}\n\n{answer}")
    for number, (block, entry) in enumerate(zip(unescaped, entries, strict=True)):
        one = tmp_path / f"one{number}.md"
        one.write_text(block if number == 0 else f"## {block}", encoding="utf-8")
        try:
            assert load_entries(one) == [entry]
        except KBFormatError as exc:
            assert "follows a blank line before the answer" in str(exc)
            assert markup_line(entry.answer.split("\n")[0], first=True)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("a.csv", "id,answer\nx,y\n", "line 1: missing column question"),
        ("a.csv", "id,question,answer\nx,q,a\ny,q2,\n", "line 3: empty answer"),
        ("a.csv", "id,question,answer\nx,q,a\nx,q2,b\n", "line 3: duplicate id 'x' (first on line 2)"),
        ("a.jsonl", '{"id": "x", "question": "q", "answer": "a"}\n{"id": "y", \n', "line 2: not valid JSON"),
        ("a.jsonl", '{"id": "x", "answer": "a"}\n', "line 1: missing questions"),
        ("a.md", "## Question one\n\n## Question two\nAnswer.\n", "line 1: empty answer"),
        ("a.txt", "hello", "unknown file type"),
        ("a.csv", "", "the file is empty"),
    ],
)
def test_bad_files_are_refused_with_the_line(tmp_path: Path, name: str, content: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(KBFormatError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_entries(path)


def test_wrong_encoding_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes("id,question,answer\nx,caf\u00e9?,yes\n".encode("latin-1"))
    with pytest.raises(KBFormatError, match="line 2: not valid utf-8"):
        load_entries(path)


def test_a_bad_file_leaves_the_kb_unchanged(kb: KnowledgeBase, tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("id,question,answer\nnew1,q,a\nnew2,q2,\n")
    with pytest.raises(KBFormatError):
        kb.add_file(path)
    assert [e.id for e in kb.entries()] == [e.id for e in ENTRIES]


# ------------------------------------------------------------------------------------------ the index


def test_index_switches_to_approximate_and_keeps_recall(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(40, 32))
    vectors = (centers[rng.integers(0, 40, 3000)] + 0.3 * rng.normal(size=(3000, 32))).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    index = VectorIndex(32, approx_threshold=2000, target_recall=0.95)
    index.add(np.arange(1500, dtype=np.int64), vectors[:1500])
    assert index.kind == EXACT
    index.add(np.arange(1500, 3000, dtype=np.int64), vectors[1500:])
    assert index.kind == APPROX
    assert index.last_recall is not None and index.last_recall.recall >= 0.95
    assert index.check_recall(k=10).recall >= 0.95
    assert index.remove(np.arange(10, dtype=np.int64)) == 10
    assert len(index) == 2990
    index.save(tmp_path / "i.faiss")
    loaded = VectorIndex.load(tmp_path / "i.faiss", 32)
    assert loaded.kind == APPROX and len(loaded) == 2990
    assert set(loaded.search(vectors[20:21], 1)[1][0]) == {20}


def test_the_best_entry_s_confidence_reads_the_whole_result_list() -> None:
    """:class:`TopConfidence`: the best hit's evidence, its lead over the others by each kind of
    evidence, and the classifier agreeing that the best entry answers its intent."""
    from retrieval.knowledge_base import DEFAULT_TOP_CONFIDENCE, Hit, TopConfidence

    def hit(id_: str, score: float, q: float, a: float, lex: float, intent: str | None = None) -> Hit:
        return Hit(KBEntry.build(id_, [id_], "answer", intent=intent), score, id_, q, a, lex)

    best = hit("lost-card", 0.6, 0.7, 0.5, 0.4, intent="lost_or_stolen_card")
    other = hit("card-not-arrived", 0.4, 0.8, 0.3, 0.1)
    f = TopConfidence.features([best, other], "lost_or_stolen_card", 0.9)
    assert f.tolist() == pytest.approx([0.6, 0.7, 0.5, 0.4, 0.2, 0.0, 1.0, 1.0, -0.1, 0.2, 0.3, 0.9])
    assert TopConfidence.features([best, other], "card_arrival", 0.9)[-1] == 0.0
    assert TopConfidence.features([best], None)[5:8].tolist() == [1.0, 1.0, 1.0]
    assert len(DEFAULT_TOP_CONFIDENCE.weights) == len(f)
    assert DEFAULT_TOP_CONFIDENCE([]) == 0.0
    agreeing = DEFAULT_TOP_CONFIDENCE([best, other], "lost_or_stolen_card", 0.9)
    assert 0.0 < DEFAULT_TOP_CONFIDENCE([best, other], "card_arrival", 0.9) < agreeing < 1.0


def test_exporting_to_a_directory_says_so(tmp_path: Path) -> None:
    from retrieval.errors import RetrievalError
    from retrieval.exporters import format_for

    with pytest.raises(RetrievalError, match="is a directory; name the file to write"):
        format_for(tmp_path)


def test_a_semicolon_separated_faq_file_is_named_as_such(tmp_path: Path) -> None:
    """A trial's FAQ saved by Excel in a European locale (semicolons) got "missing columns id,
    question, answer (found id;question;answer)" with no word of the separator."""
    from retrieval.loaders import load_entries

    for sep, said in ((";", "';'"), ("\t", "a tab")):
        path = tmp_path / "faq.csv"
        path.write_text(sep.join(["id", "question", "answer"]) + "\n" + sep.join(["a", "b?", "c"]) + "\n")
        with pytest.raises(KBFormatError, match=f"separated by {said}: save the file as comma-separated CSV"):
            load_entries(path)
