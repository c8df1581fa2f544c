import ArgumentParser
import BGQBackends
import BGQCore
import BGQSQLite
import BGQScheduler
import BGQSystem
import Foundation

/// One entry point per parser of outside input, for libFuzzer (Sources/BGQFuzz, `Scripts/fuzz`) and
/// for the regression tests that replay Tests/Fuzz/<target>/ in the normal test suite.
///
/// A target returns normally for any input, accepted or refused; a crash, a failed assertion of its
/// own (`fatalError` below) or a sanitizer report is a finding. Each calls the code the user's path
/// calls, in process: no mocks, and no database except the JSONL target's empty one.
public enum FuzzTarget: String, CaseIterable, Sendable {
    /// `JSONValue.parse`, both duplicate-key modes; what it accepts must serialize and parse back equal.
    case json
    /// `bgq enqueue --jsonl` lines (parsed and checked against an empty database; nothing is enqueued).
    case jsonl
    /// The agent CLIs' output parsers, line by line, folded into a transcript as a worker does.
    case outputClaude = "output-claude", outputCodex = "output-codex", outputGemini = "output-gemini"
    case outputOpencode = "output-opencode", outputLLM = "output-llm"
    /// `bgq limits import`: an oh-my-opencode.json (JSONC).
    case jsonc
    /// One line to the MCP server (`bgq mcp`), with a database that cannot be opened: parsing, JSON-RPC
    /// checks and tool argument checks run; nothing is stored.
    case mcp
    /// Duration, limit, priority, retry and timeout arguments, through the commands' own parsing and
    /// `validate()`.
    case arguments
    /// A `text/event-stream` body (a provider's streamed reply): the SSE parser fed in two parts (the
    /// first byte picks where to cut) must give exactly what it gives fed whole; both provider stream
    /// decoders read the same bytes.
    case sse

    /// Runs the target on one input.
    public func run(_ data: Data) {
        switch self {
        case .json: Self.json(data)
        case .jsonl: Self.jsonl(data)
        case .outputClaude: Self.output(.claudeStreamJSON, data)
        case .outputCodex: Self.output(.codexJSON, data)
        case .outputGemini: Self.output(.geminiStreamJSON, data)
        case .outputOpencode: Self.output(.opencodeJSON, data)
        case .outputLLM: Self.output(.plainText, data)
        case .jsonc: Self.jsonc(data)
        case .mcp: Self.mcp(data)
        case .arguments: Self.arguments(data)
        case .sse: Self.sse(data)
        }
    }

    static func json(_ data: Data) {
        let strict = try? JSONValue.parse(bytes: data)
        guard let value = try? JSONValue.parse(bytes: data, duplicateKeys: .lastWins) else {
            if strict != nil { fatalError("accepted only when duplicate keys are refused") }
            return
        }
        if let strict, strict != value { fatalError("the two duplicate-key modes parsed one document differently") }
        let text = value.serialized
        guard let again = try? JSONValue.parse(text) else { fatalError("serialized JSON does not parse back: \(text.prefix(200))") }
        if again != value { fatalError("JSON changed in a round trip: \(text.prefix(200))") }
    }

    /// The JSONL target's database: empty, made once per process in a temporary directory.
    nonisolated(unsafe) static var jsonlStore: (any QueueStore)? = {
        let directory = NSTemporaryDirectory() + "/bgq-fuzz-\(getpid())"
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        return try? SQLiteStore(path: directory + "/bgq.db")
    }()

    static func jsonl(_ data: Data) {
        guard let store = jsonlStore, let text = String(validating: data, as: UTF8.self) else { return }
        let registry = AgentRegistry(userAgents: [])
        _ = try? TaskInput.parseJSONL(text, registry: registry, store: store)
    }

