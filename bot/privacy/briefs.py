"""Customers' words in positioning briefs: erased with their messages.

A positioning brief quotes customers' messages among its candidate new needs (the unanswered
questions it clusters; :mod:`positioning.brief`). It is kept twice: as a row of ``briefs`` (its
Markdown, every brief ever written) and as files on the replica that wrote it,
``TELLER_HOME/briefs/<interview>/brief.md`` and ``brief.html`` (the newest brief of the interview).
When messages go, by erasure (:mod:`bot.privacy.erasure`) or retention
(:mod:`bot.privacy.retention`), their words go from the briefs too:

1. :func:`erase_from_briefs`, inside the transaction that removes the messages and before it does
   (it reads their texts): in every brief written since the first of them, each quote of one of the
   customers' own messages (``direction`` ``in``) is replaced by “[erased]”
   (:func:`positioning.brief.erase_quotes`: whole messages only, compared as the brief renders
   them), in its Markdown and in the scoring result stored beside it
   (:func:`positioning.brief.erase_from_score`), and the row updated. Each brief changed is
   collected as a :class:`BriefRewrite`.
2. :func:`rewrite_brief_files`, once that transaction is committed (files cannot be rolled back):
   the brief file of every interview with a changed row has the same texts' quotes erased from
   whatever it holds now, and its ``brief.html`` is rendered again
   (:func:`positioning.brief.rewrite_files`: under a per-directory lock, atomic renames). Erasing
   is idempotent and order-independent, so a file another erasure, a retention run or a brief
   written meanwhile changed is still brought in line (a file is never compared with the row's
   text: it may be another version of the brief). A dry run counts the files it would rewrite. A
   file that cannot be rewritten is logged (``brief_file_rewrite_failed``: its directory and the
   error, no customer text) and reported, not raised: the database is already right, and the
   caller says what is left.

Quotes are matched, not tracked: a brief records no message ids, so briefs written before this
existed are covered too. The same words written by another customer go as well, since a quote
cannot tell whose words they were. Copies of a brief outside Teller's reach (uploaded to a Slack DM,
downloaded, on another replica's disk) are the callers' caveat.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from sqlalchemy import Connection, func, select, update

from bot.storage import schema
from bot.storage.interviews import serialise_briefs
from positioning.brief import erase_from_score, erase_quotes, rewrite_files

log = logging.getLogger(__name__)

_m, _b = schema.messages, schema.briefs
#: Message ids per ``IN (…)`` list (as :data:`bot.privacy.purge.CHUNK`).
CHUNK = 400


@dataclass(frozen=True)
class BriefRewrite:
    """One brief row whose quotes were replaced: its text before the first change and after the
    last (a retention run may change a brief in several batches), how many quotes went, and the
    customers' texts erased (for the brief's files, whatever version of it they hold)."""

    brief_id: int
    interview_id: str
    before: str
    after: str
    quotes: int
    texts: frozenset[str] = frozenset()


@dataclass(frozen=True)
class BriefFiles:
    """What :func:`rewrite_brief_files` did: brief directories (one per interview) rewritten (or,
    on a dry run, that would be), those it could not rewrite, and whether any directory was given
    to look in."""

    rewritten: int = 0
    failed: tuple[str, ...] = ()
    checked: bool = True


def erase_from_briefs(
    connection: Connection, message_ids: Sequence[str], rewrites: dict[int, BriefRewrite]
) -> int:
    """Replace, in every brief written since the first of the messages ``message_ids``, the quotes
    of those that customers wrote; inside the caller's transaction, before the messages go.
    Returns how many brief rows changed in this call; each is added to (or merged into)
    ``rewrites``, by brief id, for :func:`rewrite_brief_files`. Raises what the database raises.
    Serialised with recording a brief (:func:`bot.storage.interviews.serialise_briefs`): a brief
    recorded meanwhile is either read here or saw these messages gone."""
    serialise_briefs(connection)
    texts: set[str] = set()
    first: str | None = None
    for start in range(0, len(message_ids), CHUNK):
        chunk = list(message_ids[start : start + CHUNK])
        mine = (_m.c.id.in_(chunk), _m.c.direction == "in", _m.c.text.is_not(None))
        texts.update(str(t) for t in connection.execute(select(_m.c.text).where(*mine).distinct()).scalars())
        earliest = connection.execute(select(func.min(_m.c.created_at)).where(*mine)).scalar()
        if earliest is not None and (first is None or earliest < first):
            first = str(earliest)
    if not texts or first is None:
        return 0
    changed = 0
    erased = frozenset(texts)
    # A brief written before the first of these messages cannot quote them.
    rows = connection.execute(
        select(_b.c.id, _b.c.interview_id, _b.c.markdown, _b.c.score)
        .where(_b.c.written_at >= first)
        .order_by(_b.c.id)
    ).all()
    for row in rows:
        after, quotes = erase_quotes(str(row.markdown), texts)
        # The scoring result stored beside the Markdown holds the same quotes (a trial's finding:
        # the receipt said every quote read "[erased]" while the row's score JSON kept them).
        score, in_score = erase_from_score(str(row.score), texts)
        if not quotes and not in_score:
            continue
        connection.execute(update(_b).where(_b.c.id == row.id).values(markdown=after, score=score))
        changed += 1
        if not quotes:
            continue
        kept = rewrites.get(int(row.id))
        rewrites[int(row.id)] = (
            BriefRewrite(int(row.id), str(row.interview_id), str(row.markdown), after, quotes, erased)
            if kept is None
            else replace(kept, after=after, quotes=kept.quotes + quotes, texts=kept.texts | erased)
        )
    return changed


def merge_rewrites(into: dict[int, BriefRewrite], more: dict[int, BriefRewrite]) -> None:
    """Add ``more`` (a later transaction's rewrites) to ``into``: a brief in both keeps its text
    from before the first change and takes the last one's."""
    for brief_id, later in more.items():
        kept = into.get(brief_id)
        into[brief_id] = (
            later
            if kept is None
            else replace(
                kept, after=later.after, quotes=kept.quotes + later.quotes, texts=kept.texts | later.texts
            )
        )


def rewrite_brief_files(
    root: Path | None, rewrites: Iterable[BriefRewrite], dry_run: bool = False
) -> BriefFiles:
    """Give the brief files under ``root`` (``TELLER_HOME/briefs``) the new text of the rows in
    ``rewrites`` (see the module); ``dry_run`` counts without writing. ``root`` None: nothing is
    checked (``BriefFiles(checked=False)``). Never raises for a file: a failure is logged and
    listed in ``failed``."""
    if root is None:
        return BriefFiles(checked=False)
    by_interview: dict[str, set[str]] = {}
    for rewrite in rewrites:
        by_interview.setdefault(rewrite.interview_id, set()).update(rewrite.texts)
    rewritten, failed = 0, []
    for interview_id, texts in sorted(by_interview.items()):
        # One directory per interview, holding the newest brief this replica wrote for it: whichever
        # version it is, none of these texts may stay quoted in it.
        directory = root / interview_id
        try:
            if rewrite_files(directory, texts, dry_run=dry_run):
                rewritten += 1
        except OSError as exc:
            failed.append(str(directory))
            log.error(
                "brief_file_rewrite_failed",
                extra={
                    "fields": {
                        "directory": str(directory),
                        "error": type(exc).__name__,
                        "reason": exc.strerror or "",
                    }
                },
            )
    if rewritten and not dry_run:
        log.info("brief_files_rewritten", extra={"fields": {"files": rewritten, "root": str(root)}})
    return BriefFiles(rewritten, tuple(failed))
