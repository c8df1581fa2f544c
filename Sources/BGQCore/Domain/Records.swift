
/// A task as stored: what was asked, where it stands, and what came of it.
public struct TaskRecord: Sendable, Equatable {
    public var seq: Int64
    public var id: String
    public var status: TaskStatus
    public var description: String
    public var prompt: String
    public var agent: String
    public var model: String?
    public var modelKey: String
    public var parentID: String?
    public var sessionID: String?
    public var continuesSession: Bool
    public var priority: Int
    public var maxRetries: Int
    public var attempt: Int
    public var runAfter: Instant?
    public var onComplete: String?
    public var concurrencyKey: String?
    public var workerID: String?
    public var cancelRequestedAt: Instant?
    public var createdAt: Instant
    public var startedAt: Instant?
    public var finishedAt: Instant?
    public var result: String?
    public var error: String?
    public var statusReason: String?
    public var progress: Progress
    public var run: RunHandle
    /// How long the agent really ran, in milliseconds, once the task ended: `finished_at - started_at`,
    /// less any time an ended session waited for a worker to adopt it after its own worker died.
    public var runMs: Int64? = nil

    /// Progress as the polling worker last saw it.
    public struct Progress: Sendable, Equatable {
        public var messageCount = 0
        public var toolCalls = 0
        public var lastTool: String?
        public var lastMessage: String?
        public var lastMessageAt: Instant?
        public var lastProgressAt: Instant?
        /// The session's todo list as JSON (`[{"content":…,"status":…}]`).
        public var todos: String?
        public init() {}
    }

    /// Where the running session is, so a worker can find it again after a crash.
    public struct RunHandle: Sendable, Equatable {
        public var host: String?
        public var pid: Int32?
        /// The process's start time in clock ticks since boot (/proc/PID/stat field 22): with the pid,
        /// it tells a live session from a reused pid.
        public var pidStart: Int64?
        public var directory: String?
        public var logOffset: Int64 = 0
        /// Backend-specific JSON (for HTTP backends: the server and its session id).
        public var handle: String?
        public init() {}
    }

    /// The model to run: the task's own, else nil (the agent's default is applied when it starts).
    public var modelRef: ModelRef? { model.flatMap { try? ModelRef(parsing: $0) } }

    public init(seq: Int64, id: String, status: TaskStatus, description: String, prompt: String, agent: String, model: String? = nil, modelKey: String, parentID: String? = nil, sessionID: String? = nil, continuesSession: Bool, priority: Int, maxRetries: Int, attempt: Int, runAfter: Instant? = nil, onComplete: String? = nil, concurrencyKey: String? = nil, workerID: String? = nil, cancelRequestedAt: Instant? = nil, createdAt: Instant, startedAt: Instant? = nil, finishedAt: Instant? = nil, result: String? = nil, error: String? = nil, statusReason: String? = nil, progress: Progress, run: RunHandle, runMs: Int64? = nil) {
        self.seq = seq
        self.id = id
        self.status = status
        self.description = description
        self.prompt = prompt
        self.agent = agent
        self.model = model
        self.modelKey = modelKey
        self.parentID = parentID
        self.sessionID = sessionID
        self.continuesSession = continuesSession
        self.priority = priority
        self.maxRetries = maxRetries
        self.attempt = attempt
        self.runAfter = runAfter
        self.onComplete = onComplete
        self.concurrencyKey = concurrencyKey
        self.workerID = workerID
        self.cancelRequestedAt = cancelRequestedAt
        self.createdAt = createdAt
        self.startedAt = startedAt
        self.finishedAt = finishedAt
        self.result = result
        self.error = error
        self.statusReason = statusReason
        self.progress = progress
        self.run = run
        self.runMs = runMs
    }
}

/// What `bgq enqueue` asks for.
public struct NewTask: Sendable, Equatable {
    public var description: String
    public var prompt: String
    public var agent: String
    public var model: String?
    public var parentID: String?
    public var sessionID: String?
    public var priority: Int = 0
    public var maxRetries: Int = 0
    public var onComplete: String?

    public init(description: String, prompt: String, agent: String, model: String? = nil, parentID: String? = nil,
                sessionID: String? = nil, priority: Int = 0, maxRetries: Int = 0, onComplete: String? = nil) {
        self.description = description
        self.prompt = prompt
        self.agent = agent
        self.model = model
        self.parentID = parentID
        self.sessionID = sessionID
        self.priority = priority
        self.maxRetries = maxRetries
        self.onComplete = onComplete
    }

