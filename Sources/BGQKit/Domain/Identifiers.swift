/// Random lowercase-hex identifiers with a kind prefix: `bg_1a2b3c4d`, `ses_…`, `wrk_…`.
public enum Identifier {
    public static let taskPrefix = "bg_"
    public static let sessionPrefix = "ses_"
    public static let workerPrefix = "wrk_"

    public static func newTaskID() -> String { taskPrefix + randomHex(count: 8) }
    public static func newSessionID() -> String { sessionPrefix + randomHex(count: 12) }
    public static func newWorkerID() -> String { workerPrefix + randomHex(count: 8) }

    static func randomHex(count: Int) -> String {
        let digits = Array("0123456789abcdef")
        var generator = SystemRandomNumberGenerator()
        return String((0..<count).map { _ in digits[Int(generator.next() % 16)] })
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
