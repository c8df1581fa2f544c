import Foundation

/// Strings and numbers, read by the grammar of RFC 8259 and nothing looser.
extension JSONValue.Parser {
    mutating func string() throws -> String {
        index += 1
        let start = index
        // Fast path: no escapes.
        while index < bytes.count, bytes[index] != UInt8(ascii: "\""), bytes[index] != UInt8(ascii: "\\") {
            guard bytes[index] >= 0x20 else { throw error("control character in a string") }
            index += 1
        }
        guard index < bytes.count else { throw error("unterminated string") }
        if bytes[index] == UInt8(ascii: "\"") {
            let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
            index += 1
            return text
        }
        var buffer = Array(bytes[start..<index])
        while index < bytes.count {
            let byte = bytes[index]
            if byte == UInt8(ascii: "\"") {
                index += 1
                return String(decoding: buffer, as: UTF8.self)
            }
            guard byte >= 0x20 else { throw error("control character in a string") }
            if byte != UInt8(ascii: "\\") { buffer.append(byte); index += 1; continue }
            index += 1
            guard index < bytes.count else { break }
            let escape = bytes[index]
            index += 1
            switch escape {
            case UInt8(ascii: "\""): buffer.append(0x22)
            case UInt8(ascii: "\\"): buffer.append(0x5C)
            case UInt8(ascii: "/"): buffer.append(0x2F)
            case UInt8(ascii: "b"): buffer.append(0x08)
            case UInt8(ascii: "f"): buffer.append(0x0C)
            case UInt8(ascii: "n"): buffer.append(0x0A)
            case UInt8(ascii: "r"): buffer.append(0x0D)
            case UInt8(ascii: "t"): buffer.append(0x09)
            case UInt8(ascii: "u"): appendUTF8(try unicodeEscape(), to: &buffer)
            default:
                index -= 2
                throw error("invalid escape")
            }
        }
        throw error("unterminated string")
    }

    /// The scalar of a `\uXXXX` escape (the `\u` already read), joining a surrogate pair. A lone
    /// surrogate is refused: UTF-8 cannot encode it, and replacing it with U+FFFD would store other
    /// text than the one sent.
    mutating func unicodeEscape() throws -> Unicode.Scalar {
        let escapeStart = index - 2
        let first = try hex4()
        switch first {
        case 0xD800..<0xDC00:
            guard index + 1 < bytes.count, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u") else {
                index = escapeStart
                throw error(Self.loneSurrogate(first))
            }
            index += 2
            let low = try hex4()
            guard (0xDC00..<0xE000).contains(low) else {
                index = escapeStart
                throw error(Self.loneSurrogate(first))
            }
            return Unicode.Scalar(0x10000 + ((first - 0xD800) << 10) + (low - 0xDC00))!
        case 0xDC00..<0xE000:
            index = escapeStart
            throw error(Self.loneSurrogate(first))
        default:
            return Unicode.Scalar(first)!
        }
    }

    static func loneSurrogate(_ value: UInt32) -> String {
        let hex = String(value, radix: 16)
        return "lone surrogate escape \\u\(String(repeating: "0", count: max(0, 4 - hex.count)) + hex) (UTF-8 text cannot hold it; send the character's surrogate pair or the character itself)"
    }

    func appendUTF8(_ scalar: Unicode.Scalar, to buffer: inout [UInt8]) {
        let value = scalar.value
        switch value {
        case 0..<0x80:
            buffer.append(UInt8(value))
        case 0x80..<0x800:
            buffer.append(0xC0 | UInt8(value >> 6))
            buffer.append(0x80 | UInt8(value & 0x3F))
        case 0x800..<0x10000:
            buffer.append(0xE0 | UInt8(value >> 12))
            buffer.append(0x80 | UInt8((value >> 6) & 0x3F))
            buffer.append(0x80 | UInt8(value & 0x3F))
        default:
            buffer.append(0xF0 | UInt8(value >> 18))
            buffer.append(0x80 | UInt8((value >> 12) & 0x3F))
            buffer.append(0x80 | UInt8((value >> 6) & 0x3F))
            buffer.append(0x80 | UInt8(value & 0x3F))
        }
    }

    mutating func hex4() throws -> UInt32 {
        guard index + 4 <= bytes.count else { throw error("truncated \\u escape") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let byte = bytes[index]
            let digit: UInt32
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt32(byte - 48)
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt32(byte - 87)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = UInt32(byte - 55)
            default: throw error("invalid \\u escape")
            }
            value = value * 16 + digit
            index += 1
        }
        return value
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`. An integer that fits in Int is an
    /// `.int`, computed on the digits; anything else a finite `.double` (1e400 is refused, not infinity,
    /// which JSON cannot write back).
    mutating func number() throws -> JSONValue {
        let start = index
        let negative = bytes[index] == UInt8(ascii: "-")
        if negative { index += 1 }
        func isDigit(_ at: Int) -> Bool { at < bytes.count && bytes[at] >= 48 && bytes[at] <= 57 }
        guard isDigit(index) else { throw error("invalid number: a digit must follow '-'") }
        // Accumulated negatively, so Int.min fits; nil once it overflows.
        var integer: Int? = 0
        if bytes[index] == UInt8(ascii: "0") {
            index += 1
            guard !isDigit(index) else { throw error("invalid number: no leading zeros") }
        } else {
            while isDigit(index) {
                if let value = integer {
                    let (times10, o1) = value.multipliedReportingOverflow(by: 10)
                    let (next, o2) = times10.subtractingReportingOverflow(Int(bytes[index] - 48))
                    integer = o1 || o2 ? nil : next
                }
                index += 1
            }
        }
        var isInteger = true
        if index < bytes.count, bytes[index] == UInt8(ascii: ".") {
            isInteger = false
            index += 1
            guard isDigit(index) else { throw error("invalid number: a digit must follow '.'") }
            while isDigit(index) { index += 1 }
        }
        if index < bytes.count, bytes[index] == UInt8(ascii: "e") || bytes[index] == UInt8(ascii: "E") {
            isInteger = false
            index += 1
            if index < bytes.count, bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") { index += 1 }
            guard isDigit(index) else { throw error("invalid number: a digit must follow the exponent") }
            while isDigit(index) { index += 1 }
        }
        if isInteger, let value = integer {
            if negative { return .int(value) }
            if value != .min { return .int(-value) }
        }
        let text = String(decoding: UnsafeBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
        guard let value = Double(text), value.isFinite else {
            index = start
            throw error("number \(text.prefix(40)) is out of range")
        }
        return .double(value)
    }
}
