"""Reading text files whose encoding we do not control, with errors that say what to do."""

from __future__ import annotations

import codecs
from pathlib import Path

from nlu.errors import DataError

_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


#: A file of which at least this share of characters is NUL is not text, even when a reader takes a
#: stray NUL in a message: UTF-16 or UTF-32 without a byte-order mark read as UTF-8 (every second or
#: fourth character a NUL), or a binary file that happens to decode.
BINARY_NUL_SHARE = 0.1


def read_text(path: str | Path, encoding: str | None = None, *, stray_nul: bool = False) -> str:
    """Return the text of ``path``.

    Without ``encoding``, a byte-order mark decides (UTF-8, UTF-16 or UTF-32) and anything else must
    be UTF-8. A file that does not decode raises :class:`DataError` naming the line and the byte.
    A NUL character makes the file binary (:class:`DataError`), unless ``stray_nul`` (customers'
    messages, whose control characters, NUL included, the caller drops as every channel does): then
    only a file at least :data:`BINARY_NUL_SHARE` NUL is.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, not a file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    if encoding is None:
        encoding = next((name for bom, name in _BOMS if raw.startswith(bom)), "utf-8")
    try:
        text = raw.decode(encoding)
    except LookupError:
        raise DataError(f"{path}: unknown encoding {encoding!r}") from None
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        example = _utf16(raw) or "cp1252"
        raise DataError(
            f"{path}, line {line}: not valid {encoding} (byte 0x{raw[exc.start]:02x}). "
            f"Save the file as UTF-8, or name its encoding with --encoding (e.g. --encoding {example})."
        ) from None
    nuls = text.count("\x00")
    if nuls and (not stray_nul or nuls >= BINARY_NUL_SHARE * len(text)):
        if (utf16 := _utf16(raw)) is not None and encoding != utf16:
            raise DataError(
                f"{path}: contains NUL characters: it looks like {utf16.upper()} without a byte-order "
                f"mark; name its encoding with --encoding {utf16}, or save it as UTF-8"
            )
        raise DataError(f"{path}: contains NUL characters; this looks like a binary file, not text")
    return text


def _utf16(raw: bytes) -> str | None:
    """``"utf-16-le"`` or ``"utf-16-be"`` when ``raw`` reads as UTF-16 text without a byte-order mark
    (mostly Latin text: in its first 4,096 bytes at least a third of the bytes on one side of each
    pair are NUL and almost none on the other), else None. A trial's finding: such a file was told
    to try cp1252, then that it was binary."""
    head = raw[:4096]
    pairs = len(head) // 2
    if pairs < 2:
        return None
    even, odd = head[0 : pairs * 2 : 2].count(0) / pairs, head[1 : pairs * 2 : 2].count(0) / pairs
    if odd >= 1 / 3 and even <= 0.02:
        return "utf-16-le"
    if even >= 1 / 3 and odd <= 0.02:
        return "utf-16-be"
    return None


#: What a spreadsheet reads as the start of a formula (OWASP, "CSV Injection"), and the quote that
#: neutralises it.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
CELL_QUOTE = "'"


def neutralise_cell(value: str) -> str:
    """A CSV cell a spreadsheet shows as text, never runs: one ``'`` before a value that starts like
    a formula (``=HYPERLINK(…)``, ``+``, ``-``, ``@``, tab, carriage return) and, so that
    :func:`restore_cell` is its exact inverse, before a value that starts with ``'`` already.

    For every CSV Teller writes; the ones it reads back go through :func:`restore_cell`. (A
    spreadsheet hides the leading ``'``: it is its own text marker.)
    """
    return CELL_QUOTE + value if value.startswith((*FORMULA_STARTS, CELL_QUOTE)) else value


def restore_cell(value: str) -> str:
    """The inverse of :func:`neutralise_cell`: a leading ``'`` is dropped (``"'=1+1"`` -> ``"=1+1"``,
    ``"''x"`` -> ``"'x"``), as a spreadsheet drops its text marker."""
    return value[1:] if value.startswith(CELL_QUOTE) else value
