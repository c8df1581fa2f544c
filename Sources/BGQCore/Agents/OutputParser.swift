import Foundation

/// One thing an agent's output told us.
public enum AgentEvent: Sendable, Equatable {
    /// The agent's own session id (used to continue the session).
    case sessionID(String)
    case message(role: SessionMessage.Role, kind: SessionMessage.Kind, tool: String?, text: String)
    /// The agent's whole todo list, as it now stands.
    case todos([Todo])
    /// The final answer (or failure) the agent reported.
    case result(text: String, isError: Bool)
}

/// A todo item. Open unless completed or cancelled (the original's rule).
public struct Todo: Codable, Sendable, Equatable {
    public var content: String
    public var status: String
    public init(content: String, status: String) {
        self.content = content
        self.status = status
    }
    public var isOpen: Bool { status != "completed" && status != "cancelled" }
}

/// Reads an agent's stdout line by line. Lines that are not what the format expects are kept as plain
/// output, never a crash: agents print banners, warnings and partial lines.
public enum OutputParser {
    /// Longest line parsed as JSON; longer lines are kept as (truncated) plain output.
    static let maxJSONLine = 8 << 20
    package static let maxMessageText = 64 << 10

    public static func events(format: AgentPreset.OutputFormat, line: String) -> [AgentEvent] {
        let trimmed = line.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !trimmed.isEmpty else { return [] }
        if format == .plainText { return [.message(role: .assistant, kind: .output, tool: nil, text: clip(line))] }
        guard trimmed.utf8.count <= maxJSONLine, trimmed.first == "{",
              let object = (try? JSONSerialization.jsonObject(with: Data(trimmed.utf8))) as? [String: Any]
        else { return [.message(role: .system, kind: .output, tool: nil, text: clip(trimmed))] }
        switch format {
        case .claudeStreamJSON: return claude(object)
        case .opencodeJSON: return opencode(object)
        case .codexJSON: return codex(object)
        case .geminiStreamJSON: return gemini(object)
        case .plainText: return []
        }
    }

    package static func clip(_ text: String) -> String {
        text.utf8.count <= maxMessageText ? text : String(decoding: Array(text.utf8.prefix(maxMessageText)), as: UTF8.self) + "…"
    }

    static func string(_ value: Any?) -> String? { value as? String }

    static func todos(from list: Any?) -> [Todo]? {
        guard let items = list as? [[String: Any]] else { return nil }
        return items.map { item in
            Todo(content: (item["content"] as? String) ?? (item["text"] as? String) ?? "",
                 status: (item["status"] as? String) ?? ((item["completed"] as? Bool) == true ? "completed" : "pending"))
        }
    }

    static func compactJSON(_ value: Any?) -> String {
        guard let value, JSONSerialization.isValidJSONObject(value),
              let data = try? JSONSerialization.data(withJSONObject: value, options: [.sortedKeys]) else {
            return (value as? String) ?? ""
        }
        return String(decoding: data, as: UTF8.self)
    }

    // MARK: Claude Code (stream-json)

    static func claude(_ object: [String: Any]) -> [AgentEvent] {
        var events: [AgentEvent] = []
        if let id = string(object["session_id"]), (object["type"] as? String) == "system" || (object["type"] as? String) == "result" {
            events.append(.sessionID(id))
        }
        switch string(object["type"]) {
        case "assistant", "user":
            let role: SessionMessage.Role = string(object["type"]) == "assistant" ? .assistant : .tool
            let content = (object["message"] as? [String: Any])?["content"]
            if let text = content as? String { events.append(.message(role: role, kind: .text, tool: nil, text: clip(text))) }
            for part in (content as? [[String: Any]]) ?? [] {
                switch string(part["type"]) {
                case "text":
                    events.append(.message(role: role, kind: .text, tool: nil, text: clip(string(part["text"]) ?? "")))
                case "thinking":
                    events.append(.message(role: role, kind: .reasoning, tool: nil, text: clip(string(part["thinking"]) ?? "")))
                case "tool_use":
                    let name = string(part["name"]) ?? "tool"
                    let input = part["input"] as? [String: Any]
                    if name == "TodoWrite", let list = todos(from: input?["todos"]) { events.append(.todos(list)) }
                    events.append(.message(role: .assistant, kind: .toolUse, tool: name, text: clip(compactJSON(input))))
                case "tool_result":
                    let value = part["content"]
                    let text = (value as? String) ?? ((value as? [[String: Any]])?.compactMap { $0["text"] as? String }.joined(separator: "\n")) ?? ""
                    events.append(.message(role: .tool, kind: .toolResult, tool: nil, text: clip(text)))
                default: break
                }
            }
        case "result":
            let isError = (object["is_error"] as? Bool) ?? false
            let text = string(object["result"]) ?? (object["errors"] as? [String])?.joined(separator: "\n") ?? string(object["subtype"]) ?? ""
            events.append(.result(text: text, isError: isError))
        default: break
        }
        return events
    }

    // MARK: opencode (run --format json)

