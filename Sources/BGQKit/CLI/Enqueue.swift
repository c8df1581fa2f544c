import ArgumentParser
import Foundation

extension BGQCommand {
    /// `bgq enqueue`: adds tasks to the queue.
    struct Enqueue: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Queue a task for a background agent session.",
            discussion: """
                PROMPT may be '-' to read it from standard input; --prompt-file reads it from a file.
                --jsonl FILE (or -) queues one task per line, all or nothing, e.g.
                  {"agent":"shell","prompt":"make test","description":"tests","model":"local/sh","priority":1}
                Fields: prompt (required), agent (required), model, description, parent, priority, session, retries, on_complete.

                Examples:
                  bgq enqueue --agent shell 'pytest -q'
                  bgq enqueue --agent claude --model anthropic/claude-sonnet-4-5 --description 'Explore: auth' 'Find the auth code'
                  bgq enqueue --session ses_1a2b3c 'Continue: now write the tests'
                  bgq enqueue --jsonl tasks.jsonl
                """)

        @OptionGroup var database: DatabaseOptions
        @Option(help: "The agent to run (`bgq agents` lists them). With --session, defaults to the session's agent.") var agent: String?
        @Option(help: "The model, as provider/model (default: the agent's).") var model: String?
        @Option(help: "A short description (default: the prompt's first line).") var description: String?
        @Option(help: "A parent id (a task, or an agent session that delegated this work).") var parent: String?
        @Option(help: "Higher runs first (default 0; from -1000000 to 1000000).") var priority: Int = 0
        @Option(help: "Continue this session (ses_…) with a new prompt.") var session: String?
        @Option(help: "Run again this many times if the agent fails or its worker is lost (0 to 100).") var retries: Int = 0
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
            try TaskInput.checkPriority(priority)
            try TaskInput.checkRetries(retries)
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
                var output = "Enqueued \(ids.count) background task(s) in \(store.path):\n"
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
    static func checkPriority(_ value: Int) throws {
        guard (-1_000_000...1_000_000).contains(value) else {
            throw BGQError.usage("priority \(value) is out of range: use a number from -1000000 to 1000000")
        }
    }

    static func checkRetries(_ value: Int) throws {
        guard (0...100).contains(value) else { throw BGQError.usage("retries \(value) is out of range: use a number from 0 to 100") }
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
                     session: String?, retries: Int, registry: AgentRegistry, store: any QueueStore) throws -> NewTask {
        guard prompt.unicodeScalars.contains(where: { !$0.properties.isWhitespace }) else {
            throw BGQError.usage("the prompt is empty: say what the agent should do")
        }
        if let index = prompt.utf8.firstIndex(of: 0) {
            throw BGQError.usage("the prompt contains a NUL byte (at byte \(prompt.utf8.distance(from: prompt.utf8.startIndex, to: index))): agents take text; remove it")
        }
        try checkPriority(priority)
        try checkRetries(retries)
        var agentName = agent
        var sessionID: String?
        if let session {
            let id = try store.resolveSessionID(session)
            guard let record = try store.session(id: id) else { throw BGQError.notFound("Session not found: \(id)") }
            if agentName == nil { agentName = record.agent }
            sessionID = id
        }
        guard let agentName else { throw BGQError.usage("--agent is required (`bgq agents` lists the agents)") }
        let (definition, preset) = try registry.require(agentName)
        if sessionID != nil && !preset.canResume {
            throw BGQError.usage("agent '\(agentName)' (preset \(preset.name)) cannot continue a session: enqueue a new task without --session")
        }
        if let model { _ = try ModelRef(parsing: model) }
        if model == nil, let fallback = definition.model { _ = try ModelRef(parsing: fallback) }
        let firstLine = prompt.split(separator: "\n", omittingEmptySubsequences: true).first.map(String.init) ?? prompt
        let summary = description ?? Render.truncate(String(firstLine.trimmingASCIIWhitespace), 80)
        guard summary.utf8.count <= 10_000 else { throw BGQError.usage("the description is too long (over 10000 bytes): keep it to a line") }
        return NewTask(description: summary, prompt: prompt, agent: agentName, model: model ?? definition.model, parentID: parent,
                       sessionID: sessionID, priority: priority, maxRetries: retries)
    }

    static let jsonlFields: Set<String> = ["prompt", "agent", "model", "description", "parent", "priority", "session", "retries", "on_complete"]

    /// One task per non-empty line; the first bad line fails the whole batch, naming its number.
    static func parseJSONL(_ text: String, registry: AgentRegistry, store: any QueueStore) throws -> [NewTask] {
        var tasks: [NewTask] = []
        for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let trimmed = String(line.trimmingASCIIWhitespace)
            guard !trimmed.isEmpty else { continue }
            let number = index + 1
            do {
                guard case .object(let object) = try JSONValue.parse(trimmed) else { throw BGQError.usage("not a JSON object") }
                if let unknown = object.keys.sorted().first(where: { !jsonlFields.contains($0) }) {
                    throw BGQError.usage("unknown field '\(unknown)' (known: \(jsonlFields.sorted().joined(separator: ", ")))")
                }
                func string(_ key: String) throws -> String? {
                    switch object[key] {
                    case nil, .null?: return nil
                    case .string(let text)?: return text
                    default: throw BGQError.usage("field '\(key)' must be a string")
                    }
                }
                func integer(_ key: String) throws -> Int? {
                    guard let value = object[key], value != .null else { return nil }
                    guard let number = value.wholeNumber else { throw BGQError.usage("field '\(key)' must be a whole number") }
                    return number
                }
                guard let prompt = try string("prompt") else { throw BGQError.usage("field 'prompt' is required") }
                tasks.append(try make(prompt: prompt, agent: try string("agent"), model: try string("model"), description: try string("description"),
                                      parent: try string("parent"), priority: try integer("priority") ?? 0, session: try string("session"),
                                      retries: try integer("retries") ?? 0, registry: registry, store: store))
                tasks[tasks.count - 1].onComplete = try string("on_complete")
            } catch let error as BGQError {
                throw BGQError.usage("JSONL line \(number): \(error.description); nothing was enqueued")
            }
        }
        guard !tasks.isEmpty else { throw BGQError.usage("the JSONL input holds no task: write one JSON object per line") }
        return tasks
    }
}
