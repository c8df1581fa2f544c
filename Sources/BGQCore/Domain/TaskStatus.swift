
/// The life of a task. The raw values are the strings in the schema's CHECK constraint on
/// `tasks.status` (a test checks that the two lists match).
///
/// | state | who moves a task into it | who moves it out |
/// |---|---|---|
/// | `pending` | `bgq enqueue`; a worker requeueing a retry or an interrupted session | a worker's claim (→ running), `bgq cancel` (→ cancelled), the queued TTL (→ error) |
/// | `running` | a worker's claim, or a worker adopting a dead worker's session (running → running) | its owner worker: completion rules, cancel, stale, TTL; a reaper when the owner died |
/// | `completed` | the owner worker, when the session finished with output | nobody: terminal |
/// | `error` | the owner worker (agent failed, TTL), a reaper (worker lost), the queued TTL | nobody: terminal |
/// | `cancelled` | `bgq cancel` (pending), the owner worker (cancel request, stale timeout) | nobody: terminal |
public enum TaskStatus: String, CaseIterable, Codable, Sendable {
    case pending
    case running
    case completed
    case error
    case cancelled

    /// Terminal states are final: no transition leaves them, and they carry `finished_at`.
    public var isTerminal: Bool {
        switch self {
        case .pending, .running: false
        case .completed, .error, .cancelled: true
        }
    }

    /// The states a task may move to from this one (a running → running step is an adoption).
    public var allowedNext: Set<TaskStatus> {
        switch self {
        case .pending: [.running, .cancelled, .error]
        case .running: [.running, .pending, .completed, .error, .cancelled]
        case .completed, .error, .cancelled: []
        }
    }

    /// Whether an event history (its to-states in order, starting with the creation) is a path of the state machine.
    public static func isValidPath(_ states: [TaskStatus]) -> Bool {
        guard states.first == .pending else { return false }
        for (from, to) in zip(states, states.dropFirst()) where !from.allowedNext.contains(to) {
            return false
        }
        return true
    }
}

/// The life of a worker process row.
public enum WorkerState: String, CaseIterable, Sendable {
    /// Heartbeating and claiming.
    case running
    /// Asked to stop; finishing (`--drain`) or handing over its sessions.
    case stopping
    /// Exited on purpose; its sessions, if any, are free to adopt at once.
    case stopped
    /// Missed its heartbeat for longer than the lease timeout; declared dead by another worker.
    case dead
}
