import ArgumentParser
import BGQCore
import Foundation

/// `bgq`: a persistent job queue for background AI-agent work, on one SQLite file.
public struct BGQCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "bgq",
        abstract: "A persistent queue for background AI-agent sessions, with per-model/provider concurrency limits.",
        discussion: """
            Tasks, sessions, slot leases and every state transition are rows in one SQLite database: --db PATH (before or after the command), else $BGQ_DB, else $XDG_DATA_HOME/bgq/bgq.db, else ~/.local/share/bgq/bgq.db.

            Examples:
              bgq enqueue --agent shell 'make test'    queue a background command
              bgq worker &                             run queued tasks (start many)
              bgq list                                 what is queued, running, done
              bgq show bg_1a2b --block                 wait for a task, print its result
              bgq limits set --provider anthropic 3    at most 3 Anthropic sessions
              bgq --db /tmp/q.db list                  another database

            Exit codes: 0 success, 1 failure, 2 usage, 3 not found, 4 timeout, 5 database unavailable.
            """,
        version: "0.1.0",
        // Every command sets `commandName:`. Without it ArgumentParser names a command with
        // String(describing: Type.self) each time it walks the tree (26 times for `bgq show`), and each call's
        // dynamic casts scan every protocol conformance record in the process: 19 M of `bgq show`'s 58 M
        // instructions with SwiftNIO linked in.
        subcommands: [Enqueue.self, Show.self, Cancel.self, List.self, LimitsCommand.self, WorkerCommand.self,
                      Workers.self, Agents.self, SettingsCommand.self, History.self, Stats.self, Prune.self, Wait.self, Watch.self, MCP.self]
    )

    public init() {}

    /// Parses and runs a command line, printing errors as one line and exiting with bgq's codes.
    public static func runAsMain(_ arguments: [String]? = nil) -> Never {
        // A parent that blocked SIGINT/SIGTERM (some runners do) must not make `bgq wait` uninterruptible.
        var stopSignals = sigset_t()
        sigemptyset(&stopSignals)
        sigaddset(&stopSignals, SIGINT)
        sigaddset(&stopSignals, SIGTERM)
        pthread_sigmask(SIG_UNBLOCK, &stopSignals, nil)
        let arguments = Self.movingGlobalOptions(arguments ?? Array(CommandLine.arguments.dropFirst()))
        var command: ParsableCommand
        do {
            command = try parseAsRoot(arguments)
        } catch {
            exitForBadArguments(error)
        }
        do {
            try command.run()
            Foundation.exit(ExitStatus.success)
        } catch let error as BGQError {
            printError("bgq: \(error.description)")
            Foundation.exit(error.exitCode)
        } catch let error as CommandFailure {
            printError(error.message)
            Foundation.exit(error.code)
        } catch let error as ExitCode {
            Foundation.exit(error.rawValue)
        } catch {
            // `--help` (run by ArgumentParser's own help command) and a ValidationError thrown while running are
            // ArgumentParser's; anything else is a failure bgq did not type (a bug to report), never a usage error.
            guard [ExitCode.success, .validationFailure].contains(exitCode(for: error)) else {
                printError("bgq: \(String(describing: error).split(separator: "\n").first.map(String.init) ?? "unexpected error")")
                Foundation.exit(ExitStatus.failure)
            }
            exitForBadArguments(error)
        }
    }

    /// What parsing and `validate()` refused (or `--help`, `--version`): one line and exit 2, or the help and exit 0.
    static func exitForBadArguments(_ error: Error) -> Never {
        if exitCode(for: error) == .success {
            print(HelpText.fittingUsage(fullMessage(for: error), columns: HelpText.columns()))
            Foundation.exit(ExitStatus.success)
        }
        // One line: what is wrong, and where the help is (ArgumentParser's own text spans several).
        let full = fullMessage(for: error)
        let hint = full.split(separator: "\n").first { $0.contains("See '") }
            .map { " (" + $0.trimmingCharacters(in: .whitespaces).replacingOccurrences(of: "See ", with: "see ") + ")" } ?? ""
        var text = message(for: error).split(separator: "\n").first.map(String.init) ?? full
        if text.hasPrefix("Error: ") { text.removeFirst(7) }
        printError("bgq: " + text + hint)
        Foundation.exit(ExitStatus.usage)
    }
}

extension BGQCommand {
    /// `bgq --db x.db list` means `bgq list --db x.db`: `--db` is every command's option, and people put
    /// global options first (as with git -C). Moved after the command's name(s), before any `--`.
    static func movingGlobalOptions(_ arguments: [String]) -> [String] {
        var global: [String] = []
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            if argument == "--db", index + 1 < arguments.count {
                global += arguments[index...index + 1]
                index += 2
            } else if argument.hasPrefix("--db=") {
                global.append(argument)
                index += 1
            } else {
                break
            }
        }
        guard !global.isEmpty else { return arguments }
        var rest = Array(arguments[index...])
        rest.insert(contentsOf: global, at: rest.firstIndex(of: "--") ?? rest.endIndex)
        return rest
    }
}

/// Help as ArgumentParser renders it, with the one part it does not wrap (the usage line) fitted.
enum HelpText {
    /// The terminal's width ($COLUMNS, else the terminal's, else 80), as ArgumentParser reads it.
    static func columns() -> Int {
        if let text = ProcessInfo.processInfo.environment["COLUMNS"], let value = Int(text), value > 0 { return value }
        var size = winsize()
        if ioctl(STDOUT_FILENO, UInt(TIOCGWINSZ), &size) == 0, size.ws_col > 0 { return Int(size.ws_col) }
        return 80
    }

    /// Breaks a `USAGE:` line longer than `columns` between its elements (never inside `[--x <x>]`),
    /// continuing under the command's name.
    static func fittingUsage(_ help: String, columns: Int) -> String {
        help.split(separator: "\n", omittingEmptySubsequences: false).map { line -> String in
            guard line.hasPrefix("USAGE: "), line.count > columns else { return String(line) }
            var elements: [String] = []
            var depth = 0
            var current = ""
            for character in line {
                if character == " " && depth == 0 {
                    if !current.isEmpty { elements.append(current) }
                    current = ""
                    continue
                }
                if character == "[" || character == "<" { depth += 1 }
                if character == "]" || character == ">" { depth = max(0, depth - 1) }
                current.append(character)
            }
            if !current.isEmpty { elements.append(current) }
            // "USAGE: bgq list" stays together; continuation lines start under the command's first option.
            let head = elements.prefix { !$0.hasPrefix("[") && !$0.hasPrefix("<") && !$0.hasPrefix("-") }.joined(separator: " ")
            let indent = String(repeating: " ", count: min(head.count + 1, columns / 2))
            var lines = [head]
            for element in elements.dropFirst(head.split(separator: " ").count) {
                if lines[lines.count - 1].count + 1 + element.count > columns {
                    lines.append(indent + element)
                } else {
                    lines[lines.count - 1] += " " + element
                }
            }
            return lines.joined(separator: "\n")
        }.joined(separator: "\n")
    }
}

/// An error whose text is printed as it is (the original's `[ERROR] …` lines), with its exit code.
public struct CommandFailure: Error {
    public let message: String
    public let code: Int32
}

/// Prints an error for a person: user-controlled text inside it (a task id typed, an agent name) is made safe.
func printError(_ text: String) {
    let safe = Render.safe(text, keepNewlines: true)
    FileHandle.standardError.write(Data((safe.hasSuffix("\n") ? safe : safe + "\n").utf8))
}
