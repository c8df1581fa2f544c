import Foundation

/// Random lowercase-hex identifiers with a kind prefix: `bg_1a2b3c4d`, `ses_…`, `wrk_…`.
public enum Identifier {
    public static let taskPrefix = "bg_"
    public static let sessionPrefix = "ses_"
    public static let workerPrefix = "wrk_"

    public static func newTaskID() -> String { taskPrefix + randomHex(count: 8) }
    /// A task id drawn from `random`: a batch passes one `BufferedRandom` for all of its ids.
    package static func newTaskID<R: RandomNumberGenerator>(using random: inout R) -> String { taskPrefix + randomHex(count: 8, using: &random) }
    public static func newSessionID() -> String { sessionPrefix + randomHex(count: 12) }
    public static func newWorkerID() -> String { workerPrefix + randomHex(count: 8) }

    /// `count` random lowercase hex digits, from one call to the system generator per 16 digits
    /// (one getrandom(2) per digit was a measurable share of enqueue and drain time).
    static func randomHex(count: Int) -> String {
        var generator = SystemRandomNumberGenerator()
        return randomHex(count: count, using: &generator)
    }

    static func randomHex<R: RandomNumberGenerator>(count: Int, using generator: inout R) -> String {
        let digits: [UInt8] = Array("0123456789abcdef".utf8)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(count)
        var bits: UInt64 = 0
        for index in 0..<count {
            if index % 16 == 0 { bits = generator.next() }
            bytes.append(digits[Int(bits & 0xF)])
            bits >>= 4
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Normalizes what a person typed as a task id or id prefix: `1a2b` and `bg_1a2b` both mean `bg_1a2b…`.
    /// Returns nil when the text cannot be part of a task id (so it never reaches SQL as a pattern).
    public static func taskPrefix(from text: String) -> String? {
        let lower = text.lowercased()
        let hex = lower.hasPrefix(taskPrefix) ? String(lower.dropFirst(taskPrefix.count)) : lower
        guard !hex.isEmpty, hex.count <= 32, hex.allSatisfy({ $0.isHexDigit && $0.isASCII }) else { return nil }
        return taskPrefix + hex
    }

    /// Same for sessions: `ses_` plus hex.
    public static func sessionPrefix(from text: String) -> String? {
        let lower = text.lowercased()
        let hex = lower.hasPrefix(sessionPrefix) ? String(lower.dropFirst(sessionPrefix.count)) : lower
        guard !hex.isEmpty, hex.count <= 32, hex.allSatisfy({ $0.isHexDigit && $0.isASCII }) else { return nil }
        return sessionPrefix + hex
    }
}

/// The system's random numbers, fetched 256 bytes at a time (one getentropy(3) call per 32 values)
/// instead of one getrandom(2) call per value as `SystemRandomNumberGenerator` does: a 10,000-task
/// enqueue made 10,000 system calls for its ids. Same source, same quality; for one batch at a time.
package struct BufferedRandom: RandomNumberGenerator {
    private var buffer = [UInt64](repeating: 0, count: 32)
    private var position = 32

    package mutating func next() -> UInt64 {
        if position == buffer.count { refill() }
        defer { position += 1 }
        return buffer[position]
    }

    private mutating func refill() {
        #if os(Linux)
        let filled = buffer.withUnsafeMutableBytes { getentropy($0.baseAddress, $0.count) == 0 }
        #else
        buffer.withUnsafeMutableBytes { arc4random_buf($0.baseAddress, $0.count) }
        let filled = true
        #endif
        if !filled {
            var system = SystemRandomNumberGenerator()
            for index in buffer.indices { buffer[index] = system.next() }
        }
        position = 0
    }

    package init() {}
}
