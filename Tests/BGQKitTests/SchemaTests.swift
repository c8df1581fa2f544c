import Foundation
import Testing
@testable import BGQBackends
@testable import BGQCLI
@testable import BGQCore
@testable import BGQSQLite
@testable import BGQScheduler
@testable import BGQSystem

/// The schema and its migrations, as a user (or someone reading the file with sqlite3) would see them.
@Suite struct SchemaTests {
    // MARK: - Helpers

    /// The CREATE statement of a schema object, as stored in sqlite_schema.
    private static func createSQL(_ store: SQLiteStore, _ name: String) throws -> String {
        try #require(try store.connection.queryFirst("SELECT sql FROM sqlite_schema WHERE name = ?", [.text(name)]) { $0.text(0) })
    }

    /// The values of the first `CHECK (<column> = 'a' OR <column> = 'b' ...)` for `column` in `sql`
    /// (the schema spells value lists with OR, not IN: see the note in Migrations/0001_initial.sql).
    private static func checkList(in sql: String, column: String, allowIn: Bool = false) throws -> [String] {
        let orList = "(?:\(column)\\s*=\\s*'[^']*'\\s*(?:OR\\s+)?)+"
        let inList = "\(column)\\s+IN\\s*\\((?:\\s*'[^']*'\\s*,?)+\\)"
        let pattern = "CHECK\\s*\\(\\s*(" + (allowIn ? "\(orList)|\(inList)" : orList) + ")\\s*\\)"
        let regex = try NSRegularExpression(pattern: pattern, options: [.caseInsensitive])
        let range = NSRange(sql.startIndex..., in: sql)
        let match = try #require(regex.firstMatch(in: sql, range: range), "no CHECK (\(column) = '…' OR …) in \(sql)")
        let list = String(sql[Range(match.range(at: 1), in: sql)!])
        let quoted = try NSRegularExpression(pattern: "'([^']*)'")
        return quoted.matches(in: list, range: NSRange(list.startIndex..., in: list)).map {
            String(list[Range($0.range(at: 1), in: list)!])
        }
    }

    private static func permissions(_ path: String) throws -> Int {
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        return try #require(attributes[.posixPermissions] as? NSNumber).intValue & 0o777
    }

    /// A store with one running task (claimed by a registered worker) under a model limit.
    private static func storeWithRunningTask(_ db: TempDatabase, limit: Int = 1, tasks: Int = 2)
        throws -> (store: SQLiteStore, worker: String, running: TaskRecord, pending: [TaskRecord]) {
        let store = try db.store()
        try store.setLimit(.model, name: "acme/m1", value: limit)
        let enqueued = try store.enqueue((0..<tasks).map { NewTask(description: "t\($0)", prompt: "p\($0)", agent: "noop", model: "acme/m1") })
        let worker = try store.registerWorker(WorkerRegistration(name: "w", host: "test", pid: 1, maxSessions: 10))
        let claimed = try store.claimTasks(workerID: worker, capacity: 10)
        let running = try #require(claimed.first)
        return (store, worker, running, enqueued.filter { $0.id != running.id })
    }

    // MARK: - Schema text

    @Test func taskStatusCheckListMatchesTaskStatusCases() throws {
        let db = TempDatabase()
        let store = try db.store()
        let sql = try Self.createSQL(store, "tasks")
        let listed = try Self.checkList(in: sql, column: "status")
        #expect(Set(listed) == Set(TaskStatus.allCases.map(\.rawValue)))
        #expect(listed.count == TaskStatus.allCases.count)
    }

    @Test func taskEventStatusCheckListsMatchTaskStatusCases() throws {
        let db = TempDatabase()
        let store = try db.store()
        let sql = try Self.createSQL(store, "task_events")
        let to = try Self.checkList(in: sql, column: "to_status")
        #expect(Set(to) == Set(TaskStatus.allCases.map(\.rawValue)))
        #expect(sql.contains("from_status = 'pending'"))
    }

    /// Every enum bgq stores (the contract's typed states) against its column's CHECK list in the
    /// schema, so an engine's schema and the Swift types cannot drift apart.
    @Test(arguments: [
        ("tasks", "status", TaskStatus.allCases.map(\.rawValue)),
        ("task_events", "to_status", TaskStatus.allCases.map(\.rawValue)),
        ("workers", "state", WorkerState.allCases.map(\.rawValue)),
        ("hook_outbox", "status", HookStatus.allCases.map(\.rawValue)),
        ("parent_notices", "state", NoticeState.allCases.map(\.rawValue)),
        ("parent_notices", "kind", ParentNotice.Kind.allCases.map(\.rawValue)),
        ("limits", "scope", LimitScope.allCases.map(\.rawValue)),
        ("agents", "prompt_via", AgentDefinition.PromptVia.allCases.map(\.rawValue)),
        ("session_messages", "role", SessionMessage.Role.allCases.map(\.rawValue)),
        ("session_messages", "kind", SessionMessage.Kind.allCases.map(\.rawValue)),
    ])
    func everyStoredEnumMatchesItsCheckConstraint(table: String, column: String, cases: [String]) throws {
        let db = TempDatabase()
        let store = try db.store()
        let sql = try Self.createSQL(store, table)
        let listed = try Self.checkList(in: sql, column: column, allowIn: true)
        #expect(listed.sorted() == cases.sorted(), "\(table).\(column) allows \(listed), the Swift type has \(cases)")
    }

