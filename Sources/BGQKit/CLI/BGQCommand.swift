import ArgumentParser
import Foundation

/// `bgq`: a persistent job queue for background AI-agent work, on one SQLite file.
public struct BGQCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "bgq",
        abstract: "A persistent queue for background AI-agent sessions, with per-model/provider concurrency limits.",
        discussion: """
            Tasks, sessions, slot leases and every state transition are rows in one SQLite database
            (--db, else $BGQ_DB, else $XDG_DATA_HOME/bgq/bgq.db, else ~/.local/share/bgq/bgq.db).

            Examples:
              bgq enqueue --agent shell 'make test'          queue a background command
              bgq worker &                                   run queued tasks (start as many as you like)
              bgq list                                       what is queued, running and done
              bgq show bg_1a2b --block                       wait for a task and print its result
              bgq limits set --provider anthropic 3          at most 3 Anthropic sessions at once

            Exit codes: 0 success, 1 failure, 2 usage, 3 not found, 4 timeout, 5 database unavailable.
            """,
        version: "0.1.0",
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
        do {
            var command = try parseAsRoot(arguments)
            try command.run()
            Foundation.exit(ExitStatus.success)
        } catch let error as BGQError {
            printError("bgq: \(error.description)")
            Foundation.exit(error.exitCode)
        } catch let error as CommandFailure {
            printError(error.message)
            Foundation.exit(error.code)
        } catch let error as SQLiteError {
            printError("bgq: database error: \(error.message) (SQLite code \(error.extendedCode))")
            Foundation.exit(ExitStatus.database)
        } catch let error as ExitCode {
            Foundation.exit(error.rawValue)
        } catch {
            let code = exitCode(for: error)
            if code == .success {
                print(fullMessage(for: error))
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

/// `--db`, shared by every command.
public struct DatabaseOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The database file.", discussion: "Default: $BGQ_DB, else $XDG_DATA_HOME/bgq/bgq.db, else ~/.local/share/bgq/bgq.db.", valueName: "path"))
    public var db: String?

    public init() {}

    public var path: String { DatabaseLocation.resolve(explicit: db) }

    /// Opens the store; `create: false` for commands that only read (a missing file is then reported, not made).
    /// The one place that chooses the engine: SQLite, the embedded default.
    public func openStore(create: Bool = true) throws -> any QueueStore {
        try SQLiteStore(path: path, create: create)
    }

    public var exists: Bool { FileManager.default.fileExists(atPath: path) }
}
