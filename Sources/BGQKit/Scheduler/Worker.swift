import Foundation

/// How a worker runs.
public struct WorkerOptions: Sendable {
    public var name: String
    /// Most sessions this worker holds at once.
    public var maxSessions = 16
    /// Overrides the database's poll interval for this worker.
    public var pollIntervalMs: Int64?
    /// On SIGTERM/SIGINT, wait for this worker's sessions to finish instead of handing them over.
    public var drain = false
    public var logFormat: WorkerLog.Format = .text
    /// How often the loop wakes to look for changes (PRAGMA data_version) and exited children.
    public var wakeIntervalMs: Int64 = 50
    /// Stop when there is nothing left to do (no session, no pending task): for scripts and benchmarks.
    public var exitWhenIdle = false
    public init(name: String) { self.name = name }
}

/// One `bgq worker` process: claims pending tasks under the limits, runs their sessions, polls them,
/// writes every transition, reaps dead workers and adopts their sessions.
///
/// Single-threaded: one loop, one SQLite connection. It wakes every `wakeIntervalMs` to check
/// `PRAGMA data_version` (did another process commit?) and reap exited children; it claims at once
/// after a local completion or a change seen in the database, so a freed slot is handed off in
/// milliseconds without busy polling.
public final class Worker {
    let store: SQLiteStore
    let clock: Clock
    var options: WorkerOptions
    let log: WorkerLog
    let exec: ExecBackend
    let noop = NoopBackend()
    let host = ProcessSupport.hostName
    public private(set) var workerID = ""
    var settings = Settings()
    var registry = AgentRegistry(userAgents: [])
    var sessions: [String: ActiveSession] = [:]
    var aborts: [PendingAbort] = []
    var lastDataVersion: Int64 = -1
    var wantClaim = true
    var stopping = false
    var handledSignals = 0

    struct PendingAbort {
        var task: TaskRecord
        var nextSignal: Int32
        var dueMonotonic: Int64
    }

    public init(store: SQLiteStore, options: WorkerOptions, clock: Clock = SystemClock(), environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.store = store
        self.options = options
        self.clock = clock
        self.log = WorkerLog(format: options.logFormat, clock: clock)
        self.exec = ExecBackend(environment: environment)
    }

    var pollIntervalMs: Int64 { options.pollIntervalMs ?? settings.pollIntervalMs }
    var rules: CompletionRules { CompletionRules(settings: settings) }
    var monotonic: Int64 { clock.monotonicMilliseconds() }

    // MARK: - Life cycle

    /// Registers the worker and loads settings, limits and agents.
    public func register() throws {
        settings = try store.settings()
        registry = AgentRegistry(userAgents: try store.userAgents())
        workerID = try store.registerWorker(name: options.name, host: host, pid: getpid(), maxSessions: options.maxSessions)
        log.workerID = workerID
        log.event("started", "worker started (name \(options.name), pid \(getpid()), host \(host), max sessions \(options.maxSessions), poll \(pollIntervalMs) ms, db \(store.path))")
    }

    /// Runs until stopped by a signal (or, with `exitWhenIdle`, until there is nothing left to do).
    public func run() throws {
        StopSignals.install()
        try register()
        reapDeadWorkers()
        var nextHeartbeat = monotonic + settings.heartbeatIntervalMs
        var nextMaintenance = monotonic
        var nextReap = monotonic + reapIntervalMs
        while true {
            if try handleSignals() { return }
            let now = monotonic
            collectExitedChildren()
            if now >= nextHeartbeat {
                nextHeartbeat = now + settings.heartbeatIntervalMs
                if try store.heartbeat(workerID: workerID) == .lost { try loseOwnership() }
            }
            let version = try store.connection.dataVersion()
            let changed = version != lastDataVersion
            lastDataVersion = version
            if changed { try applyCancelRequests() }
            if now >= nextMaintenance {
                nextMaintenance = now + pollIntervalMs
                try maintenance()
                wantClaim = true
            }
            if now >= nextReap || (changed && now >= nextReap - reapIntervalMs + 1000) {
                nextReap = now + reapIntervalMs
                reapDeadWorkers()
            }
            if !stopping && (changed || wantClaim) {
                wantClaim = false
                try claimAndStart()
            }
            try pollDueSessions()
            escalateAborts()
            if options.exitWhenIdle, sessions.isEmpty, aborts.isEmpty, !wantClaim, try store.activeTaskIDs(parentID: nil).isEmpty {
                try store.setWorkerState(workerID, .stopped, reason: "nothing left to do")
                log.event("stopped", "nothing left to do; worker stopped")
                return
            }
            if !wantClaim { sleepUntilNextWake() }
        }
    }

