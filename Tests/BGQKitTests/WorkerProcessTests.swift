import Foundation
import Testing
@testable import BGQBackends
@testable import BGQCLI
@testable import BGQCore
@testable import BGQSQLite
@testable import BGQScheduler
@testable import BGQSystem

/// Real `bgq worker` processes on one database, killed, paused and signalled the way they are in use.
///
/// Every test has its own database and its own workers (logging to files beside the database, quoted in
/// failure messages), and stops everything it started in a `defer`: the workers, then every agent process
/// group the database ever recorded. Waiting is always bounded (`eventually`); nothing asserts on how
/// long anything took.
@Suite(.serialized) struct WorkerProcessTests {

    // MARK: - Rig

    /// One started `bgq worker`.
    final class StartedWorker {
        let name: String
        let process: Process
        let logPath: String
        /// Its id in the `workers` table (the first one it registered under).
        var id = ""
        init(name: String, process: Process, logPath: String) {
            self.name = name
            self.process = process
            self.logPath = logPath
        }
        var pid: Int32 { process.processIdentifier }
        var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }
    }

    /// A database with its workers. `stop()` kills what the test started.
    final class Rig {
        let db = TempDatabase()
        let store: SQLiteStore
        private(set) var workers: [StartedWorker] = []
        /// Every agent pid seen (requeued tasks forget theirs in the database).
        private(set) var seenPIDs: Set<Int32> = []
        /// Highest number of running tasks and of slot leases seen per concurrency key by `sample()`.
        private(set) var maxRunning: [String: Int] = [:]
        private(set) var maxLeases: [String: Int] = [:]

        /// Short timings so that a test takes seconds; `settings` overrides or adds keys.
        init(_ settings: [String: Int] = [:]) throws {
            store = try db.store()
            let base = ["poll_interval_ms": 200, "heartbeat_interval_ms": 300, "lease_timeout_ms": 10_000,
                        "abort_grace_ms": 500, "retry_backoff_ms": 100]
            for (key, value) in base.merging(settings, uniquingKeysWith: { $1 }) {
                try store.setSetting(key, String(value))
            }
        }

        func path(_ name: String) -> String { db.directory + "/" + name }

        /// Every worker's log, for failure messages.
        var logs: String {
            workers.map { "--- worker \($0.name) (pid \($0.pid), \($0.id)) log:\n\($0.log)" }.joined(separator: "\n")
        }

        var comment: Comment { Comment(rawValue: logs) }

        // MARK: Workers

        /// Starts `bgq worker --name NAME --poll-interval 200ms ARGS` and waits until it registered.
        @discardableResult
        func startWorker(_ name: String, _ arguments: [String] = [], environment: [String: String] = [:], stopSignalsBlocked: Bool = false,
                         sourceLocation: SourceLocation = #_sourceLocation) throws -> StartedWorker {
            let logPath = path("\(name).log")
            let process = try Self.withStopSignals(blocked: stopSignalsBlocked) {
                try BGQBinary.start(["worker", "--name", name, "--poll-interval", "200ms"] + arguments, db: db,
                                    environment: environment, logTo: logPath)
            }
            let worker = StartedWorker(name: name, process: process, logPath: logPath)
            workers.append(worker)
            let registered = try eventually(timeout: 20) {
                guard let row = try store.listWorkers(includeGone: true).first(where: { $0.pid == worker.pid }) else { return false }
                worker.id = row.id
                return true
            }
            #expect(registered, "worker \(name) never registered\n\(logs)", sourceLocation: sourceLocation)
            return worker
        }

        /// The worker's current row (after `loseOwnership` it registers anew: the newest row of its pid).
        func workerRow(id: String) throws -> WorkerRecord? {
            try store.listWorkers(includeGone: true, limit: 1000).first { $0.id == id }
        }

        func newestWorkerRow(pid: Int32) throws -> WorkerRecord? {
            try store.listWorkers(includeGone: true, limit: 1000).filter { $0.pid == pid }.max { $0.startedAt < $1.startedAt }
        }

        /// Signals the worker while it is still this test's child (Foundation has not reaped it, so the pid is still its).
        func signal(_ worker: StartedWorker, _ signal: Int32) {
            if worker.process.isRunning { kill(worker.pid, signal) }
        }

        /// Whether the worker exited. Not `Process.isRunning`: Foundation learns of the exit only when every holder
        /// of the pipe it gave the child closed it, and the agents a worker leaves behind inherit that pipe.
        func exited(_ worker: StartedWorker) -> Bool { WorkerProcessTests.processGone(worker.pid) }

        /// SIGKILL, and wait until it is gone.
        func sigkill(_ worker: StartedWorker, sourceLocation: SourceLocation = #_sourceLocation) {
            signal(worker, SIGKILL)
            #expect(eventually(timeout: 20) { exited(worker) }, "worker \(worker.name) survived SIGKILL", sourceLocation: sourceLocation)
        }

        /// Kills every worker still alive, then every agent process group the database (or the test) knew.
        func stop() {
            for worker in workers where worker.process.isRunning {
                kill(worker.pid, SIGKILL)
            }
            let recorded = (try? store.connection.query("SELECT DISTINCT run_pid FROM tasks WHERE run_pid IS NOT NULL") {
                Int32(truncatingIfNeeded: $0.int64(0))
            }) ?? []
            for pid in seenPIDs.union(recorded) where pid > 1 && pid != getpid() {
                kill(-pid, SIGKILL)
                kill(pid, SIGKILL)
            }
            _ = eventually(timeout: 10) { workers.allSatisfy(exited) }
        }

        /// Runs `body` (which starts a process) with SIGINT and SIGTERM unblocked in this thread, as a shell starts
        /// programs (or, with `blocked`, blocked): a child inherits its parent's signal mask, and the threads that
        /// run these tests may block them.
        static func withStopSignals<T>(blocked: Bool, _ body: () throws -> T) rethrows -> T {
            var stopSignals = sigset_t(), previous = sigset_t()
            sigemptyset(&stopSignals)
            sigaddset(&stopSignals, SIGINT)
            sigaddset(&stopSignals, SIGTERM)
            pthread_sigmask(blocked ? SIG_BLOCK : SIG_UNBLOCK, &stopSignals, &previous)
            defer { pthread_sigmask(SIG_SETMASK, &previous, nil) }
            return try body()
        }

        // MARK: CLI

        @discardableResult
        func bgq(_ arguments: [String], environment: [String: String] = [:]) throws -> CommandResult {
            try BGQBinary.run(arguments, db: db, environment: environment)
        }

        /// Runs bgq and requires exit 0; returns stdout.
        @discardableResult
        func ok(_ arguments: [String], sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
            let result = try bgq(arguments)
            #expect(result.status == 0, "bgq \(arguments.joined(separator: " ")) exited \(result.status): \(result.stderr)",
                    sourceLocation: sourceLocation)
            return result.stdout
        }

        /// Enqueues one task; returns its id (from the launch block).
        func enqueue(_ prompt: String, agent: String? = "shell", _ extra: [String] = [],
                     sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
            let out = try ok(["enqueue"] + (agent.map { ["--agent", $0] } ?? []) + extra + [prompt], sourceLocation: sourceLocation)
            let line = out.split(separator: "\n").first { $0.hasPrefix("Task ID: ") }
            return try #require(line.map { String($0.dropFirst("Task ID: ".count)) }, "no task id in: \(out)", sourceLocation: sourceLocation)
        }

        /// Enqueues many tasks in one transaction (`--jsonl`), in order; returns their ids in that order.
        func enqueueJSONL(_ objects: [[String: Any]], sourceLocation: SourceLocation = #_sourceLocation) throws -> [String] {
            let text = try objects.map { String(decoding: try JSONSerialization.data(withJSONObject: $0, options: [.sortedKeys]), as: UTF8.self) }
                .joined(separator: "\n")
            let file = path("batch-\(UUID().uuidString).jsonl")
            try text.write(toFile: file, atomically: true, encoding: .utf8)
            let out = try ok(["enqueue", "--jsonl", file], sourceLocation: sourceLocation)
            let ids = out.split(separator: "\n").filter { $0.hasPrefix("bg_") }.map(String.init)
            #expect(ids.count == objects.count, "enqueue --jsonl printed: \(out)", sourceLocation: sourceLocation)
            return ids
        }

        // MARK: Database

        func task(_ id: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> TaskRecord {
            let task = try #require(try store.task(id: id), "no task \(id)", sourceLocation: sourceLocation)
            if let pid = task.run.pid { seenPIDs.insert(pid) }
            return task
        }

        func status(_ id: String) throws -> TaskStatus { try task(id).status }

        func events(_ id: String) throws -> [TaskEvent] { try store.events(taskID: id) }

        func leaseCount(taskID: String? = nil) throws -> Int {
            if let taskID {
                return try store.connection.queryFirst("SELECT count(*) FROM slot_leases WHERE task_id = ?", [.text(taskID)]) { $0.int(0) } ?? 0
            }
            return try store.connection.queryFirst("SELECT count(*) FROM slot_leases") { $0.int(0) } ?? 0
        }

        func activeCount() throws -> Int {
            try store.connection.queryFirst("SELECT count(*) FROM tasks WHERE status IN ('pending', 'running')") { $0.int(0) } ?? 0
        }

        /// Reads running tasks and slot leases per key once, keeping the highest counts seen.
        func sample() throws {
            for (key, count) in try store.connection.query("SELECT concurrency_key, count(*) FROM slot_leases GROUP BY concurrency_key", [], {
                ($0.text(0), $0.int(1))
            }) {
                maxLeases[key] = max(maxLeases[key] ?? 0, count)
            }
            for (key, count) in try store.connection.query("""
                SELECT concurrency_key, count(*) FROM tasks WHERE status = 'running' GROUP BY concurrency_key
                """, [], { ($0.text(0), $0.int(1)) }) {
                maxRunning[key] = max(maxRunning[key] ?? 0, count)
            }
        }

        /// `eventually`, sampling the running counts every ~20 ms meanwhile.
        func sampling(timeout: TimeInterval = 60, until condition: () throws -> Bool) throws -> Bool {
            try eventually(timeout: timeout, interval: 0.02) {
                try sample()
                return try condition()
            }
        }

        /// Waits until the task reaches `wanted` (or any terminal state when nil); records a failure with the logs if not.
        @discardableResult
        func waitFor(_ id: String, _ wanted: TaskStatus?, timeout: TimeInterval = 30,
                     sourceLocation: SourceLocation = #_sourceLocation) throws -> TaskRecord {
            let reached = try eventually(timeout: timeout) {
                let status = try self.status(id)
                return wanted.map { status == $0 } ?? status.isTerminal
            }
            let task = try self.task(id)
            #expect(reached, "task \(id) is \(task.status) (error: \(task.error ?? "-")), expected \(wanted.map(\.rawValue) ?? "terminal")\n\(logs)",
                    sourceLocation: sourceLocation)
            return task
        }

        /// Waits until the task runs under a started session (its agent pid recorded).
        @discardableResult
        func waitRunning(_ id: String, timeout: TimeInterval = 30, sourceLocation: SourceLocation = #_sourceLocation) throws -> TaskRecord {
            let reached = try eventually(timeout: timeout) {
                let task = try self.task(id)
                return task.status == .running && task.run.pid != nil
            }
            let task = try self.task(id)
            #expect(reached, "task \(id) is \(task.status), never ran with a session\n\(logs)", sourceLocation: sourceLocation)
            return task
        }
    }

    /// The non-empty lines of a file (none when it does not exist).
    static func lines(_ path: String) -> [String] {
        ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    /// Whether a process is gone: no such pid, or only a zombie left.
    static func processGone(_ pid: Int32) -> Bool {
        if kill(pid, 0) != 0 { return true }
        guard let info = ProcessSupport.stat(pid: pid) else { return true }
        return info.state == "Z" || info.state == "X"
    }

    static func isAdoption(_ event: TaskEvent) -> Bool {
        event.from == .running && event.to == .running && (event.reason ?? "").contains("adopted")
    }

    static func quoted(_ path: String) -> String { "'" + path.replacingOccurrences(of: "'", with: "'\\''") + "'" }

    // MARK: - Limits and order

    @Test func workersNeverExceedTheLimitPerKey() throws {
        let rig = try Rig()
        defer { rig.stop() }
        try rig.ok(["limits", "set", "--model", "local/a", "2"])
        try rig.ok(["limits", "set", "--model", "local/b", "1"])
        for n in 1...3 { try rig.startWorker("w\(n)") }
        let marker = Self.quoted(rig.path("marker"))
        var batch: [[String: Any]] = []
        for i in 0..<12 {
            for model in ["local/a", "local/b"] {
                let seconds = ["0.3", "0.4", "0.5"][i % 3]
                batch.append(["agent": "shell", "model": model, "prompt": "echo \"$BGQ_TASK_ID\" >> \(marker); sleep \(seconds); echo ok"])
            }
        }
        let ids = try rig.enqueueJSONL(batch)
        let finished = try rig.sampling(timeout: 90) { try rig.activeCount() == 0 }
        #expect(finished, "tasks still pending or running\n\(rig.logs)")

        #expect((rig.maxRunning["model:local/a"] ?? 0) <= 2, "running on local/a: \(rig.maxRunning)\n\(rig.logs)")
        #expect((rig.maxLeases["model:local/a"] ?? 0) <= 2, "leases on local/a: \(rig.maxLeases)\n\(rig.logs)")
        #expect((rig.maxRunning["model:local/b"] ?? 0) <= 1, "running on local/b: \(rig.maxRunning)\n\(rig.logs)")
        #expect((rig.maxLeases["model:local/b"] ?? 0) <= 1, "leases on local/b: \(rig.maxLeases)\n\(rig.logs)")
        // The limit is a limit, not a serialization: local/a did run two at once.
        #expect(rig.maxRunning["model:local/a"] == 2, "running on local/a: \(rig.maxRunning)\n\(rig.logs)")

        for id in ids {
            let task = try rig.task(id)
            #expect(task.status == .completed, "\(id): \(task.status) \(task.error ?? "")\n\(rig.logs)")
            #expect(task.attempt == 1, "\(id) ran \(task.attempt) times\n\(rig.logs)")
            #expect(task.result == "ok")
        }
        let ran = Self.lines(rig.path("marker"))
        #expect(ran.count == ids.count, "marker has \(ran.count) lines for \(ids.count) tasks\n\(rig.logs)")
        #expect(Set(ran) == Set(ids))
        #expect(try rig.leaseCount() == 0)
    }

    @Test func fifoWithinAKey() throws {
        let rig = try Rig()
        defer { rig.stop() }
        try rig.ok(["limits", "set", "--model", "shell", "1"])
        try rig.startWorker("w1")
        let first = try rig.enqueue("sleep 1.5; echo first")
        try rig.waitRunning(first)
        // While the only slot is busy: four more in order, then a higher-priority one last (one transaction).
        var batch: [[String: Any]] = (2...5).map { ["agent": "shell", "prompt": "sleep 0.2; echo task\($0)"] }
        batch.append(["agent": "shell", "prompt": "sleep 0.2; echo urgent", "priority": 10])
        let later = try rig.enqueueJSONL(batch)
        try #require(later.count == 5)
        let urgent = later[4]
        let fifo = [first] + later.prefix(4)
        let finished = try eventually(timeout: 60) { try rig.activeCount() == 0 }
        #expect(finished, rig.comment)

        let all = [first] + later
        for id in all { #expect(try rig.status(id) == .completed, rig.comment) }
        let started = try Dictionary(uniqueKeysWithValues: all.map { ($0, try rig.task($0).startedAt ?? Instant(milliseconds: .max)) })
        let byStart = all.sorted { started[$0]! < started[$1]! }
        #expect(byStart == [first, urgent] + fifo.dropFirst(), "started in order \(byStart); enqueued \(all)\n\(rig.logs)")
        // The FIFO part alone: started_at order equals enqueue order.
        #expect(byStart.filter { $0 != urgent } == fifo, rig.comment)
        // The claims, as the transitions recorded them, agree.
        let claims = try all.map { id in (id, try rig.events(id).first { $0.from == .pending && $0.to == .running }?.id ?? Int64.max) }
        #expect(claims.sorted { $0.1 < $1.1 }.map(\.0) == byStart, rig.comment)
    }

    @Test func fullKeyDoesNotBlockOtherKeys_noHeadOfLineBlocking() throws {
        let rig = try Rig()
        defer { rig.stop() }
        try rig.ok(["limits", "set", "--model", "local/a", "1"])
        try rig.ok(["limits", "set", "--model", "local/b", "1"])
        try rig.startWorker("w1")
        let hanging = try rig.enqueue("sleep 300", ["--model", "local/a"])
        try rig.waitRunning(hanging)
        let waiting = try rig.enqueue("echo a2", ["--model", "local/a"])
        // Enqueued after a task that must wait: a single FIFO across keys would block these.
        let others = try rig.enqueueJSONL((1...3).map { ["agent": "shell", "model": "local/b", "prompt": "echo b\($0)"] })
        for (n, id) in others.enumerated() {
            let task = try rig.waitFor(id, .completed)
            #expect(task.result == "b\(n + 1)")
        }
        #expect(try rig.status(hanging) == .running, rig.comment)
        #expect(try rig.status(waiting) == .pending, rig.comment)
    }

    // MARK: - Cancel

    @Test func cancelOfPendingTaskIsImmediate() throws {
        let rig = try Rig()
        defer { rig.stop() }
        try rig.ok(["limits", "set", "--model", "shell", "1"])
        try rig.startWorker("w1")
        let marker = Self.quoted(rig.path("marker"))
        let blocker = try rig.enqueue("sleep 300")
        try rig.waitRunning(blocker)
        let head = try rig.enqueue("echo head >> \(marker)")
        let next = try rig.enqueue("echo next >> \(marker); echo next")

        let out = try rig.ok(["cancel", head])
        #expect(out.contains("| cancelled |"), "cancel printed: \(out)")
        // No worker involved: cancelled by the time the command returns.
        let cancelled = try rig.task(head)
        #expect(cancelled.status == .cancelled)
        #expect(cancelled.finishedAt != nil)
        #expect(cancelled.startedAt == nil && cancelled.attempt == 0)
        #expect(try rig.leaseCount(taskID: head) == 0)
        #expect(try rig.status(blocker) == .running, rig.comment)
        #expect(try rig.status(next) == .pending, rig.comment)

        // Cancelling the head of the key's queue must not drop the task behind it (an upstream hazard).
        try rig.ok(["cancel", blocker])
        let ran = try rig.waitFor(next, .completed)
        #expect(ran.result == "next")
        #expect(try rig.status(head) == .cancelled)
        #expect(Self.lines(rig.path("marker")) == ["next"], rig.comment)
        #expect(try rig.events(head).allSatisfy { $0.to != .running }, rig.comment)
    }

    @Test func cancelOfRunningTaskAbortsTheSessionAndReleasesTheSlot() throws {
        let rig = try Rig()
        defer { rig.stop() }
        try rig.ok(["limits", "set", "--model", "shell", "1"])
        try rig.startWorker("w1")
        let running = try rig.enqueue("sleep 300")
        let pid = try #require(try rig.waitRunning(running).run.pid)
        #expect(try rig.leaseCount(taskID: running) == 1)
        let next = try rig.enqueue("echo next")
        #expect(try rig.status(next) == .pending)

        let out = try rig.ok(["cancel", running])
        #expect(out.contains(running))
        let cancelled = try rig.waitFor(running, .cancelled)
        #expect(cancelled.error == "cancelled by user", rig.comment)
        #expect(try rig.leaseCount(taskID: running) == 0, rig.comment)
        #expect(eventually(timeout: 20) { Self.processGone(pid) }, "agent process \(pid) still runs after cancel\n\(rig.logs)")
        // The slot went back: the next task of the key (limit 1) runs.
        let ran = try rig.waitFor(next, .completed)
        #expect(ran.result == "next")
        #expect(try rig.status(running) == .cancelled)
        #expect(try rig.leaseCount() == 0)
    }

    // MARK: - Crashed, paused and stopped workers

    @Test func sigkillOfAWorkerMidSessionAdoptsTheSessionWithoutRerunning() throws {
        let rig = try Rig(["lease_timeout_ms": 2000])
        defer { rig.stop() }
        let a = try rig.startWorker("A")
        let marker = rig.path("marker")
        let id = try rig.enqueue("echo \"$BGQ_TASK_ID\" >> \(Self.quoted(marker)); sleep 4; echo adopted-result")
        let running = try rig.waitRunning(id)
        #expect(running.workerID == a.id)
        #expect(eventually { Self.lines(marker).count == 1 }, rig.comment)
        let b = try rig.startWorker("B")
        rig.sigkill(a)

        let task = try rig.waitFor(id, .completed, timeout: 40)
        #expect(task.result == "adopted-result", rig.comment)
        #expect(task.attempt == 1, rig.comment)
        #expect(task.workerID == b.id, rig.comment)
        #expect(Self.lines(marker) == [id], "the session ran again\n\(rig.logs)")
        #expect(try rig.leaseCount() == 0, rig.comment)
        let adoptions = try rig.events(id).filter(Self.isAdoption)
        #expect(adoptions.count == 1, "\(adoptions)\n\(rig.logs)")
        #expect(adoptions.first?.workerID == b.id)
        #expect(try rig.workerRow(id: a.id)?.state == .dead, rig.comment)
    }

    @Test func sigkillWithTheSessionGoneFailsWithWorkerLostOrRetries() throws {
        let rig = try Rig(["lease_timeout_ms": 2000])
        defer { rig.stop() }
        let a = try rig.startWorker("A")
        let markerX = rig.path("marker-x"), markerY = rig.path("marker-y")
        let x = try rig.enqueue("echo \"$BGQ_ATTEMPT\" >> \(Self.quoted(markerX)); sleep 30; echo x")
        let y = try rig.enqueue("echo \"$BGQ_ATTEMPT\" >> \(Self.quoted(markerY)); if [ \"$BGQ_ATTEMPT\" = 1 ]; then sleep 30; fi; echo retried-ok",
                                ["--retries", "1"])
        let pidX = try #require(try rig.waitRunning(x).run.pid)
        let pidY = try #require(try rig.waitRunning(y).run.pid)
        #expect(eventually { Self.lines(markerX).count == 1 && Self.lines(markerY).count == 1 }, rig.comment)

        // The worker dies, and so do its sessions, while nobody watches.
        rig.sigkill(a)
        kill(-pidX, SIGKILL)
        kill(-pidY, SIGKILL)
        #expect(eventually { Self.processGone(pidX) && Self.processGone(pidY) })
        let b = try rig.startWorker("B")

        let lost = try rig.waitFor(x, nil, timeout: 40)
        #expect(lost.status == .error, rig.comment)
        #expect((lost.error ?? "").contains("worker lost"), "error: \(lost.error ?? "nil")\n\(rig.logs)")
        #expect(lost.attempt == 1)
        #expect(Self.lines(markerX) == ["1"])

        let retried = try rig.waitFor(y, .completed, timeout: 40)
        #expect(retried.attempt == 2, rig.comment)
        #expect(retried.result == "retried-ok", rig.comment)
        #expect(retried.workerID == b.id)
        #expect(Self.lines(markerY) == ["1", "2"], rig.comment)
        #expect(try rig.events(y).contains { $0.from == .running && $0.to == .pending }, rig.comment)
        #expect(try rig.leaseCount() == 0, rig.comment)
    }

    /// Solid Queue PR #761: a worker paused past its lease must not finalize (or release) what another adopted.
    @Test func pausedWorkerPastItsLeaseFinalizesNothing() throws {
        let rig = try Rig(["lease_timeout_ms": 2000, "heartbeat_interval_ms": 300])
        defer { rig.stop() }
        try rig.ok(["limits", "set", "--model", "shell", "1"])
        let a = try rig.startWorker("A")
        let marker = rig.path("marker")
        let id = try rig.enqueue("echo \"$BGQ_TASK_ID\" >> \(Self.quoted(marker)); sleep 6; echo once")
        #expect(try rig.waitRunning(id).workerID == a.id)
        let oldA = a.id
        let b = try rig.startWorker("B")

        rig.signal(a, SIGSTOP)
        let adopted = try rig.sampling(timeout: 40) { try rig.events(id).contains(where: Self.isAdoption) }
        #expect(adopted, "B never adopted the paused worker's session\n\(rig.logs)")
        rig.signal(a, SIGCONT)

        let completed = try rig.sampling(timeout: 40) { try rig.status(id).isTerminal }
        #expect(completed, rig.comment)
        let task = try rig.task(id)
        #expect(task.status == .completed, rig.comment)
        #expect(task.result == "once", rig.comment)
        #expect(task.workerID == b.id, rig.comment)
        #expect(task.attempt == 1)
        #expect(Self.lines(marker) == [id], "ran more than once\n\(rig.logs)")
        #expect((rig.maxRunning["model:shell"] ?? 0) <= 1, "\(rig.maxRunning)\n\(rig.logs)")
        #expect((rig.maxLeases["model:shell"] ?? 0) <= 1, "\(rig.maxLeases)\n\(rig.logs)")
        #expect(try rig.leaseCount() == 0, rig.comment)

        // A noticed, on waking, that it had been declared dead.
        #expect(eventually(timeout: 20) { a.log.contains("declared dead") }, "A's log never says it was declared dead\n\(rig.logs)")
        let deadRow = try #require(try rig.workerRow(id: oldA))
        #expect(deadRow.state == .dead, rig.comment)
        let diedAt = try #require(deadRow.stoppedAt)
        let afterDeath = try rig.store.connection.query("""
            SELECT task_id, from_status, to_status, at FROM task_events WHERE worker_id = ? AND at > ?
            """, [.text(oldA), .text(diedAt.iso8601)]) { "\($0.text(0)) \($0.optionalText(1) ?? "-")→\($0.text(2)) at \($0.text(3))" }
        #expect(afterDeath.isEmpty, "events by A's old id after its death: \(afterDeath)\n\(rig.logs)")
        let events = try rig.events(id)
        let adoptionIndex = try #require(events.firstIndex(where: Self.isAdoption))
        #expect(events[adoptionIndex...].allSatisfy { $0.workerID == b.id }, "\(events)\n\(rig.logs)")

        // And A goes on working under a new id: with B gone, it runs the next task.
        rig.signal(b, SIGTERM)
        #expect(eventually(timeout: 20) { rig.exited(b) }, rig.comment)
        let later = try rig.enqueue("echo still-working")
        let ran = try rig.waitFor(later, .completed)
        #expect(ran.result == "still-working")
        #expect(!rig.exited(a), rig.comment)
        let newA = try #require(try rig.newestWorkerRow(pid: a.pid))
        #expect(newA.id != oldA && newA.state == .running, rig.comment)
        #expect(ran.workerID == newA.id, rig.comment)
    }

    @Test func sigtermHandsSessionsOverAndTheNextWorkerAdoptsWithoutRerunning() throws {
        let rig = try Rig()
        defer { rig.stop() }
        let a = try rig.startWorker("A")
        let marker = rig.path("marker")
        let id = try rig.enqueue("echo \"$BGQ_TASK_ID\" >> \(Self.quoted(marker)); sleep 3; echo handed-over")
        let running = try rig.waitRunning(id)
        let pid = try #require(running.run.pid)
        #expect(eventually { Self.lines(marker).count == 1 }, rig.comment)

        rig.signal(a, SIGTERM)
        #expect(eventually(timeout: 20) { rig.exited(a) }, "A did not exit on SIGTERM\n\(rig.logs)")
        #expect(try rig.workerRow(id: a.id)?.state == .stopped, rig.comment)
        #expect(ProcessSupport.isRunning(pid: pid, start: running.run.pidStart), "the handed-over session was stopped\n\(rig.logs)")
        #expect(try rig.status(id) == .running)

        let b = try rig.startWorker("B")
        let task = try rig.waitFor(id, .completed)
        #expect(task.result == "handed-over", rig.comment)
        #expect(task.attempt == 1)
        #expect(task.workerID == b.id)
        #expect(Self.lines(marker) == [id], "the session ran again\n\(rig.logs)")
        #expect(try rig.events(id).contains { Self.isAdoption($0) && $0.workerID == b.id }, rig.comment)
        #expect(try rig.leaseCount() == 0)
    }

    /// A worker started by a parent that blocks SIGTERM (a supervisor, or a thread of a Swift program: this very
    /// test process) inherits the blocked mask; installing handlers does not unblock the signals.
    @Test func sigtermStopsAWorkerStartedWithStopSignalsBlocked() throws {
        let rig = try Rig()
        defer { rig.stop() }
        let a = try rig.startWorker("A", stopSignalsBlocked: true)
        rig.signal(a, SIGTERM)
        #expect(eventually(timeout: 20) { rig.exited(a) }, "the worker ignored SIGTERM\n\(rig.logs)")
        #expect(try rig.workerRow(id: a.id)?.state == .stopped, rig.comment)
    }

    /// An agent gets its stdin, stdout and stderr and nothing else of the worker's: a parent that waits for the
    /// worker through a pipe (as Foundation's `Process` does) must see it exit although its handed-over sessions go on.
    @Test
    func agentsInheritNoDescriptorOfTheWorker() throws {
        let rig = try Rig()
        defer { rig.stop() }
        let a = try rig.startWorker("A")
        let id = try rig.enqueue("sleep 30")
        let running = try rig.waitRunning(id)
        let pid = try #require(running.run.pid)
        let descriptors = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd").compactMap { Int($0) }.sorted()
        #expect(descriptors == [0, 1, 2], "the agent holds descriptors \(descriptors)")

        rig.signal(a, SIGTERM)
        #expect(eventually(timeout: 20) { rig.exited(a) }, rig.comment)
        #expect(ProcessSupport.isRunning(pid: pid, start: running.run.pidStart), "the handed-over session was stopped\n\(rig.logs)")
        #expect(eventually(timeout: 10) { !a.process.isRunning }, "the worker's parent never learned that it exited")
    }

    @Test func drainWaitsForSessionsToFinish() throws {
        let rig = try Rig()
        defer { rig.stop() }
        let a = try rig.startWorker("A", ["--drain"])
        let id = try rig.enqueue("sleep 2; echo drained")
        try rig.waitRunning(id)

        rig.signal(a, SIGTERM)
        #expect(try eventually(timeout: 20) { try rig.workerRow(id: a.id)?.state == .stopping }, rig.comment)
        // Still there, the session still running, and no new claims.
        #expect(!rig.exited(a), rig.comment)
        #expect(try rig.status(id) == .running, rig.comment)
        let later = try rig.enqueue("echo not-for-a-draining-worker")

        #expect(eventually(timeout: 30) { rig.exited(a) }, "the draining worker never exited\n\(rig.logs)")
        let task = try rig.task(id)
        #expect(task.status == .completed, rig.comment)
        #expect(task.result == "drained")
        let row = try #require(try rig.workerRow(id: a.id))
        #expect(row.state == .stopped, rig.comment)
        let finishedAt = try #require(task.finishedAt), stoppedAt = try #require(row.stoppedAt)
        #expect(finishedAt <= stoppedAt, "finished \(finishedAt.iso8601), worker stopped \(stoppedAt.iso8601)\n\(rig.logs)")
        #expect(try rig.status(later) == .pending, rig.comment)
    }

    // MARK: - Completion

    @Test func fastTasksComplete_issue1517() throws {
        let rig = try Rig()
        defer { rig.stop() }
        try rig.startWorker("w1")
        let ids = try rig.enqueueJSONL((0..<20).map { _ in ["agent": "shell", "prompt": "echo ok"] })
        #expect(try eventually(timeout: 60) { try rig.activeCount() == 0 }, "fast tasks stuck\n\(rig.logs)")
        for id in ids {
            let task = try rig.task(id)
            #expect(task.status == .completed, "\(id): \(task.status)\n\(rig.logs)")
            #expect(task.result == "ok")
        }
    }

    @Test func vanishedSessionIsNotStuckForever_issue1769_issue2387() throws {
        let rig = try Rig()
        defer { rig.stop() }
        try rig.startWorker("w1")
        // The agent's wrapper dies without writing its exit file.
        let id = try rig.enqueue("kill -9 $PPID")
        let task = try rig.waitFor(id, nil)
        #expect(task.status == .error, rig.comment)
        #expect(!(task.error ?? "").isEmpty)
        #expect(try rig.leaseCount() == 0)
    }

    @Test func staleSessionIsCancelledAndAborted() throws {
        let rig = try Rig(["stale_timeout_ms": 1000, "min_runtime_before_stale_ms": 0])
        defer { rig.stop() }
        try rig.ok(["agents", "add", "explore", "--preset", "claude", "--executable", repositoryRoot + "/Scripts/stand-in-agent"])
        try rig.startWorker("w1", environment: ["BGQ_STANDIN_SECONDS": "2"])
        let id = try rig.enqueue("Look around [hang]", agent: "explore")
        let pid = try #require(try rig.waitRunning(id).run.pid)
        let task = try rig.waitFor(id, nil)
        #expect(task.status == .cancelled, rig.comment)
        #expect((task.error ?? "").hasPrefix("Stale timeout (no activity for"), "error: \(task.error ?? "nil")\n\(rig.logs)")
        #expect(eventually(timeout: 20) { Self.processGone(pid) }, "the stale session still runs\n\(rig.logs)")
        #expect(try rig.leaseCount() == 0)
    }

    // MARK: - What a person sees

    @Test func workersListsWorkersWithHeartbeatAndSessions() throws {
        let rig = try Rig()
        defer { rig.stop() }
        let a = try rig.startWorker("lister")
        let id = try rig.enqueue("sleep 30")
        try rig.waitRunning(id)

        let out = try rig.ok(["workers"])
        let line = try #require(out.split(separator: "\n").first { $0.contains(a.id) }, "\(out)")
        #expect(line.contains("lister"))
        #expect(line.contains("running"))
        #expect(line.contains("1/16"), "\(out)")
        #expect(line.range(of: #"\b\d+s ago\b"#, options: .regularExpression) != nil, "no heartbeat age in: \(out)")
        #expect(out.contains("HEARTBEAT") && out.contains("SESSIONS"))

        let json = try #require(try JSONSerialization.jsonObject(with: Data(try rig.ok(["workers", "--json"]).utf8)) as? [[String: Any]])
        let entry = try #require(json.first { $0["id"] as? String == a.id }, "\(json)")
        #expect(entry["state"] as? String == "running")
        #expect(entry["name"] as? String == "lister")
        #expect(entry["heartbeat_age_ms"] is Int, "\(entry)")
        #expect(entry["sessions"] as? Int == 1, "\(entry)")
        #expect(entry["max_sessions"] as? Int == 16)
    }

    /// The heartbeat's age is `now` minus the last heartbeat, in the table and in JSON (a fixed `now`: the
    /// listing above runs on the real clock, where any age passes).
    @Test func workersShowsTheHeartbeatAgeAtNow() throws {
        let now = Instant(milliseconds: 1_800_000_000_000)
        let worker = WorkerRecord(id: "wk_1", name: "seven", host: "h", pid: 42, startedAt: now + (-60_000), heartbeatAt: now + (-7_000),
                                  maxSessions: 4, state: .running, runningTasks: 2)
        let table = BGQCommand.Workers.render([worker], now: now, json: false, includeGone: false)
        let line = try #require(table.split(separator: "\n").first { $0.contains("wk_1") }, "\(table)")
        #expect(line.contains("7s ago") && line.contains("2/4"), "\(table)")
        let json = try #require(try JSONValue.parse(BGQCommand.Workers.render([worker], now: now, json: true, includeGone: false)).array)
        #expect(json.count == 1)
        #expect(json.first?["heartbeat_age_ms"]?.number == 7000, "\(json)")
        #expect(json.first?["sessions"]?.number == 2 && json.first?["max_sessions"]?.number == 4)
    }

    @Test func workerLogsOneLinePerTransitionAndJSONWhenAsked() throws {
        let rig = try Rig()
        defer { rig.stop() }
        // Text: one line per transition.
        let first = try rig.enqueue("echo one")
        let text = try rig.startWorker("text", ["--exit-when-idle"])
        #expect(eventually(timeout: 30) { rig.exited(text) }, rig.comment)
        #expect(try rig.status(first) == .completed, rig.comment)
        let textLines = text.log.split(separator: "\n").filter { $0.contains(first) }
        #expect(textLines.count == 2, "\(textLines)\n\(rig.logs)")
        #expect(textLines.first?.contains("pending → running") == true, rig.comment)
        #expect(textLines.last?.contains("running → completed") == true, rig.comment)

        // JSON: every line an object with event, time and (for a task) task.
        let second = try rig.enqueue("echo two")
        let json = try rig.startWorker("json", ["--exit-when-idle", "--log-format", "json"])
        #expect(eventually(timeout: 30) { rig.exited(json) }, rig.comment)
        #expect(try rig.status(second) == .completed, rig.comment)
        let objects = json.log.split(separator: "\n").map { line in
            (line, (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any])
        }
        #expect(!objects.isEmpty, rig.comment)
        for (line, object) in objects {
            #expect(object != nil, "not a JSON object: \(line)")
            guard let object else { continue }
            #expect(object["event"] is String, "\(line)")
            #expect((object["time"] as? String).flatMap(Instant.init(iso8601:)) != nil, "\(line)")
        }
        let taskEvents = objects.compactMap(\.1).filter { $0["task"] as? String == second }.compactMap { $0["event"] as? String }
        #expect(taskEvents == ["running", "completed"], "\(taskEvents)\n\(rig.logs)")
        #expect(objects.compactMap(\.1).contains { $0["event"] as? String == "started" })
        #expect(objects.compactMap(\.1).contains { $0["event"] as? String == "stopped" })
    }

    @Test func continuingASessionResumesIt() throws {
        let rig = try Rig()
        defer { rig.stop() }
        try rig.ok(["agents", "add", "explore", "--preset", "claude", "--executable", repositoryRoot + "/Scripts/stand-in-agent"])
        let marker = rig.path("marker")
        try rig.startWorker("w1", environment: ["BGQ_STANDIN_SECONDS": "0.3", "BGQ_STANDIN_MARKER": marker])
        let first = try rig.enqueue("Explore: the queue", agent: "explore")
        let done = try rig.waitFor(first, .completed)
        let sessionID = try #require(done.sessionID, rig.comment)
        let external = try #require(try rig.store.session(id: sessionID)?.externalID, "the agent's session id was never recorded\n\(rig.logs)")

        let second = try rig.enqueue("Continue: x", agent: nil, ["--session", sessionID])
        let continued = try rig.waitFor(second, .completed)
        #expect(continued.sessionID == sessionID)
        #expect((continued.result ?? "").contains("Continued session"), "result: \(continued.result ?? "nil")\n\(rig.logs)")
        #expect((continued.result ?? "").contains(external), "result: \(continued.result ?? "nil")")
        // The stand-in ran twice, the second time inside the first run's session.
        let runs = Self.lines(marker)
        #expect(runs.count == 2, "\(runs)")
        #expect(runs.allSatisfy { $0.split(separator: " ").dropFirst().first.map(String.init) == external }, "\(runs)")

        let refused = try rig.bgq(["enqueue", "--agent", "shell", "--session", sessionID, "echo x"])
        #expect(refused.status == 2, "exit \(refused.status): \(refused.stderr)")
        #expect(refused.stderr.contains("cannot continue"), "\(refused.stderr)")
    }
}
