-- Token revocation (logout). A JWT whose `jti` is listed here is refused until it expires: the
-- statement that loads the authenticated user also checks this table (a primary-key lookup), so
-- revocation costs no extra statement per request. Rows are useless once `expires_at` has passed;
-- logout deletes a bounded batch of them each time (index on expires_at).
CREATE TABLE revoked_tokens (
  jti        TEXT        PRIMARY KEY,
  user_id    BIGINT      NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  token_type VARCHAR(16) NOT NULL CHECK (token_type IN ('access', 'refresh')),
  expires_at TIMESTAMPTZ NOT NULL,
  revoked_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX idx_revoked_tokens_expires_at ON revoked_tokens (expires_at);
