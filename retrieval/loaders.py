r"""Importing knowledge-base files: CSV, JSON Lines, or Markdown with one ``## question`` per entry.

Every problem is reported with the file and line, and a file with any problem imports nothing.

Columns (CSV) and keys (JSONL) Teller does not read are reported, not refused: a bank's spreadsheet
may well carry a ``category`` or an ``owner`` column, and a note (:attr:`LoadedFile.notes`, printed
by ``teller kb add``/``sync``) says it was ignored. One that looks like a misspelling of a field the
file lacks (``intnet``, ``tag``) is refused, as a Markdown ``id:`` line that belongs to no entry is:
its values would be dropped where the operator meant them to count. A missing required column
names the column that looks like it (``anwser``); a column given twice is refused (only one could
be read). So is a Markdown line where an entry's ``id:``/``intent:``/``tags:``/``also:`` lines go
(:func:`misspelt_field`) whose key is close to one of those (``intnet:``, ``tag:``): read as the
answer's first line, it would be published to customers; and a Markdown field given twice in one
entry (two ``tags:`` lines: one would be dropped; ``also:`` lines add up, so may repeat).

A Markdown entry (:func:`_parse_markdown`) is its ``## question`` line, its fields (``id:``,
``intent:``, ``tags:``, ``also:`` lines, each optional) directly under it, and the answer: the
first line that is not a field, a blank line included, ends the fields, so once the answer has
started a line such as ``Tags: ...`` or ``Also: ...`` is answer text. Its first line is the one
place where either could be meant: after a blank line that follows the fields (or the ``## `` line),
a line that reads as a field (or a misspelt one) is refused, naming the line, since files written
before this rule could put a blank line before or among the fields, and an answer that starts
``Tags:`` is meant as text: neither is guessed. Such an answer is written ``\Tags: ...``.

Escapes, so that every entry can be written out and read back exactly (:mod:`retrieval.exporters`):

- In a list cell (the CSV ``question`` and ``tags`` columns, the Markdown ``also:`` and ``tags:``
  lines) a backslash before a separator makes it literal: ``\|`` is a ``|`` inside a phrasing,
  ``\,`` ``\;`` ``\|`` are those characters inside a tag. A backslash before anything else is
  an ordinary character, so ``C:\temp`` stays as written.
- In a Markdown answer, a line that would otherwise be read as markup, i.e. a ``## `` heading that
  would start a new entry, or (as the answer's first line) an ``id:``, ``intent:``, ``tags:`` or
  ``also:`` line or one refused as a misspelling of those (``Tag: ...``), is written with one
  leading backslash, which is dropped on reading; a line that starts with a backslash followed by
  such a line keeps all but one of its backslashes.
- In a CSV cell, one leading ``'`` (a spreadsheet's text marker, and how ``teller kb export``
  neutralises a cell a spreadsheet would run as a formula: ``'=1+1``, ``'-5 °C``) is dropped;
  a cell that starts with a literal ``'`` is written ``''``.

Files written before these escapes read as before, except the rare ``\|`` or ``\## `` they now
give a literal ``|`` or ``## `` (as Markdown renders them), and an answer's first line such as
``\Tag: x`` (now ``Tag: x``). Markdown files that put a blank line before or among an entry's
fields are refused at the first field after it (as above), never read otherwise without a word;
fields directly under the ``## `` line, as ``teller kb export`` writes them and the README shows,
read as before.
"""

from __future__ import annotations

import csv
import difflib
import io
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nlu.errors import DataError
from nlu.textio import read_text, restore_cell
from retrieval.entry import MAX_ANSWER_CHARS, MAX_QUESTION_CHARS, KBEntry, slugify
from retrieval.errors import KBFormatError

