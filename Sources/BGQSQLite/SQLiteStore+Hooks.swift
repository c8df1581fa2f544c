import BGQCore
import BGQSystem
import CSQLite
import Foundation

extension SQLiteStore {
    /// Marks up to `limit` pending hooks as running by this worker and returns them (at most once each).
    public func claimHooks(workerID: String, limit: Int) throws -> [HookRun] {
        // A read first: workers call this whenever the database changed, and almost always nothing is
        // pending; the write lock is taken only when there is a hook to claim.
        guard limit > 0, try read({ try connection.queryFirst("SELECT 1 FROM hook_outbox WHERE status = 'pending' LIMIT 1") { _ in true } }) != nil
        else { return [] }
        return try write {
            let ids = try connection.query("SELECT id FROM hook_outbox WHERE status = 'pending' ORDER BY id LIMIT ?", [.int(limit)]) { $0.int64(0) }
            return try ids.compactMap { id in
                guard try connection.run("""
                    UPDATE hook_outbox SET status = 'running', worker_id = ?, started_at = ? WHERE id = ? AND status = 'pending'
                    """, [.text(workerID), .text(now.iso8601), .integer(id)]) == 1 else { return nil }
                return try connection.queryFirst("SELECT id, task_id, command FROM hook_outbox WHERE id = ?", [.integer(id)]) {
                    HookRun(id: $0.int64(0), taskID: $0.text(1), command: $0.text(2), pid: nil, workerID: workerID)
                }
            }
        }
    }

    public func recordHookStarted(id: Int64, pid: Int32) throws {
        try write { try connection.run("UPDATE hook_outbox SET pid = ? WHERE id = ?", [.int(Int(pid)), .integer(id)]) }
    }

    /// Records how a hook ended. A failure is final: hooks are never retried.
    public func finishHook(id: Int64, exitCode: Int32?, error: String?) throws {
        try write {
            let failed = exitCode != 0 || error != nil
            try connection.run("""
                UPDATE hook_outbox SET status = ?, finished_at = ?, exit_code = ?, error = ? WHERE id = ? AND status = 'running'
                """, [.text(failed ? "failed" : "done"), .text(now.iso8601), exitCode.map { .int(Int($0)) } ?? .null,
                      .optionalText(error), .integer(id)])
        }
    }

    /// Hooks left running by workers that are gone: recorded as failed, never run again.
    public func failOrphanedHooks() throws -> Int {
        try write {
            try connection.run("""
                UPDATE hook_outbox SET status = 'failed', finished_at = ?, error = 'worker lost while the hook ran; not run again'
                WHERE status = 'running' AND worker_id IN (SELECT id FROM workers WHERE state IN ('dead', 'stopped'))
                """, [.text(now.iso8601)])
        }
    }

    /// The hooks of one task, oldest first.
    public func hooks(taskID: String) throws -> [(command: String, status: String, exitCode: Int?, error: String?)] {
        try read {
            try connection.query("SELECT command, status, exit_code, error FROM hook_outbox WHERE task_id = ? ORDER BY id", [.text(taskID)]) {
                (command: $0.text(0), status: $0.text(1), exitCode: $0.optionalInt(2), error: $0.optionalText(3))
            }
        }
    }
}
