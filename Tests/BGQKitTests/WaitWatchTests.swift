import Foundation
import Testing
@testable import BGQBackends
@testable import BGQCLI
@testable import BGQCore
@testable import BGQSQLite
@testable import BGQScheduler
@testable import BGQSystem

/// `bgq wait` and `bgq watch` with real workers.
@Suite(.serialized) struct WaitWatchTests {
    static func id(_ result: CommandResult) throws -> String {
        try #require((try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])?["id"] as? String)
    }

    @Test func waitPrintsANoticePerTaskAndTheSummaryAndFailsWhenOneFailed() throws {
        let db = TempDatabase()
        try BGQBinary.run(["settings", "set", "poll_interval_ms", "100ms"], db: db)
        let ok = try Self.id(try BGQBinary.run(["enqueue", "--agent", "shell", "--parent", "p1", "--json", "echo fine"], db: db))
        let bad = try Self.id(try BGQBinary.run(["enqueue", "--agent", "shell", "--parent", "p1", "--json", "exit 3"], db: db))
        let worker = try BGQBinary.start(["worker"], db: db)
        defer { kill(worker.processIdentifier, SIGKILL); worker.waitUntilExit() }
        let result = try BGQBinary.run(["wait", "--parent", "p1", "--timeout", "30"], db: db)
        #expect(result.status == ExitStatus.failure, "one task failed: \(result.stdout)")
        #expect(result.stdout.contains("[BACKGROUND TASK COMPLETED]\nTask ID: \(ok)"))
        #expect(result.stdout.contains("[BACKGROUND TASK FAILED]\nTask ID: \(bad)"))
        #expect(result.stdout.contains("Error: agent failed (exit code 3)"))
        #expect(result.stdout.components(separatedBy: "[ALL BACKGROUND TASKS COMPLETE]").count == 2, "the summary comes once")
        #expect(!result.stdout.contains("\u{1B}["), "no terminal redraws off a terminal")
        let good = try BGQBinary.run(["wait", ok], db: db)
        #expect(good.status == 0)
    }

    @Test func waitTimesOutWithItsExitCode() throws {
        let db = TempDatabase()
        let id = try Self.id(try BGQBinary.run(["enqueue", "--agent", "noop", "--json", "never claimed"], db: db))
        let result = try BGQBinary.run(["wait", id, "--timeout", "0.3"], db: db)
        #expect(result.status == ExitStatus.timeout)
        #expect(result.stdout.contains("Timeout exceeded (300ms). 1 task(s) still in progress."))
    }

    /// Every transition exactly once, in order, across a worker killed and replaced mid-run.
    @Test func watchShowsEveryTransitionOnceAcrossWorkerRestarts() throws {
        let db = TempDatabase()
        try BGQBinary.run(["settings", "set", "poll_interval_ms", "100ms"], db: db)
        try BGQBinary.run(["settings", "set", "heartbeat_interval_ms", "200", "lease_timeout_ms", "1500"], db: db)
        try BGQBinary.run(["enqueue", "--agent", "noop", "before the watch"], db: db)
        let output = db.directory + "/watch.jsonl"
        FileManager.default.createFile(atPath: output, contents: nil)
        let watch = Process()
        watch.executableURL = URL(fileURLWithPath: BGQBinary.path)
        watch.arguments = ["watch", "--json", "--since", "0"]
        watch.environment = ProcessInfo.processInfo.environment.merging(["BGQ_DB": db.path]) { $1 }
        watch.standardOutput = FileHandle(forWritingAtPath: output)
        watch.standardError = FileHandle.nullDevice
        try watch.run()
        defer { if watch.isRunning { kill(watch.processIdentifier, SIGKILL) }; watch.waitUntilExit() }

        for i in 0..<6 { try BGQBinary.run(["enqueue", "--agent", "shell", "sleep 0.\(i + 3); echo \(i)"], db: db) }
        var first = try BGQBinary.start(["worker"], db: db)
        let store = try db.store()
        // Killed mid-run: once a task runs with its agent's pid recorded, the next worker must adopt it.
        #expect(eventually(timeout: 20) {
            (try? store.listTasks(TaskFilter()).contains { $0.status == .running && $0.run.pid != nil }) == true
        })
        kill(first.processIdentifier, SIGKILL)
        first.waitUntilExit()
        first = try BGQBinary.start(["worker"], db: db)
        defer { kill(first.processIdentifier, SIGKILL); first.waitUntilExit() }
        #expect(eventually(timeout: 30) { (try? store.activeTaskIDs(parentID: nil).isEmpty) == true })
        let total = try #require(try store.connection.queryFirst("SELECT count(*) FROM task_history") { $0.int(0) })
        #expect(eventually(timeout: 10) {
            ((try? String(contentsOfFile: output, encoding: .utf8)) ?? "").split(separator: "\n").count >= total
        })
        kill(watch.processIdentifier, SIGTERM)
        let lines = try String(contentsOfFile: output, encoding: .utf8).split(separator: "\n")
        let ids = try lines.map { line -> Int in
            try #require((try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])?["event"] as? Int)
        }
        // Creations (tasks.seq) and transitions (task_events.id) share one id sequence.
        let stored = try store.connection.query("SELECT event_id FROM task_history ORDER BY event_id") { $0.int(0) }
        #expect(ids == stored, "every event once, in order")
        let creations = try lines.filter { line in
            try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])["from"] is NSNull
        }
        #expect(creations.count == 7, "the watch shows every task's creation")
    }
}

/// Long readers beside heavy writes never make the WAL grow without bound.
@Suite(.serialized) struct WALGrowthTests {
    @Test func theWALStaysBoundedWhileWatchReadsBesideHeavyWrites() throws {
        let db = TempDatabase()
        try BGQBinary.run(["enqueue", "--agent", "noop", "first"], db: db)
        let watch = try BGQBinary.start(["watch", "--since", "0"], db: db)
        defer { kill(watch.processIdentifier, SIGKILL); watch.waitUntilExit() }
        let prompt = String(repeating: "x", count: 1000)
        let batch = (0..<2000).map { #"{"agent":"noop","prompt":"\#(prompt) \#($0)"}"# }.joined(separator: "\n")
        var largest: UInt64 = 0
        for _ in 0..<50 {
            let result = try BGQBinary.run(["enqueue", "--jsonl", "-"], db: db, stdin: batch)
            #expect(result.status == 0)
            let size = ((try? FileManager.default.attributesOfItem(atPath: db.path + "-wal"))?[.size] as? UInt64) ?? 0
            largest = max(largest, size)
        }
        let database = ((try? FileManager.default.attributesOfItem(atPath: db.path))?[.size] as? UInt64) ?? 0
        #expect(database > 100_000_000, "the test wrote well over 100 MB (\(database) bytes)")
        #expect(largest < 32_000_000, "the WAL peaked at \(largest) bytes while \(database) bytes were written")
        #expect(watch.isRunning, "the reader was there all along")
    }
}
