import BGQCore
import CSQLite

/// An error returned by SQLite, with everything needed to understand it later.
///
/// Errors are matched by their numeric (extended) result code, never by their text.
/// See https://www.sqlite.org/rescode.html
public struct SQLiteError: Error, CustomStringConvertible, Sendable {
    /// The extended result code (for example 1555 for SQLITE_CONSTRAINT_PRIMARYKEY).
    public let extendedCode: Int32
    /// The text of `sqlite3_errmsg` at the time of the error.
    public let message: String
    /// The SQL that failed, when there was one.
    public let sql: String?

    public init(extendedCode: Int32, message: String, sql: String?) {
        self.extendedCode = extendedCode
        self.message = message
        self.sql = sql
    }

    /// The primary result code (the low byte of the extended code).
    public var primaryCode: Int32 { extendedCode & 0xFF }

    /// The database was locked by another connection beyond the busy timeout.
    public var isBusy: Bool { primaryCode == SQLITE_BUSY || primaryCode == SQLITE_LOCKED }
    public var isReadOnly: Bool { primaryCode == SQLITE_READONLY }
    public var isFull: Bool { primaryCode == SQLITE_FULL }
    public var isCorrupt: Bool { primaryCode == SQLITE_CORRUPT }
    public var isNotADatabase: Bool { primaryCode == SQLITE_NOTADB }
    public var isCantOpen: Bool { primaryCode == SQLITE_CANTOPEN }
    public var isIOError: Bool { primaryCode == SQLITE_IOERR }
    public var isConstraint: Bool { primaryCode == SQLITE_CONSTRAINT }
    public var isPrimaryKeyViolation: Bool { extendedCode == SQLITE_CONSTRAINT | (6 << 8) }  // SQLITE_CONSTRAINT_PRIMARYKEY
    public var isUniqueViolation: Bool { extendedCode == SQLITE_CONSTRAINT | (8 << 8) }  // SQLITE_CONSTRAINT_UNIQUE

    public var description: String {
        var text = "SQLite error \(extendedCode): \(message)"
        if let sql { text += " (in: \(sql.prefix(200)))" }
        return text
    }
}
