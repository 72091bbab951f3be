-- One-time codes of `xenectl login`: a signed-in browser gets one, hands it
-- to the CLI's loopback listener, and the CLI spends it once for an API
-- token. Only hashes are stored; a code lives two minutes.
CREATE TABLE cli_codes (
    code_hash TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL REFERENCES users (id),
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE INDEX cli_codes_by_expiry ON cli_codes (expires_at);
