import Foundation
import Testing
@testable import BGQBackends
@testable import BGQCLI
@testable import BGQCore
@testable import BGQSQLite
@testable import BGQScheduler
@testable import BGQSystem

/// The opencode-server backend against a protocol-faithful OpenCode server (Tests/Servers/fake_opencode.py,
/// real HTTP on 127.0.0.1) with scripted timelines, driven by real `bgq worker` processes.
@Suite(.serialized) struct OpenCodeBackendTests {
    typealias Rig = WorkerProcessTests.Rig

    /// A rig with fast timings, a fake OpenCode server, and an agent `build` on it.
    static func setUp(_ settings: [String: Int] = [:], serverArguments: [String] = [], agentArguments: [String] = []) throws -> (Rig, FakeServer) {
        let rig = try Rig(["min_idle_ms": 300, "min_stability_ms": 1000].merging(settings, uniquingKeysWith: { $1 }))
        let server = try FakeServer("fake_opencode.py", serverArguments, directory: rig.db.directory)
        try rig.ok(["agents", "add", "build", "--preset", "opencode-server", "--url", server.url] + agentArguments)
        return (rig, server)
    }

    static func sessionID(_ task: TaskRecord, _ rig: Rig) throws -> String? {
        try task.sessionID.flatMap { try rig.store.session(id: $0)?.externalID }
    }

    /// The texts of a session's messages on the server.
    static func texts(_ server: FakeServer, session: String) throws -> [(role: String, text: String, noReply: Bool)] {
        let messages = try server.request("GET", "/session/\(session)/message")?.array ?? []
        return messages.flatMap { message in
            (message["parts"]?.array ?? []).compactMap { part in
                part["text"]?.string.map { (message["info"]?["role"]?.string ?? "", $0, false) }
            }
        }
    }

    @Test func taskRunsOnTheServerWithTitleAgentModelDirectoryAndOneStatusCallPerRound() throws {
        let (rig, server) = try Self.setUp(agentArguments: ["--cwd", "/tmp"])
        defer { rig.stop(); server.stop() }
        let ids = try (1...3).map { try rig.enqueue("job \($0) [busy 2]", agent: "build", ["--model", "anthropic/claude-x", "--description", "Job \($0)"]) }
        try rig.startWorker("w1")
        for id in ids {
            let task = try rig.waitFor(id, .completed)
            #expect(task.result?.contains("done: job") == true, "result: \(task.result ?? "-")")
            let shown = try rig.ok(["show", id])
            #expect(shown.contains("done: job"), "bgq show printed: \(shown)")
        }
        let creates = try server.requests("POST", "/session")
        #expect(creates.count == 3)
        // The agent's --cwd is the project scope, for the sessions and for the status they are polled by.
        #expect(creates.allSatisfy { $0["headers"]?["x-opencode-directory"]?.string == "/tmp" })
        #expect(try server.requests("GET", "/session/status").allSatisfy { $0["headers"]?["x-opencode-directory"]?.string == "/tmp" })
        #expect(Set(creates.compactMap { $0["body"]?["title"]?.string }) == ["Background: Job 1", "Background: Job 2", "Background: Job 3"])
        let prompts = try server.requests("POST", "/session/*/prompt_async")
        #expect(prompts.count == 3)
        for prompt in prompts {
            #expect(prompt["body"]?["agent"]?.string == "build")
            #expect(prompt["body"]?["model"] == ["providerID": "anthropic", "modelID": "claude-x"])
            #expect(prompt["body"]?["parts"]?.array?.first?["text"]?.string?.hasPrefix("job ") == true)
        }
        // Three sessions busy together: each poll round asks for the status once, not once per session.
        let statusCalls = try server.requests("GET", "/session/status").count
        let messageCalls = try server.requests("GET", "/session/*/message").count
        #expect(statusCalls > 0 && statusCalls * 2 < messageCalls, "status \(statusCalls) vs messages \(messageCalls)")
    }

