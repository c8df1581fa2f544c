
/// A named agent: which preset (backend and output parser) runs it, and how.
///
/// Built-in agents come from the presets; user-defined agents live in the database's `agents`
/// table (`bgq agents add`), so every worker and every command sees the same definitions.
public struct AgentDefinition: Sendable, Equatable {
    /// How the prompt reaches an exec agent: one argv element, or its standard input.
    public enum PromptVia: String, Sendable, CaseIterable { case argv, stdin }

    public var name: String
    /// One of `AgentPreset.all`'s names.
    public var preset: String
    /// The program to run instead of the preset's (for example a path to `claude`).
    public var executable: String?
    /// Extra arguments, appended after the preset's own.
    public var extraArgs: [String]
    /// The model used when a task names none (`provider/model`).
    public var model: String?
    /// Extra environment for the agent process. Secrets do not belong here (they would be stored):
    /// the worker's own environment is passed on.
    public var environment: [String: String]
    public var workingDirectory: String?
    public var promptVia: PromptVia
    public var summary: String?
    public var isBuiltIn: Bool
    /// HTTP backends: the OpenCode server's URL, or the API's base URL (default: the preset's).
    public var url: String?
    /// HTTP backends: the name of the worker's environment variable that holds the API key (or the
    /// OpenCode server password). The key itself is never stored.
    public var apiKeyEnv: String?

    public init(name: String, preset: String, executable: String? = nil, extraArgs: [String] = [], model: String? = nil,
                environment: [String: String] = [:], workingDirectory: String? = nil, promptVia: PromptVia = .argv,
                summary: String? = nil, isBuiltIn: Bool = false, url: String? = nil, apiKeyEnv: String? = nil) {
        self.name = name
        self.preset = preset
        self.executable = executable
        self.extraArgs = extraArgs
        self.model = model
        self.environment = environment
        self.workingDirectory = workingDirectory
        self.promptVia = promptVia
        self.summary = summary
        self.isBuiltIn = isBuiltIn
        self.url = url
        self.apiKeyEnv = apiKeyEnv
    }
}
