import Foundation
import Testing
@testable import BGQBackends
@testable import BGQCLI
@testable import BGQCore
@testable import BGQSQLite
@testable import BGQScheduler
@testable import BGQSystem

/// Streamed provider replies, end to end: real `bgq worker` processes, the fake provider streaming server-sent
/// events over real HTTP. The fake holds a stream (`[hold NAME]`) until the test has seen what it wants, so
/// nothing waits on a fixed sleep.
extension ProviderBackendTests {
    /// A task's `bgq show ID --json`.
    static func shown(_ rig: Rig, _ id: String) throws -> JSONValue {
        try #require(JSONValue.parse(data: Data(try rig.ok(["show", id, "--json"]).utf8)))
    }

    /// The token counts the worker logged for a task (`tokens: N in, M out`).
    static func loggedUsage(_ worker: WorkerProcessTests.StartedWorker, _ id: String) -> String? {
        worker.log.split(separator: "\n").first { $0.contains(id) && $0.contains("tokens: ") }
            .map { String($0[$0.range(of: "tokens: ")!.lowerBound...]) }
    }

    /// While the provider streams, `bgq show --json` shows the answer growing (the task still running, no result
    /// yet, its progress time moving); the result is the whole answer, the stored pieces add up to it, and the
    /// token counts the stream reported reach the worker.
    @Test(arguments: [("smol", ProviderBackendTests.openaiPath), ("ant", ProviderBackendTests.anthropicPath)])
    func aStreamedAnswerShowsWhileItGrowsAndTheResultIsTheWhole(agent: String, path: String) throws {
        let rig = try Rig()
        defer { rig.stop() }
        let (server, worker) = try Self.bothAPIs(rig)
        defer { server.stop() }

        let prompt = "Tell the long story of the queue that never sleeps [hold \(agent)]"
        let expected = "reply 1: \(prompt)"
        let id = try rig.enqueue(prompt, agent: agent)
        var seen = JSONValue.null
        let partial = try eventually(timeout: 20) {
            seen = try Self.shown(rig, id)
            let last = seen["last_message"]?.string ?? ""
            return !last.isEmpty && last != expected
        }
        #expect(partial, "no partial answer shown: \(seen)\n\(rig.logs)")
        let last = seen["last_message"]?.string ?? ""
        #expect(expected.hasPrefix(last), "shown: \(last)")
        #expect(seen["status"]?.string == "running" && seen["result"] == .null, "\(seen)")
        // The progress time moved with the text: it is that of the piece, stored after the prompt.
        let stored = try rig.store.messages(taskID: id)
        let promptAt = try #require(stored.first { $0.role == .user }?.at)
        let pieceAt = try #require(stored.last { $0.role == .assistant && $0.kind == .text }?.at)
        let progressAt = try #require(try rig.task(id).progress.lastProgressAt)
        #expect(pieceAt > promptAt && progressAt >= pieceAt, "prompt \(promptAt), piece \(pieceAt), progress \(progressAt)")
        let sent = try Self.requests(server, path, prompt: prompt)
        #expect(sent.count == 1 && sent.first?["body"]?["stream"] == .bool(true), "\(sent)")

        try server.request("POST", "/_test/release?name=\(agent)")
        let task = try rig.waitFor(id, .completed)
        #expect(task.result == expected, rig.comment)
        let pieces = try rig.store.messages(taskID: id).filter { $0.role == .assistant && $0.kind == .text }
        #expect(pieces.count >= 2 && pieces.map(\.content).joined() == expected, "\(pieces.map(\.content))")

        let usage = try #require(try Self.requests(server, path, prompt: prompt).first?["usage"], "the fake reported no usage")
        let counts = "tokens: \(Int(usage["input_tokens"]?.number ?? -1)) in, \(Int(usage["output_tokens"]?.number ?? -1)) out"
        #expect(Self.loggedUsage(worker, id) == counts, "\(rig.logs)")
    }

