
/// What a backend says about a session at one poll.
public enum SessionStatus: Sendable, Equatable {
    /// Working.
    case busy
    /// The provider asked to retry (OpenCode's `retry` status); counts as busy.
    case retry(message: String)
    /// Idle: finished its turn.
    case idle
    /// Absent from the backend's status map (OpenCode drops idle sessions): checked like idle.
    case missing
    /// The session is gone for good (an exec process exited): nothing more will happen.
    case ended(exitCode: Int32?, detail: String?)
}

/// One poll's view of a session, the only thing the rules read (they never see the backend).
public struct SessionSnapshot: Sendable, Equatable {
    public var status: SessionStatus
    public var messageCount: Int
    public var hasRealOutput: Bool
    public var openTodos: Int
    /// The result the agent reported, if any, and whether it reported a failure.
    public var result: String?
    public var resultIsError: Bool
    /// What keeps the backend from checking the session (its server unreachable): when the stale timeout
    /// comes, this is the error, not inactivity.
    public var problem: String?
    /// The agent's output format promises a result (Claude Code's `result` line, or the assistant's text for
    /// codex, gemini and opencode): a run that ends without one did not do its job, whatever its exit code.
    /// Plain output (`shell`, `llm`, `command`) may legitimately be empty.
    public var promisesResult: Bool
    public init(status: SessionStatus, messageCount: Int, hasRealOutput: Bool, openTodos: Int, result: String?, resultIsError: Bool = false,
                problem: String? = nil, promisesResult: Bool = false) {
        self.status = status
        self.messageCount = messageCount
        self.hasRealOutput = hasRealOutput
        self.openTodos = openTodos
        self.result = result
        self.resultIsError = resultIsError
        self.problem = problem
        self.promisesResult = promisesResult
    }
}

/// What the rules decide.
public enum Verdict: Sendable, Equatable {
    case keepRunning
    /// Stable for long enough: ask the backend for a fresh status, then call `afterIdleRecheck`.
    case recheckStatus
    case complete(result: String)
    /// → error, and abort the session.
    case fail(error: String, abort: Bool)
    /// → cancelled (the stale rule), and abort the session.
    case cancel(reason: String)
}

/// Per-session memory of the rules between polls (stability detection).
public struct RuleMemory: Sendable, Equatable {
    public var lastMessageCount: Int? = nil
    public var stablePolls = 0
    public init() {}
}

/// The original's completion rules (../shared/reference/upstream.md), as one pure function.
///
/// Order per poll, as in the original: TTL, stale, then the session's status.
public struct CompletionRules: Sendable {
    public var settings: Settings
    public init(settings: Settings) { self.settings = settings }

    /// - Parameters:
    ///   - runtimeMs: time since the task started running.
    ///   - sinceProgressMs: time since anything new was seen (messages, output, tool calls).
    public func evaluate(_ snapshot: SessionSnapshot, runtimeMs: Int64, sinceProgressMs: Int64, memory: inout RuleMemory) -> Verdict {
        if settings.taskTTLMs > 0 && runtimeMs >= settings.taskTTLMs {
            return .fail(error: "Task timed out after \(spelledDuration(milliseconds: settings.taskTTLMs))", abort: true)
        }
        // An ended session cannot make progress any more: decide now, whatever its age.
        if case .ended(let exitCode, let detail) = snapshot.status {
            return ended(snapshot, exitCode: exitCode, detail: detail)
        }
        if runtimeMs >= settings.minRuntimeBeforeStaleMs && sinceProgressMs >= settings.staleTimeoutMs {
            // Not inactivity: the session could not be checked at all (e.g. `opencode server unreachable at …`).
            if let problem = snapshot.problem { return .fail(error: problem, abort: true) }
            let minutes = max(1, sinceProgressMs / 60_000)
            return .cancel(reason: "Stale timeout (no activity for \(minutes)min)")
        }
        switch snapshot.status {
        case .idle, .missing:
            // Too early to trust idle: deferred to a later poll, never dropped (oh-my-opencode #1517).
            guard runtimeMs >= settings.minIdleMs else { return .keepRunning }
            return idleVerdict(snapshot)
        case .busy, .retry:
            guard runtimeMs >= settings.minStabilityMs else {
                memory.lastMessageCount = snapshot.messageCount
                return .keepRunning
            }
            if memory.lastMessageCount == snapshot.messageCount {
                memory.stablePolls += 1
            } else {
                memory.stablePolls = 0
            }
            memory.lastMessageCount = snapshot.messageCount
            if memory.stablePolls >= settings.stablePolls { return .recheckStatus }
            return .keepRunning
        case .ended:
            return .keepRunning
        }
    }

    /// After `recheckStatus`: idle (or missing) with real output and no open todo completes; otherwise start counting again.
    public func afterIdleRecheck(_ snapshot: SessionSnapshot, memory: inout RuleMemory) -> Verdict {
        memory.stablePolls = 0
        switch snapshot.status {
        case .idle, .missing: return idleVerdict(snapshot)
        case .ended(let exitCode, let detail): return ended(snapshot, exitCode: exitCode, detail: detail)
        case .busy, .retry: return .keepRunning
        }
    }

    func idleVerdict(_ snapshot: SessionSnapshot) -> Verdict {
        if snapshot.resultIsError { return .fail(error: snapshot.result ?? "the agent reported an error", abort: false) }
        guard snapshot.hasRealOutput, snapshot.openTodos == 0 else { return .keepRunning }
        return .complete(result: snapshot.result ?? "")
    }

    func ended(_ snapshot: SessionSnapshot, exitCode: Int32?, detail: String?) -> Verdict {
        if snapshot.resultIsError {
            return .fail(error: snapshot.result.flatMap { $0.isEmpty ? nil : $0 } ?? detail ?? "the agent reported an error", abort: false)
        }
        guard exitCode == 0 else {
            let code = exitCode.map { "exit code \($0)" } ?? "no exit status"
            return .fail(error: "agent failed (\(code))" + (detail.map { ": \($0)" } ?? ""), abort: false)
        }
        if snapshot.promisesResult && snapshot.result == nil {
            return .fail(error: "agent printed no result (it exited 0 without a result line or any answer)", abort: false)
        }
        return .complete(result: snapshot.result ?? "")
    }
}
