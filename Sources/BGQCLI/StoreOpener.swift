import ArgumentParser
import BGQCore
import BGQSQLite
import Foundation

// The one file of the CLI that knows an engine: every other command and the MCP server talk to the
// store contract (QueueStore) only.

/// `--db`, shared by every command.
public struct DatabaseOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The database: a file path or sqlite:PATH.", discussion: "Default: $BGQ_DB, else $XDG_DATA_HOME/bgq/bgq.db, else ~/.local/share/bgq/bgq.db.", valueName: "path"))
    public var db: String?

    public init() {}

    /// Where the data lives; a `--db` that names no engine bgq has is a usage error.
    public func location() throws -> StoreLocation { try StoreLocation.resolve(explicit: db) }

    /// Opens the store; `create: false` for commands that only read (a missing file is then reported, not made).
    /// The one place that chooses the engine: SQLite, the embedded default.
    public func openStore(create: Bool = true) throws -> any QueueStore {
        switch try location() {
        case .sqlite(let path):
            return try SQLiteStore(path: path, create: create)
        case .postgres(let url):
            throw BGQError.usage("this bgq has no PostgreSQL engine yet (\(StoreLocation.postgres(url: url))); use a SQLite file: --db PATH")
        }
    }

    /// Whether there is anything to read yet (a SQLite file that does not exist has no tasks).
    public func exists() throws -> Bool {
        switch try location() {
        case .sqlite(let path): FileManager.default.fileExists(atPath: path)
        case .postgres: true
        }
    }
}
