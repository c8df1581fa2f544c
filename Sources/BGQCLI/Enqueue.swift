import ArgumentParser
import BGQCore
import Foundation

extension BGQCommand {
    /// `bgq enqueue`: adds tasks to the queue.
    struct Enqueue: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "enqueue",
            abstract: "Queue a task for a background agent session.",
            discussion: """
                PROMPT may be '-' to read it from standard input; --prompt-file reads it from a file.

                --jsonl FILE (or -) queues one task per line, all or nothing. Fields: prompt (required), agent (required), model, description, parent, priority, session, retries, on_complete. A line:
                  {"agent":"shell","prompt":"make test","priority":1}

                Examples:
                  bgq enqueue --agent shell 'pytest -q'
                  bgq enqueue --agent claude --model anthropic/claude-sonnet-4-5 \\
                      --description 'Explore: auth' 'Find the auth code'
                  bgq enqueue --session ses_1a2b3c 'Continue: now write the tests'
                  bgq enqueue --jsonl tasks.jsonl
                """)

        @OptionGroup var database: DatabaseOptions
        @Option(help: "The agent to run (`bgq agents` lists them). With --session, defaults to the session's agent.") var agent: String?
        @Option(help: "The model, as provider/model (default: the agent's).") var model: String?
        @Option(help: "A short description (default: the prompt's first line).") var description: String?
        @Option(help: "A parent id (a task, or an agent session that delegated this work).") var parent: String?
        @Option(parsing: .unconditional, help: "Higher runs first (from -1000000 to 1000000).") var priority: Int = 0
        @Option(help: "Continue this session (ses_…) with a new prompt.") var session: String?
        @Option(parsing: .unconditional, help: "Run again this many times if the agent fails or its worker is lost (0 to 100).") var retries: Int = 0
        @Option(name: .customLong("on-complete"), help: "A shell command run once when the task ends, with the task as JSON on stdin.") var onComplete: String?
        @Option(name: .customLong("prompt-file"), help: "Read the prompt from this file.") var promptFile: String?
        @Option(help: "Queue one task per JSON line of this file ('-' for standard input).") var jsonl: String?
        @Flag(help: "Print the tasks as JSON.") var json = false
        @Argument(help: "The prompt ('-' for standard input).") var prompt: String?

        func validate() throws {
            if jsonl != nil {
                guard prompt == nil, promptFile == nil, agent == nil, model == nil, session == nil else {
                    throw ValidationError("--jsonl takes every field from the file: drop PROMPT, --prompt-file, --agent, --model and --session")
                }
                return
            }
            guard (prompt == nil) != (promptFile == nil) else {
                throw ValidationError(prompt == nil ? "give a PROMPT, '-' for standard input, or --prompt-file FILE" : "give either PROMPT or --prompt-file, not both")
            }
            guard agent != nil || session != nil else { throw ValidationError("--agent is required (`bgq agents` lists the agents)") }
            try TaskInput.checkPriority(priority, name: "--priority")
            try TaskInput.checkRetries(retries, name: "--retries")
            try TaskInput.refuseRepairedArguments([("the prompt", prompt), ("--model", model), ("--agent", agent), ("--description", description),
                                                   ("--parent", parent), ("--session", session), ("--on-complete", onComplete),
                                                   ("--prompt-file", promptFile), ("--jsonl", jsonl)])
        }

        func run() throws {
            let store = try database.openStore()
            let registry = AgentRegistry(userAgents: try store.userAgents())
            let tasks: [NewTask]
            if let jsonl {
                tasks = try TaskInput.parseJSONL(try TaskInput.readInput(jsonl, what: "JSONL"), registry: registry, store: store)
            } else {
                let text = try promptFile.map { try TaskInput.readInput($0, what: "prompt file") } ?? TaskInput.readInput(prompt ?? "", what: "prompt", literal: prompt != "-")
                var task = try TaskInput.make(prompt: text, agent: agent, model: model, description: description, parent: parent,
                                              priority: priority, session: session, retries: retries, registry: registry, store: store)
                task.onComplete = onComplete
                tasks = [task]
            }
            if jsonl != nil && !json {
                let ids = try store.enqueueReturningIDs(tasks)
                var output = "Enqueued \(ids.count) background task(s) in \(store.location):\n"
                output.reserveCapacity(ids.count * 12 + 80)
                for id in ids { output += id; output += "\n" }
                FileHandle.standardOutput.write(Data(output.utf8))
                return
            }
            let stored = try store.enqueue(tasks)
            if json {
                print(Render.json(jsonl != nil ? stored.map(Render.taskJSON) : Render.taskJSON(stored[0]) as Any))
            } else {
                print(Render.launched(stored[0]))
            }
        }
    }
}

