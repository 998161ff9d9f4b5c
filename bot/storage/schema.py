"""The tables as they stand after the newest migration, for building queries (SQLAlchemy Core).

Migrations in :mod:`bot.storage.migrations` create and change these tables; this module only
describes the result, and ``tests/test_storage.py`` checks that the two agree on both databases.
Times are ISO 8601 UTC strings from :class:`bot.storage.database.Clock` (they sort as text);
ids are prefixed random hex (``m_…``, ``c_…``) except the review queue's and corrections'
integers.
"""

from __future__ import annotations

from sqlalchemy import Column, Float, ForeignKey, Index, Integer, MetaData, Table, Text, text

metadata = MetaData()

conversations = Table(
    "conversations",
    metadata,
    Column("id", Text, primary_key=True),
    Column("channel", Text),
    Column("external_id", Text),
    Column("user_id", Text),
    Column("created_at", Text),
    Column("updated_at", Text),
    Index("idx_conversations_channel_external_id", "channel", "external_id", unique=True),
)

messages = Table(
    "messages",
    metadata,
    Column("id", Text, primary_key=True),
    Column("conversation_id", Text, ForeignKey("conversations.id")),
    Column("direction", Text),
    Column("channel", Text),
    Column("user_id", Text),
    Column("platform_id", Text),
    Column("reply_to", Text),
    Column("text", Text),
    Column("route", Text),
    Column("intent", Text),
    Column("confidence", Float),
    Column("kb_id", Text),
    Column("model_version", Text),
    Column("latency_ms", Float),
    Column("choices", Text),
    Column("created_at", Text),
    Column("author", Text),
    #: Why the reply was given (the policy's reason; no customer text in it).
    Column("reason", Text),
    #: The customer's segment, as a bank's backend named it with the message (migration 0010).
    Column("segment", Text),
    Index("idx_messages_conversation_id_created_at", "conversation_id", "created_at"),
    # Retention sweeps by age, erasure by customer (migration 0010).
    Index("idx_messages_created_at", "created_at"),
    Index("idx_messages_channel_user_id", "channel", "user_id"),
    # One stored copy of each platform message, however often (and to whichever replica) it comes.
    Index(
        "messages_platform_in",
        "channel",
        "platform_id",
        unique=True,
        sqlite_where=text("direction = 'in' AND platform_id IS NOT NULL"),
        postgresql_where=text("direction = 'in' AND platform_id IS NOT NULL"),
    ),
    Index("messages_reply_to", "reply_to"),
    Index(
        "messages_platform",
        "channel",
        "platform_id",
        sqlite_where=text("platform_id IS NOT NULL"),
        postgresql_where=text("platform_id IS NOT NULL"),
    ),
)

feedback = Table(
    "feedback",
    metadata,
    Column("id", Text, primary_key=True),
    Column("message_id", Text, ForeignKey("messages.id")),
    Column("helpful", Integer),
    Column("comment", Text),
    Column("user_id", Text),
    Column("created_at", Text),
    #: For feedback sent as a message's text (``feedback:helpful``): the channel and the platform's
    #: id of that message, so a redelivery is acknowledged again, not recorded twice (migration 0014).
    Column("channel", Text),
    Column("platform_id", Text),
    Index("idx_feedback_message_id", "message_id"),
    Index("idx_feedback_user_id", "user_id"),  # erasure and access (migration 0017)
    Index(
        "feedback_platform",
        "channel",
        "platform_id",
        unique=True,
        sqlite_where=text("platform_id IS NOT NULL"),
        postgresql_where=text("platform_id IS NOT NULL"),
    ),
)

flags = Table(
    "flags",
    metadata,
    Column("id", Text, primary_key=True),
    Column("message_id", Text, ForeignKey("messages.id")),
    Column("reason", Text),
    Column("actor", Text),
    Column("source", Text),
    Column("created_at", Text),
    Index("idx_flags_message_id_actor", "message_id", "actor", unique=True),
)

review_items = Table(
    "review_items",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key", Text),
    Column("text", Text),
    Column("status", Text),
    Column("route", Text),
    Column("suggestion_kind", Text),
    Column("suggested_intent", Text),
    Column("suggested_kb_id", Text),
    Column("suggested_confidence", Float),
    Column("suggestion_model", Text),
    Column("resolution", Text),
    Column("resolved_by", Text),
    Column("resolved_at", Text),
    Column("created_at", Text),
    Column("updated_at", Text),
    #: When the item was claimed for posting to the ops channel (migration 0016; None: never): one
    #: replica posts it, once (:meth:`bot.storage.review.ReviewRepository.claim_post`).
    Column("posted_at", Text),
    Index("idx_review_items_status_key", "status", "key"),
    sqlite_autoincrement=True,
)

