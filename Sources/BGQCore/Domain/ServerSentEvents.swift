/// One event of a `text/event-stream` body (Server-Sent Events), as the WHATWG HTML standard's
/// "interpreting an event stream" defines it: https://html.spec.whatwg.org/multipage/server-sent-events.html
public struct ServerSentEvent: Sendable, Equatable {
    /// The `event` field, or "message" when the event named none.
    public var type: String
    /// The `data` lines, joined with "\n".
    public var data: String
    /// The last `id` seen on the stream so far (it carries over to later events), or "" when none.
    public var lastEventID: String
    /// False when a `data` line held bytes that are not UTF-8: they became U+FFFD in `data`, as the
    /// standard decodes them, and a reader that needs exact text (JSON is UTF-8) can refuse the event.
    public var isValidUTF8: Bool

    public init(type: String = "message", data: String, lastEventID: String = "", isValidUTF8: Bool = true) {
        self.type = type
        self.data = data
        self.lastEventID = lastEventID
        self.isValidUTF8 = isValidUTF8
    }
}

/// Why an event stream could not be read on.
public enum ServerSentEventError: Error, Sendable, Equatable, CustomStringConvertible {
    /// One event (its pending line and `data` together) passed the cap: a line without end must not
    /// grow memory without bound.
    case eventTooLarge(limit: Int)

    public var description: String {
        switch self {
        case .eventTooLarge(let limit): "an event of the stream is longer than \(limit % (1 << 20) == 0 ? "\(limit >> 20) MB" : "\(limit) bytes") (a line without end?)"
        }
    }
}

/// An incremental parser of `text/event-stream` bodies: feed it bytes as they arrive, split anywhere
/// (inside a line, a CRLF or a UTF-8 sequence), and it returns each event once its empty line arrived.
///
/// The standard's rules: lines end in CR, LF or CRLF; one leading U+FEFF (BOM) is dropped; a line that
/// starts with `:` is a comment; `field: value` drops one space after the colon, and a line without a
/// colon is a field with an empty value; `data` lines are joined with "\n"; `event` names the type;
/// `id` (unless it holds NUL) sets the last event id; `retry` (ASCII digits only) sets the reconnection
/// time; other fields are ignored; an empty line dispatches the event (none when it had no `data`); an
/// incomplete event at the end of the stream is dropped. Field names and values are decoded as UTF-8
/// with U+FFFD for bytes that are not, so no input makes it fail except one that passes the size cap.
public struct ServerSentEventParser: Sendable {
    /// The biggest event accepted, counting its pending line and its `data` so far.
    public let maxEventBytes: Int
    /// The last `retry` field's value in milliseconds (the standard's reconnection time), if any came.
    public private(set) var retryMs: Int?
    public private(set) var lastEventID = ""
    /// Set once the cap was passed: every later call fails the same way.
    public private(set) var failure: ServerSentEventError?

    private var line: [UInt8] = []
    private var data = ""
    private var dataBytes = 0
    private var hasData = false
    private var dataIsValidUTF8 = true
    private var eventType = ""
    /// The previous chunk ended in CR: an LF that starts the next chunk belongs to it.
    private var afterCR = false
    /// Bytes of a leading BOM matched so far; nil once the start of the stream is behind.
    private var bomMatched: Int? = 0

    private static let bom: [UInt8] = [0xEF, 0xBB, 0xBF]
    private static let cr: UInt8 = 0x0D, lf: UInt8 = 0x0A

    public init(maxEventBytes: Int = 1 << 20) {
        self.maxEventBytes = max(1, maxEventBytes)
    }

    /// True when a started event (a pending line or `data`) would be dropped if the stream ended now.
    public var hasIncompleteEvent: Bool { !line.isEmpty || hasData || !eventType.isEmpty }

