import BGQCore
import BGQSystem
import Foundation

/// Keeps disk use bounded: removes the run folders (stdout, stderr, exit status) of tasks that ended
/// longer than `run_retention_ms` ago. By then the task's result, its error with the last stderr lines
/// and its messages are in the database, which is all `bgq show` reads. Without this, 50,000 shell
/// tasks left 18,449 folders and 289 MB behind. Workers run it at each maintenance pass; `bgq prune`
/// runs it too.
public struct RunFolderCleaner {
    let store: any QueueStore
    let runsDirectory: String
    /// Most folders removed per pass, so one pass never holds up a worker's loop for long.
    var batchSize = 500

    public init(store: any QueueStore, runsDirectory: String) {
        self.store = store
        self.runsDirectory = runsDirectory
    }

    /// Removes the folders of tasks that finished before `now - retentionMs`; returns how many tasks' folders went.
    @discardableResult
    public func removeExpired(now: Instant, retentionMs: Int64, passes: Int = 1) throws -> Int {
        let cutoff = Instant(milliseconds: now.milliseconds - retentionMs + (retentionMs == 0 ? 1 : 0))
        var cleaned = 0
        for _ in 0..<passes {
            let tasks = try store.tasksWithRunFolders(finishedBefore: cutoff, limit: batchSize)
            for task in tasks { RunFolders.remove(runsDirectory: runsDirectory, taskID: task.taskID, attempts: task.attempt) }
            try store.forgetRunFolders(taskIDs: tasks.map(\.taskID))
            cleaned += tasks.count
            if tasks.count < batchSize { break }
        }
        return cleaned
    }
}
