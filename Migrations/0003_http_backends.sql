-- HTTP session backends (an OpenCode server, OpenAI-compatible and Anthropic APIs).
--
-- An agent names where its server or API is (`url`) and which environment variable of the worker
-- holds its key (`api_key_env`): the key itself is never stored.
ALTER TABLE agents ADD COLUMN url TEXT;
ALTER TABLE agents ADD COLUMN api_key_env TEXT CHECK (api_key_env IS NULL OR api_key_env GLOB '[A-Za-z_]*');

-- Notices to a parent OpenCode session: one per task that ran on an OpenCode server under an OpenCode
-- parent session ([BACKGROUND TASK COMPLETED]), and one when the last active task of that parent ends
-- ([ALL BACKGROUND TASKS COMPLETE]). The rows are written by the trigger below in the same transaction
-- as the task's terminal transition, so no notice is lost to a crash; a worker marks a row `sending`
-- before it sends, and one that finds a `sending` row of a dead worker first looks in the parent
-- session for the notice before it sends again, so a notice arrives once.
CREATE TABLE parent_notices (
    id          INTEGER PRIMARY KEY,
    task_id     TEXT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    kind        TEXT NOT NULL CHECK (kind = 'task' OR kind = 'batch'),
    parent_id   TEXT NOT NULL,   -- the parent's OpenCode session id
    server      TEXT NOT NULL CHECK (json_valid(server)),   -- {"url": …, "directory": …} of the parent's server
    state       TEXT NOT NULL DEFAULT 'pending'
                CHECK (state = 'pending' OR state = 'sending' OR state = 'sent' OR state = 'failed'),
    worker_id   TEXT,
    attempts    INTEGER NOT NULL DEFAULT 0,
    created_at  TEXT NOT NULL,
    sent_at     TEXT,
    error       TEXT,
    UNIQUE (task_id, kind)
) STRICT;
CREATE INDEX parent_notices_open ON parent_notices (state, id) WHERE state = 'pending' OR state = 'sending';

-- A task records its parent's server in run_handle ($.parentServer) when it starts on an OpenCode server.
CREATE TRIGGER tasks_parent_notices AFTER UPDATE OF status ON tasks
WHEN (NEW.status = 'completed' OR NEW.status = 'error' OR NEW.status = 'cancelled') AND OLD.status IS NOT NEW.status
     AND NEW.parent_id IS NOT NULL
BEGIN
    INSERT OR IGNORE INTO parent_notices (task_id, kind, parent_id, server, created_at)
    SELECT NEW.id, 'task', NEW.parent_id, json_extract(NEW.run_handle, '$.parentServer'), NEW.status_changed_at
    WHERE json_extract(NEW.run_handle, '$.parentServer') IS NOT NULL;
    -- The batch notice: this was the parent's last active task, and some task of the parent ran on a server.
    INSERT OR IGNORE INTO parent_notices (task_id, kind, parent_id, server, created_at)
    SELECT NEW.id, 'batch', NEW.parent_id, json_extract(s.run_handle, '$.parentServer'), NEW.status_changed_at
    FROM tasks s
    WHERE s.parent_id = NEW.parent_id AND json_extract(s.run_handle, '$.parentServer') IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM tasks a WHERE a.parent_id = NEW.parent_id AND (a.status = 'pending' OR a.status = 'running'))
    LIMIT 1;
END;