    static func opencode(_ object: [String: Any]) -> [AgentEvent] {
        var events: [AgentEvent] = []
        if let id = string(object["sessionID"]) { events.append(.sessionID(id)) }
        let part = object["part"] as? [String: Any]
        switch string(object["type"]) {
        case "text":
            events.append(.message(role: .assistant, kind: .text, tool: nil, text: clip(string(part?["text"]) ?? string(object["text"]) ?? "")))
        case "reasoning":
            events.append(.message(role: .assistant, kind: .reasoning, tool: nil, text: clip(string(part?["text"]) ?? "")))
        case "tool_use":
            let tool = string(part?["tool"]) ?? "tool"
            let state = part?["state"] as? [String: Any]
            if tool == "todowrite", let list = todos(from: (state?["input"] as? [String: Any])?["todos"]) { events.append(.todos(list)) }
            events.append(.message(role: .assistant, kind: .toolUse, tool: tool, text: clip(string(state?["output"]) ?? compactJSON(state?["input"]))))
        case "error":
            let error = object["error"] as? [String: Any]
            let message = string((error?["data"] as? [String: Any])?["message"]) ?? string(error?["message"]) ?? string(error?["name"]) ?? "opencode error"
            events.append(.result(text: message, isError: true))
        default: break
        }
        return events
    }

    // MARK: Codex (exec --json)

    static func codex(_ object: [String: Any]) -> [AgentEvent] {
        switch string(object["type"]) {
        case "thread.started":
            return string(object["thread_id"]).map { [.sessionID($0)] } ?? []
        case "item.completed", "item.updated", "item.started":
            guard let item = object["item"] as? [String: Any] else { return [] }
            let completed = string(object["type"]) == "item.completed"
            switch string(item["type"]) {
            case "agent_message" where completed:
                return [.message(role: .assistant, kind: .text, tool: nil, text: clip(string(item["text"]) ?? ""))]
            case "reasoning" where completed:
                return [.message(role: .assistant, kind: .reasoning, tool: nil, text: clip(string(item["text"]) ?? ""))]
            case "command_execution" where completed:
                return [.message(role: .assistant, kind: .toolUse, tool: "shell", text: clip(string(item["command"]) ?? ""))]
            case "todo_list":
                return todos(from: item["items"]).map { [.todos($0)] } ?? []
            default:
                return completed ? [.message(role: .assistant, kind: .toolUse, tool: string(item["type"]), text: "")] : []
            }
        case "turn.failed":
            let message = string((object["error"] as? [String: Any])?["message"]) ?? "turn failed"
            return [.result(text: message, isError: true)]
        case "error":
            return [.result(text: string(object["message"]) ?? "codex error", isError: true)]
        default:
            return []
        }
    }

    // MARK: Gemini CLI (stream-json)

    static func gemini(_ object: [String: Any]) -> [AgentEvent] {
        switch string(object["type"]) {
        case "init":
            return string(object["session_id"]).map { [.sessionID($0)] } ?? []
        case "message":
            guard string(object["role"]) == "assistant" else { return [] }
            return [.message(role: .assistant, kind: .text, tool: nil, text: clip(string(object["content"]) ?? ""))]
        case "tool_use":
            return [.message(role: .assistant, kind: .toolUse, tool: string(object["tool_name"]) ?? "tool", text: clip(compactJSON(object["parameters"])))]
        case "tool_result":
            return [.message(role: .tool, kind: .toolResult, tool: nil, text: clip(string(object["output"]) ?? ""))]
        case "result":
            let failed = string(object["status"]) == "error"
            let text = string((object["error"] as? [String: Any])?["message"]) ?? ""
            return [.result(text: text, isError: failed)]
        case "error":
            return [.result(text: string(object["message"]) ?? "gemini error", isError: true)]
        default:
            return []
        }
    }
}

/// Folds a run's events into what the worker stores and what the completion rules read.
public struct AgentTranscript: Sendable {
    public var externalSessionID: String?
    public var todos: [Todo]?
    public var messageCount = 0
    public var toolCalls = 0
    public var lastTool: String?
    public var lastMessage: String?
    public var hasRealOutput = false
    public var result: (text: String, isError: Bool)?
    /// Assistant text in order (the result of agents that report no result line).
    public var assistantText: [String] = []

    public init() {}

    /// Applies events; returns the messages to store.
    public mutating func apply(_ events: [AgentEvent], at time: Instant) -> [SessionMessage] {
        var messages: [SessionMessage] = []
        for event in events {
            switch event {
            case .sessionID(let id): externalSessionID = id
            case .todos(let list): todos = list
            case .result(let text, let isError):
                result = (text, isError)
                if !isError && !text.isEmpty { hasRealOutput = true }
                messages.append(SessionMessage(role: isError ? .system : .assistant, kind: isError ? .error : .result, content: text, at: time))
            case .message(let role, let kind, let tool, let text):
                let message = SessionMessage(role: role, kind: kind, tool: tool, content: text, at: time)
                messages.append(message)
                if message.isRealOutput { hasRealOutput = true }
                if kind == .toolUse { toolCalls += 1; lastTool = tool }
                if role == .assistant && (kind == .text || kind == .output) && !text.isEmpty {
                    lastMessage = text
                    assistantText.append(text)
                }
            }
        }
        messageCount += messages.count
        return messages
    }

    /// Applies events that a worker that died had stored already: updates what the rules and the
    /// progress read (output seen, tools, the last message), but stores and counts nothing again.
    public mutating func replay(_ events: [AgentEvent]) {
        let stored = messageCount
        _ = apply(events, at: Instant(milliseconds: 0))
        messageCount = stored
    }

    public var openTodos: Int { todos?.filter(\.isOpen).count ?? 0 }
}
