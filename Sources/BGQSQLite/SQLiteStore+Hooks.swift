import BGQCore
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

    /// Records the hook's process; `.lost` when the hook is no longer this worker's running hook.
    public func recordHookStarted(_ hook: HookRun, pid: Int32, workerID: String) throws -> Ownership {
        try write {
            try connection.run("UPDATE hook_outbox SET pid = ? WHERE id = ? AND status = 'running' AND worker_id = ?",
                               [.int(Int(pid)), .integer(hook.id), .text(workerID)]) == 1 ? .owned : .lost
        }
    }

    /// Records how a hook ended. A failure is final: hooks are never retried. `.lost` when the hook
    /// is no longer this worker's running hook (another worker failed it as orphaned meanwhile).
    public func finishHook(_ hook: HookRun, end: HookEnd, workerID: String) throws -> Ownership {
        try write {
            let failed = end.exitCode != 0 || end.error != nil
            return try connection.run("""
                UPDATE hook_outbox SET status = ?, finished_at = ?, exit_code = ?, error = ?
                WHERE id = ? AND status = 'running' AND worker_id = ?
                """, [.text(failed ? HookStatus.failed.rawValue : HookStatus.done.rawValue), .text(now.iso8601),
                      end.exitCode.map { .int(Int($0)) } ?? .null, .optionalText(end.error), .integer(hook.id), .text(workerID)]) == 1
                ? .owned : .lost
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
    public func hooks(taskID: String) throws -> [HookRecord] {
        try read {
            try connection.query("SELECT command, status, exit_code, error FROM hook_outbox WHERE task_id = ? ORDER BY id", [.text(taskID)]) {
                HookRecord(command: $0.text(0), status: try stored(HookStatus.self, $0.text(1), in: "hook_outbox.status"),
                           exitCode: $0.optionalInt(2), error: $0.optionalText(3))
            }
        }
    }
}
