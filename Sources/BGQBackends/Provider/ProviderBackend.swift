import BGQCore
import Foundation

/// Sessions that are conversations with a provider's API (OpenAI-compatible or Anthropic), called directly.
///
/// The conversation lives in the database as session message rows (the prompt as a `user` message,
/// the reply as the `result`), so `bgq enqueue --session` continues it: the next request carries the
/// earlier turns. A call runs on the HTTP client's event loop; the worker's loop is woken when the reply is in.
/// Replies are streamed: each poll stores the text that arrived since the last one as an assistant `text`
/// message (so `bgq show` shows the answer growing, and the task's progress time moves while tokens come),
/// and the `result` carries the whole answer; only the `user` and `result` rows are sent again as turns.
/// A stream that ends before its last event is retried like a dropped connection.
/// 429 and 5xx are retried with the provider's retry-after or exponential backoff with jitter, a bounded
/// number of times; while backing off the task keeps its slot, because the limit is what protects the
/// provider. A worker that adopts a task after a crash sends the request again (the reply was lost with
/// the worker that waited for it).
public final class ProviderBackend: SessionBackend {
    let api: ProviderAPI
    let http: HTTPClient
    let environment: [String: String]
    let policy: ProviderRetryPolicy
    let requestTimeoutSeconds: Double
    /// Earlier turns of a session (its messages, except those of the given task), from the database.
    /// It throws rather than answer with fewer turns: a follow-up sent without its history would be
    /// answered as a new conversation.
    let loadConversation: (_ sessionID: String, _ exceptTaskID: String) throws -> [SessionMessage]
    /// Wakes the worker's loop from another thread (a reply came in, a retry is due).
    let wake: @Sendable () -> Void
    /// The tokens a task's calls spent (every attempt's, as the provider reported them), once it ends;
    /// by default kept for the worker to take (`takeUsageReports`).
    package var reportUsage: ((_ taskID: String, _ usage: TokenUsage) -> Void)?
    /// Usage reported and not taken by the worker yet.
    var usageReports: [SessionUsage] = []
    private let ready = ReadySet()
    /// Sessions with a call in flight or a retry scheduled, by task id (for abort).
    var active: [String: State] = [:]
    /// Requests built at start (the conversation read then), taken by the session's first poll.
    var prepared: [String: State] = [:]

    /// One session's call.
    final class State: @unchecked Sendable {
        let request: HTTPRequest
        let endpointText: String
        let baseURL: String
        let keyVariable: String
        var retries = 0
        var inFlight: HTTPClient.InFlight?
        let box = ResultBox()
        var retryDueNanos: UInt64?
        var retryNote: String?
        var outcome: (text: String, isError: Bool)?
        var promptStored: Bool
        /// The current attempt's reply as it arrives, and when the attempt began.
        var reader: ProviderReplyReader?
        var attemptStartedNanos: UInt64 = 0
        /// The tokens of the attempts that ended.
        var usage = TokenUsage()
        var usageReported = false
        init(request: HTTPRequest, baseURL: String, keyVariable: String, promptStored: Bool) {
            self.request = request
            self.endpointText = "\(request.endpoint) at \(baseURL)"
            self.baseURL = baseURL
            self.keyVariable = keyVariable
            self.promptStored = promptStored
        }
    }

    public init(api: ProviderAPI, http: HTTPClient, environment: [String: String], policy: ProviderRetryPolicy = ProviderRetryPolicy(),
                requestTimeoutSeconds: Double = 600,
                loadConversation: @escaping (_ sessionID: String, _ exceptTaskID: String) throws -> [SessionMessage],
                wake: @escaping @Sendable () -> Void) {
        self.api = api
        self.http = http
        self.environment = environment
        self.policy = policy
        self.requestTimeoutSeconds = requestTimeoutSeconds
        self.loadConversation = loadConversation
        self.wake = wake
    }

    var preset: AgentPreset { AgentPreset.named(api.rawValue)! }

    // MARK: - Start

    /// Builds the request (a bad agent fails here with a clear error) and reads the conversation, so a
    /// database error keeps the task unstarted and the worker tries again; the first poll sends it.
    public func start(_ request: StartRequest) throws -> SessionStart {
        let task = request.task
        let (built, base, keyVariable) = try makeRequest(task: task, agent: request.agent, model: request.model, sessionID: request.sessionID)
        prepared[task.id] = State(request: built, baseURL: base, keyVariable: keyVariable, promptStored: false)
        // The session's own id is the "external" id: continuing it needs nothing but the stored messages.
        return SessionStart(sessionID: request.sessionID, backend: api.rawValue, externalID: request.sessionID, run: TaskRecord.RunHandle())
    }

