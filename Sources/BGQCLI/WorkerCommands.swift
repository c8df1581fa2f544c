import ArgumentParser
import BGQBackends
import BGQCore
import BGQSystem
import BGQScheduler
import Foundation

extension BGQCommand {
    /// `bgq worker`: runs queued tasks.
    struct WorkerCommand: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "worker",
            abstract: "Run queued tasks: claim under the limits, run agent sessions, poll them, record every transition.",
            discussion: """
                Start as many workers as you like, at any time, on one database; kill them at any time.

                SIGTERM or SIGINT stops claiming and hands running sessions over: they keep running and the next worker adopts them without running them again. With --drain the worker waits for its sessions instead; a second SIGINT then aborts them and requeues their tasks.

                Logs one line per state change on stderr.

                Examples:
                  bgq worker
                  bgq worker --max-sessions 4 --name laptop-1
                  bgq worker --log-format json 2>>worker.log &
                """)

        @OptionGroup var database: DatabaseOptions
        @Option(parsing: .unconditional, help: "Most sessions this worker runs at once.") var maxSessions: Int = 16
        @Option(parsing: .unconditional, help: "How often each session is polled, e.g. 2s or 500ms (default: the database's setting, 2s).") var pollInterval: String?
        @Option(help: "A name shown by `bgq workers` (default: host:pid).") var name: String?
        @Flag(help: "On SIGTERM/SIGINT, let this worker's sessions finish before exiting.") var drain = false
        @Option(help: "text or json.") var logFormat: String = "text"
        @Flag(help: "Exit when no task is pending or running (for scripts).") var exitWhenIdle = false
        @Option(help: ArgumentHelp("Where exec sessions and hooks keep their files on this host.",
                                   discussion: "Default: $BGQ_RUNS_DIR, else beside the database file (<file>.runs).", valueName: "dir"))
        var runsDir: String?

        func validate() throws {
            guard (1...100_000).contains(maxSessions) else { throw ValidationError("--max-sessions \(maxSessions) is out of range: use 1 to 100000") }
            if let pollInterval {
                guard let ms = parseDuration(pollInterval), (50...600_000).contains(ms) else {
                    throw ValidationError("--poll-interval must be a duration from 50ms to 10m, e.g. 2s")
                }
            }
            guard WorkerLog.Format(rawValue: logFormat) != nil else { throw ValidationError("--log-format must be text or json") }
        }

        func run() throws {
            let store = try database.openStore()
            // Contradictory settings (written around `bgq settings set`) stop the worker before it registers.
            _ = try Settings.checked(stored: try store.storedSettings())
            var options = WorkerOptions(name: name ?? "\(ProcessSupport.hostName):\(getpid())")
            options.maxSessions = maxSessions
            options.pollIntervalMs = pollInterval.flatMap(parseDuration)
            options.drain = drain
            options.logFormat = WorkerLog.Format(rawValue: logFormat) ?? .text
            options.exitWhenIdle = exitWhenIdle
            if let directory = runsDir ?? ProcessInfo.processInfo.environment["BGQ_RUNS_DIR"].flatMap({ $0.isEmpty ? nil : $0 }) {
                options.runsDirectory = Paths.absolute(directory)
            }
            // Every backend of this build, made when a task first needs it.
            let backends = BackendRegistry()
            StandardBackends.install(into: backends, environment: ProcessInfo.processInfo.environment, conversations: store,
                                     wake: WakeUp.signalSafeWake)
            try Worker(store: store, options: options, backends: backends).run()
        }
    }

    /// `bgq workers`: the worker processes.
    struct Workers: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "workers",
            abstract: "List workers with their heartbeat age and the sessions they hold.",
            discussion: "Examples:\n  bgq workers\n  bgq workers --all --json")
        @OptionGroup var database: DatabaseOptions
        @Flag(help: "Include stopped and dead workers.") var all = false
        @Flag(help: "Print as JSON.") var json = false

        func run() throws {
            let store = try database.openStore()
            print(Self.render(try store.listWorkers(includeGone: all), now: store.clock.now(), json: json, includeGone: all))
        }

        /// The listing as printed: a table with each heartbeat's age at `now`, or JSON with it in milliseconds.
        static func render(_ workers: [WorkerRecord], now: Instant, json: Bool, includeGone: Bool) -> String {
            if json {
                return Render.json(workers.map { w -> [String: Any] in
                    ["id": w.id, "name": w.name, "host": w.host, "pid": Int(w.pid), "state": w.state.rawValue,
                     "started_at": w.startedAt.iso8601, "heartbeat_at": w.heartbeatAt.iso8601, "heartbeat_age_ms": now - w.heartbeatAt,
                     "sessions": w.runningTasks, "max_sessions": w.maxSessions, "reason": w.reason ?? NSNull()]
                })
            }
            guard !workers.isEmpty else {
                return includeGone ? "No worker has run on this database yet. Start one with `bgq worker`." : "No live worker. Start one with `bgq worker` (`bgq workers --all` shows past ones)."
            }
            return Render.table(["ID", "NAME", "HOST", "PID", "STATE", "HEARTBEAT", "SESSIONS", "STARTED"], workers.map { w in
                [w.id, w.name, w.host, String(w.pid), w.state.rawValue, Render.age(w.heartbeatAt, now: now),
                 "\(w.runningTasks)/\(w.maxSessions)", w.startedAt.iso8601]
            })
        }
    }

    /// `bgq agents`: built-in and user-defined agents.
    struct Agents: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "agents",
            abstract: "List, add or remove agents.",
            discussion: """
                Built-in agents are named after their preset: \(AgentPreset.all.filter { $0.name != "command" }.map(\.name).joined(separator: ", ")). Your own agents are stored in the database, so every worker sees them.

                Examples:
                  bgq agents
                  bgq agents add explore --preset claude --model anthropic/claude-sonnet-4-5
                  bgq agents add review --preset command --executable ./review.sh \\
                      --arg '{prompt}'
                  bgq agents add build --preset opencode-server \\
                      --url http://127.0.0.1:4096 --cwd ~/src/app
                  bgq agents add haiku --preset anthropic --model anthropic/claude-haiku-4-5
                  bgq agents remove explore
                """,
            subcommands: [ListAgents.self, AddAgent.self, RemoveAgent.self],
            defaultSubcommand: ListAgents.self)
    }

    struct ListAgents: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "list", abstract: "List the agents.",
                                                               discussion: "Examples:\n  bgq agents\n  bgq agents list --json")
        @OptionGroup var database: DatabaseOptions
        @Flag(help: "Print as JSON.") var json = false

        func run() throws {
            let store = try database.openStore()
            let registry = AgentRegistry(userAgents: try store.userAgents())
            if json {
                print(Render.json(registry.agents.map { a -> [String: Any] in
                    ["name": a.name, "preset": a.preset, "executable": a.executable ?? NSNull(), "args": a.extraArgs, "model": a.model ?? NSNull(),
                     "env": a.environment, "cwd": a.workingDirectory ?? NSNull(), "prompt_via": a.promptVia.rawValue, "built_in": a.isBuiltIn,
                     "can_resume": AgentPreset.named(a.preset)?.canResume ?? false,
                     "url": a.url ?? AgentPreset.named(a.preset)?.defaultURL ?? NSNull(),
                     "api_key_env": a.apiKeyEnv ?? AgentPreset.named(a.preset)?.defaultKeyEnv ?? NSNull()]
                }))
                return
            }
            print(Render.table(["NAME", "PRESET", "MODEL", "COMMAND OR URL", "DESCRIPTION"], registry.agents.map { a in
                let preset = AgentPreset.named(a.preset)
                let command = preset?.isHTTP == true ? (a.url ?? preset?.defaultURL ?? "")
                    : ([a.executable ?? preset?.defaultExecutable ?? ""] + a.extraArgs).joined(separator: " ")
                return [a.name, a.preset, a.model ?? "-", Render.truncate(command, 40), Render.truncate(a.summary ?? preset?.summary ?? "", 70)]
            }))
        }
    }

    struct AddAgent: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "add", abstract: "Add an agent, or replace one with --force.",
            discussion: """
                Examples:
                  bgq agents add explore --preset claude --model anthropic/claude-sonnet-4-5
                  bgq agents add local --preset llm --model local/smollm2
                  bgq agents add review --preset command --executable ./review.sh \\
                      --arg --model --arg '{model}' --arg '{prompt}'
                  bgq agents add build --preset opencode-server \\
                      --url http://127.0.0.1:4096 --cwd ~/src/app
                  bgq agents add smol --preset openai --url http://127.0.0.1:8080/v1 \\
                      --model local/smollm2
                  bgq agents add haiku --preset anthropic \\
                      --model anthropic/claude-haiku-4-5 --api-key-env MY_ANTHROPIC_KEY

                HTTP presets (opencode-server, openai, anthropic) take --url and --api-key-env: the NAME of the worker's environment variable that holds the key or server password (never the key itself).
                """)
        @OptionGroup var database: DatabaseOptions
        @Argument(help: "The agent's name.") var name: String
        @Option(help: "The preset: \(AgentPreset.all.map(\.name).joined(separator: ", ")).") var preset: String
        @Option(help: "The program to run instead of the preset's.") var executable: String?
        @Option(name: .customLong("arg"), parsing: .unconditionalSingleValue, help: "An extra argument (repeatable; may start with -); with --preset command, {prompt}, {model} and {session} are replaced.") var args: [String] = []
        @Option(help: "The default model (provider/model).") var model: String?
        @Option(name: .customLong("env"), help: "KEY=VALUE for the agent's environment (repeatable). Not for secrets: they would be stored.") var env: [String] = []
        @Option(help: "The working directory.") var cwd: String?
        @Option(help: "argv or stdin.") var promptVia: String = "argv"
        @Option(help: "What the agent is for.") var description: String?
        @Option(help: "HTTP presets: the OpenCode server's URL, or the API's base URL.") var url: String?
        @Option(help: "HTTP presets: the name of the worker's environment variable holding the API key or server password.") var apiKeyEnv: String?
        @Flag(help: "Replace an agent of this name (a built-in one keeps its preset).") var force = false

        func validate() throws {
            guard name.range(of: "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", options: .regularExpression) != nil else {
                throw ValidationError("agent names use letters, digits, '.', '_' and '-' (at most 64), e.g. explore")
            }
            guard AgentPreset.named(preset) != nil else {
                throw ValidationError("unknown preset '\(preset)': use \(AgentPreset.all.map(\.name).joined(separator: ", "))")
            }
            if preset == "command" && executable == nil { throw ValidationError("--preset command needs --executable PATH") }
            if let model { _ = try ModelRef(parsing: model) }
            guard AgentDefinition.PromptVia(rawValue: promptVia) != nil else { throw ValidationError("--prompt-via must be argv or stdin") }
            let isHTTP = AgentPreset.named(preset)?.isHTTP == true
            if (url != nil || apiKeyEnv != nil) && !isHTTP {
                throw ValidationError("--url and --api-key-env are for the HTTP presets (opencode-server, openai, anthropic), not '\(preset)'")
            }
            if let url {
                guard let parsed = URL(string: url), parsed.scheme == "http" || parsed.scheme == "https", parsed.host != nil else {
                    throw ValidationError("--url '\(url)' is not an http:// or https:// URL (e.g. http://127.0.0.1:4096)")
                }
            }
            if let apiKeyEnv, apiKeyEnv.range(of: "^[A-Za-z_][A-Za-z0-9_]{0,127}$", options: .regularExpression) == nil {
                throw ValidationError("--api-key-env takes the NAME of an environment variable (e.g. OPENAI_API_KEY), not the key itself")
            }
            for pair in env {
                guard let equals = pair.firstIndex(of: "="), equals != pair.startIndex else { throw ValidationError("--env takes KEY=VALUE, got '\(pair)'") }
                let key = pair[..<equals].uppercased()
                if ["KEY", "TOKEN", "SECRET", "PASSWORD"].contains(where: { key.contains($0) }) {
                    throw ValidationError("--env \(pair[..<equals]) looks like a secret: bgq does not store secrets; export it in the worker's environment instead")
                }
            }
        }

        func run() throws {
            let store = try database.openStore()
            var environment: [String: String] = [:]
            for pair in env {
                let equals = pair.firstIndex(of: "=")!
                environment[String(pair[..<equals])] = String(pair[pair.index(after: equals)...])
            }
            let agent = AgentDefinition(name: name, preset: preset, executable: executable.map(Paths.absolute), extraArgs: args, model: model,
                                        environment: environment, workingDirectory: cwd.map(Paths.absolute),
                                        promptVia: AgentDefinition.PromptVia(rawValue: promptVia) ?? .argv, summary: description,
                                        url: url, apiKeyEnv: apiKeyEnv)
            let replaced = try AgentRegistry(userAgents: try store.userAgents()).checkReplacement(by: agent, force: force)
            try store.saveAgent(agent)
            if let replaced { print("Agent \(name) saved: replaces \(replaced).") }
            print("Agent \(name) saved (preset \(preset)). Queue work with: bgq enqueue --agent \(name) 'your prompt'")
        }
    }

    struct RemoveAgent: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "remove", abstract: "Remove a user-defined agent.",
                                                               discussion: "Example:\n  bgq agents remove explore")
        @OptionGroup var database: DatabaseOptions
        @Argument(help: "The agent's name.") var name: String

        func run() throws {
            let store = try database.openStore()
            guard try store.removeAgent(named: name) else {
                throw BGQError.notFound("no user-defined agent '\(name)' (`bgq agents` lists them; built-in agents cannot be removed)")
            }
            print("Agent \(name) removed.")
        }
    }

    /// `bgq settings`: timings shared by every worker.
    struct SettingsCommand: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "settings",
            abstract: "Show or change the timing settings every worker uses.",
            discussion: """
                Values take durations (500ms, 2s, 3m, 1h) or milliseconds.

                Examples:
                  bgq settings
                  bgq settings set stale_timeout_ms 10m
                  bgq settings unset stale_timeout_ms
                """,
            subcommands: [ShowSettings.self, SetSetting.self, UnsetSetting.self],
            defaultSubcommand: ShowSettings.self)
    }

    struct ShowSettings: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "show", abstract: "Print every setting with its value.",
                                                               discussion: "Example:\n  bgq settings")
        @OptionGroup var database: DatabaseOptions
        func run() throws {
            let store = try database.openStore()
            let stored = try store.storedSettings()
            // Shown even when a stored value is out of range (written by hand or an older bgq), so it can be fixed.
            func shown(_ key: String, _ value: String) -> [String] {
                guard let raw = stored[key] else { return [value, "default"] }
                return (try? Settings.parsed(stored: [key: raw])) != nil ? [value, "set"] : [Render.truncate(raw, 20), "INVALID: set or unset it"]
            }
            let settings = (try? Settings.parsed(stored: stored)) ?? Settings.parsedLeniently(stored: stored)
            var rows = Settings.keys.map { entry in
                [entry.key] + shown(entry.key, String(settings[keyPath: entry.path])) + [entry.help]
            }
            rows.append([Settings.stablePollsKey] + shown(Settings.stablePollsKey, String(settings.stablePolls)) + ["unchanged polls before an idle re-check"])
            rows.append(["on_complete", stored["on_complete"].map { Render.truncate($0, 40) } ?? "-", stored["on_complete"] == nil ? "default" : "set",
                         "a shell command run once per finished task (task JSON on stdin)"])
            print(Render.table(["KEY", "VALUE", "SOURCE", "MEANING"], rows))
        }
    }

    struct SetSetting: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "set", abstract: "Set one or more settings (checked together).",
            discussion: """
                heartbeat_interval_ms must be at most a third of lease_timeout_ms: to lower the lease a lot, set both at once.

                Examples:
                  bgq settings set poll_interval_ms 1s
                  bgq settings set heartbeat_interval_ms 500ms lease_timeout_ms 2s
                """)
        @OptionGroup var database: DatabaseOptions
        // Unrecognized inputs too: a value such as -5 must reach the range check, not be taken for a flag.
        @Argument(parsing: .allUnrecognized, help: "KEY VALUE pairs (see `bgq settings`); times take a duration (2s) or milliseconds.") var pairs: [String] = []

        func validate() throws {
            guard !pairs.isEmpty, pairs.count % 2 == 0 else {
                throw ValidationError("give KEY VALUE pairs, e.g. `bgq settings set poll_interval_ms 1s`")
            }
        }

        func run() throws {
            let store = try database.openStore()
            var stored = try store.storedSettings()
            var changes: [(key: String, value: String, shown: String)] = []
            for index in stride(from: 0, to: pairs.count, by: 2) {
                let (key, value) = (pairs[index], pairs[index + 1])
                if key == "on_complete" {
                    changes.append((key, value, value.isEmpty ? "Global completion hook removed." : "Every task that ends from now on runs: \(value)"))
                } else if key == Settings.stablePollsKey {
                    guard let n = Int(value), Settings.stablePollsRange.contains(n) else {
                        throw BGQError.usage("stable_polls '\(value.prefix(40))' is out of range: use a whole number from 1 to 100")
                    }
                    changes.append((key, String(n), "stable_polls set to \(n)."))
                } else {
                    guard let entry = Settings.keys.first(where: { $0.key == key }) else {
                        throw BGQError.usage("unknown setting '\(key.prefix(80))': known are \((Settings.keys.map(\.key) + [Settings.stablePollsKey, "on_complete"]).joined(separator: ", "))")
                    }
                    let number = try Settings.parse(value, for: entry)
                    let unit = entry.unit == .milliseconds ? " ms" : entry.unit == .bytes ? " bytes" : ""
                    changes.append((key, String(number), "\(key) set to \(number)\(unit); workers pick it up within one poll interval."))
                }
                stored[key] = changes[changes.count - 1].value
            }
            // The new values together with the ones kept: a pair that contradicts another is refused whole.
            try Settings.checked(stored: stored).validate()
            // One transaction: a worker reads either none or all of the pairs, never a half that contradicts.
            try store.setSettings(changes.map { SettingChange(key: $0.key, value: $0.value) })
            for change in changes { print(change.shown) }
        }
    }

    struct UnsetSetting: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "unset", abstract: "Reset a setting to its default.",
                                                               discussion: "Example:\n  bgq settings unset stale_timeout_ms")
        @OptionGroup var database: DatabaseOptions
        @Argument(help: "The key.") var key: String
        func run() throws {
            let store = try database.openStore()
            var stored = try store.storedSettings()
            stored[key] = nil
            try Settings.checked(stored: stored).validate()
            try store.unsetSetting(key)
            print("\(key) reset to its default.")
        }
    }
}
