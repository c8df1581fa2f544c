import BGQCore
import BGQSystem
import Foundation

/// What the worker's services share: the store and clock, who this worker is, the configuration it
/// runs on, and the sessions it holds. One per worker; every service reads and changes it on the
/// worker's one thread.
final class WorkerContext {
    let store: any QueueStore
    let clock: Clock
    let options: WorkerOptions
    let log: WorkerLog
    /// The session backends, made on first use (an exec-only worker never opens a socket or loads libssl).
    let backends: BackendRegistry
    /// Where this worker's exec sessions and hooks keep their files.
    let runsDirectory: String
    let host = ProcessSupport.hostName
    var workerID = ""
    var settings = Settings()
    var registry = AgentRegistry(userAgents: [])
    /// The sessions this worker polls, by task id.
    var sessions: [String: ActiveSession] = [:]
    /// Claim at the next tick without waiting for a change (a slot was freed, or more may be pending).
    var wantClaim = true
    /// Tells the loop when anything was committed (made at registration).
    var feed: ChangeFeed?

    init(store: any QueueStore, options: WorkerOptions, backends: BackendRegistry, clock: Clock) {
        self.store = store
        self.options = options
        self.clock = clock
        self.log = WorkerLog(format: options.logFormat, clock: clock)
        self.backends = backends
        self.runsDirectory = options.runsDirectory ?? store.location.defaultRunsDirectory()
    }

    var monotonic: Int64 { clock.monotonicMilliseconds() }
    var pollIntervalMs: Int64 { options.pollIntervalMs ?? settings.pollIntervalMs }
    var rules: CompletionRules { CompletionRules(settings: settings) }

    func preset(forAgent name: String) -> AgentPreset? {
        registry.agent(named: name).flatMap { AgentPreset.named($0.preset) }
    }

    func backend(for preset: AgentPreset) -> SessionBackend { backends.backend(for: preset) }

    /// Agents change rarely: reloaded at each maintenance pass, and when a task names one not known yet.
    func reloadAgents() throws {
        registry = AgentRegistry(userAgents: try store.userAgents())
    }

    /// A failure becomes a retry while the task's `--retries` allow, else an error.
    func outcomeForFailure(_ task: TaskRecord, error: String) -> TaskOutcome {
        guard task.attempt <= task.maxRetries else { return .failed(error: error) }
        let delay = settings.retryBackoffMs << min(Int64(task.attempt - 1), 10)
        return .requeued(reason: "attempt \(task.attempt) failed: \(error.prefix(300)); retry \(task.attempt)/\(task.maxRetries) in \(delay < 1000 ? "\(delay)ms" : formatDuration(milliseconds: delay))", delayMs: delay)
    }

    func firstLine(_ text: String) -> String {
        String(text.split(separator: "\n", maxSplits: 1).first ?? "").prefix(300).description
    }
}
