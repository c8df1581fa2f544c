import ArgumentParser
import BGQCore
import Foundation

extension BGQCommand {
    /// `bgq show`: a task's status, or its result once completed.
    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "show",
            abstract: "Show a task's status, or its result when it completed.",
            discussion: """
                ID may be any unique prefix of a task id (bg_1a2b or just 1a2b). With --block, waits until the task ends or --timeout passes (exit 4 on timeout).

                Examples:
                  bgq show bg_1a2b3c4d
                  bgq show 1a2b --block --timeout 300
                  bgq show 1a2b --json | jq -r .result
                """)

        @OptionGroup var database: DatabaseOptions
        @Argument(help: "The task id or a unique prefix.") var id: String
        @Flag(help: "Wait until the task ends.") var block = false
        @Option(parsing: .unconditional, help: "With --block: seconds to wait (at most 86400).") var timeout: Double = 60
        @Flag(help: "Print the task as JSON.") var json = false

        func validate() throws {
            guard timeout.isFinite, timeout >= 0, timeout <= 86_400 else {
                throw ValidationError("--timeout must be a number of seconds from 0 to 86400")
            }
        }

        func run() throws {
            let store = try database.openStore(create: false)
            let id = try store.resolveTaskID(self.id)
            var task = try store.requireTask(id: id)
            var timedOut = false
            if block && !task.status.isTerminal {
                let deadline = store.clock.monotonicMilliseconds() + Int64(timeout * 1000)
                let feed = try store.changeFeed()
                _ = try feed.poll()
                while !task.status.isTerminal {
                    let left = deadline - store.clock.monotonicMilliseconds()
                    if left <= 0 { timedOut = true; break }
                    if try feed.wait(timeoutMs: min(left, 1000)) { task = try store.requireTask(id: id) }
                }
            }
            let now = store.clock.now()
            if json {
                var object = Render.taskJSON(task)
                if timedOut { object["timed_out"] = true }
                // The agent's own id of the session (Claude Code's session_id, the OpenCode session, …).
                object["agent_session_id"] = try task.sessionID.flatMap { try store.session(id: $0)?.externalID } ?? NSNull()
                object["parent_notices"] = try store.parentNotices(taskID: id).map { notice -> [String: Any] in
                    ["kind": notice.kind.rawValue, "state": notice.state.rawValue, "attempts": notice.attempts, "error": notice.error ?? NSNull()]
                }
                object["hooks"] = try store.hooks(taskID: id).map { hook -> [String: Any] in
                    ["command": hook.command, "status": hook.status.rawValue, "exit_code": hook.exitCode ?? NSNull(), "error": hook.error ?? NSNull()]
                }
                print(Render.json(object))
            } else {
                if timedOut { print("Timeout exceeded (\(Int(timeout * 1000))ms). Task still \(task.status.rawValue).\n") }
                if task.status == .completed {
                    print(Render.result(task, now: now))
                } else {
                    let last = try store.messages(taskID: id).last(where: { $0.role == .assistant && !$0.content.isEmpty })?.content
                    print(Render.status(task, lastMessage: last, now: now))
                }
            }
            if timedOut {
                throw BGQError.timeout("task \(id) is still \(task.status.rawValue) after \(Int(timeout * 1000)) ms; wait longer with --timeout SECONDS")
            }
            if block && task.status != .completed { throw BGQError.failure("task \(id) ended \(task.status.rawValue), not completed") }
        }
    }

    /// `bgq cancel`: cancels pending tasks at once and asks workers to abort running ones.
    struct Cancel: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "cancel",
            abstract: "Cancel tasks: pending ones at once, running ones by aborting their session.",
            discussion: """
                A running task's worker aborts its session and frees its slot within one poll interval; cancel waits for that (up to --wait seconds) before printing.

                Examples:
                  bgq cancel bg_1a2b3c4d
                  bgq cancel --all
                  bgq cancel --all --parent ses_parent123
                """)

        @OptionGroup var database: DatabaseOptions
        @Argument(help: "Task ids or unique prefixes.") var ids: [String] = []
        @Flag(help: "Cancel every pending and running task (of --parent, if given).") var all = false
        @Option(help: "With --all: only the tasks of this parent.") var parent: String?
        @Option(parsing: .unconditional, help: "Seconds to wait for running tasks' workers to confirm.") var wait: Double = 5
        @Flag(help: "Print the outcome as JSON.") var json = false

        func validate() throws {
            guard wait.isFinite, wait >= 0, wait <= 3600 else { throw ValidationError("--wait must be a number of seconds from 0 to 3600") }
        }

        func run() throws {
            guard all || !ids.isEmpty else {
                throw CommandFailure(message: "[ERROR] Invalid arguments: Either provide a task id or pass --all to cancel all running tasks.", code: ExitStatus.usage)
            }
            let store = try database.openStore(create: false)
            var failures: [(message: String, code: Int32)] = []
            var targets: [String] = []
            if all {
                targets = try store.activeTaskIDs(parentID: parent)
            }
            for text in ids {
                do { targets.append(try store.resolveTaskID(text)) } catch let error as BGQError {
                    if case .notFound = error { failures.append(("[ERROR] " + Render.taskNotFound(text, error), ExitStatus.notFound)) } else { throw error }
                }
            }
            var outcomes = try store.cancel(taskIDs: targets)
            // Tasks whose session ended on its own before their owner acted on the request: not cancelled.
            var endedFirst: [TaskRecord] = []
            // Wait for the owners of running tasks to abort them (they react within a poll interval).
            let requested = outcomes.compactMap { if case .requested(let t) = $0 { t.id } else { nil } }
            if !requested.isEmpty && wait > 0 {
                let deadline = store.clock.monotonicMilliseconds() + Int64(wait * 1000)
                while store.clock.monotonicMilliseconds() < deadline {
                    let pendingIDs = try requested.filter { try store.requireTask(id: $0).status == .running }
                    if pendingIDs.isEmpty { break }
                    usleep(50_000)
                }
                outcomes = try outcomes.compactMap { outcome in
                    guard case .requested(let task) = outcome else { return outcome }
                    let now = try store.requireTask(id: task.id)
                    switch now.status {
                    case .running: return .requested(now)
                    case .cancelled: return .cancelled(now)
                    // Requeued by its owner (a retry) before it read the request, which that clears: cancel it again.
                    case .pending: return try store.cancel(taskIDs: [now.id]).first
                    case .completed, .error:
                        endedFirst.append(now)
                        return nil
                    }
                }
            }
            var rows: [TaskRecord] = []
            for outcome in outcomes {
                switch outcome {
                case .cancelled(let task), .requested(let task): rows.append(task)
                case .alreadyFinished(let task):
                    failures.append(("[ERROR] Cannot cancel task \(task.id): current status is \"\(task.status.rawValue)\".\nOnly running or pending tasks can be cancelled.",
                                     ExitStatus.failure))
                }
            }
            for task in endedFirst {
                let how = task.status == .completed ? "completed" : "failed"
                failures.append(("[ERROR] Cannot cancel task \(task.id): it \(how) before its worker could abort it", ExitStatus.failure))
            }
            if json {
                print(Render.json(["cancelled": rows.map(Render.taskJSON), "errors": failures.map(\.message)] as [String: Any]))
            } else if !rows.isEmpty {
                print(Self.render(rows))
            } else if all {
                print("No running or pending tasks to cancel.")
            }
            if !failures.isEmpty {
                throw CommandFailure(message: failures.map(\.message).joined(separator: "\n"),
                                     code: failures.allSatisfy { $0.code == ExitStatus.notFound } ? ExitStatus.notFound : ExitStatus.failure)
            }
        }

        static func render(_ tasks: [TaskRecord]) -> String {
            var text = "Cancelled \(tasks.count) background task(s):\n\n| Task ID | Description | Status | Session ID |\n|---------|-------------|--------|------------|\n"
            for task in tasks {
                let status = task.status == .running ? "cancelling (worker is aborting the session)" : task.status.rawValue
                text += "| `\(task.id)` | \(Render.cell(task.description)) | \(status) | \(task.sessionID.map { "`\($0)`" } ?? "(not started)") |\n"
            }
            let continuable = tasks.filter { $0.sessionID != nil }
            text += "\n## Continue Instructions\n\nTo continue a cancelled task, use:\nbgq enqueue --session <session_id> \"Continue: <your follow-up>\"\n"
            if !continuable.isEmpty {
                text += "\nContinuable sessions:\n" + continuable.map { "- `\($0.sessionID!)` (\(Render.cell($0.description)))" }.joined(separator: "\n") + "\n"
            }
            return text
        }
    }

    /// `bgq list`: tasks, newest first.
    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "list",
            abstract: "List tasks, newest first.",
            discussion: """
                Examples:
                  bgq list
                  bgq list --status running --status pending
                  bgq list --agent claude --limit 200 --json
                """)

        @OptionGroup var database: DatabaseOptions
        @Option(help: "Only tasks in this status (repeatable): pending, running, completed, error, cancelled.") var status: [String] = []
        @Option(help: "Only tasks of this agent.") var agent: String?
        @Option(help: "Only tasks of this model (provider/model, or the model part).") var model: String?
        @Option(help: "Only tasks of this parent.") var parent: String?
        @Option(parsing: .unconditional, help: "At most this many.") var limit: Int = 50
        @Flag(help: "Print the tasks as JSON.") var json = false

        func validate() throws {
            for value in status where TaskStatus(rawValue: value) == nil {
                throw ValidationError("unknown status '\(value)': use \(TaskStatus.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            guard (1...100_000).contains(limit) else { throw ValidationError("--limit must be from 1 to 100000") }
        }

        func run() throws {
            guard try database.exists() else {
                if json { print("[]") } else { print("No tasks yet: \(try database.location()) does not exist. Queue one with `bgq enqueue`.") }
                return
            }
            let store = try database.openStore(create: false)
            var filter = TaskFilter()
            filter.statuses = status.compactMap(TaskStatus.init(rawValue:))
            filter.agent = agent
            filter.model = model
            filter.parentID = parent
            filter.limit = limit
            let tasks = try store.listTasks(filter)
            if json {
                print(Render.json(tasks.map(Render.taskJSON)))
                return
            }
            guard !tasks.isEmpty else {
                print("No tasks match.")
                return
            }
            let now = store.clock.now()
            print(Render.table(["ID", "STATUS", "AGENT", "MODEL", "TIME", "DESCRIPTION"], tasks.map { task in
                let (label, value) = Render.duration(task, now: now)
                let time = label == "Queued for" ? "queued \(value)" : value
                let status = task.status == .running && task.cancelRequestedAt != nil ? "cancelling" : task.status.rawValue
                return [task.id, status, task.agent, task.model ?? "-", time, Render.truncate(task.description, 60)]
            }))
        }
    }
}
