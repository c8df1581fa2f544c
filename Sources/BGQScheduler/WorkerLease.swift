import BGQCore
import Foundation

/// The worker's row in the database: registered, kept alive by heartbeats, and given up when the
/// database says this worker was declared dead (paused or cut off past the lease timeout).
final class WorkerLease {
    let context: WorkerContext
    /// When the last heartbeat was written (monotonic): a worker whose heartbeat is old may have been
    /// declared dead, so it checks before starting anything.
    var lastHeartbeatMonotonic: Int64 = 0
    /// How many times this worker registered (a new registration after it was declared dead): what
    /// was claimed under an earlier one belongs to other workers now.
    private(set) var registrations = 0

    init(context: WorkerContext) { self.context = context }

    /// Registers the worker and loads settings and agents.
    func register() throws {
        let context = self.context, options = context.options
        context.settings = try context.store.settings()
        try context.reloadAgents()
        context.workerID = try context.store.registerWorker(WorkerRegistration(name: options.name, host: context.host, pid: getpid(),
                                                                               maxSessions: options.maxSessions, runsDirectory: context.runsDirectory))
        context.feed = try context.store.changeFeed()
        registrations += 1
        lastHeartbeatMonotonic = context.monotonic
        context.log.workerID = context.workerID
        context.log.event("started", "worker started (name \(options.name), pid \(getpid()), host \(context.host), max sessions \(options.maxSessions), poll \(context.pollIntervalMs) ms, db \(context.store.location))")
    }

    /// Writes the heartbeat; a lost row means this worker was declared dead meanwhile. Returns false then.
    @discardableResult
    func heartbeat() throws -> Bool {
        let before = context.monotonic
        guard try context.store.heartbeat(workerID: context.workerID) == .owned else {
            try loseOwnership()
            return false
        }
        lastHeartbeatMonotonic = before
        return true
    }

    /// Paused since the last heartbeat for long enough to have been declared dead? Then others own this
    /// worker's tasks now: a fresh heartbeat proves it is still alive before it starts anything.
    func isStillAlive() throws -> Bool {
        guard context.monotonic - lastHeartbeatMonotonic > context.settings.leaseTimeoutMs / 2 else { return true }
        return try heartbeat()
    }

    /// The database says this worker is dead: other workers own its tasks now. Forget them without
    /// touching them, and start afresh under a new id.
    func loseOwnership() throws {
        context.log.event("lost", "this worker was declared dead (silent longer than the lease timeout, e.g. paused); dropping \(context.sessions.count) session(s) without finalizing them")
        context.sessions.removeAll()
        try register()
    }
}
