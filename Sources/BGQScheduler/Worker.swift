import BGQCore
import BGQSystem
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
    /// Reap any exited child (one waitpid(-1) covers every session). A worker embedded in another
    /// process (the tests) sets it false and waits only for its own agents and hooks.
    public var ownsAllChildren = true
    /// Where exec sessions and hooks keep their files on this host; nil: the store location's default
    /// (`<file>.runs` beside a SQLite file).
    public var runsDirectory: String?
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
    let store: any QueueStore
    let clock: Clock
    var options: WorkerOptions
    let log: WorkerLog
    /// The session backends, made on first use (an exec-only worker never opens a socket or loads libssl).
    let backends: BackendRegistry
    let host = ProcessSupport.hostName
    public private(set) var workerID = ""
    var settings = Settings()
    /// Stored settings that contradict each other, already reported.
    var rejectedSettings: Settings?
    var registry = AgentRegistry(userAgents: [])
    var sessions: [String: ActiveSession] = [:]
    var aborts: [PendingAbort] = []
    /// Tells the loop when anything was committed (made at `register`).
    var feed: ChangeFeed?
    var wantClaim = true
    var stopping = false
    var handledSignals = 0
    /// When the last heartbeat was written (monotonic): a worker whose heartbeat is old may have been
    /// declared dead, so it checks before starting anything.
    var lastHeartbeatMonotonic: Int64 = 0
    /// Orphaned attempts whose agent was not found yet though their files exist: first miss (monotonic).
    var unfoundStarts: [String: Int64] = [:]
    /// Completion hooks this worker runs, by pid.
    var runningHooks: [Int32: (hook: HookRun, deadline: Int64)] = [:]

    struct PendingAbort {
        var task: TaskRecord
        let backend: SessionBackend
        var nextSignal: Int32
        var dueMonotonic: Int64
    }

    /// - Parameter backends: the session backends this worker may use (`bgq worker` installs them all).
    public init(store: any QueueStore, options: WorkerOptions, backends: BackendRegistry, clock: Clock = SystemClock()) {
        self.store = store
        self.options = options
        self.clock = clock
        self.log = WorkerLog(format: options.logFormat, clock: clock)
        self.backends = backends
        self.runsDirectory = options.runsDirectory ?? store.location.defaultRunsDirectory()
    }

    /// Where this worker's exec sessions and hooks keep their files.
    let runsDirectory: String

    var pollIntervalMs: Int64 { options.pollIntervalMs ?? settings.pollIntervalMs }
    var rules: CompletionRules { CompletionRules(settings: settings) }
    var monotonic: Int64 { clock.monotonicMilliseconds() }

    // MARK: - Life cycle

    /// Registers the worker and loads settings, limits and agents.
    public func register() throws {
        settings = try store.settings()
        registry = AgentRegistry(userAgents: try store.userAgents())
        workerID = try store.registerWorker(WorkerRegistration(name: options.name, host: host, pid: getpid(),
                                                               maxSessions: options.maxSessions, runsDirectory: runsDirectory))
        feed = try store.changeFeed()
        lastHeartbeatMonotonic = monotonic
        log.workerID = workerID
        log.event("started", "worker started (name \(options.name), pid \(getpid()), host \(host), max sessions \(options.maxSessions), poll \(pollIntervalMs) ms, db \(store.location))")
    }

    /// Runs until stopped by a signal (or, with `exitWhenIdle`, until there is nothing left to do).
    ///
    /// A database that cannot take a write for a while (locked, disk full, I/O error) is waited out:
    /// the worker logs it, backs off and tries again, and its sessions keep running meanwhile. A
    /// database file that was deleted or replaced stops the worker with an error.
    public func run() throws {
        WakeUp.prepare()
        StopSignals.install()
        ProcessSupport.markInheritedDescriptorsCloseOnExec()
        // Pooled connections closed and the event loop stopped, if an HTTP backend made them.
        defer { backends.shutdown() }
        try register()
        reapDeadWorkers()
        var timers = Timers(now: monotonic, settings: settings, reapIntervalMs: reapIntervalMs)
        var failures = 0
        while true {
            do {
                if try tick(&timers) { return }
                if failures > 0 {
                    log.event("recovered", "the database takes writes again")
                    failures = 0
                }
            } catch BGQError.database(let problem) where problem.isTransient {
                failures += 1
                let delay = min(5000, 100 << min(failures, 6))
                if failures == 1 || failures % 20 == 0 {
                    log.event("waiting", "\(problem.message); trying again in \(delay) ms (sessions keep running)")
                }
                usleep(useconds_t(delay * 1000))
            } catch BGQError.database(let problem) where problem.kind == .replaced {
                log.event("stopped", "\(problem.message); stopping")
                throw BGQError.database(problem)
            }
        }
    }

    struct Timers {
        var nextHeartbeat: Int64
        var nextMaintenance: Int64
        var nextReap: Int64
        init(now: Int64, settings: Settings, reapIntervalMs: Int64) {
            nextHeartbeat = now + settings.heartbeatIntervalMs
            nextMaintenance = now
            nextReap = now + reapIntervalMs
        }
    }

    /// One pass of the loop; returns true when the worker should exit.
    func tick(_ timers: inout Timers) throws -> Bool {
        if try handleSignals() { return true }
        let now = monotonic
        collectExitedChildren()
        if now >= timers.nextHeartbeat {
            timers.nextHeartbeat = now + settings.heartbeatIntervalMs
            try heartbeat()
        }
        let changed = try feed?.poll() ?? true
        if changed { try applyCancelRequests() }
        if changed || now >= timers.nextMaintenance {
            try startPendingHooks()
            try deliverParentNotices()
        }
        if now >= timers.nextMaintenance {
            timers.nextMaintenance = now + pollIntervalMs
            try maintenance()
            wantClaim = true
        }
        if now >= timers.nextReap || (changed && now >= timers.nextReap - reapIntervalMs + 1000) {
            timers.nextReap = now + reapIntervalMs
            reapDeadWorkers()
        }
        if !stopping && (changed || wantClaim) {
            wantClaim = false
            try claimAndStart()
        }
        markReadySessions()
        try pollDueSessions()
        escalateAborts()
        killOverdueHooks()
        if options.exitWhenIdle, sessions.isEmpty, aborts.isEmpty, !wantClaim, try store.activeTaskIDs(parentID: nil).isEmpty {
            try startPendingHooks()  // the last transitions' hooks run before an idle worker exits
        }
        if options.exitWhenIdle, sessions.isEmpty, aborts.isEmpty, runningHooks.isEmpty, !wantClaim,
           try store.activeTaskIDs(parentID: nil).isEmpty {
            _ = try store.setWorkerState(workerID, to: .stopped, reason: "nothing left to do")
            log.event("stopped", "nothing left to do; worker stopped")
            return true
        }
        if !wantClaim { sleepUntilNextWake() }
        return false
    }

    var reapIntervalMs: Int64 { max(500, min(settings.leaseTimeoutMs / 3, 10_000)) }

    func sleepUntilNextWake() {
        let now = monotonic
        let nextPoll = sessions.values.map(\.nextPollMonotonic).min() ?? Int64.max
        let wait = max(1, min(options.wakeIntervalMs, nextPoll - now))
        WakeUp.sleep(milliseconds: wait)
    }

    /// Settings may change while the worker runs; the queued TTL is enforced by whoever notices first.
    func maintenance() throws {
        let loaded = try store.settings()
        do {
            try loaded.validate()
            settings = loaded
        } catch {
            // Written around `bgq settings set`: keep the settings this worker runs on, and say so once.
            if rejectedSettings != loaded { log.event("warning", "settings not applied: \(error)") }
            rejectedSettings = loaded
        }
        registry = AgentRegistry(userAgents: try store.userAgents())
        for session in sessions.values { session.agent = registry.agent(named: session.task.agent) ?? session.agent }
        try store.performMaintenance()
        try RunFolderCleaner(store: store, runsDirectory: runsDirectory).removeExpired(now: clock.now(), retentionMs: settings.runRetentionMs)
        for id in try store.expireQueuedTasks(ttlMs: settings.taskTTLMs) {
            log.event("error", task: id, "pending → error: Task timed out while queued (\(spelledDuration(milliseconds: settings.taskTTLMs)))")
        }
    }

    /// First SIGTERM/SIGINT: stop claiming; hand sessions over (or, with --drain, let them finish).
    /// A second SIGINT while draining aborts the sessions and requeues their tasks. Returns true to exit.
    func handleSignals() throws -> Bool {
        let received = StopSignals.received
        guard received > handledSignals else {
            if stopping && options.drain && sessions.isEmpty {
                _ = try store.setWorkerState(workerID, to: .stopped, reason: "drained")
                log.event("stopped", "drained; worker stopped")
                return true
            }
            return false
        }
        handledSignals = received
        let name = StopSignals.name(StopSignals.last)
        if !stopping && options.drain {
            stopping = true
            _ = try store.setWorkerState(workerID, to: .stopping, reason: "\(name): draining")
            log.event("stopping", "\(name): no more claims; waiting for \(sessions.count) session(s) to finish (send SIGINT again to abort them and requeue)")
            return false
        }
        if stopping && options.drain {
            let items = sessions.values.map {
                TaskFinish(task: $0.task, outcome: .requeued(reason: "worker interrupted (second \(name)); session aborted, task requeued", delayMs: 0))
            }
            try writeFinishes(items, abortingIDs: Set(items.map(\.task.id)))
            _ = try store.setWorkerState(workerID, to: .stopped, reason: "\(name) twice: sessions aborted and requeued")
            escalateAbortsUntilDone()
            return true
        }
        // Hand over: the sessions keep running and the next worker adopts them without running them again.
        _ = try store.setWorkerState(workerID, to: .stopped, reason: "\(name): \(sessions.count) session(s) handed over for adoption")
        log.event("stopped", "\(name): worker stopped; \(sessions.count) running session(s) handed over for adoption")
        escalateAbortsUntilDone()
        return true
    }

    /// Writes the heartbeat; a lost row means this worker was declared dead meanwhile. Returns false then.
    @discardableResult
    func heartbeat() throws -> Bool {
        let before = monotonic
        guard try store.heartbeat(workerID: workerID) == .owned else {
            try loseOwnership()
            return false
        }
        lastHeartbeatMonotonic = before
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
        let reaped = options.ownsAllChildren
            ? ProcessSupport.reapChildren()
            : ProcessSupport.reapChildren(among: sessions.values.compactMap(\.task.run.pid) + Array(runningHooks.keys))
        guard !reaped.isEmpty else { return }
        // One index per batch of exits, not a scan of every session per exit (1,000 sessions are polled).
        var byPid: [Int32: ActiveSession] = [:]
        for session in sessions.values { if let pid = session.task.run.pid { byPid[pid] = session } }
        let made = backends.made
        for (pid, exit) in reaped {
            for backend in made { backend.childExited(pid: pid, exit: exit) }
            if let running = runningHooks.removeValue(forKey: pid) {
                finishHook(running.hook, exit: exit)
                continue
            }
            if let session = byPid[pid] {
                session.exitStatus = exit
                session.nextPollMonotonic = 0
            }
        }
    }
}
