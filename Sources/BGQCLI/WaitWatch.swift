import ArgumentParser
import BGQCore
import Foundation

extension BGQCommand {
    /// `bgq wait`: block until tasks end, with the original's notifications.
    struct Wait: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "wait",
            abstract: "Wait until tasks end, printing a notice as each ends and a summary at the end.",
            discussion: """
                Exit 0 when every task completed, 1 when any ended in error or was cancelled, 4 on timeout. On a terminal a live line shows counts by status, running per key against its limit, and the time.

                Examples:
                  bgq wait bg_1a2b bg_3c4d
                  bgq wait --parent ses_parent123 --timeout 600
                  bgq wait --all
                """)
        @OptionGroup var database: DatabaseOptions
        @Argument(help: "Task ids or unique prefixes.") var ids: [String] = []
        @Option(help: "All tasks of this parent.") var parent: String?
        @Flag(help: "Every task pending or running now.") var all = false
        @Option(parsing: .unconditional, help: "Give up after this many seconds (default: wait forever).") var timeout: Double?

        func validate() throws {
            guard !ids.isEmpty || parent != nil || all else { throw ValidationError("name task ids, or pass --parent ID or --all") }
            if let timeout { guard timeout.isFinite, timeout >= 0 else { throw ValidationError("--timeout must be a number of seconds") } }
        }

        func run() throws {
            let store = try database.openStore(create: false)
            var targets = try ids.map { try store.resolveTaskID($0) }
            if let parent { targets += try store.taskIDs(parentID: parent) }
            if all { targets += try store.activeTaskIDs(parentID: nil) }
            var seen = Set<String>()
            targets = targets.filter { seen.insert($0).inserted }
            guard !targets.isEmpty else {
                print("No task to wait for.")
                return
            }
            let live = isatty(STDOUT_FILENO) == 1
            let started = store.clock.monotonicMilliseconds()
            let deadline = timeout.map { started + Int64($0 * 1000) }
            var finished: [String: TaskRecord] = [:]
            let feed = try store.changeFeed()
            var changed = try feed.poll()
            var lastDraw: Int64?
            while true {
                if changed {
                    for id in targets where finished[id] == nil {
                        let task = try store.requireTask(id: id)
                        guard task.status.isTerminal else { continue }
                        finished[id] = task
                        lastDraw = nil  // the notice erased the live line: draw it again at once
                        let clear = live ? "\r\u{1B}[K" : ""
                        FileHandle.standardOutput.write(Data((clear + Notices.taskFinished(task, remaining: targets.count - finished.count) + "\n").utf8))
                    }
                }
                if finished.count == targets.count { break }
                let now = store.clock.monotonicMilliseconds()
                if let deadline, now >= deadline {
                    if live { FileHandle.standardOutput.write(Data("\r\u{1B}[K".utf8)) }
                    print("Timeout exceeded (\(Int((timeout ?? 0) * 1000))ms). \(targets.count - finished.count) task(s) still in progress.")
                    throw BGQError.timeout("\(targets.count - finished.count) of \(targets.count) task(s) still in progress after \(Int((timeout ?? 0) * 1000)) ms")
                }
                if live && lastDraw.map({ now - $0 >= 500 }) ?? true {
                    lastDraw = now
                    var line = Render.safe(try Self.progressLine(store, targets: targets, finished: finished, elapsedMs: now - started))
                    if let columns = Self.terminalColumns() { line = Self.fit(line, columns: columns) }
                    // One row, always: a line that wrapped would leave its first rows behind at the next "\r\e[K".
                    // It is cut to the width (read at each draw: the terminal may be resized), and autowrap is off
                    // while it is written (in the same write, so it is always turned back on) for what fit misjudges.
                    FileHandle.standardOutput.write(Data(("\r\u{1B}[K\u{1B}[?7l" + line + "\u{1B}[?7h").utf8))
                }
                // Woken by a change at once; otherwise by the next redraw of the live line or the deadline.
                let untilDraw: Int64 = live ? 500 - (store.clock.monotonicMilliseconds() - (lastDraw ?? 0)) : 1000
                let untilDeadline = deadline.map { $0 - store.clock.monotonicMilliseconds() } ?? Int64.max
                changed = try feed.wait(timeoutMs: max(1, min(untilDraw, untilDeadline, 1000)))
            }
            let tasks = targets.compactMap { finished[$0] }
            print(Notices.allFinished(tasks))
            // The summary just printed is the report (and ends the output on a terminal): exit 1, silently.
            if tasks.contains(where: { $0.status != .completed }) { throw ExitCode(ExitStatus.failure) }
        }

        /// The width of the terminal on standard output, if it says.
        static func terminalColumns() -> Int? {
            var size = winsize()
            guard ioctl(STDOUT_FILENO, UInt(TIOCGWINSZ), &size) == 0, size.ws_col > 0 else { return nil }
            return Int(size.ws_col)
        }

        /// `line` cut with "…" to fit in `columns - 1` cells (emoji count as two), so the cursor never wraps.
        static func fit(_ line: String, columns: Int) -> String {
            func cells(_ c: Character) -> Int { c.unicodeScalars.contains { $0.properties.isEmojiPresentation } ? 2 : 1 }
            let room = max(columns - 1, 2)
            guard line.reduce(0, { $0 + cells($1) }) > room else { return line }
            var used = 0, result = ""
            for c in line {
                if used + cells(c) > room - 1 { break }
                used += cells(c)
                result.append(c)
            }
            return result + "…"
        }

        static func progressLine(_ store: any QueueStore, targets: [String], finished: [String: TaskRecord], elapsedMs: Int64) throws -> String {
            var counts: [TaskStatus: Int] = [:]
            for id in targets {
                let status = try finished[id]?.status ?? store.requireTask(id: id).status
                counts[status, default: 0] += 1
            }
            let keys = try store.keyUsage().filter { $0.running > 0 }.prefix(4)
                .map { "\($0.key) \($0.running)/\($0.limit == 0 ? "∞" : String($0.limit))" }.joined(separator: ", ")
            let statusText = TaskStatus.allCases.compactMap { status in counts[status].map { "\($0) \(status.rawValue)" } }.joined(separator: ", ")
            // The time before the keys: on a narrow terminal the line is cut from the right.
            return "⏳ \(statusText) | \(formatDuration(milliseconds: elapsedMs))\(keys.isEmpty ? "" : " | running: \(keys)")"
        }
    }

    /// `bgq watch`: every transition as it happens, from the event table.
    struct Watch: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "watch",
            abstract: "Follow every state transition as it happens (Ctrl-C to stop).",
            discussion: """
                Reads the event table with a cursor: nothing is missed or shown twice, whatever the workers do. Starts at the newest event; --since 0 replays the whole history first.

                Examples:
                  bgq watch
                  bgq watch --parent ses_parent123 --json
                  bgq watch --since 1200
                """)
        @OptionGroup var database: DatabaseOptions
        @Option(help: "Only tasks of this parent.") var parent: String?
        @Option(parsing: .unconditional, help: "Start after this event id (0 = from the beginning).") var since: Int64?
        @Flag(help: "One JSON object per line.") var json = false

        func validate() throws {
            if let since, since < 0 { throw ValidationError("--since takes an event id (0 or more)") }
        }

        func run() throws {
            signal(SIGPIPE, SIG_DFL)
            let store = try database.openStore(create: false)
            var cursor = try since ?? store.latestEventID()
            let feed = try store.changeFeed()
            var changed = try feed.poll()
            while true {
                if changed {
                    while true {
                        let batch = try store.events(after: cursor, parentID: parent, limit: 500)
                        var output = ""
                        for item in batch {
                            output += (json ? Self.json(item.event, item.description) : Self.line(item.event, item.description)) + "\n"
                            cursor = item.event.id
                        }
                        // Written at once, unbuffered: a reader on a pipe sees each event as it happens.
                        if !output.isEmpty { FileHandle.standardOutput.write(Data(output.utf8)) }
                        if batch.count < 500 { break }
                    }
                }
                changed = try feed.wait(timeoutMs: 1000)
            }
        }

        static func line(_ e: TaskEvent, _ description: String) -> String {
            let from = e.from?.rawValue ?? "new"
            let who = e.workerID.map { " [\($0), attempt \(e.attempt)]" } ?? ""
            return "#\(e.id) \(e.at.iso8601) \(e.taskID) \(from) → \(e.to.rawValue)\(who) \(Render.safe(Render.truncate(description, 50)))"
                + (e.reason.map { ": \(Render.safe(Render.truncate($0, 120)))" } ?? "")
        }

        static func json(_ e: TaskEvent, _ description: String) -> String {
            Render.jsonLine(["event": e.id, "task_id": e.taskID, "description": description, "at": e.at.iso8601, "from": e.from?.rawValue ?? NSNull(),
                             "to": e.to.rawValue, "worker": e.workerID ?? NSNull(), "attempt": e.attempt, "reason": e.reason ?? NSNull()])
        }
    }
}
