"""Labelled corpora (``text,category`` CSV files), message files, and the stratified dev split."""

from __future__ import annotations

import csv
import hashlib
import io
import random
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nlu.errors import DataError
from nlu.textio import read_text

TEXT_COLUMN = "text"
LABEL_COLUMN = "category"
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class Example:
    """One labelled message."""

    text: str
    label: str


@dataclass
class Corpus:
    """A de-duplicated, canonically ordered set of labelled examples.

    The order does not depend on the order of the input files, so the same data always hashes, and
    trains, the same way.
    """

    examples: list[Example]
    sources: list[str] = field(default_factory=list)
    duplicates_dropped: int = 0
    conflicts_resolved: int = 0

    @property
    def labels(self) -> list[str]:
        return sorted({e.label for e in self.examples})

    @property
    def texts(self) -> list[str]:
        return [e.text for e in self.examples]

    def label_counts(self) -> Counter[str]:
        return Counter(e.label for e in self.examples)

    def content_hash(self) -> str:
        """SHA-256 of the examples, independent of file names and order."""
        return hash_examples(self.examples)

    def __len__(self) -> int:
        return len(self.examples)


def normalize_text(text: str) -> str:
    """Collapse whitespace; the form in which texts are compared and stored."""
    return _SPACE.sub(" ", text).strip()


def text_key(text: str) -> str:
    """The identity of a text when texts are matched: whitespace collapsed, case folded."""
    return normalize_text(text).casefold()


def hash_examples(examples: Iterable[Example]) -> str:
    digest = hashlib.sha256()
    for ex in sorted(examples, key=lambda e: (e.label, e.text)):
        digest.update(f"{ex.label}\t{ex.text}\n".encode())
    return digest.hexdigest()


def _csv_rows(path: Path, text: str, required: Sequence[str]) -> Iterable[tuple[int, dict[str, str]]]:
    """Yield (line number, row) from CSV text whose header holds every ``required`` column."""
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise DataError(f"{path}: the file is empty") from None
    except csv.Error as exc:
        raise DataError(f"{path}, line 1: not a CSV header ({exc})") from None
    columns = [h.strip().lstrip("\ufeff").lower() for h in header]
    missing = [c for c in required if c not in columns]
    if missing:
        found = ", ".join(repr(c) for c in columns if c) or "nothing"
        raise DataError(
            f"{path}: missing column{'s' if len(missing) > 1 else ''} "
            f"{', '.join(repr(m) for m in missing)} (found {found}); "
            f"the first line must be a header with {', '.join(required)}"
        )
    index = {c: columns.index(c) for c in required}
    try:
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            if len(row) > len(header) and any(cell.strip() for cell in row[len(header) :]):
                # csv.reader would hand the extra cells over and only the first ones be read: a
                # message cut at its first unquoted comma, without a word.
                raise DataError(
                    f"{path}, line {reader.line_num}: {len(row)} fields but the header has "
                    f"{len(header)} (an unquoted comma in a message? Put such cells in double quotes)"
                )
            values = {c: (row[i] if i < len(row) else "") for c, i in index.items()}
            yield reader.line_num, values
    except csv.Error as exc:
        raise DataError(f"{path}, line {reader.line_num}: malformed CSV ({exc})") from None


def read_rows(
    path: str | Path, columns: Sequence[str], encoding: str | None = None
) -> list[tuple[int, dict[str, str]]]:
    """``(line number, {column: cell})`` for every non-blank row of a CSV file whose header names
    all ``columns`` (in any case; other columns are ignored). Raises :class:`DataError` for an
    unreadable file, a missing column, malformed CSV or a row with more fields than the header."""
    path = Path(path)
    return list(_csv_rows(path, read_text(path, encoding), columns))


def read_columns(
    path: str | Path, columns: Sequence[str], encoding: str | None = None
) -> list[dict[str, str]]:
    """The ``columns`` of every non-blank row of a CSV file whose header names them all."""
    return [row for _, row in read_rows(path, columns, encoding)]


