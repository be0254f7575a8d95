-- Performance indexes (origin-api.md §1.3). Plain CREATE INDEX inside the migration's transaction:
-- right for a fresh or small database. A later index on a large live table goes in its own file
-- starting with "-- migrate: no-transaction" and uses CREATE INDEX CONCURRENTLY.
--
-- Deliberately NOT created (each is covered by an index below or unused):
--   conversations(user_id), comparison_results(user_id)  leading column of a composite below
--   api_keys(user_id), api_keys(user_id, provider[, override_system_key])  covered by uq_user_provider
--   messages(conversation_id)                             leading column of idx_message_conversation_created
--   messages(created_at DESC)                             no query uses it
--   users(email)                                          there is no email column

-- conversation list: WHERE user_id = $1 ORDER BY last_message_at DESC, id DESC (+ keyset cursor)
CREATE INDEX IF NOT EXISTS idx_conversations_user_last_message
  ON conversations (user_id, last_message_at DESC, id DESC);
-- a user's conversations by creation time
CREATE INDEX IF NOT EXISTS idx_conversation_user_created ON conversations (user_id, created_at DESC);
-- filter by provider
CREATE INDEX IF NOT EXISTS idx_conversations_user_provider ON conversations (user_id, provider);
-- messages of a conversation in order; also serves the FK, the per-conversation count and the preview
CREATE INDEX IF NOT EXISTS idx_message_conversation_created ON messages (conversation_id, created_at, id);
-- comparison history: WHERE user_id = $1 ORDER BY created_at DESC, id DESC (+ keyset cursor)
CREATE INDEX IF NOT EXISTS idx_comparison_user_created
  ON comparison_results (user_id, created_at DESC, id DESC);