    /// A stream cut before its last event (no `[DONE]`, no `message_stop`) is a truncated reply: retried, then
    /// complete. A server that ignores `stream` and answers one JSON body still works.
    @Test func aCutStreamIsRetriedAndAServerThatDoesNotStreamStillWorks() throws {
        let rig = try Rig()
        defer { rig.stop() }
        let (server, worker) = try Self.bothAPIs(rig)
        defer { server.stop() }

        let cut = "Cut me off once [cut 1]"
        let plain = "Answer in one piece [no-stream]"
        let cases = try [(cut, "smol", Self.openaiPath), (cut, "ant", Self.anthropicPath),
                         (plain, "smol", Self.openaiPath), (plain, "ant", Self.anthropicPath)].map { prompt, agent, path in
            (id: try rig.enqueue(prompt, agent: agent), prompt: prompt, path: path)
        }
        for item in cases {
            let task = try rig.waitFor(item.id, .completed)
            #expect(task.result == "reply 1: \(item.prompt)", rig.comment)
            let sent = try Self.requests(server, item.path, prompt: item.prompt)
            #expect(sent.count == (item.prompt == cut ? 2 : 1), "\(item.path): \(Self.statuses(sent))")
        }
        // The JSON body's usage is read too.
        #expect(Self.loggedUsage(worker, cases[2].id)?.hasPrefix("tokens: ") == true, "\(rig.logs)")
        #expect(!rig.exited(worker))
    }

    /// An error inside the stream: a final one ends the task with the provider's message at once; one that
    /// stands for a retryable status (Anthropic's `overloaded_error` is its 529) is retried, then completes.
    @Test func anErrorEventEndsTheTaskWithTheProvidersMessageOrIsRetried() throws {
        let rig = try Rig()
        defer { rig.stop() }
        let (server, worker) = try Self.bothAPIs(rig)
        defer { server.stop() }

        let final = "Refuse mid-way [stream-error invalid_request_error]"
        let overloaded = "Overloaded mid-way [stream-error overloaded_error 1]"
        let failing = try [("smol", Self.openaiPath), ("ant", Self.anthropicPath)].map { agent, path in
            (try rig.enqueue(final, agent: agent), path)
        }
        let retried = try [("smol", Self.openaiPath), ("ant", Self.anthropicPath)].map { agent, path in
            (try rig.enqueue(overloaded, agent: agent), path)
        }
        for (id, path) in failing {
            let error = try rig.waitFor(id, .error).error ?? ""
            #expect(error.contains("Stream failed (fake): invalid_request_error") && error.contains("POST \(path)"), "error: \(error)")
            #expect(!error.contains("\n") && !error.contains("gave up"), "error: \(error)")
            #expect(try Self.requests(server, path, prompt: final).count == 1)
        }
        for (id, path) in retried {
            let task = try rig.waitFor(id, .completed)
            #expect(task.result == "reply 1: \(overloaded)", rig.comment)
            #expect(try Self.requests(server, path, prompt: overloaded).count == 2)
        }
        #expect(!rig.exited(worker))
    }

    /// A stream that stops mid-event: each try ends after the read timeout, and the task ends saying it timed out.
    @Test func aStalledStreamEndsWithTheTimedOutReason() throws {
        let rig = try Rig()
        defer { rig.stop() }
        let server = try Self.provider(rig)
        defer { server.stop() }
        try Self.addAgent(rig, "smol", preset: "openai", url: server.url + "/v1", model: "local/smollm2")
        try Self.addAgent(rig, "ant", preset: "anthropic", url: server.url, model: "anthropic/claude-x")
        let worker = try rig.startWorker("w1", environment: ["OPENAI_API_KEY": "sk-test", "ANTHROPIC_API_KEY": "sk-ant-test",
                                                             "BGQ_HTTP_READ_TIMEOUT_MS": "1000"])
        let prompt = "Go quiet mid-way [stall]"
        let ids = try [("smol", Self.openaiPath), ("ant", Self.anthropicPath)].map { (try rig.enqueue(prompt, agent: $0), $1) }
        for (id, path) in ids {
            let error = try rig.waitFor(id, .error, timeout: 90).error ?? ""
            #expect(error.contains("the stream from POST \(path)") && error.contains("timed out: nothing arrived for 1 second"), "error: \(error)")
            #expect(error.contains("gave up after 5 retries") && !error.contains("\n"), "error: \(error)")
            #expect(try Self.requests(server, path, prompt: prompt).count == 6)
        }
        #expect(!rig.exited(worker))
        #expect(try rig.waitFor(try rig.enqueue("After the silence", agent: "smol"), .completed).result == "reply 1: After the silence")
    }
}
