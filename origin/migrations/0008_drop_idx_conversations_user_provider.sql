-- migrate: no-transaction
-- Drops idx_conversations_user_provider, conversations (user_id, provider), from 0002: no
-- statement filters conversations by provider equality (search matches `provider ILIKE '%…%'`,
-- which a btree cannot serve). The planner did pick it for a few plans, only as the smallest
-- index starting with user_id (the total of a list, the scan of a search); after the drop the same
-- plans use idx_conversations_user_last_message with the same shape and timings within noise: see
-- bench/results/unused-indexes.md. CONCURRENTLY, in a file of its own, as 0007.
DROP INDEX CONCURRENTLY IF EXISTS idx_conversations_user_provider;
