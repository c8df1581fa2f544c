import BGQCore
import BGQSystem
import Foundation

extension Worker {
    func backend(for preset: AgentPreset) -> SessionBackend { backends.backend(for: preset) }

    /// Sessions whose provider call came back on another thread: poll them now.
    func markReadySessions() {
        for backend in backends.made {
            for id in backend.takeReadyTaskIDs() { sessions[id]?.nextPollMonotonic = 0 }
        }
    }

    func preset(forAgent name: String) -> AgentPreset? {
        registry.agent(named: name).flatMap { AgentPreset.named($0.preset) }
    }

    // MARK: - Claim and start

    /// Claims what the limits and this worker's capacity allow, starts each session, and polls the new
    /// sessions at once (a session that already ended, like a no-op, completes in the same tick).
    func claimAndStart() throws {
        let capacity = options.maxSessions - sessions.count
        guard capacity > 0 else { return }
        let claimed: [TaskRecord]
        do {
            claimed = try store.claimTasks(workerID: workerID, capacity: capacity)
        } catch BGQError.lostOwnership {
            try loseOwnership()
            return
        }
        guard !claimed.isEmpty else { return }
        // Paused since the claim for long enough to be declared dead? Then others own these tasks now:
        // starting them here would run them twice. (A fresh heartbeat proves this worker is still alive.)
        if monotonic - lastHeartbeatMonotonic > settings.leaseTimeoutMs / 2, try !heartbeat() {
            return
        }
        // Agents change rarely: reload them when a task names one this worker does not know yet
        // (maintenance reloads them every poll interval too, for changed definitions).
        if claimed.contains(where: { registry.agent(named: $0.agent) == nil }) {
            registry = AgentRegistry(userAgents: try store.userAgents())
        }
        var started: [SessionStartRecord] = []
        var failed: [TaskFinish] = []
        for task in claimed {
            log.event("running", task: task.id, "pending → running (\(task.statusReason ?? "claimed"), agent \(task.agent))")
            do {
                started.append(SessionStartRecord(task: task, start: try startSession(task)))
            } catch {
                failed.append(TaskFinish(task: task, outcome: outcomeForFailure(task, error: "cannot start session: \(error)")))
            }
        }
        let ownership = try store.recordSessionStarts(started, workerID: workerID)
        let now = monotonic
        for (record, owned) in zip(started, ownership) {
            let (task, start) = (record.task, record.start)
            guard owned == .owned, let preset = preset(forAgent: task.agent) else { continue }
            var running = task
            running.sessionID = start.sessionID
            running.run = start.run
            let session = ActiveSession(task: running, preset: preset, startedMonotonic: now, lastProgressMonotonic: now, adopted: false)
            session.agent = registry.agent(named: task.agent)
            sessions[task.id] = session
        }
        try writeFinishes(failed)
        try pollDueSessions()
        // There may be more: claim again on the next tick rather than sleeping.
        if claimed.count == capacity { wantClaim = true }
    }

    func startSession(_ task: TaskRecord) throws -> SessionStart {
        let (agent, preset) = try registry.require(task.agent)
        let model = try task.modelRef ?? agent.model.map { try ModelRef(parsing: $0) }
        var sessionID = Identifier.newSessionID()
        var resumeID: String?
        if task.continuesSession, let existing = task.sessionID {
            sessionID = existing
            guard let session = try store.session(id: existing), let external = session.externalID else {
                throw BGQError.failure("cannot continue session \(existing): its agent never reported a session id")
            }
            resumeID = external
        }
        let request = StartRequest(task: task, agent: agent, preset: preset, model: model, sessionID: sessionID,
                                   resumeExternalID: resumeID, runsDirectory: runsDirectory, host: host)
        return try backend(for: preset).start(request)
    }

    // MARK: - Poll

