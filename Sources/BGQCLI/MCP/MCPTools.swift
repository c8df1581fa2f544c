import BGQCore
import Foundation

/// One tool as `tools/list` publishes it; its input schema is also what `ToolSchema` enforces.
struct ToolDefinition: Sendable {
    let name: String
    let description: String
    let inputSchema: JSONValue

    var listed: JSONValue { ["name": .string(name), "description": .string(description), "inputSchema": inputSchema] }
}

/// What a tool call answers: a text, an error flag (MCP's `isError`: the model reads it and can correct itself).
struct ToolOutcome: Equatable, Sendable {
    var text: String
    var isError: Bool
}

/// Where a tool call stands after its immediate part: answered, or waiting for a task to end.
enum ToolStep: Equatable, Sendable {
    case done(ToolOutcome)
    /// Wait up to `milliseconds` for the task, then describe it; a foreground delegate's failed task is an error.
    case wait(taskID: String, milliseconds: Int64, errorWhenFailed: Bool)
}

/// One store connection shared by the tool threads, one call at a time: SQLite connections and their
/// statements are not for concurrent use, and each call holds it only for a few queries (a wait takes
/// it once per poll), so a waiting tool never keeps another from the store.
final class SharedStore: @unchecked Sendable {
    private let lock = NSLock()
    private let database: DatabaseOptions
    private var opened: Result<any QueueStore, Error>?

    init(database: DatabaseOptions) { self.database = database }

    func with<T>(_ body: (any QueueStore) throws -> T) throws -> T {
        lock.lock()
        defer { lock.unlock() }
        if opened == nil { opened = Result { try database.openStore() } }
        return try body(opened!.get())
    }
}

/// The seed's three tools over bgq's store, with the original's texts.
final class MCPTools: Sendable {
    let store: SharedStore
    /// How often a wait looks at its task, and how often it reports progress.
    static let pollMilliseconds: Int64 = 100
    static let progressEveryMilliseconds: Int64 = 1000
    /// The longest wait a tool does (the original's cap).
    static let maximumWaitMilliseconds: Int64 = 600_000

    init(store: SharedStore) { self.store = store }

    static let definitions: [ToolDefinition] = [
        ToolDefinition(
            name: "delegate_task",
            description: "Launch an agent task in the background (run_in_background true) or wait for its result. Continue a session with session_id.",
            inputSchema: object(required: ["description", "prompt"], [
                "description": ["type": "string", "minLength": 1, "description": "A short description of the task"],
                "prompt": ["type": "string", "minLength": 1, "description": "What the agent should do"],
                "agent": ["type": "string", "minLength": 1, "description": "The agent (`bgq agents` lists them); required unless session_id continues a session"],
                "model": ["type": "string", "description": "provider/model (default: the agent's)"],
                "run_in_background": ["type": "boolean", "description": "Return at once (default true)"],
                "session_id": ["type": "string", "description": "Continue this session (ses_…)"],
            ])),
        ToolDefinition(
            name: "background_output",
            description: "A background task's status, or its result once completed; block waits for it.",
            inputSchema: object(required: ["task_id"], [
                "task_id": ["type": "string", "description": "The task (bg_…)"],
                "block": ["type": "boolean", "description": "Wait until the task ends or the timeout passes"],
                "timeout": ["type": "number", "minimum": 0, "description": "Milliseconds to wait with block (default 60000, at most 600000)"],
            ])),
        ToolDefinition(
            name: "background_cancel",
            description: "Cancel a background task (taskId) or every running and pending one (all).",
            inputSchema: object(required: [], [
                "taskId": ["type": "string", "description": "The task to cancel (bg_…)"],
                "all": ["type": "boolean", "description": "Cancel every running and pending task"],
            ])),
    ]

    private static func object(required: [String], _ properties: [String: JSONValue]) -> JSONValue {
        ["type": "object", "properties": .object(properties), "required": .array(required.map(JSONValue.string)), "additionalProperties": false]
    }

