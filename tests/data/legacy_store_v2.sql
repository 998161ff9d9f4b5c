-- A database written by Teller before Alembic (PRAGMA user_version 2), for the adoption test.
PRAGMA user_version = 2;
BEGIN TRANSACTION;
CREATE TABLE "conversations" (
   "id" TEXT PRIMARY KEY,
   "channel" TEXT,
   "external_id" TEXT,
   "user_id" TEXT,
   "created_at" TEXT,
   "updated_at" TEXT
);
INSERT INTO "conversations" VALUES('c_7884107d7b403769','web','u1','u1','2026-11-30T08:09:16.856Z','2026-11-30T08:09:16.856Z');
CREATE TABLE "corrections" (
   "id" INTEGER PRIMARY KEY,
   "item_id" INTEGER REFERENCES "review_items"("id"),
   "text" TEXT,
   "key" TEXT,
   "action" TEXT,
   "label" TEXT,
   "kb_id" TEXT,
   "answer" TEXT,
   "author" TEXT,
   "created_at" TEXT,
   "superseded_by" INTEGER,
   "superseded_at" TEXT
);
CREATE TABLE "feedback" (
   "id" TEXT PRIMARY KEY,
   "message_id" TEXT REFERENCES "messages"("id"),
   "helpful" INTEGER,
   "comment" TEXT,
   "user_id" TEXT,
   "created_at" TEXT
);
INSERT INTO "feedback" VALUES('f_9a5463269d46c81c','m_649ce23bbc75e39c',0,'useless',NULL,'2026-11-30T08:09:16.856Z');
CREATE TABLE "flags" (
   "id" TEXT PRIMARY KEY,
   "message_id" TEXT REFERENCES "messages"("id"),
   "reason" TEXT,
   "actor" TEXT,
   "source" TEXT,
   "created_at" TEXT
);
INSERT INTO "flags" VALUES('fl_ac94969f92cfbbc7','m_649ce23bbc75e39c','wrong','slack:UOPS','command','2026-11-30T08:09:16.856Z');
CREATE TABLE "handoffs" (
   "id" TEXT PRIMARY KEY,
   "channel" TEXT,
   "conversation_id" TEXT REFERENCES "conversations"("id"),
   "customer_user_id" TEXT,
   "customer_chat_id" TEXT,
   "message_id" TEXT,
   "ops_channel" TEXT,
   "thread_ts" TEXT,
   "status" TEXT,
   "opened_at" TEXT,
   "closed_at" TEXT,
   "closed_by" TEXT
);
INSERT INTO "handoffs" VALUES('h_7ea8fe5ad2da00bd','web','c_7884107d7b403769','u1','u1','m_649ce23bbc75e39c',NULL,NULL,'open','2026-11-30T08:09:16.856Z',NULL,NULL);
CREATE TABLE "messages" (
   "id" TEXT PRIMARY KEY,
   "conversation_id" TEXT REFERENCES "conversations"("id"),
   "direction" TEXT,
   "channel" TEXT,
   "user_id" TEXT,
   "platform_id" TEXT,
   "reply_to" TEXT,
   "text" TEXT,
   "route" TEXT,
   "intent" TEXT,
   "confidence" REAL,
   "kb_id" TEXT,
   "model_version" TEXT,
   "latency_ms" REAL,
   "choices" TEXT,
   "created_at" TEXT
, author TEXT);
INSERT INTO "messages" VALUES('m_73c2bcaebc766dd0','c_7884107d7b403769','in','web','u1','u1:1',NULL,'my card [CARD] never came',NULL,NULL,NULL,NULL,NULL,NULL,NULL,'2026-11-30T08:09:16.856Z',NULL);
INSERT INTO "messages" VALUES('m_649ce23bbc75e39c','c_7884107d7b403769','out','web','u1',NULL,'m_73c2bcaebc766dd0','Sorry, a person will help','handoff','card_arrival',0.4,NULL,NULL,NULL,'[{"label": "Talk to a person", "value": "handoff"}]','2026-11-30T08:09:16.856Z',NULL);
INSERT INTO "messages" VALUES('m_b4f50fad6ce27a54','c_7884107d7b403769','out','web','u1',NULL,NULL,'Hello, I''m Ana','human',NULL,NULL,NULL,NULL,NULL,'[]','2026-11-30T08:09:16.856Z','slack:UOPS');
CREATE TABLE "review_items" (
   "id" INTEGER PRIMARY KEY,
   "key" TEXT,
   "text" TEXT,
   "status" TEXT,
   "route" TEXT,
   "suggestion_kind" TEXT,
   "suggested_intent" TEXT,
   "suggested_kb_id" TEXT,
   "suggested_confidence" REAL,
   "suggestion_model" TEXT,
   "resolution" TEXT,
   "resolved_by" TEXT,
   "resolved_at" TEXT,
   "created_at" TEXT,
   "updated_at" TEXT
);
CREATE TABLE "review_sources" (
   "item_id" INTEGER REFERENCES "review_items"("id"),
   "reply_id" TEXT REFERENCES "messages"("id"),
   "message_id" TEXT REFERENCES "messages"("id"),
   "text" TEXT,
   "reason" TEXT,
   "created_at" TEXT,
   PRIMARY KEY ("reply_id", "reason")
);
CREATE UNIQUE INDEX "idx_conversations_channel_external_id"
    ON "conversations" ("channel", "external_id");
CREATE INDEX "idx_messages_conversation_id_created_at"
    ON "messages" ("conversation_id", "created_at");
CREATE UNIQUE INDEX messages_platform_in ON messages(channel, platform_id) WHERE direction = 'in' AND platform_id IS NOT NULL;
CREATE INDEX "idx_feedback_message_id"
    ON "feedback" ("message_id");
CREATE INDEX messages_reply_to ON messages(reply_to);
CREATE INDEX messages_platform ON messages(channel, platform_id) WHERE platform_id IS NOT NULL;
CREATE UNIQUE INDEX "idx_flags_message_id_actor"
    ON "flags" ("message_id", "actor");
CREATE INDEX "idx_review_items_status_key"
    ON "review_items" ("status", "key");
CREATE INDEX "idx_review_sources_item_id"
    ON "review_sources" ("item_id");
CREATE INDEX "idx_corrections_superseded_by"
    ON "corrections" ("superseded_by");
CREATE UNIQUE INDEX handoffs_open ON handoffs(conversation_id) WHERE status = 'open';
CREATE INDEX "idx_handoffs_thread_ts"
    ON "handoffs" ("thread_ts");
COMMIT;
