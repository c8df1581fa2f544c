import Foundation
import Testing
@testable import BGQBackends
@testable import BGQCLI
@testable import BGQCore
@testable import BGQSQLite
@testable import BGQScheduler
@testable import BGQSystem

/// An error as a person should see it: a short message, no crash report or stack trace.
func expectCleanErrorOutput(_ result: CommandResult, sourceLocation: SourceLocation = #_sourceLocation) {
    let lines = result.stderr.split(separator: "\n", omittingEmptySubsequences: true)
    #expect(!lines.isEmpty, "no error message on stderr", sourceLocation: sourceLocation)
    #expect(lines.count <= 2, "error output is \(lines.count) lines: \(result.stderr)", sourceLocation: sourceLocation)
    #expect(!result.stderr.contains("Fatal error"), sourceLocation: sourceLocation)
    #expect(!result.stderr.contains("Stack dump"), sourceLocation: sourceLocation)
    #expect(!result.stderr.contains("SQLite error"), sourceLocation: sourceLocation)
}

/// What a person does wrong, and what a hostile environment does to the database file.
@Suite struct BadInputTests {
    // MARK: - Helpers

    private static func enqueue(_ db: TempDatabase, _ prompt: String) throws -> String {
        let result = try BGQBinary.run(["enqueue", "--agent", "noop", "--json", prompt], db: db)
        #expect(result.status == 0, "stderr: \(result.stderr)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        return try #require(object["id"] as? String)
    }

