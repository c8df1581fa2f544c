import Foundation
import Testing
@testable import BGQKit

/// `bgq mcp` over stdio with real JSON-RPC messages.
@Suite(.serialized) struct MCPTests {
    static func request(_ id: Int, _ method: String, _ params: [String: Any]? = nil) -> String {
        var object: [String: Any] = ["jsonrpc": "2.0", "id": id, "method": method]
        if let params { object["params"] = params }
        return String(decoding: try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self)
    }

    static func call(_ id: Int, _ tool: String, _ arguments: [String: Any]) -> String {
        request(id, "tools/call", ["name": tool, "arguments": arguments])
    }

    /// Sends the lines, returns the responses by id.
    /// Responses to messages that could not be parsed carry id null; they are counted under -1, -2, ….
    static func exchange(_ lines: [String], db: TempDatabase) throws -> [Int: [String: Any]] {
        let result = try BGQBinary.run(["mcp"], db: db, stdin: lines.joined(separator: "\n") + "\n", timeout: 60)
        #expect(result.status == 0, "\(result.stderr)")
        var responses: [Int: [String: Any]] = [:]
        for line in result.stdout.split(separator: "\n") {
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            #expect(object["jsonrpc"] as? String == "2.0")
            let key = (object["id"] as? Int) ?? -(responses.keys.filter { $0 < 0 }.count + 1)
            responses[key] = object
        }
        return responses
    }

    static func text(_ response: [String: Any]?) -> (String, Bool) {
        let result = response?["result"] as? [String: Any]
        let content = (result?["content"] as? [[String: Any]])?.first?["text"] as? String ?? ""
        return (content, result?["isError"] as? Bool ?? false)
    }

    @Test func handshakeToolsAndEachToolWithTheOriginalsTexts() throws {
        let db = TempDatabase()
        let store = try db.store()
        let pending = try #require(try store.enqueue([NewTask(description: "wait here", prompt: "p", agent: "noop")]).first)
        let worker = try store.registerWorker(name: "w", host: "h", pid: 1, maxSessions: 5)
        let done = try #require(try store.claimTasks(workerID: worker, capacity: 1).first)
        #expect(try store.finish(done, workerID: worker, outcome: .completed(result: "the answer")) == .owned)
        _ = try store.enqueue([NewTask(description: "to cancel", prompt: "p", agent: "noop")])
        let toCancel = try #require(try store.listTasks(TaskFilter()).first { $0.description == "to cancel" })
        _ = pending

        let responses = try Self.exchange([
            Self.request(1, "initialize", ["protocolVersion": "2025-06-18", "capabilities": [:] as [String: Any], "clientInfo": ["name": "test", "version": "1"]]),
            #"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            Self.request(2, "tools/list"),
            Self.call(3, "delegate_task", ["description": "Explore: auth", "prompt": "find the auth code", "agent": "noop"]),
            Self.call(4, "background_output", ["task_id": done.id]),
            Self.call(5, "background_output", ["task_id": "bg_ffffffff"]),
            Self.call(6, "background_cancel", ["taskId": toCancel.id]),
            Self.call(7, "background_cancel", ["taskId": done.id]),
            Self.call(8, "background_cancel", [:]),
            Self.call(9, "delegate_task", ["description": "no prompt", "agent": "noop"]),
            Self.call(10, "delegate_task", ["description": "d", "prompt": "p", "agent": "nosuch"]),
            Self.call(11, "no_such_tool", [:]),
            Self.request(12, "resources/list"),
            #"{"jsonrpc":"2.0","id":13,"method":"tools/call","params":{"name":"delegate_task","arguments":{"prompt":"a","prompt":"b"}}}"#,
            "{not json",
            Self.request(14, "ping"),
            Self.call(15, "background_output", ["task_id": toCancel.id]),
        ], db: db)

        let initialize = try #require(responses[1]?["result"] as? [String: Any])
        #expect(initialize["protocolVersion"] as? String == "2025-06-18")
        #expect((initialize["serverInfo"] as? [String: Any])?["name"] as? String == "bgq")
        #expect((initialize["capabilities"] as? [String: Any])?["tools"] != nil)
        let tools = try #require((responses[2]?["result"] as? [String: Any])?["tools"] as? [[String: Any]])
        #expect(tools.map { $0["name"] as? String } == ["delegate_task", "background_output", "background_cancel"])
        let delegateSchema = try #require(tools[0]["inputSchema"] as? [String: Any])
        #expect(Set(((delegateSchema["properties"] as? [String: Any]) ?? [:]).keys) == ["description", "prompt", "agent", "model", "run_in_background", "session_id"])

        let (launched, launchError) = Self.text(responses[3])
        #expect(!launchError)
        #expect(launched.hasPrefix("Background task launched.\n\nTask ID: bg_"))
        #expect(launched.contains("Session ID: (pending)\nDescription: Explore: auth\nAgent: noop\nStatus: pending"))
        #expect(launched.contains("Use background_output with task_id=\"bg_"))
        #expect(try store.listTasks(TaskFilter()).contains { $0.description == "Explore: auth" }, "a bgq worker would run what the agent delegated")

        #expect(Self.text(responses[4]).0.hasPrefix("Task Result\n\nTask ID: \(done.id)"))
        #expect(Self.text(responses[4]).0.hasSuffix("---\n\nthe answer"))
        #expect(Self.text(responses[5]) == ("Task not found: bg_ffffffff", true))
        #expect(Self.text(responses[6]).0.hasPrefix("Cancelled 1 background task(s):"))
        #expect(Self.text(responses[6]).0.contains("(not started)"))
        #expect(Self.text(responses[7]) == ("[ERROR] Cannot cancel task: current status is \"completed\".\nOnly running or pending tasks can be cancelled.", true))
        #expect(Self.text(responses[8]) == ("[ERROR] Invalid arguments: Either provide a taskId or set all=true to cancel all running tasks.", true))
        #expect(Self.text(responses[9]).1, "missing prompt is an error result")
        #expect(Self.text(responses[10]).0.contains("unknown agent 'nosuch'"))
        #expect((responses[11]?["error"] as? [String: Any])?["code"] as? Int == -32602)
        #expect((responses[12]?["error"] as? [String: Any])?["code"] as? Int == -32601)
        // The message with a duplicated key and the one that is not JSON: parse errors, answered with id null.
        #expect(responses[13] == nil)
        #expect((responses[-1]?["error"] as? [String: Any])?["code"] as? Int == -32700)
        #expect((responses[-2]?["error"] as? [String: Any])?["code"] as? Int == -32700)
        #expect(responses[14]?["result"] != nil)
        #expect(Self.text(responses[15]).0.contains("| Status | **cancelled** |"))
    }

    @Test func aForegroundDelegateWaitsForAWorkersResult() throws {
        let db = TempDatabase()
        try BGQBinary.run(["settings", "set", "poll_interval_ms", "100ms"], db: db)
        let worker = try BGQBinary.start(["worker"], db: db)
        defer { kill(worker.processIdentifier, SIGKILL); worker.waitUntilExit() }
        let responses = try Self.exchange([
            Self.request(1, "initialize", ["protocolVersion": "2025-06-18", "capabilities": [:] as [String: Any], "clientInfo": ["name": "t", "version": "1"]]),
            Self.call(2, "delegate_task", ["description": "echo", "prompt": "echo from a worker", "agent": "shell", "run_in_background": false]),
        ], db: db)
        let (text, isError) = Self.text(responses[2])
        #expect(!isError)
        #expect(text.hasPrefix("Task Result"))
        #expect(text.hasSuffix("from a worker"))
    }
}
