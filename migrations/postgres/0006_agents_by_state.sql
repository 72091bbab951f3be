-- Metrics count agents by state at every scrape: an index range, not a scan.
CREATE INDEX agents_by_state ON agents (state, revoked);
