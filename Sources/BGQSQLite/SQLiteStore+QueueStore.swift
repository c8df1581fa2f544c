import BGQCore
import CSQLite
import Foundation

extension SQLiteStore: QueueStore {
    public var location: StoreLocation { .sqlite(path: path) }

    public func changeFeed() throws -> ChangeFeed { SQLiteChangeFeed(store: self) }

    /// Every 30 s a PASSIVE checkpoint: copies what no reader still needs and never blocks; with
    /// journal_size_limit the WAL file is truncated when it restarts
    /// (https://www.sqlite.org/c3ref/wal_checkpoint_v2.html). And on every call a check (one stat(2))
    /// that the file this connection writes is still the one at its path: a worker whose file was
    /// deleted or replaced would otherwise go on writing where nobody reads.
    public func performMaintenance() throws {
        try checkFileIsStillThere()
        let now = clock.monotonicMilliseconds()
        guard now - maintenance.lastCheckpointMonotonic >= 30_000 else { return }
        maintenance.lastCheckpointMonotonic = now
        do { _ = try connection.queryFirst("PRAGMA wal_checkpoint(PASSIVE)") { $0.int(0) } } catch let error as SQLiteError {
            throw Database.typed(error, path: path)
        }
    }

    public func requireTask(id: String) throws -> TaskRecord {
        try read { try taskOrThrow(id: id) }
    }

    /// The (device, inode) of a file, to notice it being deleted or replaced.
    static func fileIdentity(_ path: String) -> FileIdentity? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        return FileIdentity(device: UInt64(info.st_dev), inode: UInt64(info.st_ino))
    }

    func checkFileIsStillThere() throws {
        guard let expected = maintenance.fileIdentity else { return }
        let current = Self.fileIdentity(path)
        guard let current, current == expected else {
            let what = current == nil ? "deleted" : "replaced by another file"
            throw BGQError.database(.replaced, "the database file \(path) was \(what) while this worker ran: the worker stopped (its agent processes keep running). Start workers on the database you mean to use")
        }
    }
}

/// What `performMaintenance` remembers between calls.
struct SQLiteMaintenanceState {
    var lastCheckpointMonotonic: Int64 = 0
    /// The file as it was when the store opened it.
    var fileIdentity: FileIdentity?
}

struct FileIdentity: Equatable {
    var device: UInt64
    var inode: UInt64
}

/// SQLite's change feed: `PRAGMA data_version` changes whenever another connection commits, and
/// costs no I/O to read. SQLite cannot push a notification, so `wait` polls it every 50 ms.
final class SQLiteChangeFeed: ChangeFeed {
    let store: SQLiteStore
    var lastSeen: Int64?

    init(store: SQLiteStore) { self.store = store }

    func poll() throws -> Bool {
        let version: Int64
        do { version = try store.connection.dataVersion() } catch let error as SQLiteError { throw Database.typed(error, path: store.path) }
        defer { lastSeen = version }
        return version != lastSeen
    }

    func wait(timeoutMs: Int64) throws -> Bool {
        let deadline = store.clock.monotonicMilliseconds() + max(0, timeoutMs)
        while true {
            if try poll() { return true }
            let left = deadline - store.clock.monotonicMilliseconds()
            if left <= 0 { return false }
            usleep(UInt32(min(left, 50)) * 1000)
        }
    }
}
