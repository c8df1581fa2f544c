import Foundation
import Testing
@testable import BGQBackends
@testable import BGQCLI
@testable import BGQCore
@testable import BGQSQLite
@testable import BGQScheduler
@testable import BGQSystem

/// `bgq wait` on a real terminal: its standard output is a pseudo-terminal, and what it writes is played on a small
/// terminal emulator, so the tests see the screen a user would see. Tasks wait for a file, so every state is held until
/// the test has seen it: no assertion depends on how long anything takes.
@Suite(.serialized) struct TerminalTests {
    /// Four tasks under a limit of 2 (one fails), a worker, and `bgq wait --all` on a 100-column terminal.
    @Test func waitShowsALiveLineInPlaceThenEachNoticeAndTheSummaryOnce() throws {
        let db = TempDatabase()
        let gate = try GatedTasks(db: db, count: 4, failing: 1)
        let terminal = try PseudoTerminal(columns: 100)
        let wait = try terminal.run(["wait", "--all"], db: db)
        defer { terminal.stop(wait) }

        // Before any worker: the live line counts the tasks, and it is redrawn.
        #expect(eventually(timeout: 20) { terminal.draws.filter { $0.contains("4 pending") }.count >= 2 }, "\(terminal.output)")
        let worker = try BGQBinary.start(["worker"], db: db)
        defer { kill(worker.processIdentifier, SIGKILL); worker.waitUntilExit() }

        // Two running against the limit of 2, two pending: held until the gate opens, through several redraws.
        #expect(eventually(timeout: 20) { terminal.draws.filter { $0.contains("2 running") }.count >= 3 }, "\(terminal.output)")
        var during = terminal.screen
        // A snapshot between a draw's first and last byte would show half a line: take the next whole one.
        #expect(eventually(timeout: 20) {
            during = terminal.screen
            return during.text.contains { $0.contains("⏳") && $0.contains("model:shell 2/2") }
        }, "\(terminal.output)")
        let live = during.text.filter { $0.contains("⏳") }
        #expect(live.count == 1, "one live line, redrawn in place:\n\(during.text.joined(separator: "\n"))")
        let line = try #require(live.first)
        #expect(line.contains("2 pending") && line.contains("2 running"), "counts by status: \(line)")
        #expect(line.contains("model:shell 2/2"), "running per key against its limit: \(line)")
        #expect(line.range(of: #"\| \d+s( |$)"#, options: .regularExpression) != nil, "the elapsed time: \(line)")
        let elapsed = terminal.draws.compactMap { draw in
            draw.firstMatch(of: /\| (\d+)s/).flatMap { Int($0.1) }
        }
        #expect(elapsed == elapsed.sorted(), "the elapsed time never goes back: \(elapsed)")

        gate.open()
        #expect(eventually(timeout: 30) { !wait.isRunning }, "wait returns once every task ended")
        terminal.stop(wait)
        #expect(wait.terminationStatus == ExitStatus.failure, "one task failed")

        let output = terminal.output
        for id in gate.ids {
            #expect(output.components(separatedBy: "Task ID: \(id)\r\n").count == 2, "one notice for \(id)")
        }
        #expect(output.components(separatedBy: "[BACKGROUND TASK FAILED]").count == 2)
        #expect(output.components(separatedBy: "[ALL BACKGROUND TASKS COMPLETE]").count == 2, "the summary comes once")
        #expect(!output.contains("\u{1B}[2J") && !output.contains("\u{1B}[H"), "the user's screen is never wiped")

        let after = terminal.screen
        #expect(after.unknownEscapes.isEmpty, "escapes this emulator does not know: \(after.unknownEscapes)")
        #expect(after.text.filter { $0.contains("⏳") }.isEmpty, "no live line is left behind:\n\(after.text.joined(separator: "\n"))")
        #expect(after.text.filter { $0.contains("[ALL BACKGROUND TASKS COMPLETE]") }.count == 1)
        #expect(after.text.last(where: { !$0.isEmpty })?.hasPrefix("3 completed, 1 failed or cancelled.") == true,
                "the summary ends the output:\n\(after.text.joined(separator: "\n"))")
        #expect(after.cursorVisible && after.autowrap, "the terminal is left as it was")
    }

    /// A live line wider than a 40-column terminal must not wrap: the next redraw would leave its first row behind.
    @Test func aNarrowTerminalKeepsTheLiveLineOnOneRow() throws {
        let db = TempDatabase()
        let gate = try GatedTasks(db: db, count: 2, failing: 0)
        let terminal = try PseudoTerminal(columns: 40)
        let wait = try terminal.run(["wait", "--all"], db: db)
        defer { terminal.stop(wait) }
        let worker = try BGQBinary.start(["worker"], db: db)
        defer { kill(worker.processIdentifier, SIGKILL); worker.waitUntilExit() }

        #expect(eventually(timeout: 20) { terminal.draws.filter { $0.contains("2 running") }.count >= 3 }, "\(terminal.output)")
        let during = terminal.screen
        gate.open()
        #expect(eventually(timeout: 30) { !wait.isRunning })
        terminal.stop(wait)
        #expect(wait.terminationStatus == 0)
        let after = terminal.screen
        #expect(after.unknownEscapes.isEmpty, "escapes this emulator does not know: \(after.unknownEscapes)")
        #expect(after.text.filter { $0.contains("[ALL BACKGROUND TASKS COMPLETE]") }.count == 1)
        #expect(after.cursorVisible && after.autowrap, "the terminal is left as it was")

        let rows = during.text.filter { $0.contains("⏳") }
        #expect(rows.count == 1, "one live row while running:\n\(during.text.joined(separator: "\n"))")
        #expect(after.text.filter { $0.contains("⏳") }.isEmpty, "no live row left behind:\n\(after.text.joined(separator: "\n"))")
    }

    /// Ctrl-C while the live line is up leaves the terminal usable: cursor shown, autowrap on.
    @Test func interruptingTheWaitLeavesTheTerminalUsable() throws {
        let db = TempDatabase()
        _ = try GatedTasks(db: db, count: 1, failing: 0)
        let terminal = try PseudoTerminal(columns: 80)
        let wait = try terminal.run(["wait", "--all"], db: db)
        defer { terminal.stop(wait) }
        #expect(eventually(timeout: 20) { terminal.draws.count >= 2 }, "\(terminal.output)")
        kill(wait.processIdentifier, SIGINT)
        #expect(eventually(timeout: 20) { !wait.isRunning })
        terminal.stop(wait)
        let interrupted = (wait.terminationReason == .uncaughtSignal && wait.terminationStatus == SIGINT) || wait.terminationStatus == 130
        #expect(interrupted, "ends as interrupted: \(wait.terminationReason) \(wait.terminationStatus)")
        let screen = terminal.screen
        #expect(screen.unknownEscapes.isEmpty, "escapes this emulator does not know: \(screen.unknownEscapes)")
        #expect(screen.cursorVisible && screen.autowrap, "the terminal is left as it was")
        #expect(!terminal.output.contains("[ALL BACKGROUND TASKS COMPLETE]"))
    }
}

