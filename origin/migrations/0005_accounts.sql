-- Account administration (issue 15): disabled accounts and "revoke every token of a user".
--
-- disabled_at: set by an administrator (API or CLI); a disabled user cannot log in and every
-- token they hold is refused. The statement that loads the authenticated user reads it, so the
-- check costs no statement per request.
--
-- token_generation: every JWT carries the generation of its user at issue time (claim `gen`,
-- 0 when absent); a token whose generation differs from the row's is refused, in the same
-- statement. A password change (own or reset by an administrator) bumps it, which revokes every
-- token issued before at once without a row per token (revoked_tokens stays for logout). A
-- counter rather than a "tokens issued before" timestamp: JWT `iat` has one-second resolution,
-- and a token issued in the same second as the change must be decidable.
ALTER TABLE users
  ADD COLUMN disabled_at      TIMESTAMPTZ,
  ADD COLUMN token_generation INTEGER NOT NULL DEFAULT 0;
