import Foundation

/// A JSON value parsed strictly (RFC 8259): `true` is never the number 1, numbers follow the grammar
/// exactly (no leading zeros, no `1.`, no `NaN`), and errors say where they are. A small parser of our
/// own, because Foundation's JSONSerialization bridges 0/1 and booleans alike on Linux, and JSONDecoder
/// was the main cost of a 10,000-line `enqueue --jsonl`.
///
/// Two limits that the RFC leaves to the parser: documents nest at most ``maxDepth`` (512) levels, so a
/// hostile 100,000-deep reply is an error, not a stack overflow; and a `\u` escape of a lone UTF-16
/// surrogate is refused, because bgq stores text as UTF-8, which cannot hold one.
/// It passes the JSONTestSuite corpus (Tests/BGQKitTests/JSONConformanceTests.swift).
public enum JSONValue: Equatable, Sendable {
    case null
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    /// How deep arrays and objects may nest; deeper documents are refused.
    public static let maxDepth = 512

    /// What an object with the same key twice means.
    public enum DuplicateKeys: Sendable {
        /// An error naming the key: for input a person writes to bgq (JSONL, config, MCP), where a
        /// second `"prompt"` is a mistake, not something to settle silently.
        case refuse
        /// The last one counts, as in JavaScript and Python: for replies of other programs (RFC 8259
        /// allows such objects; JSONTestSuite expects them accepted).
        case lastWins
    }

    /// Parses text; the error names the byte offset and what was wrong.
    public static func parse(_ text: String, duplicateKeys: DuplicateKeys = .refuse) throws -> JSONValue {
        var text = text
        return try text.withUTF8 { try parse(utf8: $0, duplicateKeys: duplicateKeys) }
    }

    /// Parses UTF-8 bytes that are known to be valid UTF-8 (a String's); see ``parse(bytes:duplicateKeys:)``
    /// for bytes from outside.
    static func parse(utf8 bytes: UnsafeBufferPointer<UInt8>, duplicateKeys: DuplicateKeys) throws -> JSONValue {
        var parser = Parser(bytes: bytes, duplicateKeys: duplicateKeys)
        parser.skipWhitespace()
        let value = try parser.value(depth: 0)
        parser.skipWhitespace()
        guard parser.index == bytes.count else { throw parser.error("unexpected text after the JSON value") }
        return value
    }

    /// Parses bytes from outside (a file, a reply): invalid UTF-8 is an error, never replaced.
    public static func parse(bytes: some Collection<UInt8>, duplicateKeys: DuplicateKeys = .refuse) throws -> JSONValue {
        guard let text = String(validating: bytes, as: UTF8.self) else { throw BGQError.usage("JSON text is not valid UTF-8") }
        return try parse(text, duplicateKeys: duplicateKeys)
    }

    /// A whole number (1, or 1.0), else nil. Booleans and fractions are not whole numbers.
    public var wholeNumber: Int? {
        switch self {
        case .int(let value): value
        case .double(let value) where value.isFinite && value == value.rounded() && abs(value) < 1e15: Int(value)
        default: nil
        }
    }

