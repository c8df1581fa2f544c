-- Run folders (<db>.runs/<task>.<attempt>/: stdout, stderr, exit status) are removed once their
-- task ended and `run_retention_ms` passed (default 1 hour): the result, the error with the last
-- stderr lines, and the messages are in the database by then. A task whose folder is still on disk
-- keeps run_dir; the cleaner clears it. This index finds those tasks without scanning finished ones,
-- so a worker's maintenance pass costs nothing on a database of a million finished tasks.
CREATE INDEX tasks_run_folders ON tasks (finished_at) WHERE run_dir IS NOT NULL AND finished_at IS NOT NULL;
