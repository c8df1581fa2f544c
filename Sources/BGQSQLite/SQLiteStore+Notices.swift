import BGQCore
import BGQSystem
import CSQLite
import Foundation

extension SQLiteStore {
    /// Claims up to `limit` notices: pending ones, and ones a gone worker was sending (the caller looks
    /// in the parent session before sending those again). A read first, as for hooks.
    public func claimParentNotices(workerID: String, limit: Int) throws -> [ParentNotice] {
        let open = """
            state = 'pending' OR (state = 'sending' AND worker_id IN (SELECT id FROM workers WHERE state IN ('dead', 'stopped')))
            """
        guard limit > 0, try read({ try connection.queryFirst("SELECT 1 FROM parent_notices WHERE \(open) LIMIT 1") { _ in true } }) != nil
        else { return [] }
        return try write {
            let rows = try connection.query("""
                SELECT id, task_id, kind, parent_id, server, attempts, state FROM parent_notices WHERE \(open) ORDER BY id LIMIT ?
                """, [.int(limit)]) { row in
                (id: row.int64(0), task: row.text(1), kind: row.text(2), parent: row.text(3), server: row.text(4),
                 attempts: row.int(5), wasSending: row.text(6) == "sending")
            }
            return try rows.compactMap { row in
                guard try connection.run("""
                    UPDATE parent_notices SET state = 'sending', worker_id = ?, attempts = attempts + 1 WHERE id = ? AND (\(open))
                    """, [.text(workerID), .integer(row.id)]) == 1,
                      let server = OpenCodeServer(json: try? JSONValue.parse(row.server)),
                      let kind = ParentNotice.Kind(rawValue: row.kind) else { return nil }
                return ParentNotice(id: row.id, taskID: row.task, kind: kind, parentID: row.parent, server: server,
                                    attempts: row.attempts + 1, mayHaveBeenSent: row.wasSending)
            }
        }
    }

    /// Records the outcome: sent, failed for good, or back to pending to try again later.
    public func finishParentNotice(id: Int64, workerID: String, outcome: ParentNoticeOutcome) throws {
        try write {
            switch outcome {
            case .sent:
                try connection.run("UPDATE parent_notices SET state = 'sent', sent_at = ?, error = NULL WHERE id = ? AND worker_id = ?",
                                   [.text(now.iso8601), .integer(id), .text(workerID)])
            case .retryLater(let error):
                try connection.run("UPDATE parent_notices SET state = 'pending', error = ? WHERE id = ? AND worker_id = ?",
                                   [.text(error), .integer(id), .text(workerID)])
            case .failed(let error):
                try connection.run("UPDATE parent_notices SET state = 'failed', error = ? WHERE id = ? AND worker_id = ?",
                                   [.text(error), .integer(id), .text(workerID)])
            }
        }
    }

    /// The notices of one task (for tests and `bgq show --json`).
    public func parentNotices(taskID: String) throws -> [(kind: String, state: String, attempts: Int, error: String?)] {
        try read {
            try connection.query("SELECT kind, state, attempts, error FROM parent_notices WHERE task_id = ? ORDER BY id", [.text(taskID)]) {
                (kind: $0.text(0), state: $0.text(1), attempts: $0.int(2), error: $0.optionalText(3))
            }
        }
    }

    /// A session's messages except one task's: the earlier turns of a conversation.
    public func sessionMessages(sessionID: String, exceptTaskID: String) throws -> [SessionMessage] {
        try read {
            try connection.query("""
                SELECT role, kind, tool, content, at FROM session_messages
                WHERE session_id = ? AND task_id IS NOT ? ORDER BY id LIMIT 10000
                """, [.text(sessionID), .text(exceptTaskID)]) { row in
                SessionMessage(role: SessionMessage.Role(rawValue: row.text(0)) ?? .system, kind: SessionMessage.Kind(rawValue: row.text(1)) ?? .text,
                               tool: row.optionalText(2), content: row.text(3), at: Self.instant(row, 4) ?? Instant(milliseconds: 0))
            }
        }
    }
}