    func makeRequest(task: TaskRecord, agent: AgentDefinition, model: ModelRef?, sessionID: String) throws -> (HTTPRequest, String, String) {
        guard let model = model ?? task.modelRef ?? (try? agent.model.map { try ModelRef(parsing: $0) }) ?? nil else {
            throw BGQError.usage("agent '\(agent.name)' has no model: give the task --model provider/model, or the agent one with `bgq agents add \(agent.name) --preset \(api.rawValue) --model provider/model`")
        }
        let base = agent.url ?? preset.defaultURL ?? ""
        let keyVariable = agent.apiKeyEnv ?? preset.defaultKeyEnv ?? ""
        let key = environment[keyVariable].flatMap { $0.isEmpty ? nil : $0 }
        var turns: [ProviderAPI.Turn] = []
        if task.continuesSession {
            for message in try loadConversation(sessionID, task.id) {
                switch (message.role, message.kind) {
                case (.user, .text): turns.append(.init(role: "user", text: message.content))
                case (.assistant, .result): turns.append(.init(role: "assistant", text: message.content))
                default: continue
                }
            }
        }
        turns.append(.init(role: "user", text: task.prompt))
        guard let request = api.request(base: base, model: model.modelID, turns: turns, apiKey: key, timeoutSeconds: requestTimeoutSeconds) else {
            throw BGQError.usage("agent '\(agent.name)' has no valid URL ('\(base)'): set one with `bgq agents add \(agent.name) --preset \(api.rawValue) --url http(s)://…`")
        }
        return (request, base, keyVariable)
    }

    // MARK: - Poll

    public func takeReadyTaskIDs() -> [String] { ready.take() }

    public func takeUsageReports() -> [SessionUsage] {
        defer { usageReports.removeAll() }
        return usageReports
    }

    public func poll(_ session: ActiveSession) -> PollResult {
        let task = session.task
        let state: State
        if let existing = session.backendState as? State {
            state = existing
        } else if let built = prepared.removeValue(forKey: task.id) {
            state = built
            session.backendState = state
            active[task.id] = state
        } else {
            // Adopted: the dead worker's request went with it; build it again, with the conversation.
            guard let agent = session.agent else {
                return finish(session, nil, (text: "agent '\(task.agent)' is no longer defined", isError: true))
            }
            do {
                let (request, base, keyVariable) = try makeRequest(task: task, agent: agent, model: nil, sessionID: task.sessionID ?? "")
                state = State(request: request, baseURL: base, keyVariable: keyVariable, promptStored: task.progress.messageCount > 0)
            } catch BGQError.database(let problem) where problem.isTransient {
                // The conversation could not be read just now: ask again at the next poll rather than send
                // a follow-up without its earlier turns (the stale timeout bounds the wait).
                return PollResult(status: .busy, newMessages: [], madeProgress: false, problem: problem.message, waiting: true)
            } catch {
                return finish(session, nil, (text: "\(error)", isError: true))
            }
            session.backendState = state
            active[task.id] = state
        }
        var newMessages: [SessionMessage] = []
        if !state.promptStored {
            state.promptStored = true
            newMessages += session.transcript.apply([.message(role: .user, kind: .text, tool: nil, text: task.prompt)], at: now)
        }
        // The answer so far: what came since the last poll becomes a message; `bgq show` shows the tail.
        var madeProgress = false
        if let (fresh, tail) = state.reader?.takeNewText(tail: 2000), !fresh.isEmpty {
            newMessages += session.transcript.apply([.message(role: .assistant, kind: .text, tool: nil, text: fresh)], at: now)
            session.transcript.lastMessage = tail
            madeProgress = true
        }
        if let outcome = state.outcome { return finish(session, state, outcome, messages: newMessages) }
        if state.inFlight == nil {
            if let due = state.retryDueNanos, DispatchTime.now().uptimeNanoseconds < due {
                return PollResult(status: .retry(message: state.retryNote ?? "retrying"), newMessages: newMessages, madeProgress: false, waiting: true)
            }
            send(state, taskID: task.id)
            return PollResult(status: .busy, newMessages: newMessages, madeProgress: false, waiting: true)
        }
        guard let result = state.box.get() else {
            // Waiting for the provider: the request's own timeouts bound the wait, not the stale rule.
            return PollResult(status: .busy, newMessages: newMessages, madeProgress: madeProgress, waiting: true)
        }
        state.inFlight = nil
        state.box.clear()
        state.usage = state.usage + (state.reader?.usage ?? TokenUsage())
        if let outcome = judge(result, state: state, taskID: task.id) {
            state.outcome = outcome
            return finish(session, state, outcome, messages: newMessages)
        }
        return PollResult(status: .retry(message: state.retryNote ?? "retrying"), newMessages: newMessages, madeProgress: madeProgress, waiting: true)
    }

