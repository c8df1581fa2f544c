import BGQCore
import Foundation

/// Declares silent workers dead and resolves the running tasks of dead and stopped workers: adopts
/// sessions that are still there, records starts their worker never wrote, requeues or fails the
/// rest, and ends tasks whose workers keep dying with them.
final class Reaper {
    let context: WorkerContext
    let aborter: Aborter
    /// Orphaned attempts whose agent was not found yet though their files exist: first miss (monotonic).
    var unfoundStarts: [String: Int64] = [:]

    init(context: WorkerContext, aborter: Aborter) {
        self.context = context
        self.aborter = aborter
    }

    /// Declares silent workers dead, then adopts, retries or fails the running tasks of dead and stopped
    /// workers. Every step is a guarded write: when two workers reap at once, one wins and the other
    /// changes nothing.
    ///
    /// A database that is busy for a moment is logged and the pass is tried again later; any other
    /// error (a replaced file, a bug) stops the worker instead of being swallowed at every pass.
    func reap() throws {
        do {
            for id in try context.store.declareSilentWorkersDead(except: context.workerID, leaseTimeoutMs: context.settings.leaseTimeoutMs) {
                context.log.event("reaped", "worker \(id) missed its heartbeat for \(context.settings.leaseTimeoutMs / 1000) s: declared dead")
            }
            for task in try context.store.orphanedTasks() where context.sessions[task.id] == nil {
                try resolveOrphan(task)
            }
            let lostHooks = try context.store.failOrphanedHooks()
            if lostHooks > 0 { context.log.event("hook", "\(lostHooks) completion hook(s) of gone workers recorded as failed (never run twice)") }
        } catch BGQError.database(let problem) where problem.isTransient {
            context.log.event("warning", "reaping failed, tried again at the next pass: \(problem.message)")
        }
    }

    func resolveOrphan(_ task: TaskRecord) throws {
        guard let owner = task.workerID else { return }
        guard let preset = context.preset(forAgent: task.agent) else {
            _ = try context.store.resolveOrphan(task, deadWorkerID: owner, outcome: .failed(error: "worker lost, and agent '\(task.agent)' is no longer defined"))
            return
        }
        let backend = context.backend(for: preset)
        if task.cancelRequestedAt != nil {
            if try context.store.resolveOrphan(task, deadWorkerID: owner, outcome: .cancelled(reason: "cancelled by user")) == .owned {
                if task.run.host == context.host { aborter.abort(task) }
                context.log.event("cancelled", task: task.id, "running → cancelled (its worker \(owner) was gone)")
            }
            return
        }
        if try endIfItsWorkersKeepDying(task, owner: owner, backend: backend) { return }
        var task = task
        // The worker may have died after claiming: if it had already started the session (but not
        // recorded it), record the session now and adopt it; only a task whose session never started runs again.
        // Where the dead worker kept its files (it may have had its own --runs-dir).
        let ownerRuns = try context.store.worker(id: owner)?.runsDirectory ?? context.runsDirectory
        switch backend.unrecordedStart(task, runsDirectory: ownerRuns, host: context.host) {
        case .recorded:
            break
        case .found(let run):
            let start = SessionStart(sessionID: task.sessionID ?? Identifier.newSessionID(), backend: preset.backend.rawValue, externalID: nil, run: run)
            guard try context.store.recordSessionStart(task, workerID: owner, start: start) == .owned else { return }
            task.sessionID = start.sessionID
            task.run = run
            context.log.event("found", task: task.id, "worker \(owner) died before recording its session; found the agent (\(run.pid.map { "pid \($0)" } ?? "its exit file")), adopting it")
        case .mayBeStarting:
            // Its files exist, so the agent may be starting right now: look again a little later
            // before concluding that nothing ran.
            let key = "\(task.id).\(task.attempt)"
            let firstMiss = unfoundStarts[key] ?? context.monotonic
            unfoundStarts[key] = firstMiss
            guard context.monotonic - firstMiss >= 2000 else { return }
            unfoundStarts[key] = nil
            try requeueUnstarted(task, owner: owner)
            return
        case .notStarted:
            try requeueUnstarted(task, owner: owner)
            return
        }
        switch backend.adoptionCheck(task, host: context.host) {
        case .adoptable:
            guard try context.store.adopt(task, from: owner, by: context.workerID, reason: "adopted from \(owner) (worker gone; session still there)") == .owned else { return }
            if let ended = backend.runEndedAt(task) {
                try context.store.recordRunEnd(taskID: task.id, workerID: context.workerID, endedAt: ended)
            }
            var adopted = task
            adopted.workerID = context.workerID
            let now = context.monotonic
            let wallNow = context.clock.now()
            let started = now - (wallNow - (task.startedAt ?? wallNow))
            let progressed = now - (wallNow - (task.progress.lastProgressAt ?? task.startedAt ?? wallNow))
            let session = ActiveSession(task: adopted, preset: preset, startedMonotonic: started, lastProgressMonotonic: progressed, adopted: true)
            session.agent = context.registry.agent(named: task.agent)
            context.sessions[task.id] = session
            context.log.event("adopted", task: task.id, "running → running: adopted from \(owner); the session goes on, not run again")
        case .unknown:
            return  // another host's session: a worker on that host adopts it
        case .gone:
            let outcome = context.outcomeForFailure(task, error: "worker lost: worker \(owner) died and its session is gone")
            if try context.store.resolveOrphan(task, deadWorkerID: owner, outcome: outcome) == .owned {
                if case .requeued(let reason, _) = outcome {
                    context.log.event("pending", task: task.id, "running → pending: \(reason)")
                } else {
                    context.log.event("error", task: task.id, "running → error: worker lost (worker \(owner) died and its session is gone)")
                }
                context.wantClaim = true
            }
        }
    }

