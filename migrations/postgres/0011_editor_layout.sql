-- Where the visual editor's user placed each task, and which way the
-- drawing runs: kept with each version, outside the spec's meaning.
ALTER TABLE workflow_versions ADD COLUMN layout TEXT;
