import BGQCore
import Foundation

/// The two provider APIs bgq calls directly: request shapes, reply shapes and error shapes.
/// Facts: ../shared/reference/backends.md ("Providers called directly").
public enum ProviderAPI: String, Sendable {
    /// Any OpenAI-compatible chat completions endpoint: POST {base}/chat/completions.
    case openai
    /// The Anthropic Messages API: POST {base}/v1/messages.
    case anthropic

    /// One turn of the conversation sent to the provider.
    public struct Turn: Sendable, Equatable {
        public var role: String  // "user" or "assistant"
        public var text: String
    }

    /// What a reply said.
    public enum Reply: Equatable {
        /// The answer, and the tokens the provider counted for it when it said.
        case text(String, usage: TokenUsage = TokenUsage())
        /// The answer was not of the documented shape.
        case malformed(String)
    }

    /// Max tokens for Anthropic, which requires the field (OpenAI-compatible servers choose their own).
    static let anthropicMaxTokens = 4096

    func endpoint(base: String) -> String {
        var base = base
        while base.hasSuffix("/") { base.removeLast() }
        switch self {
        case .openai: return base + "/chat/completions"
        case .anthropic: return base + (base.hasSuffix("/v1") ? "/messages" : "/v1/messages")
        }
    }

    func request(base: String, model: String, turns: [Turn], apiKey: String?, timeoutSeconds: Double) -> HTTPRequest? {
        guard let url = URL(string: endpoint(base: base)), url.scheme == "http" || url.scheme == "https" else { return nil }
        // Streamed, as the official SDKs and agent CLIs call: the answer shows while it grows, and a long
        // generation keeps the connection busy instead of silent. A server that ignores `stream` and
        // answers one JSON body is read as before.
        var headers = ["content-type": "application/json", "accept": "text/event-stream"]
        let messages: JSONValue = .array(turns.map { ["role": .string($0.role), "content": .string($0.text)] })
        var body: [String: JSONValue] = ["model": .string(model), "messages": messages, "stream": .bool(true)]
        switch self {
        case .openai:
            if let apiKey { headers["authorization"] = "Bearer \(apiKey)" }
            // Without it an OpenAI-compatible stream carries no token counts.
            body["stream_options"] = ["include_usage": true]
        case .anthropic:
            if let apiKey { headers["x-api-key"] = apiKey }
            headers["anthropic-version"] = "2023-06-01"
            body["max_tokens"] = .int(Self.anthropicMaxTokens)
        }
        return HTTPRequest(method: "POST", url: url, headers: headers, body: JSONValue.object(body).data, timeoutSeconds: timeoutSeconds)
    }

    func reply(_ body: Data) -> Reply {
        // JSON is UTF-8 (RFC 8259): bytes that are not would reach the result as replacement characters.
        guard String(validating: body, as: UTF8.self) != nil else { return .malformed("not UTF-8") }
        guard let value = JSONValue.parse(data: body) else {
            return .malformed("not JSON: \(String(decoding: body.prefix(80), as: UTF8.self))")
        }
        switch self {
        case .openai:
            guard let message = value["choices"]?.array?.first?["message"], let content = message["content"] else {
                return .malformed("no choices[0].message.content")
            }
            let usage = TokenUsage(value["usage"])
            if let text = content.string { return .text(text, usage: usage) }
            if content == .null { return .text("", usage: usage) }
            return .malformed("choices[0].message.content is not text")
        case .anthropic:
            guard let blocks = value["content"]?.array else { return .malformed("no content array") }
            return .text(blocks.compactMap { $0["type"]?.string == "text" ? $0["text"]?.string : nil }.joined(),
                         usage: TokenUsage(value["usage"]))
        }
    }

    /// The HTTP status an error reported inside a stream stands for (Anthropic's error types are those of
    /// its HTTP errors; OpenAI-compatible servers name a type or code), so that it is retried as that
    /// status would be. An error of a type not listed is final.
    static func status(ofStreamError type: String?) -> Int {
        switch type {
        case "overloaded_error": 529
        case "api_error", "server_error", "internal_error": 500
        case "rate_limit_error", "rate_limit_exceeded": 429
        case "timeout_error": 504
        case "authentication_error", "invalid_api_key": 401
        case "permission_error": 403
        default: 400
        }
    }

    /// The provider's own error message and code from an error body (`{error:{message,type,code}}`).
    func errorDetail(_ body: Data) -> (message: String, code: String?) {
        guard let value = JSONValue.parse(data: body) else {
            return (String(decoding: body.prefix(300), as: UTF8.self), nil)
        }
        let error = value["error"]
        let message = error?["message"]?.string ?? value["message"]?.string ?? String(decoding: body.prefix(300), as: UTF8.self)
        return (message, error?["code"]?.string ?? error?["type"]?.string)
    }
}

/// When to try a provider call again, as the official SDKs do: honour retry-after-ms or retry-after
/// when it asks for 0–60 s, else exponential backoff with jitter; retry 408, 409, 429 and 5xx a
/// bounded number of times. Quota and authentication errors are never retried.
public struct ProviderRetryPolicy: Sendable {
    public var maxRetries = 5
    public var initialDelayMs: Int64 = 500
    public var maxDelayMs: Int64 = 30_000

    public init() {}

    public static func isRetryable(status: Int) -> Bool {
        status == 408 || status == 409 || status == 429 || status >= 500
    }

    /// The wait before retry number `retry` (1-based): the server's word when it gives one within 60 s.
    public func delayMs(retry: Int, headers: [String: String], jitter: Double) -> Int64 {
        if let text = headers["retry-after-ms"], let ms = Double(text), ms >= 0, ms <= 60_000 { return Int64(ms) }
        if let text = headers["retry-after"], let seconds = Double(text), seconds >= 0, seconds <= 60 { return Int64(seconds * 1000) }
        let exponential = min(maxDelayMs, initialDelayMs << Int64(min(retry - 1, 16)))
        // Jitter takes up to a quarter off, so many tasks backing off at once spread out.
        return Int64(Double(exponential) * (1 - 0.25 * min(max(jitter, 0), 1)))
    }
}
