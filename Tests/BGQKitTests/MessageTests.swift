import Foundation
import Testing
@testable import BGQBackends
@testable import BGQCLI
@testable import BGQCore
@testable import BGQSQLite
@testable import BGQScheduler
@testable import BGQSystem

/// Messages and figures say what really happened.
@Suite struct MessageTests {
    /// A clock whose monotonic time moves on by `step` each time it is read: what a slow operation looks like.
    final class SteppingClock: Clock {
        let step: Int64
        var monotonic: Int64 = 0
        init(step: Int64) { self.step = step }
        func now() -> Instant { Instant(milliseconds: 1_790_000_000_000) }
        func monotonicMilliseconds() -> Int64 {
            monotonic += step
            return monotonic
        }
    }

    @Test func oneMinuteIsSingular() throws {
        #expect(spelledDuration(milliseconds: 60_000) == "1 minute")
        #expect(spelledDuration(milliseconds: 30 * 60_000) == "30 minutes")
        #expect(spelledDuration(milliseconds: 90_000) == "90 seconds")
        #expect(spelledDuration(milliseconds: 3_600_000) == "1 hour")
        let clock = ManualClock()
        let store = try TempDatabase().store(clock: clock)
        let task = try #require(try store.enqueue([NewTask(description: "d", prompt: "p", agent: "noop")]).first)
        clock.advance(milliseconds: 61_000)
        #expect(try store.expireQueuedTasks(ttlMs: 60_000) == [task.id])
        #expect(try store.requireTask(id: task.id).error == "Task timed out while queued (1 minute)")
        var settings = Settings()
        settings.taskTTLMs = 60_000
        var memory = RuleMemory()
        let verdict = CompletionRules(settings: settings).evaluate(
            SessionSnapshot(status: .busy, messageCount: 0, hasRealOutput: false, openTodos: 0, result: nil, resultIsError: false, problem: nil),
            runtimeMs: 61_000, sinceProgressMs: 0, memory: &memory)
        #expect(verdict == .fail(error: "Task timed out after 1 minute", abort: true))
    }

    /// An agent ran 12 s; its worker died, and the session waited 40 s for another worker to adopt it.
    @Test func theWaitForAdoptionIsNotCountedAsRunTime() throws {
        let clock = ManualClock()
        let store = try TempDatabase().store(clock: clock)
        _ = try store.enqueue([NewTask(description: "d", prompt: "p", agent: "shell")])
        let dead = try store.registerWorker(WorkerRegistration(name: "dies", host: "h", pid: 1, maxSessions: 1))
        let task = try #require(try store.claimTasks(workerID: dead, capacity: 1).first)
        let started = clock.now()
        clock.advance(milliseconds: 40_000 + 12_000)
        _ = try store.setWorkerState(dead, to: .dead, reason: "missed its heartbeat")
        let adopter = try store.registerWorker(WorkerRegistration(name: "adopts", host: "h", pid: 2, maxSessions: 1))
        #expect(try store.adopt(task, from: dead, by: adopter, reason: "adopted") == .owned)
        try store.recordRunEnd(taskID: task.id, workerID: adopter, endedAt: started + 12_000)
        var owned = task
        owned.workerID = adopter
        #expect(try store.finish(owned, workerID: adopter, outcome: .completed(result: "ok")) == .owned)
        let finished = try store.requireTask(id: task.id)
        #expect(finished.runMs == 12_000)
        #expect(Render.result(finished, now: clock.now()).contains("Duration: 12s (+40s waiting for adoption)"))
        #expect(Notices.taskFinished(finished, remaining: 0).contains("Duration: 12s (+40s waiting for adoption)"))
        #expect(try store.stats(since: nil).keys.first?.busyMs == 12_000, "slot time counts the run, not the wait")

        // The adopting worker learns the end from the agent's exit file.
        let scratch = TempDatabase()
        let directory = scratch.directory + "/run"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try "0\n".write(toFile: directory + "/exit", atomically: true, encoding: .utf8)
        let ended = Date(timeIntervalSince1970: 1_790_000_012)
        try FileManager.default.setAttributes([.modificationDate: ended], ofItemAtPath: directory + "/exit")
        var run = task
        run.run.directory = directory
        #expect(ExecBackend().runEndedAt(run) == Instant(milliseconds: 1_790_000_012_000))
    }

    /// "waited 5000 ms and retried" was printed after 20.4 s (four attempts of 5 s, and backoff):
    /// the message states the time measured around the whole attempt.
    @Test func aLockHeldPastTheBusyTimeoutReportsTheTimeReallyWaited() throws {
        let db = TempDatabase()
        _ = try db.store()
        let store = SQLiteStore(connection: try Database.open(path: db.path, busyTimeoutMilliseconds: 20), clock: SteppingClock(step: 7_000))
        let holder = try Connection(path: db.path, create: false)
        try holder.execute("BEGIN IMMEDIATE")
        defer { try? holder.execute("ROLLBACK") }
        do {
            _ = try store.enqueue([NewTask(description: "d", prompt: "p", agent: "noop")])
            Issue.record("the enqueue went through a held lock")
        } catch let error as BGQError {
            guard case .database(let failure) = error, failure.kind == .busy else { Issue.record("not a busy error: \(error)"); return }
            let text = failure.description
            #expect(text.contains("locked by another process"))
            #expect(text.contains("waited 7.0 s"), "\(text)")
            #expect(!text.contains("5000 ms"), "\(text)")
        }
    }

