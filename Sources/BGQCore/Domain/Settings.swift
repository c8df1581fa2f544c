
/// Timing and behaviour settings. Stored in the database's `settings` table so that every worker
/// uses the same values; the defaults are the original's constants.
public struct Settings: Equatable, Sendable {
    /// How often each running session is polled (the original: 2 s).
    public var pollIntervalMs: Int64 = 2000
    /// No progress for this long (and running ≥ `minRuntimeBeforeStaleMs`) cancels the task (180 s).
    public var staleTimeoutMs: Int64 = 180_000
    public var minRuntimeBeforeStaleMs: Int64 = 30_000
    /// Pending or running longer than this fails the task (30 min; 0 turns it off).
    public var taskTTLMs: Int64 = 30 * 60_000
    /// Idle within this long of the start is deferred, not trusted (5 s).
    public var minIdleMs: Int64 = 5000
    /// Stability detection starts after this much runtime (10 s)...
    public var minStabilityMs: Int64 = 10_000
    /// ...and needs this many polls with an unchanged message count (3).
    public var stablePolls: Int = 3
    /// A worker silent for longer than this is dead and its tasks are reaped (30 s).
    public var leaseTimeoutMs: Int64 = 30_000
    /// How often a worker writes its heartbeat (5 s).
    public var heartbeatIntervalMs: Int64 = 5000
    /// Grace between SIGINT, SIGTERM and SIGKILL when aborting an exec session (2 s).
    public var abortGraceMs: Int64 = 2000
    /// First retry delay; doubles per attempt (5 s).
    public var retryBackoffMs: Int64 = 5000
    /// Workers that may die while holding one task before it ends in error instead of being adopted
    /// again: a reply that crashes the worker reading it must not take down the whole fleet (2).
    public var maxWorkerDeaths: Int64 = 2
    /// Largest prompt accepted at enqueue for agents that take it on stdin or over HTTP (16 MiB).
    public var maxPromptBytes: Int64 = 16 << 20
    /// Largest prompt for agents that take it as a command-line argument (1 MiB); on Linux a single
    /// argument is further capped by the kernel (`AgentPreset.argvPromptLimit`).
    public var maxArgvPromptBytes: Int64 = 1 << 20
    /// A finished task's run folder (its stdout, stderr and exit files) is removed this long after it
    /// ended (1 hour; 0 removes it at once). What `bgq show` prints is in the database by then.
    public var runRetentionMs: Int64 = 3_600_000

    public init() {}

    /// What a setting's number counts: durations also take `2s`, `500ms`, `1h`.
    public enum Unit: Sendable { case milliseconds, count, bytes }

    /// The settings a person can set, by their stored key, with the range each accepts.
    public static var keys: [(key: String, path: WritableKeyPath<Settings, Int64>, range: ClosedRange<Int64>, help: String, unit: Unit)] { [
        ("poll_interval_ms", \.pollIntervalMs, 50...600_000, "how often each running session is polled", .milliseconds),
        ("stale_timeout_ms", \.staleTimeoutMs, 1000...86_400_000, "no progress for this long cancels a running task", .milliseconds),
        ("min_runtime_before_stale_ms", \.minRuntimeBeforeStaleMs, 0...86_400_000, "the stale rule waits this long after the start", .milliseconds),
        ("task_ttl_ms", \.taskTTLMs, 0...2_592_000_000, "pending or running longer than this fails the task (0 = never)", .milliseconds),
        ("min_idle_ms", \.minIdleMs, 0...600_000, "an idle status this soon after the start is deferred", .milliseconds),
        ("min_stability_ms", \.minStabilityMs, 0...86_400_000, "stability detection starts after this much runtime", .milliseconds),
        ("lease_timeout_ms", \.leaseTimeoutMs, 500...86_400_000, "a worker silent this long is dead and its tasks are reaped", .milliseconds),
        ("heartbeat_interval_ms", \.heartbeatIntervalMs, 100...3_600_000, "how often a worker writes its heartbeat (at most lease_timeout_ms / 3)", .milliseconds),
        ("abort_grace_ms", \.abortGraceMs, 0...600_000, "grace between SIGINT, SIGTERM and SIGKILL on abort", .milliseconds),
        ("retry_backoff_ms", \.retryBackoffMs, 0...86_400_000, "first retry delay; doubles per attempt", .milliseconds),
        ("max_worker_deaths", \.maxWorkerDeaths, 1...100, "workers that may die holding one task before it ends in error", .count),
        ("max_prompt_bytes", \.maxPromptBytes, 1...(1 << 30), "largest prompt for stdin and HTTP agents", .bytes),
        ("max_argv_prompt_bytes", \.maxArgvPromptBytes, 1...(1 << 30), "largest prompt passed as a command-line argument", .bytes),
        ("run_retention_ms", \.runRetentionMs, 0...2_592_000_000, "a finished task's run folder is removed this long after it ended", .milliseconds),
    ] }

