-- Issue 24: the task is the unit the server places. One row per dispatch of
-- a task (an attempt): what is placed, leased and numbered.
CREATE TABLE task_attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id BIGINT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    task TEXT NOT NULL,
    -- 1, 2, ... per task of a run.
    number BIGINT NOT NULL,
    -- ready | placed | running | success | error | cancelled | unknown
    status TEXT NOT NULL,
    agent_id TEXT,
    lease_expires_at BIGINT,
    -- A retry's backoff: not placed before this.
    not_before BIGINT,
    -- The agent a lost attempt died on (a soft preference against it).
    avoid_agent TEXT,
    -- 0 for a re-placement of an attempt lost before it started.
    counts_retry BIGINT NOT NULL DEFAULT 1,
    cancel_requested BIGINT NOT NULL DEFAULT 0,
    -- Why it waits, as the scheduler last said.
    scheduler_reason TEXT,
    error TEXT,
    ready_at BIGINT NOT NULL,
    placed_at BIGINT,
    started_at BIGINT,
    finished_at BIGINT,
    duration_ms BIGINT,
    UNIQUE (run_id, task, number)
);

-- Events per task attempt: the idempotence ledger of runs of model 2
-- (`run_events` stays for runs of model 1).
CREATE TABLE attempt_events (
    attempt_id BIGINT NOT NULL REFERENCES task_attempts (id) ON DELETE CASCADE,
    seq BIGINT NOT NULL,
    body TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    PRIMARY KEY (attempt_id, seq)
);

-- The scheduler's queue: only ready attempts are in it.
CREATE INDEX task_attempts_ready ON task_attempts (id) WHERE status = 'ready';
-- What an agent holds (sessions, load, drain, the agents page).
CREATE INDEX task_attempts_held ON task_attempts (agent_id, id) WHERE status IN ('placed', 'running');
-- The supervisor's scan.
CREATE INDEX task_attempts_leases ON task_attempts (lease_expires_at) WHERE status IN ('placed', 'running');
-- A run's attempts (run page, cancel fan-out, concurrency).
CREATE INDEX task_attempts_by_run ON task_attempts (run_id, task, number);

-- What placement and readiness need, stored with the run so neither parses
-- a spec. NULL (or the default) on runs from before this migration: those
-- are of model 1, or filled when the readiness controller converts them.
-- The task's selector as JSON: the pipeline's merged with the task's.
ALTER TABLE task_runs ADD COLUMN selector TEXT;
-- 'docker' or 'shell'.
ALTER TABLE task_runs ADD COLUMN runtime TEXT;
-- The `if` text, NULL when none.
ALTER TABLE task_runs ADD COLUMN condition TEXT;
-- The tasks depending on this one, as a JSON array of names.
ALTER TABLE task_runs ADD COLUMN dependants TEXT;
-- How many of its dependencies are not final yet.
ALTER TABLE task_runs ADD COLUMN waiting_on BIGINT;
ALTER TABLE task_runs ADD COLUMN retries BIGINT NOT NULL DEFAULT 0;
ALTER TABLE task_runs ADD COLUMN backoff_ms BIGINT;
ALTER TABLE task_runs ADD COLUMN retries_used BIGINT NOT NULL DEFAULT 0;
-- The latest attempt's agent, for pages and lists.
ALTER TABLE task_runs ADD COLUMN agent_id TEXT;
-- 'spread' or 'together'.
ALTER TABLE runs ADD COLUMN placement TEXT NOT NULL DEFAULT 'spread';
-- Under `together`: the agent that took the run's first task.
ALTER TABLE runs ADD COLUMN pinned_agent TEXT;
-- The pipeline's `concurrency`: most tasks of the run placed at once (NULL: no limit).
ALTER TABLE runs ADD COLUMN concurrency BIGINT;
-- Tasks not final yet; at 0 the run ends.
ALTER TABLE runs ADD COLUMN tasks_left BIGINT;
-- Above 0: the readiness controller should look at the run (a counter, so
-- a mark made while it looks survives its clearing).
ALTER TABLE runs ADD COLUMN dirty BIGINT NOT NULL DEFAULT 0;
-- 1: the run goes to one agent, which walks its DAG; 2: the server places
-- its tasks one by one.
ALTER TABLE runs ADD COLUMN model BIGINT NOT NULL DEFAULT 1;
CREATE INDEX runs_dirty ON runs (id) WHERE dirty > 0;

-- A draining agent takes no new task and finishes what it holds.
ALTER TABLE agents ADD COLUMN draining BIGINT NOT NULL DEFAULT 0;