    @Test func aPrefixThatCannotBeAnIdSaysWhyAndAnAmbiguousOneListsCandidates() throws {
        let db = TempDatabase()
        try BGQBinary.run(["enqueue", "--agent", "noop", "x"], db: db)
        for command in [["show", "bg_"], ["history", ""], ["cancel", "bg_"]] {
            let result = try BGQBinary.run(command, db: db)
            #expect(result.status == ExitStatus.notFound)
            #expect(result.stderr.contains("too short") && result.stderr.contains("at least 1 hex digit"), "\(command): \(result.stderr)")
        }
        let long = try BGQBinary.run(["show", "bg_" + String(repeating: "a", count: 40)], db: db)
        #expect(long.stderr.contains("too long"), "\(long.stderr)")
        let store = try db.store()
        #expect(throws: BGQError.self) { try store.resolveTaskID("bg_") }
        do { _ = try store.resolveTaskID("bg_") } catch {
            #expect(Render.taskNotFound("bg_", error).contains("too short"))
            #expect(Render.taskNotFound("bg_ffffffff", BGQError.notFound("x")) == "Task not found: bg_ffffffff")
            #expect(Render.taskNotFound("bg_a", BGQError.usage("task id prefix 'bg_a' is ambiguous: it matches bg_a1, bg_a2"))
                    == "Task not found: bg_a (task id prefix 'bg_a' is ambiguous: it matches bg_a1, bg_a2)")
        }
    }

    /// A corrupt page met by a reader stops every writer after it, and no message claims the file was
    /// left untouched once bgq may have written to it.
    @Test func aCorruptPageFoundByAReaderStopsWritersToo() throws {
        let db = TempDatabase()
        let lines = (0..<300).map { "{\"agent\":\"noop\",\"prompt\":\"\(String(repeating: "p", count: 900))\($0)\"}" }.joined(separator: "\n")
        #expect(try BGQBinary.run(["enqueue", "--jsonl", "-"], db: db, stdin: lines + "\n").status == 0)
        try ForeignCommand.run("/usr/bin/sqlite3", [db.path, "PRAGMA wal_checkpoint(TRUNCATE)"])
        let page = try ForeignCommand.run("/usr/bin/sqlite3", [db.path,
            "SELECT pageno FROM dbstat WHERE name = 'tasks' AND pagetype = 'leaf' ORDER BY pageno LIMIT 1 OFFSET 10"]).stdout
        let pageNumber = try #require(Int(page.trimmingCharacters(in: .whitespacesAndNewlines)))
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: db.path))
        try handle.seek(toOffset: UInt64((pageNumber - 1) * 4096))
        try handle.write(contentsOf: Data(repeating: 0xFF, count: 64))
        try handle.close()

        let listed = try BGQBinary.run(["list", "--limit", "1000"], db: db)
        #expect(listed.status == ExitStatus.database)
        #expect(listed.stderr.contains("corrupt") && !listed.stderr.contains("untouched"), "\(listed.stderr)")
        let enqueued = try BGQBinary.run(["enqueue", "--agent", "noop", "one more"], db: db)
        #expect(enqueued.status == ExitStatus.database, "a writer kept writing to a file found corrupt: \(enqueued.stdout)")
        #expect(enqueued.stderr.contains("corrupt") && !enqueued.stderr.contains("untouched"), "\(enqueued.stderr)")
    }
}

/// A run whose disk fills up says so in the task's error.
@Suite(.serialized) struct DiskFullRunTests {
    @Test(.enabled(if: getuid() == 0, "needs root to mount a small tmpfs"))
    func aFullDiskDuringARunIsTheTasksError() throws {
        let db = TempDatabase()
        try BGQBinary.run(["settings"], db: db)
        let runs = db.path + ".runs"
        try FileManager.default.createDirectory(atPath: runs, withIntermediateDirectories: true)
        let mounted = try ForeignCommand.run("/bin/mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", runs])
        try #require(mounted.status == 0, "this machine does not allow mounting a tmpfs: \(mounted.stderr)")
        defer { _ = try? ForeignCommand.run("/bin/umount", ["-l", runs]) }
        // Fill it: the run folder and its empty files can still be made, but no byte can be written.
        _ = try ForeignCommand.run("/bin/sh", ["-c", "dd if=/dev/zero of=\(runs)/filler bs=4k 2>/dev/null; true"])
        try BGQBinary.run(["enqueue", "--agent", "shell", "echo hello; echo done"], db: db)
        try BGQBinary.run(["worker", "--exit-when-idle", "--poll-interval", "100ms"], db: db, timeout: 60)
        let task = try #require(try db.store().listTasks(TaskFilter()).first)
        #expect(task.status == .error)
        #expect(task.error?.contains("is full") == true, "\(task.error ?? "no error")")
    }
}
