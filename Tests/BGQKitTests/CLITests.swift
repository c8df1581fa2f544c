import ArgumentParser
import Foundation
import Testing
@testable import BGQBackends
@testable import BGQCLI
@testable import BGQCore
@testable import BGQSQLite
@testable import BGQScheduler
@testable import BGQSystem

/// The `bgq` binary end to end, as a person at a terminal uses it. Each test has its own database.
@Suite struct CLITests {
    // MARK: - Helpers

    /// Runs bgq and requires exit 0.
    @discardableResult
    private static func ok(_ arguments: [String], _ db: TempDatabase, stdin: String? = nil,
                           sourceLocation: SourceLocation = #_sourceLocation) throws -> String {
        let result = try BGQBinary.run(arguments, db: db, stdin: stdin)
        #expect(result.status == 0, "bgq \(arguments.joined(separator: " ")) exited \(result.status): \(result.stderr)",
                sourceLocation: sourceLocation)
        return result.stdout
    }

    /// Enqueues one task and returns its id (read from the launch block).
    private static func enqueue(_ db: TempDatabase, _ prompt: String, agent: String = "noop", extra: [String] = []) throws -> String {
        let out = try ok(["enqueue", "--agent", agent] + extra + [prompt], db)
        return try #require(taskID(in: out))
    }

    private static func taskID(in text: String) -> String? {
        text.split(separator: "\n").first { $0.hasPrefix("Task ID: ") }.map { String($0.dropFirst("Task ID: ".count)) }
    }

    private static func json(_ text: String) throws -> Any {
        try JSONSerialization.jsonObject(with: Data(text.utf8))
    }

    private static func showJSON(_ db: TempDatabase, _ id: String) throws -> [String: Any] {
        try #require(try json(try ok(["show", "--json", id], db)) as? [String: Any])
    }

    private static func listJSON(_ db: TempDatabase, _ arguments: [String] = []) throws -> [[String: Any]] {
        try #require(try json(try ok(["list", "--json"] + arguments, db)) as? [[String: Any]])
    }

    private static func isISO8601(_ value: Any?) -> Bool {
        guard let text = value as? String else { return false }
        return text.range(of: #"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$"#, options: .regularExpression) != nil
            && Instant(iso8601: text) != nil
    }

    // MARK: - enqueue

    @Test func enqueuePrintsTheLaunchBlock() throws {
        let db = TempDatabase()
        let result = try BGQBinary.run(["enqueue", "--agent", "claude", "--model", "anthropic/claude-opus-4-5",
                                        "--description", "Explore: auth", "Find the auth code"], db: db)
        #expect(result.status == 0, "stderr: \(result.stderr)")
        let lines = result.stdout.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        #expect(lines.first == "Background task launched.")
        let id = try #require(Self.taskID(in: result.stdout))
        #expect(id.range(of: "^bg_[0-9a-f]{8}$", options: .regularExpression) != nil)
        #expect(lines.contains("Session ID: (pending)"))
        #expect(lines.contains("Description: Explore: auth"))
        #expect(lines.contains("Agent: claude"))
        #expect(lines.contains("Model: anthropic/claude-opus-4-5"))
        #expect(lines.contains("Status: pending"))
        // The fields come in the original's order.
        let order = ["Task ID:", "Session ID:", "Description:", "Agent:", "Model:", "Status:"].compactMap { label in
            lines.firstIndex { $0.hasPrefix(label) }
        }
        #expect(order.count == 6 && order == order.sorted())
        #expect(result.stderr.isEmpty)
    }

    @Test func enqueueDashReadsThePromptFromStdin() throws {
        let db = TempDatabase()
        let prompt = "line one from stdin\nline two with 'quotes' and $dollars"
        let out = try Self.ok(["enqueue", "--agent", "noop", "-"], db, stdin: prompt)
        let id = try #require(Self.taskID(in: out))
        #expect(out.contains("Description: line one from stdin"))
        let shown = try Self.showJSON(db, id)
        #expect(shown["prompt"] as? String == prompt)
    }

    @Test func enqueuePromptFileReadsThePromptFromAFile() throws {
        let db = TempDatabase()
        let file = db.directory + "/prompt.txt"
        let prompt = "Refactor the parser\n\nKeep the tests green."
        try prompt.write(toFile: file, atomically: true, encoding: .utf8)
        let out = try Self.ok(["enqueue", "--agent", "noop", "--prompt-file", file], db)
        let id = try #require(Self.taskID(in: out))
        #expect(out.contains("Description: Refactor the parser"))
        #expect(try Self.showJSON(db, id)["prompt"] as? String == prompt)
    }

    @Test func enqueueJSONLQueuesOneTaskPerLine() throws {
        let db = TempDatabase()
        let file = db.directory + "/tasks.jsonl"
        try """
            {"agent":"noop","prompt":"first","description":"one"}
            {"agent":"shell","prompt":"echo second","model":"local/sh","priority":3}

            {"agent":"claude","prompt":"third","model":"anthropic/claude-sonnet-4-5","parent":"ses_parent"}
            """.write(toFile: file, atomically: true, encoding: .utf8)
        let out = try Self.ok(["enqueue", "--jsonl", file], db)
        #expect(out.contains("Enqueued 3 background task(s)"))
        let ids = out.split(separator: "\n").filter { $0.hasPrefix("bg_") }
        #expect(ids.count == 3)
        let listed = try Self.listJSON(db)
        #expect(listed.count == 3)
        #expect(Set(listed.compactMap { $0["description"] as? String }) == ["one", "echo second", "third"])
        let second = listed.first { $0["description"] as? String == "echo second" }
        #expect(second?["priority"] as? Int == 3)
        #expect(second?["model"] as? String == "local/sh")
        #expect(listed.first { $0["description"] as? String == "third" }?["parent"] as? String == "ses_parent")
    }

    @Test
    func enqueueJSONLAcceptsPriorityAndRetriesOfZeroAndOne() throws {
        let db = TempDatabase()
        // The example from `bgq enqueue --help`.
        let lines = """
            {"agent":"shell","prompt":"make test","description":"tests","model":"local/sh","priority":1}
            {"agent":"noop","prompt":"b","priority":0,"retries":1}
            """
        let out = try Self.ok(["enqueue", "--jsonl", "-"], db, stdin: lines)
        #expect(out.contains("Enqueued 2 background task(s)"))
        let listed = try Self.listJSON(db)
        #expect(listed.first { $0["description"] as? String == "tests" }?["priority"] as? Int == 1)
        #expect(listed.first { $0["description"] as? String == "b" }?["max_retries"] as? Int == 1)
    }

    // MARK: - show

    @Test func showOfAPendingTaskPrintsTheStatusBlock() throws {
        let db = TempDatabase()
        let id = try Self.enqueue(db, "Write the release notes", extra: ["--description", "Release notes"])
        let out = try Self.ok(["show", id], db)
        #expect(out.hasPrefix("# Task Status"))
        #expect(out.contains("| Field | Value |"))
        #expect(out.contains("| Task ID | `\(id)` |"))
        #expect(out.contains("| Description | Release notes |"))
        #expect(out.contains("| Agent | noop |"))
        #expect(out.contains("| Status | **pending** |"))
        #expect(out.contains("| Queued for |"))
        #expect(out.contains("> **Queued**: Task is waiting for a concurrency slot to become available."))
        #expect(out.contains("## Original Prompt\n\nWrite the release notes"))
        #expect(out.contains("## Last Message"))
    }

    @Test func showJSONHasTheDocumentedKeysWithISO8601Times() throws {
        let db = TempDatabase()
        let id = try Self.enqueue(db, "json me", extra: ["--model", "acme/m1", "--parent", "ses_abc", "--priority", "7"])
        let object = try Self.showJSON(db, id)
        for key in ["id", "status", "agent", "model", "description", "parent", "session_id", "priority",
                    "created_at", "started_at", "finished_at", "result", "error"] {
            #expect(object.keys.contains(key), "show --json lacks \(key)")
        }
        #expect(object["id"] as? String == id)
        #expect(object["status"] as? String == "pending")
        #expect(object["agent"] as? String == "noop")
        #expect(object["model"] as? String == "acme/m1")
        #expect(object["parent"] as? String == "ses_abc")
        #expect(object["priority"] as? Int == 7)
        #expect(object["session_id"] is NSNull)
        #expect(object["started_at"] is NSNull)
        #expect(object["finished_at"] is NSNull)
        #expect(Self.isISO8601(object["created_at"]))

        // A finished task: its times are ISO 8601 too, and its result is there.
        let store = try db.store()
        let worker = try store.registerWorker(WorkerRegistration(name: "w", host: "h", pid: 1, maxSessions: 1))
        let running = try #require(try store.claimTasks(workerID: worker, capacity: 1).first)
        #expect(try store.finish(running, workerID: worker, outcome: .completed(result: "it is done")) == .owned)
        let done = try Self.showJSON(db, id)
        #expect(done["status"] as? String == "completed")
        #expect(Self.isISO8601(done["started_at"]))
        #expect(Self.isISO8601(done["finished_at"]))
        #expect(done["result"] as? String == "it is done")
        #expect(done["error"] is NSNull)
    }

    @Test func showAcceptsAnyUniquePrefixWithOrWithoutBG() throws {
        let db = TempDatabase()
        let id = try Self.enqueue(db, "prefix me")
        let hex = String(id.dropFirst(3))
        for text in [id, hex, "bg_" + hex.prefix(1), String(hex.prefix(1)), "bg_" + hex.prefix(4), String(hex.prefix(5))] {
            let object = try Self.showJSON(db, text)
            #expect(object["id"] as? String == id, "prefix \(text)")
        }
    }

    @Test func showBlockTimesOutOnAPendingTask() throws {
        let db = TempDatabase()
        let id = try Self.enqueue(db, "wait for me")
        let result = try BGQBinary.run(["show", id, "--block", "--timeout", "0.3"], db: db)
        #expect(result.status == 4)
        #expect(result.stdout.contains("Timeout exceeded (300ms). Task still pending."))
        #expect(result.stdout.contains("**pending**"))
    }

    // MARK: - cancel

    @Test func cancelOfAPendingTaskPrintsTheCancelBlock() throws {
        let db = TempDatabase()
        let id = try Self.enqueue(db, "to be cancelled", extra: ["--description", "Doomed"])
        let out = try Self.ok(["cancel", id], db)
        #expect(out.contains("Cancelled 1 background task(s):"))
        #expect(out.contains("| Task ID | Description | Status | Session ID |"))
        #expect(out.contains("| `\(id)` | Doomed | cancelled | (not started) |"))
        #expect(out.contains("## Continue Instructions"))
        #expect(try Self.showJSON(db, id)["status"] as? String == "cancelled")
        #expect(Self.isISO8601(try Self.showJSON(db, id)["finished_at"]))
    }

    @Test func cancelAllCancelsEveryPendingTask() throws {
        let db = TempDatabase()
        let ids = try (0..<4).map { try Self.enqueue(db, "task \($0)") }
        let out = try Self.ok(["cancel", "--all"], db)
        #expect(out.contains("Cancelled 4 background task(s):"))
        for id in ids {
            #expect(out.contains(id))
            #expect(try Self.showJSON(db, id)["status"] as? String == "cancelled")
        }
        #expect(try Self.listJSON(db, ["--status", "pending"]).isEmpty)
    }

    /// What `bgq cancel --wait` must say of a running task whose owner ends it during the wait, before acting on
    /// the cancel: it completed or failed (an error like an already finished task's, exit 1), or it was requeued
    /// (pending again, so cancel cancels it at once).
    ///
    /// The test holds the claim itself, through the store calls a worker makes, and ends the task once the
    /// cancel request is recorded: with a real worker the session would have to end in the microseconds between
    /// its reading the cancel requests and its polling the session, which no gate can arrange.
    @Test(arguments: [TaskOutcome.completed(result: "done anyway"), .failed(error: "agent failed (exit code 3)"),
                      .requeued(reason: "attempt 1 failed; retry 1/1", delayMs: 0)])
    func cancelWaitReportsATaskThatEndedBeforeItsWorkerCouldAbortIt(_ outcome: TaskOutcome) throws {
        for json in [false, true] {
            let db = TempDatabase()
            let id = try Self.enqueue(db, "ends on its own")
            let store = try db.store()
            let worker = try store.registerWorker(WorkerRegistration(name: "owner", host: "h", pid: 1, maxSessions: 1))
            let task = try #require(try store.claimTasks(workerID: worker, capacity: 1).first)
            nonisolated(unsafe) var cancel: CommandResult?
            let done = DispatchSemaphore(value: 0), path = db.path
            DispatchQueue.global().async {
                cancel = try? BGQBinary.run(["cancel", "--wait", "30", id] + (json ? ["--json"] : []), db: nil, environment: ["BGQ_DB": path])
                done.signal()
            }
            #expect(eventually { (try? store.task(id: id))?.cancelRequestedAt != nil }, "the cancel was never requested")
            #expect(try store.finish(task, workerID: worker, outcome: outcome) == .owned)
            done.wait()
            let result = try #require(cancel)
            let shown = try Self.showJSON(db, id)
            switch outcome {
            case .requeued:
                #expect(result.status == 0, "\(result.stderr)")
                #expect(shown["status"] as? String == "cancelled", "a requeued task is cancelled, not left to run again")
                if json {
                    let report = try #require(try Self.json(result.stdout) as? [String: Any])
                    #expect((report["cancelled"] as? [[String: Any]])?.map { $0["status"] as? String } == ["cancelled"], "\(report)")
                } else {
                    #expect(result.stdout.contains("| `\(id)` | ends on its own | cancelled |"), "\(result.stdout)")
                }
            default:
                let how = shown["status"] as? String == "completed" ? "completed" : "failed"
                let message = "[ERROR] Cannot cancel task \(id): it \(how) before its worker could abort it"
                #expect(result.status == ExitStatus.failure, "\(result.stdout)")
                #expect(result.stderr.contains(message), "\(result.stderr)")
                if json {
                    let report = try #require(try Self.json(result.stdout) as? [String: Any])
                    #expect((report["cancelled"] as? [Any])?.isEmpty == true, "\(report)")
                    #expect(report["errors"] as? [String] == [message], "\(report)")
                } else {
                    #expect(!result.stdout.contains("Cancelled"), "\(result.stdout)")
                }
            }
        }
    }

    // MARK: - list

    @Test func listShowsNewestFirstAndFilters() throws {
        let db = TempDatabase()
        let first = try Self.enqueue(db, "first task")
        let second = try Self.enqueue(db, "second task", agent: "shell")
        let third = try Self.enqueue(db, "third task")
        try Self.ok(["cancel", second], db)

        let table = try Self.ok(["list"], db)
        let rows = table.split(separator: "\n").map(String.init)
        let positions = [third, second, first].map { id in rows.firstIndex { $0.hasPrefix(id) } }
        #expect(positions.allSatisfy { $0 != nil })
        #expect(positions.compactMap { $0 } == positions.compactMap { $0 }.sorted())
        #expect(rows.first?.hasPrefix("ID") == true)

        #expect(try Self.listJSON(db).compactMap { $0["id"] as? String } == [third, second, first])
        #expect(try Self.listJSON(db, ["--status", "cancelled"]).compactMap { $0["id"] as? String } == [second])
        #expect(try Self.listJSON(db, ["--status", "pending"]).compactMap { $0["id"] as? String } == [third, first])
        #expect(try Self.listJSON(db, ["--agent", "shell"]).compactMap { $0["id"] as? String } == [second])
        #expect(try Self.listJSON(db, ["--limit", "2"]).compactMap { $0["id"] as? String } == [third, second])

        let filtered = try Self.ok(["list", "--status", "cancelled"], db)
        #expect(filtered.contains(second))
        #expect(!filtered.contains(first) && !filtered.contains(third))
        let limited = try Self.ok(["list", "--limit", "1"], db)
        #expect(limited.contains(third) && !limited.contains(second))
    }

    // MARK: - limits

    @Test func limitsSetShowAndUnset() throws {
        let db = TempDatabase()
        try Self.ok(["limits", "set", "--provider", "anthropic", "3"], db)
        try Self.ok(["limits", "set", "--model", "claude-opus-4-5", "2"], db)
        try Self.ok(["limits", "set", "--default", "4"], db)

        let shown = try Self.ok(["limits"], db)
        let rows = shown.split(separator: "\n").map { $0.split(separator: " ", omittingEmptySubsequences: true).map(String.init) }
        #expect(rows.contains(["provider", "anthropic", "3"]))
        #expect(rows.contains(["model", "claude-opus-4-5", "2"]))
        #expect(rows.contains(["default", "(per", "model)", "4"]))
        let limits = try #require(try Self.json(try Self.ok(["limits", "--json"], db)) as? [String: Any])
        #expect(limits["provider"] as? [String: Int] == ["anthropic": 3])
        #expect(limits["model"] as? [String: Int] == ["claude-opus-4-5": 2])
        #expect(limits["default"] as? Int == 4)

        try Self.ok(["limits", "unset", "--provider", "anthropic"], db)
        let after = try Self.ok(["limits"], db)
        #expect(!after.contains("anthropic"))
        #expect(after.contains("claude-opus-4-5"))
        #expect(try db.store().limits() == Limits(model: ["claude-opus-4-5": 2], provider: [:], defaultLimit: 4))
    }

    @Test func limitsImportReadsJSONCWithCommentsAndTrailingCommas() throws {
        let db = TempDatabase()
        let file = db.directory + "/oh-my-opencode.json"
        try """
            {
              // oh-my-opencode settings
              "$schema": "https://example.com/oh-my-opencode.schema.json", // a URL with // inside a string
              /* the background block,
                 with a block comment */
              "background_task": {
                "providerConcurrency": { "anthropic": 3, "openai": 2, },
                "modelConcurrency": { "anthropic/claude-opus-4-5": 2, "gemini-2.5-pro": 4, /* inline */ },
                "defaultConcurrency": 6,
                "staleTimeoutMs": 240000,
              },
            }
            """.write(toFile: file, atomically: true, encoding: .utf8)
        let result = try BGQBinary.run(["limits", "import", file], db: db)
        #expect(result.status == 0, "stderr: \(result.stderr)")
        let store = try db.store()
        #expect(try store.limits() == Limits(model: ["anthropic/claude-opus-4-5": 2, "gemini-2.5-pro": 4],
                                             provider: ["anthropic": 3, "openai": 2], defaultLimit: 6))
        #expect(try store.settings().staleTimeoutMs == 240_000)
        let shown = try Self.ok(["limits"], db)
        #expect(shown.contains("anthropic") && shown.contains("gemini-2.5-pro"))
    }

    @Test
    func limitsImportAcceptsLimitsOfZeroAndOne() throws {
        let db = TempDatabase()
        let file = db.directory + "/omo.jsonc"
        try """
            { "background_task": { "providerConcurrency": { "anthropic": 1, "openai": 0 },
                                   "modelConcurrency": { "claude-opus-4-5": 1 }, "defaultConcurrency": 1 } }
            """.write(toFile: file, atomically: true, encoding: .utf8)
        let result = try BGQBinary.run(["limits", "import", file], db: db)
        #expect(result.status == 0, "stderr: \(result.stderr)")
        #expect(try db.store().limits() == Limits(model: ["claude-opus-4-5": 1], provider: ["anthropic": 1, "openai": 0], defaultLimit: 1))
    }

    // MARK: - help, workers, agents

    static let topLevelCommands: [[String]] = [
        ["enqueue"], ["show"], ["cancel"], ["list"], ["limits"], ["worker"], ["workers"], ["agents"], ["settings"],
        ["wait"], ["watch"], ["history"], ["stats"], ["prune"], ["mcp"],
    ]
    static let nestedCommands: [[String]] = [
        ["limits", "show"], ["limits", "set"], ["limits", "unset"], ["limits", "import"],
        ["agents", "list"], ["agents", "add"], ["agents", "remove"],
        ["settings", "show"], ["settings", "set"], ["settings", "unset"],
    ]

    @Test(arguments: [[]] + topLevelCommands)
    func helpOfEveryCommandShowsAnExample(_ command: [String]) throws {
        let result = try BGQBinary.run(command + ["--help"], db: nil)
        #expect(result.status == 0)
        #expect(result.stdout.contains("Example"), "bgq \(command.joined(separator: " ")) --help has no example")
    }

    @Test(arguments: nestedCommands)
    func helpOfEveryNestedSubcommandShowsAnExample(_ command: [String]) throws {
        let result = try BGQBinary.run(command + ["--help"], db: nil)
        #expect(result.status == 0)
        #expect(result.stdout.contains("Example"), "bgq \(command.joined(separator: " ")) --help has no example")
    }

    /// Every command sets its name: a derived one costs each start-up 26 String(describing:) calls, a third of
    /// `bgq show`'s instructions (see BGQCommand). The names are exactly the commands above.
    @Test func everyCommandNamesItselfExplicitly() {
        func paths(_ command: any ParsableCommand.Type, _ prefix: [String]) -> [[String]] {
            let configuration = command.configuration
            #expect(configuration.commandName != nil, "\(command) has no commandName (bgq \(prefix.joined(separator: " ")) …)")
            let path = prefix + [configuration.commandName ?? "?"]
            return [path] + configuration.subcommands.flatMap { paths($0, path) }
        }
        let found = paths(BGQCommand.self, []).map { Array($0.dropFirst()) }
        #expect(Set(found) == Set([[]] + Self.topLevelCommands + Self.nestedCommands))
    }

    @Test func workersWithNoWorkerSaysSo() throws {
        let db = TempDatabase()
        let out = try Self.ok(["workers"], db)
        #expect(out.contains("No live worker"))
        #expect((try Self.json(try Self.ok(["workers", "--json"], db)) as? [Any])?.isEmpty == true)
    }

    @Test func agentsListsTheBuiltIns() throws {
        let db = TempDatabase()
        let out = try Self.ok(["agents"], db)
        let names = Set(out.split(separator: "\n").dropFirst().compactMap { $0.split(separator: " ").first.map(String.init) })
        #expect(names.isSuperset(of: ["shell", "claude", "opencode", "codex", "gemini", "llm", "noop"]))
        let listed = try #require(try Self.json(try Self.ok(["agents", "--json"], db)) as? [[String: Any]])
        #expect(listed.allSatisfy { $0["built_in"] as? Bool == true })
        #expect(Set(listed.compactMap { $0["name"] as? String }) == names)
    }
}
