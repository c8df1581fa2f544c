import BGQCore
import Foundation

/// Where a task's OpenCode session lives: the task's `run_handle`, so any worker can find it again.
/// `parentServer` is set when the task's parent is an OpenCode session: the completion notices go there
/// (trigger `tasks_parent_notices`).
struct OpenCodeHandle: Equatable {
    var server: OpenCodeServer
    var session: String
    var parentServer: OpenCodeServer?

    var json: String {
        var object: [String: JSONValue] = ["backend": "opencode-server", "server": server.json, "session": .string(session)]
        if let parentServer { object["parentServer"] = parentServer.json }
        return JSONValue.object(object).serialized
    }

    init(server: OpenCodeServer, session: String, parentServer: OpenCodeServer?) {
        self.server = server
        self.session = session
        self.parentServer = parentServer
    }

    init?(json text: String?) {
        guard let text, let value = try? JSONValue.parse(text), let server = OpenCodeServer(json: value["server"]),
              let session = value["session"]?.string else { return nil }
        self.init(server: server, session: session, parentServer: OpenCodeServer(json: value["parentServer"]))
    }
}

/// Sessions on an OpenCode server, the way the original runs them: create a session titled
/// `Background: <description>` (a child of the parent's session when the parent is one), send the
/// prompt with prompt_async and the task's agent and model, then poll. Each poll round asks
/// GET /session/status once per server and directory for all of its sessions; a session absent from
/// the map counts as idle. Messages are read at each poll (progress, stability), todos when it looks idle.
public final class OpenCodeBackend: SessionBackend, NoticeTransport {
    let http: HTTPClient
    let environment: [String: String]
    /// This round's GET /session/status answers, per server.
    var roundStatuses: [OpenCodeServer: Result<[String: JSONValue], OpenCodeError>] = [:]
    var round = 0

    /// What the backend remembers of one session between polls.
    final class State {
        let handle: OpenCodeHandle
        /// Output parts already turned into messages (by part id), so each is stored once.
        var emittedParts: Set<String> = []
        /// After an adoption: how many parts the dead worker had stored already (skipped once).
        var partsToSkip: Int
        /// A digest of everything seen: when it changes, the session made progress.
        var fingerprint = ""
        var resultText = ""
        var assistantError: String?
        /// A failure that ends the task at once (401, malformed answer, vanished session).
        var fatal: String?
        /// The poll round this session was last polled in (a second poll in a round asks afresh).
        var lastRound = -1
        init(handle: OpenCodeHandle, partsToSkip: Int) {
            self.handle = handle
            self.partsToSkip = partsToSkip
        }
    }

    public init(http: HTTPClient, environment: [String: String]) {
        self.http = http
        self.environment = environment
    }

    func client(for agent: AgentDefinition?) -> OpenCodeClient {
        var client = OpenCodeClient(http: http, environment: environment)
        if let variable = agent?.apiKeyEnv { client.passwordVariable = variable }
        return client
    }

    static func server(for agent: AgentDefinition) -> OpenCodeServer {
        OpenCodeServer(url: agent.url ?? AgentPreset.named("opencode-server")?.defaultURL ?? "http://127.0.0.1:4096",
                       directory: agent.workingDirectory)
    }

    /// Whether a parent id names an OpenCode session (`ses_…`) rather than a bgq task or bgq's own
    /// session ids (`ses_` and 12 hex digits).
    static func isOpenCodeSession(_ id: String?) -> Bool {
        guard let id, id.hasPrefix("ses_") else { return false }
        let rest = id.dropFirst(4)
        return !(rest.count == 12 && rest.allSatisfy(\.isHexDigit))
    }

    // MARK: - Start

    public func start(_ request: StartRequest) throws -> SessionStart {
        let client = client(for: request.agent)
        let server = Self.server(for: request.agent)
        let task = request.task
        let parent = Self.isOpenCodeSession(task.parentID) ? task.parentID : nil
        let session: String
        if let existing = request.resumeExternalID {
            session = existing  // continuing: a new prompt to the same session
        } else {
            session = try client.createSession(server, title: "Background: \(task.description)", parentID: parent).get()
        }
        // The agent name goes to OpenCode unless it is the preset's own name (then the server's default agent runs).
        let agent = request.agent.name == request.preset.name ? nil : request.agent.name
        try client.prompt(server, session: session, text: task.prompt, agent: agent, model: request.model).get()
        var run = TaskRecord.RunHandle()
        run.handle = OpenCodeHandle(server: server, session: session, parentServer: parent == nil ? nil : server).json
        return SessionStart(sessionID: request.sessionID, backend: "opencode-server", externalID: session, run: run)
    }

