import Foundation
import Testing
@testable import BGQBackends
@testable import BGQCLI
@testable import BGQCore
@testable import BGQSQLite
@testable import BGQScheduler
@testable import BGQSystem

/// Faults with a defined outcome: a full disk, a database deleted or replaced under a worker, a lock
/// held past the busy timeout while a worker runs.
@Suite(.serialized) struct FaultTests {
    static func sqlite(_ path: String, _ sql: String) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/sqlite3")
        process.arguments = [path, sql]
        let out = Pipe()
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        return String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    static func count(_ db: TempDatabase, _ whereClause: String = "1") throws -> Int {
        let store = try SQLiteStore(path: db.path, create: false)
        return try store.connection.queryFirst("SELECT count(*) FROM tasks WHERE \(whereClause)") { $0.int(0) } ?? -1
    }

    static func stop(_ process: Process) {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    static func jsonl(_ count: Int) -> String {
        (0..<count).map { #"{"agent":"noop","prompt":"task \#($0) \#(String(repeating: "x", count: 200))"}"# }.joined(separator: "\n")
    }

    @Test func fullDatabaseRefusesAnEnqueueWholeAndSaysSo() throws {
        let db = TempDatabase()
        try BGQBinary.run(["enqueue", "--agent", "noop", "first"], db: db)
        let pages = Int(try Self.sqlite(db.path, "PRAGMA page_count")) ?? 0
        let result = try BGQBinary.run(["enqueue", "--jsonl", "-"], db: db, stdin: Self.jsonl(2000),
                                       environment: ["BGQ_MAX_PAGE_COUNT": String(pages + 2)])
        #expect(result.status == ExitStatus.database)
        #expect(result.stderr.contains("full"))
        #expect(result.stderr.contains("nothing was written"))
        #expect(!result.stderr.contains("Fatal error"))
        #expect(try Self.count(db) == 1)  // all or nothing: none of the 2,000 was stored
    }

    /// A real full disk (a 3 MB tmpfs): enqueue fails cleanly, the worker waits, and both recover once space returns.
    @Test(.enabled(if: getuid() == 0, "needs root to mount a small tmpfs"))
    func fullDiskIsWaitedOutByTheWorkerAndEverythingRecovers() throws {
        let base = TempDatabase()
        let mountPoint = base.directory + "/small"
        try FileManager.default.createDirectory(atPath: mountPoint, withIntermediateDirectories: true)
        let mount = Process()
        mount.executableURL = URL(fileURLWithPath: "/bin/mount")
        mount.arguments = ["-t", "tmpfs", "-o", "size=3m", "tmpfs", mountPoint]
        try mount.run()
        mount.waitUntilExit()
        try #require(mount.terminationStatus == 0, "this machine does not allow mounting a tmpfs")
        defer {
            let umount = Process()
            umount.executableURL = URL(fileURLWithPath: "/bin/umount")
            umount.arguments = ["-l", mountPoint]
            try? umount.run()
            umount.waitUntilExit()
        }
        let db = TempDatabase()
        let path = mountPoint + "/bgq.db"
        let env = ["BGQ_DB": path]
        try BGQBinary.run(["settings", "set", "poll_interval_ms", "200ms"], db: db, environment: env)
        try BGQBinary.run(["settings", "set", "heartbeat_interval_ms", "200"], db: db, environment: env)
        let log = base.directory + "/worker.log"
        let worker = try BGQBinary.start(["worker", "--poll-interval", "200ms"], db: db, environment: env, logTo: log)
        defer { Self.stop(worker) }
        #expect(eventually { (try? String(contentsOfFile: log, encoding: .utf8))?.contains("worker started") == true })
        // Fill the disk while the worker runs.
        let filler = mountPoint + "/filler"
        FileManager.default.createFile(atPath: filler, contents: nil)
        let handle = try #require(FileHandle(forWritingAtPath: filler))
        let block = Data(repeating: 0x55, count: 16 * 1024)
        while (try? handle.write(contentsOf: block)) != nil {}
        try? handle.close()

        let refused = try BGQBinary.run(["enqueue", "--jsonl", "-"], db: db, stdin: Self.jsonl(500), environment: env)
        #expect(refused.status == ExitStatus.database)
        #expect(refused.stderr.contains("full") || refused.stderr.contains("I/O error"), "\(refused.stderr)")
        #expect(!refused.stderr.contains("Fatal error"))
        // The worker's own writes (heartbeats) fail too: it says it waits for space, and waits instead of exiting.
        let saidFull = eventually(timeout: 20) { (try? String(contentsOfFile: log, encoding: .utf8))?.contains("is full") == true }
        let duringFull = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        #expect(saidFull, "the worker says it waits for space: \(duringFull)")
        #expect(worker.isRunning, "the worker must not exit on a full disk: \(duringFull)")
        try FileManager.default.removeItem(atPath: filler)
        // Space is back: the same batch goes in whole, and the worker runs all of it.
        let accepted = try BGQBinary.run(["enqueue", "--jsonl", "-"], db: db, stdin: Self.jsonl(50), environment: env)
        #expect(accepted.status == 0, "\(accepted.stderr)")
        let done = eventually(timeout: 30) {
            let listed = (try? BGQBinary.run(["list", "--status", "completed", "--json", "--limit", "10000"], db: db, environment: env).stdout) ?? ""
            return listed.components(separatedBy: "\"id\"").count - 1 == 50
        }
        #expect(done, "after space returned, every task completes: \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
        #expect(worker.isRunning)
        let total = try BGQBinary.run(["list", "--json", "--limit", "10000"], db: db, environment: env).stdout
        #expect(total.components(separatedBy: "\"id\"").count - 1 == 50, "nothing of the refused batch was stored")
    }

    @Test func databaseDeletedUnderARunningWorkerStopsItWithAClearError() throws {
        let db = TempDatabase()
        try BGQBinary.run(["settings", "set", "poll_interval_ms", "100ms"], db: db)
        let log = db.directory + "/worker.log"
        let worker = try BGQBinary.start(["worker"], db: db, logTo: log)
        defer { Self.stop(worker) }
        #expect(eventually { (try? String(contentsOfFile: log, encoding: .utf8))?.contains("worker started") == true })
        for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: db.path + suffix) }
        #expect(eventually(timeout: 20) { !worker.isRunning }, "the worker must stop")
        worker.waitUntilExit()
        #expect(worker.terminationStatus == ExitStatus.database)
        let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        #expect(text.contains("was deleted"), "\(text)")
        #expect(!text.contains("Fatal error"))
    }

