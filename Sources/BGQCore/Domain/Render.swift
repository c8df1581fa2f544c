import Foundation

/// Texts printed by the commands, following the original's output (../shared/reference/upstream.md).
///
/// Every piece of user-controlled text (descriptions, prompts, results, errors, agent names, reasons)
/// goes through `Render.safe` before it reaches a terminal; only `--json` output carries it raw.
package enum Render {
    // MARK: - Terminal safety

    /// `text` with everything a terminal would act on shown as an escape instead: ESC as `\e`, CR as
    /// `\r`, other C0 controls, DEL and C1 controls as `\xNN` / `\u{NNNN}`, and bidirectional overrides
    /// and isolates (which reorder what follows, "Trojan Source") as `\u{202E}`. A task's description
    /// could otherwise recolour, retitle or clear the terminal of whoever runs `bgq list`.
    /// Newlines stay newlines when `keepNewlines` (multi-line results and prompts in `show`); tabs stay.
    package static func safe(_ text: String, keepNewlines: Bool = false) -> String {
        // Fast path: printable ASCII (and tabs, kept newlines) without any byte that could start an escape.
        if !text.utf8.contains(where: { $0 < 0x20 && !($0 == 0x09 || ($0 == 0x0A && keepNewlines)) || $0 == 0x7F || $0 >= 0xC2 }) {
            return text
        }
        var out = ""
        out.reserveCapacity(text.utf8.count + 8)
        for scalar in text.unicodeScalars {
            let value = scalar.value
            switch value {
            case 0x0A where keepNewlines, 0x09: out.unicodeScalars.append(scalar)
            case 0x1B: out += "\\e"
            case 0x0D: out += "\\r"
            case 0x0A: out += "\\n"
            case 0x00..<0x20, 0x7F: out += "\\x" + hex(value, width: 2)
            case 0x80..<0xA0, 0x061C, 0x200E, 0x200F, 0x202A...0x202E, 0x2066...0x2069:
                out += "\\u{" + hex(value, width: 4) + "}"
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    private static func hex(_ value: UInt32, width: Int) -> String {
        let digits = String(value, radix: 16, uppercase: value > 0x7F)
        return String(repeating: "0", count: max(0, width - digits.count)) + digits
    }

    /// The original's `Task not found: X`, saying why when X was ambiguous or could not be an id at all.
    package static func taskNotFound(_ typed: String, _ error: Error) -> String {
        switch error as? BGQError {
        case .notFound(let text)? where Identifier.taskPrefix(from: typed) == nil: return text
        case .usage(let text)?: return "Task not found: \(typed) (\(text))"
        default: return "Task not found: \(typed)"
        }
    }

    // MARK: - JSON (raw: a program reads it)

    package static func taskJSON(_ task: TaskRecord) -> [String: Any] {
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

    package static func json(_ value: Any) -> String {
        guard let data = try? JSONSerialization.data(withJSONObject: value, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]) else {
            return "null"
        }
        return String(decoding: data, as: UTF8.self)
    }

    package static func jsonLine(_ value: Any) -> String {
        guard let data = try? JSONSerialization.data(withJSONObject: value, options: [.sortedKeys, .withoutEscapingSlashes]) else { return "null" }
        return String(decoding: data, as: UTF8.self)
    }

    /// The launch block of `delegate_task`, for one enqueued task.
    package static func launched(_ task: TaskRecord) -> String {
        """
        Background task launched.

        Task ID: \(task.id)
        Session ID: \(task.sessionID ?? "(pending)")
        Description: \(safe(task.description))
        Agent: \(safe(task.agent))
        Model: \(safe(task.model ?? "(agent default)"))
        Status: \(task.status.rawValue)

        A bgq worker runs it when a slot is free. Use `bgq show \(task.id)` to check, or `bgq show \(task.id) --block` to wait.
        """
    }

    package static func duration(_ task: TaskRecord, now: Instant) -> (label: String, value: String) {
        switch task.status {
        case .pending: return ("Queued for", formatDuration(milliseconds: now - task.createdAt))
        case .running: return ("Duration", formatDuration(milliseconds: now - (task.startedAt ?? task.createdAt)))
        default: return ("Duration", finishedDuration(task))
        }
    }

    /// A finished task's run time; when its session ended while its worker was dead, the wait until
    /// another worker adopted it is shown apart: `12s (+40s waiting for adoption)`.
    static func finishedDuration(_ task: TaskRecord) -> String {
        let total = (task.finishedAt ?? task.createdAt) - (task.startedAt ?? task.createdAt)
        guard let run = task.runMs, total - run >= 1000 else { return formatDuration(milliseconds: total) }
        return "\(formatDuration(milliseconds: run)) (+\(formatDuration(milliseconds: total - run)) waiting for adoption)"
    }

    /// The result block for a completed task.
    package static func result(_ task: TaskRecord, now: Instant) -> String {
        """
        Task Result

        Task ID: \(task.id)
        Description: \(safe(task.description))
        Duration: \(duration(task, now: now).value)
        Session ID: \(task.sessionID ?? "(none)")

        ---

        \(safe(task.result ?? "", keepNewlines: true))
        """
    }

    /// One cell of a Markdown table: on one line, its pipes escaped, safe for a terminal.
    package static func cell(_ text: String) -> String {
        safe(text.replacingOccurrences(of: "|", with: "\\|").replacingOccurrences(of: "\n", with: " "))
    }

    /// The status block for a task that is not completed.
    package static func status(_ task: TaskRecord, lastMessage: String?, now: Instant) -> String {
        let (label, value) = duration(task, now: now)
        var rows: [(String, String)] = [
            ("Task ID", "`\(task.id)`"), ("Description", cell(task.description)), ("Agent", cell(task.agent)),
            ("Model", cell(task.model ?? "(agent default)")), ("Status", "**\(task.status.rawValue)**"), (label, value),
            ("Session ID", task.sessionID.map { "`\($0)`" } ?? "(pending)"), ("Last tool", cell(task.progress.lastTool ?? "-")),
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
        text += "\n## Original Prompt\n\n\(safe(prompt, keepNewlines: true))\n"
        text += "\n## Last Message\n\n\(safe(lastMessage ?? task.progress.lastMessage ?? task.error ?? "(no message yet)", keepNewlines: true))\n"
        return text
    }

    /// A plain table with left-aligned columns; every cell is made safe for a terminal.
    package static func table(_ header: [String], _ rows: [[String]]) -> String {
        let rows = rows.map { $0.map { safe($0) } }
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

    package static func age(_ from: Instant, now: Instant) -> String { formatDuration(milliseconds: now - from) + " ago" }

    package static func truncate(_ text: String, _ count: Int) -> String {
        let oneLine = text.utf8.contains(0x0A) ? String(text.map { $0 == "\n" ? " " : $0 }) : text
        // Byte count first: short ASCII text (the common case) needs no grapheme counting.
        if oneLine.utf8.count <= count { return oneLine }
        return oneLine.count <= count ? oneLine : String(oneLine.prefix(count - 1)) + "…"
    }
}