    // MARK: - Opening

    @Test func openedDatabaseIsWALWithBGQIdentityAndLatestVersion() throws {
        let db = TempDatabase()
        let store = try db.store()
        let mode = try store.connection.queryFirst("PRAGMA journal_mode") { $0.text(0) }
        #expect(mode?.lowercased() == "wal")
        let applicationID = try store.connection.queryFirst("PRAGMA application_id") { Int32(truncatingIfNeeded: $0.int64(0)) }
        #expect(applicationID == Database.applicationID)
        let userVersion = try store.connection.queryFirst("PRAGMA user_version") { $0.int(0) }
        #expect(userVersion == Database.latestVersion)
        #expect(Database.latestVersion >= 1)
    }

    @Test func openingAgainAppliesNoMigrationTwice() throws {
        let db = TempDatabase()
        for _ in 0..<3 { _ = try db.store() }
        // And through the binary, which opens the same file again.
        let listed = try BGQBinary.run(["list"], db: db)
        #expect(listed.status == 0)
        let store = try db.store()
        let rows = try store.connection.query("SELECT version, count(*) FROM schema_migrations GROUP BY version ORDER BY version") {
            ($0.int(0), $0.int(1))
        }
        #expect(rows.map(\.0) == Database.migrations.map(\.version))
        #expect(rows.allSatisfy { $0.1 == 1 })
        let userVersion = try store.connection.queryFirst("PRAGMA user_version") { $0.int(0) }
        #expect(userVersion == Database.latestVersion)
    }

    @Test func copiedBinaryCreatesAndMigratesANewDatabase() throws {
        let db = TempDatabase()
        let binDirectory = db.directory + "/elsewhere/bin"
        try FileManager.default.createDirectory(atPath: binDirectory, withIntermediateDirectories: true)
        let copy = binDirectory + "/bgq"
        try FileManager.default.copyItem(atPath: BGQBinary.path, toPath: copy)
        let target = db.directory + "/other/place/new.db"
        // Run from a directory that holds no Migrations folder, with the environment's BGQ_DB cleared.
        let result = try ForeignCommand.run(copy, ["enqueue", "--db", target, "--agent", "noop", "hello from a copied binary"],
                                            environment: ["BGQ_DB": ""], currentDirectory: binDirectory)
        #expect(result.status == 0, "stderr: \(result.stderr)")
        #expect(result.stdout.contains("Background task launched."))
        let store = try SQLiteStore(path: target, create: false)
        let userVersion = try store.connection.queryFirst("PRAGMA user_version") { $0.int(0) }
        #expect(userVersion == Database.latestVersion)
        let count = try store.connection.queryFirst("SELECT count(*) FROM tasks") { $0.int(0) }
        #expect(count == 1)
    }

    @Test func newDatabaseIsPrivateToItsOwner() throws {
        let db = TempDatabase()
        let parent = db.directory + "/new-parent"
        let child = parent + "/nested"
        let path = child + "/bgq.db"
        let result = try BGQBinary.run(["enqueue", "--db", path, "--agent", "noop", "private"], db: nil)
        #expect(result.status == 0, "stderr: \(result.stderr)")
        #expect(try Self.permissions(path) == 0o600)
        #expect(try Self.permissions(child) == 0o700)
        #expect(try Self.permissions(parent) == 0o700)
    }

    @Test func walAndShmFilesArePrivateToo() throws {
        let db = TempDatabase()
        let store = try db.store()
        _ = try store.enqueue([NewTask(description: "d", prompt: "p", agent: "noop")])
        // While the connection is open, SQLite keeps the -wal and -shm files beside the database.
        for suffix in ["-wal", "-shm"] {
            #expect(FileManager.default.fileExists(atPath: db.path + suffix), "no \(suffix) file while the database is open")
            guard FileManager.default.fileExists(atPath: db.path + suffix) else { continue }
            #expect(try Self.permissions(db.path + suffix) & 0o077 == 0, "\(suffix) is readable by others")
        }
        withExtendedLifetime(store) {}
    }

    // MARK: - Constraints enforced by the database itself

