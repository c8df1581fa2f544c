import Foundation

/// How large a prompt an agent can take, checked at enqueue: a prompt that cannot reach the agent is
/// refused while the person is still there, not at run time with "Argument list too long".
public struct PromptCap: Sendable, Equatable {
    /// The most bytes accepted.
    public var bytes: Int
    /// The prompt goes to the agent as one command-line argument (else on stdin, or over HTTP).
    public var viaArgv: Bool
    /// The kernel's limit, not the setting, is what caps it.
    public var byKernel: Bool

    /// The most bytes one command-line argument may hold. Linux caps each argument at MAX_ARG_STRLEN
    /// (32 pages, 128 KiB with 4 KiB pages, the terminating NUL included) whatever the total ARG_MAX;
    /// other systems cap only the total (arguments and environment), so leave room for the environment.
    public static var argumentLimit: Int {
        #if os(Linux)
        return 32 * Int(sysconf(Int32(_SC_PAGESIZE))) - 1
        #else
        return max(16 << 10, Int(sysconf(Int32(_SC_ARG_MAX))) - (256 << 10))
        #endif
    }

    /// The cap for one agent under these settings.
    public static func of(_ agent: AgentDefinition, preset: AgentPreset, settings: Settings) -> PromptCap {
        // The shell preset's prompt is its command: always one argument of `sh -c`.
        let viaArgv = preset.backend == .exec && (preset.name == "shell" || agent.promptVia == .argv)
        guard viaArgv else { return PromptCap(bytes: Int(settings.maxPromptBytes), viaArgv: false, byKernel: false) }
        // A `command` agent may put text around {prompt} in the same argument.
        let around = preset.name == "command" ? (agent.extraArgs.filter { $0.contains("{prompt}") }.map { $0.utf8.count - 8 }.max() ?? 0) : 0
        let kernel = argumentLimit - around
        let setting = Int(settings.maxArgvPromptBytes)
        return PromptCap(bytes: min(kernel, setting), viaArgv: true, byKernel: kernel < setting)
    }

    /// Refuses a prompt over the cap, saying what to do instead.
    public func check(_ prompt: String, agent: String, preset: AgentPreset) throws {
        let size = prompt.utf8.count
        guard size > bytes else { return }
        guard viaArgv else {
            throw BGQError.usage("the prompt is too long (\(size) bytes; max_prompt_bytes is \(bytes)): shorten it, or raise the cap with `bgq settings set max_prompt_bytes N`")
        }
        let limit = byKernel ? "at most \(bytes) fit in one argument on this system" : "max_argv_prompt_bytes is \(bytes)"
        let fix = preset.name == "shell"
            ? "a shell command this long cannot run: save it as a script and enqueue `sh script.sh`"
            : "use a stdin preset: `bgq agents add \(agent)-stdin --preset \(preset.name) --prompt-via stdin`"
        throw BGQError.usage("prompt too long for --agent \(agent)'s command line (\(size) bytes; \(limit)); \(fix)")
    }
}
