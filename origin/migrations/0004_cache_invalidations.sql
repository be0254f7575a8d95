-- Transactional outbox of cache invalidations for a fleet (issue 11). A write that names cache
-- groups in `Cache-Group-Invalidation` inserts one row here in the same transaction, when the
-- invalidation bus is configured; the relay (every origin instance, one at a time) publishes the
-- rows to NATS JetStream in id order with `Nats-Msg-Id` = id and deletes them once acknowledged.
--
-- Ids are commit-ordered: writers take a transaction-scoped advisory lock right before the insert
-- (see origin/src/repo/outbox.rs), so a row never becomes visible after a row with a larger id.
-- The proxies rely on it: "applied id X" means every invalidation up to X was applied.
CREATE TABLE cache_invalidations (
  id         BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  groups     TEXT[]      NOT NULL,
  paths      TEXT[]      NOT NULL,
  created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
