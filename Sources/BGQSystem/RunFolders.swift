import BGQCore
import Foundation

/// Where exec sessions keep their files: one folder per task attempt, `<runs>/<task id>.<attempt>`,
/// holding the agent's stdout, stderr, pid and exit status. Shared by the exec backend (which writes
/// them), the worker (which finds unrecorded starts and cleans up) and `bgq prune`.
public enum RunFolders {
    /// Where one attempt's files live: known from the task alone, so a reaper can look there even when
    /// the worker died before it recorded the session.
    public static func directory(runsDirectory: String, task: TaskRecord) -> String {
        "\(runsDirectory)/\(task.id).\(task.attempt)"
    }

    /// Removes every attempt's run folder of a task (a retried task left one per attempt). Returns how
    /// many it removed. The database keeps what `bgq show` needs: result, error, messages.
    @discardableResult
    public static func remove(runsDirectory: String, taskID: String, attempts: Int) -> Int {
        (0...max(0, attempts)).reduce(0) { removed, attempt in
            let directory = "\(runsDirectory)/\(taskID).\(attempt)"
            return removed + ((try? FileManager.default.removeItem(atPath: directory)) != nil ? 1 : 0)
        }
    }
}
