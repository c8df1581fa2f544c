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
    /// A finished task's run folder (its stdout, stderr and exit files) is removed this long after it
    /// ended (1 hour; 0 removes it at once). What `bgq show` prints is in the database by then.
    public var runRetentionMs: Int64 = 3_600_000

    public init() {}

    /// The settings a person can set, by their stored key, with the range each accepts.
    public static var keys: [(key: String, path: WritableKeyPath<Settings, Int64>, range: ClosedRange<Int64>, help: String)] { [
        ("poll_interval_ms", \.pollIntervalMs, 50...600_000, "how often each running session is polled"),
        ("stale_timeout_ms", \.staleTimeoutMs, 1000...86_400_000, "no progress for this long cancels a running task"),
        ("min_runtime_before_stale_ms", \.minRuntimeBeforeStaleMs, 0...86_400_000, "the stale rule waits this long after the start"),
        ("task_ttl_ms", \.taskTTLMs, 0...2_592_000_000, "pending or running longer than this fails the task (0 = never)"),
        ("min_idle_ms", \.minIdleMs, 0...600_000, "an idle status this soon after the start is deferred"),
        ("min_stability_ms", \.minStabilityMs, 0...86_400_000, "stability detection starts after this much runtime"),
        ("lease_timeout_ms", \.leaseTimeoutMs, 500...86_400_000, "a worker silent this long is dead and its tasks are reaped"),
        ("heartbeat_interval_ms", \.heartbeatIntervalMs, 100...3_600_000, "how often a worker writes its heartbeat"),
        ("abort_grace_ms", \.abortGraceMs, 0...600_000, "grace between SIGINT, SIGTERM and SIGKILL on abort"),
        ("retry_backoff_ms", \.retryBackoffMs, 0...86_400_000, "first retry delay; doubles per attempt"),
        ("run_retention_ms", \.runRetentionMs, 0...2_592_000_000, "a finished task's run folder is removed this long after it ended"),
    ] }

    public static let stablePollsKey = "stable_polls"
}
