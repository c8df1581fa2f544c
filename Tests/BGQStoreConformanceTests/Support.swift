import Foundation
import Testing
import BGQCore

// The conformance suite's only window on an engine: a factory that makes an empty database, and
// `QueueStore`. Nothing here knows files or SQL; `StoreFactory+SQLite.swift` is the one file that does.
//
// The store calls the tests make many times go through the small functions at the end of this file,
// so when the contract's methods are renamed (tuples become structs, `finishAll` becomes `finish`, …)
// the change is made here once.

// MARK: - Engines

/// How to make an empty database of one engine. Every test runs once per factory in `all`.
struct StoreFactory: Sendable, CustomTestStringConvertible {
    let name: String
    let makeDatabase: @Sendable () throws -> TestDatabase

    var testDescription: String { name }

    /// The engines the suite runs against. A PostgreSQL engine appends itself here when
    /// `BGQ_TEST_POSTGRES_URL` is set (it needs a server the tests do not start themselves).
    static var all: [StoreFactory] { [.sqlite] }
}

/// One empty database, removed when the test lets go of it. Each `open` is a new connection, so two
/// stores opened from it are two claimers, as two worker processes would be.
final class TestDatabase: Sendable {
    private let openStore: @Sendable (Clock) throws -> any QueueStore
    private let remove: @Sendable () -> Void

    init(open: @escaping @Sendable (Clock) throws -> any QueueStore, remove: @escaping @Sendable () -> Void) {
        self.openStore = open
        self.remove = remove
    }

    deinit { remove() }

    func open(clock: TestClock) throws -> any QueueStore { try openStore(clock) }
}

/// A clock that moves only when a test moves it; safe to read from several claimer threads.
final class TestClock: Clock, @unchecked Sendable {
    private let lock = NSLock()
    private var wall: Instant
    private var monotonic: Int64 = 1_000_000

    init(_ start: Instant = Instant(milliseconds: 1_790_000_000_000)) { wall = start }

    func now() -> Instant { lock.withLock { wall } }
    func monotonicMilliseconds() -> Int64 { lock.withLock { monotonic } }

    /// Moves wall and monotonic time together.
    func advance(milliseconds: Int64) {
        lock.withLock {
            wall = wall + milliseconds
            monotonic += milliseconds
        }
    }
}

/// A database and a store on it, with the clock every store of this database shares.
struct Fixture {
    let database: TestDatabase
    let clock: TestClock
    let store: any QueueStore

    init(_ factory: StoreFactory, clock: TestClock = TestClock()) throws {
        database = try factory.makeDatabase()
        self.clock = clock
        store = try database.open(clock: clock)
    }

    /// Another connection to the same database (another worker process, or a reader).
    func another() throws -> any QueueStore { try database.open(clock: clock) }
}

// MARK: - Building blocks

/// A task on the no-op agent (no model: its key is `model:noop`).
func newTask(_ description: String, model: String? = nil, agent: String = "noop", priority: Int = 0, parent: String? = nil,
             session: String? = nil, retries: Int = 0, onComplete: String? = nil) -> NewTask {
    NewTask(description: description, prompt: "prompt of \(description)", agent: agent, model: model, parentID: parent,
            sessionID: session, priority: priority, maxRetries: retries, onComplete: onComplete)
}

/// `count` tasks on one model.
func newTasks(_ prefix: String, _ count: Int, model: String? = nil) -> [NewTask] {
    (0..<count).map { newTask("\(prefix)\($0)", model: model) }
}

/// What a session start records when the test does not care where the session runs.
func sessionStart(_ sessionID: String = Identifier.newSessionID(), handle: String? = nil) -> SessionStart {
    var run = TaskRecord.RunHandle()
    run.handle = handle
    return SessionStart(sessionID: sessionID, backend: "noop", externalID: nil, run: run)
}

/// A poll's findings: `messages` more messages than the task had, the last of them as its last message.
func progressUpdate(_ task: TaskRecord, messages: [SessionMessage] = [], lastMessage: String? = nil) -> ProgressUpdate {
    var progress = task.progress
    progress.messageCount += max(1, messages.count)
    progress.lastMessage = lastMessage ?? messages.last?.content ?? "working"
    return ProgressUpdate(progress: progress, logOffset: task.run.logOffset + 1, externalSessionID: nil, newMessages: messages)
}

/// The no-op preset's shape for an assistant message.
func assistantMessage(_ text: String, at: Instant) -> SessionMessage {
    SessionMessage(role: .assistant, kind: .text, content: text, at: at)
}

// MARK: - The store calls the suite makes (one place to follow renames of the contract)

@discardableResult
func enqueue(_ store: any QueueStore, _ tasks: [NewTask]) throws -> [TaskRecord] { try store.enqueue(tasks) }

func registerWorker(_ store: any QueueStore, _ name: String = "w") throws -> String {
    try store.registerWorker(WorkerRegistration(name: name, host: "test-host", pid: 4242, maxSessions: 100))
}