/// Checks and builds tasks from what a person typed or a JSONL line.
enum TaskInput {
    static func checkPriority(_ value: Int, name: String = "priority") throws {
        guard (-1_000_000...1_000_000).contains(value) else {
            throw BGQError.usage("\(name) \(value) is out of range: use a number from -1000000 to 1000000")
        }
    }

    static func checkRetries(_ value: Int, name: String = "retries") throws {
        guard (0...100).contains(value) else { throw BGQError.usage("\(name) \(value) is out of range: use a number from 0 to 100") }
    }

    /// Command-line arguments that are not valid UTF-8, as Swift repaired them (each bad byte became U+FFFD).
    /// `CommandLine.arguments` repairs silently; the raw argv still has the bytes the person gave.
    static func repairedArguments() -> [String] {
        (1..<Int(CommandLine.argc)).compactMap { index in
            guard let raw = CommandLine.unsafeArgv[index], String(validatingCString: raw) == nil else { return nil }
            return String(cString: raw)
        }
    }

    /// Refuses a value that came from an argument that was not valid UTF-8, as a file or stdin would be
    /// refused, instead of storing replacement characters the person never typed.
    static func refuseRepairedArguments(_ values: [(name: String, value: String?)]) throws {
        let repaired = repairedArguments()
        guard !repaired.isEmpty else { return }
        for (name, value) in values {
            guard let value, repaired.contains(where: { $0 == value || $0.hasSuffix("=" + value) }) else { continue }
            throw BGQError.usage("\(name) is not valid UTF-8 text: convert it (for example with iconv) and try again")
        }
    }

    /// Reads a file, '-' (standard input), or returns the literal text. Refuses invalid UTF-8.
    static func readInput(_ source: String, what: String, literal: Bool = false) throws -> String {
        if literal { return source }
        let data: Data
        if source == "-" {
            data = FileHandle.standardInput.readDataToEndOfFile()
        } else {
            guard let contents = FileManager.default.contents(atPath: source) else {
                throw BGQError.usage("cannot read \(what) \(source): no such readable file")
            }
            data = contents
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw BGQError.usage("the \(what) is not valid UTF-8 text: convert it (for example with iconv) and try again")
        }
        return text
    }

