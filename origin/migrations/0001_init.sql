-- Schema of origin-api.md §1.2. Cascades are real foreign keys; every UPDATE sets updated_at
-- explicitly (no triggers).

CREATE TABLE users (
  id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  username      VARCHAR(80)  NOT NULL UNIQUE,          -- stored lower-case
  password_hash VARCHAR(256) NOT NULL,
  is_admin      BOOLEAN      NOT NULL DEFAULT false,   -- first user gets true
  -- Bumped in the same transaction as every write to this user's conversations or comparisons:
  -- list ETags derive from it, so a conditional list GET costs one indexed lookup (§7.4).
  cache_version BIGINT       NOT NULL DEFAULT 0,
  created_at    TIMESTAMPTZ  NOT NULL DEFAULT now(),
  updated_at    TIMESTAMPTZ  NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
  id                  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  user_id             BIGINT      NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  provider            VARCHAR(32) NOT NULL CHECK (provider IN ('openai','anthropic','gemini','mistral')),
  key_encrypted       BYTEA       NOT NULL,              -- Fernet token bytes
  override_system_key BOOLEAN     NOT NULL DEFAULT false,
  created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
  updated_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
  CONSTRAINT uq_user_provider UNIQUE (user_id, provider)  -- serves every (user_id, provider) lookup
);

CREATE TABLE conversations (
  id              UUID         PRIMARY KEY DEFAULT gen_random_uuid(),
  user_id         BIGINT       NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  provider        VARCHAR(32)  NOT NULL,
  model           VARCHAR(100) NOT NULL,
  title           VARCHAR(255),
  last_message_at TIMESTAMPTZ  NOT NULL DEFAULT now(),
  created_at      TIMESTAMPTZ  NOT NULL DEFAULT now(),
  updated_at      TIMESTAMPTZ  NOT NULL DEFAULT now()
);

CREATE TABLE messages (
  id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  conversation_id UUID        NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
  role            VARCHAR(20) NOT NULL CHECK (role IN ('system','user','assistant')),
  content         TEXT        NOT NULL,
  created_at      TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),  -- two inserts in one tx must not tie
  updated_at      TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);

CREATE TABLE comparison_results (
  id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  user_id         BIGINT      NOT NULL REFERENCES users(id) ON DELETE CASCADE,
  prompt          TEXT        NOT NULL,
  results         JSONB       NOT NULL CHECK (jsonb_typeof(results) = 'array'),
  preferred_index INTEGER     CHECK (preferred_index >= 0),
  created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
  updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
