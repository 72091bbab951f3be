-- Protected secrets: only workflow versions an admin approved may use them,
-- and only in the workflows (or pipelines) their allow-list names.
-- `allowed` is a JSON array of "WORKFLOW" or "WORKFLOW/PIPELINE".
ALTER TABLE secrets ADD COLUMN protected INTEGER NOT NULL DEFAULT 0;
ALTER TABLE secrets ADD COLUMN allowed TEXT NOT NULL DEFAULT '[]';
-- Who approved a version for protected secrets, and when (UTC ms); NULL for
-- a version nobody approved, which includes every version stored before.
ALTER TABLE workflow_versions ADD COLUMN approved_by TEXT;
ALTER TABLE workflow_versions ADD COLUMN approved_at BIGINT;
