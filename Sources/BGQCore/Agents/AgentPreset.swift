import Foundation

/// A built-in way to run an agent: which backend, which command line, and how to read its output.
/// See ../shared/reference/backends.md for each CLI's flags and output.
public struct AgentPreset: Sendable {
    public enum Backend: String, Sendable { case exec, noop, opencodeServer = "opencode-server", openai, anthropic }
    public enum OutputFormat: String, Sendable { case plainText, claudeStreamJSON, opencodeJSON, codexJSON, geminiStreamJSON }

    public let name: String
    public let backend: Backend
    public let outputFormat: OutputFormat
    public let defaultExecutable: String
    /// Whether a task may continue this agent's session (`bgq enqueue --session`).
    public let canResume: Bool
    public let summary: String
    /// HTTP backends: the URL used when the agent names none, and the environment variable holding the key.
    public var defaultURL: String? = nil
    public var defaultKeyEnv: String? = nil

    /// Whether sessions run in another process that outlives the worker (exec) rather than over HTTP.
    public var isHTTP: Bool { backend == .opencodeServer || isProviderAPI }
    /// Its CLI prints structured output with a final answer: a run that ends without one failed.
    public var promisesResult: Bool { backend == .exec && outputFormat != .plainText }
    /// Calls a provider's API directly (openai, anthropic): needs a model, and keeps the conversation in bgq.
    public var isProviderAPI: Bool { backend == .openai || backend == .anthropic }

    /// The argv of one run. The prompt is one argv element (or goes to stdin), never part of a shell string;
    /// only the `shell` preset hands its prompt to a shell, because the prompt is the command.
    public func arguments(executable: String?, prompt: String, promptOnStdin: Bool, model: ModelRef?,
                          resumeID: String?, agentName: String, extraArgs: [String]) -> [String] {
        let program = executable ?? defaultExecutable
        let promptArgs = promptOnStdin ? [] : [prompt]
        switch name {
        case "shell":
            return ["/bin/sh", "-c", prompt] + extraArgs
        case "claude":
            return [program, "-p"] + promptArgs + ["--output-format", "stream-json", "--verbose"]
                + (model.map { ["--model", $0.modelID] } ?? []) + (resumeID.map { ["--resume", $0] } ?? []) + extraArgs
        case "opencode":
            return [program, "run", "--format", "json"] + (model.map { ["-m", $0.description] } ?? [])
                + (agentName == "opencode" ? [] : ["--agent", agentName])
                + (resumeID.map { ["--session", $0] } ?? []) + extraArgs + promptArgs
        case "codex":
            return [program, "exec", "--json"] + (model.map { ["-m", $0.modelID] } ?? []) + extraArgs
                + (resumeID.map { ["resume", $0] } ?? []) + promptArgs
        case "gemini":
            return [program, "-p"] + promptArgs + ["--output-format", "stream-json"]
                + (model.map { ["-m", $0.modelID] } ?? []) + (resumeID.map { ["--resume", $0] } ?? []) + extraArgs
        case "llm":
            return [program] + (model.map { ["-m", $0.modelID] } ?? []) + extraArgs + promptArgs
        case "command":
            // A user's own program: {prompt}, {model} and {session} in its arguments are replaced.
            return [program] + Self.substitute(extraArgs, prompt: prompt, model: model, resumeID: resumeID, appendPrompt: !promptOnStdin)
        default:
            return [program] + extraArgs + promptArgs
        }
    }

    /// Replaces placeholders inside arguments. An argument that is only `{model}` or `{session}` with no
    /// value is dropped together with a preceding `-flag`. Without a `{prompt}` placeholder the prompt is appended.
    static func substitute(_ template: [String], prompt: String, model: ModelRef?, resumeID: String?, appendPrompt: Bool) -> [String] {
        var result: [String] = []
        var sawPrompt = false
        for argument in template {
            if (argument == "{model}" && model == nil) || (argument == "{session}" && resumeID == nil) {
                if let last = result.last, last.hasPrefix("-") { result.removeLast() }
                continue
            }
            if argument.contains("{prompt}") { sawPrompt = true }
            result.append(argument
                .replacingOccurrences(of: "{model}", with: model?.description ?? "")
                .replacingOccurrences(of: "{session}", with: resumeID ?? "")
                .replacingOccurrences(of: "{prompt}", with: prompt))
        }
        if !sawPrompt && appendPrompt { result.append(prompt) }
        return result
    }

