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

/// The worker's row says it is no longer alive (another worker declared it dead): it owns nothing.
public struct WorkerLost: Error, Equatable {
    public let workerID: String

    public init(workerID: String) {
        self.workerID = workerID
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
    public var errors: [(reason: String, count: Int)]

    public init(windowStart: Instant? = nil, now: Instant, byStatus: [TaskStatus: Int], keys: [KeyBusy], durations: [Durations], errors: [(reason: String, count: Int)]) {
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
    public var runDirectories: Int

    public init(tasks: Int, sessions: Int, runDirectories: Int) {
        self.tasks = tasks
        self.sessions = sessions
        self.runDirectories = runDirectories
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
    public enum Kind: String, Sendable { case task, batch }
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
