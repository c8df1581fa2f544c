import Foundation

/// HTTP/1.1 over a TCP socket, with TLS (OpenSSL, see TLS.swift) for `https://`. One request per
/// connection (`Connection: close`); connect, write and read are bounded by the request's deadline.
///
/// Why not Foundation's URLSession: on Linux it never completes a request answered with 401 and a
/// `WWW-Authenticate` header (what an OpenCode server with a password sends for a wrong one), so a
/// wrong password would hang instead of failing with a hint; and linking it slows every `bgq` command.
enum SocketHTTP {
    static let maxResponseBytes = 64 << 20

    /// Cancels a request from another thread by shutting its socket down.
    final class Cancellation: @unchecked Sendable {
        private let lock = NSLock()
        private var descriptor: Int32 = -1
        private var cancelled = false
        var isCancelled: Bool { lock.withLock { cancelled } }
        func attach(_ fd: Int32) -> Bool {
            lock.withLock {
                descriptor = fd
                return !cancelled
            }
        }
        func detach() { lock.withLock { descriptor = -1 } }
        func cancel() {
            lock.withLock {
                cancelled = true
                if descriptor >= 0 { shutdown(descriptor, Int32(SHUT_RDWR)) }
            }
        }
    }

    static func exchange(_ request: HTTPRequest, cancellation: Cancellation? = nil) -> Result<HTTPResponse, HTTPFailure> {
        guard let host = request.url.host, !host.isEmpty else { return .failure(.other("no host in \(request.url)")) }
        let secure = request.url.scheme == "https"
        let port = request.url.port ?? (secure ? 443 : 80)
        let deadline = DispatchTime.now().uptimeNanoseconds + UInt64(max(request.timeoutSeconds, 0.1) * 1e9)
        func remainingMs() -> Int32 {
            let now = DispatchTime.now().uptimeNanoseconds
            return now >= deadline ? 0 : Int32(min((deadline - now) / 1_000_000, UInt64(Int32.max)))
        }

        // Resolve and connect (non-blocking connect, bounded by the deadline).
        var hints = addrinfo()
        hints.ai_family = AF_UNSPEC
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var list: UnsafeMutablePointer<addrinfo>?
        guard getaddrinfo(host, String(port), &hints, &list) == 0, let first = list else {
            return .failure(.unreachable("cannot resolve \(host)"))
        }
        defer { freeaddrinfo(list) }
        var fd: Int32 = -1
        var lastError = "connection refused"
        var candidate: UnsafeMutablePointer<addrinfo>? = first
        while let info = candidate, fd < 0 {
            candidate = info.pointee.ai_next
            let s = socket(info.pointee.ai_family, info.pointee.ai_socktype | Int32(SOCK_CLOEXEC.rawValue), info.pointee.ai_protocol)
            guard s >= 0 else { continue }
            _ = fcntl(s, F_SETFL, fcntl(s, F_GETFL) | O_NONBLOCK)
            if connect(s, info.pointee.ai_addr, info.pointee.ai_addrlen) == 0 || errno == EINPROGRESS {
                var descriptor = pollfd(fd: s, events: Int16(POLLOUT), revents: 0)
                var soError: Int32 = 0
                var length = socklen_t(MemoryLayout<Int32>.size)
                if poll(&descriptor, 1, remainingMs()) == 1, getsockopt(s, SOL_SOCKET, SO_ERROR, &soError, &length) == 0, soError == 0 {
                    fd = s
                    break
                }
                lastError = soError != 0 ? String(cString: strerror(soError)) : "connect timed out"
                if soError == 0 {
                    close(s)
                    return .failure(.timedOut)
                }
            } else {
                lastError = String(cString: strerror(errno))
            }
            close(s)
        }
        guard fd >= 0 else { return .failure(.unreachable("\(lastError) at \(host):\(port)")) }
        defer {
            cancellation?.detach()
            close(fd)
        }
        if let cancellation, !cancellation.attach(fd) { return .failure(.cancelled) }
        var tls: TLSConnection?
        if secure {
            // TLS on a blocking socket: each step is bounded by the time left (SO_RCVTIMEO/SO_SNDTIMEO).
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
            let left = Int(max(remainingMs(), 1))
            var limit = timeval(tv_sec: left / 1000, tv_usec: (left % 1000) * 1000)
            _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
            _ = setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
            do { tls = try TLSConnection(fd: fd, host: host) } catch {
                return .failure(cancellation?.isCancelled == true ? .cancelled : error)
            }
        }

        // Write the request.
        var target = request.url.path.isEmpty ? "/" : request.url.path
        if let query = request.url.query { target += "?" + query }
        var head = "\(request.method) \(target) HTTP/1.1\r\nHost: \(host):\(port)\r\nConnection: close\r\nUser-Agent: bgq\r\n"
        let body = request.body ?? Data()
        if !body.isEmpty || request.method == "POST" || request.method == "PUT" { head += "Content-Length: \(body.count)\r\n" }
        for (name, value) in request.headers where !["host", "connection", "content-length"].contains(name.lowercased()) {
            head += "\(name): \(value)\r\n"
        }
        head += "\r\n"
        var outgoing = Data(head.utf8)
        outgoing.append(body)
        var written = 0
        while written < outgoing.count {
            if let tls {
                let n = outgoing.withUnsafeBytes { tls.write(UnsafeRawBufferPointer(rebasing: $0[written...])) }
                guard n > 0 else { return .failure(cancellation?.isCancelled == true ? .cancelled : .unreachable("TLS connection closed while sending")) }
                written += n
                continue
            }
            var descriptor = pollfd(fd: fd, events: Int16(POLLOUT), revents: 0)
            guard poll(&descriptor, 1, remainingMs()) == 1 else { return .failure(cancellation?.isCancelled == true ? .cancelled : .timedOut) }
            let n = outgoing.withUnsafeBytes { send(fd, $0.baseAddress! + written, $0.count - written, Int32(MSG_NOSIGNAL)) }
            if n < 0 && (errno == EAGAIN || errno == EINTR) { continue }
            guard n > 0 else { return .failure(cancellation?.isCancelled == true ? .cancelled : .unreachable("connection closed while sending")) }
            written += n
        }

        // Read until the server closes the connection (or the body is complete).
        var incoming = Data()
        var buffer = [UInt8](repeating: 0, count: 65536)
        while incoming.count < maxResponseBytes {
            if let response = parse(incoming, complete: false) { return .success(response) }
            if let tls {
                guard remainingMs() > 0 else { return .failure(.timedOut) }
                let n = buffer.withUnsafeMutableBytes { tls.read($0) }
                if cancellation?.isCancelled == true { return .failure(.cancelled) }
                if n < 0 { return .failure(remainingMs() == 0 ? .timedOut : .unreachable("TLS read failed")) }
                if n == 0 { break }
                incoming.append(buffer, count: n)
                continue
            }
            var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&descriptor, 1, remainingMs())
            if ready < 0 && errno == EINTR { continue }
            guard ready == 1 else { return .failure(cancellation?.isCancelled == true ? .cancelled : .timedOut) }
            let n = recv(fd, &buffer, buffer.count, 0)
            if n < 0 && (errno == EAGAIN || errno == EINTR) { continue }
            if cancellation?.isCancelled == true { return .failure(.cancelled) }
            guard n > 0 else { break }
            incoming.append(buffer, count: n)
        }
        guard let response = parse(incoming, complete: true) else {
            return .failure(incoming.isEmpty ? .unreachable("the server closed the connection without answering") : .other("malformed HTTP response"))
        }
        return .success(response)
    }

    /// The response if `data` holds all of it (with `complete`, what there is up to the close).
    static func parse(_ data: Data, complete: Bool) -> HTTPResponse? {
        guard let headerEnd = data.firstRange(of: Data("\r\n\r\n".utf8)) else { return nil }
        let head = String(decoding: data[data.startIndex..<headerEnd.lowerBound], as: UTF8.self)
        var lines = head.components(separatedBy: "\r\n")
        let statusParts = lines.removeFirst().split(separator: " ", maxSplits: 2)
        guard statusParts.count >= 2, statusParts[0].hasPrefix("HTTP/"), let status = Int(statusParts[1]) else { return nil }
        var headers: [String: String] = [:]
        for line in lines {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        let rest = Data(data[headerEnd.upperBound...])
        if status == 204 || status == 304 || (100..<200).contains(status) {
            return HTTPResponse(status: status, headers: headers, body: Data())
        }
        if headers["transfer-encoding"]?.lowercased().contains("chunked") == true {
            guard let body = dechunk(rest) else { return complete ? HTTPResponse(status: status, headers: headers, body: rest) : nil }
            return HTTPResponse(status: status, headers: headers, body: body)
        }
        if let lengthText = headers["content-length"], let length = Int(lengthText) {
            guard rest.count >= length else { return complete ? HTTPResponse(status: status, headers: headers, body: rest) : nil }
            return HTTPResponse(status: status, headers: headers, body: rest.prefix(length))
        }
        return complete ? HTTPResponse(status: status, headers: headers, body: rest) : nil
    }

    /// A chunked body, or nil while its last chunk has not arrived.
    static func dechunk(_ data: Data) -> Data? {
        var body = Data()
        var index = data.startIndex
        while true {
            guard let lineEnd = data[index...].firstRange(of: Data("\r\n".utf8)) else { return nil }
            let sizeText = String(decoding: data[index..<lineEnd.lowerBound], as: UTF8.self).split(separator: ";").first ?? ""
            guard let size = Int(sizeText.trimmingCharacters(in: .whitespaces), radix: 16) else { return nil }
            let start = lineEnd.upperBound
            if size == 0 { return body }
            guard data.distance(from: start, to: data.endIndex) >= size + 2 else { return nil }
            let end = data.index(start, offsetBy: size)
            body.append(data[start..<end])
            index = data.index(end, offsetBy: 2)
        }
    }
}