    static func make(prompt: String, agent: String?, model: String?, description: String?, parent: String?, priority: Int,
                     session: String?, retries: Int, registry: AgentRegistry, store: any QueueStore,
                     known: KnownAgent? = nil, settings: Settings? = nil) throws -> NewTask {
        guard prompt.unicodeScalars.contains(where: { !$0.properties.isWhitespace }) else {
            throw BGQError.usage("the prompt is empty: say what the agent should do")
        }
        if let index = prompt.utf8.firstIndex(of: 0) {
            throw BGQError.usage("the prompt contains a NUL byte (at byte \(prompt.utf8.distance(from: prompt.utf8.startIndex, to: index))): agents take text; remove it")
        }
        try checkPriority(priority)
        try checkRetries(retries)
        if let description, !description.unicodeScalars.contains(where: { !$0.properties.isWhitespace }) {
            throw BGQError.usage("the description is empty: give one, or leave it out to use the prompt's first line")
        }
        if let parent, parent.unicodeScalars.allSatisfy(\.properties.isWhitespace) {
            throw BGQError.usage("the parent is empty: give a task or session id, or leave it out")
        }
        var agentName = agent
        var sessionID: String?
        // A continuation runs on its session's model (and counts against that model's limit) unless it names one.
        var sessionModel: String?
        if let session {
            let id = try store.resolveSessionID(session)
            guard let record = try store.session(id: id) else { throw BGQError.notFound("Session not found: \(id)") }
            if let agentName, agentName != record.agent {
                throw BGQError.usage("agent '\(agentName)' cannot continue session \(id): it belongs to agent '\(record.agent)'; drop --agent")
            }
            agentName = record.agent
            sessionModel = record.model
            sessionID = id
        }
        guard let agentName else { throw BGQError.usage("--agent is required (`bgq agents` lists the agents)") }
        let defaultModel: String?
        var needsModel = false
        if let known, sessionID == nil, known.name == agentName {
            defaultModel = known.model
            needsModel = known.needsModel
            try known.promptCap.check(prompt, agent: agentName, preset: known.preset)
        } else {
            let (definition, preset) = try registry.require(agentName)
            try PromptCap.of(definition, preset: preset, settings: try settings ?? store.settings()).check(prompt, agent: agentName, preset: preset)
            if sessionID != nil && !preset.canResume {
                throw BGQError.usage("agent '\(agentName)' (preset \(preset.name)) cannot continue a session: enqueue a new task without --session")
            }
            defaultModel = sessionID != nil ? sessionModel ?? definition.model : definition.model
            needsModel = preset.isProviderAPI
        }
        if needsModel && model == nil && defaultModel == nil {
            throw BGQError.usage("agent '\(agentName)' calls a provider's API and needs a model: give --model provider/model, or the agent one with `bgq agents add \(agentName) --preset … --model provider/model`")
        }
        if let model { _ = try ModelRef(parsing: model) }
        if model == nil, let fallback = defaultModel { _ = try ModelRef(parsing: fallback) }
        let summary: String
        if let description {
            summary = description
        } else {
            // The first non-empty line; maxSplits stops at it instead of splitting the whole prompt.
            let firstLine = prompt.split(separator: "\n", maxSplits: 1, omittingEmptySubsequences: true).first.map(String.init) ?? prompt
            summary = Render.truncate(String(firstLine.trimmingASCIIWhitespace), 80)
        }
        guard summary.utf8.count <= 10_000 else { throw BGQError.usage("the description is too long (over 10000 bytes): keep it to a line") }
        return NewTask(description: summary, prompt: prompt, agent: agentName, model: model ?? defaultModel, parentID: parent,
                       sessionID: sessionID, priority: priority, maxRetries: retries)
    }

    /// An agent that an earlier JSONL line named and that was found: what `make` needs of it, so that a
    /// run of lines naming the same agent looks it up once (not for lines continuing a session).
    struct KnownAgent {
        let name: String
        let model: String?
        /// Its preset calls a provider's API, which needs a model.
        var needsModel = false
        let preset: AgentPreset
        let promptCap: PromptCap
    }

    static let jsonlFields: Set<String> = ["prompt", "agent", "model", "description", "parent", "priority", "session", "retries", "on_complete"]

    /// The JSONL fields in a fixed order: a line's values are kept in a slot per field, not a dictionary.
    private static let jsonlFieldOrder = ["prompt", "agent", "model", "description", "parent", "priority", "session", "retries", "on_complete"]

    private static func jsonlSlot(_ key: String) -> Int? {
        switch key {
        case "prompt": 0
        case "agent": 1
        case "model": 2
        case "description": 3
        case "parent": 4
        case "priority": 5
        case "session": 6
        case "retries": 7
        case "on_complete": 8
        default: nil
        }
    }

    /// One task per non-empty line; the first bad line fails the whole batch, naming its number.
    /// Lines are found on the UTF-8 bytes (a "\r\n" ending is a line break too) and each is parsed in
    /// place: a 10,000-line batch spent a third of its time splitting the text into Characters.
    static func parseJSONL(_ text: String, registry: AgentRegistry, store: any QueueStore) throws -> [NewTask] {
        var text = text
        let tasks = try text.withUTF8 { try parseJSONL(bytes: $0, registry: registry, store: store) }
        guard !tasks.isEmpty else { throw BGQError.usage("the JSONL input holds no task: write one JSON object per line") }
        return tasks
    }