    // MARK: - Poll

    public func beginPollRound(_ sessions: [ActiveSession]) {
        roundStatuses.removeAll(keepingCapacity: true)
        round += 1
        var servers: [OpenCodeServer: AgentDefinition?] = [:]
        for session in sessions {
            guard let state = state(session) else { continue }
            servers[state.handle.server] = session.agent
        }
        for (server, agent) in servers {
            roundStatuses[server] = client(for: agent).statuses(server)
        }
    }

    func state(_ session: ActiveSession) -> State? {
        if let state = session.backendState as? State { return state }
        guard let handle = OpenCodeHandle(json: session.task.run.handle) else { return nil }
        let state = State(handle: handle, partsToSkip: session.transcriptIsWhole ? 0 : session.task.progress.messageCount)
        session.backendState = state
        return state
    }

    public func poll(_ session: ActiveSession) -> PollResult {
        guard let state = state(session) else {
            return PollResult(status: .ended(exitCode: nil, detail: "no OpenCode session recorded for this task"), newMessages: [], madeProgress: false)
        }
        if state.fatal != nil { return ended() }
        let client = client(for: session.agent)
        let server = state.handle.server
        // The round's status map; a second poll in the same round (the idle re-check) asks again.
        let statuses: Result<[String: JSONValue], OpenCodeError>
        if state.lastRound != round, let shared = roundStatuses[server] {
            statuses = shared
        } else {
            statuses = client.statuses(server)
        }
        state.lastRound = round
        let status: SessionStatus
        switch statuses {
        case .failure(let error):
            return failure(error, state: state)
        case .success(let map):
            let entry = map[state.handle.session]
            switch entry?["type"]?.string {
            case "busy": status = .busy
            case "retry": status = .retry(message: entry?["message"]?.string ?? "retrying")
            case "idle": status = .idle
            case nil: status = .missing
            default: status = .busy
            }
        }
        let messages: [JSONValue]
        switch client.messages(server, session: state.handle.session) {
        case .failure(let error): return failure(error, state: state)
        case .success(let list): messages = list
        }
        var (newMessages, progressed) = read(messages, into: session, state: state)
        if status == .idle || status == .missing {
            switch client.todos(server, session: state.handle.session) {
            case .failure(let error): return failure(error, state: state)
            case .success(let todos):
                if todos != (session.transcript.todos ?? []) {
                    session.transcript.todos = todos
                    progressed = true  // a todo changed: stored, and it counts as activity
                }
            }
        }
        return PollResult(status: status, newMessages: newMessages, madeProgress: progressed)
    }

    func ended() -> PollResult {
        PollResult(status: .ended(exitCode: nil, detail: nil), newMessages: [], madeProgress: false)
    }

    /// Transient failures keep the task running (the stale timeout ends the wait, with this error);
    /// the rest end it now.
    func failure(_ error: OpenCodeError, state: State) -> PollResult {
        if error.isTransient {
            return PollResult(status: .busy, newMessages: [], madeProgress: false, problem: error.description)
        }
        if case .notFound = error {
            state.fatal = "session \(state.handle.session) vanished from the opencode server at \(state.handle.server.url) (404)"
        } else {
            state.fatal = error.description
        }
        return ended()
    }

    /// Turns the current turn's messages (those after the last user message) into stored messages,
    /// each finished part once, and notes the result text and any error of the assistant.
    func read(_ messages: [JSONValue], into session: ActiveSession, state: State) -> ([SessionMessage], Bool) {
        let lastUser = messages.lastIndex { $0["info"]?["role"]?.string == "user" } ?? -1
        let turn = messages.suffix(from: lastUser + 1)
        var events: [AgentEvent] = []
        var texts: [String] = []
        var error: String?
        var digest = "\(messages.count)"
        for message in turn {
            let info = message["info"]
            guard info?["role"]?.string == "assistant" else { continue }
            let completed = info?["time"]?["completed"] != nil
            if let failure = info?["error"] {
                let name = failure["name"]?.string ?? "Error"
                error = failure["data"]?["message"]?.string.map { "\(name): \($0)" } ?? name
            }
            for part in message["parts"]?.array ?? [] {
                let id = part["id"]?.string ?? UUID().uuidString
                let type = part["type"]?.string ?? ""
                digest += "|\(id):\(type):\(part["text"]?.string?.utf8.count ?? 0):\(part["state"]?["status"]?.string ?? "")"
                if type == "text", let text = part["text"]?.string, !text.isEmpty, part["synthetic"]?.bool != true { texts.append(text) }
                guard let event = Self.event(part, messageCompleted: completed), !state.emittedParts.contains(id) else { continue }
                state.emittedParts.insert(id)
                if state.partsToSkip > 0 {
                    state.partsToSkip -= 1
                    session.transcript.replay([event])  // the dead worker stored it already
                    continue
                }
                events.append(event)
            }
        }
        state.resultText = texts.joined(separator: "\n\n")
        state.assistantError = error
        let progressed = digest != state.fingerprint
        state.fingerprint = digest
        let stored = session.transcript.apply(events, at: Instant(milliseconds: Int64(Date().timeIntervalSince1970 * 1000)))
        return (stored, progressed)
    }

