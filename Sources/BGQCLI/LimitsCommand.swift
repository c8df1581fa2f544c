import ArgumentParser
import BGQCore
import Foundation

extension BGQCommand {
    /// `bgq limits`: the concurrency limits, stored in the database for every worker.
    struct LimitsCommand: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "limits",
            abstract: "Show or change the concurrency limits (model > provider > default).",
            discussion: """
                A model limit applies to provider/model or to the bare model name; else a provider limit applies, shared by all of that provider's models; else the default limit applies per model (5 unless set). 0 means unlimited.

                Examples:
                  bgq limits
                  bgq limits set --provider anthropic 3
                  bgq limits set --model claude-opus-4-5 2
                  bgq limits set --default 5
                  bgq limits import ~/.config/opencode/oh-my-opencode.json
                """,
            subcommands: [ShowLimits.self, SetLimit.self, UnsetLimit.self, ImportLimits.self],
            defaultSubcommand: ShowLimits.self)
    }

    struct ShowLimits: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "show", abstract: "Print the limits and, per concurrency key, running / limit / pending.",
            discussion: "Examples:\n  bgq limits\n  bgq limits show --json")
        @OptionGroup var database: DatabaseOptions
        @Flag(help: "Print as JSON.") var json = false

        func run() throws {
            let store = try database.openStore()
            let limits = try store.limits()
            let usage = try store.keyUsage()
            if json {
                print(Render.json([
                    "model": limits.model, "provider": limits.provider, "default": limits.defaultLimit,
                    "keys": usage.map { ["key": $0.key, "running": $0.running, "limit": $0.limit, "pending": $0.pending] },
                ] as [String: Any]))
                return
            }
            func show(_ value: Int) -> String { value == 0 ? "unlimited" : String(value) }
            var rows: [[String]] = [["default", "(per model)", show(limits.defaultLimit)]]
            rows += limits.provider.sorted { $0.key < $1.key }.map { ["provider", $0.key, show($0.value)] }
            rows += limits.model.sorted { $0.key < $1.key }.map { ["model", $0.key, show($0.value)] }
            print("Limits (model > provider > default):")
            print(Render.table(["SCOPE", "NAME", "LIMIT"], rows))
            print("")
            if usage.isEmpty {
                print("No task is running or pending.")
            } else {
                print(Render.table(["KEY", "RUNNING", "LIMIT", "PENDING"], usage.map { [$0.key, String($0.running), show($0.limit), String($0.pending)] }))
            }
        }
    }

    struct SetLimit: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "set", abstract: "Set a limit: --model M N, --provider P N, or --default N (0 = unlimited).",
            discussion: """
                Workers apply a lowered limit to new claims at once, and start waiting tasks at once under a raised one.

                Examples:
                  bgq limits set --provider anthropic 3
                  bgq limits set --model claude-opus-4-5 2
                  bgq limits set --default 5
                """)
        @OptionGroup var database: DatabaseOptions
        @Option(help: "A model: provider/model or the bare model name.") var model: String?
        @Option(help: "A provider (shared by all of its models).") var provider: String?
        // Values are read as text so that a negative number reaches the range check instead of being taken for a flag.
        @Option(name: .customLong("default"), parsing: .unconditional, help: "The default limit per model.") var defaultText: String?
        @Argument(parsing: .allUnrecognized, help: "The limit for --model or --provider.") var values: [String] = []

        var defaultLimit: Int? { defaultText.flatMap { Int($0) } }
        var value: Int? { values.first.flatMap { Int($0) } }

        func validate() throws {
            let chosen = [model != nil, provider != nil, defaultText != nil].filter { $0 }.count
            guard chosen == 1 else { throw ValidationError("give exactly one of --model M N, --provider P N, --default N") }
            if let unknown = values.first(where: { $0.hasPrefix("--") }) { throw ValidationError("unknown option '\(unknown.prefix(40))'") }
            if defaultText == nil && values.isEmpty { throw ValidationError("give the limit after --model/--provider, e.g. `bgq limits set --provider anthropic 3`") }
            if defaultText != nil && !values.isEmpty { throw ValidationError("--default takes its value directly: `bgq limits set --default 5`") }
            if values.count > 1 { throw ValidationError("give one limit, e.g. `bgq limits set --provider anthropic 3`") }
            try LimitInput.check(text: defaultText ?? values[0], what: defaultText != nil ? "--default" : "limit")
            if let model { try LimitInput.checkName(model, what: "model") }
            if let provider { try LimitInput.checkName(provider, what: "provider", allowSlash: false) }
        }

        func run() throws {
            let store = try database.openStore()
            if let model { try store.setLimit(.model, name: model, value: value!) }
            if let provider { try store.setLimit(.provider, name: provider, value: value!) }
            if let defaultLimit { try store.setLimit(.default, name: "", value: defaultLimit) }
            let what = model.map { "model \($0)" } ?? provider.map { "provider \($0)" } ?? "default"
            let amount = defaultLimit ?? value ?? 0
            print("Limit for \(what) set to \(amount == 0 ? "unlimited" : String(amount)).")
        }
    }

    struct UnsetLimit: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "unset", abstract: "Remove a limit: --model M, --provider P, or --default (back to 5).",
            discussion: "Examples:\n  bgq limits unset --provider anthropic\n  bgq limits unset --default")
        @OptionGroup var database: DatabaseOptions
        @Option(help: "A model limit to remove.") var model: String?
        @Option(help: "A provider limit to remove.") var provider: String?
        @Flag(name: .customLong("default"), help: "Reset the default limit to 5.") var resetDefault = false

        func validate() throws {
            guard [model != nil, provider != nil, resetDefault].filter({ $0 }).count == 1 else {
                throw ValidationError("give exactly one of --model M, --provider P, --default")
            }
        }

        func run() throws {
            let store = try database.openStore()
            let (scope, name): (LimitScope, String) = model.map { (.model, $0) } ?? provider.map { (.provider, $0) } ?? (.default, "")
            let removed = try store.unsetLimit(scope, name: name)
            guard removed || scope == .default else {
                throw BGQError.notFound("no \(scope.rawValue) limit for '\(name)' (`bgq limits` lists them)")
            }
            print(scope == .default ? "Default limit reset to \(Limits.builtInDefault)." : "Removed the \(scope.rawValue) limit for \(name).")
        }
    }

    struct ImportLimits: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "import",
            abstract: "Read the background_task block of an oh-my-opencode.json (JSONC: comments and trailing commas allowed).",
            discussion: """
                Reads providerConcurrency, modelConcurrency, defaultConcurrency and staleTimeoutMs; any other key is refused (a misspelling would be lost silently) unless --lenient, which reports and ignores it.

                Example:
                  bgq limits import ~/.config/opencode/oh-my-opencode.json
                """)
        @OptionGroup var database: DatabaseOptions
        @Argument(help: "The oh-my-opencode.json file.") var file: String
        @Flag(help: "Ignore keys of background_task that bgq does not know (misspelled ones too) instead of refusing the file.") var lenient = false

        func run() throws {
            guard let data = FileManager.default.contents(atPath: file) else { throw BGQError.usage("cannot read \(file): no such readable file") }
            guard let text = String(data: data, encoding: .utf8) else { throw BGQError.usage("\(file) is not UTF-8 text") }
            let config = try LimitInput.parseOhMyOpenCode(text, file: file)
            if !lenient, let unknown = config.ignored.first {
                throw BGQError.usage("\(file): unknown key background_task.\(unknown) (bgq reads \(LimitInput.ohMyOpenCodeKeys.sorted().joined(separator: ", "))): fix its spelling, or add --lenient to ignore it")
            }
            let store = try database.openStore()
            // All limits in one transaction: a worker never claims under half of an imported file.
            var changes = config.provider.sorted(by: { $0.key < $1.key }).map { LimitChange(scope: .provider, name: $0.key, value: $0.value) }
            changes += config.model.sorted(by: { $0.key < $1.key }).map { LimitChange(scope: .model, name: $0.key, value: $0.value) }
            if let value = config.defaultLimit { changes.append(LimitChange(scope: .default, name: "", value: value)) }
            try store.setLimits(changes)
            if let stale = config.staleTimeoutMs { try store.setSetting("stale_timeout_ms", String(stale)) }
            for change in changes { print(change.scope == .default ? "default: \(change.value)" : "\(change.scope.rawValue) \(change.name): \(change.value)") }
            if let stale = config.staleTimeoutMs { print("stale_timeout_ms: \(stale)") }
            for field in config.ignored { printError("note: ignored background_task.\(field) (bgq does not use it)") }
            print("Imported from \(file).")
        }
    }
}

