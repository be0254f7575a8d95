-- migrate: no-transaction
-- Drops idx_conversation_user_created, conversations (user_id, created_at DESC), from 0002: no
-- statement orders or filters conversations by created_at (the list sorts by last_message_at,
-- detail and writes go by primary key), so the index only cost writes and space. Every plan of the
-- origin's statements on the benchmark's seeded dataset, before and after this drop, is in
-- bench/results/unused-indexes.md. CONCURRENTLY, so dropping it never blocks the list or writes;
-- hence a file of its own (the runner's no-transaction rule: exactly one statement).
DROP INDEX CONCURRENTLY IF EXISTS idx_conversation_user_created;
