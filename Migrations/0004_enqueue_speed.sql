-- A task's creation is no longer a task_events row: it is the task row itself (tasks.created_at),
-- and `task_history`, `bgq history` and `bgq watch` show it as before. Writing that row from a
-- trigger at every insert was a third of a batch enqueue's cost in SQLite (measured with callgrind:
-- 191 of 583 M instructions for 10,000 tasks), and a statement that fires a trigger needs a
-- statement journal, which goes to a temporary file for the rest of the batch once one insert's
-- journal passes 64 KiB (strace: up to 112,352 pwrite calls for 10,000 tasks; 1,614 without it).
--
-- Events and creations share one id sequence, so the event id stays one cursor for `bgq watch`:
-- a creation's event id is the task's `seq`, a transition's is `task_events.id`, and each new one
-- is above every id of both kinds. bgq's enqueue assigns seq from that sequence (once per batch);
-- the transition trigger below does it per event. Ids still only grow, in commit order, so a reader
-- that remembers the last id it saw misses nothing and sees nothing twice. (A task inserted by hand
-- without a seq would get max(seq) + 1, which may be below the latest event: insert through bgq.)

-- Existing tasks take the id of their creation event as their seq (both were assigned in enqueue
-- order, so FIFO order is kept), then the creation rows go. First every seq moves below zero, by a
-- constant 2^40 and in order, so that no new seq collides with an old one; both passes then write
-- rows in key order (with -seq, the second pass inserted in descending order and left the table's
-- pages half full: 61 % more pages for 100,000 tasks). A task without a creation row (none is
-- expected) goes after every event, in its old order.
UPDATE tasks SET seq = seq - 1099511627776;
UPDATE tasks SET seq = coalesce(
    (SELECT e.id FROM task_events e WHERE e.task_id = tasks.id AND e.from_status IS NULL ORDER BY e.id LIMIT 1),
    coalesce((SELECT max(id) FROM task_events), 0) + seq + 1099511627776);
DELETE FROM task_events WHERE from_status IS NULL;

DROP TRIGGER tasks_event_on_insert;

DROP TRIGGER tasks_event_on_transition;
-- A status change, or a change of owner while running (an adoption), is a transition. Its id is the
-- next of the shared sequence: above every event and every task.
CREATE TRIGGER tasks_event_on_transition AFTER UPDATE OF status, worker_id ON tasks
WHEN OLD.status IS NOT NEW.status OR OLD.worker_id IS NOT NEW.worker_id
BEGIN
    INSERT INTO task_events (id, task_id, at, from_status, to_status, worker_id, attempt, reason)
    VALUES (max(coalesce((SELECT max(id) FROM task_events), 0), coalesce((SELECT max(seq) FROM tasks), 0)) + 1,
            NEW.id, NEW.status_changed_at, OLD.status, NEW.status, coalesce(NEW.worker_id, OLD.worker_id), NEW.attempt, NEW.status_reason);
END;

-- Every event of every task, the creation included (event_id: the task's seq), as before. The casts
-- give both arms the same column affinities, which lets SQLite merge the two arms in event_id order
-- (`ORDER BY event_id DESC LIMIT 10` reads 10 rows, not every event: 0.59 s → 0 on 100,000 tasks).
DROP VIEW task_history;
CREATE VIEW task_history AS
SELECT t.seq AS event_id, t.id AS task_id, t.description, t.agent, t.model, t.created_at AS at,
       CAST(NULL AS TEXT) AS from_status, CAST('pending' AS TEXT) AS to_status, CAST(NULL AS TEXT) AS worker_id,
       CAST(0 AS INTEGER) AS attempt, CAST('enqueued' AS TEXT) AS reason
FROM tasks t
UNION ALL
SELECT e.id, e.task_id, t.description, t.agent, t.model, e.at,
       e.from_status, e.to_status, e.worker_id, e.attempt, e.reason
FROM task_events e JOIN tasks t ON t.id = e.task_id;
