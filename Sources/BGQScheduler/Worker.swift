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
/// Single-threaded: one loop, one database connection. The loop is all this type does; each job is a
/// small service (claimer, session poller, reaper, hook runner, notice sender, maintenance) sharing one
/// `WorkerContext`. It wakes every `wakeIntervalMs` to ask the store's change feed whether another
/// process committed and to reap exited children; it claims at once after a local completion or a
/// change seen in the database, so a freed slot is handed off in milliseconds without busy polling.
public final class Worker {
    let context: WorkerContext
    let lease: WorkerLease
    let aborter: Aborter
    let finisher: Finisher
    let claimer: Claimer
    let poller: SessionPoller
    let reaper: Reaper
    let hooks: HookRunner
    let notices: NoticeSender
    let maintenance: Maintenance
    var stopping = false
    var handledSignals = 0

    /// - Parameter backends: the session backends this worker may use (`bgq worker` installs them all).
    public init(store: any QueueStore, options: WorkerOptions, backends: BackendRegistry, clock: Clock = SystemClock()) {
        context = WorkerContext(store: store, options: options, backends: backends, clock: clock)
        lease = WorkerLease(context: context)
        aborter = Aborter(context: context)
        finisher = Finisher(context: context, aborter: aborter)
        claimer = Claimer(context: context, lease: lease, finisher: finisher)
        poller = SessionPoller(context: context, finisher: finisher)
        reaper = Reaper(context: context, aborter: aborter)
        hooks = HookRunner(context: context)
        notices = NoticeSender(context: context)
        maintenance = Maintenance(context: context)
    }

    public var workerID: String { context.workerID }
    var options: WorkerOptions { context.options }
    var log: WorkerLog { context.log }
    var store: any QueueStore { context.store }
    var children: ChildExits { ChildExits(context: context, hooks: hooks) }

    // MARK: - Life cycle

    /// Registers the worker and loads settings, limits and agents.
    public func register() throws { try lease.register() }

    /// Declares silent workers dead and resolves their tasks (see `Reaper`).
    func reapDeadWorkers() throws { try reaper.reap() }

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
        defer { context.backends.shutdown() }
        try register()
        try reaper.reap()
        var timers = Timers(now: context.monotonic, settings: context.settings, reapIntervalMs: reapIntervalMs)
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
        let context = self.context
        let now = context.monotonic
        children.collect()
        if now >= timers.nextHeartbeat {
            timers.nextHeartbeat = now + context.settings.heartbeatIntervalMs
            try lease.heartbeat()
        }
        let changed = try context.feed?.poll() ?? true
        if changed { try poller.applyCancelRequests() }
        if changed || now >= timers.nextMaintenance {
            try hooks.startPending()
            try notices.deliver()
        }
        if now >= timers.nextMaintenance {
            timers.nextMaintenance = now + context.pollIntervalMs
            try maintenance.run()
            context.wantClaim = true
        }
        if now >= timers.nextReap || (changed && now >= timers.nextReap - reapIntervalMs + 1000) {
            timers.nextReap = now + reapIntervalMs
            try reaper.reap()
        }
        if !stopping && (changed || context.wantClaim) {
            context.wantClaim = false
            // New sessions are polled at once: a session that already ended, like a no-op, completes in this tick.
            if try claimer.claimAndStart() > 0 { try poller.pollDue() }
        }
        poller.markReady()
        try poller.pollDue()
        aborter.escalate()
        hooks.killOverdue()
        if options.exitWhenIdle, try isIdle() {
            try hooks.startPending()  // the last transitions' hooks run before an idle worker exits
            if !hooks.isBusy, try isIdle() {
                _ = try store.setWorkerState(context.workerID, to: .stopped, reason: "nothing left to do")
                log.event("stopped", "nothing left to do; worker stopped")
                return true
            }
        }
        if !context.wantClaim { sleepUntilNextWake() }
        return false
    }

    /// No session, no abort under way, nothing to claim, and no task pending or running anywhere.
    func isIdle() throws -> Bool {
        guard context.sessions.isEmpty, aborter.pending.isEmpty, !context.wantClaim else { return false }
        return try store.activeTaskIDs(parentID: nil).isEmpty
    }

    var reapIntervalMs: Int64 { max(500, min(context.settings.leaseTimeoutMs / 3, 10_000)) }

    func sleepUntilNextWake() {
        let now = context.monotonic
        let nextPoll = context.sessions.values.map(\.nextPollMonotonic).min() ?? Int64.max
        let wait = max(1, min(options.wakeIntervalMs, nextPoll - now))
        WakeUp.sleep(milliseconds: wait)
    }

    // MARK: - Signals

    /// First SIGTERM/SIGINT: stop claiming; hand sessions over (or, with --drain, let them finish).
    /// A second SIGINT while draining aborts the sessions and requeues their tasks. Returns true to exit.
    func handleSignals() throws -> Bool {
        let sessions = context.sessions, workerID = context.workerID
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
            try finisher.write(items, abortingIDs: Set(items.map(\.task.id)))
            _ = try store.setWorkerState(workerID, to: .stopped, reason: "\(name) twice: sessions aborted and requeued")
            aborter.escalateUntilDone(collectingChildren: children.collect)
            return true
        }
        // Hand over: the sessions keep running and the next worker adopts them without running them again.
        _ = try store.setWorkerState(workerID, to: .stopped, reason: "\(name): \(sessions.count) session(s) handed over for adoption")
        log.event("stopped", "\(name): worker stopped; \(sessions.count) running session(s) handed over for adoption")
        aborter.escalateUntilDone(collectingChildren: children.collect)
        return true
    }
}
