-- A database written by Teller before Alembic (PRAGMA user_version 1), for the adoption test.
PRAGMA user_version = 1;
BEGIN TRANSACTION;
CREATE TABLE "conversations" (
   "id" TEXT PRIMARY KEY,
   "channel" TEXT,
   "external_id" TEXT,
   "user_id" TEXT,
   "created_at" TEXT,
   "updated_at" TEXT
);
INSERT INTO "conversations" VALUES('c_bae8f5379d52c0e4','web','u1','u1','2026-11-30T08:09:16.845Z','2026-11-30T08:09:16.845Z');
CREATE TABLE "feedback" (
   "id" TEXT PRIMARY KEY,
   "message_id" TEXT REFERENCES "messages"("id"),
   "helpful" INTEGER,
   "comment" TEXT,
   "user_id" TEXT,
   "created_at" TEXT
);
INSERT INTO "feedback" VALUES('f_af42632aab01cd46','m_9e2ac7b6aafaca82',0,'useless',NULL,'2026-11-30T08:09:16.845Z');
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
);
INSERT INTO "messages" VALUES('m_9cf0c37e65a8d52d','c_bae8f5379d52c0e4','in','web','u1','u1:1',NULL,'my card [CARD] never came',NULL,NULL,NULL,NULL,NULL,NULL,NULL,'2026-11-30T08:09:16.845Z');
INSERT INTO "messages" VALUES('m_9e2ac7b6aafaca82','c_bae8f5379d52c0e4','out','web','u1',NULL,'m_9cf0c37e65a8d52d','Sorry, a person will help','handoff','card_arrival',0.4,NULL,NULL,NULL,'[{"label": "Talk to a person", "value": "handoff"}]','2026-11-30T08:09:16.845Z');
CREATE UNIQUE INDEX "idx_conversations_channel_external_id"
    ON "conversations" ("channel", "external_id");
CREATE INDEX "idx_messages_conversation_id_created_at"
    ON "messages" ("conversation_id", "created_at");
CREATE UNIQUE INDEX messages_platform_in ON messages(channel, platform_id) WHERE direction = 'in' AND platform_id IS NOT NULL;
CREATE INDEX "idx_feedback_message_id"
    ON "feedback" ("message_id");
COMMIT;