    public static let all: [AgentPreset] = [
        AgentPreset(name: "shell", backend: .exec, outputFormat: .plainText, defaultExecutable: "/bin/sh", canResume: false,
                    summary: "the prompt is a shell command: a general background job runner"),
        AgentPreset(name: "claude", backend: .exec, outputFormat: .claudeStreamJSON, defaultExecutable: "claude", canResume: true,
                    summary: "Claude Code: claude -p PROMPT --output-format stream-json --verbose"),
        AgentPreset(name: "opencode", backend: .exec, outputFormat: .opencodeJSON, defaultExecutable: "opencode", canResume: true,
                    summary: "opencode run --format json"),
        AgentPreset(name: "codex", backend: .exec, outputFormat: .codexJSON, defaultExecutable: "codex", canResume: true,
                    summary: "Codex: codex exec --json"),
        AgentPreset(name: "gemini", backend: .exec, outputFormat: .geminiStreamJSON, defaultExecutable: "gemini", canResume: true,
                    summary: "Gemini CLI: gemini -p PROMPT --output-format stream-json"),
        AgentPreset(name: "llm", backend: .exec, outputFormat: .plainText, defaultExecutable: "llm", canResume: false,
                    summary: "llm -m MODEL PROMPT (plain text; it prints no conversation id, so it cannot be continued)"),
        AgentPreset(name: "command", backend: .exec, outputFormat: .plainText, defaultExecutable: "", canResume: false,
                    summary: "your own program: --executable and --arg with {prompt}, {model}, {session} placeholders"),
        AgentPreset(name: "opencode-server", backend: .opencodeServer, outputFormat: .plainText, defaultExecutable: "", canResume: true,
                    summary: "a session on an OpenCode server (opencode serve): --url, password in $OPENCODE_SERVER_PASSWORD",
                    defaultURL: "http://127.0.0.1:4096", defaultKeyEnv: "OPENCODE_SERVER_PASSWORD"),
        AgentPreset(name: "openai", backend: .openai, outputFormat: .plainText, defaultExecutable: "", canResume: true,
                    summary: "any OpenAI-compatible chat completions API: --url BASE (…/v1), key in $OPENAI_API_KEY or --api-key-env",
                    defaultURL: "https://api.openai.com/v1", defaultKeyEnv: "OPENAI_API_KEY"),
        AgentPreset(name: "anthropic", backend: .anthropic, outputFormat: .plainText, defaultExecutable: "", canResume: true,
                    summary: "the Anthropic Messages API: key in $ANTHROPIC_API_KEY or --api-key-env",
                    defaultURL: "https://api.anthropic.com", defaultKeyEnv: "ANTHROPIC_API_KEY"),
        AgentPreset(name: "noop", backend: .noop, outputFormat: .plainText, defaultExecutable: "", canResume: true,
                    summary: "completes at once with its prompt as the result: measures the queue's own cost"),
    ]

    public static func named(_ name: String) -> AgentPreset? { all.first { $0.name == name } }
}

/// The agents a task can name: built-in ones (one per preset, except `command`) and the user's.
public struct AgentRegistry: Sendable {
    public let agents: [AgentDefinition]

    public init(userAgents: [AgentDefinition]) {
        let builtIn = AgentPreset.all.filter { $0.name != "command" }.map {
            AgentDefinition(name: $0.name, preset: $0.name, summary: $0.summary, isBuiltIn: true)
        }
        let userNames = Set(userAgents.map(\.name))
        agents = builtIn.filter { !userNames.contains($0.name) } + userAgents
    }

    public func agent(named name: String) -> AgentDefinition? { agents.first { $0.name == name } }

    /// Whether `new` may take its name, and what it replaces (nil for a new name). Replacing needs `force`;
    /// a built-in name keeps its preset whatever the force, since MCP clients and scripts rely on what
    /// `claude` or `codex` does (`claude` → `shell` would run every delegated prompt as a shell command).
    public func checkReplacement(by new: AgentDefinition, force: Bool) throws -> String? {
        let isBuiltInName = AgentPreset.named(new.name) != nil && new.name != "command"
        if isBuiltInName && new.preset != new.name {
            throw BGQError.usage("the built-in agent '\(new.name)' keeps preset \(new.name), even with --force: give your --preset \(new.preset) agent another name")
        }
        guard let old = agent(named: new.name) else { return nil }
        let what = old.isBuiltIn ? "the built-in agent '\(old.name)'" : "agent '\(old.name)' (\(Self.describe(old)))"
        guard force else {
            let exists = old.isBuiltIn ? "the built-in agent '\(old.name)' exists" : "agent '\(old.name)' exists (\(Self.describe(old)))"
            throw BGQError.usage("\(exists): add --force to replace it, or choose another name")
        }
        return what
    }

    static func describe(_ agent: AgentDefinition) -> String {
        var parts = ["preset \(agent.preset)"]
        if let executable = agent.executable { parts.append("executable \(executable)") }
        if let model = agent.model { parts.append("model \(model)") }
        if let url = agent.url { parts.append("url \(url)") }
        return parts.joined(separator: ", ")
    }

    /// The agent, or a usage error that lists the known ones.
    public func require(_ name: String) throws -> (AgentDefinition, AgentPreset) {
        guard let agent = agent(named: name) else {
            let known = agents.map(\.name).sorted().joined(separator: ", ")
            throw BGQError.usage("unknown agent '\(name.prefix(80))': known agents are \(known) (add one with `bgq agents add`)")
        }
        guard let preset = AgentPreset.named(agent.preset) else {
            throw BGQError.usage("agent '\(name)' uses unknown preset '\(agent.preset)': fix it with `bgq agents add \(name) --preset …`")
        }
        return (agent, preset)
    }
}
