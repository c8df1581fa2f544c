import BGQCore
import Foundation

// JSON-RPC 2.0 as MCP uses it over stdio: one message per line, no batches (MCP 2025-06-18 removed them),
// request ids that are strings or integers (never null). https://www.jsonrpc.org/specification

/// A request's id: MCP allows a string or an integer.
enum RequestID: Hashable, Sendable, CustomStringConvertible {
    case int(Int)
    case string(String)

    init?(_ value: JSONValue) {
        switch value {
        case .int(let number): self = .int(number)
        case .string(let text): self = .string(text)
        default: return nil
        }
    }

    var json: JSONValue {
        switch self {
        case .int(let number): .int(number)
        case .string(let text): .string(text)
        }
    }

    var description: String { json.serialized }
}

/// A protocol-level failure, answered with a JSON-RPC error object instead of a result.
struct JSONRPCError: Error, Equatable, Sendable {
    /// The codes JSON-RPC 2.0 reserves, the ones bgq answers with.
    enum Code: Int, Sendable {
        case parseError = -32700
        case invalidRequest = -32600
        case methodNotFound = -32601
        case invalidParams = -32602
        case internalError = -32603
    }

    let code: Code
    let message: String

    init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }
}

/// One line from the client, classified before anything runs.
enum IncomingMessage: Equatable {
    /// A request: it gets exactly one response (none once cancelled).
    case request(id: RequestID, method: String, params: [String: JSONValue])
    /// A notification: never answered.
    case notification(method: String, params: [String: JSONValue])
    /// The client answering a request; bgq sends none, so these are dropped.
    case response
    /// Not a valid message: answered with this error; id null when the message's own id is unusable.
    case invalid(id: JSONValue, JSONRPCError)

    /// Classifies one line: the checks JSON-RPC 2.0 and MCP ask of every message, in the order that picks
    /// the most useful error.
    static func classify(_ line: String) -> IncomingMessage {
        let value: JSONValue
        do {
            value = try JSONValue.parse(line)
        } catch {
            return .invalid(id: .null, JSONRPCError(.parseError, "parse error: \(error) (send one JSON-RPC message per line)"))
        }
        guard case .object(let message) = value else {
            if case .array = value {
                return .invalid(id: .null, JSONRPCError(.invalidRequest,
                    "batches are not supported: MCP has no JSON-RPC batching since 2025-06-18; send one message per line"))
            }
            return .invalid(id: .null, JSONRPCError(.invalidRequest, "a JSON-RPC message is an object, not \(value.kindName)"))
        }
        var id: RequestID?
        if let raw = message["id"] {
            guard let valid = RequestID(raw) else {
                return .invalid(id: .null, JSONRPCError(.invalidRequest, "\"id\" must be a string or an integer, not \(raw.kindName)"))
            }
            id = valid
        }
        guard message["jsonrpc"] == .string("2.0") else {
            return .invalid(id: id?.json ?? .null, JSONRPCError(.invalidRequest, "\"jsonrpc\" must be \"2.0\""))
        }
        guard let rawMethod = message["method"] else {
            if id != nil, message["result"] != nil || message["error"] != nil { return .response }
            return .invalid(id: id?.json ?? .null, JSONRPCError(.invalidRequest, "no \"method\": a request names its method"))
        }
        guard case .string(let method) = rawMethod else {
            return .invalid(id: id?.json ?? .null, JSONRPCError(.invalidRequest, "\"method\" must be a string, not \(rawMethod.kindName)"))
        }
        var params: [String: JSONValue] = [:]
        switch message["params"] {
        case nil: break
        case .object(let object)?: params = object
        case let other?:
            guard let id else { return .notification(method: method, params: [:]) }
            return .invalid(id: id.json, JSONRPCError(.invalidParams, "\"params\" of \(method) must be an object, not \(other.kindName)"))
        }
        guard let id else { return .notification(method: method, params: params) }
        return .request(id: id, method: method, params: params)
    }
}

extension JSONValue {
    /// The JSON type's name, for error messages.
    var kindName: String {
        switch self {
        case .null: "null"
        case .bool: "a boolean"
        case .int: "an integer"
        case .double: "a number"
        case .string: "a string"
        case .array: "an array"
        case .object: "an object"
        }
    }
}

/// Writes whole messages to stdout, one line each, from any thread: a lock keeps concurrent answers
/// from interleaving inside a line. A client that went away (EPIPE) is not an error worth a crash.
final class MessageWriter: @unchecked Sendable {
    private let lock = NSLock()
    private let fileDescriptor: Int32
    private var closed = false

    init(fileDescriptor: Int32 = STDOUT_FILENO) { self.fileDescriptor = fileDescriptor }

    func send(_ message: JSONValue) {
        let bytes = Array((message.serialized + "\n").utf8)
        lock.lock()
        defer { lock.unlock() }
        var offset = 0
        while !closed && offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { write(fileDescriptor, $0.baseAddress, $0.count) }
            if written > 0 { offset += written } else if written < 0 && errno == EINTR { continue } else { closed = true }
        }
    }

    func result(id: RequestID, _ result: JSONValue) {
        send(["jsonrpc": "2.0", "id": id.json, "result": result])
    }

    func error(id: JSONValue, _ error: JSONRPCError) {
        send(["jsonrpc": "2.0", "id": id, "error": ["code": .int(error.code.rawValue), "message": .string(error.message)]])
    }

    func notify(_ method: String, _ params: JSONValue) {
        send(["jsonrpc": "2.0", "method": .string(method), "params": params])
    }
}