    /// Runs a tool's immediate part (checks, enqueue, cancel, a look at a task); a wait is left to
    /// `finish`. Arguments that do not fit the schema, and every failure, are an error result, not a
    /// protocol error (MCP 2025-11-25: the model sees the message and can correct the call).
    func call(_ tool: ToolDefinition, _ arguments: [String: JSONValue]) -> ToolStep {
        let problems = ToolSchema(schema: tool.inputSchema).problems(in: arguments)
        guard problems.isEmpty else {
            return .done(ToolOutcome(text: "[ERROR] Invalid arguments for \(tool.name): \(problems.joined(separator: "; ")).", isError: true))
        }
        do {
            switch tool.name {
            case "delegate_task": return try delegate(arguments)
            case "background_output": return try output(arguments)
            default: return .done(try cancel(arguments))
            }
        } catch {
            return .done(ToolOutcome(text: "[ERROR] \(error)", isError: true))
        }
    }

    /// Waits as the step says and describes how it ended.
    func finish(_ step: ToolStep, _ request: RequestContext) -> ToolOutcome {
        switch step {
        case .done(let outcome):
            return outcome
        case .wait(let id, let timeoutMs, let errorWhenFailed):
            do {
                return try describe(try wait(for: id, milliseconds: timeoutMs, request), timeoutMs: timeoutMs, errorWhenFailed: errorWhenFailed)
            } catch {
                return ToolOutcome(text: "[ERROR] \(error)", isError: true)
            }
        }
    }

    // MARK: - Tools

    private func delegate(_ arguments: [String: JSONValue]) throws -> ToolStep {
        let agent = arguments["agent"]?.string, session = arguments["session_id"]?.string
        guard let prompt = arguments["prompt"]?.string, let description = arguments["description"]?.string, agent != nil || session != nil else {
            return .done(ToolOutcome(text: "[ERROR] Invalid arguments: delegate_task needs description, prompt and agent (strings; agent may be left out with session_id).", isError: true))
        }
        let stored: TaskRecord? = try store.with { store in
            let registry = AgentRegistry(userAgents: try store.userAgents())
            let task = try TaskInput.make(prompt: prompt, agent: agent, model: arguments["model"]?.string, description: description, parent: nil,
                                          priority: 0, session: session, retries: 0, registry: registry, store: store)
            return try store.enqueue([task]).first
        }
        guard let stored else { return .done(ToolOutcome(text: "[ERROR] the task was not stored", isError: true)) }
        if arguments["run_in_background"]?.bool == false {
            return .wait(taskID: stored.id, milliseconds: Self.maximumWaitMilliseconds, errorWhenFailed: true)
        }
        return .done(ToolOutcome(text: """
            Background task launched.

            Task ID: \(stored.id)
            Session ID: \(stored.sessionID ?? "(pending)")
            Description: \(stored.description)
            Agent: \(stored.agent)
            Status: \(stored.status.rawValue)

            System notifies on completion. Use background_output with task_id="\(stored.id)" to check.
            """, isError: false))
    }

    private func output(_ arguments: [String: JSONValue]) throws -> ToolStep {
        let text = arguments["task_id"]?.string ?? ""
        let id: String
        switch try store.with({ try Self.lookUp(text, in: $0) }) {
        case .found(let found): id = found
        case .missing(let reason): return .done(ToolOutcome(text: reason, isError: true))
        }
        // Clamped as a Double first: Int64(1e300) would trap.
        let timeoutMs = Int64(min(arguments["timeout"]?.number ?? 60_000, Double(Self.maximumWaitMilliseconds)))
        let task = try store.with { try $0.requireTask(id: id) }
        if arguments["block"]?.bool == true && !task.status.isTerminal {
            return .wait(taskID: id, milliseconds: timeoutMs, errorWhenFailed: false)
        }
        return .done(try describe(.ended(task), timeoutMs: timeoutMs, errorWhenFailed: false))
    }

