import BGQCore
import Foundation

/// Claims pending tasks under the limits and this worker's capacity, and starts their sessions.
final class Claimer {
    let context: WorkerContext
    let lease: WorkerLease
    let finisher: Finisher

    init(context: WorkerContext, lease: WorkerLease, finisher: Finisher) {
        self.context = context
        self.lease = lease
        self.finisher = finisher
    }

    /// Claims what the limits and this worker's capacity allow and starts each session. Returns the
    /// tasks claimed (the caller polls the new sessions at once: a no-op completes in the same tick).
    @discardableResult
    func claimAndStart() throws -> Int {
        let context = self.context, store = context.store
        let capacity = context.options.maxSessions - context.sessions.count
        guard capacity > 0 else { return 0 }
        let claimed: [TaskRecord]
        do {
            claimed = try store.claimTasks(workerID: context.workerID, capacity: capacity)
        } catch BGQError.lostOwnership {
            try lease.loseOwnership()
            return 0
        }
        guard !claimed.isEmpty else { return 0 }
        // Paused since the claim for long enough to be declared dead? Then others own these tasks now:
        // starting them here would run them twice.
        guard try lease.isStillAlive() else { return 0 }
        // Agents change rarely: reload them when a task names one this worker does not know yet
        // (maintenance reloads them every poll interval too, for changed definitions).
        if claimed.contains(where: { context.registry.agent(named: $0.agent) == nil }) { try context.reloadAgents() }
        var started: [SessionStartRecord] = []
        var failed: [TaskFinish] = []
        for task in claimed {
            context.log.event("running", task: task.id, "pending → running (\(task.statusReason ?? "claimed"), agent \(task.agent))")
            do {
                started.append(SessionStartRecord(task: task, start: try startSession(task)))
            } catch {
                failed.append(TaskFinish(task: task, outcome: context.outcomeForFailure(task, error: "cannot start session: \(error)")))
            }
        }
        try record(started)
        try finisher.write(failed)
        // There may be more: claim again on the next tick rather than sleeping.
        if claimed.count == capacity { context.wantClaim = true }
        return claimed.count
    }

    /// Records the started sessions; the ones this worker still owns are polled from now on.
    func record(_ started: [SessionStartRecord]) throws {
        let context = self.context
        let ownership = try context.store.recordSessionStarts(started, workerID: context.workerID)
        let now = context.monotonic
        for (record, owned) in zip(started, ownership) {
            let (task, start) = (record.task, record.start)
            guard owned == .owned, let preset = context.preset(forAgent: task.agent) else { continue }
            var running = task
            running.sessionID = start.sessionID
            running.run = start.run
            let session = ActiveSession(task: running, preset: preset, startedMonotonic: now, lastProgressMonotonic: now, adopted: false)
            session.agent = context.registry.agent(named: task.agent)
            context.sessions[task.id] = session
        }
    }

    func startSession(_ task: TaskRecord) throws -> SessionStart {
        let context = self.context
        let (agent, preset) = try context.registry.require(task.agent)
        let model = try task.modelRef ?? agent.model.map { try ModelRef(parsing: $0) }
        var sessionID = Identifier.newSessionID()
        var resumeID: String?
        if task.continuesSession, let existing = task.sessionID {
            sessionID = existing
            guard let session = try context.store.session(id: existing), let external = session.externalID else {
                throw BGQError.failure("cannot continue session \(existing): its agent never reported a session id")
            }
            resumeID = external
        }
        let request = StartRequest(task: task, agent: agent, preset: preset, model: model, sessionID: sessionID,
                                   resumeExternalID: resumeID, runsDirectory: context.runsDirectory, host: context.host)
        return try context.backend(for: preset).start(request)
    }
}