    var now: Instant { Instant(milliseconds: Int64(Date().timeIntervalSince1970 * 1000)) }

    func send(_ state: State, taskID: String) {
        state.retryDueNanos = nil
        let ready = self.ready
        let wake = self.wake
        let box = state.box
        let reader = ProviderReplyReader(api: api)
        state.reader = reader
        state.attemptStartedNanos = DispatchTime.now().uptimeNanoseconds
        state.inFlight = http.stream(state.request, onHead: { _, headers in reader.head(headers: headers) },
                                     onBodyPart: { reader.part($0) }, completion: { result in
            box.set(result)
            ready.insert(taskID)
            wake()
        })
    }

    /// The outcome of one exchange, or nil when a retry was scheduled.
    func judge(_ result: Result<HTTPResponse, HTTPFailure>, state: State, taskID: String) -> (text: String, isError: Bool)? {
        switch result {
        case .failure(.cancelled):
            return ("the request to \(state.endpointText) was cancelled", true)
        case .failure(let failure) where !failure.isTransient:
            // Not a network hiccup (an untrusted certificate, a broken or oversized reply, a bad URL): trying
            // again changes nothing.
            return ("request to \(state.endpointText) failed: \(failure)", true)
        case .failure(let failure):
            let problem = state.reader?.started == true ? brokenStream(failure, state: state) : "provider unreachable at \(state.baseURL) (\(Self.detail(failure)))"
            return retryOrGiveUp(state, taskID: taskID, headers: [:], problem: problem)
        case .success(let response) where (200..<300).contains(response.status):
            return judgeReply(state, taskID: taskID)
        case .success(let response):
            let (message, code) = api.errorDetail(response.body)
            return judgeError(state, taskID: taskID, status: response.status, message: message, code: code, headers: response.headers,
                              problem: "HTTP \(response.status) from \(state.endpointText): \(message)")
        }
    }

    /// A 2xx reply: a whole stream, an error reported inside it, one that broke off, or a plain JSON body.
    func judgeReply(_ state: State, taskID: String) -> (text: String, isError: Bool)? {
        let body = state.reader?.body ?? .none
        switch body {
        case .none, .whole:
            // A server that ignored `stream`: its one JSON body, read as a non-streamed reply.
            guard case .whole(let data) = body else { return ("\(state.endpointText) answered without a body", true) }
            switch api.reply(data) {
            case .text(let text, let usage):
                state.usage = state.usage + usage
                return (text, false)
            case .malformed(let detail): return ("\(state.endpointText) answered with an unexpected body (\(detail))", true)
            }
        case .events(let decoder):
            switch decoder.state {
            case .complete:
                return (decoder.text, false)
            case .providerError(let message, let type):
                // Anthropic's `overloaded_error` stands for the 529 it would have answered before streaming.
                return judgeError(state, taskID: taskID, status: ProviderAPI.status(ofStreamError: type), message: message, code: type,
                                  headers: [:], problem: "error event\(type.map { " (\($0))" } ?? "") in the stream from \(state.endpointText): \(message)")
            case .malformed(let detail):
                return ("\(state.endpointText) sent an unexpected event stream (\(detail))", true)
            case .open:
                let end = api == .openai ? "data: [DONE]" : "message_stop"
                let problem = "the stream from \(state.endpointText) ended without \(end) after \(decoder.text.count) characters (a truncated reply)"
                return retryOrGiveUp(state, taskID: taskID, headers: [:], problem: problem)
            }
        }
    }

    /// An error the provider answered (its status, or the status an error event stands for).
    func judgeError(_ state: State, taskID: String, status: Int, message: String, code: String?, headers: [String: String],
                    problem: String) -> (text: String, isError: Bool)? {
        if status == 401 || status == 403 {
            return ("authentication failed at \(state.baseURL) (HTTP \(status)): \(message). Set \(state.keyVariable) in the worker's environment (or name another variable with `bgq agents add … --api-key-env NAME`)", true)
        }
        if code == "insufficient_quota" {
            return ("\(message) (insufficient_quota from \(state.baseURL): not retried; add credit or use another key)", true)
        }
        guard ProviderRetryPolicy.isRetryable(status: status) else { return (problem, true) }
        return retryOrGiveUp(state, taskID: taskID, headers: headers, problem: problem)
    }

