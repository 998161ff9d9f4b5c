from __future__ import annotations

import codecs
from pathlib import Path

import pytest

from nlu.data import Example, hash_examples, load_corpus, read_labelled_csv, read_messages, stratified_split
from nlu.errors import DataError
from tests.conftest import write_csv


def test_read_labelled_csv_ignores_extra_columns_and_blank_rows(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text(
        "id,Text,category\n1,  my card   is lost ,lost_or_stolen_card\n,,\n2,rate?,exchange_rate\n"
    )
    assert read_labelled_csv(path) == [
        Example("my card is lost", "lost_or_stolen_card"),
        Example("rate?", "exchange_rate"),
    ]


def test_a_row_with_more_fields_than_the_header_is_refused_not_cut(tmp_path: Path) -> None:
    """An unquoted comma split a message: its first part was read as the whole message."""
    path = tmp_path / "d.csv"
    path.write_text("text,category\nmy card is lost,lost_or_stolen_card,\nmy card, it was stolen,x\n")
    with pytest.raises(DataError, match=r"line 3: 3 fields but the header has 2 .*double quotes"):
        read_labelled_csv(path)
    lines = tmp_path / "m.csv"
    lines.write_text("text\nhi, I lost my card\n")
    with pytest.raises(DataError, match="line 2: 2 fields but the header has 1"):
        read_messages(lines)
    # Quoted, the comma is the message's; empty cells past the header are no message's words.
    lines.write_text('text\n"hi, I lost my card",\n')
    assert read_messages(lines) == ["hi, I lost my card"]


def test_missing_columns_are_named(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "d.csv", [("hello", "x")], header=("message", "label"))
    with pytest.raises(DataError, match=r"missing columns 'text', 'category' \(found 'message', 'label'\)"):
        read_labelled_csv(path)


def test_empty_text_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text('text,category\nok,a\n"   ",b\n')
    with pytest.raises(DataError, match="line 3: empty text"):
        read_labelled_csv(path)


def test_wrong_encoding_is_a_clear_error_and_can_be_named(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes("text,category\nok,a\ncaf\u00e9 card,b\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"line 3: not valid utf-8 \(byte 0xe9\).*--encoding"):
        read_labelled_csv(path)
    assert read_labelled_csv(path, encoding="cp1252")[1].text == "caf\u00e9 card"


def test_utf16_with_bom_is_read(tmp_path: Path) -> None:
    path = tmp_path / "u16.csv"
    path.write_bytes(codecs.BOM_UTF16_LE + "text,category\nhello,a\n".encode("utf-16-le"))
    assert read_labelled_csv(path) == [Example("hello", "a")]


def test_binary_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_bytes(b"text,category\n\x00\x01\x02,a\n")
    with pytest.raises(DataError, match="binary"):
        read_labelled_csv(path)


def test_messages_keep_a_stray_nul_for_the_caller_to_drop(tmp_path: Path) -> None:
    """Customers' messages: a NUL is left for bot.core.message_text to drop (as from any channel); a
    corpus or a knowledge-base file holding one is still refused, and a messages file mostly NUL."""
    path = tmp_path / "m.txt"
    path.write_bytes(b"where is\x00 my card\n")
    assert read_messages(path) == ["where is\x00 my card"]
    with pytest.raises(DataError, match="binary"):
        read_labelled_csv(path)
    path.write_bytes("where is my card\n".encode("utf-16-le"))
    with pytest.raises(
        DataError, match=r"looks like UTF-16-LE without a byte-order mark.*--encoding utf-16-le"
    ):
        read_messages(path)


def test_utf16_without_a_bom_is_named(tmp_path: Path) -> None:
    """A trial's finding: UTF-16 without a byte-order mark was told to try cp1252, then that it was
    a binary file; it is told to name utf-16-le (or -be), and reads so."""
    path = tmp_path / "u16.csv"
    path.write_bytes("text,category\nit costs \u00a35,a\n".encode("utf-16-le"))
    with pytest.raises(DataError, match=r"e\.g\. --encoding utf-16-le"):
        read_labelled_csv(path)
    with pytest.raises(DataError, match="--encoding utf-16-be"):
        path.write_bytes("text,category\nhello,a\n".encode("utf-16-be"))
        read_labelled_csv(path)
    assert read_labelled_csv(path, encoding="utf-16-be") == [Example("hello", "a")]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        read_labelled_csv(tmp_path / "nope.csv")


def test_later_files_win_conflicts_and_duplicates_are_dropped(tmp_path: Path) -> None:
    base = write_csv(
        tmp_path / "a.csv",
        [("Where is my card", "card_arrival"), ("rate", "exchange_rate"), ("rate", "exchange_rate")],
    )
    fix = write_csv(tmp_path / "b.csv", [("where is my card", "card_delivery_estimate")])
    corpus = load_corpus([base, fix])
    assert corpus.duplicates_dropped == 1
    assert corpus.conflicts_resolved == 1
    assert Example("where is my card", "card_delivery_estimate") in corpus.examples
    assert len(corpus) == 2


def test_hash_ignores_order_but_not_content() -> None:
    a = [Example("x", "1"), Example("y", "2")]
    assert hash_examples(a) == hash_examples(list(reversed(a)))
    assert hash_examples(a) != hash_examples([Example("x", "1"), Example("y", "3")])


def test_stratified_split_is_per_category_and_deterministic() -> None:
    examples = [Example(f"t{i}", "a") for i in range(20)] + [Example(f"u{i}", "b") for i in range(10)]
    examples.append(Example("lonely", "c"))
    train, dev = stratified_split(examples, 0.2, seed=3)
    assert sorted(e.label for e in dev) == ["a"] * 4 + ["b"] * 2
    assert Example("lonely", "c") in train
    assert set(train).isdisjoint(dev)
    assert stratified_split(list(reversed(examples)), 0.2, seed=3) == (train, dev)
    assert stratified_split(examples, 0.2, seed=4)[1] != dev


def test_read_messages_csv_or_lines(tmp_path: Path) -> None:
    csv_path = write_csv(tmp_path / "m.csv", [("hi", "x"), ("", "y")])
    assert read_messages(csv_path) == ["hi", ""]
    lines = tmp_path / "m.txt"
    lines.write_text("first message\n\n  second  \n")
    assert read_messages(lines) == ["first message", "second"]
    # A .txt file is lines, even when its first message reads like a CSV header; another suffix
    # whose first line names the column is a CSV.
    lines.write_text("text, please, when my card ships\ntext\n")
    assert read_messages(lines) == ["text, please, when my card ships", "text"]
    other = tmp_path / "m.messages"
    other.write_text('text\n"hi, there"\n')
    assert read_messages(other) == ["hi, there"]
    no_text = write_csv(tmp_path / "bad.csv", [("hi",)], header=("message",))
    with pytest.raises(DataError, match="missing column 'text'"):
        read_messages(no_text)
