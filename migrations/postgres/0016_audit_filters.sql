-- The audit log filtered by action (or a group of actions, as a range) or
-- by who acted, newest first: an index range each, not a scan of the log.
CREATE INDEX audit_by_action ON audit_log (action, id);
CREATE INDEX audit_by_actor ON audit_log (actor, id);
