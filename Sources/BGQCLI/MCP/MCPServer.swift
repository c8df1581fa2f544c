import ArgumentParser
import BGQCore
import Foundation

extension BGQCommand {
    /// `bgq mcp`: the Model Context Protocol (revision 2025-11-25) over stdio, with the seed's three tools.
    ///
    /// Written without modelcontextprotocol/swift-sdk, after trying 0.12.1 in a scratch package: it resolves
    /// and builds here (its docc plugin named by branch is never fetched) and negotiates 2025-11-25, but it
    /// answers a line that is not JSON, not an object or has `"jsonrpc":"1.0"` with -32700 and a random UUID
    /// as the id (JSON-RPC wants -32600 for the last two and id null), drops a request whose id is an object
    /// without an answer, accepts duplicate keys and batches, and checks no tool arguments against their
    /// schema; linking it also pulls in FoundationNetworking (libcurl and ~30 more shared libraries) for its
    /// HTTP transport, which every `bgq` command would load at start-up. Its first build took 123 s here.
    /// Our own is four methods of newline-delimited JSON-RPC on bgq's strict JSON parser and store.
    struct MCP: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "mcp",
            abstract: "Serve the Model Context Protocol on stdio: delegate_task, background_output, background_cancel.",
            discussion: """
                An agent (Claude Code, opencode, any MCP client) delegates work to bgq with the seed's tools; bgq workers run it.
                Protocol revisions: \(MCPServer.supportedProtocolVersions.joined(separator: ", ")) (a client asking for another gets \(MCPServer.latestProtocolVersion)).
                Requests run concurrently; notifications/cancelled ends a pending wait; a progressToken gets progress while waiting.

                Example (Claude Code):
                  claude --mcp-config '{"mcpServers":{"bgq":{"command":"bgq","args":["mcp"]}}}'
                """)
        @OptionGroup var database: DatabaseOptions

        func run() throws {
            signal(SIGPIPE, SIG_IGN)
            let server = MCPServer(tools: MCPTools(store: SharedStore(database: database)), writer: MessageWriter())
            // The read loop only classifies and hands off, so it is always free for the next line: a
            // `notifications/cancelled` or a `ping` is read while a tool waits on its own thread.
            while let line = readLine(strippingNewline: true) {
                guard !line.trimmingASCIIWhitespace.isEmpty else { continue }
                server.receive(line)
            }
            // End of input: answer what is still in flight (a client that wants out sooner sends SIGTERM).
            server.inFlight.waitForAll()
        }
    }
}

/// Answers MCP messages: the lifecycle and utility methods on the reading thread (they are instant),
/// `tools/call` on a queue of their own, and each wait for a task on a thread of its own.
final class MCPServer: Sendable {
    /// The revision bgq implements; the answer to a client asking for one bgq does not know.
    static let latestProtocolVersion = "2025-11-25"
    /// Revisions a client may ask for and get: bgq's tools and messages mean the same in all of them.
    static let supportedProtocolVersions = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"]

    let tools: MCPTools
    let writer: MessageWriter
    let inFlight = InFlightRequests()
    private let calls = DispatchQueue(label: "bgq.mcp.tool-calls")

    init(tools: MCPTools, writer: MessageWriter) {
        self.tools = tools
        self.writer = writer
    }

    /// Handles one line; returns at once (a tool call goes on on its own thread).
    func receive(_ line: String) {
        switch IncomingMessage.classify(line) {
        case .invalid(let id, let error):
            writer.error(id: id, error)
        case .response:
            break
        case .notification(let method, let params):
            // notifications/initialized and others need nothing; a cancellation names the request to end.
            if method == "notifications/cancelled", let raw = params["requestId"], let id = RequestID(raw) { inFlight.cancel(id) }
        case .request(let id, let method, let params):
            do {
                try answer(id: id, method: method, params: params)
            } catch let error as JSONRPCError {
                writer.error(id: id.json, error)
            } catch {
                writer.error(id: id.json, JSONRPCError(.internalError, "\(error)"))
            }
        }
    }

    private func answer(id: RequestID, method: String, params: [String: JSONValue]) throws {
        switch method {
        case "initialize":
            guard case .string(let asked)? = params["protocolVersion"] else {
                throw JSONRPCError(.invalidParams, "initialize needs params.protocolVersion, a string such as \"\(Self.latestProtocolVersion)\"")
            }
            // Version negotiation: the client's revision when bgq has it, else bgq's latest, which the
            // client may accept or disconnect from.
            let version = Self.supportedProtocolVersions.contains(asked) ? asked : Self.latestProtocolVersion
            writer.result(id: id, [
                "protocolVersion": .string(version),
                "capabilities": ["tools": ["listChanged": false]],
                "serverInfo": ["name": "bgq", "version": .string(BGQCommand.configuration.version)],
                "instructions": "Delegate background agent tasks to bgq; `bgq worker` processes run them under concurrency limits.",
            ])
        case "ping":
            writer.result(id: id, [:])
        case "tools/list":
            writer.result(id: id, ["tools": .array(MCPTools.definitions.map(\.listed))])
        case "tools/call":
            try startToolCall(id: id, params: params)
        default:
            throw JSONRPCError(.methodNotFound, "method not found: \(method) (bgq serves initialize, ping, tools/list and tools/call)")
        }
    }

    /// Checks the call's shape (protocol errors, -32602), then runs the tool on its own thread.
    private func startToolCall(id: RequestID, params: [String: JSONValue]) throws {
        guard case .string(let name)? = params["name"] else { throw JSONRPCError(.invalidParams, "tools/call needs params.name, the tool's name") }
        guard let tool = MCPTools.definitions.first(where: { $0.name == name }) else {
            throw JSONRPCError(.invalidParams, "unknown tool '\(name)': the tools are \(MCPTools.definitions.map(\.name).joined(separator: ", "))")
        }
        var arguments: [String: JSONValue] = [:]
        switch params["arguments"] {
        case nil: break
        case .object(let object)?: arguments = object
        case let other?: throw JSONRPCError(.invalidParams, "tools/call params.arguments must be an object, not \(other.kindName)")
        }
        var progress: ProgressReporter?
        if let token = params["_meta"]?["progressToken"] {
            guard RequestID(token) != nil else {
                throw JSONRPCError(.invalidParams, "params._meta.progressToken must be a string or an integer, not \(token.kindName)")
            }
            progress = ProgressReporter(token: token, writer: writer)
        }
        let context = RequestContext(id: id, progress: progress)
        guard inFlight.start(context) else {
            throw JSONRPCError(.invalidRequest, "request id \(id) is already in use by a request in flight")
        }
        // Immediate parts run one at a time in arrival order (a cancel sent before a look at the task is
        // seen by it); each wait moves to a thread of its own, so the queue is never held by one.
        let tools = self.tools, writer = self.writer, inFlight = self.inFlight, toolArguments = arguments
        let answer = { @Sendable (outcome: ToolOutcome) in
            inFlight.finish(context) {
                writer.result(id: id, ["content": [["type": "text", "text": .string(outcome.text)]], "isError": .bool(outcome.isError)])
            }
        }
        calls.async {
            let step = tools.call(tool, toolArguments)
            guard case .wait = step else { return answer(tools.finish(step, context)) }
            Thread.detachNewThread { answer(tools.finish(step, context)) }
        }
    }
}
