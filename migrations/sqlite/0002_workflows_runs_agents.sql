-- Workflows and their versions: every apply that changes the spec adds a
-- version; runs point at the version they ran.
CREATE TABLE workflows (
    name TEXT PRIMARY KEY NOT NULL,
    current_version BIGINT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    deleted BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE workflow_versions (
    workflow TEXT NOT NULL REFERENCES workflows (name),
    version BIGINT NOT NULL,
    spec TEXT NOT NULL,
    source TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (workflow, version)
);

-- The scheduler's latest word on each pipeline.
CREATE TABLE pipelines (
    workflow TEXT NOT NULL REFERENCES workflows (name),
    name TEXT NOT NULL,
    trigger_type TEXT NOT NULL,
    scheduler_status TEXT NOT NULL DEFAULT 'not_scheduled',
    scheduler_reason TEXT,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (workflow, name)
);

CREATE TABLE agents (
    id TEXT PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    builtin BIGINT NOT NULL DEFAULT 0,
    labels TEXT NOT NULL DEFAULT '{}',
    runtimes TEXT NOT NULL DEFAULT '[]',
    capacity BIGINT NOT NULL,
    version TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    workflow TEXT NOT NULL,
    version BIGINT NOT NULL,
    pipeline TEXT NOT NULL,
    params TEXT NOT NULL DEFAULT '{}',
    trigger TEXT NOT NULL,
    status TEXT NOT NULL,
    scheduler_status TEXT NOT NULL DEFAULT 'not_scheduled',
    scheduler_reason TEXT,
    agent_id TEXT,
    lease_expires_at BIGINT,
    attempt BIGINT NOT NULL DEFAULT 1,
    max_attempts BIGINT NOT NULL DEFAULT 1,
    cancel_requested BIGINT NOT NULL DEFAULT 0,
    error TEXT,
    requested_at BIGINT NOT NULL,
    scheduled_at BIGINT,
    started_at BIGINT,
    finished_at BIGINT,
    FOREIGN KEY (workflow, version) REFERENCES workflow_versions (workflow, version)
);
CREATE INDEX runs_by_status ON runs (status, id);
CREATE INDEX runs_by_workflow ON runs (workflow, pipeline, id);
CREATE INDEX runs_by_agent ON runs (agent_id, status);

CREATE TABLE task_runs (
    run_id BIGINT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    task TEXT NOT NULL,
    position BIGINT NOT NULL,
    status TEXT NOT NULL,
    attempt BIGINT NOT NULL DEFAULT 0,
    output TEXT,
    error TEXT,
    started_at BIGINT,
    finished_at BIGINT,
    duration_ms BIGINT,
    PRIMARY KEY (run_id, task)
);

CREATE TABLE step_runs (
    run_id BIGINT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    task TEXT NOT NULL,
    position BIGINT NOT NULL,
    name TEXT NOT NULL,
    post BIGINT NOT NULL DEFAULT 0,
    status TEXT NOT NULL,
    exit_code BIGINT,
    started_at BIGINT,
    finished_at BIGINT,
    duration_ms BIGINT,
    PRIMARY KEY (run_id, task, name)
);

-- Every event an agent reported, numbered per run attempt, so a resent
-- event is recognised and applied once.
CREATE TABLE run_events (
    run_id BIGINT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    attempt BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    body TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    PRIMARY KEY (run_id, attempt, seq)
);

-- Log lines, kept apart from state rows; `id` orders them and is the offset
-- a follower resumes from.
CREATE TABLE log_lines (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id BIGINT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    attempt BIGINT NOT NULL,
    task TEXT NOT NULL,
    step TEXT NOT NULL,
    stream TEXT NOT NULL,
    data TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX log_lines_by_step ON log_lines (run_id, task, step, id);

-- Singleton work (scheduling, supervision) is done by whichever server holds
-- the lease; the others stand by.
CREATE TABLE leases (
    name TEXT PRIMARY KEY NOT NULL,
    holder TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