#: Several phrasings in one CSV cell or Markdown "also:" line are separated by " | ".
PHRASING_SEPARATOR = "|"
#: Tags are separated by any of these.
TAG_SEPARATORS = ",;|"
#: Before a separator (in a list cell) or a markup line (in a Markdown answer): take it literally.
ESCAPE = "\\"
_META = re.compile(r"^(id|intent|tags|also)\s*:\s*(.*)$", re.IGNORECASE)
#: The keys of a Markdown entry's metadata lines.
MARKDOWN_FIELDS = ("id", "intent", "tags", "also")
#: Those an entry may give on several lines (each ``also:`` line adds phrasings); the others once.
REPEATABLE_FIELDS = ("also",)
#: How a field given twice holds several values on its one line.
_SEVERAL = {"tags": "several tags go on it, separated by commas"}
#: Where a Markdown line is in its entry: directly under the heading (the fields), after a blank
#: line there (before the answer's first line), in the answer.
_FIELDS, _GAP, _ANSWER = "fields", "gap", "answer"
#: A line that looks like ``word: value``: one word of letters, a colon.
_FIELD_LIKE = re.compile(r"^([^\W\d_]+)\s*:", re.UNICODE)
#: The CSV columns Teller reads (the first three required), and the JSONL keys.
CSV_FIELDS = ("id", "question", "answer", "intent", "tags")
JSONL_FIELDS = ("id", "questions", "question", "answer", "intent", "tags")
#: How alike (:class:`difflib.SequenceMatcher` ratio) an unknown column must be to a field the file
#: lacks to be taken for its misspelling: ``intnet``/``intent`` 0.83, ``tag``/``tags`` 0.86, but
#: ``content``/``intent`` 0.77.
MISSPELLING_SIMILARITY = 0.8


@dataclass(frozen=True)
class LoadedFile:
    """A knowledge-base file as read: its entries in file order, and ``notes`` on what in it was
    ignored (one line each, naming the file: an unknown CSV column, an unknown JSONL key)."""

    entries: list[KBEntry]
    notes: list[str] = field(default_factory=list)


def load_entries(path: str | Path, encoding: str | None = None) -> list[KBEntry]:
    """Parse ``path`` by its suffix (``.csv``, ``.jsonl``/``.json``/``.ndjson``, ``.md``/``.markdown``):
    :func:`read_entries`'s entries. Raises :class:`KBFormatError` as it does."""
    return read_entries(path, encoding).entries