    /// Why a stream that had begun broke off: it stalled (the read timeout between two parts), ran past
    /// the request's deadline, or lost its connection.
    func brokenStream(_ failure: HTTPFailure, state: State) -> String {
        guard failure == .timedOut else { return "the stream from \(state.endpointText) broke off (\(Self.detail(failure)))" }
        let elapsed = Double(DispatchTime.now().uptimeNanoseconds - state.attemptStartedNanos) / 1e9
        if elapsed >= state.request.timeoutSeconds {
            return "the stream from \(state.endpointText) timed out: not done within the request's \(spelledDuration(milliseconds: Int64(state.request.timeoutSeconds * 1000)))"
        }
        return "the stream from \(state.endpointText) timed out: nothing arrived for \(spelledDuration(milliseconds: http.settings.readTimeoutMs)) (\(HTTPSettings.readTimeoutVariable))"
    }

    static func detail(_ failure: HTTPFailure) -> String {
        if case .unreachable(let why) = failure { return why }
        return failure.description
    }

    /// A retry if the policy allows one (nil), else the task's error.
    func retryOrGiveUp(_ state: State, taskID: String, headers: [String: String], problem: String) -> (text: String, isError: Bool)? {
        scheduleRetry(state, taskID: taskID, headers: headers, problem: problem) ? nil : ("\(problem) (gave up after \(state.retries) retries)", true)
    }

    /// Schedules the next try if the policy allows one; wakes the worker when it is due.
    func scheduleRetry(_ state: State, taskID: String, headers: [String: String], problem: String) -> Bool {
        guard state.retries < policy.maxRetries else { return false }
        state.retries += 1
        let delay = policy.delayMs(retry: state.retries, headers: headers, jitter: Double.random(in: 0...1))
        state.retryDueNanos = DispatchTime.now().uptimeNanoseconds + UInt64(delay) * 1_000_000
        state.retryNote = "\(problem); retry \(state.retries)/\(policy.maxRetries) in \(formatDuration(milliseconds: max(delay, 1000)))"
        let ready = self.ready
        let wake = self.wake
        DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(Int(delay))) {
            ready.insert(taskID)
            wake()
        }
        return true
    }

    func finish(_ session: ActiveSession, _ state: State?, _ outcome: (text: String, isError: Bool), messages: [SessionMessage] = []) -> PollResult {
        active[session.task.id] = nil
        if let state, !state.usage.isEmpty, !state.usageReported {
            state.usageReported = true
            if let reportUsage {
                reportUsage(session.task.id, state.usage)
            } else {
                usageReports.append(SessionUsage(taskID: session.task.id, inputTokens: state.usage.inputTokens, outputTokens: state.usage.outputTokens))
            }
        }
        var stored = messages
        if session.transcript.result == nil {
            stored += session.transcript.apply([.result(text: outcome.text, isError: outcome.isError)], at: now)
        }
        return PollResult(status: .ended(exitCode: outcome.isError ? 1 : 0, detail: outcome.isError ? outcome.text : nil),
                          newMessages: stored, madeProgress: !stored.isEmpty)
    }

    public func finalResult(_ session: ActiveSession) -> (text: String, isError: Bool)? { session.transcript.result }
    public func failureDetail(_ session: ActiveSession) -> String? { nil }

    // MARK: - Abort and adoption

    public func abort(_ task: TaskRecord, agent: AgentDefinition?) {
        prepared[task.id] = nil
        guard let state = active.removeValue(forKey: task.id) else { return }
        state.inFlight?.cancel()
        state.retryDueNanos = nil
    }

    /// Any worker can call the API: an adopted task sends its request again.
    public func adoptionCheck(_ task: TaskRecord, host: String) -> AdoptionCheck { .adoptable }

    /// A worker that died between the claim and recording the session left nothing to find again.
    public func unrecordedStart(_ task: TaskRecord, runsDirectory: String, host: String) -> UnrecordedStart {
        task.sessionID == nil ? .notStarted : .recorded
    }
}

/// Task ids whose call finished on another thread, handed to the worker's loop.
final class ReadySet: @unchecked Sendable {
    private let lock = NSLock()
    private var ids: [String] = []
    func insert(_ id: String) { lock.withLock { ids.append(id) } }
    func take() -> [String] {
        lock.withLock {
            defer { ids.removeAll() }
            return ids
        }
    }
}
