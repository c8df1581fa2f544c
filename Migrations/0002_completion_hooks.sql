-- Completion hooks: a command run once per terminal transition with the task as JSON on stdin.
-- The outbox row is written by a trigger in the same transaction as the transition, so a hook is
-- never lost when a worker crashes in between; a worker marks the row running before it starts the
-- command, so a hook never runs twice (one interrupted by a crash is recorded as failed).

CREATE TABLE hook_outbox (
    id          INTEGER PRIMARY KEY,
    task_id     TEXT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    command     TEXT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'pending'
                CHECK (status = 'pending' OR status = 'running' OR status = 'done' OR status = 'failed'),
    created_at  TEXT NOT NULL,
    worker_id   TEXT,
    pid         INTEGER,
    started_at  TEXT,
    finished_at TEXT,
    exit_code   INTEGER,
    error       TEXT,
    UNIQUE (task_id, command)
) STRICT;
CREATE INDEX hook_outbox_open ON hook_outbox (status, id) WHERE status = 'pending' OR status = 'running';

CREATE TRIGGER tasks_completion_hooks AFTER UPDATE OF status ON tasks
WHEN (NEW.status = 'completed' OR NEW.status = 'error' OR NEW.status = 'cancelled') AND OLD.status IS NOT NEW.status
BEGIN
    INSERT OR IGNORE INTO hook_outbox (task_id, command, created_at)
    SELECT NEW.id, NEW.on_complete, NEW.status_changed_at WHERE NEW.on_complete IS NOT NULL AND NEW.on_complete <> '';
    INSERT OR IGNORE INTO hook_outbox (task_id, command, created_at)
    SELECT NEW.id, value, NEW.status_changed_at FROM settings WHERE key = 'on_complete' AND value <> '';
END;
