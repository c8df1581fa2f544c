import BGQCore
import CSQLite
import Foundation

// MARK: - Claiming

extension SQLiteStore {
    /// Claims up to `capacity` pending tasks for `workerID` in one IMMEDIATE transaction.
    ///
    /// Per concurrency key it takes only as many tasks as the key has free slots under the limit
    /// read in this same transaction, in priority then enqueue order, and writes one slot lease per
    /// limited task. A full key is skipped, never blocking others. The database refuses a lease
    /// beyond the limit (see the `slot_leases` constraints), whatever the interleaving of workers.
    /// Throws `BGQError.lostOwnership` when the worker row is no longer alive (it was declared dead).
    public func claimTasks(workerID: String, capacity: Int) throws -> [TaskRecord] {
        guard capacity > 0 else { return [] }
        return try write {
            guard try workerIsAlive(workerID) else { throw BGQError.lostOwnership(workerID: workerID) }
            let stamp = now
            let limits = try loadLimits()

            // The distinct model keys with pending tasks: a loose index scan over the partial index (named,
            // because without ANALYZE statistics SQLite picked tasks_status and read every pending row).
            let modelKeys = try connection.query("""
                WITH RECURSIVE k(key) AS (
                    SELECT (SELECT min(model_key) FROM tasks INDEXED BY tasks_claim WHERE status = 'pending')
                    UNION ALL
                    SELECT (SELECT min(model_key) FROM tasks INDEXED BY tasks_claim WHERE status = 'pending' AND model_key > k.key)
                    FROM k WHERE k.key IS NOT NULL
                ) SELECT key FROM k WHERE key IS NOT NULL
                """) { $0.text(0) }
            guard !modelKeys.isEmpty else { return [] }

            // Slots held per key, read in this transaction.
            var usedSlots: [String: Set<Int>] = [:]
            _ = try connection.query("SELECT concurrency_key, slot FROM slot_leases") { row in
                usedSlots[row.text(0), default: []].insert(row.int(1))
            }

            // Candidates per key: at most as many as the key has free slots (and the worker can take).
            struct Candidate { var seq: Int64; var priority: Int; var key: ConcurrencyKey }
            var groups: [String: (key: ConcurrencyKey, modelKeys: [String])] = [:]
            for modelKey in modelKeys {
                let key = limits.concurrencyKey(modelKey: modelKey)
                groups[key.name, default: (key, [])].modelKeys.append(modelKey)
            }
            let pick = try connection.cached("""
                SELECT seq, priority FROM tasks INDEXED BY tasks_claim
                WHERE status = 'pending' AND model_key = ? AND (run_after IS NULL OR run_after <= ?)
                  AND (continues_session = 0 OR NOT EXISTS (
                        SELECT 1 FROM tasks AS other WHERE other.session_id = tasks.session_id AND other.status = 'running'))
                ORDER BY priority DESC, seq LIMIT ?
                """)
            var candidates: [Candidate] = []
            var freeByKey: [String: Int] = [:]
            for (name, group) in groups {
                let free = group.key.isLimited ? group.key.limit - (usedSlots[name]?.count ?? 0) : capacity
                guard free > 0 else { continue }
                freeByKey[name] = free
                for modelKey in group.modelKeys {
                    candidates += try pick.query([.text(modelKey), .text(stamp.iso8601), .int(min(free, capacity))]) {
                        Candidate(seq: $0.int64(0), priority: $0.int(1), key: group.key)
                    }
                }
            }
            // Oldest highest-priority first across keys, each key within its free slots.
            candidates.sort { ($0.priority, -$0.seq) > ($1.priority, -$1.seq) }

            let claim = try connection.cached("""
                UPDATE tasks SET status = 'running', worker_id = ?, attempt = attempt + 1, started_at = ?, concurrency_key = ?,
                    run_after = NULL, cancel_requested_at = NULL, last_progress_at = ?, status_changed_at = ?, status_reason = ?,
                    run_host = NULL, run_pid = NULL, run_pid_start = NULL, run_dir = NULL, run_log_offset = 0, run_handle = NULL,
                    message_count = 0, run_ms = NULL
                WHERE seq = ? AND status = 'pending'
                RETURNING id
                """)
            let lease = try connection.cached("""
                INSERT INTO slot_leases (concurrency_key, slot, max_running, task_id, acquired_at) VALUES (?, ?, ?, ?, ?)
                """)
            var claimedIDs: [String] = []
            for candidate in candidates where claimedIDs.count < capacity {
                let name = candidate.key.name
                guard let free = freeByKey[name], free > 0 else { continue }
                var reason = "claimed by \(workerID) (\(name)"
                var slot = -1
                if candidate.key.isLimited {
                    let used = usedSlots[name] ?? []
                    slot = (0..<candidate.key.limit).first { !used.contains($0) } ?? -1
                    guard slot >= 0 else { continue }
                    reason += ", slot \(slot + 1)/\(candidate.key.limit)"
                }
                reason += ")"
                guard let id = try claim.queryFirst([.text(workerID), .text(stamp.iso8601), .text(name), .text(stamp.iso8601),
                                                     .text(stamp.iso8601), .text(reason), .integer(candidate.seq)], { $0.text(0) })
                else { continue }
                if candidate.key.isLimited {
                    try lease.run([.text(name), .int(slot), .int(candidate.key.limit), .text(id), .text(stamp.iso8601)])
                    usedSlots[name, default: []].insert(slot)
                }
                freeByKey[name] = free - 1
                claimedIDs.append(id)
            }
            return try claimedIDs.map { try taskOrThrow(id: $0) }
        }
    }