/// Checks and parses limits.
enum LimitInput {
    static func check(_ value: Int, what: String = "limit") throws {
        guard (0...1_000_000).contains(value) else { throw BGQError.usage("\(what) \(value) is out of range: use 0 (unlimited) to 1000000") }
    }

    /// A limit as typed: a whole number in range, or an error naming the option.
    static func check(text: String, what: String) throws {
        guard let value = Int(text) else { throw BGQError.usage("\(what) '\(text.prefix(40))' is not a whole number: use 0 (unlimited) to 1000000") }
        try check(value, what: what)
    }

    static func checkName(_ name: String, what: String, allowSlash: Bool = true) throws {
        guard ModelRef.isValidPart(name, allowSlash: allowSlash) else {
            throw BGQError.usage("'\(name.prefix(80))' is not a valid \(what) name: no spaces or control characters\(allowSlash ? "" : ", no '/'")")
        }
    }

    static let ohMyOpenCodeKeys: Set<String> = ["providerConcurrency", "modelConcurrency", "defaultConcurrency", "staleTimeoutMs"]

    struct OhMyOpenCode {
        var provider: [String: Int] = [:]
        var model: [String: Int] = [:]
        var defaultLimit: Int?
        var staleTimeoutMs: Int?
        var ignored: [String] = []
    }