    @Test func terminalStatusWithoutFinishedAtIsRefused() throws {
        let db = TempDatabase()
        let store = try db.store()
        let task = try store.enqueue([NewTask(description: "d", prompt: "p", agent: "noop")])[0]
        for status in ["completed", "error", "cancelled"] {
            #expect(throws: SQLiteError.self) {
                try store.connection.run("UPDATE tasks SET status = ? WHERE id = ?", [.text(status), .text(task.id)])
            }
        }
        // A pending task with a finished_at is refused too (the CHECK works both ways).
        #expect(throws: SQLiteError.self) {
            try store.connection.run("UPDATE tasks SET finished_at = '2026-01-01T00:00:00.000Z' WHERE id = ?", [.text(task.id)])
        }
        #expect(try store.task(id: task.id)?.status == .pending)
        #expect(try store.task(id: task.id)?.finishedAt == nil)
    }

    @Test func finishedTaskCannotChangeState() throws {
        let db = TempDatabase()
        let store = try db.store()
        let task = try store.enqueue([NewTask(description: "d", prompt: "p", agent: "noop")])[0]
        try store.connection.run("""
            UPDATE tasks SET status = 'cancelled', finished_at = '2026-01-01T00:00:00.000Z' WHERE id = ?
            """, [.text(task.id)])
        for status in ["pending", "running", "completed", "error"] {
            do {
                try store.connection.run("""
                    UPDATE tasks SET status = ?, finished_at = CASE WHEN ? IN ('pending', 'running') THEN NULL ELSE finished_at END,
                        worker_id = 'wrk_00000000', started_at = '2026-01-01T00:00:00.000Z', concurrency_key = 'k'
                    WHERE id = ?
                    """, [.text(status), .text(status), .text(task.id)])
                Issue.record("a cancelled task was moved to \(status)")
            } catch let error as SQLiteError {
                #expect(error.isConstraint)
                #expect(error.message.contains("a finished task cannot change state"))
            }
        }
        #expect(try store.task(id: task.id)?.status == .cancelled)
    }

    @Test func slotLeaseBeyondTheLimitIsRefusedByTheDatabase() throws {
        let db = TempDatabase()
        let (store, worker, running, pending) = try Self.storeWithRunningTask(db, limit: 1, tasks: 2)
        let key = try #require(running.concurrencyKey)
        let other = try #require(pending.first)
        // Make the second task running by hand, then try to give it a second slot of a limit-1 key.
        try store.connection.run("""
            UPDATE tasks SET status = 'running', worker_id = ?, started_at = '2026-01-01T00:00:00.000Z', concurrency_key = ? WHERE id = ?
            """, [.text(worker), .text(key), .text(other.id)])
        for slot in [0, 1] {
            do {
                try store.connection.run("""
                    INSERT INTO slot_leases (concurrency_key, slot, max_running, task_id, acquired_at) VALUES (?, ?, 1, ?, '2026-01-01T00:00:00.000Z')
                    """, [.text(key), .int(slot), .text(other.id)])
                Issue.record("a second lease on a limit-1 key was accepted (slot \(slot))")
            } catch let error as SQLiteError {
                #expect(error.isConstraint)
            }
        }
        let leases = try store.connection.queryFirst("SELECT count(*) FROM slot_leases WHERE concurrency_key = ?", [.text(key)]) { $0.int(0) }
        #expect(leases == 1)
    }

    @Test func slotNumberMustBeBelowItsLimit() throws {
        let db = TempDatabase()
        let (store, _, running, _) = try Self.storeWithRunningTask(db, limit: 1, tasks: 1)
        // Free the task's own lease, then try to lease slot 2 of a limit-2 key.
        try store.connection.run("DELETE FROM slot_leases")
        #expect(throws: SQLiteError.self) {
            try store.connection.run("""
                INSERT INTO slot_leases (concurrency_key, slot, max_running, task_id, acquired_at) VALUES ('model:x', 2, 2, ?, '2026-01-01T00:00:00.000Z')
                """, [.text(running.id)])
        }
        #expect(throws: SQLiteError.self) {
            try store.connection.run("""
                INSERT INTO slot_leases (concurrency_key, slot, max_running, task_id, acquired_at) VALUES ('model:x', -1, 2, ?, '2026-01-01T00:00:00.000Z')
                """, [.text(running.id)])
        }
        let leases = try store.connection.queryFirst("SELECT count(*) FROM slot_leases") { $0.int(0) }
        #expect(leases == 0)
    }

    @Test func onlyARunningTaskCanHoldASlot() throws {
        let db = TempDatabase()
        let store = try db.store()
        let task = try store.enqueue([NewTask(description: "d", prompt: "p", agent: "noop")])[0]
        do {
            try store.connection.run("""
                INSERT INTO slot_leases (concurrency_key, slot, max_running, task_id, acquired_at) VALUES ('model:noop', 0, 5, ?, '2026-01-01T00:00:00.000Z')
                """, [.text(task.id)])
            Issue.record("a pending task got a slot lease")
        } catch let error as SQLiteError {
            #expect(error.message.contains("only a running task holds a slot"))
        }
    }
}