    func workerIsAlive(_ workerID: String) throws -> Bool {
        try connection.queryFirst("SELECT state FROM workers WHERE id = ?", [.text(workerID)]) { $0.text(0) } == WorkerState.running.rawValue
    }
}

// MARK: - Guarded transitions

extension SQLiteStore {
    static let ownedGuard = "id = ? AND status = 'running' AND worker_id = ? AND attempt = ?"

    static func guardArguments(_ task: TaskRecord, workerID: String) -> [SQLValue] {
        [.text(task.id), .text(workerID), .int(task.attempt)]
    }

    /// Records many session starts in one transaction (a worker's claimed batch): creates each session's
    /// row (or reuses a continued one) and where it runs. The session row is written under the same
    /// ownership guard as the task (one statement, no extra read per start), so a task this worker lost
    /// gets no session row either.
    public func recordSessionStarts(_ items: [SessionStartRecord], workerID: String) throws -> [Ownership] {
        guard !items.isEmpty else { return [] }
        return try write {
            let stamp = now.iso8601
            let session = try connection.cached("""
                INSERT INTO sessions (id, agent, backend, external_id, created_at, updated_at)
                SELECT ?, ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM tasks WHERE \(Self.ownedGuard))
                ON CONFLICT (id) DO UPDATE SET external_id = coalesce(excluded.external_id, sessions.external_id), updated_at = excluded.updated_at
                """)
            let update = try connection.cached("""
                UPDATE tasks SET session_id = ?, run_host = ?, run_pid = ?, run_pid_start = ?, run_dir = ?, run_handle = ?,
                    run_log_offset = 0, last_progress_at = ?
                WHERE \(Self.ownedGuard)
                """)
            return try items.map { item in
                let (task, start) = (item.task, item.start)
                let guardArguments = Self.guardArguments(task, workerID: workerID)
                try session.run([.text(start.sessionID), .text(task.agent), .text(start.backend), .optionalText(start.externalID),
                                 .text(stamp), .text(stamp)] + guardArguments)
                let changed = try update.run([
                    .text(start.sessionID), .optionalText(start.run.host), .optionalInt(start.run.pid.map(Int.init)),
                    start.run.pidStart.map { .integer($0) } ?? .null, .optionalText(start.run.directory),
                    .optionalText(start.run.handle), .text(stamp)] + guardArguments)
                return changed == 1 ? .owned : .lost
            }
        }
    }

