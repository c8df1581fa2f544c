import BGQCore
import Foundation

/// Stops sessions: the backend's abort first (SIGINT for a process), then SIGTERM and SIGKILL after
/// the grace period while the session is still there.
final class Aborter {
    let context: WorkerContext
    /// Aborts whose next, harder step is still due.
    private(set) var pending: [PendingAbort] = []

    struct PendingAbort {
        var task: TaskRecord
        let backend: SessionBackend
        var nextSignal: Int32
        var dueMonotonic: Int64
    }

    init(context: WorkerContext) { self.context = context }

    /// SIGINT now; SIGTERM and SIGKILL follow after the grace period if the session is still there.
    func abort(_ task: TaskRecord) {
        guard let preset = context.preset(forAgent: task.agent) else { return }
        let backend = context.backend(for: preset)
        backend.abort(task, agent: context.registry.agent(named: task.agent))
        if backend.needsEscalation(task) {
            pending.append(PendingAbort(task: task, backend: backend, nextSignal: SIGTERM, dueMonotonic: context.monotonic + context.settings.abortGraceMs))
        }
    }

    /// Takes the next step of every abort that is due.
    func escalate() {
        guard !pending.isEmpty else { return }
        let now = context.monotonic
        var remaining: [PendingAbort] = []
        for var abort in pending {
            guard abort.backend.needsEscalation(abort.task) else { continue }
            if abort.dueMonotonic > now {
                remaining.append(abort)
                continue
            }
            abort.backend.escalateAbort(abort.task, signal: abort.nextSignal)
            if abort.nextSignal == SIGTERM {
                abort.nextSignal = SIGKILL
                abort.dueMonotonic = now + context.settings.abortGraceMs
                remaining.append(abort)
            }
        }
        pending = remaining
    }

    /// Before exiting: finish the abort escalation so no aborted session outlives the worker.
    func escalateUntilDone(collectingChildren collect: () -> Void) {
        while !pending.isEmpty {
            collect()
            escalate()
            if !pending.isEmpty { usleep(20_000) }
        }
    }
}