    /// Reads more of the stream; returns the events it completed, in order.
    public mutating func feed(_ bytes: some Sequence<UInt8>) throws(ServerSentEventError) -> [ServerSentEvent] {
        if let failure { throw failure }
        var events: [ServerSentEvent] = []
        var rest = ArraySlice(bytes)
        if bomMatched != nil { rest = skipBOM(rest) }
        while let first = rest.first {
            if afterCR {
                afterCR = false
                if first == Self.lf {
                    rest = rest.dropFirst()
                    continue
                }
            }
            guard let end = rest.firstIndex(where: { $0 == Self.cr || $0 == Self.lf }) else {
                line.append(contentsOf: rest)
                try checkSize()
                break
            }
            line.append(contentsOf: rest[..<end])
            try checkSize()
            afterCR = rest[end] == Self.cr
            rest = rest[(end + 1)...]
            if let event = endLine() { events.append(event) }
        }
        return events
    }

    /// The stream ended: an incomplete event is dropped, as the standard says. The parser starts afresh.
    public mutating func finish() {
        let retry = retryMs
        self = ServerSentEventParser(maxEventBytes: maxEventBytes)
        retryMs = retry
    }

    // MARK: - Lines

    /// Drops the BOM's bytes as they come; bytes that turn out not to be one are handed back as the
    /// stream's first bytes.
    private mutating func skipBOM(_ bytes: ArraySlice<UInt8>) -> ArraySlice<UInt8> {
        var rest = bytes
        while let matched = bomMatched, let byte = rest.first {
            if byte == Self.bom[matched] {
                rest = rest.dropFirst()
                bomMatched = matched + 1 == Self.bom.count ? nil : matched + 1
            } else {
                bomMatched = nil
                rest = Self.bom[..<matched] + rest
            }
        }
        return rest
    }

    private mutating func checkSize() throws(ServerSentEventError) {
        // The pending line and a partly matched BOM are held; so are the event's data lines.
        if line.count + dataBytes > maxEventBytes {
            let error = ServerSentEventError.eventTooLarge(limit: maxEventBytes)
            failure = error
            line = []
            data = ""
            throw error
        }
    }

    /// Interprets one complete line; returns the event an empty line dispatched.
    private mutating func endLine() -> ServerSentEvent? {
        defer { line.removeAll(keepingCapacity: line.count <= 4096) }
        if line.isEmpty { return dispatch() }
        if line[0] == UInt8(ascii: ":") { return nil }
        let colon = line.firstIndex(of: UInt8(ascii: ":"))
        let nameBytes = line[..<(colon ?? line.endIndex)]
        var valueStart = colon.map { line.index(after: $0) } ?? line.endIndex
        if valueStart < line.endIndex && line[valueStart] == UInt8(ascii: " ") { valueStart += 1 }
        let valueBytes = line[valueStart...]
        switch String(decoding: nameBytes, as: UTF8.self) {
        case "data":
            let valid = String(validating: valueBytes, as: UTF8.self)
            if hasData { data += "\n" }
            data += valid ?? String(decoding: valueBytes, as: UTF8.self)
            dataBytes += valueBytes.count + 1
            hasData = true
            if valid == nil { dataIsValidUTF8 = false }
        case "event":
            eventType = String(decoding: valueBytes, as: UTF8.self)
        case "id":
            if !valueBytes.contains(0) { lastEventID = String(decoding: valueBytes, as: UTF8.self) }
        case "retry":
            if !valueBytes.isEmpty, valueBytes.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) {
                // Digits past Int's range are not a time anyone meant: ignored, like a bad value.
                if let ms = Int(String(decoding: valueBytes, as: UTF8.self)) { retryMs = ms }
            }
        default:
            break
        }
        return nil
    }

    private mutating func dispatch() -> ServerSentEvent? {
        defer {
            data = ""
            dataBytes = 0
            hasData = false
            dataIsValidUTF8 = true
            eventType = ""
        }
        guard hasData else { return nil }
        return ServerSentEvent(type: eventType.isEmpty ? "message" : eventType, data: data, lastEventID: lastEventID,
                               isValidUTF8: dataIsValidUTF8)
    }
}