    /// Runs `bgq ARGS --db PATH` (no BGQ_DB) and checks the file it names is refused with exit 5, untouched.
    private static func expectRefused(_ path: String, message: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let before = try Data(contentsOf: URL(fileURLWithPath: path))
        for arguments in [["list"], ["show", "bg_1234"], ["enqueue", "--agent", "noop", "hello"], ["limits", "set", "--default", "3"]] {
            let result = try BGQBinary.run(arguments + ["--db", path], db: nil)
            #expect(result.status == 5, "bgq \(arguments.joined(separator: " ")) exited \(result.status): \(result.stderr)",
                    sourceLocation: sourceLocation)
            #expect(result.stderr.contains(path), "the message does not name the file: \(result.stderr)", sourceLocation: sourceLocation)
            #expect(result.stderr.contains(message), "expected '\(message)' in: \(result.stderr)", sourceLocation: sourceLocation)
            #expect(result.stdout.isEmpty, sourceLocation: sourceLocation)
            expectCleanErrorOutput(result, sourceLocation: sourceLocation)
            let after = try Data(contentsOf: URL(fileURLWithPath: path))
            #expect(after == before, "bgq \(arguments.joined(separator: " ")) changed \(path)", sourceLocation: sourceLocation)
        }
    }

    /// A valid bgq database with a few tasks, closed (no -wal or -shm left).
    private static func makeBGQDatabase(_ db: TempDatabase, at path: String) throws {
        for i in 0..<3 {
            let result = try BGQBinary.run(["enqueue", "--agent", "noop", "--db", path, "task \(i)"], db: nil)
            #expect(result.status == 0, "stderr: \(result.stderr)")
        }
    }

    private static func sqlite3(_ path: String, _ sql: String) throws {
        let result = try ForeignCommand.run("/usr/bin/sqlite3", [path, sql])
        #expect(result.status == 0, "sqlite3: \(result.stderr)")
    }

    // MARK: - Ids

    @Test func unknownIDIsNotFound() throws {
        let db = TempDatabase()
        _ = try Self.enqueue(db, "something")
        let shown = try BGQBinary.run(["show", "bg_ffffffff"], db: db)
        #expect(shown.status == 3)
        #expect(shown.stderr.contains("Task not found"))
        expectCleanErrorOutput(shown)

        let cancelled = try BGQBinary.run(["cancel", "bg_ffffffff"], db: db)
        #expect(cancelled.status == 3)
        #expect(cancelled.stderr.contains("[ERROR] Task not found: bg_ffffffff"))
        expectCleanErrorOutput(cancelled)

        // Text that cannot be an id at all.
        let garbage = try BGQBinary.run(["show", "'; DROP TABLE tasks; --"], db: db)
        #expect(garbage.status == 3)
        #expect(garbage.stderr.contains("Task not found"))
        expectCleanErrorOutput(garbage)
        #expect(try db.store().listTasks(TaskFilter()).count == 1)
    }

    @Test func ambiguousPrefixListsTheMatches() throws {
        let db = TempDatabase()
        let store = try db.store()
        var byDigit: [Character: [String]] = [:]
        var shared: Character?
        for i in 0..<17 where shared == nil {
            let id = try store.enqueue([NewTask(description: "t\(i)", prompt: "p\(i)", agent: "noop")])[0].id
            let digit = id[id.index(id.startIndex, offsetBy: 3)]
            byDigit[digit, default: []].append(id)
            if byDigit[digit]!.count == 2 { shared = digit }
        }
        let digit = try #require(shared)
        let matching = byDigit[digit]!
        for command in [["show"], ["cancel"], ["show", "--json"]] {
            let result = try BGQBinary.run(command + ["bg_\(digit)"], db: db)
            #expect(result.status == 2, "bgq \(command.joined(separator: " ")) exited \(result.status)")
            #expect(result.stderr.contains("ambiguous"))
            for id in matching { #expect(result.stderr.contains(id), "the message does not list \(id): \(result.stderr)") }
            expectCleanErrorOutput(result)
        }
        // Nothing was cancelled.
        #expect(try store.listTasks(TaskFilter()).allSatisfy { $0.status == .pending })
    }

    @Test func cancelOfACompletedTaskIsRefused() throws {
        let db = TempDatabase()
        let id = try Self.enqueue(db, "finish me")
        let store = try db.store()
        let worker = try store.registerWorker(WorkerRegistration(name: "w", host: "h", pid: 1, maxSessions: 1))
        let running = try #require(try store.claimTasks(workerID: worker, capacity: 1).first)
        #expect(running.id == id)
        #expect(try store.finish(running, workerID: worker, outcome: .completed(result: "done")) == .owned)

        let result = try BGQBinary.run(["cancel", id], db: db)
        #expect(result.status == 1)
        #expect(result.stderr.contains("[ERROR] Cannot cancel task"))
        #expect(result.stderr.contains("current status is \"completed\""))
        expectCleanErrorOutput(result)
        #expect(try store.task(id: id)?.status == .completed)
        #expect(try store.task(id: id)?.result == "done")
    }

    // MARK: - Enqueue input

    @Test func unknownAgentListsTheKnownAgents() throws {
        let db = TempDatabase()
        let result = try BGQBinary.run(["enqueue", "--agent", "no-such-agent", "hello"], db: db)
        #expect(result.status == 2)
        #expect(result.stderr.contains("no-such-agent"))
        for name in ["shell", "claude", "opencode", "codex", "gemini", "noop"] {
            #expect(result.stderr.contains(name), "known agent \(name) not listed: \(result.stderr)")
        }
        expectCleanErrorOutput(result)
        #expect(try db.store().listTasks(TaskFilter()).isEmpty)
    }

    @Test func badModelSyntaxIsAUsageError() throws {
        let db = TempDatabase()
        for model in ["noslash", "/model", "provider/", "has space/model"] {
            let result = try BGQBinary.run(["enqueue", "--agent", "noop", "--model", model, "hello"], db: db)
            #expect(result.status == 2, "--model '\(model)' exited \(result.status)")
            #expect(result.stderr.contains("provider/model"))
            expectCleanErrorOutput(result)
        }
        #expect(try db.store().listTasks(TaskFilter()).isEmpty)
    }

    @Test func malformedJSONCForLimitsImportIsOneLine() throws {
        let db = TempDatabase()
        let file = db.directory + "/broken.jsonc"
        try """
            {
              // unfinished
              "background_task": { "providerConcurrency": { "anthropic": 3
            """.write(toFile: file, atomically: true, encoding: .utf8)
        let result = try BGQBinary.run(["limits", "import", file], db: db)
        #expect(result.status == 2)
        #expect(result.stderr.contains(file))
        #expect(result.stderr.split(separator: "\n").count == 1, "not one line: \(result.stderr)")
        expectCleanErrorOutput(result)
        #expect(try db.store().limits() == Limits())
    }

    // MARK: - Files that are not (usable) bgq databases

    @Test func textFileAsDatabaseIsRefusedAndUntouched() throws {
        let db = TempDatabase()
        let path = db.directory + "/notes.txt"
        try String(repeating: "These are my notes, not a database.\n", count: 200).write(toFile: path, atomically: true, encoding: .utf8)
        try Self.expectRefused(path, message: "not a SQLite database")
    }

    @Test func otherSQLiteDatabaseIsRefusedAndUntouched() throws {
        let db = TempDatabase()
        let path = db.directory + "/other-app.db"
        try Self.sqlite3(path, "CREATE TABLE contacts (name TEXT, phone TEXT); INSERT INTO contacts VALUES ('Ada', '123');")
        try Self.expectRefused(path, message: "not a bgq database")
        #expect(!FileManager.default.fileExists(atPath: path + "-wal"))
    }

    @Test func databaseFromANewerBGQIsRefusedAndUntouched() throws {
        let db = TempDatabase()
        try Self.makeBGQDatabase(db, at: db.path)
        try Self.sqlite3(db.path, "PRAGMA user_version = \(Database.latestVersion + 98)")
        try Self.expectRefused(db.path, message: "newer bgq")
    }

    @Test func corruptDatabaseIsRefusedAndUntouched() throws {
        let db = TempDatabase()
        try Self.makeBGQDatabase(db, at: db.path)
        var bytes = try Data(contentsOf: URL(fileURLWithPath: db.path))
        #expect(bytes.count > 4000)
        var state: UInt32 = 12345
        for index in 100..<4000 {
            state = state &* 1_103_515_245 &+ 12345
            bytes[index] = UInt8(truncatingIfNeeded: state >> 16)
        }
        try bytes.write(to: URL(fileURLWithPath: db.path))
        try Self.expectRefused(db.path, message: "corrupt")
    }

    @Test func truncatedDatabaseIsRefusedAndUntouched() throws {
        let db = TempDatabase()
        try Self.makeBGQDatabase(db, at: db.path)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: db.path))
        try handle.truncate(atOffset: 1000)
        try handle.close()
        try Self.expectRefused(db.path, message: "corrupt")
    }

    // MARK: - Read-only database (as user nobody: root ignores permission bits)

    private static let setpriv = "/usr/bin/setpriv"

    /// A copy of a bgq database in a directory owned by nobody: the directory 0500, the file 0400.
    private static func readOnlyCopy(of db: TempDatabase) throws -> (container: String, path: String) {
        try makeBGQDatabase(db, at: db.path)
        var template = Array((FileManager.default.temporaryDirectory.path + "/bgq-ro.XXXXXX").utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        let container = try #require(made.map { String(cString: $0) })
        chmod(container, 0o755)
        let directory = container + "/db"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false)
        let path = directory + "/bgq.db"
        try FileManager.default.copyItem(atPath: db.path, toPath: path)
        #expect(chown(path, 65534, 65534) == 0)
        #expect(chown(directory, 65534, 65534) == 0)
        #expect(chmod(path, 0o400) == 0)
        #expect(chmod(directory, 0o500) == 0)
        return (container, path)
    }

    private static func runAsNobody(_ arguments: [String]) throws -> CommandResult {
        try ForeignCommand.run(setpriv, ["--reuid=65534", "--regid=65534", "--clear-groups", BGQBinary.path] + arguments,
                               environment: ["BGQ_DB": "", "HOME": "/nonexistent"])
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv") && getuid() == 0,
                   "needs /usr/bin/setpriv and root to run bgq as user nobody"))
    func readOnlyDatabaseRefusesWritesWithReadOnly() throws {
        let db = TempDatabase()
        let (container, path) = try Self.readOnlyCopy(of: db)
        defer { try? FileManager.default.removeItem(atPath: container) }
        let before = try Data(contentsOf: URL(fileURLWithPath: path))
        let result = try Self.runAsNobody(["enqueue", "--db", path, "--agent", "noop", "hello"])
        #expect(result.status == 5, "stderr: \(result.stderr)")
        #expect(result.stderr.contains("read-only"))
        #expect(result.stderr.contains(path))
        expectCleanErrorOutput(result)
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == before)
    }

    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv") && getuid() == 0,
                   "needs /usr/bin/setpriv and root to run bgq as user nobody"))
    func readOnlyDatabaseCanStillBeRead() throws {
        let db = TempDatabase()
        let (container, path) = try Self.readOnlyCopy(of: db)
        defer { try? FileManager.default.removeItem(atPath: container) }
        let before = try Data(contentsOf: URL(fileURLWithPath: path))
        let listed = try Self.runAsNobody(["list", "--db", path])
        #expect(listed.status == 0, "stderr: \(listed.stderr)")
        #expect(listed.stdout.contains("task 0") && listed.stdout.contains("task 2"))
        let ids = try #require(try JSONSerialization.jsonObject(with: Data(Self.runAsNobody(["list", "--json", "--db", path]).stdout.utf8)) as? [[String: Any]])
        #expect(ids.count == 3)
        #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == before)
    }
}

