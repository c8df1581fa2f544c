import Foundation

/// TLS for `https://` provider and server URLs, through the system's OpenSSL (Debian's libssl3), loaded
/// with dlopen the first time an `https://` URL is called.
///
/// Why not Foundation's URLSession: linking FoundationNetworking loads libcurl and some thirty libraries
/// at the start of every `bgq` command (`bgq show` went from 13 to 20 ms), and on Linux it never completes
/// a 401 that carries `WWW-Authenticate`. Only a worker that calls an `https://` URL loads libssl.
/// The peer's certificate is verified against the system's trust store (OpenSSL's default paths, which
/// honour SSL_CERT_FILE and SSL_CERT_DIR) and its name against the URL's host.
final class OpenSSL: @unchecked Sendable {
    typealias MethodFn = @convention(c) () -> OpaquePointer?
    typealias CtxNewFn = @convention(c) (OpaquePointer?) -> OpaquePointer?
    typealias CtxIntFn = @convention(c) (OpaquePointer?) -> Int32
    typealias CtxVerifyFn = @convention(c) (OpaquePointer?, Int32, OpaquePointer?) -> Void
    typealias NewFn = @convention(c) (OpaquePointer?) -> OpaquePointer?
    typealias SetFdFn = @convention(c) (OpaquePointer?, Int32) -> Int32
    typealias CtrlFn = @convention(c) (OpaquePointer?, Int32, Int, UnsafeMutableRawPointer?) -> Int
    typealias SetHostFn = @convention(c) (OpaquePointer?, UnsafePointer<CChar>?) -> Int32
    typealias SSLIntFn = @convention(c) (OpaquePointer?) -> Int32
    typealias IOFn = @convention(c) (OpaquePointer?, UnsafeMutableRawPointer?, Int32) -> Int32
    typealias GetErrorFn = @convention(c) (OpaquePointer?, Int32) -> Int32
    typealias VerifyResultFn = @convention(c) (OpaquePointer?) -> Int
    typealias FreeFn = @convention(c) (OpaquePointer?) -> Void
    typealias ParamFn = @convention(c) (OpaquePointer?) -> OpaquePointer?
    typealias SetIPFn = @convention(c) (OpaquePointer?, UnsafePointer<CChar>?) -> Int32
    typealias VerifyStringFn = @convention(c) (Int) -> UnsafePointer<CChar>?

    let clientMethod: MethodFn, ctxNew: CtxNewFn, ctxDefaultPaths: CtxIntFn, ctxSetVerify: CtxVerifyFn
    let new: NewFn, setFd: SetFdFn, ctrl: CtrlFn, set1Host: SetHostFn, connect: SSLIntFn
    let read: IOFn, write: IOFn, getError: GetErrorFn, verifyResult: VerifyResultFn
    let shutdown: SSLIntFn, free: FreeFn, ctxFree: FreeFn, param: ParamFn, setIP: SetIPFn, verifyString: VerifyStringFn?
    let context: OpaquePointer

    /// libssl, loaded once; a clear failure when it is not installed.
    static let shared: Result<OpenSSL, HTTPFailure> = {
        guard let handle = dlopen("libssl.so.3", RTLD_NOW) ?? dlopen("libssl.so", RTLD_NOW) else {
            return .failure(.other("https:// needs OpenSSL's libssl.so.3: install it with 'apt-get install libssl3'"))
        }
        guard let library = OpenSSL(handle: handle) else {
            return .failure(.other("the system's libssl lacks a TLS function bgq needs (OpenSSL 1.1 or later is required)"))
        }
        return .success(library)
    }()

