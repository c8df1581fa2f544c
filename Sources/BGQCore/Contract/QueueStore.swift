/// Everything bgq asks of its database, made of one protocol per concern. The scheduler, the CLI and
/// the MCP server talk to these protocols only; an engine implements all of them with the same
/// guarantees, proven by one conformance suite (Tests/BGQStoreConformanceTests) that every engine runs:
/// claims under the limits in one transaction, guarded transitions that report `.lost`, an event row
/// per transition, a slot released in the same transaction that ends its task, hooks and notices
/// claimed exactly once. Nothing here speaks of files, SQL or a particular engine.
public protocol QueueStore: TaskStore, ClaimStore, WorkerStore, HookStore, NoticeStore, HistoryStore, ConfigurationStore {
    /// Where the data lives (for messages and for the worker's default run-folder location).
    var location: StoreLocation { get }
    var clock: Clock { get }
    /// A new feed that says when anything was committed (by any process): one per reader, as each
    /// keeps its own "last seen".
    func changeFeed() throws -> ChangeFeed
    /// The engine's own upkeep, called by a worker on every pass of its loop; the engine decides how
    /// often it does anything (SQLite: a passive WAL checkpoint every 30 s, and a check that its file
    /// was not deleted or replaced, which throws `.database(.replaced)`).
    func performMaintenance() throws
}

/// Tasks as the CLI sees them: enqueue, read, cancel.
public protocol TaskStore: AnyObject {
    /// Enqueues all or nothing.
    func enqueue(_ tasks: [NewTask]) throws -> [TaskRecord]
    func enqueueReturningIDs(_ tasks: [NewTask]) throws -> [String]
    func task(id: String) throws -> TaskRecord?
    /// The task, or `.notFound`.
    func requireTask(id: String) throws -> TaskRecord
    /// A full id from an id or a unique prefix: `.notFound`, or `.usage` when the prefix is ambiguous.
    func resolveTaskID(_ text: String) throws -> String
    func resolveSessionID(_ text: String) throws -> String
    func session(id: String) throws -> SessionRecord?
    func listTasks(_ filter: TaskFilter) throws -> [TaskRecord]
    func messages(taskID: String, limit: Int) throws -> [SessionMessage]
    /// The messages of a session's other tasks, oldest first (a conversation's earlier turns).
    func sessionMessages(sessionID: String, exceptTaskID: String) throws -> [SessionMessage]
    /// Cancels pending tasks at once; marks running ones for their worker to abort.
    func cancel(taskIDs: [String], reason: String) throws -> [CancelOutcome]
    func activeTaskIDs(parentID: String?) throws -> [String]
    func taskIDs(parentID: String) throws -> [String]
}

/// What workers do to tasks. Every write is guarded by the worker's id, the task's status and its
/// attempt, and says `.lost` when another worker (or a cancel) took the task meanwhile.
public protocol ClaimStore: AnyObject {
    /// Claims up to `capacity` pending tasks under model > provider > default limits, read and taken
    /// in one transaction. Throws `BGQError.lostOwnership` when this worker was declared dead.
    func claimTasks(workerID: String, capacity: Int) throws -> [TaskRecord]
    /// Records the sessions started for claimed tasks; writes nothing for a task this worker lost.
    func recordSessionStarts(_ starts: [SessionStartRecord], workerID: String) throws -> [Ownership]
    func recordProgress(_ items: [ProgressRecord], workerID: String) throws -> [Ownership]
    /// Ends tasks or puts them back to wait; each slot is released in the same transaction, and each
    /// transition writes one event.
    func finish(_ items: [TaskFinish], workerID: String) throws -> [Ownership]
    /// Running tasks of this worker that someone asked to cancel.
    func cancelRequests(workerID: String) throws -> Set<String>
    /// Fails pending tasks that waited longer than `ttlMs`; returns their ids.
    func expireQueuedTasks(ttlMs: Int64) throws -> [String]
    /// Finished tasks whose run folders may still be on disk, oldest first.
    func tasksWithRunFolders(finishedBefore cutoff: Instant, limit: Int) throws -> [RunFolderRecord]
    func forgetRunFolders(taskIDs: [String]) throws
    /// When an exec session's process ended, as its run folder says (for stats of run time).
    func recordRunEnd(taskID: String, workerID: String, endedAt: Instant) throws
}

