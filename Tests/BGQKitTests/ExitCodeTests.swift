import Foundation
import Testing
@testable import BGQBackends
@testable import BGQCLI
@testable import BGQCore
@testable import BGQSQLite
@testable import BGQScheduler
@testable import BGQSystem

/// The README's exit codes, each from the real `bgq` binary: the code, and one line on stderr that names
/// the thing. (Codes already covered elsewhere are not repeated here: 1 for cancelling a finished task,
/// 2 for an unknown agent, a bad model and a malformed limits file, 3 for an unknown id, and 5 for a locked,
/// read-only, full, corrupt, truncated, foreign or newer database are in `BadInputTests` and `FaultTests`.)
@Suite struct ExitCodeTests {
    /// `result` exited with `code`, saying one line on stderr that contains each of `mentioning`.
    static func expectExit(_ result: CommandResult, _ code: Int32, mentioning: [String],
                           sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(result.status == code, "exited \(result.status), not \(code): \(result.stderr)", sourceLocation: sourceLocation)
        let lines = result.stderr.split(separator: "\n", omittingEmptySubsequences: true)
        #expect(lines.count == 1, "stderr is not one line: \(result.stderr)", sourceLocation: sourceLocation)
        #expect(result.stderr.hasPrefix("bgq: "), "stderr: \(result.stderr)", sourceLocation: sourceLocation)
        for text in mentioning {
            #expect(result.stderr.contains(text), "expected '\(text)' in: \(result.stderr)", sourceLocation: sourceLocation)
        }
        expectCleanErrorOutput(result, sourceLocation: sourceLocation)
    }

    static func enqueue(_ db: TempDatabase, agent: String = "noop", _ prompt: String) throws -> String {
        let result = try BGQBinary.run(["enqueue", "--agent", agent, "--json", prompt], db: db)
        #expect(result.status == 0, "stderr: \(result.stderr)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        return try #require(object["id"] as? String)
    }

    /// A shell task run to its end by a worker that exits when idle.
    static func finishedTask(_ db: TempDatabase, command: String) throws -> String {
        let id = try enqueue(db, agent: "shell", command)
        let worker = try BGQBinary.run(["worker", "--exit-when-idle"], db: db)
        #expect(worker.status == 0, "stderr: \(worker.stderr)")
        return id
    }

    // MARK: - 0

    @Test func zeroWhenShowBlockSeesTheTaskComplete() throws {
        let db = TempDatabase()
        let id = try Self.finishedTask(db, command: "echo done")
        let shown = try BGQBinary.run(["show", id, "--block", "--timeout", "30"], db: db)
        #expect(shown.status == ExitStatus.success)
        #expect(shown.stderr.isEmpty, "stderr: \(shown.stderr)")
        #expect(shown.stdout.contains("done"))
    }

    // MARK: - 1

    @Test func oneWhenShowBlockOrWaitSeesTheTaskFail() throws {
        let db = TempDatabase()
        let id = try Self.finishedTask(db, command: "exit 3")
        let shown = try BGQBinary.run(["show", id, "--block", "--timeout", "30"], db: db)
        Self.expectExit(shown, ExitStatus.failure, mentioning: [id, "error"])
        #expect(shown.stdout.contains("exit code 3"), "the status block still says why: \(shown.stdout)")
        // wait's summary (on stdout, ending the output on a terminal) is its report: nothing more on stderr.
        let waited = try BGQBinary.run(["wait", id, "--timeout", "30"], db: db)
        #expect(waited.status == ExitStatus.failure)
        #expect(waited.stdout.contains("0 completed, 1 failed or cancelled."), "\(waited.stdout)")
        #expect(waited.stderr.isEmpty, "\(waited.stderr)")
    }