/// Tests that hold locks or start many processes: one at a time.
@Suite(.serialized) struct BadInputProcessTests {
    /// A sqlite3 shell holding `BEGIN IMMEDIATE` on a database until released.
    final class LockHolder {
        let process = Process()
        let input = Pipe()
        let output = Pipe()

        init(path: String) throws {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/sqlite3")
            process.arguments = [path]
            process.standardInput = input
            process.standardOutput = output
            process.standardError = FileHandle.nullDevice
            try process.run()
            input.fileHandleForWriting.write(Data("BEGIN IMMEDIATE;\nSELECT 'lock-held';\n".utf8))
            // Wait until the shell says it holds the lock.
            var seen = ""
            while !seen.contains("lock-held") {
                let chunk = output.fileHandleForReading.availableData
                if chunk.isEmpty { break }
                seen += String(decoding: chunk, as: UTF8.self)
            }
            #expect(seen.contains("lock-held"), "sqlite3 did not take the lock")
        }

        func release() {
            guard process.isRunning else { return }
            input.fileHandleForWriting.write(Data("ROLLBACK;\n.quit\n".utf8))
            try? input.fileHandleForWriting.close()
            process.waitUntilExit()
        }

        deinit {
            if process.isRunning { process.terminate(); process.waitUntilExit() }
        }
    }

