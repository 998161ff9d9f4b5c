r"""Writing knowledge-base entries back out as CSV, JSON Lines or Markdown, for ``teller kb export``.

The contract is the round trip: :func:`retrieval.loaders.load_entries` of the written text gives
back exactly the entries written (ids, every phrasing in order, the answer with its newlines and
any ``|`` ``,`` ``"`` ``#`` in it, intent, tags), for entries as the importers make them (whitespace
normalised by :meth:`KBEntry.build`, which every file import and the knowledge base's own writers
use). What the plain formats could not hold is escaped, as :mod:`retrieval.loaders` documents: a
``|`` inside a phrasing (``\|``), a separator inside a tag, a Markdown answer line that would read
as a heading or a metadata line.

- ``jsonl``: one ``{"id", "questions", "answer", "intent", "tags"}`` object per line, non-ASCII
  text as is (U+0085, U+2028 and U+2029 as ``\u`` escapes: Python splits lines at them).
- ``csv``: ``id,question,answer,intent,tags`` with a header; phrasings joined by `` | ``, tags by
  ``, ``; fields quoted where needed (an answer keeps its newlines inside quotes). A cell that a
  spreadsheet would run as a formula (``=``, ``+``, ``-``, ``@``, tab, CR first) or that starts
  with ``'`` gets a leading ``'`` (:func:`nlu.textio.neutralise_cell`); the CSV reader drops it.
- ``md``: ``## first phrasing``, then ``id:``, ``intent:``, ``tags:``, ``also:`` lines (each
  once), a blank line, which ends the fields, and the answer; its first line escaped if it reads
  as a field (``\Tags: ...``), although after the blank line it would not (for the Teller versions
  that read it as a field). Markdown reads lines, so an answer holding a line break other than
  ``\n`` (``\r``, U+2028, ...) cannot be written as Markdown: that is refused, naming the entry.

A NUL character cannot be in a file the importers accept; an entry holding one is refused in
every format but JSON Lines (where it is escaped).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

from nlu.textio import neutralise_cell
from retrieval.entry import KBEntry
from retrieval.errors import RetrievalError
from retrieval.loaders import ESCAPE, PHRASING_SEPARATOR, TAG_SEPARATORS, markup_line

Format = Literal["csv", "jsonl", "md"]
FORMATS: tuple[Format, ...] = ("csv", "jsonl", "md")
#: File suffixes :func:`retrieval.loaders.load_entries` reads, by format.
SUFFIXES: dict[str, Format] = {
    ".csv": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
    ".md": "md",
    ".markdown": "md",
}
CSV_COLUMNS = ("id", "question", "answer", "intent", "tags")
#: Characters :meth:`str.splitlines` breaks at, besides ``\n``: Markdown cannot hold them in an answer.
_LINE_BREAKS = frozenset("\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")
_JSON_LINE_BREAKS = {"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def format_for(path: str | Path) -> Format:
    """The export format a file name asks for (``kb.csv`` -> ``csv``); :class:`RetrievalError` if none."""
    suffix = Path(path).suffix.lower()
    if Path(path).is_dir():
        raise RetrievalError(
            f"{path} is a directory; name the file to write (e.g. {Path(path) / 'kb.jsonl'})"
        )
    if suffix not in SUFFIXES:
        raise RetrievalError(
            f"{path}: cannot tell the format from {suffix or 'a name without a suffix'}; "
            "use .csv, .jsonl or .md (the suffixes `teller kb add` reads)"
        )
    return SUFFIXES[suffix]


def export_entries(entries: Iterable[KBEntry], format: str) -> str:
    """The text of a ``format`` file (``csv``, ``jsonl`` or ``md``) holding ``entries`` in order.

    Raises :class:`RetrievalError` for an unknown format, or an entry the format cannot hold
    (a NUL character; in Markdown, an answer with a line break other than ``\n``).
    """
    writers = {"csv": _csv, "jsonl": _jsonl, "md": _markdown}
    if format not in writers:
        raise RetrievalError(f"unknown export format {format!r}; use one of {', '.join(FORMATS)}")
    return writers[format](list(entries))


def join_items(items: Sequence[str], separators: str, joiner: str) -> str:
    """A list cell that :func:`retrieval.loaders.split_items` splits back into ``items``."""
    cell = ""
    for i, item in enumerate(items):
        escaped = "".join(ESCAPE + c if c in separators else c for c in item)
        if i:
            # "a\" + "," would read as an escaped comma; a space keeps them apart (items are stripped).
            cell += (" " if cell.endswith(ESCAPE) and not joiner[:1].isspace() else "") + joiner
        cell += escaped
    return cell


def _refuse_nul(entry: KBEntry, format: str) -> None:
    texts = [entry.id, entry.answer, entry.intent or "", *entry.questions, *entry.tags]
    if any("\x00" in t for t in texts):
        raise RetrievalError(
            f"entry {entry.id!r} contains a NUL character, which a {format} file cannot hold"
        )


def _jsonl(entries: list[KBEntry]) -> str:
    lines = []
    for e in entries:
        line = json.dumps(
            {
                "id": e.id,
                "questions": list(e.questions),
                "answer": e.answer,
                "intent": e.intent,
                "tags": list(e.tags),
            },
            ensure_ascii=False,
        )
        for char, escape in _JSON_LINE_BREAKS.items():
            line = line.replace(char, escape)
        lines.append(line + "\n")
    return "".join(lines)


def _csv(entries: list[KBEntry]) -> str:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(CSV_COLUMNS)
    for e in entries:
        _refuse_nul(e, "CSV")
        row = [
            e.id,
            join_items(e.questions, PHRASING_SEPARATOR, f" {PHRASING_SEPARATOR} "),
            e.answer,
            e.intent or "",
            join_items(e.tags, TAG_SEPARATORS, ", "),
        ]
        writer.writerow([neutralise_cell(cell) for cell in row])
    return buffer.getvalue()


def _markdown(entries: list[KBEntry]) -> str:
    blocks = []
    for e in entries:
        _refuse_nul(e, "Markdown")
        breaks = sorted({f"U+{ord(c):04X}" for c in e.answer if c in _LINE_BREAKS})
        if breaks:
            raise RetrievalError(
                f"entry {e.id!r}: its answer has a line break Markdown cannot hold ({', '.join(breaks)}); "
                "export as jsonl or csv"
            )
        lines = [f"## {e.questions[0]}", f"id: {e.id}"]
        if e.intent:
            lines.append(f"intent: {e.intent}")
        if e.tags:
            lines.append(f"tags: {join_items(e.tags, TAG_SEPARATORS, ', ')}")
        if len(e.questions) > 1:
            also = join_items(e.questions[1:], PHRASING_SEPARATOR, f" {PHRASING_SEPARATOR} ")
            lines.append(f"also: {also}")
        lines.append("")
        for number, line in enumerate(e.answer.split("\n")):
            lines.append(ESCAPE + line if markup_line(line, first=number == 0) else line)
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)
