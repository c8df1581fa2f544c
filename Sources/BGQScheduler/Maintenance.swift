import BGQCore
import Foundation

/// What a worker does every poll interval besides its sessions: reloads settings and agents, lets the
/// engine do its own upkeep (a WAL checkpoint), removes old run folders and expires tasks queued past
/// their TTL.
final class Maintenance {
    let context: WorkerContext
    /// Stored settings that contradict each other, already reported.
    var rejectedSettings: Settings?

    init(context: WorkerContext) { self.context = context }

    /// Settings may change while the worker runs; the queued TTL is enforced by whoever notices first.
    func run() throws {
        let context = self.context, store = context.store
        let loaded = try store.settings()
        do {
            try loaded.validate()
            context.settings = loaded
        } catch {
            // Written around `bgq settings set`: keep the settings this worker runs on, and say so once.
            if rejectedSettings != loaded { context.log.event("warning", "settings not applied: \(error)") }
            rejectedSettings = loaded
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
}