    /// Writes many polls' findings in one transaction.
    public func recordProgress(_ items: [ProgressRecord], workerID: String) throws -> [Ownership] {
        guard !items.isEmpty else { return [] }
        return try write { try items.map { try recordProgressInTransaction($0.task, workerID: workerID, update: $0.update) } }
    }

    func recordProgressInTransaction(_ task: TaskRecord, workerID: String, update: ProgressUpdate) throws -> Ownership {
        let p = update.progress
        let changed = try connection.cached("""
            UPDATE tasks SET message_count = ?, tool_calls = ?, last_tool = ?, last_message = ?, last_message_at = ?,
                last_progress_at = ?, todos = ?, run_log_offset = ?
            WHERE \(Self.ownedGuard)
            """).run([.int(p.messageCount), .int(p.toolCalls), .optionalText(p.lastTool), .optionalText(p.lastMessage),
                      .optionalText(p.lastMessageAt?.iso8601), .optionalText(p.lastProgressAt?.iso8601), .optionalText(p.todos),
                      .integer(update.logOffset)] + Self.guardArguments(task, workerID: workerID))
        guard changed == 1 else { return .lost }
        if let sessionID = task.sessionID {
            if let external = update.externalSessionID {
                try connection.cached("UPDATE sessions SET external_id = ?, updated_at = ? WHERE id = ? AND external_id IS NOT ?")
                    .run([.text(external), .text(now.iso8601), .text(sessionID), .text(external)])
            }
            if !update.newMessages.isEmpty {
                let insert = try connection.cached("""
                    INSERT INTO session_messages (session_id, task_id, at, role, kind, tool, content) VALUES (?, ?, ?, ?, ?, ?, ?)
                    """)
                for message in update.newMessages {
                    try insert.run([.text(sessionID), .text(task.id), .text(message.at.iso8601), .text(message.role.rawValue),
                                    .text(message.kind.rawValue), .optionalText(message.tool), .text(message.content)])
                }
            }
        }
        return .owned
    }

    /// Ends (or requeues) tasks this worker owns, each with its final progress, in one transaction (a
    /// worker's batch of completions). Each slot is released by the same transaction (trigger
    /// `tasks_release_slot`).
    public func finish(_ items: [TaskFinish], workerID: String) throws -> [Ownership] {
        guard !items.isEmpty else { return [] }
        return try write {
            let stamp = now
            return try items.map { item in
                if let update = item.finalProgress, try recordProgressInTransaction(item.task, workerID: workerID, update: update) == .lost {
                    return .lost
                }
                return try transitionInTransaction(item.task, ownerID: workerID, outcome: item.outcome, at: stamp)
            }
        }
    }

    func transitionInTransaction(_ task: TaskRecord, ownerID: String, outcome: TaskOutcome, at stamp: Instant) throws -> Ownership {
        let time = stamp.iso8601
        let changed: Int
        switch outcome {
        case .completed(let result):
            changed = try connection.cached("""
                UPDATE tasks SET status = 'completed', finished_at = ?, result = ?, status_changed_at = ?, status_reason = 'session finished'
                WHERE \(Self.ownedGuard)
                """).run([.text(time), .text(result), .text(time)] + Self.guardArguments(task, workerID: ownerID))
        case .failed(let error):
            changed = try connection.cached("""
                UPDATE tasks SET status = 'error', finished_at = ?, error = ?, status_changed_at = ?, status_reason = ?
                WHERE \(Self.ownedGuard)
                """).run([.text(time), .text(error), .text(time), .text(error)] + Self.guardArguments(task, workerID: ownerID))
        case .cancelled(let reason):
            changed = try connection.cached("""
                UPDATE tasks SET status = 'cancelled', finished_at = ?, error = ?, status_changed_at = ?, status_reason = ?
                WHERE \(Self.ownedGuard)
                """).run([.text(time), .text(reason), .text(time), .text(reason)] + Self.guardArguments(task, workerID: ownerID))
        case .requeued(let reason, let delayMs):
            changed = try connection.cached("""
                UPDATE tasks SET status = 'pending', worker_id = NULL, started_at = NULL, run_after = ?, status_changed_at = ?,
                    status_reason = ?, session_id = CASE WHEN continues_session = 1 THEN session_id ELSE NULL END,
                    run_host = NULL, run_pid = NULL, run_pid_start = NULL, run_dir = NULL, run_log_offset = 0, run_handle = NULL,
                    cancel_requested_at = NULL
                WHERE \(Self.ownedGuard)
                """).run([delayMs > 0 ? .text((stamp + delayMs).iso8601) : .null, .text(time), .text(reason)]
                         + Self.guardArguments(task, workerID: ownerID))
        }
        return changed == 1 ? .owned : .lost
    }