/// Shell tasks that wait for a file before they end, under a default limit of 2, with a fast poll.
struct GatedTasks {
    let ids: [String]
    let gatePath: String

    init(db: TempDatabase, count: Int, failing: Int) throws {
        gatePath = db.directory + "/go"
        try BGQBinary.run(["settings", "set", "poll_interval_ms", "100ms"], db: db)
        try BGQBinary.run(["limits", "set", "--default", "2"], db: db)
        var ids: [String] = []
        for index in 0..<count {
            let end = index < count - failing ? "echo done" : "exit 3"
            let prompt = "while [ ! -e '\(gatePath)' ]; do sleep 0.05; done; \(end)"
            let result = try BGQBinary.run(["enqueue", "--agent", "shell", "--description", "gated \(index)", "--json", prompt], db: db)
            let object = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
            ids.append(try #require(object?["id"] as? String, "\(result.stdout) \(result.stderr)"))
        }
        self.ids = ids
    }

    func open() { _ = FileManager.default.createFile(atPath: gatePath, contents: nil) }
}

/// A pseudo-terminal of a given size: the child's standard input, output and error are its slave side, and a thread
/// reads everything from the master side.
final class PseudoTerminal: @unchecked Sendable {
    let columns: Int
    let rows: Int
    private let master: Int32
    private let slave: FileHandle
    private let lock = NSLock()
    private var bytes = Data()
    private var stopping = false
    private var stopped = false
    private let done = DispatchSemaphore(value: 0)

