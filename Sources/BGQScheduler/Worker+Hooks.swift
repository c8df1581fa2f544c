import BGQCore
import BGQSystem
import Foundation

extension Worker {
    static let hookTimeoutMs: Int64 = 300_000
    static let maxRunningHooks = 8

    /// Claims pending completion hooks (each at most once) and starts them: `/bin/sh -c COMMAND`, in its
    /// own process group, with the task as JSON on stdin and its output in the runs directory.
    func startPendingHooks() throws {
        let room = Self.maxRunningHooks - runningHooks.count
        guard room > 0 else { return }
        for hook in try store.claimHooks(workerID: workerID, limit: room) {
            do {
                let directory = runsDirectory + "/hooks"
                try PrivateFiles.makeDirectory(runsDirectory)
                try PrivateFiles.makeDirectory(directory)
                let input = "\(directory)/\(hook.id).json"
                try PrivateFiles.createFile(input)
                let task = try store.requireTask(id: hook.taskID)
                // One line with its newline: `cat >> done.jsonl` as the hook makes valid JSONL.
                try Data((Render.jsonLine(Render.taskJSON(task)) + "\n").utf8).write(to: URL(fileURLWithPath: input))
                var environment = ProcessInfo.processInfo.environment
                environment["BGQ_TASK_ID"] = task.id
                environment["BGQ_TASK_STATUS"] = task.status.rawValue
                let pid = try ProcessSupport.spawn(arguments: ["/bin/sh", "-c", hook.command], environment: environment, stdinPath: input,
                                                   stdoutPath: "\(directory)/\(hook.id).out", stderrPath: "\(directory)/\(hook.id).err")
                _ = try store.recordHookStarted(hook, pid: pid, workerID: workerID)
                runningHooks[pid] = (hook, monotonic + Self.hookTimeoutMs)
                log.event("hook", task: hook.taskID, "completion hook started (pid \(pid)): \(Render.truncate(hook.command, 80))")
            } catch {
                _ = try store.finishHook(hook, end: HookEnd(exitCode: nil, error: "could not start the hook: \(error)"), workerID: workerID)
                log.event("hook", task: hook.taskID, "completion hook could not start: \(error)")
            }
        }
    }

    func finishHook(_ hook: HookRun, exit: ChildExit) {
        let directory = runsDirectory + "/hooks"
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
            _ = try store.finishHook(hook, end: HookEnd(exitCode: code, error: error), workerID: workerID)
            // Its outcome (exit code, last stderr lines) is in the database now: the files would only pile up.
            for suffix in ["json", "out", "err"] { try? FileManager.default.removeItem(atPath: "\(directory)/\(hook.id).\(suffix)") }
            log.event("hook", task: hook.taskID, code == 0 ? "completion hook done" : "completion hook failed (not retried): \(error ?? "")")
        } catch {
            log.event("warning", task: hook.taskID, "could not record the hook's end: \(error)")
        }
    }

    /// A hook that runs too long is killed (its process group) and recorded as failed.
    func killOverdueHooks() {
        let now = monotonic
        for (pid, running) in runningHooks where now >= running.deadline {
            ProcessSupport.signalGroup(pid, SIGKILL)
            runningHooks[pid]?.deadline = Int64.max
            log.event("hook", task: running.hook.taskID, "completion hook ran longer than \(spelledDuration(milliseconds: Self.hookTimeoutMs)): killed")
        }
    }
}