    public static let stablePollsKey = "stable_polls"

    /// How many heartbeats fit in a lease at least: with fewer, one late heartbeat (a busy disk, a paused
    /// process) gets a live worker declared dead and its sessions adopted while it still runs them.
    public static let heartbeatsPerLease: Int64 = 3

    /// Checks the settings against each other.
    public func validate() throws {
        guard heartbeatIntervalMs * Self.heartbeatsPerLease <= leaseTimeoutMs else {
            throw BGQError.usage("""
                heartbeat_interval_ms (\(heartbeatIntervalMs) ms) must be at most a third of lease_timeout_ms (\(leaseTimeoutMs) ms), \
                or live workers are taken for dead: lower heartbeat_interval_ms or raise lease_timeout_ms, or set both at once \
                (bgq settings set heartbeat_interval_ms \(max(100, leaseTimeoutMs / Self.heartbeatsPerLease)) lease_timeout_ms \(leaseTimeoutMs))
                """)
        }
    }

    /// The settings a database holds, refusing a stored value out of its range (written around `bgq settings set`).
    public static func checked(stored: [String: String]) throws -> Settings {
        let settings = try parsed(stored: stored)
        try settings.validate()
        return settings
    }

    /// Stored settings read one by one: a value out of its range is a usage error naming the key and
    /// the fix, never a silent default. (Whether they fit together is `validate()`'s question.)
    public static func parsed(stored: [String: String]) throws -> Settings {
        var settings = Settings()
        for (key, value) in stored {
            if key == stablePollsKey {
                guard let number = Int(value), stablePollsRange.contains(number) else {
                    throw BGQError.usage("stored setting stable_polls '\(value.prefix(40))' is out of range (\(stablePollsRange.lowerBound) to \(stablePollsRange.upperBound)): fix it with `bgq settings set stable_polls N`")
                }
                settings.stablePolls = number
            }
            guard let entry = keys.first(where: { $0.key == key }) else { continue }
            guard let number = Int64(value), entry.range.contains(number) else {
                throw BGQError.usage("stored setting \(key) '\(value.prefix(40))' is out of range (\(entry.range.lowerBound) to \(entry.range.upperBound)): fix it with `bgq settings set \(key) …` or `bgq settings unset \(key)`")
            }
            settings[keyPath: entry.path] = number
        }
        return settings
    }

    /// The valid stored values, and defaults for invalid ones: for showing what is stored, never for running.
    public static func parsedLeniently(stored: [String: String]) -> Settings {
        stored.reduce(into: Settings()) { settings, pair in
            if let one = try? parsed(stored: [pair.key: pair.value]), let entry = keys.first(where: { $0.key == pair.key }) {
                settings[keyPath: entry.path] = one[keyPath: entry.path]
            } else if pair.key == stablePollsKey, let one = try? parsed(stored: [pair.key: pair.value]) {
                settings.stablePolls = one.stablePolls
            }
        }
    }

    public static let stablePollsRange = 1...100

    /// Parses a value typed for `key`: a duration (`2s`) or milliseconds for times, a whole number otherwise.
    public static func parse(_ text: String, for entry: (key: String, path: WritableKeyPath<Settings, Int64>, range: ClosedRange<Int64>, help: String, unit: Unit)) throws -> Int64 {
        let number: Int64?
        switch entry.unit {
        case .milliseconds:
            number = text.allSatisfy(\.isNumber) ? Int64(text) : parseDuration(text)
        case .count, .bytes:
            number = Int64(text)
        }
        let range = "\(entry.range.lowerBound) to \(entry.range.upperBound)"
        guard let number, entry.range.contains(number) else {
            switch entry.unit {
            case .milliseconds: throw BGQError.usage("\(entry.key) '\(text.prefix(40))' is out of range: use a duration from \(entry.range.lowerBound) ms to \(entry.range.upperBound) ms, e.g. 30s")
            case .count: throw BGQError.usage("\(entry.key) '\(text.prefix(40))' is out of range: use a whole number from \(range)")
            case .bytes: throw BGQError.usage("\(entry.key) '\(text.prefix(40))' is out of range: use a number of bytes from \(range)")
            }
        }
        return number
    }
}
