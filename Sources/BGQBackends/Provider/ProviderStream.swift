import BGQCore
import Foundation

/// Tokens a provider counted for one reply, as it reported them (nil: it did not say). Not stored yet:
/// the provider backend hands it to the worker (`ProviderBackend.reportUsage`) for spend control.
public struct TokenUsage: Sendable, Equatable {
    public var inputTokens: Int?
    public var outputTokens: Int?

    public init(inputTokens: Int? = nil, outputTokens: Int? = nil) {
        self.inputTokens = inputTokens
        self.outputTokens = outputTokens
    }

    public var isEmpty: Bool { inputTokens == nil && outputTokens == nil }

    /// Both counts of two attempts together (a retried call spent the tokens of each).
    public static func + (lhs: TokenUsage, rhs: TokenUsage) -> TokenUsage {
        func sum(_ a: Int?, _ b: Int?) -> Int? { a == nil && b == nil ? nil : (a ?? 0) &+ (b ?? 0) }
        return TokenUsage(inputTokens: sum(lhs.inputTokens, rhs.inputTokens), outputTokens: sum(lhs.outputTokens, rhs.outputTokens))
    }

    /// OpenAI's `{prompt_tokens, completion_tokens}` or Anthropic's `{input_tokens, output_tokens}`.
    init(_ value: JSONValue?) {
        inputTokens = (value?["prompt_tokens"] ?? value?["input_tokens"])?.wholeNumber
        outputTokens = (value?["completion_tokens"] ?? value?["output_tokens"])?.wholeNumber
    }
}

/// Reads a provider's streamed reply (`"stream": true`): Server-Sent Events of the OpenAI chat
/// completion chunk shape or of the Anthropic Messages stream, fed as the bytes arrive.
///
/// OpenAI-compatible: `data:` chunks whose `choices[0].delta.content` carry the text, a `finish_reason`,
/// a last chunk with `usage` (asked for with `stream_options.include_usage`), then `data: [DONE]`; an
/// `{"error": …}` chunk (or an `error` event) reports a failure. Anthropic: `message_start` (input
/// tokens), `content_block_delta` with `text_delta`, `message_delta` (output tokens, `stop_reason`),
/// `message_stop`; `ping` and event types it does not know are ignored, as Anthropic's versioning
/// policy asks; `event: error` reports a failure (`overloaded_error` stands for HTTP 529).
package struct ProviderStreamDecoder {
    /// The biggest single event accepted (a text delta is a few bytes; a line without end must stop).
    static let maxEventBytes = 4 << 20

    /// How the stream stands.
    package enum State: Equatable {
        case open
        /// `[DONE]` or `message_stop` arrived: the reply is whole.
        case complete
        /// The provider reported an error in the stream: its message and type (`overloaded_error`, …).
        case providerError(message: String, type: String?)
        /// The stream broke the API's shape or the size cap of one event.
        case malformed(String)
    }

    let api: ProviderAPI
    private var parser = ServerSentEventParser(maxEventBytes: Self.maxEventBytes)
    package private(set) var state = State.open
    package private(set) var text = ""
    private(set) var usage = TokenUsage()
    private(set) var stopReason: String?

    package init(api: ProviderAPI) { self.api = api }

    /// True once nothing more will be read (complete, or failed).
    var isDone: Bool { state != .open }

    /// Reads more bytes of the stream; events after the end are not read.
    package mutating func feed(_ bytes: some Sequence<UInt8>) {
        guard state == .open else { return }
        let events: [ServerSentEvent]
        do {
            events = try parser.feed(bytes)
        } catch {
            state = .malformed(error.description)
            return
        }
        for event in events where state == .open { apply(event) }
    }

    mutating func apply(_ event: ServerSentEvent) {
        if api == .openai && event.type == "message" && event.data.trimmingCharacters(in: .whitespaces) == "[DONE]" {
            state = .complete
            return
        }
        // JSON is UTF-8 (RFC 8259): bytes that are not would reach the result as replacement characters.
        guard event.isValidUTF8 else {
            state = .malformed("an event's data is not UTF-8")
            return
        }
        guard let value = JSONValue.parse(data: Data(event.data.utf8)) else {
            if api == .anthropic && event.type == "ping" { return }
            state = .malformed("an event's data is not JSON: \(String(event.data.prefix(80)))")
            return
        }
        let error = value["error"].flatMap { $0 == .null ? nil : $0 }
        if event.type == "error" || value["type"]?.string == "error" || error != nil {
            let message = error?["message"]?.string ?? value["message"]?.string ?? error?.string ?? String(event.data.prefix(300))
            state = .providerError(message: message, type: error?["type"]?.string ?? error?["code"]?.string)
            return
        }
        switch api {
        case .openai: applyChunk(value)
        case .anthropic: applyMessageEvent(value, type: value["type"]?.string ?? event.type)
        }
    }

    private mutating func applyChunk(_ value: JSONValue) {
        if let choice = value["choices"]?.array?.first {
            if let piece = choice["delta"]?["content"]?.string { text += piece }
            if let reason = choice["finish_reason"]?.string { stopReason = reason }
        }
        if let reported = value["usage"], reported != .null { usage = TokenUsage(reported) }
    }

    private mutating func applyMessageEvent(_ value: JSONValue, type: String) {
        switch type {
        case "message_start":
            let reported = TokenUsage(value["message"]?["usage"])
            usage.inputTokens = reported.inputTokens ?? usage.inputTokens
            usage.outputTokens = reported.outputTokens ?? usage.outputTokens
        case "content_block_delta":
            if value["delta"]?["type"]?.string == "text_delta", let piece = value["delta"]?["text"]?.string { text += piece }
        case "message_delta":
            // Its usage counts are cumulative: the last one is the reply's.
            let reported = TokenUsage(value["usage"])
            usage.inputTokens = reported.inputTokens ?? usage.inputTokens
            usage.outputTokens = reported.outputTokens ?? usage.outputTokens
            if let reason = value["delta"]?["stop_reason"]?.string { stopReason = reason }
        case "message_stop":
            state = .complete
        default:
            break  // ping, content_block_start/stop, and event types added later
        }
    }
}