    /// A task whose owner died, after `max_worker_deaths` deaths in all, ends in error instead of being
    /// adopted again: whatever it makes workers read (a poison reply) would kill this one too.
    /// Returns whether it did so (or another worker did first).
    func endIfItsWorkersKeepDying(_ task: TaskRecord, owner: String, backend: SessionBackend) throws -> Bool {
        let deaths = try context.store.workerDeaths(taskID: task.id, ownerID: owner)
        let count = deaths.recorded + 1
        guard deaths.ownerDied, count >= context.settings.maxWorkerDeaths else { return false }
        let error = "worker died \(count) time\(count == 1 ? "" : "s") while running this task; last worker log: \(lastWorkerLog(task, owner: owner, backend: backend))"
        guard try context.store.resolveOrphan(task, deadWorkerID: owner, outcome: .failed(error: error)) == .owned else { return true }
        // Its agent outlived the workers: stop it (a session on another host is gone with its worker's host, or is left to its owner's host).
        if task.run.host == context.host { aborter.abort(task) }
        context.log.event("error", task: task.id, "running → error: its workers died \(count) time(s) while running it; not adopted again")
        context.wantClaim = true
        return true
    }

    /// What bgq knows of the last worker's log: a worker logs to its own stderr, which bgq does not keep,
    /// so this is the run's stderr file and its last lines.
    func lastWorkerLog(_ task: TaskRecord, owner: String, backend: SessionBackend) -> String {
        guard let log = backend.lastLog(task) else {
            return "none kept by bgq (worker \(owner) logged to its own stderr)"
        }
        guard let tail = log.tail else { return "\(log.path) (empty; worker \(owner))" }
        return "\(log.path) (worker \(owner)) ends with:\n\(tail)"
    }

    /// The dead worker claimed the task but never started its session: it runs again.
    func requeueUnstarted(_ task: TaskRecord, owner: String) throws {
        if try context.store.resolveOrphan(task, deadWorkerID: owner, outcome: .requeued(reason: "worker \(owner) lost before the session started", delayMs: 0)) == .owned {
            context.log.event("pending", task: task.id, "running → pending: worker \(owner) lost before the session started")
            context.wantClaim = true
        }
    }
}
