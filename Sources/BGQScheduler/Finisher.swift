import BGQCore
import Foundation

/// Writes how sessions ended (completed, failed, cancelled, requeued) and lets go of what this worker
/// no longer owns.
final class Finisher {
    let context: WorkerContext
    let aborter: Aborter

    init(context: WorkerContext, aborter: Aborter) {
        self.context = context
        self.aborter = aborter
    }

    /// Writes the transitions; sessions in `abortingIDs` are aborted only when this worker really owned
    /// them (a worker resumed after a pause must never stop a session another worker adopted).
    func write(_ finishes: [TaskFinish], abortingIDs: Set<String> = []) throws {
        guard !finishes.isEmpty else { return }
        let log = context.log
        let owned = try context.store.finish(finishes, workerID: context.workerID)
        for (item, ownership) in zip(finishes, owned) {
            context.sessions[item.task.id] = nil
            guard ownership == .owned else {
                forget(item.task)
                log.event("lost", task: item.task.id, "not finalized: another worker owns this task now")
                continue
            }
            if abortingIDs.contains(item.task.id) { aborter.abort(item.task) }
            switch item.outcome {
            case .completed: log.event("completed", task: item.task.id, "running → completed")
            case .failed(let error): log.event("error", task: item.task.id, "running → error: \(context.firstLine(error))")
            case .cancelled(let reason): log.event("cancelled", task: item.task.id, "running → cancelled: \(reason)")
            case .requeued(let reason, _): log.event("pending", task: item.task.id, "running → pending: \(context.firstLine(reason))")
            }
        }
        context.wantClaim = true  // a slot may have been freed: hand it off now
    }

    /// Another worker owns the task now: drop what this worker's backend holds for it (a provider call in
    /// flight is cancelled: the new owner sends its own), without touching the session itself.
    func forget(_ task: TaskRecord) {
        guard let preset = context.preset(forAgent: task.agent), preset.isProviderAPI else { return }
        context.backend(for: preset).abort(task, agent: nil)
    }

    /// Stops polling a session another worker owns now.
    func dropLost(_ task: TaskRecord) {
        forget(task)
        context.sessions[task.id] = nil
        context.log.event("lost", task: task.id, "another worker owns this task now; stopped polling it")
    }
}
