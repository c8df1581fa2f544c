import Foundation
import Testing
@testable import BGQBackends
@testable import BGQCLI
@testable import BGQCore
@testable import BGQSQLite
@testable import BGQScheduler
@testable import BGQSystem

/// One of the protocol-faithful fake servers in Tests/Servers (a Python process speaking real HTTP on
/// 127.0.0.1): `fake_opencode.py` (an OpenCode server) or `fake_provider.py` (OpenAI and Anthropic APIs).
final class FakeServer {
    let script: String
    let arguments: [String]
    private(set) var process: Process
    private(set) var port: Int
    let stderrPath: String

    /// Starts `Tests/Servers/<script> --port <port> ARGS` and reads the `PORT n` line it prints first.
    init(_ script: String, _ arguments: [String] = [], port: Int = 0, directory: String) throws {
        self.script = script
        self.arguments = arguments
        self.stderrPath = directory + "/\(script).\(UUID().uuidString.prefix(6)).stderr"
        (process, self.port) = try Self.launch(script, arguments, port: port, stderrPath: stderrPath)
    }

    static func launch(_ script: String, _ arguments: [String], port: Int, stderrPath: String) throws -> (Process, Int) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", repositoryRoot + "/Tests/Servers/" + script, "--port", String(port)] + arguments
        let out = Pipe()
        process.standardOutput = out
        _ = FileManager.default.createFile(atPath: stderrPath, contents: nil)
        process.standardError = FileHandle(forWritingAtPath: stderrPath)
        process.standardInput = FileHandle.nullDevice
        // The test thread may block SIGTERM; the server must not inherit that (stop() sends it SIGTERM).
        try WorkerProcessTests.Rig.withStopSignals(blocked: false) { try process.run() }
        // The first line is `PORT n`.
        var line = Data()
        let handle = out.fileHandleForReading
        while true {
            let byte = handle.readData(ofLength: 1)
            if byte.isEmpty || byte == Data("\n".utf8) { break }
            line.append(byte)
        }
        let text = String(decoding: line, as: UTF8.self)
        guard text.hasPrefix("PORT "), let bound = Int(text.dropFirst(5)) else {
            process.terminate()
            throw BGQError.failure("\(script) did not start: '\(text)' \((try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "")")
        }
        return (process, bound)
    }

    var url: String { "http://127.0.0.1:\(port)" }

    /// SIGKILL (a crash), and wait until it is gone.
    func kill() {
        if process.isRunning { Foundation.kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    /// Starts it again on the same port (with the same arguments, e.g. its state file).
    func restart() throws {
        kill()
        // The old socket may hold the port for a moment after the kill: retry the bind until a deadline.
        var lastError: Error?
        let started = eventually(timeout: 5, interval: 0.1) {
            do {
                (process, port) = try Self.launch(script, arguments, port: port, stderrPath: stderrPath)
                return true
            } catch {
                lastError = error
                return false
            }
        }
        if !started { throw lastError ?? BGQError.failure("cannot restart \(script)") }
    }

    func stop() {
        if process.isRunning { process.terminate() }
        if !eventually(timeout: 5, { !process.isRunning }) { Foundation.kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    deinit { stop() }

    /// Every request the server received, oldest first.
    func log() throws -> [JSONValue] {
        try request("GET", "/_test/log")?.array ?? []
    }

    /// The requests whose method and path match (`*` in the pattern matches one path segment).
    func requests(_ method: String, _ pattern: String) throws -> [JSONValue] {
        try log().filter { entry in
            guard entry["method"]?.string == method, let path = entry["path"]?.string else { return false }
            return Self.matches(path: path, pattern: pattern)
        }
    }

    static func matches(path: String, pattern: String) -> Bool {
        let pathParts = path.split(separator: "?").first.map { $0.split(separator: "/") } ?? []
        let patternParts = pattern.split(separator: "/")
        guard pathParts.count == patternParts.count else { return false }
        return zip(pathParts, patternParts).allSatisfy { $1 == "*" || $0 == $1 }
    }

    /// A plain HTTP call to the server (for the test's own setup and checks).
    @discardableResult
    func request(_ method: String, _ path: String, body: JSONValue? = nil, headers: [String: String] = [:]) throws -> JSONValue? {
        var allHeaders = ["content-type": "application/json"]
        for (key, value) in headers { allHeaders[key] = value }
        let request = HTTPRequest(method: method, url: URL(string: url + path)!, headers: allHeaders, body: body?.data, timeoutSeconds: 10)
        let client = HTTPClient()
        defer { client.shutdown() }
        switch client.send(request) {
        case .success(let response): return JSONValue.parse(data: response.body)
        case .failure(let error): throw BGQError.failure("\(method) \(path) on \(script): \(error)")
        }
    }

    var stderr: String { (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "" }
}