review_sources = Table(
    "review_sources",
    metadata,
    Column("item_id", Integer, ForeignKey("review_items.id")),
    Column("reply_id", Text, ForeignKey("messages.id"), primary_key=True),
    Column("message_id", Text, ForeignKey("messages.id")),
    Column("text", Text),
    Column("reason", Text, primary_key=True),
    Column("created_at", Text),
    Index("idx_review_sources_item_id", "item_id"),
)

corrections = Table(
    "corrections",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("item_id", Integer, ForeignKey("review_items.id")),
    Column("text", Text),
    Column("key", Text),
    Column("action", Text),
    Column("label", Text),
    Column("kb_id", Text),
    Column("answer", Text),
    Column("author", Text),
    Column("created_at", Text),
    Column("superseded_by", Integer),
    Column("superseded_at", Text),
    #: The correction this one was proposed from (an operator confirmed Teller's proposal), if any.
    Column("origin_id", Integer),
    #: The stored customer message this correction is about, when it came from the log.
    Column("message_id", Text),
    Index("idx_corrections_superseded_by", "superseded_by"),
    sqlite_autoincrement=True,
)

#: Stored customer messages Teller proposes to correct like one an operator just corrected (likely
#: the same need, answered otherwise); open until an operator confirms (``result_id``: the correction
#: made) or rejects it. No foreign keys: erasure and retention remove messages and corrections in
#: their own order and take the proposals about them along (:mod:`bot.privacy.purge`).
correction_proposals = Table(
    "correction_proposals",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("correction_id", Integer, nullable=False),
    Column("message_id", Text),
    Column("text", Text, nullable=False),
    Column("key", Text, nullable=False),
    Column("label", Text),
    Column("kb_id", Text),
    Column("score", Float),
    Column("base_similarity", Float),
    Column("model_similarity", Float),
    Column("model_intent", Text),
    Column("status", Text, nullable=False),
    Column("created_at", Text, nullable=False),
    Column("decided_by", Text),
    Column("decided_at", Text),
    Column("result_id", Integer),
    Index("idx_correction_proposals_correction_id_key", "correction_id", "key", unique=True),
    Index("idx_correction_proposals_status_id", "status", "id"),
    Index("idx_correction_proposals_key", "key"),
    sqlite_autoincrement=True,
)

handoffs = Table(
    "handoffs",
    metadata,
    Column("id", Text, primary_key=True),
    Column("channel", Text),
    Column("conversation_id", Text, ForeignKey("conversations.id")),
    Column("customer_user_id", Text),
    Column("customer_chat_id", Text),
    Column("message_id", Text),
    Column("ops_channel", Text),
    Column("thread_ts", Text),
    Column("status", Text),
    Column("opened_at", Text),
    Column("closed_at", Text),
    Column("closed_by", Text),
    Column("thread_claimed_at", Text),  # who is posting its thread, since when (migration 0018)
    # At most one open handoff per conversation, whichever replica opens it.
    Index(
        "handoffs_open",
        "conversation_id",
        unique=True,
        sqlite_where=text("status = 'open'"),
        postgresql_where=text("status = 'open'"),
    ),
    Index("idx_handoffs_thread_ts", "thread_ts"),
    # Migration 0015: the expected wait reads the latest handoffs; a conversation's latest; a
    # message's.
    Index("idx_handoffs_opened_at", "opened_at"),
    Index("idx_handoffs_conversation_opened", "conversation_id", "opened_at"),
    Index("idx_handoffs_message_id", "message_id"),
)

interviews = Table(
    "interviews",
    metadata,
    Column("id", Text, primary_key=True),
    Column("user_id", Text),
    Column("script_id", Text),
    Column("status", Text),
    #: The whole interview (answers, evidence, brief) as JSON, rewritten after every answer.
    Column("state", Text),
    Column("created_at", Text),
    Column("updated_at", Text),
    Index("idx_interviews_user_id_updated_at", "user_id", "updated_at"),
)

#: Cluster-wide settings every replica follows (``active_model``: the model version to serve).
deployment = Table(
    "deployment",
    metadata,
    Column("key", Text, primary_key=True),
    Column("value", Text),
    Column("updated_at", Text),
    Column("updated_by", Text),
)

