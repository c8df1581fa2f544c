import BGQCore
import BGQSystem
import CSQLite
import Foundation

extension SQLiteStore: QueueStore {
    public func changeCounter() throws -> Int64 {
        do { return try connection.dataVersion() } catch let error as SQLiteError { throw Database.typed(error, path: path) }
    }

    /// PASSIVE: copies what no reader still needs and never blocks; with journal_size_limit the WAL
    /// file is truncated when it restarts. See https://www.sqlite.org/c3ref/wal_checkpoint_v2.html
    public func checkpoint() throws {
        do { _ = try connection.queryFirst("PRAGMA wal_checkpoint(PASSIVE)") { $0.int(0) } } catch let error as SQLiteError {
            throw Database.typed(error, path: path)
        }
    }

    public func requireTask(id: String) throws -> TaskRecord {
        try read { try taskOrThrow(id: id) }
    }
}
