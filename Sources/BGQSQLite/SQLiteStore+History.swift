import BGQCore
import CSQLite
import Foundation

extension SQLiteStore {
    /// Counts, per-key slot use, durations by agent and model, and errors by reason, for tasks
    /// created (counts) or finished (the rest) since `since` (everything when nil).
    ///
    /// Without `since`, the finished tasks' figures come from the rollups (Migrations/0006: a row per
    /// hour, status, agent, model and key, kept by the finishing transition); with it, from indexes over
    /// the window (`tasks_stats_keys`, `tasks_stats_durations`). Percentiles are exact either way: one
    /// OFFSET into the group's run times, in `tasks_stats_durations` order.
    public func stats(since: Instant?) throws -> QueueStats {
        try read {
            let from = since?.iso8601 ?? ""
            var byStatus: [TaskStatus: Int] = [:]
            let counts = since == nil
                ? """
                  SELECT status, count(*) FROM tasks WHERE status IN ('pending', 'running') GROUP BY status
                  UNION ALL SELECT status, sum(tasks) FROM task_rollups GROUP BY status
                  """
                : "SELECT status, count(*) FROM tasks WHERE created_at >= ? GROUP BY status"
            _ = try connection.query(counts, since == nil ? [] : [.text(from)]) { row in
                if let status = TaskStatus(rawValue: row.text(0)) { byStatus[status, default: 0] += row.int(1) }
            }
            let limits = try loadLimits()
            let keys = try connection.query(since == nil ? """
                SELECT concurrency_key, min(model_key), sum(run_tasks), sum(run_ms) FROM task_rollups
                WHERE concurrency_key <> '' GROUP BY concurrency_key HAVING sum(run_tasks) > 0 ORDER BY 4 DESC
                """ : """
                SELECT concurrency_key, min(model_key), count(*), sum(run_ms)
                FROM tasks INDEXED BY tasks_stats_keys
                WHERE run_ms IS NOT NULL AND concurrency_key IS NOT NULL AND finished_at >= ?
                GROUP BY concurrency_key ORDER BY 4 DESC
                """, since == nil ? [] : [.text(from)]) { row in
                QueueStats.KeyBusy(key: row.text(0), tasks: row.int(2), busyMs: row.int64(3), limit: limits.concurrencyKey(modelKey: row.text(1)).limit)
            }
            let groups = try connection.query(since == nil ? """
                SELECT agent, nullif(model, ''), sum(run_tasks) FROM task_rollups WHERE status = 'completed'
                GROUP BY agent, model HAVING sum(run_tasks) > 0
                """ : """
                SELECT agent, model, count(*) FROM tasks INDEXED BY tasks_stats_durations
                WHERE status = 'completed' AND run_ms IS NOT NULL AND finished_at >= ?
                GROUP BY agent, model
                """, since == nil ? [] : [.text(from)]) { (agent: $0.text(0), model: $0.optionalText(1), count: $0.int(2)) }
            let durations = try groups.map { group -> QueueStats.Durations in
                func percentile(_ p: Double) throws -> Int64 {
                    let offset = max(0, Int((Double(group.count) * p).rounded(.up)) - 1)
                    // An OFFSET walks the index: from whichever end is nearer (p95 is 5 % from the top).
                    let fromTop = offset >= group.count / 2
                    return try connection.queryFirst("""
                        SELECT run_ms FROM tasks INDEXED BY tasks_stats_durations
                        WHERE agent = ? AND model IS ? AND status = 'completed' AND run_ms IS NOT NULL AND finished_at >= ?
                        ORDER BY run_ms \(fromTop ? "DESC" : "ASC") LIMIT 1 OFFSET ?
                        """, [.text(group.agent), group.model.map(SQLValue.text) ?? .null, .text(from),
                              .int(fromTop ? group.count - 1 - offset : offset)]) { $0.int64(0) } ?? 0
                }
                return QueueStats.Durations(agent: group.agent, model: group.model ?? "-", count: group.count,
                                            p50Ms: try percentile(0.5), p95Ms: try percentile(0.95))
            }.sorted { ($0.count, $0.agent) > ($1.count, $1.agent) }
            let errors = try connection.query(since == nil ? """
                SELECT reason, sum(tasks) FROM task_error_rollups GROUP BY reason HAVING sum(tasks) > 0 ORDER BY 2 DESC LIMIT 10
                """ : """
                SELECT substr(error, 1, coalesce(nullif(instr(error, char(10)), 0) - 1, 200)) AS reason, count(*)
                FROM tasks WHERE status IN ('error', 'cancelled') AND finished_at >= ? AND error IS NOT NULL
                GROUP BY reason ORDER BY 2 DESC LIMIT 10
                """, since == nil ? [] : [.text(from)]) { QueueStats.ErrorCount(reason: $0.text(0), count: $0.int(1)) }
            // The window starts when the first task started: among the first tasks queued (seq order, an
            // index walk), not a scan of every row for min(started_at).
            let firstStart = try connection.queryFirst("""
                SELECT min(started_at) FROM (SELECT started_at FROM tasks WHERE started_at IS NOT NULL ORDER BY seq LIMIT 1000)
                """) { Self.instant($0, 0) } ?? nil
            let start = since ?? firstStart
            return QueueStats(windowStart: start, now: now, byStatus: byStatus, keys: keys, durations: durations, errors: errors)
        }
    }