/// Workers' rows: registration, heartbeats, death and adoption of a dead worker's tasks.
public protocol WorkerStore: AnyObject {
    func registerWorker(_ registration: WorkerRegistration) throws -> String
    func heartbeat(workerID: String) throws -> Ownership
    /// `.lost` when the row was declared dead meanwhile (nothing is written then).
    func setWorkerState(_ workerID: String, to state: WorkerState, reason: String?) throws -> Ownership
    func listWorkers(includeGone: Bool, limit: Int) throws -> [WorkerRecord]
    func worker(id: String) throws -> WorkerRecord?
    func declareSilentWorkersDead(except workerID: String, leaseTimeoutMs: Int64) throws -> [String]
    /// Running tasks whose worker is dead or stopped.
    func orphanedTasks() throws -> [TaskRecord]
    func adopt(_ task: TaskRecord, from deadWorkerID: String, by workerID: String, reason: String) throws -> Ownership
    func resolveOrphan(_ task: TaskRecord, deadWorkerID: String, outcome: TaskOutcome) throws -> Ownership
    /// Workers that died holding the task so far, and whether its current owner is dead rather than stopped.
    func workerDeaths(taskID: String, ownerID: String) throws -> WorkerDeaths
}

/// Completion hooks: an outbox written in the transaction that ends a task, run once by one worker.
public protocol HookStore: AnyObject {
    func claimHooks(workerID: String, limit: Int) throws -> [HookRun]
    /// `.lost` when the hook is no longer this worker's running hook.
    func recordHookStarted(_ hook: HookRun, pid: Int32, workerID: String) throws -> Ownership
    func finishHook(_ hook: HookRun, end: HookEnd, workerID: String) throws -> Ownership
    /// Marks hooks whose worker died while they ran as failed; returns how many.
    func failOrphanedHooks() throws -> Int
    func hooks(taskID: String) throws -> [HookRecord]
}

/// Notices into a parent OpenCode session: an outbox, each sent once.
public protocol NoticeStore: AnyObject {
    /// Pending notices, and `sending` ones of gone workers (these with `mayHaveBeenSent`).
    func claimParentNotices(workerID: String, limit: Int) throws -> [ParentNotice]
    /// `.lost` when the notice is no longer this worker's claim.
    func finishParentNotice(_ notice: ParentNotice, workerID: String, outcome: ParentNoticeOutcome) throws -> Ownership
    func parentNotices(taskID: String) throws -> [NoticeRecord]
}

/// What happened: events, statistics, pruning.
public protocol HistoryStore: AnyObject {
    func events(taskID: String) throws -> [TaskEvent]
    /// Events after a cursor (an event id), oldest first, optionally of one parent's children.
    func events(after cursor: Int64, parentID: String?, limit: Int) throws -> [HistoryEvent]
    func latestEventID() throws -> Int64
    func stats(since: Instant?) throws -> QueueStats
    /// Deletes finished tasks (only terminal ones, older than the cutoff) and sessions left without
    /// tasks; returns what went, and the run folders the caller may remove.
    func prune(_ request: PruneRequest) throws -> PruneResult
}

/// Limits, settings and agents.
public protocol ConfigurationStore: AnyObject {
    func limits() throws -> Limits
    /// Applies every change in one transaction (`limits set`, `limits import`).
    func setLimits(_ changes: [LimitChange]) throws
    func unsetLimit(_ scope: LimitScope, name: String) throws -> Bool
    func keyUsage() throws -> [KeyUsage]
    func settings() throws -> Settings
    func storedSettings() throws -> [String: String]
    /// Applies every change in one transaction (a nil value unsets the key); returns the keys that
    /// were set before (for unsets: whether there was anything to remove).
    @discardableResult
    func setSettings(_ changes: [SettingChange]) throws -> Set<String>
    func userAgents() throws -> [AgentDefinition]
    func saveAgent(_ agent: AgentDefinition) throws
    func removeAgent(named name: String) throws -> Bool
}

/// Which kind of limit.
public enum LimitScope: String, Sendable, CaseIterable { case model, provider, `default` }

/// The defaults callers use most, each through the batch operation.
public extension QueueStore {
    func messages(taskID: String) throws -> [SessionMessage] { try messages(taskID: taskID, limit: 10_000) }
    func cancel(taskIDs: [String]) throws -> [CancelOutcome] { try cancel(taskIDs: taskIDs, reason: "cancelled by user") }
    func listWorkers(includeGone: Bool = false) throws -> [WorkerRecord] { try listWorkers(includeGone: includeGone, limit: 100) }
    func recordSessionStart(_ task: TaskRecord, workerID: String, start: SessionStart) throws -> Ownership {
        try recordSessionStarts([SessionStartRecord(task: task, start: start)], workerID: workerID)[0]
    }
    func finish(_ task: TaskRecord, workerID: String, outcome: TaskOutcome, finalProgress: ProgressUpdate? = nil) throws -> Ownership {
        try finish([TaskFinish(task: task, outcome: outcome, finalProgress: finalProgress)], workerID: workerID)[0]
    }
    func setLimit(_ scope: LimitScope, name: String, value: Int) throws {
        try setLimits([LimitChange(scope: scope, name: name, value: value)])
    }
    func setSetting(_ key: String, _ value: String) throws { try setSettings([SettingChange(key: key, value: value)]) }
    func unsetSetting(_ key: String) throws -> Bool { try setSettings([SettingChange(key: key, value: nil)]).contains(key) }
}
