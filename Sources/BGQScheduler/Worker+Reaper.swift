import BGQCore
import BGQSystem
import Foundation

extension Worker {
    /// Declares silent workers dead, then adopts, retries or fails the running tasks of dead and stopped
    /// workers. Every step is a guarded write: when two workers reap at once, one wins and the other
    /// changes nothing.
    func reapDeadWorkers() {
        do {
            for id in try store.declareSilentWorkersDead(except: workerID, leaseTimeoutMs: settings.leaseTimeoutMs) {
                log.event("reaped", "worker \(id) missed its heartbeat for \(settings.leaseTimeoutMs / 1000) s: declared dead")
            }
            for task in try store.orphanedTasks() where sessions[task.id] == nil {
                try resolveOrphan(task)
            }
            let lostHooks = try store.failOrphanedHooks()
            if lostHooks > 0 { log.event("hook", "\(lostHooks) completion hook(s) of gone workers recorded as failed (never run twice)") }
        } catch {
            log.event("warning", "reaping failed: \(error)")
        }
    }

    func resolveOrphan(_ task: TaskRecord) throws {
        guard let owner = task.workerID else { return }
        guard let preset = preset(forAgent: task.agent) else {
            _ = try store.resolveOrphan(task, deadWorkerID: owner, outcome: .failed(error: "worker lost, and agent '\(task.agent)' is no longer defined"))
            return
        }
        let backend = backend(for: preset)
        if task.cancelRequestedAt != nil {
            if try store.resolveOrphan(task, deadWorkerID: owner, outcome: .cancelled(reason: "cancelled by user")) == .owned {
                if task.run.host == host { abortSession(task) }
                log.event("cancelled", task: task.id, "running → cancelled (its worker \(owner) was gone)")
            }
            return
        }
        if try endIfItsWorkersKeepDying(task, owner: owner, backend: backend) { return }
        var task = task
        // The worker may have died after claiming: if it had already started the session (but not
        // recorded it), record the session now and adopt it; only a task whose session never started runs again.
        // Where the dead worker kept its files (it may have had its own --runs-dir).
        let ownerRuns = try store.worker(id: owner)?.runsDirectory ?? runsDirectory
        switch backend.unrecordedStart(task, runsDirectory: ownerRuns, host: host) {
        case .recorded:
            break
        case .found(let run):
            let start = SessionStart(sessionID: task.sessionID ?? Identifier.newSessionID(), backend: preset.backend.rawValue, externalID: nil, run: run)
            guard try store.recordSessionStart(task, workerID: owner, start: start) == .owned else { return }
            task.sessionID = start.sessionID
            task.run = run
            log.event("found", task: task.id, "worker \(owner) died before recording its session; found the agent (\(run.pid.map { "pid \($0)" } ?? "its exit file")), adopting it")
        case .mayBeStarting:
            // Its files exist, so the agent may be starting right now: look again a little later
            // before concluding that nothing ran.
            let key = "\(task.id).\(task.attempt)"
            let firstMiss = unfoundStarts[key] ?? monotonic
            unfoundStarts[key] = firstMiss
            guard monotonic - firstMiss >= 2000 else { return }
            unfoundStarts[key] = nil
            try requeueUnstarted(task, owner: owner)
            return
        case .notStarted:
            try requeueUnstarted(task, owner: owner)
            return
        }
        switch backend.adoptionCheck(task, host: host) {
        case .adoptable:
            guard try store.adopt(task, from: owner, by: workerID, reason: "adopted from \(owner) (worker gone; session still there)") == .owned else { return }
            if let ended = backend.runEndedAt(task) {
                try store.recordRunEnd(taskID: task.id, workerID: workerID, endedAt: ended)
            }
            var adopted = task
            adopted.workerID = workerID
            let now = monotonic
            let wallNow = clock.now()
            let started = now - (wallNow - (task.startedAt ?? wallNow))
            let progressed = now - (wallNow - (task.progress.lastProgressAt ?? task.startedAt ?? wallNow))
            let session = ActiveSession(task: adopted, preset: preset, startedMonotonic: started, lastProgressMonotonic: progressed, adopted: true)
            session.agent = registry.agent(named: task.agent)
            sessions[task.id] = session
            log.event("adopted", task: task.id, "running → running: adopted from \(owner); the session goes on, not run again")
        case .unknown:
            return  // another host's session: a worker on that host adopts it
        case .gone:
            let outcome = outcomeForFailure(task, error: "worker lost: worker \(owner) died and its session is gone")
            if try store.resolveOrphan(task, deadWorkerID: owner, outcome: outcome) == .owned {
                if case .requeued(let reason, _) = outcome {
                    log.event("pending", task: task.id, "running → pending: \(reason)")
                } else {
                    log.event("error", task: task.id, "running → error: worker lost (worker \(owner) died and its session is gone)")
                }
                wantClaim = true
            }
        }
    }

    /// A task whose owner died, after `max_worker_deaths` deaths in all, ends in error instead of being
    /// adopted again: whatever it makes workers read (a poison reply) would kill this one too.
    /// Returns whether it did so (or another worker did first).
    func endIfItsWorkersKeepDying(_ task: TaskRecord, owner: String, backend: SessionBackend) throws -> Bool {
        let deaths = try store.workerDeaths(taskID: task.id, ownerID: owner)
        let count = deaths.recorded + 1
        guard deaths.ownerDied, count >= settings.maxWorkerDeaths else { return false }
        let error = "worker died \(count) time\(count == 1 ? "" : "s") while running this task; last worker log: \(lastWorkerLog(task, owner: owner, backend: backend))"
        guard try store.resolveOrphan(task, deadWorkerID: owner, outcome: .failed(error: error)) == .owned else { return true }
        // Its agent outlived the workers: stop it (a session on another host is gone with its worker's host, or is left to its owner's host).
        if task.run.host == host { abortSession(task) }
        log.event("error", task: task.id, "running → error: its workers died \(count) time(s) while running it; not adopted again")
        wantClaim = true
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
        if try store.resolveOrphan(task, deadWorkerID: owner, outcome: .requeued(reason: "worker \(owner) lost before the session started", delayMs: 0)) == .owned {
            log.event("pending", task: task.id, "running → pending: worker \(owner) lost before the session started")
            wantClaim = true
        }
    }
}
