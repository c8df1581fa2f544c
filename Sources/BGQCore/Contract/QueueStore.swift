
/// Everything bgq asks of its database. The scheduler and the CLI talk to this protocol only;
/// `SQLiteStore` implements it on one SQLite file, and a second engine (PostgreSQL, for users who
/// outgrow one machine) would implement the same operations with the same guarantees:
/// claims under the limits in one transaction, guarded transitions that report `.lost`, an event row
/// per transition, and a slot released in the same transaction that ends its task.
public protocol QueueStore: AnyObject {
    /// Where the data lives, for messages (a file path for SQLite).
    var path: String { get }
    /// Where exec sessions keep their files.
    var runsDirectory: String { get }
    var clock: Clock { get }
    /// Changes whenever another process commits: a cheap wake-up check (SQLite's data_version).
    func changeCounter() throws -> Int64
    /// Moves committed changes out of the write-ahead log without waiting for anyone, so it cannot grow
    /// without bound while readers come and go.
    func checkpoint() throws

    // Tasks
    func enqueue(_ tasks: [NewTask]) throws -> [TaskRecord]
    func enqueueReturningIDs(_ tasks: [NewTask]) throws -> [String]
    func task(id: String) throws -> TaskRecord?
    func requireTask(id: String) throws -> TaskRecord
    func resolveTaskID(_ text: String) throws -> String
    func resolveSessionID(_ text: String) throws -> String
    func session(id: String) throws -> SessionRecord?
    func listTasks(_ filter: TaskFilter) throws -> [TaskRecord]
    func events(taskID: String) throws -> [TaskEvent]
    func messages(taskID: String, limit: Int) throws -> [SessionMessage]
    func cancel(taskIDs: [String], reason: String) throws -> [CancelOutcome]
    func activeTaskIDs(parentID: String?) throws -> [String]

    // Configuration
    func limits() throws -> Limits
    func setLimit(_ scope: LimitScope, name: String, value: Int) throws
    func unsetLimit(_ scope: LimitScope, name: String) throws -> Bool
    func keyUsage() throws -> [KeyUsage]
    func settings() throws -> Settings
    func storedSettings() throws -> [String: String]
    func setSetting(_ key: String, _ value: String) throws
    func unsetSetting(_ key: String) throws -> Bool
    func userAgents() throws -> [AgentDefinition]
    func saveAgent(_ agent: AgentDefinition) throws
    func removeAgent(named name: String) throws -> Bool

    // Workers and their tasks
    func registerWorker(name: String, host: String, pid: Int32, maxSessions: Int) throws -> String
    func heartbeat(workerID: String) throws -> Ownership
    func setWorkerState(_ workerID: String, _ state: WorkerState, reason: String?) throws
    func listWorkers(includeGone: Bool, limit: Int) throws -> [WorkerRecord]
    func claimTasks(workerID: String, capacity: Int) throws -> [TaskRecord]
    func recordSessionStart(_ task: TaskRecord, workerID: String, start: SessionStart) throws -> Ownership
    func recordSessionStarts(_ items: [(task: TaskRecord, start: SessionStart)], workerID: String) throws -> [Ownership]
    func recordProgress(_ items: [(task: TaskRecord, update: ProgressUpdate)], workerID: String) throws -> [Ownership]
    func finishAll(_ items: [(task: TaskRecord, outcome: TaskOutcome, update: ProgressUpdate?)], workerID: String) throws -> [Ownership]
    func cancelRequests(workerID: String) throws -> Set<String>
    func expireQueuedTasks(ttlMs: Int64) throws -> [String]
    func declareSilentWorkersDead(except workerID: String, leaseTimeoutMs: Int64) throws -> [String]
    func orphanedTasks() throws -> [TaskRecord]
    func adopt(_ task: TaskRecord, from deadWorkerID: String, by workerID: String, reason: String) throws -> Ownership
    func resolveOrphan(_ task: TaskRecord, deadWorkerID: String, outcome: TaskOutcome) throws -> Ownership
    /// Workers that died holding the task so far (`adopt` and `resolveOrphan` count a dead owner), and
    /// whether its current owner is dead rather than stopped.
    func workerDeaths(taskID: String, ownerID: String) throws -> (recorded: Int, ownerDied: Bool)

    // Completion hooks
    func claimHooks(workerID: String, limit: Int) throws -> [HookRun]
    func recordHookStarted(id: Int64, pid: Int32) throws
    func finishHook(id: Int64, exitCode: Int32?, error: String?) throws
    func failOrphanedHooks() throws -> Int
    func hooks(taskID: String) throws -> [(command: String, status: String, exitCode: Int?, error: String?)]

    // HTTP backends: parent notices and conversations
    func claimParentNotices(workerID: String, limit: Int) throws -> [ParentNotice]
    func finishParentNotice(id: Int64, workerID: String, outcome: ParentNoticeOutcome) throws
    func parentNotices(taskID: String) throws -> [(kind: String, state: String, attempts: Int, error: String?)]
    func sessionMessages(sessionID: String, exceptTaskID: String) throws -> [SessionMessage]

    // History
    func events(after cursor: Int64, parentID: String?, limit: Int) throws -> [(event: TaskEvent, description: String)]
    func latestEventID() throws -> Int64
    func taskIDs(parentID: String) throws -> [String]
    func stats(since: Instant?) throws -> QueueStats
    func prune(olderThan cutoff: Instant, statuses: [TaskStatus], dryRun: Bool) throws -> PruneResult
    func tasksWithRunFolders(finishedBefore cutoff: Instant, limit: Int) throws -> [(id: String, attempt: Int)]
    func forgetRunFolders(taskIDs: [String]) throws
    func recordRunEnd(taskID: String, workerID: String, endedAt: Instant) throws
}

/// Which kind of limit.
public enum LimitScope: String, Sendable { case model, provider, `default` }

/// The defaults callers use most.
public extension QueueStore {
    func messages(taskID: String) throws -> [SessionMessage] { try messages(taskID: taskID, limit: 10_000) }
    func cancel(taskIDs: [String]) throws -> [CancelOutcome] { try cancel(taskIDs: taskIDs, reason: "cancelled by user") }
    func listWorkers(includeGone: Bool = false) throws -> [WorkerRecord] { try listWorkers(includeGone: includeGone, limit: 100) }
}
