import BGQCore
import BGQSystem
import Foundation

/// Runs completion hooks (`bgq enqueue --on-complete`): claims each pending one once, starts it, and
/// records how it ended; a hook that runs too long is killed.
///
/// A database error never strands a hook: claimed hooks wait in `toStart` and start one at a time, and
/// an end that could not be recorded waits in `unrecordedEnds`; both are tried again at the next tick
/// (before, a locked database left the rest of a claimed batch, or a finished hook, `running` with no
/// process until the worker died).
final class HookRunner {
    let context: WorkerContext
    /// The hooks this worker runs, by pid.
    var running: [Int32: (hook: HookRun, deadline: Int64)] = [:]
    /// Claimed and not started yet.
    private(set) var toStart: [HookRun] = []
    /// Ended, but the end is not in the database yet: by hook id.
    private(set) var unrecordedEnds: [Int64: (hook: HookRun, end: HookEnd)] = [:]

    static let hookTimeoutMs: Int64 = 300_000
    static let maxRunningHooks = 8

    init(context: WorkerContext) { self.context = context }

    var directory: String { context.runsDirectory + "/hooks" }

    /// Whether a hook still needs this worker (running, waiting to start, or its end to be recorded).
    var isBusy: Bool { !running.isEmpty || !toStart.isEmpty || !unrecordedEnds.isEmpty }

    /// Records ends that could not be recorded before, then claims pending completion hooks (each at
    /// most once) and starts them: `/bin/sh -c COMMAND`, in its own process group, with the task as JSON
    /// on stdin and its output in the runs directory.
    func startPending() throws {
        try recordEnds()
        let room = Self.maxRunningHooks - running.count - toStart.count
        if room > 0 { toStart += try context.store.claimHooks(workerID: context.workerID, limit: room) }
        while let hook = toStart.first {
            let pid = try spawn(hook)
            // Out of the queue before the next write can fail: a started hook is never started twice.
            toStart.removeFirst()
            guard let pid else { continue }
            running[pid] = (hook, context.monotonic + Self.hookTimeoutMs)
            context.log.event("hook", task: hook.taskID, "completion hook started (pid \(pid)): \(Render.truncate(hook.command, 80))")
            _ = try context.store.recordHookStarted(hook, pid: pid, workerID: context.workerID)
        }
        try recordEnds()
    }

    /// Starts one hook's process; nil when it cannot start (its failure waits in `unrecordedEnds`).
    /// Throws, having started nothing, only when the database cannot be read.
    func spawn(_ hook: HookRun) throws -> Int32? {
        do {
            try PrivateFiles.makeDirectory(context.runsDirectory)
            try PrivateFiles.makeDirectory(directory)
            let input = "\(directory)/\(hook.id).json"
            try PrivateFiles.createFile(input)
            let task = try context.store.requireTask(id: hook.taskID)
            // One line with its newline: `cat >> done.jsonl` as the hook makes valid JSONL.
            try Data((Render.jsonLine(Render.taskJSON(task)) + "\n").utf8).write(to: URL(fileURLWithPath: input))
            var environment = ProcessInfo.processInfo.environment
            environment["BGQ_TASK_ID"] = task.id
            environment["BGQ_TASK_STATUS"] = task.status.rawValue
            return try ProcessSupport.spawn(arguments: ["/bin/sh", "-c", hook.command], environment: environment, stdinPath: input,
                                            stdoutPath: "\(directory)/\(hook.id).out", stderrPath: "\(directory)/\(hook.id).err")
        } catch BGQError.database(let problem) {
            throw BGQError.database(problem)
        } catch {
            unrecordedEnds[hook.id] = (hook, HookEnd(exitCode: nil, error: "could not start the hook: \(error)"))
            context.log.event("hook", task: hook.taskID, "completion hook could not start: \(error)")
            return nil
        }
    }

    /// The hook's process ended: its end is recorded now, or at a later tick if the database is busy.
    func finish(_ hook: HookRun, exit: ChildExit) {
        let code: Int32?
        var error: String?
        switch exit {
        case .exited(let value): code = value
        case .signaled(let signal): code = nil; error = "killed by signal \(signal)"
        }
        if code != 0 {
            let stderr = (try? String(contentsOfFile: "\(directory)/\(hook.id).err", encoding: .utf8)) ?? ""
            let last = stderr.split(separator: "\n").suffix(3).joined(separator: "\n")
            error = [error, code.map { "exit code \($0)" }, last.isEmpty ? nil : last].compactMap { $0 }.joined(separator: ": ")
        }
        unrecordedEnds[hook.id] = (hook, HookEnd(exitCode: code, error: error))
        do {
            try recordEnds()
        } catch {
            context.log.event("warning", task: hook.taskID, "could not record the hook's end yet (tried again at the next pass): \(error)")
        }
    }

    /// Writes the ends not recorded yet, oldest hook first; stops at the first database error.
    func recordEnds() throws {
        for id in unrecordedEnds.keys.sorted() {
            guard let (hook, end) = unrecordedEnds[id] else { continue }
            let ownership = try context.store.finishHook(hook, end: end, workerID: context.workerID)
            unrecordedEnds[id] = nil
            // Its outcome (exit code, last stderr lines) is in the database now: the files would only pile up.
            for suffix in ["json", "out", "err"] { try? FileManager.default.removeItem(atPath: "\(directory)/\(hook.id).\(suffix)") }
            guard ownership == .owned else {
                context.log.event("warning", task: hook.taskID, "completion hook's end not recorded: it was recorded as lost meanwhile")
                continue
            }
            let failed = end.exitCode != 0 || end.error != nil
            context.log.event("hook", task: hook.taskID, failed ? "completion hook failed (not retried): \(end.error ?? "")" : "completion hook done")
        }
    }

    /// A hook that runs too long is killed (its process group) and recorded as failed.
    func killOverdue() {
        let now = context.monotonic
        for (pid, hook) in running where now >= hook.deadline {
            ProcessSupport.signalGroup(pid, SIGKILL)
            running[pid]?.deadline = Int64.max
            context.log.event("hook", task: hook.hook.taskID, "completion hook ran longer than \(spelledDuration(milliseconds: Self.hookTimeoutMs)): killed")
        }
    }
}
