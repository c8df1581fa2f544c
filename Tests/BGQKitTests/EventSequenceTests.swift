import Foundation
import Testing
@testable import BGQBackends
@testable import BGQCLI
@testable import BGQCore
@testable import BGQSQLite
@testable import BGQScheduler
@testable import BGQSystem

/// A task's creation is its row (event id = seq) and its transitions are task_events rows; both share
/// one growing id sequence, so history, `task_history` and the watch cursor see every event once, in
/// order (Migrations/0004_enqueue_speed.sql).
@Suite struct EventSequenceTests {
    static func task(_ name: String, parent: String? = nil) -> NewTask {
        NewTask(description: name, prompt: "p " + name, agent: "noop", parentID: parent)
    }

    static func history(_ connection: Connection) throws -> [[String]] {
        try connection.query("""
            SELECT event_id, task_id, description, agent, coalesce(model, '-'), at, coalesce(from_status, '-'), to_status,
                   coalesce(worker_id, '-'), attempt, coalesce(reason, '-')
            FROM task_history ORDER BY event_id
            """) { row in (0..<11).map { row.isNull(Int32($0)) ? "NULL" : row.text(Int32($0)) } }
    }

    /// The engine-neutral half (one growing sequence, paging) is in the conformance suite; this is the
    /// SQLite layout: creations live in `tasks.seq`, `task_events` holds transitions only, and the
    /// `task_history` view holds both in `events(after:)` order.
    @Test func theRawTableHoldsOnlyTransitionsAndTheViewHoldsEveryEvent() throws {
        let db = TempDatabase()
        let store = try db.store()
        let first = try store.enqueue([Self.task("a"), Self.task("b"), Self.task("c")])
        let worker = try store.registerWorker(WorkerRegistration(name: "w", host: "test", pid: 1, maxSessions: 1))
        #expect(try store.claimTasks(workerID: worker, capacity: 1).count == 1)
        _ = try store.enqueue([Self.task("d")])
        _ = try store.cancel(taskIDs: [first[1].id])
        let all = try store.events(after: 0, parentID: nil, limit: 1000).map(\.event)
        #expect(all.count == 4 + 2)
        #expect(try store.connection.queryFirst("SELECT count(*) FROM task_events") { $0.int(0) } == 2)
        #expect(try store.connection.queryFirst("SELECT count(*) FROM task_events WHERE from_status IS NULL") { $0.int(0) } == 0)
        #expect(try store.connection.query("SELECT event_id FROM task_history ORDER BY event_id") { $0.int64(0) } == all.map(\.id))
        #expect(try store.connection.query("SELECT seq FROM tasks ORDER BY seq") { $0.int64(0) }
                == all.filter { $0.from == nil }.map(\.id))
    }

    /// A database at schema version 2, with tasks and transitions written as bgq wrote them then.
    static func version2Database(withoutCreationRows: Bool = false, _ name: String = #function) throws -> TempDatabase {
        let db = TempDatabase(name)
        do {
            let connection = try Connection(path: db.path)
            try connection.execute("PRAGMA foreign_keys = ON")
            for migration in Database.migrations where migration.version <= 2 {
                try connection.transaction(.immediate) {
                    if migration.version == 1 {
                        try connection.execute("""
                            PRAGMA application_id = \(Database.applicationID);
                            CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL) STRICT;
                            """)
                    }
                    try connection.execute(migration.sql)
                    try connection.run("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, '2026-11-21T00:00:00.000Z')",
                                       [.int(migration.version), .text(migration.name)])
                    try connection.execute("PRAGMA user_version = \(migration.version)")
                }
            }
            // As bgq wrote tasks and transitions then (seq by SQLite, creation events by the insert trigger).
            func insert(_ id: String, _ at: String) throws {
                try connection.run("""
                    INSERT INTO tasks (id, description, prompt, agent, model_key, created_at, status_changed_at, status_reason)
                    VALUES (?, 'd ' || ?1, 'p', 'noop', 'noop', ?2, ?2, 'enqueued')
                    """, [.text(id), .text(at)])
            }
            func claim(_ id: String, _ at: String) throws {
                try connection.run("""
                    UPDATE tasks SET status = 'running', worker_id = 'wrk_00000001', attempt = attempt + 1, started_at = ?2,
                                     concurrency_key = 'model:noop', status_changed_at = ?2, status_reason = 'claimed' WHERE id = ?1
                    """, [.text(id), .text(at)])
            }
            func finish(_ id: String, _ status: String, _ at: String) throws {
                try connection.run("""
                    UPDATE tasks SET status = ?2, finished_at = ?3, status_changed_at = ?3, status_reason = 'done' WHERE id = ?1
                    """, [.text(id), .text(status), .text(at)])
            }
            try insert("bg_0000000a", "2026-11-21T10:00:00.000Z")
            try insert("bg_0000000b", "2026-11-21T10:00:00.001Z")
            try claim("bg_0000000a", "2026-11-21T10:00:01.000Z")
            try insert("bg_0000000c", "2026-11-21T10:00:02.000Z")
            try finish("bg_0000000a", "completed", "2026-11-21T10:00:03.000Z")
            try finish("bg_0000000b", "cancelled", "2026-11-21T10:00:04.000Z")
            try claim("bg_0000000c", "2026-11-21T10:00:05.000Z")
            try insert("bg_0000000d", "2026-11-21T10:00:06.000Z")
            if withoutCreationRows {
                // Tasks whose creation row is missing (never written by bgq; the migration must still place them).
                try insert("bg_0000000e", "2026-11-21T10:00:07.000Z")
                try insert("bg_0000000f", "2026-11-21T10:00:08.000Z")
                try connection.run("DELETE FROM task_events WHERE task_id IN ('bg_0000000e', 'bg_0000000f')")
            }
        }
        return db
    }

    /// A database written by bgq before 0004 (creation events as task_events rows) reads the same after
    /// the migration: the same task_history rows with the same event ids, and tasks in the same order.
    @Test func migrationKeepsEveryEventAndItsIdAndTheTaskOrder() throws {
        let db = try Self.version2Database()
        let before = try Self.history(try Connection(path: db.path))
        #expect(before.count == 4 + 4)  // 4 creations, 4 transitions
        let store = try db.store()  // migrates
        #expect(try store.connection.queryFirst("PRAGMA user_version") { $0.int(0) } == Database.latestVersion)
        #expect(try Self.history(store.connection) == before)
        #expect(try store.connection.query("SELECT id FROM tasks ORDER BY seq") { $0.text(0) } == ["bg_0000000a", "bg_0000000b", "bg_0000000c", "bg_0000000d"])
        #expect(try store.connection.queryFirst("SELECT count(*) FROM task_events WHERE from_status IS NULL") { $0.int(0) } == 0)
        #expect(try store.connection.query("PRAGMA foreign_key_check") { $0.text(0) }.isEmpty)
        // And the sequence goes on above every old id.
        let latest = try store.latestEventID()
        #expect(latest == Int64(try #require(before.last?.first.flatMap { Int($0) })))
        let added = try store.enqueue([Self.task("new")])[0]
        #expect(added.seq == latest + 1)
        _ = try store.cancel(taskIDs: ["bg_0000000d"])
        #expect(try store.events(taskID: "bg_0000000d").last?.id == latest + 2)
    }

    @Test func migrationPlacesATaskWithoutACreationRowAfterEveryEventInItsOrder() throws {
        let db = try Self.version2Database(withoutCreationRows: true)
        let before = try Self.history(try Connection(path: db.path))
        let latestBefore = try #require(before.last.flatMap { Int64($0[0]) })
        let store = try db.store()
        #expect(try store.connection.query("SELECT id FROM tasks ORDER BY seq") { $0.text(0) }
                == ["bg_0000000a", "bg_0000000b", "bg_0000000c", "bg_0000000d", "bg_0000000e", "bg_0000000f"])
        let e = try store.events(taskID: "bg_0000000e"), f = try store.events(taskID: "bg_0000000f")
        #expect(e.count == 1 && f.count == 1)
        #expect(e[0].id > latestBefore && f[0].id > e[0].id)
        #expect(Array(try Self.history(store.connection).prefix(before.count)) == before)
        #expect(try store.enqueue([Self.task("new")])[0].seq == f[0].id + 1)
    }
}
