import BGQCore
import CSQLite
import Foundation

extension SQLiteStore {
    /// Claims up to `limit` notices: pending ones, and ones a gone worker was sending, or this worker
    /// was sending when a pass failed before it recorded the outcome (the caller looks in the parent
    /// session before sending those again). A read first, as for hooks. A row whose stored target
    /// does not decode is failed in the same transaction, never left `sending`.
    public func claimParentNotices(workerID: String, limit: Int) throws -> [ParentNotice] {
        let open = """
            state = 'pending' OR (state = 'sending' AND (worker_id = ?
                OR worker_id IN (SELECT id FROM workers WHERE state IN ('dead', 'stopped'))))
            """
        guard limit > 0, try read({ try connection.queryFirst("SELECT 1 FROM parent_notices WHERE \(open) LIMIT 1", [.text(workerID)]) { _ in true } }) != nil
        else { return [] }
        return try write {
            let rows = try connection.query("""
                SELECT id, task_id, kind, parent_id, server, attempts, state FROM parent_notices WHERE \(open) ORDER BY id LIMIT ?
                """, [.text(workerID), .int(limit)]) { row in
                (id: row.int64(0), task: row.text(1), kind: row.text(2), parent: row.text(3), server: row.text(4),
                 attempts: row.int(5), wasSending: row.text(6) == "sending")
            }
            return try rows.compactMap { row in
                guard try connection.run("""
                    UPDATE parent_notices SET state = 'sending', worker_id = ?, attempts = attempts + 1 WHERE id = ? AND (\(open))
                    """, [.text(workerID), .integer(row.id), .text(workerID)]) == 1 else { return nil }
                // The trigger that writes these rows makes valid JSON; anything else was written by hand.
                guard let server = OpenCodeServer(json: try? JSONValue.parse(row.server)), let kind = ParentNotice.Kind(rawValue: row.kind) else {
                    try connection.run("UPDATE parent_notices SET state = 'failed', error = ? WHERE id = ?",
                                       [.text("stored notice target is not valid (kind '\(row.kind)', server \(row.server.prefix(200)))"), .integer(row.id)])
                    return nil
                }
                return ParentNotice(id: row.id, taskID: row.task, kind: kind, parentID: row.parent, server: server,
                                    attempts: row.attempts + 1, mayHaveBeenSent: row.wasSending)
            }
        }
    }

    /// Records the outcome: sent, failed for good, or back to pending to try again later. Guarded by
    /// the claim (this worker, still `sending`, the same attempt): `.lost` when another worker took the
    /// notice over meanwhile.
    public func finishParentNotice(_ notice: ParentNotice, workerID: String, outcome: ParentNoticeOutcome) throws -> Ownership {
        try write {
            let claim = "id = ? AND worker_id = ? AND state = 'sending' AND attempts = ?"
            let guardArguments: [SQLValue] = [.integer(notice.id), .text(workerID), .int(notice.attempts)]
            let changed: Int
            switch outcome {
            case .sent:
                changed = try connection.run("UPDATE parent_notices SET state = 'sent', sent_at = ?, error = NULL WHERE \(claim)",
                                             [.text(now.iso8601)] + guardArguments)
            case .retryLater(let error):
                changed = try connection.run("UPDATE parent_notices SET state = 'pending', error = ? WHERE \(claim)", [.text(error)] + guardArguments)
            case .failed(let error):
                changed = try connection.run("UPDATE parent_notices SET state = 'failed', error = ? WHERE \(claim)", [.text(error)] + guardArguments)
            }
            return changed == 1 ? .owned : .lost
        }
    }

    /// The notices of one task (for tests and `bgq show --json`).
    public func parentNotices(taskID: String) throws -> [NoticeRecord] {
        try read {
            try connection.query("SELECT kind, state, attempts, error FROM parent_notices WHERE task_id = ? ORDER BY id", [.text(taskID)]) {
                NoticeRecord(kind: try stored(ParentNotice.Kind.self, $0.text(0), in: "parent_notices.kind"),
                             state: try stored(NoticeState.self, $0.text(1), in: "parent_notices.state"),
                             attempts: $0.int(2), error: $0.optionalText(3))
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
                SessionMessage(role: try stored(SessionMessage.Role.self, row.text(0), in: "session_messages.role"),
                               kind: try stored(SessionMessage.Kind.self, row.text(1), in: "session_messages.kind"),
                               tool: row.optionalText(2), content: row.text(3), at: Self.instant(row, 4) ?? Instant(milliseconds: 0))
            }
        }
    }
}

