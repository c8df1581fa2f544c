
/// What a worker needs to start one session.
public struct StartRequest {
    public var task: TaskRecord
    public var agent: AgentDefinition
    public var preset: AgentPreset
    /// The task's model, else the agent's default.
    public var model: ModelRef?
    /// bgq's session id: new, or the continued session's.
    public var sessionID: String
    /// The agent's own id of the continued session (`--resume ID`), when continuing.
    public var resumeExternalID: String?
    /// Where per-run files go (exec: logs and the exit status).
    public var runsDirectory: String
    public var host: String

    public init(task: TaskRecord, agent: AgentDefinition, preset: AgentPreset, model: ModelRef? = nil, sessionID: String, resumeExternalID: String? = nil, runsDirectory: String, host: String) {
        self.task = task
        self.agent = agent
        self.preset = preset
        self.model = model
        self.sessionID = sessionID
        self.resumeExternalID = resumeExternalID
        self.runsDirectory = runsDirectory
        self.host = host
    }
}

/// A session the worker is polling, with the backend's memory of it.
public final class ActiveSession {
    public var task: TaskRecord
    public let preset: AgentPreset
    public var transcript = AgentTranscript()
    /// The transcript was built from the start of the output (false after an adoption mid-run).
    public var transcriptIsWhole: Bool
    public var logOffset: Int64
    public var memory = RuleMemory()
    public var startedMonotonic: Int64
    public var lastProgressMonotonic: Int64
    public var nextPollMonotonic: Int64
    /// Set when the worker reaped this session's process (its own child).
    public var exitStatus: ChildExit?
    /// The agent's definition as the worker last loaded it (HTTP backends read their URL and key from it).
    public var agent: AgentDefinition?
    /// What an HTTP backend remembers of this session between polls.
    public var backendState: AnyObject?
    /// What the worker last logged as keeping the session from being checked: said once per outage, not per poll.
    public var reportedProblem: String?

    public init(task: TaskRecord, preset: AgentPreset, startedMonotonic: Int64, lastProgressMonotonic: Int64, adopted: Bool) {
        self.task = task
        self.preset = preset
        self.transcriptIsWhole = !adopted
        self.logOffset = task.run.logOffset
        self.startedMonotonic = startedMonotonic
        self.lastProgressMonotonic = lastProgressMonotonic
        self.nextPollMonotonic = 0
        self.transcript.messageCount = adopted ? task.progress.messageCount : 0
    }
}

/// How a reaped child process ended.
public enum ChildExit: Sendable, Equatable {
    case exited(Int32)
    case signaled(Int32)
}

/// One poll's findings.
public struct PollResult {
    public var status: SessionStatus
    public var newMessages: [SessionMessage]
    /// Something changed since the last poll (output, messages, tool calls): resets the stale timer.
    public var madeProgress: Bool
    /// What keeps the session from being checked right now (e.g. its server is unreachable): the error
    /// the task fails with if this lasts until the stale timeout.
    public var problem: String?
    /// Waiting on something with its own timeout (a provider call in flight, a scheduled retry): holds
    /// the stale timer off without claiming progress (nothing is written).
    public var waiting: Bool

    public init(status: SessionStatus, newMessages: [SessionMessage], madeProgress: Bool, problem: String? = nil, waiting: Bool = false) {
        self.status = status
        self.newMessages = newMessages
        self.madeProgress = madeProgress
        self.problem = problem
        self.waiting = waiting
    }
}

/// Whether a dead worker's session can be taken over.
public enum AdoptionCheck: Sendable, Equatable {
    /// Still running (or finished with its outcome recorded): adopt and poll on.
    case adoptable
    /// Cannot be checked from here (another host): leave it to a worker that can.
    case unknown
    /// Gone without a trace of its outcome.
    case gone
}

/// A place agent sessions run: a subprocess, an HTTP server, a provider's API.
/// The worker's completion rules see only `PollResult` and never know which backend they talk to.
public protocol SessionBackend: AnyObject {
    /// Starts the session and says how to find it again.
    func start(_ request: StartRequest) throws -> SessionStart
    /// Reads what is new and the session's status.
    func poll(_ session: ActiveSession) -> PollResult
    /// The final answer once the session ended or went idle for good.
    func finalResult(_ session: ActiveSession) -> (text: String, isError: Bool)?
    /// The last error output, to explain a failure.
    func failureDetail(_ session: ActiveSession) -> String?
    /// Stops the session (cancel, stale, TTL). Must not block for long.
    func abort(_ task: TaskRecord, agent: AgentDefinition?)
    /// Whether a dead worker's running task can be adopted.
    func adoptionCheck(_ task: TaskRecord, host: String) -> AdoptionCheck
    /// Called once per poll round with the sessions about to be polled, so a backend can ask its
    /// server for all of them at once (OpenCode's GET /session/status) rather than once per session.
    func beginPollRound(_ sessions: [ActiveSession])
    /// Tasks whose session changed on another thread since the last call (a provider's reply came
    /// back): the worker polls them at once.
    func takeReadyTaskIDs() -> [String]

    // MARK: Capabilities: what only some backends have. The defaults do nothing, so a backend without
    // processes or files (noop, HTTP) needs none of them, and the scheduler never asks which backend it has.