    /// Polls every session whose turn has come, applies the completion rules, and writes the results
    /// (progress in one transaction, finished tasks in another).
    func pollDueSessions() throws {
        let now = monotonic
        let due = sessions.values.filter { $0.nextPollMonotonic <= now }
        guard !due.isEmpty else { return }
        var progress: [ProgressRecord] = []
        var finishes: [TaskFinish] = []
        var toAbort: Set<String> = []
        // One status request per server for all of its sessions (OpenCode's GET /session/status).
        var byBackend: [ObjectIdentifier: (backend: SessionBackend, sessions: [ActiveSession])] = [:]
        for session in due where session.preset.isHTTP {
            let backend = backend(for: session.preset)
            byBackend[ObjectIdentifier(backend), default: (backend, [])].sessions.append(session)
        }
        for (backend, group) in byBackend.values { backend.beginPollRound(group) }
        for session in due {
            let backend = backend(for: session.preset)
            let result = backend.poll(session)
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
                session.nextPollMonotonic = now + pollIntervalMs
                if let update { progress.append(ProgressRecord(task: session.task, update: update)) }
            case .complete(let text):
                finishes.append(TaskFinish(task: session.task, outcome: .completed(result: text), finalProgress: update))
            case .fail(let error, let abort):
                if abort { toAbort.insert(session.task.id) }
                let detail = abort ? nil : backend.failureDetail(session)
                let message = detail.map { error.contains($0) ? error : "\(error); last stderr lines:\n\($0)" } ?? error
                finishes.append(TaskFinish(task: session.task, outcome: abort ? .failed(error: message) : outcomeForFailure(session.task, error: message),
                                           finalProgress: update))
            case .cancel(let reason):
                toAbort.insert(session.task.id)
                finishes.append(TaskFinish(task: session.task, outcome: .cancelled(reason: reason), finalProgress: update))
            }
        }
        let owned = try store.recordProgress(progress, workerID: workerID)
        for (item, ownership) in zip(progress, owned) where ownership == .lost { dropLost(item.task) }
        try writeFinishes(finishes, abortingIDs: toAbort)
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
            progress.lastMessageAt = clock.now()
        }
        if let note {
            progress.lastMessage = String(note.prefix(2000))
            progress.lastMessageAt = clock.now()
        }
        progress.lastProgressAt = clock.now()
        if let todos = transcript.todos, let data = try? JSONEncoder().encode(todos) {
            progress.todos = String(decoding: data, as: UTF8.self)
        }
        session.task.progress = progress
        return ProgressUpdate(progress: progress, logOffset: session.logOffset, externalSessionID: transcript.externalSessionID, newMessages: newMessages)
    }

    /// A failure becomes a retry while the task's `--retries` allow, else an error.
    func outcomeForFailure(_ task: TaskRecord, error: String) -> TaskOutcome {
        guard task.attempt <= task.maxRetries else { return .failed(error: error) }
        let delay = settings.retryBackoffMs << min(Int64(task.attempt - 1), 10)
        return .requeued(reason: "attempt \(task.attempt) failed: \(error.prefix(300)); retry \(task.attempt)/\(task.maxRetries) in \(delay < 1000 ? "\(delay)ms" : formatDuration(milliseconds: delay))", delayMs: delay)
    }

    /// Writes the transitions; sessions in `abortingIDs` are aborted only when this worker really owned
    /// them (a worker resumed after a pause must never stop a session another worker adopted).
    func writeFinishes(_ finishes: [TaskFinish], abortingIDs: Set<String> = []) throws {
        guard !finishes.isEmpty else { return }
        let owned = try store.finish(finishes, workerID: workerID)
        for (item, ownership) in zip(finishes, owned) {
            sessions[item.task.id] = nil
            guard ownership == .owned else {
                forgetSession(item.task)
                log.event("lost", task: item.task.id, "not finalized: another worker owns this task now")
                continue
            }
            if abortingIDs.contains(item.task.id) { abortSession(item.task) }
            switch item.outcome {
            case .completed: log.event("completed", task: item.task.id, "running → completed")
            case .failed(let error): log.event("error", task: item.task.id, "running → error: \(firstLine(error))")
            case .cancelled(let reason): log.event("cancelled", task: item.task.id, "running → cancelled: \(reason)")
            case .requeued(let reason, _): log.event("pending", task: item.task.id, "running → pending: \(firstLine(reason))")
            }
        }
        wantClaim = true  // a slot may have been freed: hand it off now
    }

    /// Another worker owns the task now: drop what this worker's backend holds for it (a provider call in
    /// flight is cancelled: the new owner sends its own), without touching the session itself.
    func forgetSession(_ task: TaskRecord) {
        guard let preset = preset(forAgent: task.agent), preset.isProviderAPI else { return }
        backend(for: preset).abort(task, agent: nil)
    }

    func firstLine(_ text: String) -> String {
        String(text.split(separator: "\n", maxSplits: 1).first ?? "").prefix(300).description
    }

    func dropLost(_ task: TaskRecord) {
        forgetSession(task)
        sessions[task.id] = nil
        log.event("lost", task: task.id, "another worker owns this task now; stopped polling it")
    }

    // MARK: - Cancel and abort

    /// Running tasks of this worker that a person asked to cancel: abort, release the slot, mark cancelled.
    func applyCancelRequests() throws {
        guard !sessions.isEmpty else { return }
        let requested = try store.cancelRequests(workerID: workerID)
        let items = requested.compactMap { id in
            sessions[id].map { TaskFinish(task: $0.task, outcome: .cancelled(reason: "cancelled by user")) }
        }
        try writeFinishes(items, abortingIDs: Set(items.map(\.task.id)))
    }

    /// SIGINT now; SIGTERM and SIGKILL follow after the grace period if the session is still there.
    func abortSession(_ task: TaskRecord) {
        guard let preset = preset(forAgent: task.agent) else { return }
        let backend = backend(for: preset)
        backend.abort(task, agent: registry.agent(named: task.agent))
        if backend.needsEscalation(task) {
            aborts.append(PendingAbort(task: task, backend: backend, nextSignal: SIGTERM, dueMonotonic: monotonic + settings.abortGraceMs))
        }
    }

    func escalateAborts() {
        guard !aborts.isEmpty else { return }
        let now = monotonic
        var remaining: [PendingAbort] = []
        for var pending in aborts {
            guard pending.backend.needsEscalation(pending.task) else { continue }
            if pending.dueMonotonic > now {
                remaining.append(pending)
                continue
            }
            pending.backend.escalateAbort(pending.task, signal: pending.nextSignal)
            if pending.nextSignal == SIGTERM {
                pending.nextSignal = SIGKILL
                pending.dueMonotonic = now + settings.abortGraceMs
                remaining.append(pending)
            }
        }
        aborts = remaining
    }

    /// Before exiting: finish the abort escalation so no aborted session outlives the worker.
    func escalateAbortsUntilDone() {
        while !aborts.isEmpty {
            collectExitedChildren()
            escalateAborts()
            if !aborts.isEmpty { usleep(20_000) }
        }
    }
}
