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
        case text(String)
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
        var headers = ["content-type": "application/json", "accept": "application/json"]
        let messages: JSONValue = .array(turns.map { ["role": .string($0.role), "content": .string($0.text)] })
        var body: [String: JSONValue] = ["model": .string(model), "messages": messages]
        switch self {
        case .openai:
            if let apiKey { headers["authorization"] = "Bearer \(apiKey)" }
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
            if let text = content.string { return .text(text) }
            if content == .null { return .text("") }
            return .malformed("choices[0].message.content is not text")
        case .anthropic:
            guard let blocks = value["content"]?.array else { return .malformed("no content array") }
            return .text(blocks.compactMap { $0["type"]?.string == "text" ? $0["text"]?.string : nil }.joined())
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