    @Test func idleMissingFromTheStatusMapOrListedAsIdleBothComplete() throws {
        let (rig, server) = try Self.setUp()
        defer { rig.stop(); server.stop() }
        let absent = try rig.enqueue("absent when idle", agent: "build")
        let listed = try rig.enqueue("listed when idle [idle-status]", agent: "build")
        try rig.startWorker("w1")
        #expect(try rig.waitFor(absent, .completed).result == "done: absent when idle")
        #expect(try rig.waitFor(listed, .completed).result?.hasPrefix("done: listed when idle") == true)
    }

    @Test func anOpenTodoDelaysTheEnd() throws {
        let (rig, server) = try Self.setUp()
        defer { rig.stop(); server.stop() }
        let id = try rig.enqueue("plan it [todos 3]", agent: "build")
        try rig.startWorker("w1")
        let running = try rig.waitFor(id, .running)
        let session = try #require(try eventually { try Self.sessionID(rig.task(id), rig) != nil } ? Self.sessionID(rig.task(id), rig) : nil)
        _ = running
        // While the server still lists an open todo, the task must not end (its answer is already there).
        var sawOpenTodoWhileRunning = false
        let finished = try eventually(timeout: 30) {
            let todos = try server.request("GET", "/session/\(session)/todo")?.array ?? []
            let open = todos.contains { $0["status"]?.string == "in_progress" || $0["status"]?.string == "pending" }
            let status = try rig.status(id)
            if open {
                #expect(status == .running, "the task ended while a todo was open")
                if status == .running { sawOpenTodoWhileRunning = true }
            }
            return status.isTerminal
        }
        #expect(finished && sawOpenTodoWhileRunning)
        let task = try rig.task(id)
        #expect(task.status == .completed)
        #expect(task.progress.todos?.contains("completed") == true, "stored todos: \(task.progress.todos ?? "-")")
    }

    @Test func retryStatusKeepsTheTaskRunningThenItCompletes() throws {
        let (rig, server) = try Self.setUp()
        defer { rig.stop(); server.stop() }
        let id = try rig.enqueue("flaky provider [retry 1.5]", agent: "build")
        try rig.startWorker("w1")
        var sawRetryWhileRunning = false
        _ = try eventually(timeout: 30) {
            let statuses = try server.request("GET", "/session/status")?.object ?? [:]
            let status = try rig.status(id)
            if statuses.values.contains(where: { $0["type"]?.string == "retry" }) && status == .running {
                sawRetryWhileRunning = true
            }
            return try rig.status(id).isTerminal
        }
        #expect(sawRetryWhileRunning)
        #expect(try rig.waitFor(id, .completed).result?.hasPrefix("done: flaky provider") == true)
    }

    @Test func cancelAbortsTheServerSessionWhichEndsWithMessageAbortedError() throws {
        let (rig, server) = try Self.setUp()
        defer { rig.stop(); server.stop() }
        let id = try rig.enqueue("never ends [hang]", agent: "build")
        try rig.startWorker("w1")
        #expect(try eventually { try Self.sessionID(rig.task(id), rig) != nil && rig.status(id) == .running })
        let session = try #require(try Self.sessionID(rig.task(id), rig))
        try rig.ok(["cancel", id])
        let task = try rig.waitFor(id, .cancelled)
        #expect(task.error == "cancelled by user")
        #expect(try rig.leaseCount(taskID: id) == 0)
        #expect(try eventually { try server.requests("POST", "/session/\(session)/abort").count == 1 })
        let messages = try server.request("GET", "/session/\(session)/message")?.array ?? []
        #expect(messages.last?["info"]?["error"]?["name"]?.string == "MessageAbortedError")
    }

    @Test func anAssistantErrorFailsTheTaskWithTheProvidersMessage() throws {
        let (rig, server) = try Self.setUp()
        defer { rig.stop(); server.stop() }
        let id = try rig.enqueue("doomed [error]", agent: "build")
        try rig.startWorker("w1")
        let task = try rig.waitFor(id, .error)
        #expect(task.error?.contains("APIError: Provider said no (fake)") == true, "error: \(task.error ?? "-")")
    }

