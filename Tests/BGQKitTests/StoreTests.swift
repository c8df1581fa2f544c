import Foundation
import Testing
@testable import BGQBackends
@testable import BGQCLI
@testable import BGQCore
@testable import BGQSQLite
@testable import BGQScheduler
@testable import BGQSystem

/// The SQLite store's own behaviour, and the concurrency key rule. What every engine must guarantee
/// (claims, limits, guarded transitions, events, TTL) is in Tests/BGQStoreConformanceTests.
@Suite struct StoreTests {
    // MARK: - Helpers

    private static func task(_ description: String, model: String? = nil, agent: String = "noop", priority: Int = 0) -> NewTask {
        NewTask(description: description, prompt: "prompt of \(description)", agent: agent, model: model, priority: priority)
    }

    private static func worker(_ store: SQLiteStore, _ name: String = "w") throws -> String {
        try store.registerWorker(WorkerRegistration(name: name, host: "test-host", pid: 4242, maxSessions: 100))
    }

    private static func count(_ store: SQLiteStore, _ sql: String, _ arguments: [SQLValue] = []) throws -> Int {
        try store.connection.queryFirst(sql, arguments) { $0.int(0) } ?? -1
    }

    private static func complete(_ store: SQLiteStore, _ task: TaskRecord, worker: String, result: String = "done") throws {
        #expect(try store.finish(task, workerID: worker, outcome: .completed(result: result)) == .owned)
    }

    // MARK: - Enqueue

    @Test func jsonlBatchWithABadLineStoresNothing() throws {
        let db = TempDatabase()
        let lines = [
            #"{"agent":"noop","prompt":"first"}"#,
            #"{"agent":"noop","prompt":"second"}"#,
            #"{"agent":"no-such-agent","prompt":"third"}"#,
            #"{"agent":"noop","prompt":"fourth"}"#,
        ].joined(separator: "\n") + "\n"
        let result = try BGQBinary.run(["enqueue", "--jsonl", "-"], db: db, stdin: lines)
        #expect(result.status == 2)
        #expect(result.stderr.contains("line 3"))
        let store = try db.store()
        #expect(try Self.count(store, "SELECT count(*) FROM tasks") == 0)
    }

    // MARK: - Slots (engine-neutral claims, limits and transitions: Tests/BGQStoreConformanceTests)

    @Test func finishingDeletesTheLeaseInTheSameTransaction() throws {
        let db = TempDatabase()
        let store = try db.store()
        try store.setLimit(.model, name: "acme/m", value: 1)
        _ = try store.enqueue([Self.task("t", model: "acme/m")])
        let worker = try Self.worker(store)
        let running = try #require(try store.claimTasks(workerID: worker, capacity: 1).first)
        #expect(try Self.count(store, "SELECT count(*) FROM slot_leases WHERE task_id = ?", [.text(running.id)]) == 1)

        // Inside one transaction that is then rolled back: the finish and the release go together.
        struct Rollback: Error {}
        #expect(throws: Rollback.self) {
            try store.connection.transaction(.immediate) {
                #expect(try store.finish(running, workerID: worker, outcome: .completed(result: "r")) == .owned)
                #expect(try Self.count(store, "SELECT count(*) FROM slot_leases") == 0)
                throw Rollback()
            }
        }
        #expect(try store.task(id: running.id)?.status == .running)
        #expect(try Self.count(store, "SELECT count(*) FROM slot_leases WHERE task_id = ?", [.text(running.id)]) == 1)

