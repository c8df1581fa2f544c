
/// Errors a person sees. Each maps to a documented exit code and prints as one line.
///
/// Callers decide by the case (and a database error's `kind`), never by the text: the text is for people.
public enum BGQError: Error, Equatable, CustomStringConvertible {
    /// Bad arguments or input (unknown agent, bad model, malformed config): exit 2.
    case usage(String)
    /// An id or name that is not there: exit 3.
    case notFound(String)
    /// Waited and the time ran out: exit 4.
    case timeout(String)
    /// The database cannot be used as asked (locked, read-only, full, corrupt, newer, not bgq's): exit 5.
    /// Its kind says which, and whether waiting can help.
    case database(DatabaseError)
    /// A worker's row was declared dead (it missed its heartbeats) while it still ran: it owns nothing
    /// any more, and must stop writing for its tasks. Exit 1.
    case lostOwnership(workerID: String)
    /// Anything else that failed (for example cancelling a finished task, or a task waited for that failed): exit 1.
    case failure(String)

    public var description: String {
        switch self {
        case .usage(let m), .notFound(let m), .timeout(let m), .failure(let m): m
        case .database(let error): error.message
        case .lostOwnership(let workerID): "worker \(workerID) was declared dead by another worker; it owns no task any more"
        }
    }

    public var exitCode: Int32 {
        switch self {
        case .failure, .lostOwnership: ExitStatus.failure
        case .usage: ExitStatus.usage
        case .notFound: ExitStatus.notFound
        case .timeout: ExitStatus.timeout
        case .database: ExitStatus.database
        }
    }

    /// A database error of the given kind, with the line a person reads.
    public static func database(_ kind: DatabaseError.Kind, _ message: String) -> BGQError {
        .database(DatabaseError(kind, message))
    }
}

/// Why the database could not be used. Each engine maps its own errors to these kinds once, at the
/// store seam (SQLite by its extended result code), so nothing above the store knows the engine.
public struct DatabaseError: Error, Equatable, Sendable, CustomStringConvertible {
    public enum Kind: String, Sendable, CaseIterable {
        /// Another connection held the write lock past the busy timeout.
        case busy
        /// A table or row was locked by a conflicting operation on the same connection or shared cache.
        case locked
        /// The file (or its directory) cannot be written by this user, or was opened read-only.
        case readOnly
        /// The disk (or the database's size cap) is full: nothing of the failed write was kept.
        case full
        /// The operating system reported an I/O error.
        case ioError
        /// The file is damaged.
        case corrupt
        /// The file is not a SQLite database at all (or is encrypted).
        case notADatabase
        /// A SQLite database, but not bgq's (its application id differs).
        case notBGQ
        /// Written by a newer bgq, whose schema this one does not know.
        case newerSchema
        /// Needs a schema upgrade this process cannot write.
        case needsUpgrade
        /// There is no database where one was expected, and this command does not create one.
        case missing
        /// The file or its directory cannot be opened or created.
        case cannotOpen
        /// The file system cannot give bgq what it needs (for example WAL's shared memory).
        case unsupported
        /// The file was deleted or replaced by another while this process used it.
        case replaced
        /// Anything else the engine reported.
        case other
    }

    public let kind: Kind
    /// One line for a person: what happened, to which file, and what to do.
    public let message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    /// Whether waiting can help (the lock is released, space is freed): a worker backs off and tries
    /// again instead of stopping; a command fails at once with exit 5 either way.
    public var isTransient: Bool {
        switch kind {
        case .busy, .locked, .full, .ioError: true
        default: false
        }
    }

    public var description: String { message }
}

/// bgq's exit codes (documented in the README).
public enum ExitStatus {
    public static let success: Int32 = 0
    /// The command failed, or (for `wait` and `show --block`) a task it waited for failed.
    public static let failure: Int32 = 1
    /// Bad arguments, flags or input.
    public static let usage: Int32 = 2
    /// No such task, session, agent or worker.
    public static let notFound: Int32 = 3
    /// A wait timed out while the task was still running.
    public static let timeout: Int32 = 4
    /// The database is locked, read-only, full, corrupt, newer than this bgq, or not a bgq database.
    public static let database: Int32 = 5
}
