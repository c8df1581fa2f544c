import Foundation

/// Texts printed by the commands, following the original's output (../shared/reference/upstream.md).
enum Render {
    static func taskJSON(_ task: TaskRecord) -> [String: Any] {
        var object: [String: Any] = [
            "id": task.id, "status": task.status.rawValue, "agent": task.agent, "model": task.model ?? NSNull(),
            "description": task.description, "parent": task.parentID ?? NSNull(), "session_id": task.sessionID ?? NSNull(),
            "priority": task.priority, "created_at": task.createdAt.iso8601, "started_at": task.startedAt?.iso8601 ?? NSNull(),
            "finished_at": task.finishedAt?.iso8601 ?? NSNull(), "result": task.result ?? NSNull(), "error": task.error ?? NSNull(),
            "attempt": task.attempt, "max_retries": task.maxRetries, "worker": task.workerID ?? NSNull(),
            "concurrency_key": task.concurrencyKey ?? NSNull(), "cancel_requested": task.cancelRequestedAt != nil,
            "prompt": task.prompt, "last_tool": task.progress.lastTool ?? NSNull(), "last_message": task.progress.lastMessage ?? NSNull(),
            "tool_calls": task.progress.toolCalls, "message_count": task.progress.messageCount,
        ]
        if let todos = task.progress.todos, let parsed = try? JSONSerialization.jsonObject(with: Data(todos.utf8)) {
            object["todos"] = parsed
        }
        return object
    }

    static func json(_ value: Any) -> String {
        guard let data = try? JSONSerialization.data(withJSONObject: value, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]) else {
            return "null"
        }
        return String(decoding: data, as: UTF8.self)
    }

    static func jsonLine(_ value: Any) -> String {
        guard let data = try? JSONSerialization.data(withJSONObject: value, options: [.sortedKeys, .withoutEscapingSlashes]) else { return "null" }
        return String(decoding: data, as: UTF8.self)
    }

    /// The launch block of `delegate_task`, for one enqueued task.
    static func launched(_ task: TaskRecord) -> String {
        """
        Background task launched.

        Task ID: \(task.id)
        Session ID: \(task.sessionID ?? "(pending)")
        Description: \(task.description)
        Agent: \(task.agent)
        Model: \(task.model ?? "(agent default)")
        Status: \(task.status.rawValue)

        A bgq worker runs it when a slot is free. Use `bgq show \(task.id)` to check, or `bgq show \(task.id) --block` to wait.
        """
    }

    static func duration(_ task: TaskRecord, now: Instant) -> (label: String, value: String) {
        switch task.status {
        case .pending: return ("Queued for", formatDuration(milliseconds: now - task.createdAt))
        case .running: return ("Duration", formatDuration(milliseconds: now - (task.startedAt ?? task.createdAt)))
        default: return ("Duration", formatDuration(milliseconds: (task.finishedAt ?? now) - (task.startedAt ?? task.createdAt)))
        }
    }

    /// The result block for a completed task.
    static func result(_ task: TaskRecord, now: Instant) -> String {
        """
        Task Result

        Task ID: \(task.id)
        Description: \(task.description)
        Duration: \(duration(task, now: now).value)
        Session ID: \(task.sessionID ?? "(none)")

        ---

        \(task.result ?? "")
        """
    }

    static func cell(_ text: String) -> String {
        text.replacingOccurrences(of: "|", with: "\\|").replacingOccurrences(of: "\n", with: " ")
    }

    /// The status block for a task that is not completed.
    static func status(_ task: TaskRecord, lastMessage: String?, now: Instant) -> String {
        let (label, value) = duration(task, now: now)
        var rows: [(String, String)] = [
            ("Task ID", "`\(task.id)`"), ("Description", cell(task.description)), ("Agent", task.agent),
            ("Model", task.model ?? "(agent default)"), ("Status", "**\(task.status.rawValue)**"), (label, value),
            ("Session ID", task.sessionID.map { "`\($0)`" } ?? "(pending)"), ("Last tool", task.progress.lastTool ?? "-"),
        ]
        if task.cancelRequestedAt != nil && task.status == .running { rows.append(("Cancel", "requested; the worker is aborting the session")) }
        if task.attempt > 1 || task.maxRetries > 0 { rows.append(("Attempt", "\(task.attempt) of \(task.maxRetries + 1)")) }
        if let error = task.error { rows.append(("Error", cell(error))) }
        var text = "# Task Status\n\n| Field | Value |\n|-------|-------|\n"
        text += rows.map { "| \($0.0) | \($0.1) |" }.joined(separator: "\n") + "\n"
        switch task.status {
        case .pending: text += "\n> **Queued**: Task is waiting for a concurrency slot to become available.\n"
        case .running: text += "\n> **Note**: No need to wait explicitly - `bgq show \(task.id) --block` waits, and `bgq list` shows when it completes.\n"
        case .error: text += "\n> **Failed**: The task encountered an error. Check the last message for details.\n"
        case .cancelled, .completed: break
        }
        let prompt = task.prompt.count > 500 ? String(task.prompt.prefix(500)) + "…" : task.prompt
        text += "\n## Original Prompt\n\n\(prompt)\n"
        text += "\n## Last Message\n\n\(lastMessage ?? task.progress.lastMessage ?? task.error ?? "(no message yet)")\n"
        return text
    }

    /// A plain table with left-aligned columns.
    static func table(_ header: [String], _ rows: [[String]]) -> String {
        var widths = header.map(\.count)
        for row in rows {
            for (i, cell) in row.enumerated() where i < widths.count { widths[i] = max(widths[i], cell.count) }
        }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { i, cell in
                i == cells.count - 1 ? cell : cell.padding(toLength: widths[i], withPad: " ", startingAt: 0)
            }.joined(separator: "  ")
        }
        return ([line(header)] + rows.map(line)).joined(separator: "\n")
    }

    static func age(_ from: Instant, now: Instant) -> String { formatDuration(milliseconds: now - from) + " ago" }

    static func truncate(_ text: String, _ count: Int) -> String {
        let oneLine = text.utf8.contains(0x0A) ? String(text.map { $0 == "\n" ? " " : $0 }) : text
        // Byte count first: short ASCII text (the common case) needs no grapheme counting.
        if oneLine.utf8.count <= count { return oneLine }
        return oneLine.count <= count ? oneLine : String(oneLine.prefix(count - 1)) + "…"
    }
}