    /// Takes over a running task whose owner died, without running it again (running → running).
    public func adopt(_ task: TaskRecord, from deadWorkerID: String, by workerID: String, reason: String) throws -> Ownership {
        try write {
            let time = now.iso8601
            let changed = try connection.run("""
                UPDATE tasks SET worker_id = ?, status_changed_at = ?, status_reason = ? WHERE \(Self.ownedGuard)
                """, [.text(workerID), .text(time), .text(reason)] + Self.guardArguments(task, workerID: deadWorkerID))
            guard changed == 1 else { return .lost }
            try countWorkerDeath(taskID: task.id, workerID: deadWorkerID)
            return .owned
        }
    }

    /// Ends or requeues a dead worker's task (the reaper's side of `finish`).
    public func resolveOrphan(_ task: TaskRecord, deadWorkerID: String, outcome: TaskOutcome) throws -> Ownership {
        try write {
            let ownership = try transitionInTransaction(task, ownerID: deadWorkerID, outcome: outcome, at: now)
            if ownership == .owned { try countWorkerDeath(taskID: task.id, workerID: deadWorkerID) }
            return ownership
        }
    }

    /// Counts the death of the worker that held the task, in the transaction that took the task from it;
    /// a worker that stopped cleanly is not counted.
    func countWorkerDeath(taskID: String, workerID: String) throws {
        try connection.run("""
            UPDATE tasks SET worker_deaths = worker_deaths + 1
            WHERE id = ? AND EXISTS (SELECT 1 FROM workers WHERE id = ? AND state = 'dead')
            """, [.text(taskID), .text(workerID)])
    }

    /// How many of the task's workers died holding it so far, and whether its current owner is dead
    /// (rather than stopped): the reaper's question before it adopts the task once more.
    public func workerDeaths(taskID: String, ownerID: String) throws -> WorkerDeaths {
        try read {
            try connection.queryFirst("""
                SELECT worker_deaths, EXISTS (SELECT 1 FROM workers WHERE id = ? AND state = 'dead') FROM tasks WHERE id = ?
                """, [.text(ownerID), .text(taskID)]) { WorkerDeaths(recorded: $0.int(0), ownerDied: $0.int(1) == 1) }
                ?? WorkerDeaths(recorded: 0, ownerDied: false)
        }
    }

    /// Ids of this worker's running tasks with a cancel request.
    public func cancelRequests(workerID: String) throws -> Set<String> {
        try read {
            Set(try connection.query("""
                SELECT id FROM tasks WHERE status = 'running' AND worker_id = ? AND cancel_requested_at IS NOT NULL
                """, [.text(workerID)]) { $0.text(0) })
        }
    }

    /// Pending tasks that waited longer than the TTL: failed with the original's text.
    public func expireQueuedTasks(ttlMs: Int64) throws -> [String] {
        guard ttlMs > 0 else { return [] }
        return try write {
            let stamp = now
            let cutoff = Instant(milliseconds: stamp.milliseconds - ttlMs).iso8601
            let text = "Task timed out while queued (\(spelledDuration(milliseconds: ttlMs)))"
            return try connection.query("""
                UPDATE tasks SET status = 'error', finished_at = ?, error = ?, status_changed_at = ?, status_reason = ?
                WHERE status = 'pending' AND created_at < ?
                RETURNING id
                """, [.text(stamp.iso8601), .text(text), .text(stamp.iso8601), .text(text), .text(cutoff)]) { $0.text(0) }
        }
    }
}
