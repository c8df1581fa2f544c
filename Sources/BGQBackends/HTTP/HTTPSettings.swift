import BGQCore
import Foundation

/// How a worker's HTTP client behaves, read once from the worker's environment.
///
/// Proxies follow the convention every agent tool follows (curl's): `https_proxy`/`HTTPS_PROXY` for
/// `https://` URLs, `http_proxy`/`HTTP_PROXY` for `http://` URLs, and `no_proxy`/`NO_PROXY` for hosts that are
/// reached directly. Trust follows OpenSSL's variables: `SSL_CERT_FILE` and `SSL_CERT_DIR` replace the system's
/// trust store when set.
public struct HTTPSettings: Sendable, Equatable {
    /// The biggest response body accepted; a bigger one ends the call with `HTTPFailure.tooLarge`.
    public var maxResponseBytes = 64 << 20
    public var connectTimeoutMs: Int64 = 10_000
    /// Longest silence while a response is expected. The default leaves it to each request's own deadline
    /// (a provider may think for minutes before its first byte).
    public var readTimeoutMs: Int64 = 600_000
    public var httpsProxy: ProxyEndpoint?
    public var httpProxy: ProxyEndpoint?
    public var noProxy = NoProxyList(entries: [])
    public var certificateFile: String?
    public var certificateDirectory: String?
    /// A setting that could not be read: every call fails with this line instead of guessing.
    public var problem: String?

    public static let maxResponseVariable = "BGQ_HTTP_MAX_RESPONSE_BYTES"
    public static let connectTimeoutVariable = "BGQ_HTTP_CONNECT_TIMEOUT_MS"
    public static let readTimeoutVariable = "BGQ_HTTP_READ_TIMEOUT_MS"

    public init() {}

    public init(environment: [String: String]) {
        func value(_ names: String...) -> String? {
            names.lazy.compactMap { environment[$0] }.first { !$0.trimmingCharacters(in: .whitespaces).isEmpty }
        }
        func number(_ name: String, _ range: ClosedRange<Int64>) -> Int64? {
            guard let text = value(name) else { return nil }
            guard let number = Int64(text.trimmingCharacters(in: .whitespaces)), range.contains(number) else {
                problem = problem ?? "\(name) must be a whole number from \(range.lowerBound) to \(range.upperBound), not '\(text)': fix or unset it in the worker's environment"
                return nil
            }
            return number
        }
        if let bytes = number(Self.maxResponseVariable, 1...(Int64(UInt32.max))) { maxResponseBytes = Int(bytes) }
        if let ms = number(Self.connectTimeoutVariable, 1...86_400_000) { connectTimeoutMs = ms }
        if let ms = number(Self.readTimeoutVariable, 1...86_400_000) { readTimeoutMs = ms }
        for (names, keyPath) in [(["https_proxy", "HTTPS_PROXY"], \HTTPSettings.httpsProxy), (["http_proxy", "HTTP_PROXY"], \HTTPSettings.httpProxy)] {
            guard let text = names.lazy.compactMap({ environment[$0] }).first(where: { !$0.isEmpty }) else { continue }
            switch ProxyEndpoint.parse(text) {
            case .success(let endpoint): self[keyPath: keyPath] = endpoint
            case .failure(let reason): problem = problem ?? "\(names[1]) is not a usable proxy ('\(text)'): \(reason)"
            }
        }
        noProxy = NoProxyList(value("no_proxy", "NO_PROXY") ?? "")
        certificateFile = value("SSL_CERT_FILE")
        certificateDirectory = value("SSL_CERT_DIR")
    }

    /// The proxy a call to this URL goes through, or nil for a direct connection.
    public func proxy(for url: URL) -> ProxyEndpoint? {
        guard let host = url.host, !noProxy.bypasses(host: host) else { return nil }
        return url.scheme == "https" ? httpsProxy : httpProxy
    }
}

/// An HTTP proxy (`http://[user:password@]host[:port]`, or `host:port`), used with CONNECT.
public struct ProxyEndpoint: Hashable, Sendable {
    public var host: String
    public var port: Int
    public var user: String?
    public var password: String?

    static func parse(_ text: String) -> Result<ProxyEndpoint, ProxyParseError> {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        let withScheme = trimmed.contains("://") ? trimmed : "http://" + trimmed
        guard let components = URLComponents(string: withScheme), let host = components.host, !host.isEmpty else {
            return .failure(.notAURL)
        }
        guard components.scheme?.lowercased() == "http" else { return .failure(.unsupportedScheme(components.scheme ?? "")) }
        return .success(ProxyEndpoint(host: host, port: components.port ?? 80, user: components.user, password: components.password))
    }
}

/// Why a proxy variable could not be used.
public enum ProxyParseError: Error, Equatable, CustomStringConvertible {
    case notAURL
    case unsupportedScheme(String)

    public var description: String {
        switch self {
        case .notAURL: "expected http://host:port"
        case .unsupportedScheme(let scheme): "only http:// proxies are supported, not \(scheme)://"
        }
    }
}

/// `NO_PROXY`: comma- or space-separated host names, domain suffixes (`example.com` and `.example.com` both
/// cover `api.example.com`), IP addresses, optionally with a port (ignored), or `*` for every host.
public struct NoProxyList: Equatable, Sendable {
    public var entries: [String]
    public var matchesEverything: Bool { entries.contains("*") }

    public init(entries: [String]) { self.entries = entries }

    public init(_ text: String) {
        entries = text.split(whereSeparator: { $0 == "," || $0 == " " || $0 == "\t" }).compactMap { raw in
            var entry = raw.lowercased()
            if entry == "*" { return entry }
            if entry.hasPrefix("["), let close = entry.firstIndex(of: "]") {
                entry = String(entry[entry.index(after: entry.startIndex)..<close])  // [::1]:8080
            } else if entry.filter({ $0 == ":" }).count == 1, let colon = entry.firstIndex(of: ":") {
                entry = String(entry[..<colon])  // host:port
            }
            while entry.hasPrefix(".") { entry.removeFirst() }
            return entry.isEmpty ? nil : entry
        }
    }

    public func bypasses(host: String) -> Bool {
        var name = host.lowercased()
        if name.hasPrefix("["), name.hasSuffix("]") { name = String(name.dropFirst().dropLast()) }
        while name.hasSuffix(".") { name.removeLast() }
        return entries.contains { entry in entry == "*" || name == entry || name.hasSuffix("." + entry) }
    }
}