    private init?(handle: UnsafeMutableRawPointer) {
        func load<T>(_ name: String, _ type: T.Type) -> T? {
            guard let symbol = dlsym(handle, name) else { return nil }
            return unsafeBitCast(symbol, to: type)
        }
        guard let clientMethod = load("TLS_client_method", MethodFn.self), let ctxNew = load("SSL_CTX_new", CtxNewFn.self),
              let ctxDefaultPaths = load("SSL_CTX_set_default_verify_paths", CtxIntFn.self),
              let ctxSetVerify = load("SSL_CTX_set_verify", CtxVerifyFn.self), let new = load("SSL_new", NewFn.self),
              let setFd = load("SSL_set_fd", SetFdFn.self), let ctrl = load("SSL_ctrl", CtrlFn.self),
              let set1Host = load("SSL_set1_host", SetHostFn.self), let connect = load("SSL_connect", SSLIntFn.self),
              let read = load("SSL_read", IOFn.self), let write = load("SSL_write", IOFn.self),
              let getError = load("SSL_get_error", GetErrorFn.self), let verifyResult = load("SSL_get_verify_result", VerifyResultFn.self),
              let shutdown = load("SSL_shutdown", SSLIntFn.self), let free = load("SSL_free", FreeFn.self),
              let ctxFree = load("SSL_CTX_free", FreeFn.self), let param = load("SSL_get0_param", ParamFn.self)
        else { return nil }
        // X509_VERIFY_PARAM_set1_ip_asc and X509_verify_cert_error_string live in libcrypto, which libssl loaded.
        guard let setIP = load("X509_VERIFY_PARAM_set1_ip_asc", SetIPFn.self) ?? dlopen("libcrypto.so.3", RTLD_NOW).flatMap({
            dlsym($0, "X509_VERIFY_PARAM_set1_ip_asc").map { unsafeBitCast($0, to: SetIPFn.self) }
        }) else { return nil }
        let verifyString = load("X509_verify_cert_error_string", VerifyStringFn.self) ?? dlopen("libcrypto.so.3", RTLD_NOW).flatMap {
            dlsym($0, "X509_verify_cert_error_string").map { unsafeBitCast($0, to: VerifyStringFn.self) }
        }
        guard let context = ctxNew(clientMethod()) else { return nil }
        _ = ctxDefaultPaths(context)
        ctxSetVerify(context, 1 /* SSL_VERIFY_PEER */, nil)
        (self.clientMethod, self.ctxNew, self.ctxDefaultPaths, self.ctxSetVerify) = (clientMethod, ctxNew, ctxDefaultPaths, ctxSetVerify)
        (self.new, self.setFd, self.ctrl, self.set1Host, self.connect) = (new, setFd, ctrl, set1Host, connect)
        (self.read, self.write, self.getError, self.verifyResult) = (read, write, getError, verifyResult)
        (self.shutdown, self.free, self.ctxFree, self.param, self.setIP, self.verifyString) = (shutdown, free, ctxFree, param, setIP, verifyString)
        self.context = context
    }
}

/// One TLS connection over a connected, blocking socket (whose SO_RCVTIMEO/SO_SNDTIMEO bound each step).
final class TLSConnection {
    let library: OpenSSL
    let ssl: OpaquePointer

    init(fd: Int32, host: String) throws(HTTPFailure) {
        library = try OpenSSL.shared.get()
        guard let ssl = library.new(library.context) else { throw .other("cannot create a TLS connection") }
        self.ssl = ssl
        _ = library.setFd(ssl, fd)
        let isIP = host.allSatisfy { $0.isHexDigit || $0 == "." || $0 == ":" } && (host.contains(".") || host.contains(":"))
        if isIP {
            _ = host.withCString { library.setIP(library.param(ssl), $0) }
        } else {
            // SNI (SSL_set_tlsext_host_name is this SSL_ctrl call) and the name the certificate must carry.
            _ = host.withCString { library.ctrl(ssl, 55 /* SSL_CTRL_SET_TLSEXT_HOSTNAME */, 0, UnsafeMutableRawPointer(mutating: $0)) }
            _ = host.withCString { library.set1Host(ssl, $0) }
        }
        guard library.connect(ssl) == 1 else {
            let verify = library.verifyResult(ssl)
            if verify != 0 {
                let reason = library.verifyString?(verify).map { String(cString: $0) } ?? "code \(verify)"
                throw .other("TLS certificate of \(host) not trusted: \(reason)")
            }
            throw .unreachable("TLS handshake with \(host) failed")
        }
    }

    deinit {
        _ = library.shutdown(ssl)
        library.free(ssl)
    }

    /// Bytes written, or -1.
    func write(_ bytes: UnsafeRawBufferPointer) -> Int {
        Int(library.write(ssl, UnsafeMutableRawPointer(mutating: bytes.baseAddress), Int32(bytes.count)))
    }

    /// Bytes read, 0 at the end, or -1.
    func read(_ buffer: UnsafeMutableRawBufferPointer) -> Int {
        let n = library.read(ssl, buffer.baseAddress, Int32(buffer.count))
        if n > 0 { return Int(n) }
        let error = library.getError(ssl, n)
        return error == 6 /* SSL_ERROR_ZERO_RETURN */ ? 0 : -1
    }
}
