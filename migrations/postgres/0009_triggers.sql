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
