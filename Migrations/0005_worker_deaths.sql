-- How many workers died while holding each task: counted by the reaper when it adopts, requeues or ends
-- the running task of a worker declared dead (a worker that stopped cleanly hands its sessions over and
-- is not counted). A task whose workers keep dying, such as a reply that crashes every worker that reads
-- it, ends in error after max_worker_deaths instead of being adopted by, and killing, each worker in turn.
ALTER TABLE tasks ADD COLUMN worker_deaths INTEGER NOT NULL DEFAULT 0 CHECK (worker_deaths >= 0);