def read_entries(path: str | Path, encoding: str | None = None, allow_empty: bool = False) -> LoadedFile:
    """Parse ``path`` by its suffix, with notes on what was ignored (:class:`LoadedFile`).

    Raises :class:`KBFormatError` (naming the file and line) for an unknown suffix, a directory, an
    unreadable or empty file, a missing, repeated or misspelt column or key, or an invalid entry.
    With ``allow_empty``, a file that is empty on purpose (nothing but blank lines, or a CSV
    header alone) is read as no entries instead (``teller kb sync --allow-empty``: the knowledge
    base emptied on purpose). A file with other text but no entries (a Markdown file whose
    questions are not ``## `` headings, say) is refused either way: read as empty, it would empty
    the knowledge base.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    parsers = {
        ".csv": _parse_csv,
        ".jsonl": _parse_jsonl,
        ".ndjson": _parse_jsonl,
        ".json": _parse_jsonl,
        ".md": _parse_markdown,
        ".markdown": _parse_markdown,
    }
    if path.is_dir():
        raise KBFormatError(f"{path}: is a directory, not a knowledge-base file")
    if suffix not in parsers:
        raise KBFormatError(
            f"{path}: unknown file type {suffix or '(none)'!r}; use .csv, .jsonl (or .json, .ndjson) or .md"
        )
    try:
        text = read_text(path, encoding)
    except DataError as exc:
        raise KBFormatError(str(exc)) from None
    if allow_empty and not text.strip():
        return LoadedFile([])
    located, notes = parsers[suffix](path, text)
    if not located:
        header_only = parsers[suffix] is _parse_csv and len([x for x in text.splitlines() if x.strip()]) == 1
        if allow_empty and header_only:
            return LoadedFile([], notes)
        if parsers[suffix] is _parse_markdown:
            raise KBFormatError(
                f"{path}: no entries found; each entry starts with a line '## question' (two hashes, "
                "then a space)"
            )
        raise KBFormatError(f"{path}: no entries found")
    _check(path, located)
    return LoadedFile([entry for _, entry in located], notes)


Parsed = tuple[list[tuple[int, KBEntry]], list[str]]


def _shown(name: str) -> str:
    return f"`{name if len(name) <= 60 else name[:59] + '…'}`"


def _misspelt(name: str, absent: Sequence[str]) -> str | None:
    """The field of ``absent`` (fields the file lacks) that ``name`` looks like a misspelling of."""
    close = difflib.get_close_matches(name.lower(), absent, n=1, cutoff=MISSPELLING_SIMILARITY)
    return close[0] if close else None


def _misspellings(missing: Sequence[str], unknown: Sequence[str]) -> str:
    """`` (`anwser` for answer?)`` when an unknown name looks like a missing field, else ``""``."""
    guesses = []
    for name in unknown:
        meant = _misspelt(name, missing)
        if meant is not None:
            guesses.append(f"{_shown(name)} for {meant}?")
    return f" ({'; '.join(guesses)})" if guesses else ""


def _check(path: Path, located: list[tuple[int, KBEntry]]) -> None:
    first_line: dict[str, int] = {}
    for line, entry in located:
        problems = entry.problems()
        if problems:
            raise KBFormatError(f"{path}, line {line}: {'; '.join(problems)}")
        if entry.id in first_line:
            raise KBFormatError(
                f"{path}, line {line}: duplicate id {entry.id!r} (first on line {first_line[entry.id]})"
            )
        first_line[entry.id] = line


def split_items(cell: str, separators: str = PHRASING_SEPARATOR) -> list[str]:
    """The non-empty items of a list cell, split at unescaped ``separators`` (``\\|`` is a literal ``|``)."""
    parts: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(cell):
        char = cell[i]
        if char == ESCAPE and i + 1 < len(cell) and cell[i + 1] in separators:
            current.append(cell[i + 1])
            i += 2
            continue
        if char in separators:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
        i += 1
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def markup_line(line: str, first: bool) -> bool:
    """Whether a Markdown answer line would be read as markup (so is written escaped): a ``## ``
    heading, an ``id:``/``intent:``/``tags:``/``also:`` line or a misspelt one
    (:func:`misspelt_field`) when ``first`` (the answer's first line), or an escaped such line.

    Unescaped, such a first line is read as a field directly under the ``## `` line and refused
    after a blank line (either could be meant), so it is always written escaped."""
    if line.startswith("## ") or (
        first and (_META.match(line.strip()) is not None or misspelt_field(line) is not None)
    ):
        return True
    return line.startswith(ESCAPE) and markup_line(line[1:], first)


def misspelt_field(line: str) -> tuple[str, str] | None:
    """``(key as written, the field meant)`` when ``line`` looks like ``word: value`` and the word,
    not itself a field of :data:`MARKDOWN_FIELDS`, is close to one: its singular or plural
    (``tag``, ``ids``), or within an edit distance (letters inserted, deleted, replaced or two
    swapped) of 2 of ``intent`` and of 1 of the four-letter ``tags``/``also`` and of ``id``
    (``intnet``, ``itnent``, ``tgas``, ``aslo``, ``di``). Else None, as for "Note: ...", "Fees: none"
    or "Tip: ...": a bound of 2 on the short keys would take those ("tip"/``id``, "tax"/``tags``).
    Case is ignored."""
    match = _FIELD_LIKE.match(line.strip())
    if match is None:
        return None
    written = match.group(1)
    word = written.lower()
    if word in MARKDOWN_FIELDS:
        return None
    for name in MARKDOWN_FIELDS:
        if word in (name + "s", name.removesuffix("s")) or _edit_distance(word, name) <= (
            2 if len(name) > 4 else 1
        ):
            return written, name
    return None


def _edit_distance(a: str, b: str) -> int:
    """Letters inserted, deleted or replaced, or two adjacent ones swapped, to turn ``a`` into ``b``
    (optimal string alignment)."""
    previous: list[int] = []
    row = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        before, previous, row = previous, row, [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            row[j] = min(previous[j] + 1, row[j - 1] + 1, previous[j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                row[j] = min(row[j], before[j - 2] + 1)
    return row[len(b)]


def _parse_csv(path: Path, text: str) -> Parsed:
    # strict: an unterminated quote or text after a closing quote is an error, not a merged field.
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        raise KBFormatError(f"{path}: the file is empty") from None
    unknown = list(dict.fromkeys(h for h in header if h and h not in CSV_FIELDS))
    missing = [c for c in CSV_FIELDS[:3] if c not in header]
    if missing:
        # Excel saves "CSV" with semicolons where the decimal mark is a comma (much of Europe).
        other = next((sep for sep in (";", "\t", "|") if len(header) == 1 and sep in header[0]), None)
        hint = (
            f"; the header is separated by {'a tab' if other == chr(9) else repr(other)}: save the file "
            "as comma-separated CSV"
            if other
            else ""
        )
        raise KBFormatError(
            f"{path}, line 1: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)}"
            f"{_misspellings(missing, unknown)} (found {', '.join(h for h in header if h) or 'nothing'}); "
            f"expected id,question,answer[,intent,tags]{hint}"
        )
    for name in CSV_FIELDS:
        places = [str(i + 1) for i, h in enumerate(header) if h == name]
        if len(places) > 1:
            raise KBFormatError(
                f"{path}, line 1: column {name} is given {len(places)} times (columns "
                f"{', '.join(places)}); Teller reads one"
                + ("; several phrasings go in one cell, separated by ' | '" if name == "question" else "")
            )
    for name in unknown:
        meant = _misspelt(name, [c for c in CSV_FIELDS if c not in header])
        if meant is not None:
            raise KBFormatError(
                f"{path}, line 1: column {_shown(name)} is not a field Teller reads; is it {meant} "
                f"misspelt? Rename it (or remove it): its values would be ignored"
            )
    notes = []
    if unknown:
        some = len(unknown) > 1
        phrasings = [n for n in unknown if "question" in n or "phrasing" in n]
        notes.append(
            f"{path}: column{'s' if some else ''} {', '.join(_shown(n) for n in unknown)} "
            f"{'are not fields' if some else 'is not a field'} Teller reads; ignored "
            "(it reads id, question, answer, intent, tags)"
            + (
                "; more phrasings of an entry go in its question cell, separated by ' | '"
                if phrasings
                else ""
            )
        )
    col: dict[str, int] = {name: header.index(name) for name in CSV_FIELDS if name in header}
    filled: set[int] = set()  # columns with a value in some row
    entries = []
    try:
        for row in reader:
            if not any(c.strip() for c in row):
                continue
            filled.update(i for i, c in enumerate(row[: len(header)]) if c.strip())
            if len(row) > len(header) and any(c.strip() for c in row[len(header) :]):
                raise KBFormatError(
                    f"{path}, line {reader.line_num}: {len(row)} fields but the header has {len(header)} "
                    "(an unquoted comma in a question or answer? Put such cells in double quotes)"
                )

            def cell(name: str, row: list[str] = row) -> str:
                i = col.get(name)
                # A leading ' is a spreadsheet's text marker (and what `kb export` neutralises a
                # formula-like cell with): dropped, so export and import round-trip exactly.
                return restore_cell(row[i]) if i is not None and i < len(row) else ""

            entries.append(
                (
                    reader.line_num,
                    KBEntry.build(
                        cell("id"),
                        split_items(cell("question")),
                        cell("answer"),
                        cell("intent"),
                        split_items(cell("tags"), TAG_SEPARATORS),
                    ),
                )
            )
    except csv.Error as exc:
        if "field limit" in str(exc):  # csv's own cap (131,072 characters) is far above an entry's
            raise KBFormatError(
                f"{path}, line {reader.line_num}: a cell of over {csv.field_size_limit():,} characters; "
                f"an answer may have at most {MAX_ANSWER_CHARS:,} (MAX_ANSWER_CHARS), a question "
                f"{MAX_QUESTION_CHARS:,}"
            ) from None
        raise KBFormatError(f"{path}, line {reader.line_num}: malformed CSV ({exc})") from None
    # A misspelt column beside an empty one of the name it was meant to have ("intent" left blank,
    # the intents typed under "intnet"): its values would be lost, as above.
    empty = [name for name, i in col.items() if i not in filled]
    for name in unknown:
        meant = _misspelt(name, empty)
        if meant is not None and header.index(name) in filled:
            raise KBFormatError(
                f"{path}, line 1: column {meant} is empty and column {_shown(name)}, which Teller does "
                f"not read, is not: is it {meant} misspelt? Rename it (or remove one of them)"
            )
    nameless = [str(i + 1) for i, h in enumerate(header) if not h and i in filled]
    if nameless:
        notes.append(
            f"{path}: column{'s' if len(nameless) > 1 else ''} {', '.join(nameless)} "
            f"{'have' if len(nameless) > 1 else 'has'} values but no name in the header; ignored"
        )
    return entries, notes


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise TypeError("expected a string or a list of strings")


class RepeatedKey(ValueError):
    """A JSON object names a key twice (the key is the message). A ``ValueError``, as
    :func:`json.loads` raises, not a :class:`KBFormatError`: callers say where it was."""


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` for :func:`json.loads`: an object's pairs as a dict, raising
    :class:`RepeatedKey` for a key given twice (plain ``json.loads`` keeps the last value silently)."""
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise RepeatedKey(key)
        obj[key] = value
    return obj


#: What a JSON array where a JSONL file's entry should be is told (a trial's finding).
_ARRAY_HINT = (
    " (a JSONL file holds one entry object per line, not a JSON array: `teller kb export --format "
    "jsonl` writes one)"
)


def _parse_jsonl(path: Path, text: str) -> Parsed:
    entries = []
    ignored: dict[str, list[int]] = {}  # unknown key -> the lines it is on
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line, object_pairs_hook=unique_keys)
        except json.JSONDecodeError as exc:
            hint = _ARRAY_HINT if line.lstrip().startswith("[") else ""
            raise KBFormatError(f"{path}, line {number}: not valid JSON ({exc.msg}){hint}") from None
        except RepeatedKey as exc:
            raise KBFormatError(
                f"{path}, line {number}: key {_shown(str(exc))} is given twice in one entry (one of "
                "the two values would be dropped)"
            ) from None
        except RecursionError:
            raise KBFormatError(f"{path}, line {number}: nested too deeply to be an entry") from None
        except ValueError:  # int() of more digits than Python reads
            raise KBFormatError(f"{path}, line {number}: a number of too many digits") from None
        if not isinstance(obj, dict):
            hint = _ARRAY_HINT if isinstance(obj, list) else ""
            raise KBFormatError(f"{path}, line {number}: expected a JSON object{hint}")
        unknown = [k for k in obj if k not in JSONL_FIELDS]
        missing = [k for k in ("id", "answer") if k not in obj] + (
            [] if "questions" in obj or "question" in obj else ["questions"]
        )
        if missing:
            raise KBFormatError(
                f"{path}, line {number}: missing {', '.join(missing)}{_misspellings(missing, unknown)}"
            )
        for key in unknown:
            meant = _misspelt(key, [k for k in ("intent", "tags") if k not in obj])
            if meant is not None:
                raise KBFormatError(
                    f"{path}, line {number}: key {_shown(key)} is not a field Teller reads; is it {meant} "
                    "misspelt? Rename it (or remove it): its value would be ignored"
                )
            ignored.setdefault(key, []).append(number)
        try:
            questions = _as_list(obj.get("questions")) + _as_list(obj.get("question"))
            tags = _as_list(obj.get("tags"))
            intent = obj.get("intent")
            if intent is not None and not isinstance(intent, str):
                raise TypeError("intent must be a string or null")
            if not isinstance(obj["id"], str) or not isinstance(obj["answer"], str):
                raise TypeError("id and answer must be strings")
        except TypeError as exc:
            raise KBFormatError(f"{path}, line {number}: {exc}") from None
        entries.append((number, KBEntry.build(obj["id"], questions, obj["answer"], intent, tags)))
    notes = [
        f"{path}: key {_shown(key)} (line {lines[0]}"
        + (f" and {len(lines) - 1} more" if len(lines) > 1 else "")
        + ") is not a field Teller reads; ignored (it reads id, questions or question, answer, intent, tags)"
        for key, lines in ignored.items()
    ]
    return entries, notes