/// One attempt's reply as it arrives: fed on the HTTP client's event loop, read by the worker's loop at
/// each poll (the text that came since the last poll) and once the exchange ended (the outcome).
final class ProviderReplyReader: @unchecked Sendable {
    /// What the reply's body turned out to be.
    enum Body {
        /// No successful reply head yet.
        case none
        /// `text/event-stream`: decoded as it came.
        case events(ProviderStreamDecoder)
        /// Any other 2xx reply: a server that ignored `stream` and sent one JSON body.
        case whole(Data)
    }

    private let lock = NSLock()
    private let api: ProviderAPI
    private var content = Body.none
    /// UTF-8 bytes of the text already taken (each piece is appended whole, so this is a character boundary).
    private var takenBytes = 0

    init(api: ProviderAPI) { self.api = api }

    var body: Body { lock.withLock { content } }

    /// A successful reply began: a stream was answered.
    var started: Bool {
        lock.withLock { if case .none = content { false } else { true } }
    }

    /// The tokens counted so far (a stream that broke may have said some).
    var usage: TokenUsage {
        lock.withLock { if case .events(let decoder) = content { decoder.usage } else { TokenUsage() } }
    }

    func head(headers: [String: String]) {
        let type = headers["content-type"]?.lowercased() ?? ""
        lock.withLock { content = type.hasPrefix("text/event-stream") ? .events(ProviderStreamDecoder(api: api)) : .whole(Data()) }
    }

    func part(_ bytes: ArraySlice<UInt8>) -> HTTPClient.StreamDecision {
        lock.withLock {
            switch content {
            case .events(var decoder):
                content = .none  // so the decoder is not copied on write
                decoder.feed(bytes)
                content = .events(decoder)
                return decoder.isDone ? .stop : .more
            case .whole(var data):
                content = .none
                data.append(contentsOf: bytes)
                content = .whole(data)
                return .more
            case .none:
                return .more
            }
        }
    }

    /// The streamed text that arrived since the last call, and the last `tail` characters of all of it.
    func takeNewText(tail: Int) -> (new: String, tail: String) {
        lock.withLock {
            guard case .events(let decoder) = content else { return ("", "") }
            let utf8 = decoder.text.utf8
            guard utf8.count > takenBytes else { return ("", "") }
            let fresh = String(decoder.text[utf8.index(utf8.startIndex, offsetBy: takenBytes)...])
            takenBytes = utf8.count
            return (fresh, String(decoder.text.suffix(tail)))
        }
    }
}