    /// Cancel's code comes from what each id turned out to be, not from its message text: all unknown is 3,
    /// an unknown id together with a finished task is 1.
    @Test func cancelOfUnknownAndFinishedTasksIsOneButOfUnknownOnlyThree() throws {
        let db = TempDatabase()
        let id = try Self.finishedTask(db, command: "echo done")
        let unknown = try BGQBinary.run(["cancel", "bg_ffffffff"], db: db)
        #expect(unknown.status == ExitStatus.notFound, "stderr: \(unknown.stderr)")
        let mixed = try BGQBinary.run(["cancel", "bg_ffffffff", id], db: db)
        #expect(mixed.status == ExitStatus.failure, "stderr: \(mixed.stderr)")
        #expect(mixed.stderr.contains("Task not found: bg_ffffffff") && mixed.stderr.contains("Cannot cancel task \(id)"))
        expectCleanErrorOutput(unknown)
    }

    // MARK: - 2

    static let badArguments: [[String]] = [
        ["frobnicate"],                                     // no such command
        ["list", "--bogus"],                                // no such flag
        ["show"],                                           // a missing argument
        ["show", "bg_1234", "--timeout", "-1"],             // a value out of range (validate())
        ["enqueue", "--agent", "noop", "--priority", "high", "x"],  // a value of the wrong type
    ]

    @Test(arguments: badArguments)
    func twoForBadArgumentsWithTheHelpToRead(_ arguments: [String]) throws {
        let db = TempDatabase()
        let result = try BGQBinary.run(arguments, db: db)
        Self.expectExit(result, ExitStatus.usage, mentioning: ["--help"])
        #expect(!FileManager.default.fileExists(atPath: db.path), "a refused command created the database")
    }

    @Test func twoForAMalformedJSONLLineAndNothingIsEnqueued() throws {
        let db = TempDatabase()
        let lines = #"{"agent":"noop","prompt":"fine"}"# + "\n" + #"{"agent":"noop","prompt":01}"#
        let result = try BGQBinary.run(["enqueue", "--jsonl", "-"], db: db, stdin: lines)
        Self.expectExit(result, ExitStatus.usage, mentioning: ["JSONL line 2", "nothing was enqueued"])
        let listed = try JSONSerialization.jsonObject(with: Data(try BGQBinary.run(["list", "--json"], db: db).stdout.utf8)) as? [Any]
        #expect(listed?.isEmpty == true, "the valid first line was not kept either")
    }

    // MARK: - 3

    @Test func threeForAnUnknownSessionAgentOrLimit() throws {
        let db = TempDatabase()
        _ = try Self.enqueue(db, "something")
        Self.expectExit(try BGQBinary.run(["enqueue", "--session", "ses_ffffffffffff", "more"], db: db), ExitStatus.notFound,
                        mentioning: ["ses_ffffffffffff"])
        Self.expectExit(try BGQBinary.run(["agents", "remove", "no-such-agent"], db: db), ExitStatus.notFound,
                        mentioning: ["no-such-agent"])
        Self.expectExit(try BGQBinary.run(["limits", "unset", "--model", "nobody/nothing"], db: db), ExitStatus.notFound,
                        mentioning: ["nobody/nothing"])
    }

    // MARK: - 4

    @Test func fourWhenShowBlockOrWaitTimesOutSaysSoOnStderr() throws {
        let db = TempDatabase()
        let id = try Self.enqueue(db, "never claimed")
        let shown = try BGQBinary.run(["show", id, "--block", "--timeout", "0.2"], db: db)
        Self.expectExit(shown, ExitStatus.timeout, mentioning: [id, "still pending", "200 ms"])
        #expect(shown.stdout.contains("Timeout exceeded (200ms). Task still pending."), "the original's line stays on stdout")
        let waited = try BGQBinary.run(["wait", id, "--timeout", "0.2"], db: db)
        Self.expectExit(waited, ExitStatus.timeout, mentioning: ["1 of 1 task(s) still in progress"])
    }
}


