import Foundation
import Testing
@testable import BGQBackends
@testable import BGQCLI
@testable import BGQCore
@testable import BGQSQLite
@testable import BGQScheduler
@testable import BGQSystem

/// `bgq history`, `bgq stats` and `bgq prune`, through the real binary.
@Suite(.serialized) struct HistoryTests {
    /// A database with finished tasks: 3 shell completions, 1 failure, 1 cancelled pending task.
    static func finishedDatabase() throws -> TempDatabase {
        let db = TempDatabase()
        for prompt in ["echo one", "echo two", "echo three", "echo broken >&2; exit 7"] {
            try BGQBinary.run(["enqueue", "--agent", "shell", prompt], db: db)
        }
        try BGQBinary.run(["worker", "--exit-when-idle", "--poll-interval", "100ms"], db: db, timeout: 60)
        let pending = try BGQBinary.run(["enqueue", "--agent", "noop", "never runs", "--json"], db: db)
        let id = try #require((try JSONSerialization.jsonObject(with: Data(pending.stdout.utf8)) as? [String: Any])?["id"] as? String)
        try BGQBinary.run(["cancel", id], db: db)
        return db
    }

    @Test func historyListsEveryTransitionWithWorkerAttemptAndReason() throws {
        let db = try Self.finishedDatabase()
        let store = try db.store()
        let task = try #require(try store.listTasks(TaskFilter()).first { $0.prompt == "echo one" })
        let result = try BGQBinary.run(["history", String(task.id.prefix(7))], db: db)
        #expect(result.status == 0)
        let lines = result.stdout.split(separator: "\n")
        #expect(lines.count == 4)  // header + pending, running, completed
        #expect(lines[1].contains("pending") && lines[1].contains("enqueued"))
        #expect(lines[2].contains("running") && lines[2].contains("claimed by wrk_"))
        #expect(lines[3].contains("completed") && lines[3].contains("session finished"))
        let json = try BGQBinary.run(["history", task.id, "--json"], db: db)
        let events = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [[String: Any]])
        #expect(events.map { $0["to"] as? String } == ["pending", "running", "completed"])
        #expect(events[2]["attempt"] as? Int == 1)
    }

    @Test func statsCountsByStatusDurationsKeysAndErrors() throws {
        let db = try Self.finishedDatabase()
        let result = try BGQBinary.run(["stats", "--json"], db: db)
        #expect(result.status == 0, "\(result.stderr)")
        let stats = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        let byStatus = try #require(stats["by_status"] as? [String: Int])
        #expect(byStatus == ["pending": 0, "running": 0, "completed": 3, "error": 1, "cancelled": 1])
        let durations = try #require(stats["durations"] as? [[String: Any]])
        #expect(durations.first?["agent"] as? String == "shell")
        #expect(durations.first?["count"] as? Int == 3)
        let keys = try #require(stats["keys"] as? [[String: Any]])
        #expect(keys.first?["key"] as? String == "model:shell")
        #expect(keys.first?["tasks"] as? Int == 4)
        let errors = try #require(stats["errors"] as? [[String: Any]])
        #expect(errors.contains { ($0["reason"] as? String)?.contains("exit code 7") == true })
        #expect(errors.contains { $0["reason"] as? String == "cancelled by user" })
        let text = try BGQBinary.run(["stats"], db: db).stdout
        #expect(text.contains("completed  3"))
    }

    @Test func pruneDeletesOnlyOldFinishedTasksWithTheirSessionsAndLogs() throws {
        let db = try Self.finishedDatabase()
        let store = try db.store()
        let runDirectories = try FileManager.default.contentsOfDirectory(atPath: store.location.defaultRunsDirectory())
        #expect(runDirectories.count == 4)
        try BGQBinary.run(["enqueue", "--agent", "noop", "still pending"], db: db)
        // Nothing is old enough yet.
        let none = try BGQBinary.run(["prune", "--older-than", "1h"], db: db)
        #expect(none.stdout.contains("Deleted 0 task(s)"))
        let dry = try BGQBinary.run(["prune", "--older-than", "0s", "--status", "completed", "--dry-run"], db: db)
        #expect(dry.stdout.contains("Would delete 3"))
        #expect(try store.listTasks(TaskFilter()).count == 6, "a dry run deletes nothing")
        let pruned = try BGQBinary.run(["prune", "--older-than", "0s", "--status", "completed"], db: db)
        #expect(pruned.status == 0, "\(pruned.stderr)")
        #expect(pruned.stdout.contains("Deleted 3 task(s), 3 session(s) and 3 log folder(s)"))
        let left = try store.listTasks(TaskFilter()).map(\.status).sorted { $0.rawValue < $1.rawValue }
        #expect(left == [.cancelled, .error, .pending])
        #expect(try FileManager.default.contentsOfDirectory(atPath: store.location.defaultRunsDirectory()).count == 1)
        let orphanEvents = try store.connection.queryFirst("SELECT count(*) FROM task_events WHERE task_id NOT IN (SELECT id FROM tasks)") { $0.int(0) }
        #expect(orphanEvents == 0)
        let orphanMessages = try store.connection.queryFirst("SELECT count(*) FROM session_messages WHERE session_id NOT IN (SELECT id FROM sessions)") { $0.int(0) }
        #expect(orphanMessages == 0)
        let refused = try BGQBinary.run(["prune", "--older-than", "0s", "--status", "pending"], db: db)
        #expect(refused.status == ExitStatus.usage)
    }
}
