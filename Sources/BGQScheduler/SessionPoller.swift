import BGQCore
import Foundation

/// Polls the sessions this worker holds, applies the completion rules, and writes progress and endings.
final class SessionPoller {
    let context: WorkerContext
    let finisher: Finisher

    init(context: WorkerContext, finisher: Finisher) {
        self.context = context
        self.finisher = finisher
    }

    /// Sessions whose provider call came back on another thread: poll them now.
    func markReady() {
        for backend in context.backends.made {
            for id in backend.takeReadyTaskIDs() { context.sessions[id]?.nextPollMonotonic = 0 }
        }
    }

    /// Running tasks of this worker that a person asked to cancel: abort, release the slot, mark cancelled.
    func applyCancelRequests() throws {
        guard !context.sessions.isEmpty else { return }
        let requested = try context.store.cancelRequests(workerID: context.workerID)
        let items = requested.compactMap { id in
            context.sessions[id].map { TaskFinish(task: $0.task, outcome: .cancelled(reason: "cancelled by user")) }
        }
        try finisher.write(items, abortingIDs: Set(items.map(\.task.id)))
    }

    /// Polls every session whose turn has come, applies the completion rules, and writes the results
    /// (progress in one transaction, finished tasks in another).
    func pollDue() throws {
        let context = self.context, now = context.monotonic, rules = context.rules
        let due = context.sessions.values.filter { $0.nextPollMonotonic <= now }
        guard !due.isEmpty else { return }
        var progress: [ProgressRecord] = []
        var finishes: [TaskFinish] = []
        var toAbort: Set<String> = []
        // One status request per server for all of its sessions (OpenCode's GET /session/status).
        var byBackend: [ObjectIdentifier: (backend: SessionBackend, sessions: [ActiveSession])] = [:]
        for session in due where session.preset.isHTTP {
            let backend = context.backend(for: session.preset)
            byBackend[ObjectIdentifier(backend), default: (backend, [])].sessions.append(session)
        }
        for (backend, group) in byBackend.values { backend.beginPollRound(group) }
        for session in due {
            let backend = context.backend(for: session.preset)
            let result = backend.poll(session)
            reportProblemChange(session, result.problem)
            if result.madeProgress || result.waiting { session.lastProgressMonotonic = now }
            // A retry note (a provider's 429 and when the next try is due) is what `bgq show` shows meanwhile.
            var note: String?
            if case .retry(let message) = result.status, message != session.task.progress.lastMessage { note = message }
            var verdict = rules.evaluate(snapshot(session, status: result.status, backend: backend, problem: result.problem),
                                         runtimeMs: now - session.startedMonotonic,
                                         sinceProgressMs: now - session.lastProgressMonotonic, memory: &session.memory)
            var newMessages = result.newMessages
            if verdict == .recheckStatus {
                let again = backend.poll(session)
                newMessages += again.newMessages
                verdict = rules.afterIdleRecheck(snapshot(session, status: again.status, backend: backend), memory: &session.memory)
            }
            let update = progressUpdate(session, newMessages: newMessages, madeProgress: result.madeProgress || note != nil, note: note)
            switch verdict {
            case .keepRunning, .recheckStatus:
                session.nextPollMonotonic = now + context.pollIntervalMs
                if let update { progress.append(ProgressRecord(task: session.task, update: update)) }
            case .complete(let text):
                finishes.append(TaskFinish(task: session.task, outcome: .completed(result: text), finalProgress: update))
            case .fail(let error, let abort):
                if abort { toAbort.insert(session.task.id) }
                let detail = abort ? nil : backend.failureDetail(session)
                let message = detail.map { error.contains($0) ? error : "\(error); last stderr lines:\n\($0)" } ?? error
                finishes.append(TaskFinish(task: session.task, outcome: abort ? .failed(error: message) : context.outcomeForFailure(session.task, error: message),
                                           finalProgress: update))
            case .cancel(let reason):
                toAbort.insert(session.task.id)
                finishes.append(TaskFinish(task: session.task, outcome: .cancelled(reason: reason), finalProgress: update))
            }
        }
        let owned = try context.store.recordProgress(progress, workerID: context.workerID)
        for (item, ownership) in zip(progress, owned) where ownership == .lost { finisher.dropLost(item.task) }
        try finisher.write(finishes, abortingIDs: toAbort)
        logUsage()
    }

    /// Tokens spent by the sessions that ended. Not stored yet: the log line is where spend control
    /// will pick the counts up.
    func logUsage() {
        for backend in context.backends.made {
            for usage in backend.takeUsageReports() {
                let counts = ["input_tokens": usage.inputTokens, "output_tokens": usage.outputTokens].compactMapValues { $0.map(String.init) }
                context.log.event("usage", task: usage.taskID, "tokens: \(usage.inputTokens.map(String.init) ?? "?") in, \(usage.outputTokens.map(String.init) ?? "?") out", fields: counts)
            }
        }
    }

    /// Says once when a session can no longer be checked (its server unreachable) and once when it can again:
    /// the task looks merely quiet meanwhile, and fails only at the stale timeout.
    func reportProblemChange(_ session: ActiveSession, _ problem: String?) {
        guard (problem == nil) != (session.reportedProblem == nil) else { return }
        if let problem {
            context.log.event("warning", task: session.task.id,
                              "\(problem); retrying until the stale timeout (\(spelledDuration(milliseconds: context.settings.staleTimeoutMs)) without progress)")
        } else {
            context.log.event("recovered", task: session.task.id, "the session can be checked again")
        }
        session.reportedProblem = problem
    }

    func snapshot(_ session: ActiveSession, status: SessionStatus, backend: SessionBackend, problem: String? = nil) -> SessionSnapshot {
        var final: (text: String, isError: Bool)?
        switch status {
        case .ended, .idle, .missing: final = backend.finalResult(session)
        case .busy, .retry: final = nil
        }
        let transcript = session.transcript
        return SessionSnapshot(status: status, messageCount: transcript.messageCount,
                               hasRealOutput: transcript.hasRealOutput || !(final?.text.isEmpty ?? true),
                               openTodos: transcript.openTodos, result: final?.text, resultIsError: final?.isError ?? false, problem: problem,
                               promisesResult: session.preset.promisesResult)
    }

    /// The progress to write, or nil when nothing changed since the last write.
    func progressUpdate(_ session: ActiveSession, newMessages: [SessionMessage], madeProgress: Bool, note: String? = nil) -> ProgressUpdate? {
        guard madeProgress || !newMessages.isEmpty else { return nil }
        let transcript = session.transcript
        var progress = session.task.progress
        progress.messageCount = transcript.messageCount
        progress.toolCalls = max(progress.toolCalls, transcript.toolCalls)
        progress.lastTool = transcript.lastTool ?? progress.lastTool
        if let last = transcript.lastMessage, last != progress.lastMessage {
            progress.lastMessage = String(last.prefix(2000))
            progress.lastMessageAt = context.clock.now()
        }
        if let note {
            progress.lastMessage = String(note.prefix(2000))
            progress.lastMessageAt = context.clock.now()
        }
        progress.lastProgressAt = context.clock.now()
        if let todos = transcript.todos, let data = try? JSONEncoder().encode(todos) {
            progress.todos = String(decoding: data, as: UTF8.self)
        }
        session.task.progress = progress
        return ProgressUpdate(progress: progress, logOffset: session.logOffset, externalSessionID: transcript.externalSessionID, newMessages: newMessages)
    }
}