    init(columns: Int, rows: Int = 24) throws {
        self.columns = columns
        self.rows = rows
        // grantpt, unlockpt and ptsname are in every libc, but Swift's Glibc module leaves them out (_XOPEN_SOURCE).
        typealias Call = @convention(c) (Int32) -> Int32
        typealias Name = @convention(c) (Int32) -> UnsafeMutablePointer<CChar>?
        let libc = dlopen(nil, RTLD_NOW)
        func function<T>(_ name: String, _ type: T.Type) -> T? { dlsym(libc, name).map { unsafeBitCast($0, to: type) } }
        guard let grant = function("grantpt", Call.self), let unlock = function("unlockpt", Call.self),
              let ptsname = function("ptsname", Name.self) else { throw POSIXError(.ENOSYS) }
        master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC)
        guard master >= 0, grant(master) == 0, unlock(master) == 0, let name = ptsname(master) else {
            throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO)
        }
        let descriptor = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC)
        guard descriptor >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        var size = winsize(ws_row: UInt16(rows), ws_col: UInt16(columns), ws_xpixel: 0, ws_ypixel: 0)
        _ = ioctl(descriptor, UInt(TIOCSWINSZ), &size)
        slave = FileHandle(fileDescriptor: descriptor, closeOnDealloc: false)
        Thread { [self] in readAll() }.start()
    }

    private func readAll() {
        var chunk = [UInt8](repeating: 0, count: 4096)
        while true {
            var ready = pollfd(fd: master, events: Int16(POLLIN), revents: 0)
            let count = poll(&ready, 1, 50)
            if count > 0 {
                let got = read(master, &chunk, chunk.count)
                if got <= 0 { break }  // EIO: no slave side open any more
                lock.withLock { bytes.append(contentsOf: chunk[0..<got]) }
            } else if count == 0 {
                if lock.withLock({ stopping }) { break }
            } else if errno != EINTR {
                break
            }
        }
        done.signal()
    }

    /// Starts `bgq ARGS` on this terminal.
    func run(_ arguments: [String], db: TempDatabase) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: BGQBinary.path)
        process.arguments = arguments
        var environment = ProcessInfo.processInfo.environment
        environment["BGQ_DB"] = db.path
        environment["TERM"] = "xterm-256color"
        process.environment = environment
        process.standardInput = slave
        process.standardOutput = slave
        process.standardError = slave
        // The child inherits this thread's signal mask, and the test runner's threads block SIGINT: a shell's child
        // would not have it blocked, so neither does this one.
        var interrupt = sigset_t(), previous = sigset_t()
        sigemptyset(&interrupt)
        sigaddset(&interrupt, SIGINT)
        pthread_sigmask(SIG_UNBLOCK, &interrupt, &previous)
        defer { pthread_sigmask(SIG_SETMASK, &previous, nil) }
        try process.run()
        return process
    }

    /// Ends `process` if it still runs, then reads what is left and closes the terminal. Idempotent.
    func stop(_ process: Process) {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        let first = lock.withLock { () -> Bool in
            defer { stopping = true }
            return !stopping
        }
        guard first else { return }
        try? slave.close()
        done.wait()
        close(master)
    }

    /// Everything written to the terminal so far (with the terminal's \n → \r\n).
    var output: String { String(decoding: lock.withLock { bytes }, as: UTF8.self) }

    /// Every live line drawn so far, as written (up to the next control character).
    var draws: [String] {
        output.components(separatedBy: "⏳").dropFirst().map { String($0.prefix { $0 != "\r" && $0 != "\n" && $0 != "\u{1B}" }) }
    }

    /// The screen (with its scrollback) as a user sees it now.
    var screen: TerminalScreen {
        var screen = TerminalScreen(columns: columns, rows: rows)
        screen.play(output)
        return screen
    }
}

/// Just enough of an xterm to see what a user sees: rows kept as scrollback, autowrap with xterm's deferred wrap,
/// \r \n \b \t, CSI A B C D E F G K J m, the ?7 (autowrap) and ?25 (cursor) modes, ESC 7 / ESC 8. Any other escape
/// is listed in `unknownEscapes`, and the tests fail on it: teach the emulator rather than guess.
struct TerminalScreen {
    let columns: Int
    let rows: Int
    private var cells: [[Character]]
    private var row = 0, column = 0
    private var wrapPending = false
    private var saved = (0, 0)
    private(set) var autowrap = true
    private(set) var cursorVisible = true
    private(set) var unknownEscapes: [String] = []
    private static let blank: Character = " ", continuation: Character = "\u{0}"

