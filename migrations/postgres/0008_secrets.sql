-- Secrets: named values, global (scope '') or for one workflow (scope = its
-- name). Only ciphertext is stored: base64 of nonce || sealed value, under
-- the master key whose fingerprint is `key_id`, with the scope and the name
-- as associated data, so a value copied into another row does not decrypt.
CREATE TABLE secrets (
    scope TEXT NOT NULL,
    name TEXT NOT NULL,
    key_id TEXT NOT NULL,
    ciphertext TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_by TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (scope, name)
);
CREATE INDEX secrets_by_name ON secrets (name);
