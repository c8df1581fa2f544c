import BGQCore
import Foundation

/// What a worker does every poll interval besides its sessions: reloads settings and agents, lets the
/// engine do its own upkeep (a WAL checkpoint), removes old run folders and expires tasks queued past
/// their TTL.
final class Maintenance {
    let context: WorkerContext
    /// Why the stored settings were last refused, already reported.
    var rejectedSettings: String?

    init(context: WorkerContext) { self.context = context }

    /// Settings may change while the worker runs; the queued TTL is enforced by whoever notices first.
    func run() throws {
        let context = self.context, store = context.store
        do {
            reloadSettings(.success(try store.settings()))
        } catch BGQError.usage(let problem) {
            // A stored value out of range (written by hand) is refused like a contradiction; any other error is the loop's.
            reloadSettings(.failure(BGQError.usage(problem)))
        }
        try context.reloadAgents()
        for session in context.sessions.values { session.agent = context.registry.agent(named: session.task.agent) ?? session.agent }
        try store.performMaintenance()
        let settings = context.settings
        try RunFolderCleaner(store: store, runsDirectory: context.runsDirectory).removeExpired(now: context.clock.now(), retentionMs: settings.runRetentionMs)
        for id in try store.expireQueuedTasks(ttlMs: settings.taskTTLMs) {
            context.log.event("error", task: id, "pending → error: Task timed out while queued (\(spelledDuration(milliseconds: settings.taskTTLMs)))")
        }
    }

    /// Takes the stored settings when they are valid and fit together; otherwise keeps the settings this
    /// worker runs on and says why, once per distinct problem (written around `bgq settings set`, or by hand).
    func reloadSettings(_ loaded: Result<Settings, Error>) {
        let problem: String
        switch loaded {
        case .success(let candidate):
            do {
                try candidate.validate()
                context.settings = candidate
                rejectedSettings = nil
                return
            } catch {
                problem = "\(error)"
            }
        case .failure(let error):
            problem = "\(error)"
        }
        if rejectedSettings != problem { context.log.event("warning", "settings not applied: \(problem)") }
        rejectedSettings = problem
    }
}