    private static func parseJSONL(bytes: UnsafeBufferPointer<UInt8>, registry: AgentRegistry, store: any QueueStore) throws -> [NewTask] {
        var tasks: [NewTask] = []
        var lineStart = 0
        var number = 0
        // The agent of the previous line, looked up once for a run of lines naming the same agent.
        var lastAgent: KnownAgent?
        let settings = try store.settings()
        func isSpace(_ byte: UInt8) -> Bool { byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D }
        while lineStart <= bytes.count {
            number += 1
            var lineEnd = lineStart
            while lineEnd < bytes.count, bytes[lineEnd] != 0x0A { lineEnd += 1 }
            defer { lineStart = lineEnd + 1 }
            var first = lineStart, last = lineEnd
            while first < last, isSpace(bytes[first]) { first += 1 }
            while last > first, isSpace(bytes[last - 1]) { last -= 1 }
            guard first < last else { continue }
            let line = UnsafeBufferPointer(rebasing: bytes[first..<last])
            do {
                var slots = [JSONValue?](repeating: nil, count: jsonlFieldOrder.count)
                var unknown: [String] = []
                if line[0] == UInt8(ascii: "{") {
                    var parser = JSONValue.Parser(bytes: line)
                    try parser.objectFields(depth: 0) { key, value in
                        if let slot = jsonlSlot(key) {
                            guard slots[slot] == nil else { return false }
                            slots[slot] = value
                        } else {
                            guard !unknown.contains(key) else { return false }
                            unknown.append(key)
                        }
                        return true
                    }
                    parser.skipWhitespace()
                    guard parser.index == line.count else { throw parser.error("unexpected text after the JSON value") }
                } else {
                    // Not an object: report its syntax error if it has one, else that it is no object.
                    _ = try JSONValue.parse(String(decoding: line, as: UTF8.self))
                    throw BGQError.usage("not a JSON object")
                }
                if let name = unknown.min() {
                    throw BGQError.usage("unknown field '\(name)' (known: \(jsonlFields.sorted().joined(separator: ", ")))")
                }
                func string(_ slot: Int) throws -> String? {
                    switch slots[slot] {
                    case nil, .null?: return nil
                    case .string(let text)?: return text
                    default: throw BGQError.usage("field '\(jsonlFieldOrder[slot])' must be a string")
                    }
                }
                func integer(_ slot: Int) throws -> Int? {
                    guard let value = slots[slot], value != .null else { return nil }
                    guard let number = value.wholeNumber else { throw BGQError.usage("field '\(jsonlFieldOrder[slot])' must be a whole number") }
                    return number
                }
                guard let prompt = try string(0) else { throw BGQError.usage("field 'prompt' is required") }
                let agent = try string(1), model = try string(2), description = try string(3), parent = try string(4)
                let priority = try integer(5) ?? 0, session = try string(6), retries = try integer(7) ?? 0
                var task = try make(prompt: prompt, agent: agent, model: model, description: description, parent: parent,
                                    priority: priority, session: session, retries: retries, registry: registry, store: store, known: lastAgent,
                                    settings: settings)
                if session == nil, let agent, lastAgent?.name != agent, let found = registry.agent(named: agent), let preset = AgentPreset.named(found.preset) {
                    lastAgent = KnownAgent(name: agent, model: found.model, needsModel: preset.isProviderAPI, preset: preset,
                                           promptCap: PromptCap.of(found, preset: preset, settings: settings))
                }
                task.onComplete = try string(8)
                tasks.append(task)
            } catch let error as BGQError {
                // A database that cannot answer (locked, corrupt) is no fault of the line: keep its exit code.
                if case .database = error { throw error }
                throw BGQError.usage("JSONL line \(number): \(error.description); nothing was enqueued")
            }
        }
        return tasks
    }
}
