-- Per-user conversation counter (issue 15): the `total` of an unfiltered conversation list reads
-- it from the user's row instead of counting the user's conversations, which cost 10-14 ms for a
-- user with 100k conversations (an index-only scan of 100k entries; EXPLAIN ANALYZE in
-- bench/results/unused-indexes.md). The statements that create or delete a conversation maintain
-- it in the same statement as the cache_version bump (repo/conversations.rs), so it changes
-- exactly when the list does and a list statement always sees it consistent with the rows. A
-- search still counts its matches.
--
-- Adding a column with a constant default rewrites nothing; the backfill updates every user row
-- once. An instance of an older version still running after this migration (a rolling upgrade)
-- creates and deletes conversations without maintaining the counter; once every instance runs
-- this version, repair any drift with the backfill statement below (idempotent).
ALTER TABLE users ADD COLUMN conversation_count BIGINT NOT NULL DEFAULT 0;

UPDATE users u SET conversation_count = c.n
  FROM (SELECT user_id, count(*) AS n FROM conversations GROUP BY user_id) c
 WHERE c.user_id = u.id AND u.conversation_count <> c.n;
