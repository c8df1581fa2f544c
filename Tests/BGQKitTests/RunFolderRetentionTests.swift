import Foundation
import Testing
@testable import BGQBackends
@testable import BGQCLI
@testable import BGQCore
@testable import BGQSQLite
@testable import BGQScheduler
@testable import BGQSystem

/// Disk use stays bounded: a finished task's run folder goes once `run_retention_ms` passed, and
/// `bgq show` still shows everything from the database.
@Suite(.serialized) struct RunFolderRetentionTests {
    static func taskFolders(_ store: SQLiteStore) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: store.location.defaultRunsDirectory())) ?? []).filter { $0.hasPrefix("bg_") }
    }

    @Test func aRunningWorkerRemovesFinishedTasksRunFoldersAndShowStillWorks() throws {
        let db = TempDatabase()
        try BGQBinary.run(["settings", "set", "run_retention_ms", "0"], db: db)
        try BGQBinary.run(["settings", "set", "on_complete", "cat > /dev/null"], db: db)
        for command in ["echo one", "echo two; exit 3", "echo three"] { try BGQBinary.run(["enqueue", "--agent", "shell", command], db: db) }
        let store = try db.store()
        let worker = try BGQBinary.start(["worker", "--poll-interval", "100ms"], db: db)
        defer { worker.terminate(); worker.waitUntilExit() }
        #expect(try eventually { try store.listTasks(TaskFilter()).allSatisfy { $0.status.isTerminal } })
        #expect(try eventually { try Self.taskFolders(store).isEmpty && (store.listTasks(TaskFilter()).allSatisfy { $0.run.directory == nil }) },
                "run folders left: \(Self.taskFolders(store))")
        #expect(eventually {
            ((try? FileManager.default.contentsOfDirectory(atPath: store.location.defaultRunsDirectory() + "/hooks")) ?? []).isEmpty
        }, "hook files are removed once the hook's outcome is recorded")
        for task in try store.listTasks(TaskFilter()) {
            let shown = try BGQBinary.run(["show", task.id], db: db).stdout
            #expect(shown.contains(task.status == .completed ? (task.prompt == "echo one" ? "one" : "three") : "exit code 3"), "\(shown)")
        }
    }

    @Test func foldersStayUntilTheRetentionPassedAndPruneRemovesThem() throws {
        let db = TempDatabase()
        for command in ["echo a", "echo b"] { try BGQBinary.run(["enqueue", "--agent", "shell", command], db: db) }
        try BGQBinary.run(["worker", "--exit-when-idle", "--poll-interval", "100ms"], db: db, timeout: 60)
        let store = try db.store()
        #expect(Self.taskFolders(store).count == 2, "the default retention (1 hour) keeps fresh folders")
        let cleaner = RunFolderCleaner(store: store, runsDirectory: store.location.defaultRunsDirectory())
        let finished = try #require(try store.listTasks(TaskFilter()).compactMap(\.finishedAt).max())
        #expect(try cleaner.removeExpired(now: finished + 59 * 60_000, retentionMs: 3_600_000) == 0)
        #expect(Self.taskFolders(store).count == 2)
        #expect(try cleaner.removeExpired(now: finished + 61 * 60_000, retentionMs: 3_600_000) == 2)
        #expect(Self.taskFolders(store).isEmpty)
        #expect(try BGQBinary.run(["show", try store.listTasks(TaskFilter())[0].id], db: db).stdout.contains("Task Result"))

        try BGQBinary.run(["enqueue", "--agent", "shell", "echo c"], db: db)
        try BGQBinary.run(["worker", "--exit-when-idle", "--poll-interval", "100ms"], db: db, timeout: 60)
        try BGQBinary.run(["settings", "set", "run_retention_ms", "0"], db: db)
        let pruned = try BGQBinary.run(["prune"], db: db)
        #expect(pruned.status == 0, "\(pruned.stderr)")
        #expect(pruned.stdout.contains("Removed the run folders of 1 task(s)"), "\(pruned.stdout)")
        #expect(Self.taskFolders(store).isEmpty)
        #expect(try store.listTasks(TaskFilter()).count == 3, "prune without --older-than deletes no task")
    }
}
