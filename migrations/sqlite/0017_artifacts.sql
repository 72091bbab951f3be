-- Issue 25: artifacts, files a task publishes for the tasks downstream of
-- it, as manifests of content-addressed blobs kept in an object store.

-- A pinned run keeps its artifacts whatever the retention (NULL: not pinned).
ALTER TABLE runs ADD COLUMN pinned_at BIGINT;

-- The blobs the object store holds, by digest. `touched_at` is when a
-- publish last counted on it: the collector removes a blob no manifest names
-- only once it has been untouched for its grace. A negative `touched_at`
-- is the collector's claim on a digest whose object it is deleting.
CREATE TABLE blobs (
    digest TEXT PRIMARY KEY,
    size BIGINT NOT NULL,
    touched_at BIGINT NOT NULL
);
CREATE INDEX blobs_by_touch ON blobs (touched_at);

-- A manifest: `staged` by its attempt's commit, `published` in the
-- transaction that makes the attempt final (on success, or whatever the end
-- with `when: always`). At most one published per (run, name).
CREATE TABLE artifacts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id BIGINT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    task TEXT NOT NULL,
    name TEXT NOT NULL,
    attempt_id BIGINT NOT NULL,
    -- staged | published
    state TEXT NOT NULL,
    -- 1: `when: always`.
    when_always BIGINT NOT NULL,
    files BIGINT NOT NULL,
    bytes BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX artifacts_published ON artifacts (run_id, name) WHERE state = 'published';
CREATE INDEX artifacts_by_attempt ON artifacts (attempt_id);
-- Retention's scan: old artifacts, oldest first.
CREATE INDEX artifacts_by_age ON artifacts (created_at);

CREATE TABLE artifact_files (
    artifact_id BIGINT NOT NULL REFERENCES artifacts (id) ON DELETE CASCADE,
    path TEXT NOT NULL,
    size BIGINT NOT NULL,
    mode BIGINT NOT NULL,
    digest TEXT NOT NULL,
    PRIMARY KEY (artifact_id, path)
);
-- The collector's mark: is a blob named by any manifest?
CREATE INDEX artifact_files_digest ON artifact_files (digest);
