
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
}

extension SessionBackend {
    public func beginPollRound(_ sessions: [ActiveSession]) {}
    public func takeReadyTaskIDs() -> [String] { [] }
}
