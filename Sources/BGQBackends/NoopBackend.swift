import BGQCore

/// Completes at once with the prompt as the result: measures the queue's own cost (benchmarks).
public final class NoopBackend: SessionBackend {
    public init() {}

    public func start(_ request: StartRequest) throws -> SessionStart {
        SessionStart(sessionID: request.sessionID, backend: "noop", externalID: request.sessionID, run: TaskRecord.RunHandle())
    }

    public func poll(_ session: ActiveSession) -> PollResult {
        guard session.transcript.result == nil else {
            return PollResult(status: .ended(exitCode: 0, detail: nil), newMessages: [], madeProgress: false)
        }
        let messages = session.transcript.apply([.result(text: session.task.prompt, isError: false)], at: session.task.startedAt ?? Instant(milliseconds: 0))
        return PollResult(status: .ended(exitCode: 0, detail: nil), newMessages: messages, madeProgress: true)
    }

    public func finalResult(_ session: ActiveSession) -> (text: String, isError: Bool)? { (session.task.prompt, false) }
    public func failureDetail(_ session: ActiveSession) -> String? { nil }
    public func abort(_ task: TaskRecord, agent: AgentDefinition?) {}
    public func adoptionCheck(_ task: TaskRecord, host: String) -> AdoptionCheck { .adoptable }
}
