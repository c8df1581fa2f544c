import BGQCore
import BGQSystem
import CSQLite
import Foundation

/// Opens bgq's database: checks it is bgq's and not newer than this binary, turns on WAL and the
/// other pragmas, and applies the embedded migrations. Never writes to a file it refused.
public enum Database {
    /// `PRAGMA application_id` of a bgq database ("bgq1"). See https://www.sqlite.org/fileformat.html#application_id
    public static let applicationID: Int32 = 0x6267_7131

    /// The migrations this binary carries, in order: (version, name, sql).
    public static var migrations: [(version: Int, name: String, sql: String)] {
        EmbeddedMigrations.all.compactMap { entry in
            guard let version = Int(entry.name.prefix { $0.isNumber }) else { return nil }
            return (version, entry.name, entry.sql)
        }.sorted { $0.version < $1.version }
    }

    public static var latestVersion: Int { migrations.last?.version ?? 0 }

    /// Opens the database at `path`, creating it (0600, in a 0700 directory) when `create` is true.
    public static func open(path: String, create: Bool = true, busyTimeoutMilliseconds: Int32? = nil) throws -> Connection {
        let timeout = busyTimeoutMilliseconds ?? defaultBusyTimeout()
        let exists = FileManager.default.fileExists(atPath: path)
        if !exists {
            guard create else {
                throw BGQError.database(.missing, "no bgq database at \(path): enqueue a task or start a worker to create it, or pass --db")
            }
            let directory = (path as NSString).deletingLastPathComponent
            try PrivateFiles.makeDirectory(directory)
            try PrivateFiles.createFile(path)
        }
        let connection: Connection
        do {
            connection = try Connection(path: path, create: false, busyTimeoutMilliseconds: timeout)
        } catch let error as SQLiteError {
            throw typed(error, path: path)
        }
        do {
            try checkIdentity(connection)
            try configure(connection)
            try migrate(connection)
            try applyTestingPageLimit(connection)
        } catch let error as SQLiteError where !create && (error.isReadOnly || error.isCantOpen) {
            // A WAL database in a directory this user cannot write: SQLite cannot make its -shm file.
            // Commands that only read open it as immutable (no locks, no writes) instead.
            return try openImmutable(path: path)
        } catch let error as SQLiteError {
            throw typed(error, path: path)
        }
        return connection
    }

    /// Opens a database read-only without locking, for reading a file nobody can write here.
    static func openImmutable(path: String) throws -> Connection {
        var allowed = CharacterSet.urlPathAllowed
        allowed.remove(charactersIn: "?#%")
        let escaped = path.addingPercentEncoding(withAllowedCharacters: allowed) ?? path
        do {
            let connection = try Connection(path: path, readOnly: true, uri: "file:\(escaped)?immutable=1")
            try checkIdentity(connection)
            let version = try connection.queryFirst("PRAGMA user_version") { $0.int(0) } ?? 0
            guard version == latestVersion else {
                throw BGQError.database(.needsUpgrade, "\(path) is read-only and has schema version \(version) (this bgq needs \(latestVersion)); open it once with write access")
            }
            return connection
        } catch let error as SQLiteError {
            throw typed(error, path: path)
        }
    }

    static func defaultBusyTimeout() -> Int32 {
        if let text = ProcessInfo.processInfo.environment["BGQ_BUSY_TIMEOUT_MS"], let value = Int32(text), value >= 0 {
            return value
        }
        return 5000
    }

    /// A cap on the database's size in pages, for testing what happens when the disk fills up
    /// (`BGQ_MAX_PAGE_COUNT`; see https://www.sqlite.org/pragma.html#pragma_max_page_count).
    static func applyTestingPageLimit(_ connection: Connection) throws {
        if let text = ProcessInfo.processInfo.environment["BGQ_MAX_PAGE_COUNT"], let pages = Int(text), pages > 0 {
            _ = try connection.queryFirst("PRAGMA max_page_count = \(pages)") { $0.int(0) }
        }
    }

