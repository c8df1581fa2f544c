import ArgumentParser
import BGQCore
import BGQScheduler
import BGQSystem
import Foundation

extension BGQCommand {
    /// `bgq history`: every transition of one task.
    struct History: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "history",
            abstract: "List every transition of a task: time, from, to, worker, attempt, reason.",
            discussion: "Examples:\n  bgq history bg_1a2b3c4d\n  bgq history 1a2b --json")
        @OptionGroup var database: DatabaseOptions
        @Argument(help: "The task id or a unique prefix.") var id: String
        @Flag(help: "Print as JSON.") var json = false

        func run() throws {
            let store = try database.openStore(create: false)
            let id = try store.resolveTaskID(self.id)
            let events = try store.events(taskID: id)
            if json {
                print(Render.json(events.map { e -> [String: Any] in
                    ["event": e.id, "task_id": e.taskID, "at": e.at.iso8601, "from": e.from?.rawValue ?? NSNull(), "to": e.to.rawValue,
                     "worker": e.workerID ?? NSNull(), "attempt": e.attempt, "reason": e.reason ?? NSNull()]
                }))
                return
            }
            print(Render.table(["TIME", "FROM", "TO", "WORKER", "ATTEMPT", "REASON"], events.map { e in
                [e.at.iso8601, e.from?.rawValue ?? "-", e.to.rawValue, e.workerID ?? "-", String(e.attempt), Render.truncate(e.reason ?? "", 100)]
            }))
        }
    }

    /// `bgq stats`: what ran, how busy the slots were, how long things took, why they failed.
    struct Stats: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "stats",
            abstract: "Counts by status, slot use per concurrency key, durations by agent and model, errors by reason.",
            discussion: "Examples:\n  bgq stats\n  bgq stats --since 24h\n  bgq stats --since 7d --json")
        @OptionGroup var database: DatabaseOptions
        @Option(parsing: .unconditional, help: "Only tasks since this long ago (e.g. 24h, 7d).") var since: String?
        @Flag(help: "Print as JSON.") var json = false

        func validate() throws {
            if let since, parseDuration(since) == nil { throw ValidationError("--since takes a duration such as 30m, 24h or 7d") }
        }

        func run() throws {
            let store = try database.openStore(create: false)
            let now = store.clock.now()
            let from = since.flatMap(parseDuration).map { Instant(milliseconds: now.milliseconds - $0) }
            let stats = try store.stats(since: from)
            let windowMs = stats.windowStart.map { max(1, now - $0) } ?? 1
            func utilization(_ key: QueueStats.KeyBusy) -> String {
                key.limit > 0 ? String(format: "%.1f%%", Double(key.busyMs) / Double(windowMs * Int64(key.limit)) * 100) : "-"
            }
            if json {
                print(Render.json([
                    "since": stats.windowStart?.iso8601 ?? NSNull(),
                    "by_status": Dictionary(uniqueKeysWithValues: TaskStatus.allCases.map { ($0.rawValue, stats.byStatus[$0] ?? 0) }),
                    "keys": stats.keys.map { ["key": $0.key, "tasks": $0.tasks, "busy_ms": $0.busyMs, "limit": $0.limit, "utilization": utilization($0)] },
                    "durations": stats.durations.map { ["agent": $0.agent, "model": $0.model, "count": $0.count, "p50_ms": $0.p50Ms, "p95_ms": $0.p95Ms] },
                    "errors": stats.errors.map { ["reason": $0.reason, "count": $0.count] },
                ] as [String: Any]))
                return
            }
            print("Tasks\(since.map { " (last \($0))" } ?? ""):")
            print(Render.table(["STATUS", "COUNT"], TaskStatus.allCases.map { [$0.rawValue, String(stats.byStatus[$0] ?? 0)] }))
            print("\nConcurrency keys (busy = slot time used / limit x window):")
            print(stats.keys.isEmpty ? "(none ran)" : Render.table(["KEY", "TASKS", "SLOT TIME", "LIMIT", "BUSY"], stats.keys.map {
                [$0.key, String($0.tasks), formatDuration(milliseconds: $0.busyMs), $0.limit == 0 ? "unlimited" : String($0.limit), utilization($0)]
            }))
            print("\nDurations of completed tasks:")
            print(stats.durations.isEmpty ? "(none completed)" : Render.table(["AGENT", "MODEL", "COMPLETED", "P50", "P95"], stats.durations.map {
                [$0.agent, $0.model, String($0.count), Self.short($0.p50Ms), Self.short($0.p95Ms)]
            }))
            print("\nErrors and cancellations by reason:")
            print(stats.errors.isEmpty ? "(none)" : Render.table(["COUNT", "REASON"], stats.errors.map { [String($0.count), Render.truncate($0.reason, 100)] }))
        }

        static func short(_ ms: Int64) -> String { ms < 10_000 ? String(format: "%.2fs", Double(ms) / 1000) : formatDuration(milliseconds: ms) }
    }

    /// `bgq prune`: the only way anything is deleted.
    struct Prune: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "prune",
            abstract: "Delete finished tasks older than a duration, with their sessions, messages, events and logs.",
            discussion: """
                No task is ever deleted except by this command. Run folders (an exec agent's stdout, stderr and exit files) are removed by workers once a task ended more than run_retention_ms ago (default 1 hour; `bgq settings set run_retention_ms 0` removes them at once); prune removes them too, with or without --older-than.

                Examples:
                  bgq prune --older-than 30d --dry-run
                  bgq prune --older-than 7d --status completed
                  bgq prune
                """)
        @OptionGroup var database: DatabaseOptions
        @Option(parsing: .unconditional, help: "Delete tasks that finished longer ago than this (e.g. 7d, 12h).") var olderThan: String?
        @Option(help: "Only tasks in this status (repeatable): completed, error, cancelled.") var status: [String] = []
        @Flag(help: "Only say how many would be deleted.") var dryRun = false

        func validate() throws {
            if let olderThan, parseDuration(olderThan) == nil { throw ValidationError("--older-than takes a duration such as 12h or 30d") }
            for value in status where !(TaskStatus(rawValue: value)?.isTerminal ?? false) {
                throw ValidationError("--status takes completed, error or cancelled (pending and running tasks are never pruned)")
            }
        }

        /// This host's run folders for the store: where workers started here keep them by default.
        func runsDirectory(_ store: any QueueStore) -> String { store.location.defaultRunsDirectory() }

        func run() throws {
            let store = try database.openStore(create: false)
            let now = store.clock.now()
            if !dryRun {
                let retention = try store.settings().runRetentionMs
                let folders = try RunFolderCleaner(store: store, runsDirectory: runsDirectory(store)).removeExpired(now: now, retentionMs: retention, passes: Int.max)
                print("Removed the run folders of \(folders) task(s) that ended more than \(spelledDuration(milliseconds: retention)) ago (run_retention_ms).")
            }
            guard let olderThan else { return }
            let cutoff = Instant(milliseconds: now.milliseconds - (parseDuration(olderThan) ?? 0))
            let result = try store.prune(PruneRequest(olderThan: cutoff, statuses: status.compactMap(TaskStatus.init(rawValue:)), dryRun: dryRun))
            // Every attempt's folder: a retried task left one per attempt.
            let removedFolders = result.runFolders.reduce(0) { removed, folder in
                removed + RunFolders.remove(runsDirectory: runsDirectory(store), taskID: folder.taskID, attempts: folder.attempt)
            }
            if dryRun {
                print("Would delete \(result.tasks) finished task(s) that ended before \(cutoff.iso8601) (dry run: nothing deleted).")
            } else {
                print("Deleted \(result.tasks) task(s), \(result.sessions) session(s) and \(removedFolders) log folder(s) that ended before \(cutoff.iso8601).")
            }
        }
    }
}