func claim(_ store: any QueueStore, _ workerID: String, capacity: Int = 100) throws -> [TaskRecord] {
    try store.claimTasks(workerID: workerID, capacity: capacity)
}

func finish(_ store: any QueueStore, _ task: TaskRecord, by workerID: String, _ outcome: TaskOutcome,
            update: ProgressUpdate? = nil) throws -> Ownership {
    try store.finish([TaskFinish(task: task, outcome: outcome, finalProgress: update)], workerID: workerID)[0]
}

/// Completes a task its owner holds, and checks the owner could.
func complete(_ store: any QueueStore, _ task: TaskRecord, by workerID: String, result: String = "done",
              sourceLocation: SourceLocation = #_sourceLocation) throws {
    #expect(try finish(store, task, by: workerID, .completed(result: result)) == .owned, sourceLocation: sourceLocation)
}

func startSession(_ store: any QueueStore, _ task: TaskRecord, by workerID: String, _ start: SessionStart) throws -> Ownership {
    try store.recordSessionStarts([SessionStartRecord(task: task, start: start)], workerID: workerID)[0]
}

func recordProgress(_ store: any QueueStore, _ task: TaskRecord, by workerID: String, _ update: ProgressUpdate) throws -> Ownership {
    try store.recordProgress([ProgressRecord(task: task, update: update)], workerID: workerID)[0]
}

func setLimit(_ store: any QueueStore, _ scope: LimitScope, _ name: String, _ value: Int) throws {
    try store.setLimit(scope, name: name, value: value)
}

func setSetting(_ store: any QueueStore, _ key: String, _ value: String) throws { try store.setSetting(key, value) }

@discardableResult
func setWorkerState(_ store: any QueueStore, _ workerID: String, _ state: WorkerState) throws -> Ownership {
    try store.setWorkerState(workerID, to: state, reason: "test")
}

func deaths(_ store: any QueueStore, _ task: TaskRecord, owner: String) throws -> (recorded: Int, ownerDied: Bool) {
    let answer = try store.workerDeaths(taskID: task.id, ownerID: owner)
    return (answer.recorded, answer.ownerDied)
}

func hookStatuses(_ store: any QueueStore, _ taskID: String) throws -> [String: String] {
    Dictionary(uniqueKeysWithValues: try store.hooks(taskID: taskID).map { ($0.command, $0.status.rawValue) })
}

/// Ends a hook as the worker that claimed it (`hook.workerID`), or as `by` another one.
@discardableResult
func finishHook(_ store: any QueueStore, _ hook: HookRun, exitCode: Int32?, error: String? = nil, by workerID: String? = nil) throws -> Ownership {
    try store.finishHook(hook, end: HookEnd(exitCode: exitCode, error: error), workerID: workerID ?? hook.workerID ?? "")
}

/// A task's notices as (kind, state) pairs, oldest first.
func notices(_ store: any QueueStore, _ taskID: String) throws -> [(kind: String, state: String)] {
    try store.parentNotices(taskID: taskID).map { ($0.kind.rawValue, $0.state.rawValue) }
}

@discardableResult
func finishNotice(_ store: any QueueStore, _ notice: ParentNotice, by workerID: String, _ outcome: ParentNoticeOutcome) throws -> Ownership {
    try store.finishParentNotice(notice, workerID: workerID, outcome: outcome)
}

/// Every event after `cursor` (creations and transitions), oldest first.
func events(_ store: any QueueStore, after cursor: Int64 = 0, parent: String? = nil, limit: Int = 100_000) throws -> [TaskEvent] {
    try store.events(after: cursor, parentID: parent, limit: limit).map(\.event)
}

func prune(_ store: any QueueStore, olderThan cutoff: Instant, statuses: [TaskStatus] = [], dryRun: Bool = false) throws -> PruneResult {
    try store.prune(PruneRequest(olderThan: cutoff, statuses: statuses, dryRun: dryRun))
}

/// Expects the store to say the worker owns nothing any more (it was declared dead).
func expectLostOwnership(_ body: () throws -> Void, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(sourceLocation: sourceLocation) {
        try body()
    } throws: { error in
        if case BGQError.lostOwnership = error { return true }
        return false
    }
}

// MARK: - Reads

/// Tasks in these states, oldest first; one read, so one consistent view of the queue.
func tasks(_ store: any QueueStore, _ statuses: [TaskStatus] = []) throws -> [TaskRecord] {
    var filter = TaskFilter()
    filter.statuses = statuses
    filter.limit = 1_000_000
    return try store.listTasks(filter).reversed()
}

func running(_ store: any QueueStore) throws -> [TaskRecord] { try tasks(store, [.running]) }

func reload(_ store: any QueueStore, _ task: TaskRecord) throws -> TaskRecord { try store.requireTask(id: task.id) }

/// Running tasks per concurrency key.
func runningByKey(_ store: any QueueStore) throws -> [String: Int] {
    Dictionary(grouping: try running(store), by: { $0.concurrencyKey ?? "-" }).mapValues(\.count)
}