    static func output(_ format: AgentPreset.OutputFormat, _ data: Data) {
        var transcript = AgentTranscript()
        // A worker reads lines as String(decoding:), so invalid UTF-8 arrives repaired.
        for line in String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false) {
            _ = transcript.apply(OutputParser.events(format: format, line: String(line)), at: Instant(milliseconds: 0))
        }
        _ = transcript.openTodos
    }

    static func jsonc(_ data: Data) {
        guard let text = String(validating: data, as: UTF8.self) else { return }
        _ = try? LimitInput.parseOhMyOpenCode(text, file: "fuzz.json")
    }

    /// An MCP line as `bgq mcp` meets it: classified (JSON-RPC's checks), and a tool call's arguments
    /// checked against every tool's schema. Every refusal must carry a message a client can show.
    static func mcp(_ data: Data) {
        let line = String(decoding: data, as: UTF8.self)
        switch IncomingMessage.classify(line) {
        case .request(_, let method, let params):
            guard method == "tools/call", case .object(let arguments)? = params["arguments"] else { return }
            for tool in MCPTools.definitions { _ = ToolSchema(schema: tool.inputSchema).problems(in: arguments) }
        case .invalid(_, let error):
            if error.message.isEmpty { fatalError("a JSON-RPC error without a message for: \(line.prefix(200))") }
        case .notification, .response:
            return
        }
    }

    /// The first byte picks an option, the rest (split at NUL) are its values. Each command type is
    /// parsed on its own (`parse` runs its validate()), which is faster than through the root command.
    static let argumentCommands: [(ParsableCommand.Type, [String])] = [
        (BGQCommand.SetLimit.self, ["--default"]), (BGQCommand.SetLimit.self, ["--provider", "p"]),
        (BGQCommand.SetLimit.self, ["--model", "p/m"]), (BGQCommand.Enqueue.self, ["--agent", "noop", "--priority"]),
        (BGQCommand.Enqueue.self, ["--agent", "noop", "--retries"]), (BGQCommand.Show.self, ["--block", "--timeout"]),
        (BGQCommand.Wait.self, ["--timeout"]), (BGQCommand.List.self, ["--limit"]), (BGQCommand.History.self, ["--since"]),
        (BGQCommand.Prune.self, ["--older-than"]), (BGQCommand.WorkerCommand.self, ["--poll-interval"]),
        (BGQCommand.WorkerCommand.self, ["--max-sessions"]), (BGQCommand.Watch.self, ["--since"]),
    ]

    static func arguments(_ data: Data) {
        guard let first = data.first else { return }
        let values = String(decoding: data.dropFirst(), as: UTF8.self).split(separator: "\0", omittingEmptySubsequences: false).map(String.init)
        for value in values {
            _ = parseDuration(value)
            _ = try? ModelRef(parsing: value)
            _ = try? LimitInput.checkName(value, what: "model")
            if let number = Int(value) { _ = try? LimitInput.check(number) }
        }
        let (command, prefix) = argumentCommands[Int(first) % argumentCommands.count]
        _ = try? command.parse(prefix + values + (command == BGQCommand.Enqueue.self ? ["prompt"] : []))
    }

    static func sse(_ data: Data) {
        guard let first = data.first else { return }
        let body = Array(data.dropFirst())
        // A small cap, so that inputs of libFuzzer's size reach it.
        var whole = ServerSentEventParser(maxEventBytes: 4096), parts = whole
        let expected = try? whole.feed(body)
        let cut = Int(first) * body.count / 255
        let split = try? parts.feed(body[..<cut]) + parts.feed(body[cut...])
        if expected != split || whole.hasIncompleteEvent != parts.hasIncompleteEvent || whole.retryMs != parts.retryMs
            || whole.lastEventID != parts.lastEventID {
            fatalError("the event stream parsed differently when cut at \(cut) of \(body.count) bytes")
        }
        for event in expected ?? [] where event.isValidUTF8 && event.data.contains("\u{FFFD}") && !String(decoding: body, as: UTF8.self).contains("\u{FFFD}") {
            fatalError("an event flagged valid UTF-8 holds a replacement character the input did not")
        }
        for api in [ProviderAPI.openai, .anthropic] {
            var decoder = ProviderStreamDecoder(api: api)
            decoder.feed(body)
            if decoder.state == .complete, decoder.text.contains("\u{FFFD}"), !String(decoding: body, as: UTF8.self).contains("\u{FFFD}") {
                fatalError("a complete reply holds a replacement character the input did not")
            }
        }
    }
}