#: The knowledge base's change log: each row the new state of one entry (``kind`` ``entry``) or one
#: superseded record (``superseded``), or its removal (``payload`` NULL). Replicas apply the rows
#: after the last one they applied to their own index.
kb_changes = Table(
    "kb_changes",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("kind", Text, nullable=False),
    Column("item_id", Text, nullable=False),
    Column("payload", Text),
    Column("origin", Text),
    Column("at", Text),
    Index("idx_kb_changes_kind_item_id", "kind", "item_id"),
)

#: Work for ``teller worker`` (a retrain requested from chat on any replica).
jobs = Table(
    "jobs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", Text, nullable=False),
    Column("params", Text),
    Column("status", Text, nullable=False),
    Column("requested_by", Text),
    Column("worker", Text),
    Column("result", Text),
    Column("created_at", Text),
    Column("started_at", Text),
    Column("finished_at", Text),
    Index("idx_jobs_status_id", "status", "id"),
)

#: Every positioning brief written: its Markdown and its score (JSON), newest last per interview.
briefs = Table(
    "briefs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("interview_id", Text, ForeignKey("interviews.id"), nullable=False),
    Column("user_id", Text),
    Column("days", Integer),
    Column("markdown", Text, nullable=False),
    Column("score", Text, nullable=False),
    Column("written_at", Text, nullable=False),
    Index("idx_briefs_interview_id_id", "interview_id", "id"),
)

#: Every message Teller pushes to a platform and how its delivery went (pending, delivered, failed).
deliveries = Table(
    "deliveries",
    metadata,
    Column("message_id", Text, primary_key=True),
    Column("kind", Text, nullable=False),
    Column("channel", Text, nullable=False),
    Column("address", Text, nullable=False),
    Column("state", Text, nullable=False),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("parts", Integer, nullable=False, server_default=text("0")),
    #: JSON list of the platform's ids of the parts sent (``chat:message`` / ``channel:ts``).
    Column("platform_ids", Text),
    Column("reason", Text),
    Column("created_at", Text, nullable=False),
    Column("updated_at", Text, nullable=False),
    Index("idx_deliveries_state_updated_at", "state", "updated_at"),
)

#: The reply each platform message of a positioning interview got (JSON), for redeliveries.
interview_turns = Table(
    "interview_turns",
    metadata,
    Column("channel", Text, primary_key=True),
    Column("platform_id", Text, primary_key=True),
    Column("user_id", Text, nullable=False),
    Column("reply", Text, nullable=False),
    Column("created_at", Text, nullable=False),
)

#: Operator and admin actions, append-only: who (``actor``), what (``action``), on what
#: (``subject``: never a customer's id in clear), and the receipt (``details``, JSON).
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", Text, nullable=False),
    Column("actor", Text, nullable=False),
    Column("action", Text, nullable=False),
    Column("subject", Text),
    Column("details", Text),
    Index("idx_audit_log_action_at", "action", "at"),
)

#: The exact text of a message on its way to a customer whose stored copy redaction changed:
#: kept only until it is delivered (or failed, erased, or past retention).
outbox = Table(
    "outbox",
    metadata,
    Column("message_id", Text, ForeignKey("messages.id"), primary_key=True),
    Column("text", Text, nullable=False),
    Column("created_at", Text, nullable=False),
)

#: Business outcomes of Teller's replies (``adviser_call_booked``, …): a customer's button press or
#: a bank's backend records them (migration 0011); positioning counts a need resolved by one when the
#: bank says so. Removed with their message (erasure, retention).
outcomes = Table(
    "outcomes",
    metadata,
    Column("id", Text, primary_key=True),
    Column("message_id", Text, ForeignKey("messages.id"), nullable=False),
    Column("name", Text, nullable=False),
    Column("source", Text, nullable=False),
    Column("created_at", Text, nullable=False),
    Index("idx_outcomes_message_id_name", "message_id", "name", unique=True),
)

#: The ops-channel thread of each handoff that was open when its customer was erased (migration
#: 0013): only where the thread is and when, nothing of the customer's (no id, pseudonym or words).
#: An operator replying there afterwards is told in the thread that the reply was not delivered
#: (:meth:`bot.ops_desk.OpsDesk.operator_reply`). Removed by retention after its cutoff.
erased_threads = Table(
    "erased_threads",
    metadata,
    Column("ops_channel", Text, primary_key=True),
    Column("thread_ts", Text, primary_key=True),
    Column("erased_at", Text, nullable=False),
)