    var reapIntervalMs: Int64 { max(500, min(settings.leaseTimeoutMs / 3, 10_000)) }

    func sleepUntilNextWake() {
        let now = monotonic
        let nextPoll = sessions.values.map(\.nextPollMonotonic).min() ?? Int64.max
        let wait = max(1, min(options.wakeIntervalMs, nextPoll - now))
        usleep(useconds_t(wait * 1000))
    }

    /// Settings may change while the worker runs; the queued TTL is enforced by whoever notices first.
    func maintenance() throws {
        settings = try store.settings()
        for id in try store.expireQueuedTasks(ttlMs: settings.taskTTLMs) {
            log.event("error", task: id, "pending → error: Task timed out while queued (\(settings.taskTTLMs / 60_000) minutes)")
        }
    }

    /// First SIGTERM/SIGINT: stop claiming; hand sessions over (or, with --drain, let them finish).
    /// A second SIGINT while draining aborts the sessions and requeues their tasks. Returns true to exit.
    func handleSignals() throws -> Bool {
        let received = StopSignals.received
        guard received > handledSignals else {
            if stopping && options.drain && sessions.isEmpty {
                try store.setWorkerState(workerID, .stopped, reason: "drained")
                log.event("stopped", "drained; worker stopped")
                return true
            }
            return false
        }
        handledSignals = received
        let name = StopSignals.name(StopSignals.last)
        if !stopping && options.drain {
            stopping = true
            try store.setWorkerState(workerID, .stopping, reason: "\(name): draining")
            log.event("stopping", "\(name): no more claims; waiting for \(sessions.count) session(s) to finish (send SIGINT again to abort them and requeue)")
            return false
        }
        if stopping && options.drain {
            let items = sessions.values.map { ($0.task, TaskOutcome.requeued(reason: "worker interrupted (second \(name)); session aborted, task requeued", delayMs: 0), Optional<ProgressUpdate>.none) }
            try writeFinishes(items, abortingIDs: Set(items.map(\.0.id)))
            try store.setWorkerState(workerID, .stopped, reason: "\(name) twice: sessions aborted and requeued")
            escalateAbortsUntilDone()
            return true
        }
        // Hand over: the sessions keep running and the next worker adopts them without running them again.
        try store.setWorkerState(workerID, .stopped, reason: "\(name): \(sessions.count) session(s) handed over for adoption")
        log.event("stopped", "\(name): worker stopped; \(sessions.count) running session(s) handed over for adoption")
        escalateAbortsUntilDone()
        return true
    }

    /// The database says this worker is dead (it was paused or cut off past the lease timeout): other
    /// workers own its tasks now. Forget them without touching them, and start afresh under a new id.
    func loseOwnership() throws {
        log.event("lost", "this worker was declared dead (silent longer than the lease timeout, e.g. paused); dropping \(sessions.count) session(s) without finalizing them")
        sessions.removeAll()
        try register()
    }

    /// Reaps exited child processes; their sessions are polled at once (fast hand-off).
    func collectExitedChildren() {
        for (pid, exit) in ProcessSupport.reapChildren() {
            exec.reapedExits[pid] = exit
            if let session = sessions.values.first(where: { $0.task.run.pid == pid }) {
                session.exitStatus = exit
                session.nextPollMonotonic = 0
            }
        }
        if exec.reapedExits.count > 10_000 { exec.reapedExits.removeAll() }
    }
}
