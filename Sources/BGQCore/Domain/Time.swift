import Foundation

/// A point in wall-clock time, in milliseconds since 1970-01-01T00:00:00Z.
public struct Instant: Comparable, Hashable, Sendable, Codable {
    public var milliseconds: Int64
    public init(milliseconds: Int64) { self.milliseconds = milliseconds }

    public static func < (a: Instant, b: Instant) -> Bool { a.milliseconds < b.milliseconds }
    public static func + (a: Instant, ms: Int64) -> Instant { Instant(milliseconds: a.milliseconds + ms) }
    public static func - (a: Instant, b: Instant) -> Int64 { a.milliseconds - b.milliseconds }

    /// ISO 8601 in UTC with milliseconds, `2026-11-21T12:03:04.005Z`: the form stored in the
    /// database. It sorts as text in time order, and SQLite's date functions read it.
    public var iso8601: String {
        var seconds = time_t(milliseconds >= 0 ? milliseconds / 1000 : (milliseconds - 999) / 1000)
        let ms = Int(milliseconds - Int64(seconds) * 1000)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func pad(_ value: Int32, _ width: Int) -> String {
            let text = String(value)
            return String(repeating: "0", count: max(0, width - text.count)) + text
        }
        return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))T"
            + "\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2)).\(pad(Int32(ms), 3))Z"
    }

    /// Parses the stored form (and second-precision ISO 8601 in UTC).
    public init?(iso8601 text: String) {
        let bytes = Array(text.utf8)
        guard bytes.count >= 20 else { return nil }
        func number(_ range: Range<Int>) -> Int? {
            var value = 0
            for i in range {
                guard i < bytes.count, bytes[i] >= 48, bytes[i] <= 57 else { return nil }
                value = value * 10 + Int(bytes[i] - 48)
            }
            return value
        }
        guard let year = number(0..<4), let month = number(5..<7), let day = number(8..<10),
              let hour = number(11..<13), let minute = number(14..<16), let second = number(17..<19)
        else { return nil }
        var ms = 0
        if bytes.count >= 24, bytes[19] == UInt8(ascii: "."), let fraction = number(20..<23) { ms = fraction }
        var parts = tm()
        parts.tm_year = Int32(year - 1900)
        parts.tm_mon = Int32(month - 1)
        parts.tm_mday = Int32(day)
        parts.tm_hour = Int32(hour)
        parts.tm_min = Int32(minute)
        parts.tm_sec = Int32(second)
        let seconds = timegm(&parts)
        self.milliseconds = Int64(seconds) * 1000 + Int64(ms)
    }
}

/// Where time comes from. Workers and timing rules take a clock so tests can move time by hand.
public protocol Clock: AnyObject {
    /// Wall-clock time, stored in the database and shown to people.
    func now() -> Instant
    /// Monotonic milliseconds (unaffected by wall-clock jumps), for measuring intervals.
    func monotonicMilliseconds() -> Int64
}

/// The real clock.
public final class SystemClock: Clock {
    public init() {}
    public func now() -> Instant {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return Instant(milliseconds: Int64(spec.tv_sec) * 1000 + Int64(spec.tv_nsec) / 1_000_000)
    }
    public func monotonicMilliseconds() -> Int64 {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return Int64(spec.tv_sec) * 1000 + Int64(spec.tv_nsec) / 1_000_000
    }
}

/// A clock that only moves when told to: for tests of the timing rules.
public final class ManualClock: Clock {
    public var current: Instant
    public var monotonic: Int64 = 1_000_000
    public init(_ start: Instant = Instant(milliseconds: 1_790_000_000_000)) { current = start }
    public func now() -> Instant { current }
    public func monotonicMilliseconds() -> Int64 { monotonic }
    public func advance(milliseconds: Int64) {
        current = current + milliseconds
        monotonic += milliseconds
    }
}

/// Durations as the original prints them: `Xh Ym Zs`, `Ym Zs` or `Zs`.
public func formatDuration(milliseconds: Int64) -> String {
    let total = max(0, milliseconds / 1000)
    let hours = total / 3600, minutes = (total % 3600) / 60, seconds = total % 60
    if hours > 0 { return "\(hours)h \(minutes)m \(seconds)s" }
    if minutes > 0 { return "\(minutes)m \(seconds)s" }
    return "\(seconds)s"
}

/// A duration in words, in the largest unit that states it exactly: `30 minutes`, `1 minute`,
/// `90 seconds`, `1.5 seconds`, `2 hours` (the original's "Task timed out after 30 minutes" texts).
public func spelledDuration(milliseconds: Int64) -> String {
    func count(_ value: Int64, _ unit: String) -> String { "\(value) \(unit)\(value == 1 ? "" : "s")" }
    let ms = max(0, milliseconds)
    if ms >= 3_600_000 && ms % 3_600_000 == 0 { return count(ms / 3_600_000, "hour") }
    if ms >= 60_000 && ms % 60_000 == 0 { return count(ms / 60_000, "minute") }
    if ms % 1000 == 0 { return count(ms / 1000, "second") }
    return String(format: "%g seconds", Double(ms) / 1000)
}

/// Parses `500ms`, `2s`, `3m`, `1h`, `7d` or a bare number of seconds into milliseconds.
public func parseDuration(_ text: String) -> Int64? {
    let trimmed = text.trimmingCharacters(in: .whitespaces).lowercased()
    let units: [(String, Double)] = [("ms", 1), ("s", 1000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000)]
    for (suffix, factor) in units where trimmed.hasSuffix(suffix) {
        let number = trimmed.dropLast(suffix.count)
        guard let value = Double(number), value.isFinite, value >= 0, value * factor < 1e15 else { return nil }
        return Int64(value * factor)
    }
    guard let value = Double(trimmed), value.isFinite, value >= 0, value < 1e12 else { return nil }
    return Int64(value * 1000)
}
