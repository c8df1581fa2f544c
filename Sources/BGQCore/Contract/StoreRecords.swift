import Foundation

// The values that cross the store contract (QueueStore): what claims, transitions, cancels,
// hooks, notices and history return. Engines (SQLite today) only map rows to them.

/// How a running task ends, or goes back to waiting.
public enum TaskOutcome: Sendable, Equatable {
    case completed(result: String)
    case failed(error: String)
    case cancelled(reason: String)
    /// Back to pending: a retry after `delayMs`, or a session handed back on purpose.
    case requeued(reason: String, delayMs: Int64)
}

/// A guarded write's answer: did this worker still own the task?
public enum Ownership: Sendable, Equatable {
    case owned
    /// Someone else owns it now (it was reaped, adopted or finished): touch nothing more.
    case lost
}

/// Where a started session can be found again.
public struct SessionStart: Sendable, Equatable {
    public var sessionID: String
    public var backend: String
    public var externalID: String?
    public var run: TaskRecord.RunHandle
    public init(sessionID: String, backend: String, externalID: String?, run: TaskRecord.RunHandle) {
        self.sessionID = sessionID
        self.backend = backend
        self.externalID = externalID
        self.run = run
    }
}

/// What a poll found, to be written in one guarded update.
public struct ProgressUpdate: Sendable {
    public var progress: TaskRecord.Progress
    public var logOffset: Int64
    public var externalSessionID: String?
    public var newMessages: [SessionMessage]
    public init(progress: TaskRecord.Progress, logOffset: Int64, externalSessionID: String?, newMessages: [SessionMessage]) {
        self.progress = progress
        self.logOffset = logOffset
        self.externalSessionID = externalSessionID
        self.newMessages = newMessages
    }
}

/// What happened to one task that `bgq cancel` named.
public enum CancelOutcome: Sendable, Equatable {
    /// A pending task, now cancelled.
    case cancelled(TaskRecord)
    /// A running task, marked; its worker aborts the session and releases the slot.
    case requested(TaskRecord)
    /// Already finished: nothing to do.
    case alreadyFinished(TaskRecord)
}

/// What `bgq stats` reports.
public struct QueueStats: Sendable {
    public struct KeyBusy: Sendable {
        public var key: String
        public var tasks: Int
        public var busyMs: Int64
        public var limit: Int

        public init(key: String, tasks: Int, busyMs: Int64, limit: Int) {
            self.key = key
            self.tasks = tasks
            self.busyMs = busyMs
            self.limit = limit
        }
    }
    public struct Durations: Sendable {
        public var agent: String
        public var model: String
        public var count: Int
        public var p50Ms: Int64
        public var p95Ms: Int64

        public init(agent: String, model: String, count: Int, p50Ms: Int64, p95Ms: Int64) {
            self.agent = agent
            self.model = model
            self.count = count
            self.p50Ms = p50Ms
            self.p95Ms = p95Ms
        }
    }
    public var windowStart: Instant?
    public var now: Instant
    public var byStatus: [TaskStatus: Int]
    public var keys: [KeyBusy]
    public var durations: [Durations]
    public var errors: [ErrorCount]

    /// How many tasks ended in error with one reason.
    public struct ErrorCount: Sendable, Equatable {
        public var reason: String
        public var count: Int
        public init(reason: String, count: Int) {
            self.reason = reason
            self.count = count
        }
    }

    public init(windowStart: Instant? = nil, now: Instant, byStatus: [TaskStatus: Int], keys: [KeyBusy], durations: [Durations], errors: [ErrorCount]) {
        self.windowStart = windowStart
        self.now = now
        self.byStatus = byStatus
        self.keys = keys
        self.durations = durations
        self.errors = errors
    }
}

/// What `bgq prune` removed (or would remove).
public struct PruneResult: Sendable {
    public var tasks: Int
    public var sessions: Int
    /// The run folders of the pruned tasks: files are not the store's business, so the caller (which
    /// knows where this host keeps them) removes them.
    public var runFolders: [RunFolderRecord]

    public init(tasks: Int, sessions: Int, runFolders: [RunFolderRecord]) {
        self.tasks = tasks
        self.sessions = sessions
        self.runFolders = runFolders
    }
}

/// One completion hook to run.
public struct HookRun: Sendable, Equatable {
    public var id: Int64
    public var taskID: String
    public var command: String
    public var pid: Int32?
    public var workerID: String?

    public init(id: Int64, taskID: String, command: String, pid: Int32? = nil, workerID: String? = nil) {
        self.id = id
        self.taskID = taskID
        self.command = command
        self.pid = pid
        self.workerID = workerID
    }
}

/// A notice to send into a parent OpenCode session (table `parent_notices`).
public struct ParentNotice: Sendable, Equatable {
    public enum Kind: String, Sendable, CaseIterable { case task, batch }
    public var id: Int64
    public var taskID: String
    public var kind: Kind
    public var parentID: String
    public var server: OpenCodeServer
    /// Attempts so far, this one included.
    public var attempts: Int
    /// A worker that claimed it earlier is gone: it may have been sent already.
    public var mayHaveBeenSent: Bool

