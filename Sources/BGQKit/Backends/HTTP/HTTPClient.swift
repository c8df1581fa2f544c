import Foundation

/// One HTTP request, as the HTTP backends build it.
public struct HTTPRequest: Sendable {
    public var method: String
    public var url: URL
    public var headers: [String: String]
    public var body: Data?
    /// Longest wait for the whole exchange.
    public var timeoutSeconds: Double

    public init(method: String, url: URL, headers: [String: String] = [:], body: Data? = nil, timeoutSeconds: Double = 10) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.timeoutSeconds = timeoutSeconds
    }

    /// `METHOD /path` without the host, for error messages that name the endpoint.
    public var endpoint: String { "\(method) \(url.path.isEmpty ? "/" : url.path)" }
}

/// A response: status, headers (names lower-cased) and body.
public struct HTTPResponse: Sendable {
    public var status: Int
    public var headers: [String: String]
    public var body: Data

    public var bodyText: String { String(decoding: body.prefix(2000), as: UTF8.self) }
}

/// Why no response came back.
public enum HTTPFailure: Error, Sendable, Equatable, CustomStringConvertible {
    /// Nothing listens there (connection refused, no such host).
    case unreachable(String)
    case timedOut
    case cancelled
    case other(String)

    public var description: String {
        switch self {
        case .unreachable(let detail): "unreachable (\(detail))"
        case .timedOut: "timed out"
        case .cancelled: "cancelled"
        case .other(let detail): detail
        }
    }
}

/// The HTTP client of the HTTP backends: HTTP/1.1 over a socket (SocketHTTP), TLS for `https://`.
///
/// The worker is one thread with one loop, so it uses two modes: `send` for short calls to an OpenCode
/// server (bounded by a timeout), and `start` for provider calls that take seconds or minutes: the
/// exchange runs on another thread and the completion lands in a box that the loop reads at its next
/// poll (and wakes the loop, so a reply is handed on at once).
public final class HTTPClient: @unchecked Sendable {
    public init() {}

    /// Sends and waits for the answer (at most the request's timeout).
    public func send(_ request: HTTPRequest) -> Result<HTTPResponse, HTTPFailure> {
        guard request.url.scheme == "http" || request.url.scheme == "https" else {
            return .failure(.other("not an http:// or https:// URL: \(request.url)"))
        }
        return SocketHTTP.exchange(request)
    }

    /// Starts an exchange; `completion` runs on another thread.
    @discardableResult
    public func start(_ request: HTTPRequest, completion: @escaping @Sendable (Result<HTTPResponse, HTTPFailure>) -> Void) -> InFlight {
        let cancellation = SocketHTTP.Cancellation()
        DispatchQueue.global().async { completion(SocketHTTP.exchange(request, cancellation: cancellation)) }
        return InFlight(cancelAction: { cancellation.cancel() })
    }

    /// A started exchange that can be cancelled (a task's cancel or abort).
    public struct InFlight: @unchecked Sendable {
        let cancelAction: @Sendable () -> Void
        public func cancel() { cancelAction() }
    }
}

/// A value handed from the exchange's thread to the worker's loop.
final class ResultBox: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Result<HTTPResponse, HTTPFailure>?
    func set(_ result: Result<HTTPResponse, HTTPFailure>) { lock.withLock { value = result } }
    func get() -> Result<HTTPResponse, HTTPFailure>? { lock.withLock { value } }
    func clear() { lock.withLock { value = nil } }
}
