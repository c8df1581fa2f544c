import Foundation
import Testing
@testable import BGQBackends
@testable import BGQCLI
@testable import BGQCore
@testable import BGQSQLite
@testable import BGQScheduler
@testable import BGQSystem

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
        let worker = try store.registerWorker(WorkerRegistration(name: "w", host: "h", pid: 1, maxSessions: 5))
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
        #expect((responses[14]?["result"] as? [String: Any])?.isEmpty == true, "a ping is answered with an empty result")
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

/// `bgq mcp` against the 2025-11-25 specification: version negotiation, JSON-RPC error codes, validated
/// arguments, and requests that run concurrently, can be cancelled and report progress.
@Suite(.serialized) struct MCPSpecificationTests {
    static func error(_ response: [String: Any]?) -> (code: Int?, message: String) {
        let error = response?["error"] as? [String: Any]
        return (error?["code"] as? Int, error?["message"] as? String ?? "")
    }

    @Test func versionNegotiationAndJSONRPCErrorCodes() throws {
        let db = TempDatabase()
        let initialize = { (id: Int, version: String) in
            MCPTests.request(id, "initialize", ["protocolVersion": version, "capabilities": [:] as [String: Any], "clientInfo": ["name": "t", "version": "1"]])
        }
        let responses = try MCPTests.exchange([
            initialize(1, "2025-11-25"),
            initialize(2, "2024-11-05"),
            initialize(3, "2099-01-01"),
            MCPTests.request(4, "initialize", ["capabilities": [:] as [String: Any]]),
            "[" + MCPTests.request(5, "ping") + "]",                        // -1: a batch
            #""just a string""#,                                              // -2
            #"{"jsonrpc":"1.0","id":6,"method":"ping"}"#,                     // answered with its id
            #"{"jsonrpc":"2.0","id":{"n":7},"method":"ping"}"#,               // -3: an id of the wrong type
            #"{"jsonrpc":"2.0","id":null,"method":"ping"}"#,                  // -4: MCP ids are never null
            #"{"jsonrpc":"2.0","id":8}"#,
            #"{"jsonrpc":"2.0","id":9,"method":"ping","params":[1]}"#,
            MCPTests.request(10, "tools/call", ["arguments": [:] as [String: Any]]),
            #"{"jsonrpc":"2.0","id":11,"method":"tools/call","params":{"name":"background_cancel","arguments":[true]}}"#,
            MCPTests.request(12, "tools/call", ["name": "background_cancel", "arguments": ["all": true], "_meta": ["progressToken": 1.5]]),
            MCPTests.request(13, "prompts/list"),
            #"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":99}}"#,  // unknown request: ignored
        ], db: db)

        #expect((responses[1]?["result"] as? [String: Any])?["protocolVersion"] as? String == "2025-11-25")
        #expect((responses[2]?["result"] as? [String: Any])?["protocolVersion"] as? String == "2024-11-05", "a supported older revision is kept")
        #expect((responses[3]?["result"] as? [String: Any])?["protocolVersion"] as? String == "2025-11-25", "an unknown revision gets bgq's latest")
        #expect(Self.error(responses[4]) == (-32602, "initialize needs params.protocolVersion, a string such as \"2025-11-25\""))
        #expect(Self.error(responses[-1]).code == -32600)
        #expect(Self.error(responses[-1]).message.hasPrefix("batches are not supported"))
        #expect(Self.error(responses[-2]) == (-32600, "a JSON-RPC message is an object, not a string"))
        #expect(Self.error(responses[6]) == (-32600, "\"jsonrpc\" must be \"2.0\""))
        #expect(Self.error(responses[-3]) == (-32600, "\"id\" must be a string or an integer, not an object"))
        #expect(Self.error(responses[-4]) == (-32600, "\"id\" must be a string or an integer, not null"))
        #expect(Self.error(responses[8]) == (-32600, "no \"method\": a request names its method"))
        #expect(Self.error(responses[9]) == (-32602, "\"params\" of ping must be an object, not an array"))
        #expect(Self.error(responses[10]) == (-32602, "tools/call needs params.name, the tool's name"))
        #expect(Self.error(responses[11]) == (-32602, "tools/call params.arguments must be an object, not an array"))
        #expect(Self.error(responses[12]) == (-32602, "params._meta.progressToken must be a string or an integer, not a number"))
        #expect(Self.error(responses[13]).code == -32601)
        #expect(responses[-5] == nil, "nothing else was answered with id null")
    }

