/// Errors a person sees. Each maps to a documented exit code and prints as one line.
public enum BGQError: Error, Equatable, CustomStringConvertible {
    /// Bad arguments or input (unknown agent, bad model, malformed config): exit 2.
    case usage(String)
    /// An id or name that is not there: exit 3.
    case notFound(String)
    /// Waited and the time ran out: exit 4.
    case timeout(String)
    /// The database cannot be used as asked (locked, read-only, full, corrupt, newer, not bgq's): exit 5.
    case database(String)
    /// The database is there but cannot take this write right now (locked, disk full, I/O error):
    /// exit 5 too, but a worker waits and tries again instead of stopping.
    case databaseUnavailable(String)
    /// Anything else that failed (for example cancelling a finished task): exit 1.
    case failure(String)

    public var description: String {
        switch self {
        case .usage(let m), .notFound(let m), .timeout(let m), .database(let m), .databaseUnavailable(let m), .failure(let m): m
        }
    }

    public var exitCode: Int32 {
        switch self {
        case .failure: ExitStatus.failure
        case .usage: ExitStatus.usage
        case .notFound: ExitStatus.notFound
        case .timeout: ExitStatus.timeout
        case .database, .databaseUnavailable: ExitStatus.database
        }
    }
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
