import BGQCore
import BGQSystem
import Foundation

/// Runs an agent CLI as a subprocess: the embedded default backend.
///
/// Each run gets a private directory beside the database (`<db>.runs/<task>.<attempt>/`) holding
/// `stdout`, `stderr`, the prompt when it goes on stdin, and `exit` (written by a small `sh` wrapper
/// when the agent ends, so that a worker that adopts the session after a crash still learns how it
/// ended). The agent gets its arguments as an argv array: the wrapper runs it as `"$@"`, so no
/// prompt or model ever reaches a shell as code (the `shell` preset's prompt is its command by design).
public final class ExecBackend: SessionBackend {
    let environment: [String: String]
    /// Exits reaped by the worker, by pid.
    var reapedExits: [Int32: ChildExit] = [:]
    /// Most bytes read from one log per poll.
    let maxReadPerPoll = 4 << 20
    /// Most bytes of stdout kept as a plain-text result.
    let maxPlainResult = 1 << 20

    static let wrapper = #"""
        echo $$ > "$BGQ_PID_FILE"
        if [ -n "$BGQ_CWD" ]; then cd -- "$BGQ_CWD" || { echo 127 > "$BGQ_EXIT_FILE"; exit 127; }; fi
        "$@"; s=$?; echo "$s" > "$BGQ_EXIT_FILE"; exit "$s"
        """#

    public init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.environment = environment
    }

    public func start(_ request: StartRequest) throws -> SessionStart {
        let task = request.task
        let directory = RunFolders.directory(runsDirectory: request.runsDirectory, task: task)
        try PrivateFiles.makeDirectory(request.runsDirectory)
        try PrivateFiles.makeDirectory(directory)
        let agent = request.agent
        var executable = agent.executable
        if request.preset.name != "shell" {
            let wanted = agent.executable ?? request.preset.defaultExecutable
            guard !wanted.isEmpty else {
                throw BGQError.failure("agent '\(agent.name)' has no executable: set one with `bgq agents add \(agent.name) --executable PATH`")
            }
            guard let found = ProcessSupport.resolveExecutable(wanted, path: environment["PATH"]) else {
                throw BGQError.failure("agent '\(agent.name)' needs the program '\(wanted)', which is not installed or not on PATH: install it, or point the agent at it with `bgq agents add \(agent.name) --preset \(agent.preset) --executable PATH`")
            }
            executable = found
        }
        let onStdin = agent.promptVia == .stdin && request.preset.name != "shell"
        var stdinPath: String?
        if onStdin {
            let path = directory + "/prompt"
            try PrivateFiles.createFile(path)
            try Data(task.prompt.utf8).write(to: URL(fileURLWithPath: path))
            stdinPath = path
        }
        let command = request.preset.arguments(executable: executable, prompt: task.prompt, promptOnStdin: onStdin, model: request.model,
                                               resumeID: request.resumeExternalID, agentName: agent.name, extraArgs: agent.extraArgs)
        var env = environment
        for (key, value) in agent.environment { env[key] = value }
        env["BGQ_TASK_ID"] = task.id
        env["BGQ_SESSION_ID"] = request.sessionID
        env["BGQ_ATTEMPT"] = String(task.attempt)
        env["BGQ_EXIT_FILE"] = directory + "/exit"
        env["BGQ_PID_FILE"] = directory + "/pid"
        env["BGQ_CWD"] = agent.workingDirectory ?? ""
        let stdoutPath = directory + "/stdout", stderrPath = directory + "/stderr"
        // Every file of the run is created private before the agent starts; the wrapper's `>` keeps the mode.
        for path in [stdoutPath, stderrPath, directory + "/pid", directory + "/exit"] { try PrivateFiles.createFile(path) }
        let pid = try ProcessSupport.spawn(arguments: ["/bin/sh", "-c", Self.wrapper, "bgq-agent"] + command, environment: env,
                                           stdinPath: stdinPath, stdoutPath: stdoutPath, stderrPath: stderrPath)
        var run = TaskRecord.RunHandle()
        run.host = request.host
        run.pid = pid
        run.pidStart = ProcessSupport.stat(pid: pid)?.start
        run.directory = directory
        return SessionStart(sessionID: request.sessionID, backend: "exec", externalID: request.resumeExternalID, run: run)
    }

    public func childExited(pid: Int32, exit: ChildExit) {
        // Bounded: most exits are read at once by the session's next poll; the rest are never asked for.
        if reapedExits.count >= 10_000 { reapedExits.removeAll() }
        reapedExits[pid] = exit
    }

    /// An agent whose start was never recorded is found by its environment or its exit file; while only
    /// its folder exists, it may be starting right now.
    public func unrecordedStart(_ task: TaskRecord, runsDirectory: String, host: String) -> UnrecordedStart {
        guard task.run.pid == nil && task.run.directory == nil else { return .recorded }
        if let run = findUnrecordedSession(task, runsDirectory: runsDirectory, host: host) { return .found(run) }
        return mayHaveStarted(task, runsDirectory: runsDirectory) ? .mayBeStarting : .notStarted
    }

    /// Whether the worker got as far as preparing this attempt's files (so it may have started the agent).
    func mayHaveStarted(_ task: TaskRecord, runsDirectory: String) -> Bool {
        FileManager.default.fileExists(atPath: RunFolders.directory(runsDirectory: runsDirectory, task: task))
    }

    /// A session that was started but never recorded (its worker died between spawning the agent and
    /// writing the start): found by the task id and attempt in the agent's environment, or by the exit
    /// file it left. Nil when nothing was started, so the task can safely run again.
    func findUnrecordedSession(_ task: TaskRecord, runsDirectory: String, host: String) -> TaskRecord.RunHandle? {
        let directory = RunFolders.directory(runsDirectory: runsDirectory, task: task)
        var run = TaskRecord.RunHandle()
        run.host = host
        run.directory = directory
        let wanted = ["BGQ_TASK_ID=\(task.id)", "BGQ_ATTEMPT=\(task.attempt)"]
        func isTheAgent(_ pid: Int32) -> Bool {
            guard let environ = FileManager.default.contents(atPath: "/proc/\(pid)/environ") else { return false }
            let variables = Set(environ.split(separator: 0).map { String(decoding: $0, as: UTF8.self) })
            return wanted.allSatisfy(variables.contains)
        }
        // The wrapper writes its pid first thing; the /proc scan covers the instant before it did.
        let fromFile = (try? String(contentsOfFile: directory + "/pid", encoding: .utf8)).flatMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        let candidates = (fromFile.map { [$0] } ?? []) + ProcessSupport.processIDs().filter { getpgid($0) == $0 }
        for pid in candidates where ProcessSupport.isRunning(pid: pid, start: nil) && isTheAgent(pid) {
            run.pid = pid
            run.pidStart = ProcessSupport.stat(pid: pid)?.start
            return run
        }
        return readExitFile(run) != nil ? run : nil
    }

    /// The process's status: running, or ended with the code the wrapper (or waitpid) recorded.
    func status(_ session: ActiveSession) -> SessionStatus {
        let status = endedStatus(session)
        // The wrapper writes the exit file last: when it could not (it is empty) and the disk is full, the
        // agent's output was cut short too. Say so, rather than report an empty or partial result.
        if case .ended(let code, _) = status, readExitFile(session.task.run) == nil,
           let directory = session.task.run.directory, let note = Self.diskFullNote(directory) {
            return .ended(exitCode: code == 0 ? nil : code, detail: note + (code == 0 ? " (the agent exited 0)" : ""))
        }
        return status
    }

    /// The text for a run whose folder's file system is full (less than 64 KB left to this user), or nil.
    static func diskFullNote(_ directory: String) -> String? {
        var info = statvfs()
        guard statvfs(directory, &info) == 0 else { return nil }
        let blocks = geteuid() == 0 ? UInt64(info.f_bfree) : UInt64(info.f_bavail)
        guard blocks * UInt64(info.f_frsize) < 64 * 1024 else { return nil }
        return "the disk holding \(directory) is full, so the agent's output and exit status could not be written: free some space and run the task again"
    }

    func endedStatus(_ session: ActiveSession) -> SessionStatus {
        let run = session.task.run
        if let exit = session.exitStatus {
            switch exit {
            case .exited(let code): return .ended(exitCode: code, detail: nil)
            case .signaled(let signal): return .ended(exitCode: nil, detail: "killed by signal \(signal)")
            }
        }
        guard let pid = run.pid else {
            // Found by its exit file after its worker died unrecorded: it ran and ended.
            if let code = readExitFile(run) { return .ended(exitCode: code, detail: nil) }
            return .ended(exitCode: nil, detail: "the agent process was never started")
        }
        if ProcessSupport.isRunning(pid: pid, start: run.pidStart) { return .busy }
        if let code = readExitFile(run) { return .ended(exitCode: code, detail: nil) }
        if let exit = reapedExits[pid] {
            session.exitStatus = exit
            return endedStatus(session)
        }
        return .ended(exitCode: nil, detail: "the agent process disappeared without an exit status")
    }

    /// When the agent ended, from its exit file's time, if it has ended: for a session adopted after it
    /// ended, so that the wait for adoption is not counted as run time.
    public func runEndedAt(_ task: TaskRecord) -> Instant? {
        guard readExitFile(task.run) != nil, let directory = task.run.directory,
              let date = (try? FileManager.default.attributesOfItem(atPath: directory + "/exit"))?[.modificationDate] as? Date
        else { return nil }
        return Instant(milliseconds: Int64((date.timeIntervalSince1970 * 1000).rounded()))
    }

    func readExitFile(_ run: TaskRecord.RunHandle) -> Int32? {
        guard let directory = run.directory,
              let text = try? String(contentsOfFile: directory + "/exit", encoding: .utf8) else { return nil }
        return Int32(text.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    public func poll(_ session: ActiveSession) -> PollResult {
        // Status first, then output: a process that ended has written all of its output.
        let status = status(session)
        guard let directory = session.task.run.directory else {
            return PollResult(status: status, newMessages: [], madeProgress: false)
        }
        let (lines, newOffset) = readLines(path: directory + "/stdout", from: session.logOffset, final: isEnded(status))
        guard newOffset != session.logOffset else { return PollResult(status: status, newMessages: [], madeProgress: false) }
        session.logOffset = newOffset
        let now = SystemClock().now()
        var messages: [SessionMessage] = []
        if session.preset.outputFormat == .plainText {
            // One message per poll for plain output (a chatty job must not write a row per line).
            let chunk = lines.joined(separator: "\n")
            if !chunk.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
                messages = session.transcript.apply([.message(role: .assistant, kind: .output, tool: nil, text: OutputParser.clip(chunk))], at: now)
            }
        } else {
            for line in lines {
                messages += session.transcript.apply(OutputParser.events(format: session.preset.outputFormat, line: line), at: now)
            }
        }
        return PollResult(status: status, newMessages: messages, madeProgress: true)
    }

    func isEnded(_ status: SessionStatus) -> Bool {
        if case .ended = status { return true }
        return false
    }

    /// Complete lines from `offset`, and the new offset. While the process runs, a trailing partial line
    /// waits for the next poll; once it ended (`final`), everything left is read, the partial line too.
    func readLines(path: String, from offset: Int64, final: Bool) -> ([String], Int64) {
        guard let handle = FileHandle(forReadingAtPath: path) else { return ([], offset) }
        defer { try? handle.close() }
        guard (try? handle.seek(toOffset: UInt64(offset))) != nil else { return ([], offset) }
        let limit = final ? 64 << 20 : maxReadPerPoll
        guard let data = try? handle.read(upToCount: limit), !data.isEmpty else { return ([], offset) }
        var usable = data[...]
        if !final || data.count == limit {
            guard let lastNewline = data.lastIndex(of: UInt8(ascii: "\n")) else {
                // A single line longer than the read limit: take it as it is rather than stall.
                return data.count == limit ? ([String(decoding: data, as: UTF8.self)], offset + Int64(data.count)) : ([], offset)
            }
            usable = data[data.startIndex...lastNewline]
        }
        var lines = String(decoding: usable, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if lines.last == "" { lines.removeLast() }
        return (lines, offset + Int64(usable.count))
    }

    public func finalResult(_ session: ActiveSession) -> (text: String, isError: Bool)? {
        guard let directory = session.task.run.directory else { return nil }
        if session.preset.outputFormat == .plainText {
            let path = directory + "/stdout"
            guard let handle = FileHandle(forReadingAtPath: path) else { return ("", false) }
            defer { try? handle.close() }
            let size = (try? handle.seekToEnd()) ?? 0
            let start = size > UInt64(maxPlainResult) ? size - UInt64(maxPlainResult) : 0
            try? handle.seek(toOffset: start)
            let data = (try? handle.readToEnd()) ?? Data()
            var text = String(decoding: data, as: UTF8.self)
            if start > 0 { text = "[… first \(start) bytes omitted; whole output in \(path)]\n" + text }
            while text.hasSuffix("\n") { text.removeLast() }
            return (text, false)
        }
        var transcript = session.transcript
        if !session.transcriptIsWhole {
            // Adopted mid-run: read the whole output once to find the answer.
            transcript = AgentTranscript()
            let (lines, _) = readLines(path: directory + "/stdout", from: 0, final: true)
            for line in lines { _ = transcript.apply(OutputParser.events(format: session.preset.outputFormat, line: line), at: SystemClock().now()) }
        }
        if let result = transcript.result { return result }
        let text = transcript.assistantText.joined(separator: "\n")
        return text.isEmpty ? nil : (text, false)
    }

    public func failureDetail(_ session: ActiveSession) -> String? {
        session.task.run.directory.flatMap(Self.stderrTail)
    }

    /// The last lines of a run's stderr file, if it has any.
    static func stderrTail(directory: String) -> String? {
        let path = directory + "/stderr"
        guard let handle = FileHandle(forReadingAtPath: path) else { return nil }
        defer { try? handle.close() }
        let size = (try? handle.seekToEnd()) ?? 0
        try? handle.seek(toOffset: size > 4096 ? size - 4096 : 0)
        let text = String(decoding: (try? handle.readToEnd()) ?? Data(), as: UTF8.self)
        let lines = text.split(separator: "\n").suffix(10).joined(separator: "\n")
        return lines.isEmpty ? nil : lines
    }

    public func abort(_ task: TaskRecord, agent: AgentDefinition?) {
        guard let pid = task.run.pid, ProcessSupport.isRunning(pid: pid, start: task.run.pidStart) else { return }
        ProcessSupport.signalGroup(pid, SIGINT)
    }

    /// An agent may ignore SIGINT: while its process is there, the abort goes on to SIGTERM and SIGKILL.
    public func needsEscalation(_ task: TaskRecord) -> Bool {
        guard let pid = task.run.pid else { return false }
        return ProcessSupport.isRunning(pid: pid, start: task.run.pidStart)
    }

    /// Escalation step of an abort: SIGTERM, then SIGKILL, to the group.
    public func escalateAbort(_ task: TaskRecord, signal: Int32) {
        guard let pid = task.run.pid, ProcessSupport.isRunning(pid: pid, start: task.run.pidStart) else { return }
        ProcessSupport.signalGroup(pid, signal)
    }

    public func lastLog(_ task: TaskRecord) -> RunLog? {
        task.run.directory.map { RunLog(path: $0 + "/stderr", tail: Self.stderrTail(directory: $0)) }
    }

    public func adoptionCheck(_ task: TaskRecord, host: String) -> AdoptionCheck {
        guard task.run.pid != nil || task.run.directory != nil else { return .gone }
        guard task.run.host == host else { return .unknown }
        if let pid = task.run.pid, ProcessSupport.isRunning(pid: pid, start: task.run.pidStart) { return .adoptable }
        return readExitFile(task.run) != nil ? .adoptable : .gone
    }
}
