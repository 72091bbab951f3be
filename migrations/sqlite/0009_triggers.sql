-- Why a run started: a cron fire's time and its reason (catch-up, queued
-- behind an earlier run) beside the trigger's name.
ALTER TABLE runs ADD COLUMN trigger_reason TEXT;
ALTER TABLE runs ADD COLUMN fired_at BIGINT;

-- Every cron fire handled, whatever came of it. The key makes a fire
-- happen once even if two servers both believed they held the cron lease:
-- the second insert of the same fire finds the row and starts nothing.
CREATE TABLE cron_fires (
    workflow TEXT NOT NULL,
    pipeline TEXT NOT NULL,
    fire_at BIGINT NOT NULL,
    -- started | skipped | queued | error
    outcome TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    run_id BIGINT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (workflow, pipeline, fire_at)
);
CREATE INDEX cron_fires_by_outcome ON cron_fires (outcome, workflow, pipeline);

-- A webhook pipeline's hook: the unguessable id in its URL and the secret
-- deliveries are signed with. The secret must be readable to check an
-- HMAC, so it cannot be a hash.
CREATE TABLE webhooks (
    id TEXT PRIMARY KEY NOT NULL,
    workflow TEXT NOT NULL,
    pipeline TEXT NOT NULL,
    secret TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    rotated_at BIGINT NOT NULL,
    UNIQUE (workflow, pipeline)
);

-- Every delivery to a known hook, accepted or refused, with why.
CREATE TABLE webhook_deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    hook_id TEXT NOT NULL,
    received_at BIGINT NOT NULL,
    -- github | standard | none
    scheme TEXT NOT NULL,
    -- What a replay would repeat: the signed webhook-id, or the body's hash.
    replay_key TEXT,
    status BIGINT NOT NULL,
    accepted BIGINT NOT NULL,
    reason TEXT NOT NULL,
    run_id BIGINT
);
CREATE INDEX webhook_deliveries_by_hook ON webhook_deliveries (hook_id, id);
-- A delivery is accepted once: a replay of it finds this.
CREATE UNIQUE INDEX webhook_deliveries_once ON webhook_deliveries (hook_id, replay_key) WHERE accepted = 1;