    @Test func wrongPasswordFailsWithAHintAndTheRightOneWorks() throws {
        let (rig, server) = try Self.setUp(serverArguments: ["--password", "s3cret"])
        defer { rig.stop(); server.stop() }
        let denied = try rig.enqueue("who am i", agent: "build")
        let wrong = try rig.startWorker("wrong", environment: ["OPENCODE_SERVER_PASSWORD": "nope"])
        let failed = try rig.waitFor(denied, .error)
        #expect(failed.error?.contains("401") == true && failed.error?.contains("OPENCODE_SERVER_PASSWORD") == true,
                "error: \(failed.error ?? "-")")
        rig.sigkill(wrong)
        let allowed = try rig.enqueue("with the right password", agent: "build")
        try rig.startWorker("right", environment: ["OPENCODE_SERVER_PASSWORD": "s3cret"])
        #expect(try rig.waitFor(allowed, .completed).result == "done: with the right password")
        let authorized = try server.requests("POST", "/session").compactMap { $0["headers"]?["authorization"]?.string }
        #expect(authorized.contains("Basic " + Data("opencode:s3cret".utf8).base64EncodedString()))
    }

    @Test func unreachableServerFailsAtTheStaleTimeoutWithTheServersURL() throws {
        let (rig, server) = try Self.setUp(["stale_timeout_ms": 2000, "min_runtime_before_stale_ms": 0])
        defer { rig.stop(); server.stop() }
        let id = try rig.enqueue("long job [busy 60]", agent: "build")
        try rig.startWorker("w1")
        #expect(try eventually { try Self.sessionID(rig.task(id), rig) != nil })
        server.kill()
        let task = try rig.waitFor(id, .error)
        #expect(task.error == "opencode server unreachable at \(server.url)", "error: \(task.error ?? "-")")
        #expect(try rig.leaseCount(taskID: id) == 0)
    }

    @Test func serverKilledAndRestartedMidTaskTheTaskCompletesOnce() throws {
        let rig = try Rig(["min_idle_ms": 300, "min_stability_ms": 1000])
        let state = rig.path("opencode-state.json")
        let server = try FakeServer("fake_opencode.py", ["--state-file", state], directory: rig.db.directory)
        defer { rig.stop(); server.stop() }
        try rig.ok(["agents", "add", "build", "--preset", "opencode-server", "--url", server.url])
        let id = try rig.enqueue("survive a restart [busy 3]", agent: "build")
        let worker = try rig.startWorker("w1")
        #expect(try eventually { try Self.sessionID(rig.task(id), rig) != nil })
        server.kill()
        // A poll finds the server gone; the worker says so and keeps the task running until the stale timeout.
        #expect(eventually(timeout: 20) { worker.log.contains("opencode server unreachable at \(server.url); retrying until the stale timeout") },
                rig.comment)
        #expect(try rig.status(id) == .running)
        try server.restart()
        #expect(try rig.waitFor(id, .completed).result == "done: survive a restart [busy 3]")
        // The restarted server's log starts empty: no second session, no second prompt.
        #expect(try server.requests("POST", "/session").isEmpty)
        #expect(try server.requests("POST", "/session/*/prompt_async").isEmpty)
    }

    @Test func aVanishedSessionFailsTheTaskInsteadOfLeavingItStuck() throws {
        let (rig, server) = try Self.setUp()
        defer { rig.stop(); server.stop() }
        let id = try rig.enqueue("gone soon [hang] [vanish 1]", agent: "build")
        try rig.startWorker("w1")
        let task = try rig.waitFor(id, .error)
        #expect(task.error?.contains("vanished") == true && task.error?.contains("404") == true, "error: \(task.error ?? "-")")
        #expect(try rig.leaseCount(taskID: id) == 0)
    }

    @Test func malformedAnswersFailWithTheEndpointAndTheWorkerCarriesOn() throws {
        let (rig, server) = try Self.setUp()
        defer { rig.stop(); server.stop() }
        let badJSON = try rig.enqueue("broken [bad-json]", agent: "build")
        let badShape = try rig.enqueue("odd [bad-shape]", agent: "build")
        let worker = try rig.startWorker("w1")
        for id in [badJSON, badShape] {
            let task = try rig.waitFor(id, .error)
            #expect(task.error?.contains("GET /session/") == true && task.error?.contains("/message") == true
                    && task.error?.contains("unexpected body") == true, "error: \(task.error ?? "-")")
        }
        let fine = try rig.enqueue("fine afterwards", agent: "build")
        #expect(try rig.waitFor(fine, .completed).result == "done: fine afterwards")
        #expect(!rig.exited(worker))
    }

    @Test func aWorkerThatAdoptsACrashedWorkersTaskPollsTheSameServerSession() throws {
        let (rig, server) = try Self.setUp(["lease_timeout_ms": 1500])
        defer { rig.stop(); server.stop() }
        let id = try rig.enqueue("outlive my worker [busy 4]", agent: "build")
        let first = try rig.startWorker("w1")
        #expect(try eventually { try Self.sessionID(rig.task(id), rig) != nil })
        let session = try #require(try Self.sessionID(rig.task(id), rig))
        rig.sigkill(first)
        try rig.startWorker("w2")
        let task = try rig.waitFor(id, .completed)
        #expect(task.result == "done: outlive my worker [busy 4]")
        #expect(try rig.events(id).contains(where: WorkerProcessTests.isAdoption))
        #expect(try server.requests("POST", "/session").count == 1)
        #expect(try server.requests("POST", "/session/*/prompt_async").count == 1)
        #expect(try Self.sessionID(task, rig) == session)
        // The adopter stores only what the dead worker had not stored: no message twice.
        let stored = try rig.store.messages(taskID: id).map { "\($0.role) \($0.kind) \($0.tool ?? "") \($0.content)" }
        #expect(Set(stored).count == stored.count, "stored twice: \(stored)")
        #expect(stored.contains { $0.contains("done: outlive my worker") }, "the answer is stored: \(stored)")
    }

    @Test func continuingASessionSendsANewPromptToTheSameServerSession() throws {
        let (rig, server) = try Self.setUp()
        defer { rig.stop(); server.stop() }
        let first = try rig.enqueue("first turn", agent: "build")
        try rig.startWorker("w1")
        let done = try rig.waitFor(first, .completed)
        let bgqSession = try #require(done.sessionID)
        let external = try #require(try Self.sessionID(done, rig))
        let second = try rig.enqueue("second turn", agent: "build", ["--session", bgqSession])
        #expect(try rig.waitFor(second, .completed).result == "done: second turn")
        #expect(try server.requests("POST", "/session").count == 1)
        #expect(try server.requests("POST", "/session/\(external)/prompt_async").count == 2)
    }

    // MARK: - Parent notices

    static func notices(_ server: FakeServer, parent: String) throws -> [(text: String, noReply: Bool)] {
        try server.requests("POST", "/session/\(parent)/prompt_async").compactMap { entry in
            guard let text = entry["body"]?["parts"]?.array?.first?["text"]?.string else { return nil }
            return (text, entry["body"]?["noReply"]?.bool ?? false)
        }
    }

    @Test func theParentSessionIsToldOncePerTaskAndOnceForTheBatch() throws {
        let (rig, server) = try Self.setUp()
        defer { rig.stop(); server.stop() }
        let parent = try #require(try server.request("POST", "/session", body: ["title": "lead"])?["id"]?.string)
        let ids = try ["a [busy 0.5]", "b [busy 1]", "c [error]"].map { try rig.enqueue($0, agent: "build", ["--parent", parent]) }
        try rig.startWorker("w1")
        for id in ids { try rig.waitFor(id, nil) }
        #expect(try eventually { try Self.notices(server, parent: parent).count == 4 })
        // Every notice is recorded sent, which is final: none is offered again, so nothing more arrives later.
        #expect(try eventually {
            let recorded = try ids.flatMap { try JSONValue.parse(try rig.ok(["show", $0, "--json"]))["parent_notices"]?.array ?? [] }
            return recorded.count == 4 && recorded.allSatisfy { $0["state"]?.string == "sent" }
        })
        let notices = try Self.notices(server, parent: parent)
        #expect(notices.count == 4, "notices: \(notices.map(\.text))")
        for id in ids {
            let perTask = notices.filter { $0.text.hasPrefix("[BACKGROUND TASK") && $0.text.contains("Task ID: \(id)\n") }
            #expect(perTask.count == 1 && perTask.allSatisfy(\.noReply), "task \(id): \(perTask)")
        }
        #expect(notices.contains { $0.text.contains("[BACKGROUND TASK FAILED]") && $0.text.contains("Provider said no") })
        let batch = notices.filter { $0.text.hasPrefix("[ALL BACKGROUND TASKS COMPLETE]") }
        #expect(batch.count == 1 && batch.first?.noReply == false, "the batch notice wakes the parent once")
        #expect(batch.first.map { text in ids.allSatisfy { text.text.contains($0) } } == true)
        // `bgq show --json` tells what became of a task's notices (and gives the agent's own session id).
        let shown = try JSONValue.parse(try rig.ok(["show", ids[0], "--json"]))
        #expect(shown["parent_notices"]?.array?.first?["state"]?.string == "sent", "\(shown.serialized)")
        #expect(shown["agent_session_id"]?.string?.hasPrefix("ses_") == true)
        // Each child session was created under the parent.
        #expect(try server.requests("POST", "/session").filter { $0["body"]?["parentID"]?.string == parent }.count == 3)
    }

    @Test func aNoticeLeftMidSendByADeadWorkerIsDeliveredExactlyOnce() throws {
        let (rig, server) = try Self.setUp(["lease_timeout_ms": 1500])
        defer { rig.stop(); server.stop() }
        let parent = try #require(try server.request("POST", "/session", body: ["title": "lead"])?["id"]?.string)
        let sent = try rig.enqueue("sent before the crash", agent: "build", ["--parent", parent])
        let unsent = try rig.enqueue("not sent before the crash", agent: "build", ["--parent", parent])
        // Run both to their end with a worker, but keep it from delivering notices: it is stopped (SIGSTOP)
        // right after the transitions, then the test plays the dead worker's part for the notices.
        let first = try rig.startWorker("w1")
        try rig.waitFor(sent, .completed)
        try rig.waitFor(unsent, .completed)
        rig.sigkill(first)
        // Undo whatever w1 managed to send, then put the notices in the state a crash mid-send leaves.
        let ghost = try rig.store.registerWorker(WorkerRegistration(name: "ghost", host: "vm", pid: 1, maxSessions: 1))
        try rig.store.connection.run("DELETE FROM parent_notices")
        try rig.store.connection.run("""
            INSERT INTO parent_notices (task_id, kind, parent_id, server, state, worker_id, attempts, created_at)
            SELECT id, 'task', parent_id, json_extract(run_handle, '$.parentServer'), 'sending', ?, 1, status_changed_at
            FROM tasks WHERE parent_id = ?
            """, [.text(ghost), .text(parent)])
        _ = try rig.store.setWorkerState(ghost, to: .dead, reason: "test")
        // The ghost had sent the first notice before it died. (w1 may have delivered either notice before
        // its SIGKILL: what counts is what the parent session holds, so the ghost's is added only if absent.)
        if try Self.held(server, parent: parent, taskID: sent) == 0 {
            let task = try rig.task(sent)
            try server.request("POST", "/session/\(parent)/prompt_async", body: [
                "noReply": true, "parts": [["type": "text", "text": .string(Notices.taskFinished(task, remaining: 1))]]])
        }
        try rig.startWorker("w2")
        #expect(try eventually { try rig.store.parentNotices(taskID: unsent).first?.state == .sent })
        #expect(try eventually { try rig.store.parentNotices(taskID: sent).first?.state == .sent })
        #expect(try Self.held(server, parent: parent, taskID: sent) == 1)
        #expect(try Self.held(server, parent: parent, taskID: unsent) == 1)
    }

    /// How many of a task's notices the parent session holds (its messages, not the request log).
    static func held(_ server: FakeServer, parent: String, taskID: String) throws -> Int {
        let messages = try server.request("GET", "/session/\(parent)/message")?.array ?? []
        return messages.filter { message in
            (message["parts"]?.array ?? []).contains { $0["text"]?.string?.contains("Task ID: \(taskID)\n") == true }
        }.count
    }
}