    /// The worker reaped a child process (its own agents are children of the worker): a backend that
    /// started `pid` remembers how it ended, for when the exit file could not be written.
    func childExited(pid: Int32, exit: ChildExit)
    /// A dead worker's running task with no session recorded: did its worker start the session anyway
    /// (it died between starting and recording it)? Decides between adopting it and running it again.
    func unrecordedStart(_ task: TaskRecord, runsDirectory: String, host: String) -> UnrecordedStart
    /// Whether an aborted session may outlive `abort` (a process that ignores SIGINT), so the worker
    /// follows up with `escalateAbort` after the grace period while this stays true.
    func needsEscalation(_ task: TaskRecord) -> Bool
    /// The next, harder step of an abort (SIGTERM, then SIGKILL).
    func escalateAbort(_ task: TaskRecord, signal: Int32)
    /// The run's error log and its last lines, when the backend keeps one (to explain why workers died).
    func lastLog(_ task: TaskRecord) -> RunLog?
    /// When the session ended, if it has and the backend can tell: a session adopted after it ended
    /// does not count the wait for adoption as run time.
    func runEndedAt(_ task: TaskRecord) -> Instant?
    /// The tokens spent by sessions that ended since the last call (a provider's API reports them).
    func takeUsageReports() -> [SessionUsage]
}

extension SessionBackend {
    public func beginPollRound(_ sessions: [ActiveSession]) {}
    public func takeReadyTaskIDs() -> [String] { [] }
    public func childExited(pid: Int32, exit: ChildExit) {}
    public func unrecordedStart(_ task: TaskRecord, runsDirectory: String, host: String) -> UnrecordedStart { .recorded }
    public func needsEscalation(_ task: TaskRecord) -> Bool { false }
    public func escalateAbort(_ task: TaskRecord, signal: Int32) {}
    public func lastLog(_ task: TaskRecord) -> RunLog? { nil }
    public func runEndedAt(_ task: TaskRecord) -> Instant? { nil }
    public func takeUsageReports() -> [SessionUsage] { [] }
}

/// What a session's calls spent, as the provider reported it (nil: not reported).
public struct SessionUsage: Sendable, Equatable {
    public var taskID: String
    public var inputTokens: Int?
    public var outputTokens: Int?

    public init(taskID: String, inputTokens: Int?, outputTokens: Int?) {
        self.taskID = taskID
        self.inputTokens = inputTokens
        self.outputTokens = outputTokens
    }
}

/// What became of a start that a dead worker never recorded.
public enum UnrecordedStart: Equatable, Sendable {
    /// The start was recorded (or the backend keeps nothing outside the database): adopt as usual.
    case recorded
    /// The session was started: record this handle and adopt it rather than run the task twice.
    case found(TaskRecord.RunHandle)
    /// Traces of a start exist but no session yet: it may be starting this instant, look again shortly.
    case mayBeStarting
    /// Nothing was started: the task may safely run again.
    case notStarted
}

/// A run's error log: where it is, and its last lines (nil when empty).
public struct RunLog: Equatable, Sendable {
    public var path: String
    public var tail: String?

    public init(path: String, tail: String?) {
        self.path = path
        self.tail = tail
    }
}

/// How a try to deliver (or find) a notice in a parent session went.
public enum NoticeDelivery: Equatable, Sendable {
    /// Sent now, or the parent session already holds it.
    case sent
    /// The parent session does not hold it (yet).
    case absent
    /// The parent session is not on its server: the notice can never be delivered.
    case notFound(String)
    /// The server could not be reached or answered with a passing error: try again later.
    case transient(String)
    /// Refused for good (a bad password, a malformed answer).
    case failed(String)
}

/// Delivers completion notices into the session that delegated a task (OpenCode's parent sessions).
public protocol NoticeTransport: AnyObject {
    /// Whether the parent session already holds a notice: one whose text starts with `header` and
    /// contains `marker` (after a worker died while sending it). `.sent` when it does, `.absent` when not.
    func parentHasNotice(_ parent: String, on server: OpenCodeServer, containing marker: String, header: String,
                         agents: [AgentDefinition]) -> NoticeDelivery
    /// Sends the text into the parent session; `wake` asks the parent's agent to answer (the last notice).
    /// `agents` are the worker's agents, for the server's password.
    func send(_ text: String, to parent: String, on server: OpenCodeServer, wake: Bool, agents: [AgentDefinition]) -> NoticeDelivery
}

/// Where a program puts the session backends it has (the scheduler's `BackendRegistry`), so that the
/// backends' target can install itself without knowing the scheduler.
public protocol BackendRegistering: AnyObject {
    /// Makes `kind`'s backend with `make` when a task first needs it.
    func register(_ kind: AgentPreset.Backend, _ make: @escaping () -> SessionBackend)
    /// Parent notices go through `kind`'s backend, which must be a `NoticeTransport`.
    func deliverNotices(through kind: AgentPreset.Backend)
    /// Run when the worker stops (e.g. to stop an HTTP client's event loop, if one was made).
    func onShutdown(_ action: @escaping () -> Void)
}
