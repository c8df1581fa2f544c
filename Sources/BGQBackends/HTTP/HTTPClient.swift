import AsyncHTTPClient
import BGQCore
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

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

/// Why no usable response came back.
public enum HTTPFailure: Error, Sendable, Equatable, CustomStringConvertible {
    /// Nothing listens there (connection refused, no such host), or the peer hung up without answering.
    case unreachable(String)
    case timedOut
    case cancelled
    /// The body passed the size cap (`HTTPSettings.maxResponseBytes`); reading stopped there.
    case tooLarge(limit: Int)
    /// The peer broke HTTP/1.1 (a negative length, a bad chunk size, headers without end).
    case malformed(String)
    /// The TLS handshake failed: most often a certificate that is not trusted or not for this host.
    case untrusted(host: String, detail: String)
    case other(String)

    public var description: String {
        switch self {
        case .unreachable(let detail): "unreachable (\(detail))"
        case .timedOut: "timed out"
        case .cancelled: "cancelled"
        case .tooLarge(let limit): "response too large (over \(Self.size(limit)); raise \(HTTPSettings.maxResponseVariable) to accept more)"
        case .malformed(let detail): "malformed HTTP response (\(detail))"
        case .untrusted(let host, let detail): "TLS certificate of \(host) not trusted: \(detail)"
        case .other(let detail): detail
        }
    }

    /// Worth trying again later: the network or the peer may recover. The rest would fail the same way.
    public var isTransient: Bool {
        switch self {
        case .unreachable, .timedOut: true
        case .cancelled, .tooLarge, .malformed, .untrusted, .other: false
        }
    }

    static func size(_ bytes: Int) -> String {
        bytes % (1 << 20) == 0 ? "\(bytes >> 20) MB" : "\(bytes) bytes"
    }
}

/// The worker's HTTP client: swift-server/async-http-client over SwiftNIO, with TLS by NIOSSL (full certificate
/// and host name verification), pooled connections, timeouts, proxies from the environment and a cap on
/// response size. One per worker process, shared by every HTTP backend.
///
/// Nothing of NIO exists until the first call: an exec-only worker and every other `bgq` command start no
/// event loop thread and load no trust store. The worker is one thread with one loop, so it uses two modes:
/// `send` for short calls to an OpenCode server (the loop waits, bounded by the request's timeout), and `start`
/// for provider calls that take seconds or minutes: the exchange runs on the event loop and the completion
/// lands in a box that the loop reads at its next poll (and wakes the loop, so a reply is handed on at once).
public final class HTTPClient: @unchecked Sendable {
    public let settings: HTTPSettings
    private let lock = NSLock()
    /// One event loop thread for every connection: the worker makes few calls at a time, and waits on none.
    private var group: MultiThreadedEventLoopGroup?
    /// A pooled client per host and route (direct, or through a proxy): AHC takes its proxy per client, and
    /// the certificate name check (`CertificateName`) needs to know the host a connection is for.
    private var clients: [Route: AsyncHTTPClient.HTTPClient] = [:]
    private var isShutDown = false

    struct Route: Hashable {
        var host: String
        var proxy: ProxyEndpoint?
    }

    public init(settings: HTTPSettings = HTTPSettings()) {
        self.settings = settings
    }

    public convenience init(environment: [String: String]) {
        self.init(settings: HTTPSettings(environment: environment))
    }

    deinit {
        // Without blocking: the last reference may go on any thread. `shutdown()` is the clean way.
        guard !isShutDown else { return }
        for client in clients.values { client.shutdown { _ in } }
        group?.shutdownGracefully { _ in }
    }

    /// Closes pooled connections and stops the event loop thread; later calls fail as cancelled.
    public func shutdown() {
        let (clients, group) = lock.withLock { () -> ([AsyncHTTPClient.HTTPClient], MultiThreadedEventLoopGroup?) in
            isShutDown = true
            defer { self.clients.removeAll(); self.group = nil }
            return (Array(self.clients.values), self.group)
        }
        for client in clients { try? client.syncShutdown() }
        try? group?.syncShutdownGracefully()
    }

    /// Sends and waits for the answer (at most the request's timeout). Never call it on an event loop thread.
    public func send(_ request: HTTPRequest) -> Result<HTTPResponse, HTTPFailure> {
        let box = ResultBox()
        let done = DispatchSemaphore(value: 0)
        start(request) { result in
            box.set(result)
            done.signal()
        }
        done.wait()
        return box.get() ?? .failure(.cancelled)
    }

