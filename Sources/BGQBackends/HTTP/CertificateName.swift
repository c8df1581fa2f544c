import BGQCore
import Foundation
import NIOCore
import NIOSSL

/// The check that a server's certificate names the host in the URL (RFC 6125), run on every new TLS
/// connection on top of NIOSSL's own verification.
///
/// Why a check of our own: NIOSSL accepts a certificate whose IP address entry matches the address it
/// connected to, whatever name was asked for. Through a proxy that address is the proxy's, and a peer that
/// controls DNS only needs a certificate for its own address. Here a name must match a DNS entry (a `*.`
/// wildcard covers one label) and an IP literal an IP entry; the common name is never used.
enum CertificateName {
    /// Whether the certificate's subject alternative names cover `host`.
    static func covers(host: String, dnsNames: [String], ipAddresses: [[UInt8]]) -> Bool {
        var name = host.lowercased()
        if name.hasPrefix("["), name.hasSuffix("]") { name = String(name.dropFirst().dropLast()) }
        if let address = ipLiteral(name) { return ipAddresses.contains(address) }
        while name.hasSuffix(".") { name.removeLast() }
        guard !name.isEmpty else { return false }
        return dnsNames.contains { entry in
            var pattern = entry.lowercased()
            while pattern.hasSuffix(".") { pattern.removeLast() }
            if pattern == name { return true }
            guard pattern.hasPrefix("*."), let dot = name.firstIndex(of: "."), dot != name.startIndex else { return false }
            let suffix = pattern.dropFirst(2)
            // The wildcard stands for exactly one label, and never for a whole registered name (`*.com`).
            return suffix.contains(".") && name[name.index(after: dot)...] == suffix
        }
    }

    /// The bytes of an IPv4 or IPv6 literal as `inet_pton` reads it (`127.1` is no literal: it is a name).
    static func ipLiteral(_ text: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 { return withUnsafeBytes(of: &v4) { Array($0) } }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 { return withUnsafeBytes(of: &v6) { Array($0) } }
        return nil
    }

    /// Fails a new connection whose peer certificate does not name `host`; passes plain connections.
    /// Runs on the channel's event loop (the TLS handler is not thread-safe).
    static func verify(_ channel: any Channel, host: String) -> EventLoopFuture<Void> {
        channel.eventLoop.submit {
            guard let tls = try? channel.pipeline.syncOperations.handler(type: NIOSSLClientHandler.self) else { return }
            guard let certificate = tls.peerCertificate else {
                throw HTTPFailure.untrusted(host: host, detail: "the server presented no certificate")
            }
            var dnsNames: [String] = [], ipAddresses: [[UInt8]] = []
            for entry in certificate._subjectAlternativeNames() {
                let bytes = entry.contents.withUnsafeBufferPointer { Array($0) }
                switch entry.nameType {
                case .dnsName: dnsNames.append(String(decoding: bytes, as: UTF8.self))
                case .ipAddress: ipAddresses.append(bytes)
                default: continue
                }
            }
            guard covers(host: host, dnsNames: dnsNames, ipAddresses: ipAddresses) else {
                let addresses = ipAddresses.map { $0.count == 4 ? $0.map(String.init).joined(separator: ".") : "an IPv6 address" }
                let names = (dnsNames + addresses).joined(separator: ", ")
                throw HTTPFailure.untrusted(host: host, detail: "hostname mismatch: the certificate is for \(names.isEmpty ? "no name" : names)")
            }
        }
    }
}