def _parse_markdown(path: Path, text: str) -> Parsed:
    r"""``## question`` starts an entry. Its fields, ``id:``, ``intent:``, ``tags:`` and ``also:`` lines
    (:data:`REPEATABLE_FIELDS` as often as wanted, the others once), are the lines directly under
    the heading; the first other line, a blank one included, ends them and starts the answer, in
    which a line such as ``Tags: ...`` is text. Refused (:class:`KBFormatError`, naming the line):

    - among the fields, a line whose key looks like a misspelling of a field (:func:`misspelt_field`)
      or a field given a second time: its value would be published, or one of the two dropped;
    - after a blank line that ends the fields (or follows the heading), a line that reads as a field
      (or a misspelt one) before the answer's first line: files written before this rule could put
      a blank line before or among the fields, and an answer may start ``Tags:``, so it is not known
      which was meant (``\Tags: ...`` is the answer; no blank line among fields makes it a field).
    """
    entries: list[tuple[int, KBEntry]] = []
    current: dict[str, Any] | None = None
    derived: dict[int, str] = {}  # line -> the id made from that entry's heading

    def finish() -> None:
        if current is None:
            return
        answer = "\n".join(current["body"]).strip()
        entry_id = current["id"] or slugify(current["questions"][0])
        if not current["id"]:
            derived[current["line"]] = entry_id
        entries.append(
            (
                current["line"],
                KBEntry.build(entry_id, current["questions"], answer, current["intent"], current["tags"]),
            )
        )

    for number, line in enumerate(text.splitlines(), start=1):
        if line.startswith("## "):
            finish()
            current = {
                "line": number,
                "questions": [line[3:].strip()],
                "id": "",
                "intent": None,
                "tags": [],
                "body": [],
                "given": {},  # field -> the line it is on
                # FIELDS: directly under the heading; GAP: after a blank line, before the answer's
                # first line; ANSWER: from the answer's first line on.
                "state": _FIELDS,
            }
            continue
        if current is None:
            # A title or an introduction before the first entry is fine; an entry's field is not (it
            # would be dropped: the operator meant it for an entry whose "## " line is missing).
            orphan = _META.match(line.strip())
            if orphan:
                raise KBFormatError(
                    f"{path}, line {number}: '{orphan.group(1).lower()}:' before the first '## question' "
                    "heading belongs to no entry (an entry starts with a line '## <question>')"
                )
            continue
        state = current["state"]
        meta = _META.match(line.strip()) if state != _ANSWER else None
        misspelt = misspelt_field(line) if state != _ANSWER and meta is None else None
        fieldlike = (meta.group(1), meta.group(1).lower()) if meta is not None else misspelt
        if state == _GAP and fieldlike is not None:
            written, meant = fieldlike
            raise KBFormatError(
                f"{path}, line {number}: '{written}:' follows a blank line before the answer: a field "
                f"('{meant}:'{'' if meta is not None else '?'}) or the answer's first line? An entry's "
                "fields go directly under its '## ' line with no blank line among them (remove the "
                f"blank line); an answer that starts so is written with a backslash first "
                f"('{ESCAPE}{written}: ...')"
            )
        if state == _FIELDS and meta:
            key, value = meta.group(1).lower(), meta.group(2).strip()
            if key in current["given"] and key not in REPEATABLE_FIELDS:
                raise KBFormatError(
                    f"{path}, line {number}: field '{key}:' is given twice in this entry (first on line "
                    f"{current['given'][key]}); an entry has one {key}: line"
                    + (f" ({_SEVERAL[key]})" if key in _SEVERAL else "")
                    + "; if it is the answer's first line, put a blank line before it and a backslash "
                    + f"first ('{ESCAPE}{meta.group(1)}: ...')"
                )
            current["given"].setdefault(key, number)
            if key == "also":
                current["questions"].extend(split_items(value))
            elif key == "tags":
                current["tags"] = split_items(value, TAG_SEPARATORS)
            else:
                current[key] = value
            continue
        if state == _FIELDS and misspelt is not None:
            written, meant = misspelt
            raise KBFormatError(
                f"{path}, line {number}: unknown field '{written}:' (did you mean '{meant}:'?); "
                f"an answer that starts so is written with a backslash first ('{ESCAPE}{written}: ...')"
            )
        if line.startswith(ESCAPE) and markup_line(line[1:], first=state != _ANSWER):
            line = line[1:]
        if not line.strip():
            if state == _FIELDS:
                current["state"] = _GAP
        else:
            current["state"] = _ANSWER
        current["body"].append(line)
    finish()
    # Two headings that give the same id (one differing only in punctuation, say): said as such,
    # with the way out, rather than as a plain duplicate id the file never wrote.
    first: dict[str, int] = {}
    for at, entry in entries:
        if entry.id in first and at in derived:
            raise KBFormatError(
                f"{path}, line {at}: this heading gives the id {entry.id!r}, as the entry on line "
                f"{first[entry.id]} does (an id is made from the heading's letters and digits): add an "
                "'id:' line directly under one of the two headings"
            )
        first.setdefault(entry.id, at)
    return entries, []