    @Test func argumentsThatDoNotFitTheSchemaAreErrorResultsNamingEachArgument() throws {
        let db = TempDatabase()
        let pending = try #require(try db.store().enqueue([NewTask(description: "waits", prompt: "p", agent: "noop")]).first)
        let responses = try MCPTests.exchange([
            MCPTests.call(1, "delegate_task", ["description": "d", "prompt": 5, "agent": "shell", "subagent_type": "x"]),
            MCPTests.call(2, "background_output", ["task_id": "bg_1", "block": "yes", "timeout": -5]),
            MCPTests.call(3, "delegate_task", ["description": "", "agent": "shell"]),
            MCPTests.call(4, "background_cancel", ["taskId": 7]),
            #"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"background_output","arguments":{"task_id":"\#(pending.id)","timeout":1e300}}}"#,
        ], db: db)
        #expect(MCPTests.text(responses[1]) == ("[ERROR] Invalid arguments for delegate_task: unknown argument 'subagent_type' (the arguments are "
            + "agent, description, model, prompt, run_in_background, session_id); 'prompt' must be a string, not an integer.", true))
        #expect(MCPTests.text(responses[2]) == ("[ERROR] Invalid arguments for background_output: 'block' must be true or false, not a string; "
            + "'timeout' must be at least 0.", true))
        #expect(MCPTests.text(responses[3]) == ("[ERROR] Invalid arguments for delegate_task: 'prompt' is required (a string); 'description' must not be empty.", true))
        #expect(MCPTests.text(responses[4]) == ("[ERROR] Invalid arguments for background_cancel: 'taskId' must be a string, not an integer.", true))
        #expect(MCPTests.text(responses[5]).0.contains("| Status | **pending** |"), "a huge timeout is capped at 600000 ms, not a crash")
        #expect(try db.store().listTasks(TaskFilter()).map(\.id) == [pending.id], "nothing was enqueued")
    }

    @Test func aLongWaitLeavesTheServerFreeReportsProgressAndEndsOnCancellation() throws {
        let db = TempDatabase()
        let store = try db.store()
        let waiting = try #require(try store.enqueue([NewTask(description: "no worker runs this", prompt: "p", agent: "noop")]).first)
        let other = try #require(try store.enqueue([NewTask(description: "another", prompt: "p", agent: "noop")]).first)
        let session = try MCPSession(db: db)
        defer { session.stop() }
        session.send(MCPTests.request(1, "initialize", ["protocolVersion": "2025-11-25", "capabilities": [:] as [String: Any], "clientInfo": ["name": "t", "version": "1"]]))
        session.send(#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
        session.send(MCPTests.request(2, "tools/call", ["name": "background_output", "arguments": ["task_id": waiting.id, "block": true, "timeout": 600_000],
                                                        "_meta": ["progressToken": "wait-2"]]))
        session.send(#"{"jsonrpc":"2.0","id":"ping-3","method":"ping"}"#)
        session.send(MCPTests.call(4, "background_output", ["task_id": other.id]))
        // The ping and the second call are answered while the first still waits for a task nobody runs.
        #expect(eventually(timeout: 20) { session.response(id: "ping-3") != nil && session.response(id: 4) != nil })
        #expect((session.response(id: "ping-3")?["result"] as? [String: Any])?.isEmpty == true)
        #expect(MCPTests.text(session.response(id: 4)).0.contains("| Status | **pending** |"))
        #expect(eventually(timeout: 20) { !session.progress(token: "wait-2").isEmpty }, "a wait with a progressToken reports progress")
        #expect(session.response(id: 2) == nil)

        session.send(#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":2,"reason":"the user moved on"}}"#)
        session.closeInput()
        #expect(session.exits(within: 20), "the cancelled wait ends, so bgq mcp exits at end of input")
        #expect(session.response(id: 2) == nil, "a cancelled request gets no response")
        let progress = session.progress(token: "wait-2")
        let values = progress.compactMap { $0["progress"] as? Double }
        #expect(values.count == progress.count && values == values.sorted() && Set(values).count == values.count, "progress only increases: \(values)")
        #expect(progress.allSatisfy { $0["total"] as? Double == 600 })
        #expect((progress.first?["message"] as? String)?.hasPrefix("Task \(waiting.id) is pending; waited 0 s of 600 s") == true)
        #expect(try store.requireTask(id: waiting.id).status == .pending, "cancelling the wait does not cancel the task")
    }
}

/// A `bgq mcp` process spoken to line by line, its output collected as it comes.
final class MCPSession: @unchecked Sendable {
    private let process = Process()
    private let input = Pipe(), output = Pipe()
    private let lock = NSLock()
    private var messages: [[String: Any]] = []
    private let reader = DispatchGroup()

    init(db: TempDatabase) throws {
        process.executableURL = URL(fileURLWithPath: BGQBinary.path)
        process.arguments = ["mcp", "--db", db.path]
        process.standardInput = input
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        ignoreSIGPIPE
        try process.run()
        let handle = output.fileHandleForReading
        DispatchQueue.global().async(group: reader) { [self] in
            var buffer = Data()
            while true {
                let chunk = handle.availableData
                if chunk.isEmpty { break }
                buffer.append(chunk)
                while let newline = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                    let line = buffer[buffer.startIndex..<newline]
                    buffer = Data(buffer[(newline + 1)...])
                    let object = (try? JSONSerialization.jsonObject(with: line)) as? [String: Any] ?? ["unparsed": String(decoding: line, as: UTF8.self)]
                    lock.lock()
                    messages.append(object)
                    lock.unlock()
                }
            }
        }
    }

    func send(_ line: String) { try? input.fileHandleForWriting.write(contentsOf: Data((line + "\n").utf8)) }

    func closeInput() { try? input.fileHandleForWriting.close() }

    var received: [[String: Any]] {
        lock.lock()
        defer { lock.unlock() }
        return messages
    }

    func response(id: AnyHashable) -> [String: Any]? {
        received.first { ($0["id"] as? AnyHashable) == id && $0["method"] == nil }
    }

    /// The params of every progress notification for `token`, in order.
    func progress(token: String) -> [[String: Any]] {
        received.filter { $0["method"] as? String == "notifications/progress" }
            .compactMap { $0["params"] as? [String: Any] }.filter { $0["progressToken"] as? String == token }
    }

    func exits(within seconds: TimeInterval) -> Bool {
        let exited = eventually(timeout: seconds) { !process.isRunning }
        if exited { reader.wait() }
        return exited
    }

    func stop() {
        closeInput()
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }
}
