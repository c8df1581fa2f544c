import Foundation
import Testing
@testable import BGQBackends
@testable import BGQCLI
@testable import BGQCore
@testable import BGQSQLite
@testable import BGQScheduler
@testable import BGQSystem

/// A fresh temporary directory with a database path in it; removed when the test ends.
final class TempDatabase {
    let directory: String
    let path: String

    init(_ name: String = #function) {
        let base = FileManager.default.temporaryDirectory.path + "/bgq-tests"
        try? FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
        var template = Array("\(base)/t.XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        directory = made.map { String(cString: $0) } ?? "\(base)/\(UUID().uuidString)"
        path = directory + "/bgq.db"
    }

    deinit { try? FileManager.default.removeItem(atPath: directory) }

    /// A store on this database with the given clock.
    func store(clock: Clock = SystemClock()) throws -> SQLiteStore {
        try SQLiteStore(path: path, clock: clock)
    }
}

/// The result of running the built `bgq` binary.
struct CommandResult {
    var status: Int32
    var stdout: String
    var stderr: String
}

/// Runs a program and waits for it, reading its output as it runs. An empty environment value unsets the variable.
enum ForeignCommand {
    static func run(_ executable: String, _ arguments: [String], stdin: String? = nil, environment: [String: String] = [:],
                    currentDirectory: String? = nil, timeout: TimeInterval = 60) throws -> CommandResult {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        for (key, value) in environment { env[key] = value.isEmpty ? nil : value }
        process.environment = env
        if let currentDirectory { process.currentDirectoryURL = URL(fileURLWithPath: currentDirectory) }
        let out = Pipe(), err = Pipe(), input = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = input
        ignoreSIGPIPE
        try process.run()
        let group = DispatchGroup()
        nonisolated(unsafe) var outData = Data(), errData = Data()
        DispatchQueue.global().async(group: group) { outData = out.fileHandleForReading.readDataToEndOfFile() }
        DispatchQueue.global().async(group: group) { errData = err.fileHandleForReading.readDataToEndOfFile() }
        // The program may exit before reading its input (a refused database): a closed pipe is no failure here.
        if let stdin { try? input.fileHandleForWriting.write(contentsOf: Data(stdin.utf8)) }
        try? input.fileHandleForWriting.close()
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        if process.isRunning {
            process.terminate()
            Issue.record("\(executable) \(arguments.joined(separator: " ")) did not finish within \(timeout) s")
        }
        process.waitUntilExit()
        group.wait()
        return CommandResult(status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
                             stderr: String(decoding: errData, as: UTF8.self))
    }
}

/// Writing to a child that already exited must return an error, not kill the test runner.
let ignoreSIGPIPE: Void = { signal(SIGPIPE, SIG_IGN) }()

/// Runs the real `bgq` binary, as a user would.
enum BGQBinary {
    /// The built executable: `$BGQ_BIN`, else `bgq` beside the test bundle in the build directory.
    static let path: String = {
        if let explicit = ProcessInfo.processInfo.environment["BGQ_BIN"] { return explicit }
        var directory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for _ in 0..<4 {
            let candidate = directory.appendingPathComponent("bgq").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            directory = directory.deletingLastPathComponent()
        }
        return FileManager.default.currentDirectoryPath + "/.build/debug/bgq"
    }()

    /// Runs `bgq ARGS` against `db` (through BGQ_DB; an explicit BGQ_DB in `environment` wins) and waits for it.
    @discardableResult
    static func run(_ arguments: [String], db: TempDatabase?, stdin: String? = nil, environment: [String: String] = [:],
                    timeout: TimeInterval = 60) throws -> CommandResult {
        var env = environment
        if env["BGQ_DB"] == nil { env["BGQ_DB"] = db?.path ?? "" }
        return try ForeignCommand.run(path, arguments, stdin: stdin, environment: env, timeout: timeout)
    }

    /// Starts `bgq ARGS` in the background (a worker); the caller stops it.
    static func start(_ arguments: [String], db: TempDatabase, environment: [String: String] = [:], logTo logPath: String? = nil) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        env["BGQ_DB"] = db.path
        for (key, value) in environment { env[key] = value }
        process.environment = env
        process.standardOutput = FileHandle.nullDevice
        if let logPath {
            _ = FileManager.default.createFile(atPath: logPath, contents: nil)
            process.standardError = FileHandle(forWritingAtPath: logPath)
        } else {
            process.standardError = FileHandle.nullDevice
        }
        process.standardInput = FileHandle.nullDevice
        try process.run()
        return process
    }
}

/// Waits (bounded) until `condition` holds; returns whether it did. Tests assert on the outcome, never on the time taken.
@discardableResult
func eventually(timeout: TimeInterval = 30, interval: TimeInterval = 0.05, _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if try condition() { return true }
        usleep(useconds_t(interval * 1_000_000))
    }
    return try condition()
}

/// The repository's root (for Scripts/ and Migrations/).
let repositoryRoot: String = {
    var url = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { url = url.deletingLastPathComponent() }
    return url.path
}()