    init(columns: Int, rows: Int) {
        self.columns = columns
        self.rows = rows
        cells = [Array(repeating: Self.blank, count: columns)]
    }

    /// Each row, trailing blanks removed.
    var text: [String] {
        cells.map { line in
            var text = String(line.filter { $0 != Self.continuation })
            while text.last == " " { text.removeLast() }
            return text
        }
    }

    private var top: Int { max(0, cells.count - rows) }

    private static func width(_ scalar: Unicode.Scalar) -> Int { scalar.properties.isEmojiPresentation ? 2 : 1 }

    private mutating func lineFeed() {
        row += 1
        if row == cells.count { cells.append(Array(repeating: Self.blank, count: columns)) }
    }

    private mutating func put(_ scalar: Unicode.Scalar) {
        let width = Self.width(scalar)
        if wrapPending && autowrap { lineFeed(); column = 0 }
        wrapPending = false
        if column + width > columns {
            if autowrap { lineFeed(); column = 0 } else { column = max(0, columns - width) }
        }
        cells[row][column] = Character(scalar)
        if width == 2 { cells[row][column + 1] = Self.continuation }
        column += width
        if column >= columns { column = columns - 1; wrapPending = true }
    }

    private mutating func erase(row index: Int, from start: Int, to end: Int) {
        for position in max(0, start)..<min(columns, end) { cells[index][position] = Self.blank }
    }

    mutating func play(_ text: String) {
        var scalars = Array(text.unicodeScalars)[...]
        while let scalar = scalars.popFirst() {
            switch scalar {
            case "\r": column = 0; wrapPending = false
            case "\n": lineFeed(); wrapPending = false
            case "\u{08}": column = max(0, column - 1); wrapPending = false
            case "\t": column = min(columns - 1, (column / 8 + 1) * 8)
            case "\u{07}": break
            case "\u{1B}":
                guard let next = scalars.popFirst() else { unknownEscapes.append("ESC at the end"); return }
                switch next {
                case "7": saved = (row, column)
                case "8": (row, column) = saved; wrapPending = false
                case "[":
                    var body = ""
                    while let c = scalars.popFirst() {
                        if (0x40...0x7E).contains(c.value) { csi(body, c); break }
                        body.unicodeScalars.append(c)
                    }
                default: unknownEscapes.append("ESC \(next)")
                }
            default:
                if scalar.value < 0x20 || scalar.value == 0x7F { unknownEscapes.append(String(format: "control 0x%02X", scalar.value)) } else { put(scalar) }
            }
        }
    }

    private mutating func csi(_ body: String, _ final: Unicode.Scalar) {
        let isPrivate = body.hasPrefix("?")
        let numbers = (isPrivate ? String(body.dropFirst()) : body).split(separator: ";", omittingEmptySubsequences: false).map { Int($0) }
        let n = max(1, (numbers.first ?? nil) ?? 1), p = (numbers.first ?? nil) ?? 0
        if isPrivate {
            switch (p, final) {
            case (7, "h"): autowrap = true
            case (7, "l"): autowrap = false
            case (25, "h"): cursorVisible = true
            case (25, "l"): cursorVisible = false
            default: unknownEscapes.append("CSI \(body)\(final)")
            }
            return
        }
        if final != "m" { wrapPending = false }
        switch final {
        case "A": row = max(top, row - n)
        case "B": row = min(row + n, cells.count - 1)
        case "C": column = min(columns - 1, column + n)
        case "D": column = max(0, column - n)
        case "E": row = min(row + n, cells.count - 1); column = 0
        case "F": row = max(top, row - n); column = 0
        case "G": column = min(columns - 1, n - 1)
        case "K":
            switch p {
            case 0: erase(row: row, from: column, to: columns)
            case 1: erase(row: row, from: 0, to: column + 1)
            default: erase(row: row, from: 0, to: columns)
            }
        case "J":
            switch p {
            case 0:
                erase(row: row, from: column, to: columns)
                for index in (row + 1)..<cells.count { erase(row: index, from: 0, to: columns) }
            default: unknownEscapes.append("CSI \(body)J (wipes the screen)")
            }
        case "m": break
        default: unknownEscapes.append("CSI \(body)\(final)")
        }
    }
}