    package struct Parser {
        let bytes: UnsafeBufferPointer<UInt8>
        var duplicateKeys = DuplicateKeys.refuse
        package var index = 0

        package init(bytes: UnsafeBufferPointer<UInt8>, duplicateKeys: DuplicateKeys = .refuse) {
            self.bytes = bytes
            self.duplicateKeys = duplicateKeys
        }

        package func error(_ message: String) -> BGQError { .usage("\(message) at byte \(index)") }

        package mutating func skipWhitespace() {
            while index < bytes.count, bytes[index] == 0x20 || bytes[index] == 0x0A || bytes[index] == 0x0D || bytes[index] == 0x09 {
                index += 1
            }
        }

        mutating func expect(_ literal: StaticString, _ value: JSONValue) throws -> JSONValue {
            let count = literal.utf8CodeUnitCount
            guard index + count <= bytes.count,
                  memcmp(bytes.baseAddress! + index, literal.utf8Start, count) == 0 else { throw error("invalid literal") }
            index += count
            return value
        }

        mutating func value(depth: Int) throws -> JSONValue {
            guard index < bytes.count else { throw error("unexpected end of JSON") }
            switch bytes[index] {
            case UInt8(ascii: "{"): return try object(depth: depth)
            case UInt8(ascii: "["): return try array(depth: depth)
            case UInt8(ascii: "\""): return .string(try string())
            case UInt8(ascii: "t"): return try expect("true", .bool(true))
            case UInt8(ascii: "f"): return try expect("false", .bool(false))
            case UInt8(ascii: "n"): return try expect("null", .null)
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try number()
            default: throw error("unexpected character")
            }
        }

        /// Called on entering an array or object at `depth` (the top level is 0).
        func checkDepth(_ depth: Int) throws {
            guard depth < JSONValue.maxDepth else { throw error("JSON nested deeper than \(JSONValue.maxDepth) levels") }
        }

        mutating func object(depth: Int) throws -> JSONValue {
            var result: [String: JSONValue] = [:]
            let refuse = duplicateKeys == .refuse
            try objectFields(depth: depth) { key, value in result.updateValue(value, forKey: key) == nil || !refuse }
            return .object(result)
        }

        /// Parses an object, handing each key and value to `field`, which returns false for a key it has
        /// already seen (refused as a duplicate). `object` builds a dictionary with it; hot paths with a
        /// fixed set of keys keep their own slots instead.
        package mutating func objectFields(depth: Int, _ field: (String, JSONValue) throws -> Bool) throws {
            guard index < bytes.count, bytes[index] == UInt8(ascii: "{") else { throw error("expected an object") }
            try checkDepth(depth)
            index += 1
            skipWhitespace()
            if index < bytes.count, bytes[index] == UInt8(ascii: "}") { index += 1; return }
            while true {
                skipWhitespace()
                guard index < bytes.count, bytes[index] == UInt8(ascii: "\"") else { throw error("expected a quoted key") }
                let keyStart = index
                let key = try string()
                skipWhitespace()
                guard index < bytes.count, bytes[index] == UInt8(ascii: ":") else { throw error("expected ':'") }
                index += 1
                skipWhitespace()
                let value = try value(depth: depth + 1)
                guard try field(key, value) else {
                    index = keyStart
                    throw error("duplicate key \"\(key.prefix(60))\"")
                }
                skipWhitespace()
                guard index < bytes.count else { throw error("unexpected end of JSON in an object") }
                if bytes[index] == UInt8(ascii: ",") { index += 1; continue }
                if bytes[index] == UInt8(ascii: "}") { index += 1; return }
                throw error("expected ',' or '}'")
            }
        }

        mutating func array(depth: Int) throws -> JSONValue {
            try checkDepth(depth)
            index += 1
            var result: [JSONValue] = []
            skipWhitespace()
            if index < bytes.count, bytes[index] == UInt8(ascii: "]") { index += 1; return .array(result) }
            while true {
                skipWhitespace()
                result.append(try value(depth: depth + 1))
                skipWhitespace()
                guard index < bytes.count else { throw error("unexpected end of JSON in an array") }
                if bytes[index] == UInt8(ascii: ",") { index += 1; continue }
                if bytes[index] == UInt8(ascii: "]") { index += 1; return .array(result) }
                throw error("expected ',' or ']'")
            }
        }
    }
}

extension StringProtocol {
    /// Trims ASCII spaces, tabs and line breaks (cheaper than Foundation's trimmingCharacters on hot paths).
    package var trimmingASCIIWhitespace: Substring {
        let whole = Substring(self)
        let utf8 = whole.utf8
        func isSpace(_ byte: UInt8) -> Bool { byte == 0x20 || byte == 0x09 || byte == 0x0A || byte == 0x0D }
        guard let first = utf8.firstIndex(where: { !isSpace($0) }) else { return Substring() }
        var end = utf8.endIndex
        while end > first, isSpace(utf8[utf8.index(before: end)]) { end = utf8.index(before: end) }
        return whole[first..<end]
    }
}