        try Self.complete(store, running, worker: worker)
        #expect(try Self.count(store, "SELECT count(*) FROM slot_leases") == 0)
        #expect(try store.task(id: running.id)?.status == .completed)
    }

    // MARK: - Limits.concurrencyKey

    @Test func concurrencyKeyPrefersModelLimit() throws {
        let limits = Limits(model: ["anthropic/opus": 2], provider: ["anthropic": 3], defaultLimit: 4)
        let key = limits.concurrencyKey(modelKey: "anthropic/opus")
        #expect(key.name == "model:anthropic/opus")
        #expect(key.limit == 2)
        #expect(key.source == .model)
    }

    @Test func concurrencyKeyMatchesBareModelName() throws {
        let limits = Limits(model: ["claude-opus-4-5": 2], provider: ["anthropic": 3])
        let key = limits.concurrencyKey(model: try ModelRef(parsing: "anthropic/claude-opus-4-5"), agent: "claude")
        #expect(key.limit == 2)
        #expect(key.source == .model)
        #expect(key.name == "model:claude-opus-4-5")
    }

    @Test func concurrencyKeyUsesProviderSharedByItsModels() throws {
        let limits = Limits(model: ["anthropic/opus": 2], provider: ["anthropic": 3], defaultLimit: 4)
        let sonnet = limits.concurrencyKey(modelKey: "anthropic/sonnet")
        let haiku = limits.concurrencyKey(modelKey: "anthropic/haiku")
        #expect(sonnet.name == "provider:anthropic")
        #expect(sonnet == haiku)
        #expect(sonnet.limit == 3)
        #expect(sonnet.source == .provider)
    }

    @Test func concurrencyKeyFallsBackToDefaultPerModel() throws {
        let limits = Limits(provider: ["anthropic": 3], defaultLimit: 4)
        let gpt = limits.concurrencyKey(modelKey: "openai/gpt-5")
        let other = limits.concurrencyKey(modelKey: "openai/gpt-4")
        #expect(gpt.name == "model:openai/gpt-5")
        #expect(gpt.limit == 4)
        #expect(gpt.source == .defaultLimit)
        #expect(gpt.name != other.name)
        #expect(Limits().concurrencyKey(modelKey: "openai/gpt-5").limit == Limits.builtInDefault)
        #expect(Limits.builtInDefault == 5)
    }

    @Test func concurrencyKeyWithoutModelUsesTheAgentName() throws {
        let limits = Limits(model: ["shell": 1], provider: ["shell": 7], defaultLimit: 4)
        let shell = limits.concurrencyKey(model: nil, agent: "shell")
        #expect(shell.name == "model:shell")
        #expect(shell.limit == 1)
        let noop = limits.concurrencyKey(modelKey: "noop")
        #expect(noop.name == "model:noop")
        #expect(noop.limit == 4)
    }

    @Test func concurrencyKeyZeroMeansUnlimited() throws {
        let limits = Limits(model: ["acme/x": 0], provider: ["other": 0], defaultLimit: 0)
        #expect(!limits.concurrencyKey(modelKey: "acme/x").isLimited)
        #expect(!limits.concurrencyKey(modelKey: "other/y").isLimited)
        #expect(!limits.concurrencyKey(modelKey: "third/z").isLimited)
        #expect(Limits(defaultLimit: 1).concurrencyKey(modelKey: "third/z").isLimited)
    }

    // MARK: - Time

    @Test func finishedTaskIsNeverNotFoundLater() throws {
        let db = TempDatabase()
        // Finished a day ago by the test's clock; the binary then looks at it with the real clock.
        let clock = ManualClock(SystemClock().now() + (-86_400_000 - 60_000))
        let store = try db.store(clock: clock)
        let task = try store.enqueue([Self.task("yesterday's work")])[0]
        let worker = try Self.worker(store)
        let running = try #require(try store.claimTasks(workerID: worker, capacity: 1).first)
        clock.advance(milliseconds: 5_000)
        try Self.complete(store, running, worker: worker, result: "the answer is 42")

        clock.advance(milliseconds: 86_400_000)
        // The store keeps housekeeping going without losing the task.
        _ = try store.expireQueuedTasks(ttlMs: 30 * 60_000)
        _ = try store.declareSilentWorkersDead(except: "wrk_00000000", leaseTimeoutMs: 30_000)
        let later = try #require(try store.task(id: task.id))
        #expect(later.status == .completed)
        #expect(later.result == "the answer is 42")
        #expect(try store.resolveTaskID(String(task.id.dropFirst(3).prefix(6))) == task.id)

        let shown = try BGQBinary.run(["show", task.id], db: db)
        #expect(shown.status == 0, "stderr: \(shown.stderr)")
        #expect(shown.stdout.contains("Task Result"))
        #expect(shown.stdout.contains("the answer is 42"))
        #expect(!shown.stderr.contains("Task not found"))
    }
}