    @Test func databaseReplacedUnderARunningWorkerStopsIt() throws {
        let db = TempDatabase()
        try BGQBinary.run(["settings", "set", "poll_interval_ms", "100ms"], db: db)
        let other = TempDatabase()
        try BGQBinary.run(["enqueue", "--agent", "noop", "other"], db: other)
        let log = db.directory + "/worker.log"
        let worker = try BGQBinary.start(["worker"], db: db, logTo: log)
        defer { Self.stop(worker) }
        #expect(eventually { (try? String(contentsOfFile: log, encoding: .utf8))?.contains("worker started") == true })
        _ = rename(other.path, db.path)
        #expect(eventually(timeout: 20) { !worker.isRunning }, "the worker must stop")
        let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        #expect(text.contains("replaced"), "\(text)")
    }

    /// Another process holds the write lock past the busy timeout: the worker waits, says so, and goes on.
    @Test func lockHeldPastTheBusyTimeoutIsWaitedOutByTheWorker() throws {
        let db = TempDatabase()
        try BGQBinary.run(["settings", "set", "poll_interval_ms", "100ms"], db: db)
        let log = db.directory + "/worker.log"
        let worker = try BGQBinary.start(["worker"], db: db, environment: ["BGQ_BUSY_TIMEOUT_MS": "100"], logTo: log)
        defer { Self.stop(worker) }
        #expect(eventually { (try? String(contentsOfFile: log, encoding: .utf8))?.contains("worker started") == true })
        let holder = Process()
        holder.executableURL = URL(fileURLWithPath: "/usr/bin/sqlite3")
        holder.arguments = [db.path]
        let input = Pipe(), output = Pipe()
        holder.standardInput = input
        holder.standardOutput = output
        try holder.run()
        // The holder says when it has the write lock; the worker's next write then fails past its busy timeout.
        input.fileHandleForWriting.write(Data("BEGIN IMMEDIATE;\nINSERT INTO settings VALUES ('x', 'y', 'z');\nSELECT 'held';\n".utf8))
        let held = String(decoding: output.fileHandleForReading.availableData, as: UTF8.self)
        #expect(held.contains("held"), "the sqlite3 shell did not take the lock: \(held)")
        #expect(eventually(timeout: 20) { (try? String(contentsOfFile: log, encoding: .utf8))?.contains("locked") == true },
                "the worker says why it waits: \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
        #expect(worker.isRunning)
        input.fileHandleForWriting.write(Data("ROLLBACK;\n.quit\n".utf8))
        try? input.fileHandleForWriting.close()
        holder.waitUntilExit()
        try BGQBinary.run(["enqueue", "--agent", "noop", "after the lock"], db: db)
        #expect(eventually(timeout: 20) { (try? Self.count(db, "status = 'completed'")) == 1 })
        #expect(worker.isRunning)
        let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
        #expect(text.contains("the database takes writes again"), "the worker says it goes on: \(text)")
    }
}

/// Timeouts use monotonic time: a jump of the wall clock neither fires nor delays them.
@Suite(.serialized) struct ClockJumpTests {
    @Test func aWallClockJumpDoesNotTimeOutARunningTask() throws {
        let db = TempDatabase()
        let clock = ManualClock(SystemClock().now())
        let store = try db.store(clock: clock)
        try store.setSetting("poll_interval_ms", "100")
        _ = try store.enqueue([NewTask(description: "long", prompt: "sleep 30", agent: "shell")])
        var options = WorkerOptions(name: "clock-test")
        options.wakeIntervalMs = 1
        options.ownsAllChildren = false  // this test process has other tests' children too
        let worker = Worker(store: store, options: options, backends: .standard(store: store), clock: clock)
        try worker.register()
        var timers = Worker.Timers(now: clock.monotonicMilliseconds(), settings: try store.settings(), reapIntervalMs: 1000)
        _ = try worker.tick(&timers)
        let task = try #require(try store.listTasks(TaskFilter()).first)
        #expect(task.status == .running)
        defer { if let pid = task.run.pid ?? (try? store.task(id: task.id))?.run.pid { ProcessSupport.signalGroup(pid, SIGKILL) } }

        // The wall clock jumps two hours ahead (NTP, a suspended VM): nothing times out.
        clock.current = clock.current + 2 * 3_600_000
        for _ in 0..<3 { _ = try worker.tick(&timers) }
        #expect(try store.task(id: task.id)?.status == .running, "a wall-clock jump must not fire the 30-minute TTL")

        // Thirty minutes of real (monotonic) time do.
        clock.advance(milliseconds: 30 * 60_000 + 1000)
        for _ in 0..<3 { _ = try worker.tick(&timers) }
        let ended = try #require(try store.task(id: task.id))
        #expect(ended.status == .error)
        #expect(ended.error == "Task timed out after 30 minutes")
    }
}
