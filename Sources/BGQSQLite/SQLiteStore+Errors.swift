import BGQCore
import CSQLite

// MARK: - SQLite errors, typed once at the store seam

extension Database {
    /// Maps a SQLite error to bgq's typed database error, by its (extended) result code, never its text.
    /// Every path out of the store goes through here, so no `SQLiteError` reaches the scheduler or the CLI.
    /// See https://www.sqlite.org/rescode.html
    /// `waitedMilliseconds`: how long the failed operation really took, retries included, when measured.
    static func typed(_ error: SQLiteError, path: String, waitedMilliseconds: Int64? = nil) -> BGQError {
        let kind = kind(of: error)
        let detail = "\(error.message), SQLite code \(error.extendedCode)"
        let message: String
        switch kind {
        case .notADatabase:
            message = "\(path) is not a SQLite database (or is encrypted); it was left untouched: pass another path with --db or BGQ_DB"
        case .corrupt:
            message = "\(path) is corrupt (\(error.message)); it was left untouched: restore it from a backup, or move it away to start afresh"
        case .busy:
            let waited = waitedMilliseconds.map { String(format: "waited %.1f s, retries included", Double($0) / 1000) }
                ?? "still locked after a busy timeout of \(defaultBusyTimeout()) ms"
            message = "\(path) is locked by another process (\(waited)); try again, or raise BGQ_BUSY_TIMEOUT_MS"
        case .locked:
            message = "\(path) is locked by a conflicting operation in this process (\(detail)); try again"
        case .readOnly:
            message = "\(path) is read-only, so this command cannot write to it: check the permissions of the file and its directory"
        case .full:
            message = "the disk holding \(path) is full (\(error.message)); nothing was written: free some space and try again"
        case .cannotOpen:
            message = "cannot open \(path) (\(error.message)): check that the directory exists and is writable"
        case .ioError:
            message = "I/O error on \(path) (\(detail)); nothing more was written"
        default:
            message = "database error on \(path): \(error.message) (SQLite code \(error.extendedCode))"
        }
        return .database(DatabaseError(kind, message))
    }

    /// Which kind of failure a SQLite result code stands for.
    static func kind(of error: SQLiteError) -> DatabaseError.Kind {
        switch error.primaryCode {
        case SQLITE_BUSY, SQLITE_PROTOCOL: .busy  // PROTOCOL: a WAL lock race that persisted; retrying helps.
        case SQLITE_LOCKED: .locked
        case SQLITE_READONLY, SQLITE_PERM: .readOnly
        case SQLITE_FULL: .full
        case SQLITE_IOERR: .ioError
        case SQLITE_CORRUPT: .corrupt
        case SQLITE_NOTADB: .notADatabase
        case SQLITE_CANTOPEN: .cannotOpen
        default: .other
        }
    }
}