def read_labelled_csv(path: str | Path, encoding: str | None = None) -> list[Example]:
    """Read a ``text,category`` CSV file (other columns are ignored)."""
    path = Path(path)
    examples = []
    for line, row in _csv_rows(path, read_text(path, encoding), (TEXT_COLUMN, LABEL_COLUMN)):
        text, label = normalize_text(row[TEXT_COLUMN]), row[LABEL_COLUMN].strip()
        if not text:
            raise DataError(f"{path}, line {line}: empty text")
        if not label:
            raise DataError(f"{path}, line {line}: empty category for {text[:40]!r}")
        examples.append(Example(text, label))
    if not examples:
        raise DataError(f"{path}: no examples after the header")
    return examples


def load_corpus(paths: Sequence[str | Path], encoding: str | None = None) -> Corpus:
    """Combine labelled CSV files into one :class:`Corpus`.

    Exact duplicates are dropped. When the same text carries different categories, the file named
    later wins (and within a file, the later line), so corrections can override a base corpus.
    """
    if not paths:
        raise DataError("no training data given")
    by_key: dict[str, Example] = {}
    duplicates = conflicts = 0
    for path in paths:
        for ex in read_labelled_csv(path, encoding):
            key = ex.text.casefold()
            previous = by_key.get(key)
            if previous is not None:
                if previous.label == ex.label:
                    duplicates += 1
                else:
                    conflicts += 1
            by_key[key] = ex
    examples = sorted(by_key.values(), key=lambda e: (e.label, e.text))
    return Corpus(examples, [str(p) for p in paths], duplicates, conflicts)


def read_messages(path: str | Path, encoding: str | None = None) -> list[str]:
    """Read messages to classify: a CSV with a ``text`` column, or one message per line.

    A ``.csv`` file must have the ``text`` column. A ``.txt`` file is one message per line, whatever
    its first line says ("text, please" or "text" is a customer's message there). Any other file is
    read as CSV when its first line is a header naming ``text``, otherwise line by line. Blank
    lines are skipped; CSV rows keep their place even when empty, so the caller can report them.

    Raises :class:`DataError` (a ``.csv`` without the ``text`` column, a row with more fields than
    the header, an unreadable or binary file). Control characters are left in the messages (a NUL
    too), for the caller to drop as it drops them from any message.
    """
    path = Path(path)
    # A NUL in a message is a control character like any other: bot.core.message_text drops it,
    # as every channel and the REST API do; a file mostly NUL is still refused as binary.
    content = read_text(path, encoding, stray_nul=True)
    suffix = path.suffix.lower()
    first = content.split("\n", 1)[0]
    header_cells = [c.strip().strip('"').lower() for c in first.split(",")]
    if suffix == ".csv" or (suffix != ".txt" and TEXT_COLUMN in header_cells):
        return [normalize_text(row[TEXT_COLUMN]) for _, row in _csv_rows(path, content, (TEXT_COLUMN,))]
    return [normalize_text(line) for line in content.splitlines() if line.strip()]


def stratified_split(
    examples: Sequence[Example], dev_fraction: float, seed: int
) -> tuple[list[Example], list[Example]]:
    """Split into (train, dev), holding out ``dev_fraction`` of every category.

    A category with a single example stays in train. The split depends only on the examples
    (in any order) and the seed.
    """
    if not 0.0 <= dev_fraction < 1.0:
        raise DataError(f"dev fraction must be in [0, 1), got {dev_fraction}")
    by_label: dict[str, list[Example]] = defaultdict(list)
    for ex in sorted(examples, key=lambda e: (e.label, e.text)):
        by_label[ex.label].append(ex)
    rng = random.Random(seed)
    train: list[Example] = []
    dev: list[Example] = []
    for label in sorted(by_label):
        group = by_label[label]
        rng.shuffle(group)
        n_dev = min(len(group) - 1, round(len(group) * dev_fraction)) if dev_fraction > 0 else 0
        dev.extend(group[:n_dev])
        train.extend(group[n_dev:])
    return train, dev