    /// What limits are looked up by: the model, or the agent name when there is none.
    public var modelKey: String { model ?? agent }
}

/// One recorded transition.
public struct TaskEvent: Sendable, Equatable {
    public var id: Int64
    public var taskID: String
    public var at: Instant
    public var from: TaskStatus?
    public var to: TaskStatus
    public var workerID: String?
    public var attempt: Int
    public var reason: String?

    public init(id: Int64, taskID: String, at: Instant, from: TaskStatus? = nil, to: TaskStatus, workerID: String? = nil, attempt: Int, reason: String? = nil) {
        self.id = id
        self.taskID = taskID
        self.at = at
        self.from = from
        self.to = to
        self.workerID = workerID
        self.attempt = attempt
        self.reason = reason
    }
}

/// An agent session (possibly serving several tasks, one after the other).
public struct SessionRecord: Sendable, Equatable {
    public var id: String
    public var agent: String
    public var backend: String
    public var externalID: String?
    public var createdAt: Instant
    /// The model of the session's newest task: a continuation runs on it (and counts against its limit)
    /// unless it names another.
    public var model: String? = nil

    public init(id: String, agent: String, backend: String, externalID: String? = nil, createdAt: Instant, model: String? = nil) {
        self.id = id
        self.agent = agent
        self.backend = backend
        self.externalID = externalID
        self.createdAt = createdAt
        self.model = model
    }
}

/// One message of a session, as stored.
public struct SessionMessage: Sendable, Equatable {
    public enum Role: String, Sendable, CaseIterable { case user, assistant, tool, system, stderr }
    public enum Kind: String, Sendable, CaseIterable {
        case text, reasoning, toolUse = "tool_use", toolResult = "tool_result", todo, result, error, output
    }
    public var role: Role
    public var kind: Kind
    public var tool: String?
    public var content: String
    public var at: Instant

    public init(role: Role, kind: Kind, tool: String? = nil, content: String, at: Instant) {
        self.role = role
        self.kind = kind
        self.tool = tool
        self.content = content
        self.at = at
    }

    /// Real output, as the original counts it: assistant or tool text, reasoning, or a tool call.
    public var isRealOutput: Bool {
        switch (role, kind) {
        case (.assistant, .text), (.assistant, .reasoning), (.assistant, .toolUse), (.tool, _), (.assistant, .result), (.assistant, .output):
            !content.isEmpty || kind == .toolUse
        default: false
        }
    }
}

/// A worker process row.
public struct WorkerRecord: Sendable, Equatable {
    public var id: String
    public var name: String
    public var host: String
    public var pid: Int32
    public var startedAt: Instant
    public var heartbeatAt: Instant
    public var maxSessions: Int
    public var state: WorkerState
    public var stoppedAt: Instant?
    public var reason: String?
    /// Running tasks it owns (filled in by listings).
    public var runningTasks: Int = 0
    /// Where its exec sessions keep their files (nil: the default for the store's location).
    public var runsDirectory: String?

    public init(id: String, name: String, host: String, pid: Int32, startedAt: Instant, heartbeatAt: Instant, maxSessions: Int, state: WorkerState, stoppedAt: Instant? = nil, reason: String? = nil, runningTasks: Int = 0, runsDirectory: String? = nil) {
        self.id = id
        self.name = name
        self.host = host
        self.pid = pid
        self.startedAt = startedAt
        self.heartbeatAt = heartbeatAt
        self.maxSessions = maxSessions
        self.state = state
        self.stoppedAt = stoppedAt
        self.reason = reason
        self.runningTasks = runningTasks
        self.runsDirectory = runsDirectory
    }
}

/// Filters for `bgq list`.
public struct TaskFilter: Sendable {
    public var statuses: [TaskStatus] = []
    public var agent: String?
    public var model: String?
    public var parentID: String?
    public var limit: Int = 50
    public init() {}
}

/// Per concurrency key: how many run, the limit, and how many wait.
public struct KeyUsage: Sendable, Equatable {
    public var key: String
    public var running: Int
    public var limit: Int
    public var pending: Int

    public init(key: String, running: Int, limit: Int, pending: Int) {
        self.key = key
        self.running = running
        self.limit = limit
        self.pending = pending
    }
}
