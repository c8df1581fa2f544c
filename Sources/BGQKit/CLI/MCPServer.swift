import ArgumentParser
import Foundation

extension BGQCommand {
    /// `bgq mcp`: the Model Context Protocol over stdio, with the seed's three tools.
    ///
    /// Written without modelcontextprotocol/swift-sdk on purpose: the stdio transport is newline-
    /// delimited JSON-RPC 2.0 and bgq needs four methods of it (initialize, tools/list, tools/call,
    /// ping). bgq already has a strict JSON parser and a synchronous store; the SDK would add its async
    /// runtime and build time for no difference a client can see. See https://modelcontextprotocol.io
    struct MCP: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "mcp",
            abstract: "Serve the Model Context Protocol on stdio: delegate_task, background_output, background_cancel.",
            discussion: """
                An agent (Claude Code, opencode, any MCP client) delegates work to bgq with the seed's tools; bgq workers run it.

                Example (Claude Code):
                  claude --mcp-config '{"mcpServers":{"bgq":{"command":"bgq","args":["mcp"]}}}'
                """)
        @OptionGroup var database: DatabaseOptions

        func run() throws {
            signal(SIGPIPE, SIG_IGN)
            let server = MCPServer(database: database)
            while let line = readLine(strippingNewline: true) {
                guard !line.trimmingASCIIWhitespace.isEmpty else { continue }
                if let reply = server.handle(line: line) {
                    FileHandle.standardOutput.write(Data((reply + "\n").utf8))
                }
            }
        }
    }
}

/// Answers MCP JSON-RPC messages, one line each.
final class MCPServer {
    let database: DatabaseOptions
    lazy var store: Result<any QueueStore, Error> = Result { try database.openStore() }

    init(database: DatabaseOptions) { self.database = database }

    static let protocolVersion = "2025-06-18"

    func handle(line: String) -> String? {
        let message: [String: JSONValue]
        do {
            guard case .object(let object) = try JSONValue.parse(line) else { return error(id: .null, code: -32600, "a JSON-RPC message is an object") }
            message = object
        } catch {
            return self.error(id: .null, code: -32700, "parse error: \(error)")
        }
        let id = message["id"] ?? .null
        guard case .string(let method)? = message["method"] else {
            return message["id"] == nil ? nil : error(id: id, code: -32600, "no method")
        }
        let params: [String: JSONValue]
        if case .object(let object)? = message["params"] { params = object } else { params = [:] }
        let isNotification = message["id"] == nil
        switch method {
        case "initialize":
            var version = Self.protocolVersion
            if case .string(let asked)? = params["protocolVersion"] { version = asked }
            return result(id: id, [
                "protocolVersion": version,
                "capabilities": ["tools": ["listChanged": false]],
                "serverInfo": ["name": "bgq", "version": BGQCommand.configuration.version],
                "instructions": "Delegate background agent tasks to bgq; `bgq worker` processes run them under concurrency limits.",
            ])
        case "ping":
            return result(id: id, [:])
        case "tools/list":
            return result(id: id, ["tools": Self.tools])
        case "tools/call":
            guard case .string(let name)? = params["name"] else { return error(id: id, code: -32602, "tools/call needs a tool name") }
            var arguments: [String: JSONValue] = [:]
            if case .object(let object)? = params["arguments"] { arguments = object }
            let (text, isError) = call(name, arguments)
            guard text != nil else { return error(id: id, code: -32602, "unknown tool '\(name)': the tools are delegate_task, background_output, background_cancel") }
            return result(id: id, ["content": [["type": "text", "text": text!]], "isError": isError])
        default:
            if isNotification { return nil }  // notifications/initialized and the like need no answer
            return error(id: id, code: -32601, "method not found: \(method)")
        }
    }

    // MARK: - Tools

    static var tools: [[String: Any]] { [
        ["name": "delegate_task",
         "description": "Launch an agent task in the background (run_in_background true) or wait for its result. Continue a session with session_id.",
         "inputSchema": ["type": "object", "required": ["description", "prompt", "agent"], "properties": [
            "description": ["type": "string", "description": "A short description of the task"],
            "prompt": ["type": "string", "description": "What the agent should do"],
            "agent": ["type": "string", "description": "The agent (`bgq agents` lists them)"],
            "model": ["type": "string", "description": "provider/model (default: the agent's)"],
            "run_in_background": ["type": "boolean", "description": "Return at once (default true)"],
            "session_id": ["type": "string", "description": "Continue this session (ses_…)"],
         ] as [String: Any]] as [String: Any]],
        ["name": "background_output",
         "description": "A background task's status, or its result once completed; block waits for it.",
         "inputSchema": ["type": "object", "required": ["task_id"], "properties": [
            "task_id": ["type": "string"], "block": ["type": "boolean"],
            "timeout": ["type": "number", "description": "Milliseconds to wait with block (default 60000, at most 600000)"],
         ] as [String: Any]] as [String: Any]],
        ["name": "background_cancel",
         "description": "Cancel a background task (taskId) or every running and pending one (all).",
         "inputSchema": ["type": "object", "properties": ["taskId": ["type": "string"], "all": ["type": "boolean"]] as [String: Any]] as [String: Any]],
    ] }