    @Test func lockedDatabaseFailsWithLockedThenWorksOnceReleased() throws {
        let db = TempDatabase()
        let first = try BGQBinary.run(["enqueue", "--agent", "noop", "before the lock"], db: db)
        #expect(first.status == 0)
        let holder = try LockHolder(path: db.path)
        defer { holder.release() }
        let environment = ["BGQ_BUSY_TIMEOUT_MS": "200"]
        let blocked = try BGQBinary.run(["enqueue", "--agent", "noop", "while locked"], db: db, environment: environment)
        #expect(blocked.status == 5, "stderr: \(blocked.stderr)")
        #expect(blocked.stderr.contains("locked"))
        #expect(blocked.stderr.contains(db.path))
        expectCleanErrorOutput(blocked)

        holder.release()
        let after = try BGQBinary.run(["enqueue", "--agent", "noop", "while locked"], db: db, environment: environment)
        #expect(after.status == 0, "stderr: \(after.stderr)")
        let descriptions = try db.store().listTasks(TaskFilter()).map(\.description)
        #expect(descriptions == ["while locked", "before the lock"])
    }

    @Test func eightProcessesEnqueueingAThousandEachLoseNothing() throws {
        let db = TempDatabase()
        let processes = 8, perProcess = 1000
        var runs: [(process: Process, out: Pipe, err: Pipe)] = []
        let group = DispatchGroup()
        nonisolated(unsafe) var errors = [String](repeating: "", count: processes)
        let errorsLock = NSLock()  // the readers run on several threads, and each write modifies the whole array
        ignoreSIGPIPE
        // Start all of them first (on a database that does not exist yet), then feed them.
        for index in 0..<processes {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: BGQBinary.path)
            process.arguments = ["enqueue", "--jsonl", "-"]
            var env = ProcessInfo.processInfo.environment
            env["BGQ_DB"] = db.path
            process.environment = env
            let input = Pipe(), out = Pipe(), err = Pipe()
            process.standardInput = input
            process.standardOutput = out
            process.standardError = err
            try process.run()
            let lines = (0..<perProcess).map { #"{"agent":"noop","prompt":"process \#(index) task \#($0)"}"# }.joined(separator: "\n") + "\n"
            DispatchQueue.global().async(group: group) {
                // A process that exits early (its error is checked below) closes the pipe: EPIPE, not a crash.
                try? input.fileHandleForWriting.write(contentsOf: Data(lines.utf8))
                try? input.fileHandleForWriting.close()
            }
            DispatchQueue.global().async(group: group) { _ = out.fileHandleForReading.readDataToEndOfFile() }
            DispatchQueue.global().async(group: group) {
                let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
                errorsLock.withLock { errors[index] = text }
            }
            runs.append((process, out, err))
        }
        let deadline = Date().addingTimeInterval(120)
        for run in runs {
            while run.process.isRunning && Date() < deadline { usleep(10_000) }
            if run.process.isRunning { run.process.terminate(); Issue.record("an enqueue process did not finish") }
            run.process.waitUntilExit()
        }
        group.wait()
        for (index, run) in runs.enumerated() {
            #expect(run.process.terminationStatus == 0, "process \(index) exited \(run.process.terminationStatus): \(errors[index])")
        }
        let store = try db.store()
        let counts = try store.connection.queryFirst("SELECT count(*), count(DISTINCT id), count(DISTINCT prompt) FROM tasks") {
            [$0.int(0), $0.int(1), $0.int(2)]
        }
        #expect(counts == [processes * perProcess, processes * perProcess, processes * perProcess])
        let migrations = try store.connection.queryFirst("SELECT count(*) FROM schema_migrations") { $0.int(0) }
        #expect(migrations == Database.migrations.count)
    }
}
