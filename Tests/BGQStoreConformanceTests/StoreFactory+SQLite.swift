import Foundation
import BGQCore
import BGQSQLite

// The one file of the suite that knows the SQLite engine: where its empty database lives, and how a
// mutant (an engine with one guarantee broken on purpose, for `MutationTests`) is made.

extension StoreFactory {
    /// An empty SQLite database in its own temporary directory.
    static let sqlite = StoreFactory(name: "sqlite") { try sqliteDatabase(afterOpen: nil) }

    /// The SQLite engine with `sql` run once on each new database (schema changes last): a mutant that
    /// drops a trigger (or adds one) to break a guarantee only the schema keeps.
    static func sqlite(mutant name: String, afterOpen sql: String) -> StoreFactory {
        StoreFactory(name: "sqlite mutant: \(name)") { try sqliteDatabase(afterOpen: sql) }
    }

    private static func sqliteDatabase(afterOpen sql: String?) throws -> TestDatabase {
        let base = FileManager.default.temporaryDirectory.path + "/bgq-conformance"
        try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
        var template = Array("\(base)/db.XXXXXX".utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw CocoaError(.fileWriteUnknown)
        }
        let directory = String(cString: made)
        let path = directory + "/bgq.db"
        // Create and migrate once, so concurrent opens never race to create the schema.
        let first = try SQLiteStore(path: path, clock: TestClock())
        if let sql { try first.connection.execute(sql) }
        return TestDatabase(
            open: { clock in try SQLiteStore(path: path, clock: clock, create: false) },
            remove: { try? FileManager.default.removeItem(atPath: directory) })
    }
}
