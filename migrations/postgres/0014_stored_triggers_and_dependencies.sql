-- Each pipeline's trigger as the core `Trigger` in JSON, so that the
-- workflows list reads rows, not every workflow's whole spec. NULL for
-- rows from before this migration until the server's start fills them.
ALTER TABLE pipelines ADD COLUMN trigger_spec TEXT;
-- Each task's `depends_on` as a JSON array of task names, stored with the
-- run so that reading a run never parses its version's spec. NULL for
-- runs from before this migration: those read it from the spec.
ALTER TABLE task_runs ADD COLUMN depends_on TEXT;
