"""Teller's store: one database object and a typed repository per kind of data.

::

    Database                    engine (SQLite file or PostgreSQL), transactions, Alembic migrations, clock
    ├── ConversationRepository  conversations and messages (an exchange is one transaction)
    ├── FeedbackRepository      customers' feedback, operators' flags, corrections (read)
    ├── ReviewRepository        the review queue; settling an item writes its correction
    ├── ProposalRepository      messages proposed for correcting like a correction just made
    ├── HandoffRepository       handoffs and the messages relayed during them
    ├── InterviewRepository     positioning interviews and every brief written for them
    ├── DeploymentRepository    settings every replica follows (the active model)
    ├── KnowledgeLogRepository  the knowledge base's change log (replicas follow it)
    ├── DeliveryRepository      delivery state of every message pushed to a platform
    ├── OutboxRepository        texts as written on their way to a customer (the stored copy is redacted)
    ├── JobRepository           work for ``teller worker`` (retrains)
    ├── OutcomeRepository       business outcomes of replies (an adviser call booked), for positioning
    └── AuditRepository         the append-only audit log (erasures, retention runs, …)

:class:`Store` opens the database and builds the repositories once; everything else takes the
repository it needs. Errors (see :mod:`bot.storage.errors`)::

    TellerError
    └── StoreError              the database cannot be opened, migrated or written
        └── DuplicateMessage    this platform message was stored before

Unknown ids and misuse raise :class:`bot.errors.InputError`, as everywhere in Teller.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.engine import URL

from bot.storage import schema
from bot.storage.audit import AuditRepository
from bot.storage.conversations import ConversationRepository, new_id
from bot.storage.database import Clock, Database, database_url
from bot.storage.deliveries import DeliveryRepository
from bot.storage.deployment import DeploymentRepository
from bot.storage.errors import DuplicateMessage, StoreError
from bot.storage.feedback import FeedbackRepository
from bot.storage.handoffs import HandoffRepository
from bot.storage.interviews import InterviewRepository
from bot.storage.jobs import JobRepository
from bot.storage.knowledge import KnowledgeLogRepository
from bot.storage.outbox import OutboxRepository
from bot.storage.outcomes import OutcomeRepository
from bot.storage.proposals import Decided, LoggedMessage, ProposalRepository
from bot.storage.records import (
    HUMAN_ROUTE,
    TELLER_AUTHOR,
    AuditAction,
    AuditEntry,
    Correction,
    CorrectionAction,
    Counts,
    Delivery,
    DeliveryKind,
    DeliveryState,
    Direction,
    Exchange,
    Feedback,
    Flag,
    Handoff,
    HandoffStatus,
    HandoffThread,
    Job,
    JobStatus,
    KbChange,
    KbChangeKind,
    NewCorrection,
    NewExchange,
    NewHandoff,
    NewProposal,
    Outcome,
    Proposal,
    ProposalStatus,
    ReviewCandidate,
    ReviewItem,
    ReviewKey,
    ReviewReason,
    ReviewSource,
    ReviewStatus,
    StoredMessage,
    Suggestion,
    SuggestionKind,
)
from bot.storage.review import ReviewRepository

__all__ = [
    "HUMAN_ROUTE",
    "TELLER_AUTHOR",
    "AuditAction",
    "AuditEntry",
    "AuditRepository",
    "Clock",
    "ConversationRepository",
    "Correction",
    "CorrectionAction",
    "Counts",
    "Database",
    "Decided",
    "Delivery",
    "DeliveryKind",
    "DeliveryRepository",
    "DeliveryState",
    "DeploymentRepository",
    "Direction",
    "DuplicateMessage",
    "Exchange",
    "Feedback",
    "FeedbackRepository",
    "Flag",
    "Handoff",
    "HandoffRepository",
    "HandoffStatus",
    "HandoffThread",
    "InterviewRepository",
    "Job",
    "JobRepository",
    "JobStatus",
    "KbChange",
    "KbChangeKind",
    "KnowledgeLogRepository",
    "LoggedMessage",
    "NewCorrection",
    "NewExchange",
    "NewHandoff",
    "NewProposal",
    "Outcome",
    "OutcomeRepository",
    "Proposal",
    "ProposalRepository",
    "ProposalStatus",
    "ReviewCandidate",
    "ReviewItem",
    "ReviewKey",
    "ReviewReason",
    "ReviewRepository",
    "ReviewSource",
    "ReviewStatus",
    "Store",
    "StoreError",
    "StoredMessage",
    "Suggestion",
    "SuggestionKind",
    "database_url",
    "new_id",
]


class Store:
    """The database and its repositories, built once per process. Thread-safe.

    ``url``: a SQLite file path or ``postgresql://…``; migrations run on open unless ``migrate`` is
    False. Raises :class:`StoreError`.
    """

    def __init__(self, url: str | Path | URL | Database, migrate: bool = True) -> None:
        self.database = url if isinstance(url, Database) else Database(url, migrate=migrate)
        self.outbox = OutboxRepository(self.database)
        self.conversations = ConversationRepository(self.database, self.outbox)
        self.feedback = FeedbackRepository(self.database, self.conversations)
        self.review = ReviewRepository(self.database, self.feedback)
        self.proposals = ProposalRepository(self.database, self.feedback)
        self.handoffs = HandoffRepository(self.database, self.outbox)
        self.interviews = InterviewRepository(self.database)
        self.deployment = DeploymentRepository(self.database)
        self.kb_log = KnowledgeLogRepository(self.database)
        self.jobs = JobRepository(self.database)
        self.audit = AuditRepository(self.database)
        self.outcomes = OutcomeRepository(self.database, self.conversations, self.audit)
        self.deliveries = DeliveryRepository(self.database, self.outbox)

    def counts(self) -> Counts:
        """How many rows each kind of data has."""
        tables = {
            "conversations": schema.conversations,
            "messages": schema.messages,
            "feedback": schema.feedback,
            "flags": schema.flags,
            "review_items": schema.review_items,
            "corrections": schema.corrections,
            "handoffs": schema.handoffs,
            "interviews": schema.interviews,
            "briefs": schema.briefs,
            "deliveries": schema.deliveries,
        }
        query = select(
            *(select(func.count()).select_from(t).scalar_subquery().label(n) for n, t in tables.items())
        )
        return Counts(**self.database.rows(query)[0])

    def close(self) -> None:
        self.database.close()