    public init(id: Int64, taskID: String, kind: Kind, parentID: String, server: OpenCodeServer, attempts: Int, mayHaveBeenSent: Bool) {
        self.id = id
        self.taskID = taskID
        self.kind = kind
        self.parentID = parentID
        self.server = server
        self.attempts = attempts
        self.mayHaveBeenSent = mayHaveBeenSent
    }
}

/// How sending a parent notice ended.
public enum ParentNoticeOutcome: Sendable {
    case sent
    case retryLater(String)
    case failed(String)
}

/// A session started for a claimed task (`ClaimStore.recordSessionStarts`).
public struct SessionStartRecord: Sendable {
    public var task: TaskRecord
    public var start: SessionStart
    public init(task: TaskRecord, start: SessionStart) {
        self.task = task
        self.start = start
    }
}

/// What a poll learnt about a running task (`ClaimStore.recordProgress`).
public struct ProgressRecord: Sendable {
    public var task: TaskRecord
    public var update: ProgressUpdate
    public init(task: TaskRecord, update: ProgressUpdate) {
        self.task = task
        self.update = update
    }
}

/// How one running task ends or goes back to wait (`ClaimStore.finish`), with what its last poll learnt.
public struct TaskFinish: Sendable {
    public var task: TaskRecord
    public var outcome: TaskOutcome
    public var finalProgress: ProgressUpdate?
    public init(task: TaskRecord, outcome: TaskOutcome, finalProgress: ProgressUpdate? = nil) {
        self.task = task
        self.outcome = outcome
        self.finalProgress = finalProgress
    }
}

/// A finished task whose run folders may still exist (one per attempt up to `attempt`).
public struct RunFolderRecord: Sendable, Equatable {
    public var taskID: String
    public var attempt: Int
    public init(taskID: String, attempt: Int) {
        self.taskID = taskID
        self.attempt = attempt
    }
}

/// A worker joining the queue.
public struct WorkerRegistration: Sendable {
    public var name: String
    public var host: String
    public var pid: Int32
    public var maxSessions: Int
    /// Where this worker's exec sessions keep their files, so a worker that adopts its tasks after a
    /// crash looks in the right place.
    public var runsDirectory: String?
    public init(name: String, host: String, pid: Int32, maxSessions: Int, runsDirectory: String? = nil) {
        self.name = name
        self.host = host
        self.pid = pid
        self.maxSessions = maxSessions
        self.runsDirectory = runsDirectory
    }
}

/// How many workers died holding a task (`WorkerStore.workerDeaths`).
public struct WorkerDeaths: Sendable, Equatable {
    /// Deaths recorded so far by adoption and orphan resolution.
    public var recorded: Int
    /// Whether the task's current owner is dead (not stopped on purpose).
    public var ownerDied: Bool
    public init(recorded: Int, ownerDied: Bool) {
        self.recorded = recorded
        self.ownerDied = ownerDied
    }
}

/// The states of a completion hook's row (`hook_outbox.status`).
public enum HookStatus: String, Sendable, CaseIterable {
    case pending, running, done, failed
}

/// How a hook's process ended: its exit code, or why it could not run.
public struct HookEnd: Sendable, Equatable {
    public var exitCode: Int32?
    public var error: String?
    public init(exitCode: Int32?, error: String?) {
        self.exitCode = exitCode
        self.error = error
    }
}

/// A task's completion hook as `bgq show` reports it.
public struct HookRecord: Sendable, Equatable {
    public var command: String
    public var status: HookStatus
    public var exitCode: Int?
    public var error: String?
    public init(command: String, status: HookStatus, exitCode: Int?, error: String?) {
        self.command = command
        self.status = status
        self.exitCode = exitCode
        self.error = error
    }
}

/// The states of a parent notice's row (`parent_notices.state`).
public enum NoticeState: String, Sendable, CaseIterable {
    case pending, sending, sent, failed
}

/// A parent notice as `bgq show` reports it.
public struct NoticeRecord: Sendable, Equatable {
    public var kind: ParentNotice.Kind
    public var state: NoticeState
    public var attempts: Int
    public var error: String?
    public init(kind: ParentNotice.Kind, state: NoticeState, attempts: Int, error: String?) {
        self.kind = kind
        self.state = state
        self.attempts = attempts
        self.error = error
    }
}

/// One event of the history (`bgq watch`, `bgq history`), with the task's description.
public struct HistoryEvent: Sendable, Equatable {
    public var event: TaskEvent
    public var description: String
    public init(event: TaskEvent, description: String) {
        self.event = event
        self.description = description
    }
}

/// What `bgq prune` removes: finished tasks in `statuses` that finished before `olderThan`.
public struct PruneRequest: Sendable {
    public var olderThan: Instant
    public var statuses: [TaskStatus]
    public var dryRun: Bool
    public init(olderThan: Instant, statuses: [TaskStatus], dryRun: Bool) {
        self.olderThan = olderThan
        self.statuses = statuses
        self.dryRun = dryRun
    }
}

/// One limit to set.
public struct LimitChange: Sendable, Equatable {
    public var scope: LimitScope
    public var name: String
    public var value: Int
    public init(scope: LimitScope, name: String, value: Int) {
        self.scope = scope
        self.name = name
        self.value = value
    }
}

/// One setting to set, or (value nil) to unset.
public struct SettingChange: Sendable, Equatable {
    public var key: String
    public var value: String?
    public init(key: String, value: String?) {
        self.key = key
        self.value = value
    }
}
