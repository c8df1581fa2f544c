import BGQCore
import Foundation

/// Delivers completion notices into the sessions that delegated the tasks, through the registry's
/// notice transport.
final class NoticeSender {
    let context: WorkerContext

    init(context: WorkerContext) { self.context = context }

    /// Sends pending notices into parent OpenCode sessions, the way the original tells the session that
    /// delegated the work: `[BACKGROUND TASK COMPLETED]` per task without waking it, and
    /// `[ALL BACKGROUND TASKS COMPLETE]` once the parent's last task ended, waking it.
    ///
    /// Exactly once: the notice row was written with the task's transition; it is marked `sending`
    /// before the call; one left `sending` by a gone worker is sent again only if the parent session
    /// does not hold it yet. A server that cannot be reached is tried again at later maintenance
    /// passes (up to 20 times), then the notice is recorded as failed.
    func deliver() throws {
        let notices = try context.store.claimParentNotices(workerID: context.workerID, limit: 8)
        for notice in notices {
            let outcome = try send(notice)
            guard try context.store.finishParentNotice(notice, workerID: context.workerID, outcome: outcome) == .owned else {
                context.log.event("warning", task: notice.taskID, "notice to parent session \(notice.parentID) was taken over by another worker meanwhile")
                continue
            }
            switch outcome {
            case .sent: context.log.event("notice", task: notice.taskID, "\(notice.kind == .task ? "task" : "batch") notice sent to parent session \(notice.parentID)")
            case .retryLater(let error): context.log.event("warning", task: notice.taskID, "notice to parent session \(notice.parentID) not sent yet: \(error)")
            case .failed(let error): context.log.event("warning", task: notice.taskID, "notice to parent session \(notice.parentID) failed: \(error)")
            }
        }
    }

    func send(_ notice: ParentNotice) throws -> ParentNoticeOutcome {
        let text: String
        let header: String
        let marker: String
        do {
            let task = try context.store.requireTask(id: notice.taskID)
            switch notice.kind {
            case .task:
                let remaining = try context.store.activeTaskIDs(parentID: notice.parentID).count
                text = Notices.taskFinished(task, remaining: remaining)
                header = "[BACKGROUND TASK"
                marker = "Task ID: \(task.id)\n"
            case .batch:
                let tasks = try context.store.taskIDs(parentID: notice.parentID).compactMap { try context.store.task(id: $0) }
                text = Notices.allFinished(tasks)
                header = "[ALL BACKGROUND TASKS COMPLETE]"
                marker = "`\(task.id)`"
            }
        } catch BGQError.notFound(let message) {
            // The task is gone (pruned): there is nothing to tell. Any other error (a locked database)
            // propagates, and the row, still `sending`, is offered to this worker again.
            return .failed("cannot render the notice: \(message)")
        }
        guard let transport = context.backends.noticeTransport else {
            return .failed("this bgq has no backend that delivers notices to parent sessions")
        }
        let agents = context.registry.agents
        if notice.mayHaveBeenSent {
            switch transport.parentHasNotice(notice.parentID, on: notice.server, containing: marker, header: header, agents: agents) {
            case .sent: return .sent
            case .absent: break
            case .notFound(let error), .transient(let error), .failed(let error):
                return notice.attempts >= 20 ? .failed(error) : .retryLater(error)
            }
        }
        switch transport.send(text, to: notice.parentID, on: notice.server, wake: notice.kind == .batch, agents: agents) {
        case .sent: return .sent
        case .notFound: return .failed("parent session \(notice.parentID) not found on \(notice.server.url)")
        case .failed(let error): return .failed(error)
        case .transient(let error): return notice.attempts >= 20 ? .failed(error) : .retryLater(error)
        case .absent: return notice.attempts >= 20 ? .failed("not delivered") : .retryLater("not delivered")
        }
    }
}
