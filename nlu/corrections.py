"""Operator corrections: "this message means that intent", merged newest-wins per text."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from nlu.data import Example, normalize_text, text_key
from nlu.errors import DataError


@dataclass(frozen=True)
class Correction:
    """One operator's statement that ``text`` should be classified as ``label``."""

    text: str
    #: An intent name of the model.
    label: str
    author: str
    #: ISO 8601 time, e.g. ``2026-11-28T17:00:00Z``; a time without offset is taken as UTC.
    created_at: str
    #: Where the correction came from (e.g. the id of the flagged message), if anywhere.
    source_id: str | None = None

    @property
    def key(self) -> str:
        """The text as matched against other texts (whitespace collapsed, case folded)."""
        return text_key(self.text)

    def to_example(self) -> Example:
        return Example(normalize_text(self.text), self.label.strip())


def parse_time(value: str) -> datetime:
    """An ISO 8601 time as an aware datetime (UTC when no offset is given)."""
    try:
        moment = datetime.fromisoformat(value.strip())
    except (AttributeError, ValueError):
        raise DataError(f"created_at {value!r} is not an ISO 8601 time") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def merge_corrections(corrections: Sequence[Correction]) -> list[Correction]:
    """One correction per text: the newest (by ``created_at``, then by list order) wins.

    Texts are matched by :func:`nlu.data.text_key`. The winners keep their order in the input.
    Raises :class:`DataError` for an empty text or label or an unreadable time.
    """
    best: dict[str, tuple[datetime, int]] = {}
    for i, correction in enumerate(corrections):
        if not normalize_text(correction.text):
            raise DataError(f"correction {i + 1}: empty text")
        if not correction.label.strip():
            raise DataError(f"correction {i + 1}: empty intent for {correction.text[:40]!r}")
        try:
            rank = (parse_time(correction.created_at), i)
        except DataError as exc:
            raise DataError(f"correction {i + 1}: {exc}") from None
        key = correction.key
        if key not in best or rank >= best[key]:
            best[key] = rank
    return [corrections[i] for i in sorted(i for _, i in best.values())]


def check_labels(corrections: Sequence[Correction], labels: Collection[str]) -> None:
    """Raise :class:`DataError` if a correction names an intent outside ``labels``."""
    unknown = sorted({c.label.strip() for c in corrections} - set(labels))
    if unknown:
        raise DataError(
            f"corrections name {len(unknown)} unknown intent(s): {', '.join(unknown[:5])}"
            f"{' ...' if len(unknown) > 5 else ''}; use the model's intent names"
        )


def as_examples(corrections: Sequence[Correction]) -> list[Example]:
    """The merged corrections as labelled examples."""
    return [c.to_example() for c in merge_corrections(corrections)]
