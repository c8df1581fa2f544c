/// Says when anything was committed to the store, by this process or any other: how workers and
/// waiting commands wake up without re-reading everything. Engine-neutral: SQLite compares its
/// `data_version` (polled); PostgreSQL can LISTEN for a NOTIFY sent by a trigger.
public protocol ChangeFeed: AnyObject {
    /// Whether anything was committed since the previous call (the first call says true). Never blocks.
    func poll() throws -> Bool
    /// Waits until `poll()` would say true, or `timeoutMs` passed; returns its answer.
    func wait(timeoutMs: Int64) throws -> Bool
}
