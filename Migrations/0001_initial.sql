-- bgq schema, version 1.
-- Migrations/*.sql is the schema's one source of truth: the bgq binary embeds these files and
-- applies them in order, each in one BEGIN IMMEDIATE transaction with its bookkeeping row.
-- Times are ISO 8601 text in UTC with milliseconds (2026-11-21T12:03:04.005Z): they sort in time
-- order and SQLite's date functions read them.
-- Value lists are written as `x = 'a' OR x = 'b'`, not `x IN ('a', 'b')`: SQLite builds a temporary
-- b-tree for an IN list each time a statement runs, which made every status change several times
-- slower (measured with callgrind: 5 temporary tables per UPDATE).

-- Key/value settings shared by every worker (timings; see `bgq settings`).
CREATE TABLE settings (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at TEXT NOT NULL
) STRICT, WITHOUT ROWID;

-- Concurrency limits: model > provider > default. 0 means unlimited.
CREATE TABLE limits (
    scope       TEXT NOT NULL CHECK (scope IN ('model', 'provider', 'default')),
    name        TEXT NOT NULL,
    max_running INTEGER NOT NULL CHECK (max_running BETWEEN 0 AND 1000000),
    updated_at  TEXT NOT NULL,
    PRIMARY KEY (scope, name),
    CHECK ((scope = 'default') = (name = ''))
) STRICT, WITHOUT ROWID;

-- User-defined agents (built-in presets live in the binary). Secrets never go here: `env` holds
-- plain settings only; API keys come from the worker's environment.
CREATE TABLE agents (
    name        TEXT PRIMARY KEY CHECK (length(name) BETWEEN 1 AND 64),
    preset      TEXT NOT NULL,
    executable  TEXT,
    extra_args  TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(extra_args) AND json_type(extra_args) = 'array'),
    model       TEXT,
    env         TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(env) AND json_type(env) = 'object'),
    cwd         TEXT,
    prompt_via  TEXT NOT NULL DEFAULT 'argv' CHECK (prompt_via IN ('argv', 'stdin')),
    description TEXT,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
) STRICT;

-- Worker processes, alive and dead (kept for history).
CREATE TABLE workers (
    id           TEXT PRIMARY KEY CHECK (id GLOB 'wrk_[0-9a-f]*'),
    name         TEXT NOT NULL,
    host         TEXT NOT NULL,
    pid          INTEGER NOT NULL,
    started_at   TEXT NOT NULL,
    heartbeat_at TEXT NOT NULL,
    max_sessions INTEGER NOT NULL CHECK (max_sessions >= 1),
    state        TEXT NOT NULL CHECK (state = 'running' OR state = 'stopping' OR state = 'stopped' OR state = 'dead'),
    stopped_at   TEXT,
    reason       TEXT,
    CHECK ((state = 'stopped' OR state = 'dead') = (stopped_at IS NOT NULL))
) STRICT;
CREATE INDEX workers_live ON workers (state, heartbeat_at) WHERE state = 'running' OR state = 'stopping';

-- Agent sessions. One session can serve several tasks: `bgq enqueue --session` continues it.
CREATE TABLE sessions (
    id          TEXT PRIMARY KEY CHECK (id GLOB 'ses_[0-9a-f]*'),
    agent       TEXT NOT NULL,
    backend     TEXT NOT NULL,
    external_id TEXT,            -- the agent's own id (Claude Code's session_id, opencode's sessionID, ...)
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
) STRICT;

CREATE TABLE tasks (
    seq                 INTEGER PRIMARY KEY,   -- enqueue order: FIFO within a priority
    id                  TEXT NOT NULL UNIQUE CHECK (id GLOB 'bg_[0-9a-f]*'),
    status              TEXT NOT NULL DEFAULT 'pending'
                        CHECK (status = 'pending' OR status = 'running' OR status = 'completed' OR status = 'error' OR status = 'cancelled'),
    description         TEXT NOT NULL,
    prompt              TEXT NOT NULL,
    agent               TEXT NOT NULL,
    model               TEXT,                  -- provider/model, or NULL to use the agent's default
    model_key           TEXT NOT NULL,         -- the model, or the agent name: what limits are looked up by
    parent_id           TEXT,
    session_id          TEXT REFERENCES sessions (id),
    continues_session   INTEGER NOT NULL DEFAULT 0 CHECK (continues_session = 0 OR continues_session = 1),
    priority            INTEGER NOT NULL DEFAULT 0 CHECK (priority BETWEEN -1000000 AND 1000000),
    max_retries         INTEGER NOT NULL DEFAULT 0 CHECK (max_retries BETWEEN 0 AND 100),
    attempt             INTEGER NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    run_after           TEXT,                  -- not claimable before this time (retry backoff)
    on_complete         TEXT,
    concurrency_key     TEXT,                  -- the key it counted under when it last ran
    worker_id           TEXT,                  -- the owner while running; afterwards the last owner
    cancel_requested_at TEXT,
    created_at          TEXT NOT NULL,
    started_at          TEXT,
    finished_at         TEXT,
    result              TEXT,
    error               TEXT,
    -- The last transition: the triggers below copy these into task_events.
    status_changed_at   TEXT NOT NULL,
    status_reason       TEXT,
    -- Progress, written by the polling worker.
    message_count       INTEGER NOT NULL DEFAULT 0,
    tool_calls          INTEGER NOT NULL DEFAULT 0,
    last_tool           TEXT,
    last_message        TEXT,
    last_message_at     TEXT,
    last_progress_at    TEXT,
    todos               TEXT CHECK (todos IS NULL OR json_valid(todos)),
    -- How to find the running session again after a worker crash (exec: host, pid, start time, log).
    run_host            TEXT,
    run_pid             INTEGER,
    run_pid_start       INTEGER,
    run_dir             TEXT,
    run_log_offset      INTEGER NOT NULL DEFAULT 0,
    run_handle          TEXT CHECK (run_handle IS NULL OR json_valid(run_handle)),
    CHECK ((status = 'completed' OR status = 'error' OR status = 'cancelled') = (finished_at IS NOT NULL)),
    CHECK (status <> 'running' OR (worker_id IS NOT NULL AND started_at IS NOT NULL AND concurrency_key IS NOT NULL))
) STRICT;

-- The claim path: pending tasks by model key, priority, then age (a partial index: pending rows only).
CREATE INDEX tasks_claim ON tasks (model_key, priority DESC, seq) WHERE status = 'pending';
CREATE INDEX tasks_running ON tasks (worker_id) WHERE status = 'running';
CREATE INDEX tasks_status ON tasks (status, seq);
CREATE INDEX tasks_parent ON tasks (parent_id, seq) WHERE parent_id IS NOT NULL;
CREATE INDEX tasks_session ON tasks (session_id) WHERE session_id IS NOT NULL;
CREATE INDEX tasks_finished ON tasks (finished_at) WHERE finished_at IS NOT NULL;

-- Every transition of every task: time, from, to, worker, attempt, reason.
CREATE TABLE task_events (
    id          INTEGER PRIMARY KEY,
    task_id     TEXT NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    at          TEXT NOT NULL,
    from_status TEXT CHECK (from_status IS NULL OR from_status = 'pending' OR from_status = 'running' OR from_status = 'completed' OR from_status = 'error' OR from_status = 'cancelled'),
    to_status   TEXT NOT NULL CHECK (to_status = 'pending' OR to_status = 'running' OR to_status = 'completed' OR to_status = 'error' OR to_status = 'cancelled'),
    worker_id   TEXT,
    attempt     INTEGER NOT NULL,
    reason      TEXT
) STRICT;
CREATE INDEX task_events_task ON task_events (task_id, id);

CREATE TRIGGER tasks_event_on_insert AFTER INSERT ON tasks
BEGIN
    INSERT INTO task_events (task_id, at, from_status, to_status, worker_id, attempt, reason)
    VALUES (NEW.id, NEW.status_changed_at, NULL, NEW.status, NEW.worker_id, NEW.attempt, NEW.status_reason);
END;

-- A status change, or a change of owner while running (an adoption), is a transition.
CREATE TRIGGER tasks_event_on_transition AFTER UPDATE OF status, worker_id ON tasks
WHEN OLD.status IS NOT NEW.status OR OLD.worker_id IS NOT NEW.worker_id
BEGIN
    INSERT INTO task_events (task_id, at, from_status, to_status, worker_id, attempt, reason)
    VALUES (NEW.id, NEW.status_changed_at, OLD.status, NEW.status, coalesce(NEW.worker_id, OLD.worker_id), NEW.attempt, NEW.status_reason);
END;

-- Terminal states are final.
CREATE TRIGGER tasks_terminal_is_final BEFORE UPDATE OF status ON tasks
WHEN (OLD.status = 'completed' OR OLD.status = 'error' OR OLD.status = 'cancelled') AND NEW.status IS NOT OLD.status
BEGIN
    SELECT RAISE(ABORT, 'bgq: a finished task cannot change state');
END;

-- Concurrency slots. A row exists exactly while a limited task runs. The limit is enforced by the
-- database: a slot number below the limit read in the claiming transaction is part of the primary
-- key, and a trigger refuses a lease once the key holds as many as its limit.
CREATE TABLE slot_leases (
    concurrency_key TEXT NOT NULL,
    slot            INTEGER NOT NULL,
    max_running     INTEGER NOT NULL CHECK (max_running >= 1),
    task_id         TEXT NOT NULL UNIQUE REFERENCES tasks (id),
    acquired_at     TEXT NOT NULL,
    PRIMARY KEY (concurrency_key, slot),
    CHECK (slot >= 0 AND slot < max_running)
) STRICT, WITHOUT ROWID;

CREATE TRIGGER slot_leases_within_limit BEFORE INSERT ON slot_leases
WHEN (SELECT count(*) FROM slot_leases WHERE concurrency_key = NEW.concurrency_key) >= NEW.max_running
BEGIN
    SELECT RAISE(ABORT, 'bgq: concurrency limit reached for this key');
END;

CREATE TRIGGER slot_leases_only_for_running BEFORE INSERT ON slot_leases
WHEN (SELECT status FROM tasks WHERE id = NEW.task_id) IS NOT 'running'
BEGIN
    SELECT RAISE(ABORT, 'bgq: only a running task holds a slot');
END;

-- Leaving 'running' releases the slot in the same transaction: a slot can never outlive its task,
-- and only the guarded transition that really moved the task can release it.
CREATE TRIGGER tasks_release_slot AFTER UPDATE OF status ON tasks
WHEN OLD.status = 'running' AND NEW.status IS NOT 'running'
BEGIN
    DELETE FROM slot_leases WHERE task_id = OLD.id;
END;

-- Messages of agent sessions, stored as they arrive.
CREATE TABLE session_messages (
    id         INTEGER PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    task_id    TEXT REFERENCES tasks (id) ON DELETE CASCADE,
    at         TEXT NOT NULL,
    role       TEXT NOT NULL CHECK (role = 'user' OR role = 'assistant' OR role = 'tool' OR role = 'system' OR role = 'stderr'),
    kind       TEXT NOT NULL CHECK (kind = 'text' OR kind = 'reasoning' OR kind = 'tool_use' OR kind = 'tool_result' OR kind = 'todo' OR kind = 'result' OR kind = 'error' OR kind = 'output'),
    tool       TEXT,
    content    TEXT NOT NULL
) STRICT;
CREATE INDEX session_messages_session ON session_messages (session_id, id);
CREATE INDEX session_messages_task ON session_messages (task_id, id);

-- Stable views for people who read the database with the sqlite3 shell.
CREATE VIEW task_history AS
SELECT e.id AS event_id, e.task_id, t.description, t.agent, t.model, e.at,
       e.from_status, e.to_status, e.worker_id, e.attempt, e.reason
FROM task_events e JOIN tasks t ON t.id = e.task_id;

CREATE VIEW running_by_key AS
SELECT concurrency_key, count(*) AS running, max(max_running) AS max_running
FROM slot_leases GROUP BY concurrency_key;
