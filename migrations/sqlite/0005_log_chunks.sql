-- Logs stored once, per step, as append-only chunks with byte offsets.
-- `id` orders every chunk of a run for feeds that resume; `offset_bytes`
-- places the chunk in its step's log (one log per step and attempt), so a
-- gap between chunks is a cut made by the per-step cap.
CREATE TABLE log_chunks (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id BIGINT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    attempt BIGINT NOT NULL,
    task TEXT NOT NULL,
    step TEXT NOT NULL,
    stream TEXT NOT NULL,
    offset_bytes BIGINT NOT NULL,
    bytes BIGINT NOT NULL,
    data TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX log_chunks_by_run ON log_chunks (run_id, id);
CREATE INDEX log_chunks_by_step ON log_chunks (run_id, task, step, attempt, offset_bytes);

-- How much each step has logged, and how much of it the cap dropped.
CREATE TABLE step_logs (
    run_id BIGINT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    attempt BIGINT NOT NULL,
    task TEXT NOT NULL,
    step TEXT NOT NULL,
    bytes BIGINT NOT NULL,
    lines BIGINT NOT NULL,
    PRIMARY KEY (run_id, attempt, task, step)
);

-- Earlier logs, a line per chunk.
INSERT INTO log_chunks (run_id, attempt, task, step, stream, offset_bytes, bytes, data, at)
SELECT run_id, attempt, task, step, stream,
       COALESCE(SUM(LENGTH(CAST(data AS BLOB)) + 1) OVER (
           PARTITION BY run_id, attempt, task, step ORDER BY id
           ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0),
       LENGTH(CAST(data AS BLOB)) + 1, data || char(10), at
FROM log_lines ORDER BY id;
INSERT INTO step_logs (run_id, attempt, task, step, bytes, lines)
SELECT run_id, attempt, task, step, SUM(bytes), COUNT(*) FROM log_chunks GROUP BY run_id, attempt, task, step;
DROP TABLE log_lines;
-- Log events keep their number (so a resent one is recognised) but not
-- their text, which lives in log_chunks only.
UPDATE run_events SET body = '{"type":"log"}' WHERE body LIKE '{"type":"log",%';