    static func parseOhMyOpenCode(_ text: String, file: String) throws -> OhMyOpenCode {
        let root: JSONValue
        do {
            root = try JSONValue.parse(JSONC.strip(text))
        } catch let error as BGQError {
            throw BGQError.usage("\(file) is not valid JSON(C): \(error.description); fix it and run the import again")
        }
        guard case .object(let object) = root else { throw BGQError.usage("\(file): the top level must be a JSON object") }
        guard case .object(let block)? = object["background_task"] else {
            throw BGQError.usage("\(file) has no \"background_task\" object: nothing to import")
        }
        var config = OhMyOpenCode()
        func number(_ value: JSONValue, _ path: String) throws -> Int {
            guard let int = value.wholeNumber else { throw BGQError.usage("\(file): background_task.\(path) must be a whole number") }
            try check(int, what: "\(file): background_task.\(path)")
            return int
        }
        func map(_ key: String, allowSlash: Bool) throws -> [String: Int] {
            guard let value = block[key] else { return [:] }
            guard case .object(let entries) = value else { throw BGQError.usage("\(file): background_task.\(key) must be an object") }
            var result: [String: Int] = [:]
            for (name, value) in entries {
                try checkName(name, what: key == "providerConcurrency" ? "provider" : "model", allowSlash: allowSlash)
                result[name] = try number(value, "\(key).\(name)")
            }
            return result
        }
        config.provider = try map("providerConcurrency", allowSlash: false)
        config.model = try map("modelConcurrency", allowSlash: true)
        if let value = block["defaultConcurrency"] { config.defaultLimit = try number(value, "defaultConcurrency") }
        if let value = block["staleTimeoutMs"] {
            guard let ms = value.wholeNumber, (60_000...86_400_000).contains(ms) else {
                throw BGQError.usage("\(file): background_task.staleTimeoutMs must be a number of milliseconds from 60000 to 86400000")
            }
            config.staleTimeoutMs = ms
        }
        config.ignored = block.keys.filter { !ohMyOpenCodeKeys.contains($0) }.sorted()
        return config
    }
}

/// JSON with comments and trailing commas (as in oh-my-opencode.json).
enum JSONC {
    /// Removes // and /* */ comments and trailing commas outside strings; keeps line breaks so positions stay.
    static func strip(_ text: String) -> String {
        // Twice: the first pass removes comments, so the second sees a comma right before its '}' or ']'.
        stripOnce(stripOnce(text))
    }

    static func stripOnce(_ text: String) -> String {
        var output: [UInt8] = []
        let bytes = Array(text.utf8)
        var i = 0
        var inString = false
        while i < bytes.count {
            let c = bytes[i]
            if inString {
                output.append(c)
                if c == UInt8(ascii: "\\"), i + 1 < bytes.count { output.append(bytes[i + 1]); i += 2; continue }
                if c == UInt8(ascii: "\"") { inString = false }
                i += 1
                continue
            }
            if c == UInt8(ascii: "\"") { inString = true; output.append(c); i += 1; continue }
            if c == UInt8(ascii: "/"), i + 1 < bytes.count, bytes[i + 1] == UInt8(ascii: "/") {
                while i < bytes.count && bytes[i] != UInt8(ascii: "\n") { i += 1 }
                continue
            }
            if c == UInt8(ascii: "/"), i + 1 < bytes.count, bytes[i + 1] == UInt8(ascii: "*") {
                i += 2
                while i + 1 < bytes.count && !(bytes[i] == UInt8(ascii: "*") && bytes[i + 1] == UInt8(ascii: "/")) {
                    if bytes[i] == UInt8(ascii: "\n") { output.append(bytes[i]) }
                    i += 1
                }
                i += 2
                continue
            }
            if c == UInt8(ascii: ",") {
                var j = i + 1
                while j < bytes.count, [UInt8(ascii: " "), UInt8(ascii: "\n"), UInt8(ascii: "\t"), UInt8(ascii: "\r")].contains(bytes[j]) { j += 1 }
                if j < bytes.count, bytes[j] == UInt8(ascii: "}") || bytes[j] == UInt8(ascii: "]") { i += 1; continue }
            }
            output.append(c)
            i += 1
        }
        return String(decoding: output, as: UTF8.self)
    }
}
