import BGQCore
import BGQSystem
import Foundation

/// Runs completion hooks (`bgq enqueue --on-complete`): claims each pending one once, starts it, and
/// records how it ended; a hook that runs too long is killed.
final class HookRunner {
    let context: WorkerContext
    /// The hooks this worker runs, by pid.
    var running: [Int32: (hook: HookRun, deadline: Int64)] = [:]

    init(context: WorkerContext) { self.context = context }

    static let hookTimeoutMs: Int64 = 300_000
    static let maxRunningHooks = 8

    /// Claims pending completion hooks (each at most once) and starts them: `/bin/sh -c COMMAND`, in its
    /// own process group, with the task as JSON on stdin and its output in the runs directory.
    func startPending() throws {
        let room = Self.maxRunningHooks - running.count
        guard room > 0 else { return }
        for hook in try context.store.claimHooks(workerID: context.workerID, limit: room) {
            do {
                let directory = context.runsDirectory + "/hooks"
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
                let pid = try ProcessSupport.spawn(arguments: ["/bin/sh", "-c", hook.command], environment: environment, stdinPath: input,
                                                   stdoutPath: "\(directory)/\(hook.id).out", stderrPath: "\(directory)/\(hook.id).err")
                _ = try context.store.recordHookStarted(hook, pid: pid, workerID: context.workerID)
                running[pid] = (hook, context.monotonic + Self.hookTimeoutMs)
                context.log.event("hook", task: hook.taskID, "completion hook started (pid \(pid)): \(Render.truncate(hook.command, 80))")
            } catch {
                _ = try context.store.finishHook(hook, end: HookEnd(exitCode: nil, error: "could not start the hook: \(error)"), workerID: context.workerID)
                context.log.event("hook", task: hook.taskID, "completion hook could not start: \(error)")
            }
        }
    }

    func finish(_ hook: HookRun, exit: ChildExit) {
        let directory = context.runsDirectory + "/hooks"
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
        do {
            _ = try context.store.finishHook(hook, end: HookEnd(exitCode: code, error: error), workerID: context.workerID)
            // Its outcome (exit code, last stderr lines) is in the database now: the files would only pile up.
            for suffix in ["json", "out", "err"] { try? FileManager.default.removeItem(atPath: "\(directory)/\(hook.id).\(suffix)") }
            context.log.event("hook", task: hook.taskID, code == 0 ? "completion hook done" : "completion hook failed (not retried): \(error ?? "")")
        } catch {
            context.log.event("warning", task: hook.taskID, "could not record the hook's end: \(error)")
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
