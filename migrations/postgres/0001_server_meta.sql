-- Facts about this Xene installation, as key/value pairs.
CREATE TABLE server_meta (
    key TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);
