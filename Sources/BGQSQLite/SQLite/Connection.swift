import BGQCore
import CSQLite
import Foundation

/// `SQLITE_TRANSIENT`: SQLite copies bound text and blobs before the call returns.
let sqliteTransient = unsafeBitCast(OpaquePointer(bitPattern: -1), to: sqlite3_destructor_type.self)

/// One connection to a SQLite database file. It owns the handle and a cache of prepared statements.
///
/// bgq uses exactly one connection per process, from one thread; the type is therefore not Sendable.
public final class Connection {
    /// How a transaction takes its locks. See https://www.sqlite.org/lang_transaction.html
    public enum TransactionKind: String {
        /// Takes no lock until the first read; for transactions that only read.
        case deferred = "DEFERRED"
        /// Takes the write lock at once. Every transaction that writes uses it, so that the busy
        /// handler applies to the lock and a reader never has to be upgraded into a writer.
        case immediate = "IMMEDIATE"
    }

    public let path: String
    let handle: OpaquePointer
    private var statementCache: [String: Statement] = [:]
    private var transactionDepth = 0
    /// How long one attempt waits for a lock held by another process.
    public let busyTimeoutMilliseconds: Int32
    /// How many times a BEGIN IMMEDIATE that ran out of busy timeout is tried again, with backoff.
    public var busyRetries = 3

    /// Opens (and creates, if `create` is true) the database file at `path`.
    /// With `uri`, `path` is a `file:` URI (https://www.sqlite.org/uri.html); `path` keeps the plain file name.
    public init(path: String, create: Bool = true, readOnly: Bool = false, uri: String? = nil, busyTimeoutMilliseconds: Int32 = 5000) throws {
        Self.configureSQLiteOnce
        var flags = SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_EXRESCODE | (uri == nil ? 0 : SQLITE_OPEN_URI)
        if readOnly {
            flags |= SQLITE_OPEN_READONLY
        } else {
            flags |= SQLITE_OPEN_READWRITE
            if create { flags |= SQLITE_OPEN_CREATE }
        }
        var db: OpaquePointer?
        let rc = sqlite3_open_v2(uri ?? path, &db, flags, nil)
        guard let db else {
            throw SQLiteError(extendedCode: rc, message: "out of memory opening database", sql: nil)
        }
        if rc != SQLITE_OK {
            let error = SQLiteError(extendedCode: sqlite3_extended_errcode(db), message: String(cString: sqlite3_errmsg(db)), sql: nil)
            sqlite3_close_v2(db)
            throw error
        }
        sqlite3_extended_result_codes(db, 1)
        self.handle = db
        self.path = path
        self.busyTimeoutMilliseconds = busyTimeoutMilliseconds
        sqlite3_busy_timeout(db, busyTimeoutMilliseconds)
    }

    /// Process-wide SQLite settings, applied before the first open: no memory statistics (a global
    /// mutex around each of SQLite's allocations, about 4 % of a batch enqueue's instructions).
    private static let configureSQLiteOnce: Void = {
        _ = bgq_sqlite_disable_memory_statistics()
    }()

    deinit {
        statementCache.removeAll()
        sqlite3_close_v2(handle)
    }

    /// Whether SQLite opened the file read-only (for example because the file is not writable).
    public var isReadOnly: Bool { sqlite3_db_readonly(handle, "main") == 1 }

    func lastError(sql: String?) -> SQLiteError {
        SQLiteError(extendedCode: sqlite3_extended_errcode(handle), message: String(cString: sqlite3_errmsg(handle)), sql: sql)
    }

    /// Runs one or more statements that return no rows.
    public func execute(_ sql: String) throws {
        var errorMessage: UnsafeMutablePointer<CChar>?
        let rc = sqlite3_exec(handle, sql, nil, nil, &errorMessage)
        if rc != SQLITE_OK {
            let message = errorMessage.map { String(cString: $0) } ?? String(cString: sqlite3_errstr(rc))
            sqlite3_free(errorMessage)
            throw SQLiteError(extendedCode: sqlite3_extended_errcode(handle), message: message, sql: sql)
        }
    }

    /// Prepares a statement that the caller owns.
    public func prepare(_ sql: String) throws -> Statement {
        try Statement(connection: self, sql: sql)
    }

    /// A prepared statement kept for the life of the connection: for SQL on hot paths.
    public func cached(_ sql: String) throws -> Statement {
        if let statement = statementCache[sql] {
            statement.reset()
            return statement
        }
        let statement = try Statement(connection: self, sql: sql)
        statementCache[sql] = statement
        return statement
    }

    /// Runs one statement with arguments and returns the number of rows it changed.
    @discardableResult
    public func run(_ sql: String, _ arguments: [SQLValue] = []) throws -> Int {
        let statement = try cached(sql)
        defer { statement.reset() }
        return try statement.run(arguments)
    }

    /// Runs a query and maps each row.
    public func query<T>(_ sql: String, _ arguments: [SQLValue] = [], _ map: (Row) throws -> T) throws -> [T] {
        let statement = try cached(sql)
        defer { statement.reset() }
        return try statement.query(arguments, map)
    }

    /// Runs a query and maps its first row, if any.
    public func queryFirst<T>(_ sql: String, _ arguments: [SQLValue] = [], _ map: (Row) throws -> T) throws -> T? {
        let statement = try cached(sql)
        defer { statement.reset() }
        return try statement.queryFirst(arguments, map)
    }

    /// The number of rows changed by the last statement.
    public var changes: Int { Int(sqlite3_changes(handle)) }

    /// Changes whenever another connection commits to the database; cheap to ask.
    /// See https://www.sqlite.org/pragma.html#pragma_data_version
    public func dataVersion() throws -> Int64 {
        try queryFirst("PRAGMA data_version") { $0.int64(0) } ?? 0
    }

    /// Runs `body` in a transaction that commits when it returns and rolls back when it throws.
    ///
    /// An IMMEDIATE transaction whose BEGIN finds the database locked past the busy timeout is
    /// tried again `busyRetries` times with a growing pause, then the busy error is thrown.
    /// Nested calls run inside the outer transaction.
    public func transaction<T>(_ kind: TransactionKind = .immediate, _ body: () throws -> T) throws -> T {
        if transactionDepth > 0 {
            transactionDepth += 1
            defer { transactionDepth -= 1 }
            return try body()
        }
        var attempt = 0
        while true {
            do {
                try execute("BEGIN \(kind.rawValue)")
                break
            } catch let error as SQLiteError where error.isBusy && attempt < busyRetries {
                attempt += 1
                Self.backoff(attempt: attempt)
            }
        }
        transactionDepth = 1
        defer { transactionDepth = 0 }
        do {
            let value = try body()
            try commitRetryingBusy()
            return value
        } catch {
            if sqlite3_get_autocommit(handle) == 0 {
                try? execute("ROLLBACK")
            }
            throw error
        }
    }

    private func commitRetryingBusy() throws {
        var attempt = 0
        while true {
            do {
                try execute("COMMIT")
                return
            } catch let error as SQLiteError where error.isBusy && attempt < busyRetries {
                attempt += 1
                Self.backoff(attempt: attempt)
            }
        }
    }

    /// Sleeps 25 ms, 50 ms, 100 ms, … (capped at 400 ms) with jitter.
    static func backoff(attempt: Int) {
        let base = min(400, 25 << min(attempt, 4))
        let jittered = base / 2 + Int.random(in: 0...max(1, base / 2))
        usleep(useconds_t(jittered * 1000))
    }
}
