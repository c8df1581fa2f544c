import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

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

/// A small HTTP client: `http://` over a plain socket (PlainHTTP), `https://` over Foundation's
/// URLSession (libcurl on Linux: HTTP/2, TLS).
///
/// The worker is one thread with one loop, so it uses two modes: `send` for short calls to an OpenCode
/// server (bounded by a timeout), and `start` for provider calls that take seconds or minutes: the
/// exchange runs on URLSession's threads and the completion lands in a box that the loop reads at its
/// next poll (and wakes the loop, so a reply is handed on at once).
public final class HTTPClient: @unchecked Sendable {
    let session: URLSession

    public init() {
        let configuration = URLSessionConfiguration.ephemeral
        configuration.requestCachePolicy = .reloadIgnoringLocalCacheData
        configuration.urlCache = nil
        configuration.httpCookieStorage = nil
        configuration.httpShouldSetCookies = false
        configuration.httpMaximumConnectionsPerHost = 16
        session = URLSession(configuration: configuration)
    }

    /// Sends and waits for the answer (at most the request's timeout).
    public func send(_ request: HTTPRequest) -> Result<HTTPResponse, HTTPFailure> {
        if request.url.scheme == "http" { return PlainHTTP.exchange(request) }
        let box = ResultBox()
        let semaphore = DispatchSemaphore(value: 0)
        let task = start(request) { result in
            box.set(result)
            semaphore.signal()
        }
        if semaphore.wait(timeout: .now() + request.timeoutSeconds + 2) == .timedOut {
            task.cancel()
            return .failure(.timedOut)
        }
        return box.get() ?? .failure(.timedOut)
    }

    /// Starts an exchange; `completion` runs on another thread.
    @discardableResult
    public func start(_ request: HTTPRequest, completion: @escaping @Sendable (Result<HTTPResponse, HTTPFailure>) -> Void) -> InFlight {
        if request.url.scheme == "http" {
            let cancellation = PlainHTTP.Cancellation()
            DispatchQueue.global().async { completion(PlainHTTP.exchange(request, cancellation: cancellation)) }
            return InFlight(cancelAction: { cancellation.cancel() })
        }
        var urlRequest = URLRequest(url: request.url)
        urlRequest.httpMethod = request.method
        urlRequest.timeoutInterval = request.timeoutSeconds
        for (name, value) in request.headers { urlRequest.setValue(value, forHTTPHeaderField: name) }
        urlRequest.httpBody = request.body
        let task = session.dataTask(with: urlRequest) { data, response, error in
            if let error {
                completion(.failure(Self.failure(error)))
                return
            }
            guard let http = response as? HTTPURLResponse else {
                completion(.failure(.other("no HTTP response")))
                return
            }
            var headers: [String: String] = [:]
            for (name, value) in http.allHeaderFields {
                headers[String(describing: name).lowercased()] = String(describing: value)
            }
            completion(.success(HTTPResponse(status: http.statusCode, headers: headers, body: data ?? Data())))
        }
        task.resume()
        return InFlight(cancelAction: { task.cancel() })
    }

    static func failure(_ error: Error) -> HTTPFailure {
        let nsError = error as NSError
        switch nsError.code {
        case NSURLErrorTimedOut: return .timedOut
        case NSURLErrorCancelled: return .cancelled
        case NSURLErrorCannotConnectToHost, NSURLErrorCannotFindHost, NSURLErrorDNSLookupFailed, NSURLErrorNetworkConnectionLost,
             NSURLErrorNotConnectedToInternet:
            let detail = (nsError.userInfo[NSLocalizedDescriptionKey] as? String) ?? "connection refused"
            return .unreachable(detail)
        default:
            return .other((nsError.userInfo[NSLocalizedDescriptionKey] as? String) ?? "\(error)")
        }
    }

    /// A started exchange that can be cancelled (a task's cancel or abort).
    public struct InFlight: @unchecked Sendable {
        let cancelAction: @Sendable () -> Void
        public func cancel() { cancelAction() }
    }
}

/// A value handed from URLSession's threads to the worker's loop.
final class ResultBox: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Result<HTTPResponse, HTTPFailure>?
    func set(_ result: Result<HTTPResponse, HTTPFailure>) { lock.withLock { value = result } }
    func get() -> Result<HTTPResponse, HTTPFailure>? { lock.withLock { value } }
    func clear() { lock.withLock { value = nil } }
}
