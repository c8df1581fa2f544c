import AsyncHTTPClient
import BGQCore
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

extension HTTPFailure {
    /// The one place where async-http-client's, NIO's and NIOSSL's errors become bgq's, by type, never by text.
    init(_ error: any Error, host: String, limit: Int) {
        switch error {
        case let failure as HTTPFailure:
            self = failure
        case is ResponseAccumulator.ResponseTooBigError:
            self = .tooLarge(limit: limit)
        case let parser as HTTPParserError:
            self = .malformed(Self.parserDetail(parser))
        case let client as HTTPClientError:
            self = Self.from(client)
        case let connection as NIOConnectionError:
            if connection.dnsAError != nil && connection.dnsAAAAError != nil && connection.connectionErrors.isEmpty {
                self = .unreachable("cannot resolve \(connection.host)")
            } else {
                let reason = connection.connectionErrors.last.map { "\($0.error)" } ?? "connection refused"
                self = .unreachable("\(Self.oneLine(reason)) at \(connection.host):\(connection.port)")
            }
        case let tls as NIOSSLError:
            if case .handshakeFailed(let detail) = tls {
                self = .untrusted(host: host, detail: Self.oneLine("\(detail)"))
            } else if tls == .uncleanShutdown {
                self = .unreachable("the server closed the TLS connection without answering")
            } else {
                self = .untrusted(host: host, detail: Self.oneLine("\(tls)"))
            }
        case let tls as NIOSSLExtraError where tls == .failedToValidateHostname:
            self = .untrusted(host: host, detail: "hostname mismatch: the certificate is for another name")
        case let tls as NIOSSLExtraError:
            self = .untrusted(host: host, detail: Self.oneLine("\(tls)"))
        case is SocketAddressError:
            self = .unreachable("cannot resolve \(host)")
        case ChannelError.connectTimeout:
            self = .timedOut
        case is ChannelError, is IOError:
            self = .unreachable(Self.oneLine("\(error)"))
        default:
            self = .other(Self.oneLine("\(error)"))
        }
    }

    static func from(_ error: HTTPClientError) -> HTTPFailure {
        switch error {
        case .cancelled:
            return .cancelled
        case .readTimeout, .writeTimeout, .connectTimeout, .deadlineExceeded, .tlsHandshakeTimeout, .httpProxyHandshakeTimeout,
             .socksHandshakeTimeout, .getConnectionFromPoolTimeout:
            return .timedOut
        case .remoteConnectionClosed:
            return .unreachable("the server closed the connection without answering")
        case .invalidProxyResponse, .proxyAuthenticationRequired:
            return .unreachable("the proxy refused the connection (\(error))")
        case .alreadyShutdown:
            return .cancelled
        case .invalidURL, .emptyHost, .emptyScheme:
            return .other(oneLine("cannot send this request: \(error)"))
        default:
            // The peer's bytes did not make an HTTP response (a body longer or shorter than announced, …).
            return .malformed(oneLine("\(error)"))
        }
    }

    static func parserDetail(_ error: HTTPParserError) -> String {
        switch error {
        case .invalidContentLength, .unexpectedContentLength: "invalid Content-Length"
        case .invalidChunkSize: "invalid chunk size"
        case .headerOverflow: "headers too long"
        default: "\(error)"
        }
    }

    /// Errors end up in a task's one-line error.
    static func oneLine(_ text: String) -> String {
        String(text.split(whereSeparator: \.isNewline).joined(separator: " ").prefix(300))
    }
}
