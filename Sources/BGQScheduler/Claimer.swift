import BGQCore
import Foundation

/// Claims pending tasks under the limits and this worker's capacity, and starts their sessions.
///
/// A database error between the claim and the recorded start (a locked file while reading the
/// continued session, or while recording) does not fail the task, nor leave it running without a
/// session: what was claimed waits in `unstarted`, what was started waits in `unrecorded`, and both
/// are taken up again at the next claim pass. Only errors of the backend's start become outcomes.
final class Claimer {
    let context: WorkerContext
    let lease: WorkerLease
    let finisher: Finisher
    /// Claimed by this worker, session not started yet.
    private(set) var unstarted: [TaskRecord] = []
    /// Session started, start not recorded yet.
    private(set) var unrecorded: [SessionStartRecord] = []
    /// Could not start: their outcome is not written yet.
    private(set) var unfinished: [TaskFinish] = []
    /// The lease registration the queues above belong to: after a new registration (this worker was
    /// declared dead) other workers own those tasks, so they are dropped, never started.
    private var registration = 0

    init(context: WorkerContext, lease: WorkerLease, finisher: Finisher) {
        self.context = context
        self.lease = lease
        self.finisher = finisher
    }

    /// Claims what the limits and this worker's capacity allow and starts each session. Returns how
    /// many sessions were started (the caller polls them at once: a no-op completes in the same tick).
    @discardableResult
    func claimAndStart() throws -> Int {
        let context = self.context
        if registration != lease.registrations { dropHeld() }
        // Held tasks are taken up again at the next tick, not at the next change.
        defer { if !unstarted.isEmpty || !unrecorded.isEmpty || !unfinished.isEmpty { context.wantClaim = true } }
        let held = unstarted.count + unrecorded.count
        let capacity = context.options.maxSessions - context.sessions.count - held
        var claimed: [TaskRecord] = []
        if capacity > 0 {
            do {
                claimed = try context.store.claimTasks(workerID: context.workerID, capacity: capacity)
            } catch BGQError.lostOwnership {
                try lease.loseOwnership()
                return 0
            }
        }
        guard !claimed.isEmpty || held > 0 || !unfinished.isEmpty else { return 0 }
        // Paused since the claim for long enough to be declared dead? Then others own these tasks now:
        // starting them here would run them twice.
        guard try lease.isStillAlive(), registration == lease.registrations else {
            dropHeld()
            return 0
        }
        for task in claimed {
            context.log.event("running", task: task.id, "pending → running (\(task.statusReason ?? "claimed"), agent \(task.agent))")
        }
        unstarted += claimed
        // Agents change rarely: reload them when a task names one this worker does not know yet
        // (maintenance reloads them every poll interval too, for changed definitions).
        if unstarted.contains(where: { context.registry.agent(named: $0.agent) == nil }) { try context.reloadAgents() }
        while let task = unstarted.first {
            do {
                unrecorded.append(SessionStartRecord(task: task, start: try startSession(task)))
            } catch BGQError.database(let problem) {
                throw BGQError.database(problem)  // the task stays first in `unstarted`
            } catch {
                unfinished.append(TaskFinish(task: task, outcome: context.outcomeForFailure(task, error: "cannot start session: \(error)")))
            }
            unstarted.removeFirst()
        }
        let started = unrecorded.count
        try record(unrecorded)
        unrecorded.removeAll()
        try finisher.write(unfinished)
        unfinished.removeAll()
        // There may be more: claim again on the next tick rather than sleeping.
        if claimed.count == capacity { context.wantClaim = true }
        return started
    }

    /// Forgets the tasks held for a registration that is gone: they are another worker's now.
    private func dropHeld() {
        for item in unrecorded { finisher.forget(item.task) }
        unstarted.removeAll()
        unrecorded.removeAll()
        unfinished.removeAll()
        registration = lease.registrations
    }

    /// Records the started sessions; the ones this worker still owns are polled from now on.
    func record(_ started: [SessionStartRecord]) throws {
        guard !started.isEmpty else { return }
        let context = self.context
        let ownership = try context.store.recordSessionStarts(started, workerID: context.workerID)
        let now = context.monotonic
        for (record, owned) in zip(started, ownership) {
            let (task, start) = (record.task, record.start)
            guard owned == .owned, let preset = context.preset(forAgent: task.agent) else {
                finisher.forget(task)
                continue
            }
            var running = task
            running.sessionID = start.sessionID
            running.run = start.run
            let session = ActiveSession(task: running, preset: preset, startedMonotonic: now, lastProgressMonotonic: now, adopted: false)
            session.agent = context.registry.agent(named: task.agent)
            context.sessions[task.id] = session
        }
    }

    /// Starts the task's session. Throws a database error when the store could not be read (the task
    /// is started later), any other error when the session cannot start (the task fails or retries).
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
