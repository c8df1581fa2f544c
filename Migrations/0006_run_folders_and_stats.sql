-- Run folders (<db>.runs/<task>.<attempt>/: stdout, stderr, exit status) are removed once their
-- task ended and `run_retention_ms` passed (default 1 hour): the result, the error with the last
-- stderr lines, and the messages are in the database by then. A task whose folder is still on disk
-- keeps run_dir; the cleaner clears it. This index finds those tasks without scanning finished ones,
-- so a worker's maintenance pass costs nothing on a database of a million finished tasks.
CREATE INDEX tasks_run_folders ON tasks (finished_at) WHERE run_dir IS NOT NULL AND finished_at IS NOT NULL;

-- `bgq stats` without scanning every task: each finished task keeps how long it ran, in
-- milliseconds, written once by the transition that ends it (computing it from the two ISO 8601 texts
-- with julianday() for every row made stats take 365 ms at 37,000 tasks). The partial indexes below
-- cover the per-key and per-agent/model figures, so stats reads index entries only.
ALTER TABLE tasks ADD COLUMN run_ms INTEGER;
UPDATE tasks SET run_ms = CAST(round((julianday(finished_at) - julianday(started_at)) * 86400000) AS INTEGER)
WHERE finished_at IS NOT NULL AND started_at IS NOT NULL;

CREATE TRIGGER tasks_run_ms_on_finish AFTER UPDATE OF finished_at ON tasks
WHEN NEW.finished_at IS NOT NULL AND NEW.started_at IS NOT NULL AND NEW.run_ms IS NULL
BEGIN
    UPDATE tasks SET run_ms = CAST(round((julianday(NEW.finished_at) - julianday(NEW.started_at)) * 86400000) AS INTEGER)
    WHERE seq = NEW.seq;
END;

CREATE INDEX tasks_stats_keys ON tasks (concurrency_key, finished_at, model_key, run_ms)
WHERE run_ms IS NOT NULL AND concurrency_key IS NOT NULL;
CREATE INDEX tasks_stats_durations ON tasks (agent, model, run_ms, finished_at)
WHERE status = 'completed' AND run_ms IS NOT NULL;

-- Rollups for `bgq stats` without --since: one row per hour, status, agent, model and key (and one per
-- hour and error reason), kept by the transition that ends a task and by its deletion (prune). A
-- million finished tasks become a few thousand rows; percentiles still come exactly from the index.
CREATE TABLE task_rollups (
    hour            TEXT NOT NULL,      -- the hour the task ended: 'YYYY-MM-DDTHH'
    status          TEXT NOT NULL,
    agent           TEXT NOT NULL,
    model           TEXT NOT NULL,      -- '' for none
    concurrency_key TEXT NOT NULL,      -- '' for none
    model_key       TEXT NOT NULL,
    tasks           INTEGER NOT NULL,
    run_tasks       INTEGER NOT NULL,   -- of which ran (have a run time)
    run_ms          INTEGER NOT NULL,
    PRIMARY KEY (hour, status, agent, model, concurrency_key, model_key)
) WITHOUT ROWID, STRICT;

CREATE TABLE task_error_rollups (
    hour   TEXT NOT NULL,
    reason TEXT NOT NULL,               -- the error's first line, at most 200 characters
    tasks  INTEGER NOT NULL,
    PRIMARY KEY (hour, reason)
) WITHOUT ROWID, STRICT;

INSERT INTO task_rollups
SELECT substr(finished_at, 1, 13), status, agent, coalesce(model, ''), coalesce(concurrency_key, ''), model_key,
       count(*), count(run_ms), coalesce(sum(run_ms), 0)
FROM tasks WHERE finished_at IS NOT NULL GROUP BY 1, 2, 3, 4, 5, 6;

INSERT INTO task_error_rollups
SELECT substr(finished_at, 1, 13), substr(error, 1, coalesce(nullif(instr(error, char(10)), 0) - 1, 200)), count(*)
FROM tasks WHERE finished_at IS NOT NULL AND status IN ('error', 'cancelled') AND error IS NOT NULL GROUP BY 1, 2;

CREATE TRIGGER tasks_rollup_on_finish AFTER UPDATE OF finished_at ON tasks
WHEN OLD.finished_at IS NULL AND NEW.finished_at IS NOT NULL
BEGIN
    INSERT INTO task_rollups VALUES (
        substr(NEW.finished_at, 1, 13), NEW.status, NEW.agent, coalesce(NEW.model, ''), coalesce(NEW.concurrency_key, ''),
        NEW.model_key, 1, NEW.started_at IS NOT NULL,
        coalesce(NEW.run_ms, CAST(round((julianday(NEW.finished_at) - julianday(NEW.started_at)) * 86400000) AS INTEGER), 0))
    ON CONFLICT DO UPDATE SET tasks = tasks + 1, run_tasks = run_tasks + excluded.run_tasks, run_ms = run_ms + excluded.run_ms;
    INSERT INTO task_error_rollups
    SELECT substr(NEW.finished_at, 1, 13), substr(NEW.error, 1, coalesce(nullif(instr(NEW.error, char(10)), 0) - 1, 200)), 1
    WHERE NEW.status IN ('error', 'cancelled') AND NEW.error IS NOT NULL
    ON CONFLICT DO UPDATE SET tasks = tasks + 1;
END;

CREATE TRIGGER tasks_rollup_on_delete AFTER DELETE ON tasks
WHEN OLD.finished_at IS NOT NULL
BEGIN
    UPDATE task_rollups SET tasks = tasks - 1, run_tasks = run_tasks - (OLD.run_ms IS NOT NULL), run_ms = run_ms - coalesce(OLD.run_ms, 0)
    WHERE hour = substr(OLD.finished_at, 1, 13) AND status = OLD.status AND agent = OLD.agent AND model = coalesce(OLD.model, '')
      AND concurrency_key = coalesce(OLD.concurrency_key, '') AND model_key = OLD.model_key;
    UPDATE task_error_rollups SET tasks = tasks - 1
    WHERE OLD.status IN ('error', 'cancelled') AND OLD.error IS NOT NULL AND hour = substr(OLD.finished_at, 1, 13)
      AND reason = substr(OLD.error, 1, coalesce(nullif(instr(OLD.error, char(10)), 0) - 1, 200));
END;
