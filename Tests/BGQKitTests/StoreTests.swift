import Foundation
import Testing
@testable import BGQBackends
@testable import BGQCLI
@testable import BGQCore
@testable import BGQSQLite
@testable import BGQScheduler
@testable import BGQSystem

/// The store's behaviour as the queue's users see it: what gets stored, claimed, limited and recorded.
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

    @Test func enqueueBatchIsAllOrNothing() throws {
        let db = TempDatabase()
        let store = try db.store()
        // The third task breaks a CHECK constraint (priority out of range) after two were inserted.
        var bad = Self.task("bad")
        bad.priority = 5_000_000
        #expect(throws: (any Error).self) {
            _ = try store.enqueue([Self.task("a"), Self.task("b"), bad, Self.task("c")])
        }
        #expect(try Self.count(store, "SELECT count(*) FROM tasks") == 0)
        #expect(try Self.count(store, "SELECT count(*) FROM task_history") == 0)
        // A task continuing a session that does not exist fails the batch the same way.
        var orphan = Self.task("orphan")
        orphan.sessionID = "ses_000000000000"
        #expect(throws: (any Error).self) { _ = try store.enqueue([Self.task("a"), orphan]) }
        #expect(try Self.count(store, "SELECT count(*) FROM tasks") == 0)
    }

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

    @Test func enqueueWithASessionContinuesIt() throws {
        let db = TempDatabase()
        let store = try db.store()
        let first = try store.enqueue([Self.task("first")])[0]
        let worker = try Self.worker(store)
        let claimed = try #require(try store.claimTasks(workerID: worker, capacity: 1).first)
        #expect(claimed.id == first.id)
        let sessionID = Identifier.newSessionID()
        #expect(try store.recordSessionStart(claimed, workerID: worker,
                                             start: SessionStart(sessionID: sessionID, backend: "noop", externalID: nil, run: .init())) == .owned)
        try Self.complete(store, try #require(try store.task(id: first.id)), worker: worker)

        var next = Self.task("follow-up")
        next.sessionID = sessionID
        let continued = try store.enqueue([next])[0]
        #expect(continued.sessionID == sessionID)
        #expect(continued.continuesSession)
        #expect(try Self.count(store, "SELECT continues_session FROM tasks WHERE id = ?", [.text(continued.id)]) == 1)
        #expect(try Self.count(store, "SELECT continues_session FROM tasks WHERE id = ?", [.text(first.id)]) == 0)
    }

    // MARK: - Guarded transitions

    @Test func finishByAnotherWorkerIsLostAndChangesNothing() throws {
        let db = TempDatabase()
        let store = try db.store()
        try store.setLimit(.model, name: "acme/m", value: 2)
        _ = try store.enqueue([Self.task("t", model: "acme/m")])
        let owner = try Self.worker(store, "owner")
        let running = try #require(try store.claimTasks(workerID: owner, capacity: 1).first)
        let before = try #require(try store.task(id: running.id))
        let eventsBefore = try store.events(taskID: running.id)

        #expect(try store.finish(running, workerID: "wrk_other", outcome: .completed(result: "stolen")) == .lost)
        #expect(try store.finish(running, workerID: "wrk_other", outcome: .failed(error: "nope")) == .lost)
        #expect(try store.finish(running, workerID: "wrk_other", outcome: .requeued(reason: "nope", delayMs: 0)) == .lost)

        let after = try #require(try store.task(id: running.id))
        #expect(after == before)
        #expect(after.status == .running)
        #expect(after.workerID == owner)
        #expect(after.result == nil)
        #expect(try store.events(taskID: running.id) == eventsBefore)
        #expect(try Self.count(store, "SELECT count(*) FROM slot_leases WHERE task_id = ?", [.text(running.id)]) == 1)
    }

    @Test func finishWithAStaleAttemptIsLost() throws {
        let db = TempDatabase()
        let store = try db.store()
        _ = try store.enqueue([Self.task("t")])
        let owner = try Self.worker(store)
        let running = try #require(try store.claimTasks(workerID: owner, capacity: 1).first)
        var stale = running
        stale.attempt -= 1
        #expect(try store.finish(stale, workerID: owner, outcome: .completed(result: "old")) == .lost)
        #expect(try store.task(id: running.id)?.status == .running)
    }

    // MARK: - Claims and limits

    @Test func claimRespectsAModelLimit() throws {
        let db = TempDatabase()
        let store = try db.store()
        try store.setLimit(.model, name: "acme/model-x", value: 2)
        _ = try store.enqueue((0..<5).map { Self.task("t\($0)", model: "acme/model-x") })
        let worker = try Self.worker(store)
        let claimed = try store.claimTasks(workerID: worker, capacity: 10)
        #expect(claimed.count == 2)
        #expect(try Self.count(store, "SELECT count(*) FROM slot_leases") == 2)
        #expect(try Self.count(store, "SELECT count(*) FROM tasks WHERE status = 'running'") == 2)
        #expect(try Self.count(store, "SELECT count(*) FROM tasks WHERE status = 'pending'") == 3)
        // A second worker gets nothing while the key is full.
        let second = try Self.worker(store, "second")
        #expect(try store.claimTasks(workerID: second, capacity: 10).isEmpty)
    }

    @Test func providerLimitIsSharedAcrossModels_issue3968() throws {
        let db = TempDatabase()
        let store = try db.store()
        try store.setLimit(.provider, name: "anthropic", value: 3)
        _ = try store.enqueue((0..<4).map { Self.task("a\($0)", model: "anthropic/a") } + (0..<4).map { Self.task("b\($0)", model: "anthropic/b") })
        let first = try Self.worker(store, "one")
        let second = try Self.worker(store, "two")
        let claimed = try store.claimTasks(workerID: first, capacity: 10) + store.claimTasks(workerID: second, capacity: 10)
        #expect(claimed.count == 3)
        #expect(try Self.count(store, "SELECT count(*) FROM tasks WHERE status = 'running'") == 3)
        #expect(Set(claimed.compactMap(\.concurrencyKey)) == ["provider:anthropic"])
        let usage = try store.keyUsage().first { $0.key == "provider:anthropic" }
        #expect(usage?.running == 3)
        #expect(usage?.limit == 3)
        #expect(usage?.pending == 5)
    }

    @Test func bareModelLimitMatchesProviderQualifiedModel() throws {
        let db = TempDatabase()
        let store = try db.store()
        try store.setLimit(.model, name: "claude-opus-4-5", value: 2)
        try store.setLimit(.provider, name: "anthropic", value: 10)
        _ = try store.enqueue((0..<5).map { Self.task("t\($0)", model: "anthropic/claude-opus-4-5") })
        let worker = try Self.worker(store)
        let claimed = try store.claimTasks(workerID: worker, capacity: 10)
        #expect(claimed.count == 2)
        #expect(Set(claimed.compactMap(\.concurrencyKey)) == ["model:claude-opus-4-5"])
    }

    @Test func priorityFirstThenFIFOWithinAKey() throws {
        let db = TempDatabase()
        let store = try db.store()
        try store.setLimit(.model, name: "acme/m", value: 1)
        let tasks = try store.enqueue([
            Self.task("old-low", model: "acme/m"), Self.task("mid-low", model: "acme/m"),
            Self.task("high-1", model: "acme/m", priority: 5), Self.task("new-low", model: "acme/m"),
            Self.task("high-2", model: "acme/m", priority: 5),
        ])
        #expect(tasks.count == 5)
        let worker = try Self.worker(store)
        var order: [String] = []
        for _ in 0..<5 {
            let claimed = try store.claimTasks(workerID: worker, capacity: 10)
            #expect(claimed.count == 1)
            guard let task = claimed.first else { break }
            order.append(task.description)
            try Self.complete(store, task, worker: worker)
        }
        #expect(order == ["high-1", "high-2", "old-low", "mid-low", "new-low"])
    }

    @Test func fullKeyDoesNotBlockAnotherKey() throws {
        let db = TempDatabase()
        let store = try db.store()
        try store.setLimit(.model, name: "acme/busy", value: 1)
        // Many older tasks wait on the busy key; one newer task on another key.
        _ = try store.enqueue((0..<5).map { Self.task("busy\($0)", model: "acme/busy") })
        let worker = try Self.worker(store)
        let firstClaim = try store.claimTasks(workerID: worker, capacity: 1)
        #expect(firstClaim.map(\.description) == ["busy0"])
        _ = try store.enqueue([Self.task("free", model: "other/free")])
        let secondClaim = try store.claimTasks(workerID: worker, capacity: 1)
        #expect(secondClaim.map(\.description) == ["free"])
        #expect(try store.claimTasks(workerID: worker, capacity: 5).isEmpty)
    }

    @Test func loweredLimitAppliesToNewClaimsAtOnce() throws {
        let db = TempDatabase()
        let store = try db.store()
        try store.setLimit(.model, name: "acme/m", value: 3)
        _ = try store.enqueue((0..<6).map { Self.task("t\($0)", model: "acme/m") })
        let worker = try Self.worker(store)
        let running = try store.claimTasks(workerID: worker, capacity: 10)
        #expect(running.count == 3)
        try store.setLimit(.model, name: "acme/m", value: 1)
        #expect(try store.claimTasks(workerID: worker, capacity: 10).isEmpty)
        // Two of three finish: one still runs, which fills the lowered limit.
        try Self.complete(store, running[0], worker: worker)
        try Self.complete(store, running[1], worker: worker)
        #expect(try store.claimTasks(workerID: worker, capacity: 10).isEmpty)
        try Self.complete(store, running[2], worker: worker)
        #expect(try store.claimTasks(workerID: worker, capacity: 10).count == 1)
        #expect(try Self.count(store, "SELECT count(*) FROM tasks WHERE status = 'running'") == 1)
    }

    @Test func raisedLimitLetsWaitingTasksBeClaimedAtOnce() throws {
        let db = TempDatabase()
        let store = try db.store()
        try store.setLimit(.model, name: "acme/m", value: 1)
        _ = try store.enqueue((0..<5).map { Self.task("t\($0)", model: "acme/m") })
        let worker = try Self.worker(store)
        #expect(try store.claimTasks(workerID: worker, capacity: 10).count == 1)
        #expect(try store.claimTasks(workerID: worker, capacity: 10).isEmpty)
        try store.setLimit(.model, name: "acme/m", value: 3)
        #expect(try store.claimTasks(workerID: worker, capacity: 10).count == 2)
        #expect(try Self.count(store, "SELECT count(*) FROM tasks WHERE status = 'running'") == 3)
        #expect(try Self.count(store, "SELECT count(*) FROM slot_leases") == 3)
    }

    @Test func zeroLimitMeansUnlimited() throws {
        let db = TempDatabase()
        let store = try db.store()
        try store.setLimit(.provider, name: "acme", value: 0)
        _ = try store.enqueue((0..<8).map { Self.task("t\($0)", model: "acme/m") })
        let worker = try Self.worker(store)
        #expect(try store.claimTasks(workerID: worker, capacity: 100).count == 8)
        #expect(try Self.count(store, "SELECT count(*) FROM slot_leases") == 0)
    }

    @Test func defaultLimitIsFivePerModel() throws {
        let db = TempDatabase()
        let store = try db.store()
        _ = try store.enqueue((0..<7).map { Self.task("a\($0)", model: "acme/a") } + (0..<7).map { Self.task("b\($0)", model: "acme/b") })
        let worker = try Self.worker(store)
        let claimed = try store.claimTasks(workerID: worker, capacity: 100)
        #expect(claimed.filter { $0.model == "acme/a" }.count == 5)
        #expect(claimed.filter { $0.model == "acme/b" }.count == 5)
    }

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

    @Test func taskEventsRecordEveryTransitionWithWorkerAndAttempt() throws {
        let db = TempDatabase()
        let store = try db.store()
        let task = try store.enqueue([Self.task("t")])[0]
        let worker = try Self.worker(store)
        let running = try #require(try store.claimTasks(workerID: worker, capacity: 1).first)
        try Self.complete(store, running, worker: worker, result: "all good")
        let events = try store.events(taskID: task.id)
        #expect(events.map(\.from) == [nil, .pending, .running])
        #expect(events.map(\.to) == [.pending, .running, .completed])
        #expect(events.map(\.workerID) == [nil, worker, worker])
        #expect(events.map(\.attempt) == [0, 1, 1])
        #expect(TaskStatus.isValidPath(events.map(\.to)))
        #expect(zip(events, events.dropFirst()).allSatisfy { $0.at <= $1.at })
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

    @Test func queuedTaskTimesOutAfterThirtyMinutes() throws {
        let db = TempDatabase()
        let clock = ManualClock()
        let store = try db.store(clock: clock)
        let old = try store.enqueue([Self.task("old")])[0]
        clock.advance(milliseconds: 29 * 60_000)
        let young = try store.enqueue([Self.task("young")])[0]
        #expect(try store.expireQueuedTasks(ttlMs: 30 * 60_000).isEmpty)
        clock.advance(milliseconds: 60_000 + 1)
        #expect(try store.expireQueuedTasks(ttlMs: 30 * 60_000) == [old.id])
        let expired = try #require(try store.task(id: old.id))
        #expect(expired.status == .error)
        #expect(expired.error == "Task timed out while queued (30 minutes)")
        #expect(expired.finishedAt == clock.now())
        #expect(try store.task(id: young.id)?.status == .pending)
    }

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