    /// A finished part as an event: text and reasoning once their message is complete, tools once done.
    static func event(_ part: JSONValue, messageCompleted: Bool) -> AgentEvent? {
        switch part["type"]?.string {
        case "text" where messageCompleted:
            guard let text = part["text"]?.string, !text.isEmpty, part["synthetic"]?.bool != true else { return nil }
            return .message(role: .assistant, kind: .text, tool: nil, text: String(text.prefix(OutputParser.maxMessageText)))
        case "reasoning" where messageCompleted:
            guard let text = part["text"]?.string, !text.isEmpty else { return nil }
            return .message(role: .assistant, kind: .reasoning, tool: nil, text: String(text.prefix(OutputParser.maxMessageText)))
        case "tool":
            let state = part["state"]
            guard let status = state?["status"]?.string, status == "completed" || status == "error" else { return nil }
            let tool = part["tool"]?.string ?? "tool"
            let detail = state?["title"]?.string ?? state?["input"]?.serialized ?? ""
            return .message(role: .assistant, kind: .toolUse, tool: tool, text: String(detail.prefix(2000)))
        default:
            return nil
        }
    }

    public func finalResult(_ session: ActiveSession) -> (text: String, isError: Bool)? {
        guard let state = session.backendState as? State else { return nil }
        if let fatal = state.fatal { return (fatal, true) }
        if let error = state.assistantError { return (error, true) }
        return state.resultText.isEmpty ? nil : (state.resultText, false)
    }

    public func failureDetail(_ session: ActiveSession) -> String? { nil }

    // MARK: - Abort and adoption

    public func abort(_ task: TaskRecord, agent: AgentDefinition?) {
        guard let handle = OpenCodeHandle(json: task.run.handle) else { return }
        _ = client(for: agent).abort(handle.server, session: handle.session)
    }

    /// Any worker can poll a server session; a task without a recorded session cannot be found again.
    public func adoptionCheck(_ task: TaskRecord, host: String) -> AdoptionCheck {
        OpenCodeHandle(json: task.run.handle) == nil ? .gone : .adoptable
    }

    /// A worker that died between the claim and recording the session left nothing to find again.
    public func unrecordedStart(_ task: TaskRecord, runsDirectory: String, host: String) -> UnrecordedStart {
        task.sessionID == nil ? .notStarted : .recorded
    }

    // MARK: - Parent notices

    /// The agent whose server the notice goes to, for its password variable (nil: the default one).
    func agent(for server: OpenCodeServer, among agents: [AgentDefinition]) -> AgentDefinition? {
        agents.first { AgentPreset.named($0.preset)?.backend == .opencodeServer && Self.server(for: $0) == server }
    }

    /// Sends a notice into the parent session: [BACKGROUND TASK COMPLETED] without waking it
    /// (noReply), [ALL BACKGROUND TASKS COMPLETE] waking it.
    public func send(_ text: String, to parent: String, on server: OpenCodeServer, wake: Bool, agents: [AgentDefinition]) -> NoticeDelivery {
        switch client(for: agent(for: server, among: agents)).prompt(server, session: parent, text: text, noReply: !wake) {
        case .success: .sent
        case .failure(let error): Self.delivery(error)
        }
    }

    /// Whether the parent session already holds a notice (after a worker died while sending it).
    public func parentHasNotice(_ parent: String, on server: OpenCodeServer, containing marker: String, header: String,
                                agents: [AgentDefinition]) -> NoticeDelivery {
        let found = client(for: agent(for: server, among: agents)).messages(server, session: parent).map { messages in
            messages.contains { message in
                (message["parts"]?.array ?? []).contains { part in
                    guard let text = part["text"]?.string else { return false }
                    return text.hasPrefix(header) && text.contains(marker)
                }
            }
        }
        switch found {
        case .success(let holds): return holds ? .sent : .absent
        case .failure(let error): return Self.delivery(error)
        }
    }

    static func delivery(_ error: OpenCodeError) -> NoticeDelivery {
        if case .notFound = error { return .notFound(error.description) }
        return error.isTransient ? .transient(error.description) : .failed(error.description)
    }
}
