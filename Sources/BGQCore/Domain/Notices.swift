import Foundation

/// The original's notification texts: per task, and once for the whole batch. `bgq wait` prints them,
/// and the OpenCode backend sends them into the parent session.
public enum Notices {
    /// The original's per-task notification.
    public static func taskFinished(_ task: TaskRecord, remaining: Int) -> String {
        let duration = Render.finishedDuration(task)
        var text = "[BACKGROUND TASK \(task.status == .completed ? "COMPLETED" : task.status == .error ? "FAILED" : "CANCELLED")]\n"
        text += "Task ID: \(task.id)\nDescription: \(Render.safe(task.description))\nDuration: \(duration)\n"
        if let error = task.error { text += "Error: \(Render.safe(error.split(separator: "\n").first.map(String.init) ?? error))\n" }
        text += remaining == 0 ? "All tasks done.\n" : "\(remaining) task(s) still in progress.\n"
        return text
    }

    /// The original's end-of-batch notification.
    public static func allFinished(_ tasks: [TaskRecord]) -> String {
        var text = "[ALL BACKGROUND TASKS COMPLETE]\n\n| Task ID | Description | Status | Duration |\n|---------|-------------|--------|----------|\n"
        for task in tasks {
            let duration = Render.finishedDuration(task)
            text += "| `\(task.id)` | \(Render.cell(task.description)) | \(task.status.rawValue) | \(duration) |\n"
        }
        let failed = tasks.filter { $0.status != .completed }.count
        text += "\n\(tasks.count - failed) completed, \(failed) failed or cancelled. Use `bgq show <id>` for a result."
        return text
    }
}