    /// Refuses a file that is not a SQLite database, not bgq's, or written by a newer bgq. Reads only.
    static func checkIdentity(_ connection: Connection) throws {
        // One statement, so one snapshot: read one by one, a database another process is creating right now
        // looked empty by its application_id and full by its tables, "not a bgq database".
        let (applicationID, userVersion, objectCount) = try connection.queryFirst("""
            SELECT (SELECT application_id FROM pragma_application_id), (SELECT user_version FROM pragma_user_version),
                   (SELECT count(*) FROM sqlite_schema)
            """) { (Int32(truncatingIfNeeded: $0.int64(0)), $0.int(1), $0.int(2)) } ?? (0, 0, 0)
        if applicationID == 0 && userVersion == 0 && objectCount == 0 { return }  // a new, empty database
        guard applicationID == Database.applicationID else {
            throw BGQError.database(.notBGQ, "\(connection.path) is a SQLite database but not a bgq database (application_id \(applicationID)); it was left untouched: pass another path with --db or BGQ_DB")
        }
        if userVersion > latestVersion {
            throw BGQError.database(.newerSchema, "\(connection.path) was written by a newer bgq (schema version \(userVersion); this bgq knows up to \(latestVersion)); it was left untouched: upgrade bgq")
        }
    }

    /// WAL (checked), synchronous=NORMAL, foreign keys, and a bound on the WAL file's size.
    /// See https://www.sqlite.org/wal.html and https://www.sqlite.org/pragma.html#pragma_journal_size_limit
    static func configure(_ connection: Connection) throws {
        try connection.execute("PRAGMA foreign_keys = ON")
        try connection.execute("PRAGMA synchronous = NORMAL")
        try connection.execute("PRAGMA journal_size_limit = 67108864")
        // Deleted prompts and results are overwritten where that costs no extra I/O (Debian builds
        // SQLite with SECURE_DELETE on, which zero-fills every page and cost ~10% of enqueue speed).
        // See https://www.sqlite.org/pragma.html#pragma_secure_delete
        try connection.execute("PRAGMA secure_delete = FAST")
        // 16 MB of page cache: a 10,000-task batch no longer spills pages into the WAL mid-transaction.
        try connection.execute("PRAGMA cache_size = -16000")
        var mode = ""
        var attempt = 0
        while true {
            do {
                mode = try connection.queryFirst("PRAGMA journal_mode = WAL") { $0.text(0) } ?? ""
                break
            } catch let error as SQLiteError where error.isBusy && attempt < 20 {
                attempt += 1
                Connection.backoff(attempt: attempt)
            }
        }
        if mode.lowercased() != "wal" && !connection.isReadOnly {
            throw BGQError.database(.unsupported, "\(connection.path): SQLite refused WAL mode (journal_mode is '\(mode)'); bgq needs a local file system that supports shared memory")
        }
    }

    /// Applies every embedded migration newer than the database, each in one IMMEDIATE transaction
    /// with its bookkeeping (the `schema_migrations` row and `user_version`).
    static func migrate(_ connection: Connection) throws {
        let current = try connection.queryFirst("PRAGMA user_version") { $0.int(0) } ?? 0
        guard current < latestVersion else { return }
        if connection.isReadOnly {
            throw BGQError.database(.needsUpgrade, "\(connection.path) is read-only and needs schema version \(latestVersion) (it has \(current)); open it once with write access")
        }
        for migration in migrations {
            try connection.transaction(.immediate) {
                // Another process may have applied it while this one waited for the lock.
                let applied = try connection.queryFirst("PRAGMA user_version") { $0.int(0) } ?? 0
                guard applied < migration.version else { return }
                if migration.version == 1 {
                    try connection.execute("""
                        PRAGMA application_id = \(applicationID);
                        CREATE TABLE IF NOT EXISTS schema_migrations (
                            version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL) STRICT;
                        """)
                }
                try connection.execute(migration.sql)
                try connection.run(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    [.int(migration.version), .text(migration.name), .text(SystemClock().now().iso8601)])
                try connection.execute("PRAGMA user_version = \(migration.version)")
            }
        }
    }

    /// What a writer is told about a file found corrupt after it was opened (it may have been written
    /// before the damage was seen, so it never claims the file was left untouched).
    static func corruptionText(path: String, marker: String, found: String) -> String {
        "\(path) is corrupt (found \(found.trimmingCharacters(in: .whitespacesAndNewlines))); bgq stopped writing to it: "
            + "check it with `sqlite3 \(path) 'PRAGMA integrity_check'`, restore it from a backup, then remove \(marker)"
    }

}
