-- Search over message content (issue 15): `GET /api/v1/conversations?search=` matches a
-- conversation whose title, provider or model, or any of whose messages, contains the text
-- (`ILIKE '%text%'`, see repo/conversations.rs). A trigram GIN index on messages.content lets the
-- planner answer a selective search with one bitmap scan instead of probing every message of the
-- user; a user's own conversations bound the search either way.
--
-- pg_trgm is a contrib extension: usually installed with the server (Debian's postgresql-15 ships
-- it) and "trusted" since PostgreSQL 13, so a role with CREATE on the database may create it.
-- Where it is not available, or this role may not create it, the migration still succeeds without
-- the index (a NOTICE says why) and search works, only by scanning the user's messages. Creating
-- the extension later and rerunning this file's CREATE INDEX by hand adds the index.
--
-- The index is built inside the migration's transaction, which blocks writes to `messages` for the
-- build: on the benchmark's 1M messages it took 191 s and 386 MB on the README's 2-vCPU machine
-- (shared with other work at the time). On a large live database, create it first without
-- blocking, under the same name, and this migration then skips it:
--   CREATE EXTENSION IF NOT EXISTS pg_trgm;
--   CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_messages_content_trgm
--     ON messages USING gin (content gin_trgm_ops);
DO $migration$
DECLARE
  trgm_schema name;
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm') THEN
    IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm') THEN
      BEGIN
        CREATE EXTENSION pg_trgm;
      EXCEPTION WHEN OTHERS THEN
        RAISE NOTICE 'pg_trgm could not be created (%); search works without its index', SQLERRM;
      END;
    ELSE
      RAISE NOTICE 'pg_trgm is not available on this server; search works without its index';
    END IF;
  END IF;
  SELECT n.nspname INTO trgm_schema
    FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
   WHERE e.extname = 'pg_trgm';
  IF trgm_schema IS NOT NULL THEN
    EXECUTE format(
      'CREATE INDEX IF NOT EXISTS idx_messages_content_trgm ON messages USING gin (content %I.gin_trgm_ops)',
      trgm_schema);
  END IF;
END
$migration$;