    /// Starts an exchange; `completion` runs once, on the event loop thread (or at once when it cannot start).
    @discardableResult
    public func start(_ request: HTTPRequest, completion: @escaping @Sendable (Result<HTTPResponse, HTTPFailure>) -> Void) -> InFlight {
        let host = request.url.host ?? ""
        let limit = settings.maxResponseBytes
        // The accumulator stops reading at the cap (and refuses a bigger Content-Length at once).
        return launch(request, delegate: { ResponseAccumulator(request: $0, maxBodySize: limit) }, completion: { result in
            switch result {
            case .success(let response): completion(.success(HTTPResponse(response)))
            case .failure(let error): completion(.failure(HTTPFailure(error, host: host, limit: limit)))
            }
        })
    }

    /// A started exchange that can be cancelled (a task's cancel or abort).
    public struct InFlight: @unchecked Sendable {
        let cancelAction: @Sendable () -> Void
        public func cancel() { cancelAction() }
    }

    // MARK: - Building requests and clients

    func prepare(_ request: HTTPRequest) throws -> (AsyncHTTPClient.HTTPClient, AsyncHTTPClient.HTTPClient.Request) {
        if let problem = settings.problem { throw HTTPFailure.other(problem) }
        guard request.url.scheme == "http" || request.url.scheme == "https" else {
            throw HTTPFailure.other("not an http:// or https:// URL: \(request.url)")
        }
        guard let host = request.url.host, !host.isEmpty else { throw HTTPFailure.other("no host in \(request.url)") }
        var headers = HTTPHeaders([("User-Agent", "bgq")])
        for (name, value) in request.headers where !["host", "connection", "content-length"].contains(name.lowercased()) {
            headers.add(name: name, value: value)
        }
        let body = request.body.map { AsyncHTTPClient.HTTPClient.Body.bytes($0) }
        let outgoing = try AsyncHTTPClient.HTTPClient.Request(url: request.url, method: HTTPMethod(rawValue: request.method),
                                                              headers: headers, body: body)
        return (try client(for: Route(host: host, proxy: settings.proxy(for: request.url))), outgoing)
    }

    /// The pooled client of a route, made on first use.
    func client(for route: Route) throws -> AsyncHTTPClient.HTTPClient {
        try lock.withLock {
            guard !isShutDown else { throw HTTPFailure.cancelled }
            if let existing = clients[route] { return existing }
            let group = self.group ?? MultiThreadedEventLoopGroup(numberOfThreads: 1)
            self.group = group
            let client = AsyncHTTPClient.HTTPClient(eventLoopGroup: group, configuration: configuration(route))
            clients[route] = client
            return client
        }
    }

    func configuration(_ route: Route) -> AsyncHTTPClient.HTTPClient.Configuration {
        let proxy = route.proxy
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.certificateVerification = .fullVerification
        // NIOSSL reads the system's store from its own list of paths; OpenSSL's variables are honoured here,
        // both at once as OpenSSL does. A directory can only be the main root (NIOSSL reads additional roots
        // as PEM files).
        switch (settings.certificateFile, settings.certificateDirectory) {
        case (let file?, let directory?):
            tls.trustRoots = .file(directory)
            tls.additionalTrustRoots = [.file(file)]
        case (let file?, nil):
            tls.trustRoots = .file(file)
        case (nil, let directory?):
            tls.trustRoots = .file(directory)
        case (nil, nil):
            break
        }
        var configuration = AsyncHTTPClient.HTTPClient.Configuration(
            tlsConfiguration: tls,
            // Never follow: a provider's key must not be sent to wherever a redirect points.
            redirectConfiguration: .disallow,
            timeout: .init(connect: .milliseconds(settings.connectTimeoutMs), read: .milliseconds(settings.readTimeoutMs)),
            proxy: proxy.map { endpoint in
                .server(host: endpoint.host, port: endpoint.port, authorization: endpoint.user.map {
                    .basic(username: $0, password: endpoint.password ?? "")  // URLComponents decoded them
                })
            },
            decompression: .disabled
        )
        // A refused connection fails the call (the backends decide about retries), as a read error does.
        configuration.connectionPool.retryConnectionEstablishment = false
        // Runs on each new connection once TLS is up, before any request is written on it.
        let host = route.host
        configuration.http1_1ConnectionDebugInitializer = { CertificateName.verify($0, host: host) }
        configuration.http2ConnectionDebugInitializer = { CertificateName.verify($0, host: host) }
        return configuration
    }
}

extension HTTPResponse {
    init(_ response: AsyncHTTPClient.HTTPClient.Response) {
        var headers: [String: String] = [:]
        for (name, value) in response.headers { headers[name.lowercased()] = value }
        self.init(status: Int(response.status.code), headers: headers,
                  body: response.body.map { Data($0.readableBytesView) } ?? Data())
    }
}

/// A value handed from the event loop to the worker's loop.
final class ResultBox: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Result<HTTPResponse, HTTPFailure>?
    func set(_ result: Result<HTTPResponse, HTTPFailure>) { lock.withLock { value = result } }
    func get() -> Result<HTTPResponse, HTTPFailure>? { lock.withLock { value } }
    func clear() { lock.withLock { value = nil } }
}
