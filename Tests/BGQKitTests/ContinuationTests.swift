import Foundation
import Testing
@testable import BGQBackends
@testable import BGQCLI
@testable import BGQCore
@testable import BGQSQLite
@testable import BGQScheduler
@testable import BGQSystem

/// A follow-up on a session (`bgq enqueue --session`, MCP `delegate_task` with `session_id`) runs on the
/// session's agent and model, so it counts against that model's limit like any other task on it.
@Suite(.serialized) struct ContinuationTests {
    typealias Rig = WorkerProcessTests.Rig
    static let sonnet = "anthropic/claude-sonnet-4-5"

    @Test func aFollowUpWaitsForItsModelsSlot() throws {
        let rig = try Rig()
        defer { rig.stop() }
        // The agent has no default model: the session's first task named one.
        try rig.ok(["agents", "add", "explore", "--preset", "claude", "--executable", repositoryRoot + "/Scripts/stand-in-agent"])
        try rig.ok(["limits", "set", "--model", Self.sonnet, "1"])
        try rig.startWorker("w1", environment: ["BGQ_STANDIN_SECONDS": "0.3"])
        let first = try rig.waitFor(try rig.enqueue("Explore: the queue", agent: "explore", ["--model", Self.sonnet]), .completed)
        let sessionID = try #require(first.sessionID, rig.comment)

        // Another sonnet task holds the model's only slot...
        let holder = try rig.enqueue("Hold the slot [hang]", agent: "explore", ["--model", Self.sonnet])
        _ = try rig.waitFor(holder, .running)
        // ...so the follow-up, on the same model, waits for it.
        let followUp = try rig.enqueue("Continue: now the tests", agent: nil, ["--session", sessionID])
        let queued = try rig.task(followUp)
        #expect(queued.model == Self.sonnet, "the follow-up inherits the session's model")
        #expect(queued.agent == "explore")
        let usage = try rig.store.keyUsage().first { $0.key == "model:\(Self.sonnet)" }
        #expect(usage?.running == 1 && usage?.pending == 1 && usage?.limit == 1, "\(String(describing: usage))")
        #expect(try rig.status(followUp) == .pending, rig.comment)

        // The slot frees: the follow-up runs in the session, on its model.
        try rig.ok(["cancel", holder])
        let continued = try rig.waitFor(followUp, .completed)
        #expect(continued.sessionID == sessionID)
    }

    @Test func anExplicitModelOnAFollowUpCountsAgainstThatModel() throws {
        let db = TempDatabase()
        let store = try db.store()
        let sessionID = try Self.sessionOnSonnet(store)
        let result = try BGQBinary.run(["enqueue", "--session", sessionID, "--model", "anthropic/claude-haiku-4-5", "--json", "more"], db: db)
        #expect(result.status == 0, "\(result.stderr)")
        let task = try #require(try store.listTasks(TaskFilter()).first { $0.prompt == "more" })
        #expect(task.model == "anthropic/claude-haiku-4-5")
        #expect(task.modelKey == "anthropic/claude-haiku-4-5")

        let other = try BGQBinary.run(["enqueue", "--session", sessionID, "--agent", "shell", "echo x"], db: db)
        #expect(other.status == 2)
        #expect(other.stderr.contains("belongs to agent 'claude'"), "\(other.stderr)")
    }

    @Test func anMCPFollowUpInheritsTheSessionsModel() throws {
        let db = TempDatabase()
        let store = try db.store()
        let sessionID = try Self.sessionOnSonnet(store)
        let responses = try MCPTests.exchange([
            MCPTests.request(1, "initialize", ["protocolVersion": "2025-06-18", "capabilities": [:] as [String: Any], "clientInfo": ["name": "t", "version": "1"]]),
            MCPTests.call(2, "delegate_task", ["description": "more", "prompt": "go on", "session_id": sessionID]),
        ], db: db)
        #expect(!MCPTests.text(responses[2]).1, "\(MCPTests.text(responses[2]).0)")
        let task = try #require(try store.listTasks(TaskFilter()).first { $0.prompt == "go on" })
        #expect(task.agent == "claude")
        #expect(task.model == Self.sonnet)
        #expect(task.modelKey == Self.sonnet, "the follow-up claims on the model's key, not model:claude")
    }

    /// A finished claude task on sonnet, with its session recorded.
    static func sessionOnSonnet(_ store: SQLiteStore) throws -> String {
        let stored = try store.enqueue([NewTask(description: "first", prompt: "first", agent: "claude", model: sonnet)])[0]
        let worker = try store.registerWorker(WorkerRegistration(name: "w", host: "h", pid: 1, maxSessions: 1))
        let claimed = try #require(try store.claimTasks(workerID: worker, capacity: 1).first)
        let sessionID = Identifier.newSessionID()
        var run = TaskRecord.RunHandle()
        run.host = "h"
        _ = try store.recordSessionStart(claimed, workerID: worker, start: SessionStart(sessionID: sessionID, backend: "exec", externalID: "ext-1", run: run))
        var running = try store.requireTask(id: stored.id)
        running.sessionID = sessionID
        #expect(try store.finish(running, workerID: worker, outcome: .completed(result: "done")) == .owned)
        return sessionID
    }
}