    /// Runs a tool; nil text means the tool does not exist.
    func call(_ name: String, _ arguments: [String: JSONValue]) -> (String?, Bool) {
        func string(_ key: String) -> String? { if case .string(let v)? = arguments[key] { return v }; return nil }
        func bool(_ key: String) -> Bool? { if case .bool(let v)? = arguments[key] { return v }; return nil }
        let store: any QueueStore
        switch self.store {
        case .success(let opened): store = opened
        case .failure(let error): return ("[ERROR] \(error)", true)
        }
        do {
            switch name {
            case "delegate_task":
                let agent = string("agent")
                guard let prompt = string("prompt"), let description = string("description"), agent != nil || string("session_id") != nil else {
                    return ("[ERROR] Invalid arguments: delegate_task needs description, prompt and agent (strings; agent may be left out with session_id).", true)
                }
                let registry = AgentRegistry(userAgents: try store.userAgents())
                let task = try TaskInput.make(prompt: prompt, agent: agent, model: string("model"), description: description, parent: nil,
                                              priority: 0, session: string("session_id"), retries: 0, registry: registry, store: store)
                guard let stored = try store.enqueue([task]).first else { return ("[ERROR] the task was not stored", true) }
                if bool("run_in_background") == false {
                    let (finished, timedOut) = try wait(store, id: stored.id, timeoutMs: 600_000)
                    return (timedOut ? "Timeout exceeded (600000ms). Task still \(finished.status.rawValue).\n\n" + status(store, finished)
                            : finished.status == .completed ? Render.result(finished, now: store.clock.now()) : status(store, finished), finished.status == .error)
                }
                return ("""
                    Background task launched.

                    Task ID: \(stored.id)
                    Session ID: \(stored.sessionID ?? "(pending)")
                    Description: \(stored.description)
                    Agent: \(stored.agent)
                    Status: \(stored.status.rawValue)

                    System notifies on completion. Use background_output with task_id="\(stored.id)" to check.
                    """, false)
            case "background_output":
                guard let text = string("task_id") else { return ("[ERROR] Invalid arguments: background_output needs task_id.", true) }
                let id: String
                do { id = try store.resolveTaskID(text) } catch { return (Render.taskNotFound(text, error), true) }
                var task = try store.requireTask(id: id)
                var timedOut = false
                var timeoutMs: Int64 = 60_000
                if case .int(let ms)? = arguments["timeout"] { timeoutMs = Int64(min(max(ms, 0), 600_000)) }
                if case .double(let ms)? = arguments["timeout"], ms.isFinite { timeoutMs = Int64(min(max(ms, 0), 600_000)) }
                if bool("block") == true && !task.status.isTerminal { (task, timedOut) = try wait(store, id: id, timeoutMs: timeoutMs) }
                if timedOut { return ("Timeout exceeded (\(timeoutMs)ms). Task still \(task.status.rawValue).\n\n" + status(store, task), false) }
                return (task.status == .completed ? Render.result(task, now: store.clock.now()) : status(store, task), false)
            case "background_cancel":
                if bool("all") == true {
                    let outcomes = try store.cancel(taskIDs: try store.activeTaskIDs(parentID: nil))
                    let tasks = outcomes.compactMap { outcome -> TaskRecord? in
                        switch outcome { case .cancelled(let t), .requested(let t): t; case .alreadyFinished: nil }
                    }
                    return (tasks.isEmpty ? "No running or pending tasks to cancel." : BGQCommand.Cancel.render(tasks), false)
                }
                guard let text = string("taskId") else {
                    return ("[ERROR] Invalid arguments: Either provide a taskId or set all=true to cancel all running tasks.", true)
                }
                let id: String
                do { id = try store.resolveTaskID(text) } catch { return ("[ERROR] " + Render.taskNotFound(text, error), true) }
                switch try store.cancel(taskIDs: [id]).first {
                case .cancelled(let task)?, .requested(let task)?: return (BGQCommand.Cancel.render([task]), false)
                case .alreadyFinished(let task)?:
                    return ("[ERROR] Cannot cancel task: current status is \"\(task.status.rawValue)\".\nOnly running or pending tasks can be cancelled.", true)
                case nil: return ("[ERROR] Task not found: \(text)", true)
                }
            default:
                return (nil, true)
            }
        } catch {
            return ("[ERROR] \(error)", true)
        }
    }

    func status(_ store: any QueueStore, _ task: TaskRecord) -> String {
        let last = (try? store.messages(taskID: task.id))?.last(where: { $0.role == .assistant && !$0.content.isEmpty })?.content
        return Render.status(task, lastMessage: last, now: store.clock.now())
    }

    func wait(_ store: any QueueStore, id: String, timeoutMs: Int64) throws -> (TaskRecord, Bool) {
        let deadline = store.clock.monotonicMilliseconds() + timeoutMs
        var task = try store.requireTask(id: id)
        while !task.status.isTerminal {
            if store.clock.monotonicMilliseconds() >= deadline { return (task, true) }
            usleep(100_000)
            task = try store.requireTask(id: id)
        }
        return (task, false)
    }

    // MARK: - JSON-RPC

    func result(id: JSONValue, _ value: [String: Any]) -> String {
        Render.jsonLine(["jsonrpc": "2.0", "id": id.foundation, "result": value])
    }

    func error(id: JSONValue, code: Int, _ message: String) -> String {
        Render.jsonLine(["jsonrpc": "2.0", "id": id.foundation, "error": ["code": code, "message": message]])
    }
}

extension JSONValue {
    /// The value as Foundation objects, for JSONSerialization.
    var foundation: Any {
        switch self {
        case .null: NSNull()
        case .bool(let v): v
        case .int(let v): v
        case .double(let v): v
        case .string(let v): v
        case .array(let v): v.map(\.foundation)
        case .object(let v): v.mapValues(\.foundation)
        }
    }
}
