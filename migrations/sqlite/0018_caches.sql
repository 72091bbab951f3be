-- Issue 25: caches, files a task keeps for later runs of its workflow,
-- stored as chunks (tar files) named by content-addressed blobs, like
-- artifacts' manifests. Caches outlive runs: no run foreign key.

-- An entry: `staged` by its attempt's save, `saved` in the transaction
-- that ends the attempt when it succeeded. The first saved entry of a
-- (workflow, name, key) wins. `used_at` (UTC ms) is when a restore last
-- hit it: eviction past the workflow's quota takes the least recently used.
CREATE TABLE caches (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    workflow TEXT NOT NULL,
    name TEXT NOT NULL,
    key TEXT NOT NULL,
    -- The attempt that staged (and saved) it.
    attempt_id BIGINT NOT NULL,
    -- staged | saved
    state TEXT NOT NULL,
    files BIGINT NOT NULL,
    bytes BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    used_at BIGINT NOT NULL
);
CREATE UNIQUE INDEX caches_saved ON caches (workflow, name, key) WHERE state = 'saved';
CREATE INDEX caches_lru ON caches (workflow, used_at);
CREATE INDEX caches_by_attempt ON caches (attempt_id);
-- A restore key's lookup: the newest saved entry of a name.
CREATE INDEX caches_newest ON caches (workflow, name, created_at) WHERE state = 'saved';

-- `--artifact-quota` sums a workflow's staged artifacts by run (its
-- published ones through `artifacts_published`).
CREATE INDEX artifacts_staged ON artifacts (run_id) WHERE state = 'staged';

CREATE TABLE cache_chunks (
    cache_id BIGINT NOT NULL REFERENCES caches (id) ON DELETE CASCADE,
    path TEXT NOT NULL,
    size BIGINT NOT NULL,
    mode BIGINT NOT NULL,
    digest TEXT NOT NULL,
    PRIMARY KEY (cache_id, path)
);
-- The collector's mark: is a blob named by any cache?
CREATE INDEX cache_chunks_digest ON cache_chunks (digest);

-- What each attempt's restores found: hit | partial | miss, and the key
-- matched (the full key on a miss).
CREATE TABLE attempt_caches (
    attempt_id BIGINT NOT NULL REFERENCES task_attempts (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    hit TEXT NOT NULL,
    key TEXT NOT NULL,
    PRIMARY KEY (attempt_id, name)
);
