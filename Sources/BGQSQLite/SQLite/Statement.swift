import BGQCore
import CSQLite

/// A value bound to, or read from, a statement.
public enum SQLValue: Sendable, Equatable {
    case null
    case integer(Int64)
    case real(Double)
    case text(String)
    case blob([UInt8])
}

extension SQLValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByNilLiteral {
    public init(stringLiteral value: String) { self = .text(value) }
    public init(integerLiteral value: Int64) { self = .integer(value) }
    public init(nilLiteral: ()) { self = .null }

    public static func int(_ value: Int) -> SQLValue { .integer(Int64(value)) }
    public static func optionalText(_ value: String?) -> SQLValue { value.map(SQLValue.text) ?? .null }
    public static func optionalInt(_ value: Int?) -> SQLValue { value.map { .integer(Int64($0)) } ?? .null }
}

/// A prepared statement. Finalized in `deinit`; used from the connection's thread only.
public final class Statement {
    let handle: OpaquePointer
    unowned let connection: Connection
    public let sql: String

    init(connection: Connection, sql: String) throws {
        var statement: OpaquePointer?
        let rc = sqlite3_prepare_v3(connection.handle, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &statement, nil)
        guard rc == SQLITE_OK, let statement else {
            throw connection.lastError(sql: sql)
        }
        self.handle = statement
        self.connection = connection
        self.sql = sql
    }

    deinit { sqlite3_finalize(handle) }

    func reset() {
        sqlite3_reset(handle)
        sqlite3_clear_bindings(handle)
    }

    func bind(_ arguments: [SQLValue]) throws {
        for (offset, value) in arguments.enumerated() {
            let index = Int32(offset + 1)
            let rc: Int32
            switch value {
            case .null: rc = sqlite3_bind_null(handle, index)
            case .integer(let v): rc = sqlite3_bind_int64(handle, index, v)
            case .real(let v): rc = sqlite3_bind_double(handle, index, v)
            case .text(let v):
                // Bound with its byte length, so text with NUL bytes is stored whole.
                rc = v.utf8.withContiguousStorageIfAvailable { buffer in
                    buffer.withMemoryRebound(to: CChar.self) {
                        sqlite3_bind_text64(handle, index, $0.baseAddress, sqlite3_uint64($0.count), sqliteTransient, UInt8(SQLITE_UTF8))
                    }
                } ?? {
                    var copy = v
                    return copy.withUTF8 { buffer in
                        buffer.withMemoryRebound(to: CChar.self) {
                            sqlite3_bind_text64(handle, index, $0.baseAddress, sqlite3_uint64($0.count), sqliteTransient, UInt8(SQLITE_UTF8))
                        }
                    }
                }()
            case .blob(let v):
                rc = v.withUnsafeBytes { sqlite3_bind_blob64(handle, index, $0.baseAddress, sqlite3_uint64($0.count), sqliteTransient) }
            }
            guard rc == SQLITE_OK else { throw connection.lastError(sql: sql) }
        }
    }

    /// Binds one parameter (1-based), for a hot loop that binds in place instead of building an
    /// array of `SQLValue`s per row. See `runBound()`.
    func bind(_ index: Int32, _ value: String) throws {
        let rc = value.utf8.withContiguousStorageIfAvailable { buffer in
            buffer.withMemoryRebound(to: CChar.self) {
                sqlite3_bind_text64(handle, index, $0.baseAddress, sqlite3_uint64($0.count), sqliteTransient, UInt8(SQLITE_UTF8))
            }
        } ?? {
            var copy = value
            return copy.withUTF8 { buffer in
                buffer.withMemoryRebound(to: CChar.self) {
                    sqlite3_bind_text64(handle, index, $0.baseAddress, sqlite3_uint64($0.count), sqliteTransient, UInt8(SQLITE_UTF8))
                }
            }
        }()
        guard rc == SQLITE_OK else { throw connection.lastError(sql: sql) }
    }

    func bind(_ index: Int32, _ value: String?) throws {
        if let value { try bind(index, value) } else { try bindNull(index) }
    }

    func bind(_ index: Int32, _ value: Int) throws {
        guard sqlite3_bind_int64(handle, index, Int64(value)) == SQLITE_OK else { throw connection.lastError(sql: sql) }
    }

    func bindNull(_ index: Int32) throws {
        guard sqlite3_bind_null(handle, index) == SQLITE_OK else { throw connection.lastError(sql: sql) }
    }

    /// Runs to completion with the parameters bound so far and returns the number of changed rows.
    /// The bindings are kept (a parameter bound once serves every run); the caller binds every
    /// parameter that changes between runs.
    @discardableResult
    func runBound() throws -> Int {
        defer { sqlite3_reset(handle) }
        while try step() {}
        return connection.changes
    }

    /// Steps once: true for a row, false when done; every other result code throws.
    func step() throws -> Bool {
        switch sqlite3_step(handle) {
        case SQLITE_ROW: return true
        case SQLITE_DONE: return false
        default: throw connection.lastError(sql: sql)
        }
    }

    /// Binds, runs to completion and returns the number of changed rows.
    @discardableResult
    public func run(_ arguments: [SQLValue] = []) throws -> Int {
        defer { reset() }
        try bind(arguments)
        while try step() {}
        return connection.changes
    }

    /// Binds, then maps every row.
    public func query<T>(_ arguments: [SQLValue] = [], _ map: (Row) throws -> T) throws -> [T] {
        defer { reset() }
        try bind(arguments)
        var rows: [T] = []
        let row = Row(handle: handle)
        while try step() { rows.append(try map(row)) }
        return rows
    }

    /// Binds, then maps the first row, if any.
    public func queryFirst<T>(_ arguments: [SQLValue] = [], _ map: (Row) throws -> T) throws -> T? {
        defer { reset() }
        try bind(arguments)
        guard try step() else { return nil }
        return try map(Row(handle: handle))
    }
}

/// The current row of a statement; valid only inside the mapping closure.
public struct Row {
    let handle: OpaquePointer

    public func isNull(_ column: Int32) -> Bool { sqlite3_column_type(handle, column) == SQLITE_NULL }
    public func int64(_ column: Int32) -> Int64 { sqlite3_column_int64(handle, column) }
    public func int(_ column: Int32) -> Int { Int(sqlite3_column_int64(handle, column)) }
    public func double(_ column: Int32) -> Double { sqlite3_column_double(handle, column) }
    public func optionalInt(_ column: Int32) -> Int? { isNull(column) ? nil : int(column) }

    /// The column as text, read with its byte length (so NUL bytes survive).
    public func text(_ column: Int32) -> String {
        guard let pointer = sqlite3_column_text(handle, column) else { return "" }
        let count = Int(sqlite3_column_bytes(handle, column))
        return String(decoding: UnsafeBufferPointer(start: pointer, count: count), as: UTF8.self)
    }

    public func optionalText(_ column: Int32) -> String? { isNull(column) ? nil : text(column) }
}
