"""Retention: messages older than ``TELLER_RETENTION_DAYS`` removed by a periodic job, with what
hangs off them; the outbox emptied of anything older than a day, whatever the setting.

A run (:meth:`Retention.run`, ``teller retention run``, or :class:`RetentionService` every hour in
``teller serve``) removes, with the cutoff ``now - days``:

- every message stored before the cutoff, and Teller's replies to those (a reply is stamped a few
  milliseconds after its question: an exchange goes as a whole), with their outbox rows, delivery
  records, feedback, flags, business outcomes and review-queue filings; a review item left with no
  filing goes, one that keeps filings of newer messages takes the text of one of those if its own
  was removed;
- handoffs closed before the cutoff (open ones stay, however old: someone is still on them);
- conversations left with no message and no handoff, untouched since the cutoff;
- delivery records older than the cutoff whose message is gone (handoff notices, interview turns);
- the threads of handoffs whose customer was erased before the cutoff (``erased_threads``: an
  operator replying there after that is no longer told the customer was erased);
- and, on every run, outbox rows older than :data:`OUTBOX_HOURS` (24 h): the text as written of a
  message on its way to a customer is transient, retention on or off.

**Corrections are kept.** A correction is an operator's label on a (redacted) customer text: it is
the training data every retrain replays, and what the next model is judged on. When the review item
it settled loses its last message, the item goes and the correction stays with ``item_id`` cleared:
nothing links it to a conversation, a customer or a message any more, only the redacted words and
the operator who labelled them. A correction made straight from a removed message keeps its words
and label the same way, its ``message_id`` cleared; proposals to correct removed messages go (they
quote them, and there is nothing left to correct). Erasing one customer (:mod:`bot.privacy.erasure`)
is different: it deletes the corrections made from that customer's messages, since those are still
linked to them.

Interviews, briefs and their turns are the product managers' work, not customers' data: retention
leaves them in place, and the audit log (append-only), the knowledge base and its change log too.
But a brief quotes customers' messages among its candidate new needs: those quotes go with the
messages, replaced by “[erased]” in the ``briefs`` rows (in each batch's transaction,
``briefs_rewritten``) and, once the run is over, in the brief files under ``TELLER_HOME/briefs``
that are copies of them (``brief_files_rewritten``; :mod:`bot.privacy.briefs`), as erasure does.

Messages go in batches of :data:`BATCH`, a transaction each, so a large first run holds no lock for
long; every step is idempotent (deleting what is already gone deletes nothing), so two runs at once
are harmless, and :class:`RetentionService` takes the cluster lock ``retention`` besides, so only
one replica runs at a time. ``dry_run`` runs the same steps in one transaction and rolls it back:
exact counts, nothing changed (it holds the database's write lock meanwhile on SQLite). A run by
hand, a periodic run with retention on, and any run that removed something are recorded in the
audit log (``retention``, actor ``system:retention`` or ``cli:<user>``); a run that fails part-way
records what it had removed by then, with the error.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, delete, exists, or_, select

from bot.errors import InputError, TellerError
from bot.privacy.briefs import BriefRewrite, merge_rewrites, rewrite_brief_files
from bot.privacy.purge import CorrectionFate, Removed, chunks, purge_messages, rowcount
from bot.storage import AuditAction, HandoffStatus, Store, schema
from bot.sweeps import PeriodicSweep

log = logging.getLogger(__name__)

#: Hours the outbox keeps the text as written of a message on its way to a customer.
OUTBOX_HOURS = 24
#: Messages removed per transaction.
BATCH = 2000
#: Seconds between runs of :class:`RetentionService`.
INTERVAL = 3600.0
#: Seconds after the server starts before the first run (no work while it is warming up).
FIRST_RUN_AFTER = 60.0
#: The cluster lock a run holds (:meth:`bot.storage.Database.try_lock`).
LOCK = "retention"
SYSTEM_ACTOR = "system:retention"
#: The counts a report gives, in this order.
KINDS = (
    "messages",
    "conversations",
    "feedback",
    "flags",
    "review_sources",
    "review_items",
    "review_items_rewritten",
    "corrections_unlinked",
    "proposals",
    "handoffs",
    "deliveries",
    "outbox",
    "outcomes",
    "briefs_rewritten",
    "brief_files_rewritten",
)

_m, _c, _h, _d, _o = schema.messages, schema.conversations, schema.handoffs, schema.deliveries, schema.outbox


@dataclass(frozen=True)
class RetentionReport:
    """What one run removed: rows per kind, the cutoffs, who ran it."""

    actor: str
    at: str
    #: ``TELLER_RETENTION_DAYS`` for this run (None: off; only the outbox was swept).
    days: int | None
    #: Messages stored before this time were removed (None when retention is off).
    cutoff: str | None
    outbox_cutoff: str
    counts: dict[str, int]
    dry_run: bool = False
    audit_id: int | None = None
    error: str | None = None

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "actor": self.actor,
            "at": self.at,
            "days": self.days,
            "cutoff": self.cutoff,
            "outbox_cutoff": self.outbox_cutoff,
            "dry_run": self.dry_run,
            "counts": dict(self.counts),
            "audit_id": self.audit_id,
            "error": self.error,
        }

    def audit_details(self) -> dict[str, Any]:
        details = self.to_dict()
        del details["actor"], details["at"], details["dry_run"], details["audit_id"]
        if details["error"] is None:
            del details["error"]
        return details


class _DryRun(Exception):
    pass


class Retention:
    """Runs retention over a store, and over the brief files under ``briefs``
    (``TELLER_HOME/briefs``; None: the database's briefs only). Thread-safe (runs may even overlap:
    see the module)."""

    def __init__(self, store: Store, batch: int = BATCH, briefs: Path | None = None) -> None:
        if batch < 1:
            raise ValueError("batch must be at least 1")
        self.store = store
        self.batch = batch
        self.briefs = briefs

    def run(
        self, days: int | None, actor: str = SYSTEM_ACTOR, dry_run: bool = False, audit_empty: bool = True
    ) -> RetentionReport:
        """Remove what is past its time (``days``: None sweeps the outbox only); ``dry_run`` counts
        and changes nothing. Audited unless ``dry_run``, or unless nothing was removed and
        ``audit_empty`` is False. Raises :class:`InputError` for ``days`` below 1, and
        :class:`~bot.storage.StoreError`."""
        if days is not None and days < 1:
            raise InputError(f"retention must be at least 1 day (got {days})")
        db = self.store.database
        cutoff = db.clock.ago(days * 86_400) if days is not None else None
        report = RetentionReport(
            actor=actor,
            at=db.clock.now(),
            days=days,
            cutoff=cutoff,
            outbox_cutoff=db.clock.ago(OUTBOX_HOURS * 3600),
            counts={},
            dry_run=dry_run,
        )
        removed = Removed()
        briefs: dict[int, BriefRewrite] = {}
        if dry_run:
            try:
                with db.transaction() as connection:
                    for step in self._steps(report, briefs):
                        while step(connection, removed):
                            pass
                    raise _DryRun
            except _DryRun:
                pass
            removed.brief_files_rewritten = self._files(briefs, dry_run=True)
            return replace(report, counts=removed.counts(KINDS))
        batch: dict[int, BriefRewrite] = {}  # the briefs of the transaction under way
        try:
            for step in self._steps(report, batch):
                more = True
                while more:
                    with db.transaction() as connection:
                        more = step(connection, removed)
                    merge_rewrites(briefs, batch)  # committed: their files may follow
                    batch.clear()
        except TellerError as exc:
            # The batches committed stand: their briefs' files follow them.
            removed.briefs_rewritten = len(briefs)
            removed.brief_files_rewritten = self._files(briefs)
            failed = replace(report, counts=removed.counts(KINDS), error=str(exc)[:300])
            log.error("retention_failed", extra={"fields": failed.to_dict()})
            if removed.total:
                # If the database is down, the log line above is all there can be.
                with contextlib.suppress(TellerError):
                    self.store.audit.record(actor, AuditAction.RETENTION, None, failed.audit_details())
            raise
        removed.briefs_rewritten = len(briefs)  # a brief changed by several batches counts once
        removed.brief_files_rewritten = self._files(briefs)
        report = replace(report, counts=removed.counts(KINDS))
        if days is not None or removed.total or audit_empty:
            entry = self.store.audit.record(actor, AuditAction.RETENTION, None, report.audit_details())
            report = replace(report, audit_id=entry.id)
        if removed.total and not dry_run:
            self.store.database.reclaim()  # the removed rows' bytes out of the SQLite files at once
        log.info("retention_run", extra={"fields": report.to_dict()})
        return report

    def _files(self, briefs: dict[int, BriefRewrite], dry_run: bool = False) -> int:
        """The brief files rewritten (or, ``dry_run``, that would be) to match ``briefs``; a file
        that cannot be is logged by :func:`bot.privacy.briefs.rewrite_brief_files` (and the next
        run does not see it again: its brief no longer quotes the messages)."""
        return rewrite_brief_files(self.briefs, briefs.values(), dry_run=dry_run).rewritten

    def _steps(
        self, report: RetentionReport, briefs: dict[int, BriefRewrite]
    ) -> list[Callable[[Connection, Removed], bool]]:
        """The run's steps in order; each returns True while it has more to do (a next batch).
        ``briefs`` collects the positioning briefs whose quotes of removed messages were replaced."""
        steps: list[Callable[[Connection, Removed], bool]] = []
        cutoff = report.cutoff
        if cutoff is not None:
            steps += [
                lambda connection, removed: self._messages(connection, cutoff, removed, briefs),
                lambda connection, removed: self._rest(connection, cutoff, removed),
            ]
        outbox_cutoff = report.outbox_cutoff
        steps.append(lambda connection, removed: self._outbox(connection, outbox_cutoff, removed))
        return steps

    def _messages(
        self, connection: Connection, cutoff: str, removed: Removed, briefs: dict[int, BriefRewrite]
    ) -> bool:
        """One batch of messages stored before ``cutoff`` (their quotes in briefs replaced, the
        briefs changed added to ``briefs``); True if there may be more."""
        ids = [
            str(i)
            for i in connection.execute(
                select(_m.c.id)
                .where(_m.c.created_at < cutoff)
                .order_by(_m.c.created_at, _m.c.id)
                .limit(self.batch)
            ).scalars()
        ]
        purge_messages(connection, ids, CorrectionFate.UNLINK, removed, briefs=briefs)
        return len(ids) == self.batch

    def _rest(self, connection: Connection, cutoff: str, removed: Removed) -> bool:
        """Closed handoffs, empty conversations and orphaned delivery records older than ``cutoff``."""
        closed = [
            str(h)
            for h in connection.execute(
                select(_h.c.id).where(_h.c.status == HandoffStatus.CLOSED.value, _h.c.closed_at < cutoff)
            ).scalars()
        ]
        for chunk in chunks(closed):
            removed.deliveries += rowcount(
                connection.execute(delete(_d).where(_d.c.message_id.in_([f"{h}:closed" for h in chunk])))
            )
            removed.handoffs += rowcount(connection.execute(delete(_h).where(_h.c.id.in_(chunk))))
        used = or_(
            exists().where(_m.c.conversation_id == _c.c.id), exists().where(_h.c.conversation_id == _c.c.id)
        )
        removed.conversations += rowcount(
            connection.execute(delete(_c).where(_c.c.updated_at < cutoff, ~used))
        )
        removed.deliveries += rowcount(
            connection.execute(
                delete(_d).where(_d.c.updated_at < cutoff, ~exists().where(_m.c.id == _d.c.message_id))
            )
        )
        # Where erased customers' handoffs were relayed (nothing of theirs; not counted).
        erased = schema.erased_threads
        connection.execute(delete(erased).where(erased.c.erased_at < cutoff))
        return False

    def _outbox(self, connection: Connection, before: str, removed: Removed) -> bool:
        removed.outbox += rowcount(connection.execute(delete(_o).where(_o.c.created_at < before)))
        return False


class RetentionService(PeriodicSweep):
    """A server service (``start``/``stop`` with the application): :meth:`Retention.run` every
    ``interval`` seconds on a daemon thread, the first ``first_run_after`` seconds after start; on
    one replica at a time (the cluster lock :data:`LOCK`; a replica that finds it taken skips that
    run). With retention off (``days`` None) a run only sweeps the outbox, and is audited only when
    it removed something."""

    name = "retention"

    def __init__(
        self,
        store: Store,
        days: int | None,
        interval: float = INTERVAL,
        first_run_after: float = FIRST_RUN_AFTER,
        actor: str = SYSTEM_ACTOR,
        briefs: Path | None = None,
    ) -> None:
        super().__init__(interval, first_run_after)
        self.retention = Retention(store, briefs=briefs)
        self.store = store
        self.days = days
        self.actor = actor
        self.runs = 0

    def run_once(self) -> RetentionReport | None:
        """One run, if no other replica is running one (None then)."""
        lease = self.store.database.try_lock(LOCK)
        if lease is None:
            return None
        try:
            return self.retention.run(self.days, self.actor, audit_empty=False)
        finally:
            lease.release()
            self.runs += 1

    def sweep(self) -> RetentionReport | None:
        return self.run_once()

    async def start(self) -> None:
        await super().start()
        log.info(
            "retention_started",
            extra={"fields": {"days": self.days, "interval_s": self.interval, "outbox_hours": OUTBOX_HOURS}},
        )
