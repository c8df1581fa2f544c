import Foundation
import Testing
@testable import BGQBackends
@testable import BGQCLI
@testable import BGQCore
@testable import BGQSQLite
@testable import BGQScheduler
@testable import BGQSystem

/// Completion hooks run once per terminal transition, with the task as JSON on stdin.
@Suite(.serialized) struct HookTests {
    static func lines(_ path: String) -> Int {
        ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n").count
    }

    @Test func aTasksHookRunsOnceWithTheTaskAsJSON() throws {
        let db = TempDatabase()
        let count = db.directory + "/count", input = db.directory + "/input.json"
        let enqueued = try BGQBinary.run(["enqueue", "--agent", "shell", "--json", "--on-complete", "cat > \(input); echo ran >> \(count)", "echo hi"], db: db)
        let id = try #require((try JSONSerialization.jsonObject(with: Data(enqueued.stdout.utf8)) as? [String: Any])?["id"] as? String)
        try BGQBinary.run(["worker", "--exit-when-idle", "--poll-interval", "100ms"], db: db, timeout: 60)
        #expect(Self.lines(count) == 1)
        let task = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: input))) as? [String: Any])
        #expect(task["id"] as? String == id)
        #expect(task["status"] as? String == "completed")
        #expect(task["result"] as? String == "hi")
        let shown = try BGQBinary.run(["show", "--json", id], db: db).stdout
        let hooks = try #require((try JSONSerialization.jsonObject(with: Data(shown.utf8)) as? [String: Any])?["hooks"] as? [[String: Any]])
        #expect(hooks.count == 1 && hooks[0]["status"] as? String == "done")
    }

    /// `cat >> file.jsonl` as the hook makes valid JSONL: one object per line, each ending in a newline.
    @Test func aHookAppendingToAFileMakesValidJSONL() throws {
        let db = TempDatabase()
        let file = db.directory + "/done.jsonl"
        try BGQBinary.run(["settings", "set", "on_complete", "cat >> \(file)"], db: db)
        for command in ["echo one", "echo two", "exit 1"] { try BGQBinary.run(["enqueue", "--agent", "shell", command], db: db) }
        try BGQBinary.run(["worker", "--exit-when-idle", "--poll-interval", "100ms"], db: db, timeout: 60)
        #expect(eventually(timeout: 30) { Self.lines(file) == 3 })
        let text = (try? String(contentsOfFile: file, encoding: .utf8)) ?? ""
        #expect(text.hasSuffix("\n"))
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).dropLast()
        #expect(lines.count == 3)
        for line in lines {
            #expect((try? JSONSerialization.jsonObject(with: Data(line.utf8))) is [String: Any], "not one JSON object: \(line.prefix(80))")
        }
    }

    @Test func theGlobalHookRunsForEveryTaskAndAFailureIsRecordedNotRetried() throws {
        let db = TempDatabase()
        let count = db.directory + "/count"
        try BGQBinary.run(["settings", "set", "on_complete", "echo $BGQ_TASK_ID $BGQ_TASK_STATUS >> \(count); exit 3"], db: db)
        try BGQBinary.run(["enqueue", "--agent", "shell", "echo a"], db: db)
        try BGQBinary.run(["enqueue", "--agent", "shell", "exit 1"], db: db)
        try BGQBinary.run(["worker", "--exit-when-idle", "--poll-interval", "100ms"], db: db, timeout: 60)
        #expect(Self.lines(count) == 2)
        #expect(((try? String(contentsOfFile: count, encoding: .utf8)) ?? "").contains(" error"))
        let store = try db.store()
        for task in try store.listTasks(TaskFilter()) {
            let hooks = try store.hooks(taskID: task.id)
            #expect(hooks.count == 1 && hooks[0].status == .failed && hooks[0].exitCode == 3)
        }
        // Another worker later does not run the failed hooks again.
        try BGQBinary.run(["enqueue", "--agent", "noop", "third"], db: db)
        try BGQBinary.run(["worker", "--exit-when-idle", "--poll-interval", "100ms"], db: db, timeout: 60)
        #expect(Self.lines(count) == 3, "only the new task's hook ran")
    }

    /// The transition commits with its outbox row: a worker dying right after it loses no hook.
    @Test func aHookIsNotLostWhenNoWorkerRanItAfterTheTransition() throws {
        let db = TempDatabase()
        let count = db.directory + "/count"
        let store = try db.store()
        _ = try store.enqueue([NewTask(description: "d", prompt: "p", agent: "noop", onComplete: "echo ran >> \(count)")])
        let worker = try store.registerWorker(WorkerRegistration(name: "dies", host: "h", pid: 1, maxSessions: 1))
        let task = try #require(try store.claimTasks(workerID: worker, capacity: 1).first)
        #expect(try store.finish(task, workerID: worker, outcome: .completed(result: "ok")) == .owned)
        _ = try store.setWorkerState(worker, to: .dead, reason: "died right after the transition")
        #expect(try store.hooks(taskID: task.id).map(\.status) == [.pending])
        try BGQBinary.run(["worker", "--exit-when-idle", "--poll-interval", "100ms"], db: db, timeout: 60)
        #expect(Self.lines(count) == 1)
        #expect(try store.hooks(taskID: task.id).map(\.status) == [.done])
    }

    /// A hook cut off by its worker's death is recorded as failed, and never run a second time.
    @Test func aHookInterruptedByACrashIsRecordedFailedNotRunAgain() throws {
        let db = TempDatabase()
        let count = db.directory + "/count"
        try BGQBinary.run(["settings", "set", "heartbeat_interval_ms", "200", "lease_timeout_ms", "1000"], db: db)
        try BGQBinary.run(["enqueue", "--agent", "noop", "--on-complete", "echo started >> \(count); sleep 30", "x"], db: db)
        let first = try BGQBinary.start(["worker", "--poll-interval", "100ms"], db: db)
        #expect(eventually(timeout: 20) { Self.lines(count) == 1 })
        kill(first.processIdentifier, SIGKILL)
        first.waitUntilExit()
        let store = try db.store()
        let task = try #require(try store.listTasks(TaskFilter()).first)
        if let pid = try store.connection.queryFirst("SELECT pid FROM hook_outbox", [], { $0.optionalInt(0) }) ?? nil { kill(-Int32(pid), SIGKILL) }
        let second = try BGQBinary.start(["worker", "--poll-interval", "100ms"], db: db)
        defer { kill(second.processIdentifier, SIGKILL); second.waitUntilExit() }
        #expect(eventually(timeout: 20) { (try? store.hooks(taskID: task.id).first?.status) == .failed })
        #expect(try store.hooks(taskID: task.id).first?.error?.contains("worker lost") == true)
        // A later task's hook runs on the same worker: by then a hook offered again (hooks start in id order)
        // would have started too.
        let later = db.directory + "/later"
        try BGQBinary.run(["enqueue", "--agent", "noop", "--on-complete", "echo ran >> \(later)", "y"], db: db)
        #expect(eventually(timeout: 20) { Self.lines(later) == 1 }, "the later task's hook never ran")
        #expect(Self.lines(count) == 1, "the hook did not run a second time")
    }
}