    private func cancel(_ arguments: [String: JSONValue]) throws -> ToolOutcome {
        try store.with { store in
            if arguments["all"]?.bool == true {
                let outcomes = try store.cancel(taskIDs: try store.activeTaskIDs(parentID: nil))
                let tasks = outcomes.compactMap { outcome -> TaskRecord? in
                    switch outcome { case .cancelled(let t), .requested(let t): t; case .alreadyFinished: nil }
                }
                return ToolOutcome(text: tasks.isEmpty ? "No running or pending tasks to cancel." : BGQCommand.Cancel.render(tasks), isError: false)
            }
            guard let text = arguments["taskId"]?.string else {
                return ToolOutcome(text: "[ERROR] Invalid arguments: Either provide a taskId or set all=true to cancel all running tasks.", isError: true)
            }
            let id: String
            switch try Self.lookUp(text, in: store) {
            case .found(let found): id = found
            case .missing(let reason): return ToolOutcome(text: "[ERROR] " + reason, isError: true)
            }
            switch try store.cancel(taskIDs: [id]).first {
            case .cancelled(let task)?, .requested(let task)?: return ToolOutcome(text: BGQCommand.Cancel.render([task]), isError: false)
            case .alreadyFinished(let task)?:
                return ToolOutcome(text: "[ERROR] Cannot cancel task: current status is \"\(task.status.rawValue)\".\nOnly running or pending tasks can be cancelled.", isError: true)
            case nil: return ToolOutcome(text: "[ERROR] Task not found: \(text)", isError: true)
            }
        }
    }

    /// A task id as a tool names it: found, or the reason no single task matches (the seed's "Task not found").
    enum Lookup { case found(String), missing(String) }

    /// Resolves a tool's task id. A database error (locked, corrupt) is thrown, never answered as "not found".
    static func lookUp(_ text: String, in store: any QueueStore) throws -> Lookup {
        do {
            return .found(try store.resolveTaskID(text))
        } catch let error as BGQError {
            switch error {
            case .notFound, .usage: return .missing(Render.taskNotFound(text, error))
            default: throw error
            }
        }
    }

    // MARK: - Waiting

    /// How a wait ended. A cancelled wait is never described: its request gets no answer.
    enum WaitEnd {
        case ended(TaskRecord)
        case timedOut(TaskRecord)
        case cancelled
    }

    /// Waits for the task to end, the timeout to pass or the client to cancel the request, reporting
    /// progress (seconds waited, of the timeout) when the client gave a progressToken.
    func wait(for id: String, milliseconds timeoutMs: Int64, _ request: RequestContext) throws -> WaitEnd {
        let clock = try store.with { $0.clock }
        let started = clock.monotonicMilliseconds()
        var lastReport: Int64?
        var lastStatus: TaskStatus?
        while true {
            let task = try store.with { try $0.requireTask(id: id) }
            if task.status.isTerminal { return .ended(task) }
            let waited = clock.monotonicMilliseconds() - started
            if waited >= timeoutMs { return .timedOut(task) }
            if let progress = request.progress, lastStatus != task.status || lastReport.map({ waited - $0 >= Self.progressEveryMilliseconds }) ?? true {
                progress.report(progress: Double(waited) / 1000, total: Double(timeoutMs) / 1000,
                                message: "Task \(task.id) is \(task.status.rawValue); waited \(waited / 1000) s of \(timeoutMs / 1000) s")
                lastReport = waited
                lastStatus = task.status
            }
            if request.sleep(milliseconds: min(Self.pollMilliseconds, timeoutMs - waited)) { return .cancelled }
        }
    }

    private func describe(_ end: WaitEnd, timeoutMs: Int64, errorWhenFailed: Bool) throws -> ToolOutcome {
        try store.with { store in
            switch end {
            case .cancelled:
                return ToolOutcome(text: "Cancelled by the client.", isError: true)
            case .timedOut(let task):
                return ToolOutcome(text: "Timeout exceeded (\(timeoutMs)ms). Task still \(task.status.rawValue).\n\n" + (try status(store, task)), isError: false)
            case .ended(let task):
                let text = task.status == .completed ? Render.result(task, now: store.clock.now()) : try status(store, task)
                return ToolOutcome(text: text, isError: errorWhenFailed && task.status == .error)
            }
        }
    }

    private func status(_ store: any QueueStore, _ task: TaskRecord) throws -> String {
        let last = try store.messages(taskID: task.id).last(where: { $0.role == .assistant && !$0.content.isEmpty })?.content
        return Render.status(task, lastMessage: last, now: store.clock.now())
    }
}
