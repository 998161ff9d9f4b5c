"""Removing stored messages and everything that hangs off them, inside the caller's transaction.

Shared by erasure (:mod:`bot.privacy.erasure`, one customer's messages) and retention
(:mod:`bot.privacy.retention`, messages past their time). For a set of messages (Teller's replies
to any of them are added), in an order the foreign keys accept:

- the outbox rows (texts as written on their way to the customer) and delivery records;
- customers' feedback and operators' flags on them, and the business outcomes recorded on them;
- the review sources that file them; a review item left with no source is removed, one that keeps
  sources from other messages gets the text of one of those if its own was among the removed;
- corrections of removed review items, and corrections made from these messages directly
  (``corrections.message_id``): deleted (erasure; with the proposals made from them, and the
  ``origin_id`` of corrections proposed from them cleared) or kept with their link to the item or
  message cleared (retention: see that module for why);
- proposals to correct these messages (``correction_proposals``; they quote the message);
- quotes of them in positioning briefs, replaced by “[erased]” (:mod:`bot.privacy.briefs`; the
  brief files follow once the caller's transaction is committed);
- the messages.

Conversations and handoffs are the callers' business: which of them go differs. Plain SQL
(SQLAlchemy Core) on :mod:`bot.storage.schema`, so the same code runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, fields
from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy import Connection, delete, or_, select, update

from bot.privacy.briefs import BriefRewrite, erase_from_briefs
from bot.storage import schema
from bot.storage.records import CorrectionAction

_m = schema.messages
_s = schema.review_sources
_r = schema.review_items
_k = schema.corrections
_p = schema.correction_proposals

#: Ids per ``IN (…)`` list: well under every SQLite build's limit on bound parameters, twice over.
CHUNK = 400

T = TypeVar("T")


class CorrectionFate(StrEnum):
    """What happens to the corrections of a review item removed with its messages."""

    #: Deleted with the item (erasure: they are the customer's words).
    DELETE = "delete"
    #: Kept as training data, their ``item_id`` cleared (retention).
    UNLINK = "unlink"


@dataclass
class Removed:
    """Rows removed (or changed, for the ``*_rewritten``/``*_anonymised``/``*_unlinked`` kinds) so far."""

    messages: int = 0
    conversations: int = 0
    conversations_anonymised: int = 0
    feedback: int = 0
    flags: int = 0
    review_sources: int = 0
    review_items: int = 0
    review_items_rewritten: int = 0
    corrections: int = 0
    corrections_rewritten: int = 0
    corrections_unlinked: int = 0
    proposals: int = 0
    handoffs: int = 0
    deliveries: int = 0
    outbox: int = 0
    outcomes: int = 0
    #: Positioning briefs (rows) whose quotes of the messages were replaced, and brief files
    #: rewritten to match (counted by the caller, after its transaction).
    briefs_rewritten: int = 0
    brief_files_rewritten: int = 0

    def add(self, other: Removed) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def counts(self, kinds: Sequence[str]) -> dict[str, int]:
        """The counts of ``kinds``, in that order."""
        return {kind: int(getattr(self, kind)) for kind in kinds}

    @property
    def total(self) -> int:
        return sum(int(getattr(self, f.name)) for f in fields(self))


def chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def rowcount(result: Any) -> int:
    return max(int(result.rowcount or 0), 0)


def with_replies(connection: Connection, ids: Iterable[str]) -> list[str]:
    """``ids`` and the ids of every message replying to one of them (Teller's answers), sorted."""
    found = set(ids)
    for chunk in chunks(sorted(found)):
        found.update(connection.execute(select(_m.c.id).where(_m.c.reply_to.in_(chunk))).scalars())
    return sorted(found)


def purge_messages(
    connection: Connection,
    message_ids: Iterable[str],
    corrections: CorrectionFate,
    removed: Removed,
    kb_entries: set[str] | None = None,
    briefs: dict[int, BriefRewrite] | None = None,
) -> None:
    """Remove the messages ``message_ids`` (and the replies to them) with their dependent rows,
    counting into ``removed``. ``kb_entries`` collects the knowledge-base entries operators wrote
    from a review item these messages were filed under (their phrasings came from those texts);
    ``briefs`` the positioning briefs whose quotes of them were replaced, for the caller to rewrite
    their files once committed (:func:`bot.privacy.briefs.rewrite_brief_files`)."""
    ids = with_replies(connection, message_ids)
    if not ids:
        return
    briefs = {} if briefs is None else briefs
    known = len(briefs)
    erase_from_briefs(connection, ids, briefs)
    removed.briefs_rewritten += len(briefs) - known
    items: set[int] = set()
    for chunk in chunks(ids):
        removed.outbox += rowcount(
            connection.execute(delete(schema.outbox).where(schema.outbox.c.message_id.in_(chunk)))
        )
        removed.deliveries += rowcount(
            connection.execute(delete(schema.deliveries).where(schema.deliveries.c.message_id.in_(chunk)))
        )
        removed.feedback += rowcount(
            connection.execute(delete(schema.feedback).where(schema.feedback.c.message_id.in_(chunk)))
        )
        removed.flags += rowcount(
            connection.execute(delete(schema.flags).where(schema.flags.c.message_id.in_(chunk)))
        )
        removed.outcomes += rowcount(
            connection.execute(delete(schema.outcomes).where(schema.outcomes.c.message_id.in_(chunk)))
        )
        removed.proposals += rowcount(connection.execute(delete(_p).where(_p.c.message_id.in_(chunk))))
        if corrections == CorrectionFate.DELETE:
            _drop_corrections(connection, _k.c.message_id.in_(chunk), removed, kb_entries)
        else:
            removed.corrections_unlinked += rowcount(
                connection.execute(update(_k).where(_k.c.message_id.in_(chunk)).values(message_id=None))
            )
        filed = or_(_s.c.reply_id.in_(chunk), _s.c.message_id.in_(chunk))
        items.update(int(i) for i in connection.execute(select(_s.c.item_id).where(filed)).scalars())
        removed.review_sources += rowcount(connection.execute(delete(_s).where(filed)))
    for item_id in sorted(items):
        _settle_item(connection, item_id, corrections, removed, kb_entries)
    for chunk in chunks(ids):
        # Proposals to correct these messages go; corrections made from them (confirmed proposals,
        # which hold their text) go on erasure and lose the link on retention, like the others.
        connection.execute(delete(_p).where(_p.c.message_id.in_(chunk)))
        if corrections == CorrectionFate.DELETE:
            removed.corrections += rowcount(connection.execute(delete(_k).where(_k.c.message_id.in_(chunk))))
        else:
            removed.corrections_unlinked += rowcount(
                connection.execute(update(_k).where(_k.c.message_id.in_(chunk)).values(message_id=None))
            )
        removed.messages += rowcount(connection.execute(delete(_m).where(_m.c.id.in_(chunk))))


def _settle_item(
    connection: Connection,
    item_id: int,
    fate: CorrectionFate,
    removed: Removed,
    kb_entries: set[str] | None,
) -> None:
    """A review item some of whose sources were just removed: removed too if none is left,
    otherwise its text (and, on erasure, its corrections' text) made one that is left."""
    item = connection.execute(select(_r.c.text).where(_r.c.id == item_id)).first()
    if item is None:
        return
    remaining = list(
        dict.fromkeys(
            connection.execute(
                select(_s.c.text).where(_s.c.item_id == item_id).order_by(_s.c.created_at, _s.c.reply_id)
            ).scalars()
        )
    )
    own = connection.execute(
        select(_k.c.id, _k.c.text, _k.c.action, _k.c.kb_id).where(_k.c.item_id == item_id)
    ).all()
    if kb_entries is not None:
        kb_entries.update(str(c.kb_id) for c in own if c.action == CorrectionAction.ANSWER and c.kb_id)
    if not remaining:
        if fate == CorrectionFate.DELETE:
            _drop_corrections(connection, _k.c.item_id == item_id, removed, kb_entries)
        else:
            removed.corrections_unlinked += rowcount(
                connection.execute(update(_k).where(_k.c.item_id == item_id).values(item_id=None))
            )
        removed.review_items += rowcount(connection.execute(delete(_r).where(_r.c.id == item_id)))
        return
    if item.text not in remaining:
        text = remaining[0]
        connection.execute(update(_r).where(_r.c.id == item_id).values(text=text, key=_key(text)))
        removed.review_items_rewritten += 1
    if fate == CorrectionFate.DELETE:
        for correction in own:
            if correction.text not in remaining:
                connection.execute(
                    update(_k)
                    .where(_k.c.id == correction.id)
                    .values(text=remaining[0], key=_key(remaining[0]))
                )
                removed.corrections_rewritten += 1


def _drop_corrections(
    connection: Connection, where: Any, removed: Removed, kb_entries: set[str] | None
) -> None:
    """Delete the corrections ``where`` selects, with the proposals made from them; corrections
    proposed from them keep their own words and label, not the link (``origin_id``). A correction
    they superseded stays superseded (the operator's later decision stands)."""
    doomed = connection.execute(select(_k.c.id, _k.c.action, _k.c.kb_id).where(where)).all()
    if kb_entries is not None:
        kb_entries.update(str(c.kb_id) for c in doomed if c.action == CorrectionAction.ANSWER and c.kb_id)
    for chunk in chunks([int(c.id) for c in doomed]):
        removed.proposals += rowcount(connection.execute(delete(_p).where(_p.c.correction_id.in_(chunk))))
        connection.execute(update(_k).where(_k.c.origin_id.in_(chunk)).values(origin_id=None))
        removed.corrections += rowcount(connection.execute(delete(_k).where(_k.c.id.in_(chunk))))


def _key(text: str) -> str:
    """The review queue's key of a text (the same normalisation that merged it)."""
    from bot.review import normalise  # the review service's, loaded only when a text is rewritten

    return normalise(text)
