-- One-time join tokens: an agent exchanges one for its own credential.
-- Only SHA-256 hashes of tokens and credentials are stored.
CREATE TABLE join_tokens (
    token_hash TEXT PRIMARY KEY NOT NULL,
    labels TEXT NOT NULL DEFAULT '{}',
    expires_at BIGINT NOT NULL,
    used_at BIGINT,
    used_by TEXT,
    created_at BIGINT NOT NULL
);

ALTER TABLE agents ADD COLUMN credential_hash TEXT;
ALTER TABLE agents ADD COLUMN revoked BIGINT NOT NULL DEFAULT 0;
CREATE UNIQUE INDEX agents_by_credential ON agents (credential_hash);
