import BGQCore
import CSQLite
import Foundation

extension SQLiteStore {
    static let workerColumns = "id, name, host, pid, started_at, heartbeat_at, max_sessions, state, stopped_at, reason, runs_dir"

    static func worker(_ row: Row) throws -> WorkerRecord {
        WorkerRecord(id: row.text(0), name: row.text(1), host: row.text(2), pid: Int32(truncatingIfNeeded: row.int64(3)),
                     startedAt: instant(row, 4) ?? Instant(milliseconds: 0), heartbeatAt: instant(row, 5) ?? Instant(milliseconds: 0),
                     maxSessions: row.int(6), state: try stored(WorkerState.self, row.text(7), in: "workers.state"),
                     stoppedAt: instant(row, 8), reason: row.optionalText(9), runsDirectory: row.optionalText(10))
    }

    /// Adds a live worker row and returns its id.
    public func registerWorker(_ registration: WorkerRegistration) throws -> String {
        try write {
            let stamp = now.iso8601
            let id = Identifier.newWorkerID()
            try connection.run("""
                INSERT INTO workers (id, name, host, pid, started_at, heartbeat_at, max_sessions, state, runs_dir)
                VALUES (?, ?, ?, ?, ?, ?, ?, 'running', ?)
                """, [.text(id), .text(registration.name), .text(registration.host), .int(Int(registration.pid)), .text(stamp), .text(stamp),
                      .int(registration.maxSessions), .optionalText(registration.runsDirectory)])
            return id
        }
    }

    /// Writes the heartbeat; `.lost` when the row was declared dead meanwhile (the worker was paused or cut off).
    public func heartbeat(workerID: String) throws -> Ownership {
        try write {
            try connection.cached("UPDATE workers SET heartbeat_at = ? WHERE id = ? AND state IN ('running', 'stopping')")
                .run([.text(now.iso8601), .text(workerID)]) == 1 ? .owned : .lost
        }
    }

    /// Marks this worker as stopping (no more claims) or stopped (gone; its running sessions are free to adopt at once).
    /// `.lost` when another worker declared it dead meanwhile: then nothing is written.
    public func setWorkerState(_ workerID: String, to state: WorkerState, reason: String?) throws -> Ownership {
        try write {
            let stamp = now.iso8601
            let stoppedAt: SQLValue = (state == .stopped || state == .dead) ? .text(stamp) : .null
            return try connection.run("""
                UPDATE workers SET state = ?, stopped_at = ?, reason = coalesce(?, reason), heartbeat_at = ?
                WHERE id = ? AND state IN ('running', 'stopping')
                """, [.text(state.rawValue), stoppedAt, .optionalText(reason), .text(stamp), .text(workerID)]) == 1 ? .owned : .lost
        }
    }

    /// Workers, live first; each with the number of running tasks it owns.
    public func listWorkers(includeGone: Bool = false, limit: Int = 100) throws -> [WorkerRecord] {
        try read {
            let filter = includeGone ? "" : "WHERE w.state IN ('running', 'stopping')"
            return try connection.query("""
                SELECT \(Self.workerColumns.split(separator: ",").map { "w." + $0.trimmingCharacters(in: .whitespaces) }.joined(separator: ", ")),
                       (SELECT count(*) FROM tasks t WHERE t.status = 'running' AND t.worker_id = w.id)
                FROM workers w \(filter)
                ORDER BY w.state IN ('running', 'stopping') DESC, w.started_at DESC LIMIT ?
                """, [.int(limit)]) { row in
                var worker = try Self.worker(row)
                worker.runningTasks = row.int(11)
                return worker
            }
        }
    }

    /// One worker's row, live or gone.
    public func worker(id: String) throws -> WorkerRecord? {
        try read { try connection.queryFirst("SELECT \(Self.workerColumns) FROM workers WHERE id = ?", [.text(id)], Self.worker) }
    }

    /// Declares dead every live worker whose heartbeat is older than the lease timeout (except `workerID`).
    /// Guarded on the heartbeat read, so a worker that just came back is left alone. Returns their ids.
    public func declareSilentWorkersDead(except workerID: String, leaseTimeoutMs: Int64) throws -> [String] {
        try write {
            let stamp = now
            let cutoff = Instant(milliseconds: stamp.milliseconds - leaseTimeoutMs).iso8601
            return try connection.query("""
                UPDATE workers SET state = 'dead', stopped_at = ?, reason = 'no heartbeat for ' || ? || ' s; declared dead by ' || ?
                WHERE state IN ('running', 'stopping') AND heartbeat_at < ? AND id <> ?
                RETURNING id
                """, [.text(stamp.iso8601), .int(Int(leaseTimeoutMs / 1000)), .text(workerID), .text(cutoff), .text(workerID)]) { $0.text(0) }
        }
    }

    /// Running tasks whose owner is dead or stopped: to be adopted, retried or failed.
    public func orphanedTasks() throws -> [TaskRecord] {
        try read {
            try connection.query("""
                SELECT \(Self.taskColumns.split(separator: ",").map { "t." + $0.trimmingCharacters(in: .whitespacesAndNewlines) }.joined(separator: ", "))
                FROM tasks t JOIN workers w ON w.id = t.worker_id
                WHERE t.status = 'running' AND w.state IN ('dead', 'stopped')
                ORDER BY t.seq
                """, [], Self.task)
        }
    }
}