    /// Deletes finished tasks older than the cutoff (by finished_at) in the given terminal states, with
    /// their events and messages, and sessions no other task uses. In batches, so writers keep going.
    /// Run folders are files: they are returned for the caller to remove.
    public func prune(_ request: PruneRequest) throws -> PruneResult {
        let wanted = request.statuses.isEmpty ? [TaskStatus.completed, .error, .cancelled] : request.statuses.filter(\.isTerminal)
        guard !wanted.isEmpty else { return PruneResult(tasks: 0, sessions: 0, runFolders: []) }
        let placeholders = wanted.map { _ in "?" }.joined(separator: ", ")
        let arguments: [SQLValue] = [.text(request.olderThan.iso8601)] + wanted.map { .text($0.rawValue) }
        if request.dryRun {
            let tasks = try read {
                try connection.queryFirst("SELECT count(*) FROM tasks WHERE finished_at < ? AND status IN (\(placeholders))", arguments) { $0.int(0) } ?? 0
            }
            return PruneResult(tasks: tasks, sessions: 0, runFolders: [])
        }
        var result = PruneResult(tasks: 0, sessions: 0, runFolders: [])
        while true {
            let batch = try write { () -> [RunFolderRecord] in
                let rows = try connection.query("""
                    SELECT id, attempt FROM tasks WHERE finished_at < ? AND status IN (\(placeholders)) LIMIT 1000
                    """, arguments) { RunFolderRecord(taskID: $0.text(0), attempt: $0.int(1)) }
                // Guarded like the selection: a task that was requeued meanwhile (another engine may not
                // serialize writers as SQLite does) is not deleted.
                let delete = try connection.cached("DELETE FROM tasks WHERE id = ? AND finished_at < ? AND status IN (\(placeholders))")
                let deleted = try rows.filter { try delete.run([.text($0.taskID)] + arguments) == 1 }
                result.sessions += try connection.run("""
                    DELETE FROM sessions WHERE NOT EXISTS (SELECT 1 FROM tasks WHERE tasks.session_id = sessions.id)
                    """)
                return deleted
            }
            result.tasks += batch.count
            result.runFolders += batch
            if batch.count < 1000 { break }
        }
        return result
    }
}

// MARK: - Run folders

extension SQLiteStore {
    /// Finished tasks whose run folder is still on disk and that ended before `cutoff`, oldest first
    /// (served by the partial index `tasks_run_folders`).
    public func tasksWithRunFolders(finishedBefore cutoff: Instant, limit: Int) throws -> [RunFolderRecord] {
        try read {
            try connection.query("""
                SELECT id, attempt FROM tasks WHERE run_dir IS NOT NULL AND finished_at IS NOT NULL AND finished_at < ?
                ORDER BY finished_at LIMIT ?
                """, [.text(cutoff.iso8601), .int(limit)]) { RunFolderRecord(taskID: $0.text(0), attempt: $0.int(1)) }
        }
    }

    /// Records when an adopted session's agent really ended (it ended while no live worker watched it):
    /// the task's run time stops there, and the wait for adoption is not counted as running. Only the
    /// owner of the running task may say so.
    public func recordRunEnd(taskID: String, workerID: String, endedAt: Instant) throws {
        try write {
            try connection.run("""
                UPDATE tasks SET run_ms = max(0, CAST(round((julianday(?) - julianday(started_at)) * 86400000) AS INTEGER))
                WHERE id = ? AND status = 'running' AND worker_id = ?
                """, [.text(endedAt.iso8601), .text(taskID), .text(workerID)])
        }
    }

    /// Records that these finished tasks' run folders are gone.
    public func forgetRunFolders(taskIDs: [String]) throws {
        guard !taskIDs.isEmpty else { return }
        try write {
            for id in taskIDs {
                try connection.run("UPDATE tasks SET run_dir = NULL WHERE id = ? AND finished_at IS NOT NULL", [.text(id)])
            }
        }
    }
}

extension SQLiteStore {
    /// Events after a cursor (the event id), oldest first, optionally only for one parent's tasks:
    /// creations (the task rows, by seq) merged with transitions (task_events, by id). Both arms are
    /// read in id order and merged, so a batch stops after `limit` rows whatever the backlog.
    public func events(after cursor: Int64, parentID: String?, limit: Int) throws -> [HistoryEvent] {
        try read {
            let filter = parentID == nil ? "" : "AND t.parent_id = ?3"
            let arguments: [SQLValue] = [.integer(cursor), .int(limit)] + (parentID.map { [SQLValue.text($0)] } ?? [])
            return try connection.query("""
                SELECT t.seq, t.id, t.created_at, NULL, 'pending', NULL, 0, 'enqueued', t.description
                FROM tasks t WHERE t.seq > ?1 \(filter)
                UNION ALL
                SELECT e.id, e.task_id, e.at, e.from_status, e.to_status, e.worker_id, e.attempt, e.reason, t.description
                FROM task_events e JOIN tasks t ON t.id = e.task_id
                WHERE e.id > ?1 \(filter)
                ORDER BY 1 LIMIT ?2
                """, arguments) { HistoryEvent(event: try Self.event($0), description: $0.text(8)) }
        }
    }

    /// The newest event id, of a creation or a transition (0 when there is none): where `bgq watch`
    /// starts by default.
    public func latestEventID() throws -> Int64 {
        try read { try latestEventIDInTransaction() }
    }

    /// Ids of the tasks of a parent, in enqueue order.
    public func taskIDs(parentID: String) throws -> [String] {
        try read { try connection.query("SELECT id FROM tasks WHERE parent_id = ? ORDER BY seq", [.text(parentID)]) { $0.text(0) } }
    }
}