/// Failures of the SQLite engine reach callers of the store as `BGQError.database` with the right kind,
/// mapped once by result code: the scheduler's "wait and retry" and the CLI's exit 5 rest on these kinds.
@Suite(.serialized) struct StoreErrorKindTests {
    /// The kind of the database error `body` throws; records an issue when it throws anything else.
    static func kind(sourceLocation: SourceLocation = #_sourceLocation, _ body: () throws -> Void) -> DatabaseError.Kind? {
        do {
            try body()
            Issue.record("no error was thrown", sourceLocation: sourceLocation)
        } catch BGQError.database(let error) {
            return error.kind
        } catch {
            Issue.record("not a typed database error: \(type(of: error)): \(error)", sourceLocation: sourceLocation)
        }
        return nil
    }

    static let task = NewTask(description: "t", prompt: "p", agent: "noop")

    @Test func aWriteLockHeldByAnotherConnectionIsBusyAndTransient() throws {
        let db = TempDatabase()
        let holder = try db.store()
        try holder.connection.execute("BEGIN IMMEDIATE")
        defer { try? holder.connection.execute("ROLLBACK") }
        let store = SQLiteStore(connection: try Database.open(path: db.path, busyTimeoutMilliseconds: 20))
        var error: DatabaseError?
        do { _ = try store.enqueue([Self.task]) } catch BGQError.database(let caught) { error = caught }
        #expect(error?.kind == .busy)
        #expect(error?.isTransient == true, "a worker waits a lock out")
        #expect(error?.message.contains(db.path) == true)
    }

    @Test func aDatabaseAtItsSizeCapIsFullAndTransient() throws {
        let db = TempDatabase()
        let store = try db.store()
        let pages = try #require(try store.connection.queryFirst("PRAGMA page_count") { $0.int(0) })
        _ = try store.connection.queryFirst("PRAGMA max_page_count = \(pages + 1)") { $0.int(0) }
        let big = NewTask(description: "big", prompt: String(repeating: "x", count: 200_000), agent: "noop")
        #expect(Self.kind { _ = try store.enqueue([big]) } == .full)
        #expect(DatabaseError(.full, "").isTransient)
    }

    @Test func aConnectionThatCannotWriteIsReadOnlyAndNotTransient() throws {
        let db = TempDatabase()
        _ = try db.store()
        let store = SQLiteStore(connection: try Connection(path: db.path, readOnly: true))
        #expect(Self.kind { _ = try store.enqueue([Self.task]) } == .readOnly)
        #expect(!DatabaseError(.readOnly, "").isTransient, "a worker stops rather than waiting forever")
    }

    /// Files the store refuses to open, each with its own kind (the CLI's messages for them are in BadInputTests).
    @Test func refusedFilesHaveTheirOwnKinds() throws {
        let db = TempDatabase()
        let text = db.directory + "/notes.txt"
        try String(repeating: "not a database\n", count: 300).write(toFile: text, atomically: true, encoding: .utf8)
        #expect(Self.kind { _ = try SQLiteStore(path: text) } == .notADatabase)

        let foreign = db.directory + "/other.db"
        let other = try Connection(path: foreign)
        try other.execute("CREATE TABLE contacts (name TEXT)")
        #expect(Self.kind { _ = try SQLiteStore(path: foreign) } == .notBGQ)

        let newer = db.directory + "/newer.db"
        _ = try SQLiteStore(path: newer)
        try Connection(path: newer).execute("PRAGMA user_version = \(Database.latestVersion + 1)")
        #expect(Self.kind { _ = try SQLiteStore(path: newer) } == .newerSchema)

        let corrupt = db.directory + "/corrupt.db"
        let store = try SQLiteStore(path: corrupt)
        _ = try store.enqueue((0..<50).map { _ in NewTask(description: "t", prompt: String(repeating: "p", count: 500), agent: "noop") })
        try store.connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        var bytes = try Data(contentsOf: URL(fileURLWithPath: corrupt))
        for index in 100..<min(bytes.count, 8192) { bytes[index] = UInt8(truncatingIfNeeded: index &* 7919) }
        try bytes.write(to: URL(fileURLWithPath: corrupt))
        #expect(Self.kind { _ = try SQLiteStore(path: corrupt) } == .corrupt)

        #expect(Self.kind { _ = try SQLiteStore(path: db.directory + "/absent.db", create: false) } == .missing)
    }
}
