import Foundation
import Testing
@testable import BGQBackends
@testable import BGQCLI
@testable import BGQCore
@testable import BGQSQLite
@testable import BGQScheduler
@testable import BGQSystem

/// The `openai` and `anthropic` session backends, end to end: real `bgq worker` processes calling the fake
/// provider (Tests/Servers/fake_provider.py) over real HTTP on 127.0.0.1, as a user sets them up with
/// `bgq agents add … --preset openai|anthropic --url … --model …`. Markers in the prompt make the fake
/// rate-limit, overload, fail or stall; its request log (GET /_test/log) shows what bgq sent.
///
/// Each test asserts what a user would notice (the task's status, result and error, `bgq show`, what the
/// provider received); waits are bounded (`eventually`, `waitFor`); nothing asserts on how long anything took.
@Suite(.serialized) struct ProviderBackendTests {
    typealias Rig = WorkerProcessTests.Rig

    static let openaiPath = "/v1/chat/completions"
    static let anthropicPath = "/v1/messages"

    // MARK: - Helpers

    /// A fake provider beside the rig's database. Started with SIGTERM and SIGINT unblocked: a child inherits
    /// the signal mask of the thread that starts it, and the threads running these tests may block them (the
    /// server would then ignore `terminate()`, and `stop()` would wait for it forever).
    static func provider(_ rig: Rig) throws -> FakeServer {
        try FakeServer("fake_provider.py", directory: rig.db.directory)
    }

    /// A self-signed certificate and its key for CN=localhost with these subjectAltNames, beside the database.
    static func selfSignedCertificate(_ rig: Rig, altNames: String) throws -> (cert: String, key: String) {
        let cert = rig.path("cert.pem"), key = rig.path("key.pem")
        let made = try ForeignCommand.run("/usr/bin/env", ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                                                           "-out", cert, "-days", "2", "-subj", "/CN=localhost",
                                                           "-addext", "subjectAltName=\(altNames)"])
        try #require(made.status == 0, "openssl: \(made.stderr)")
        return (cert, key)
    }

    /// A fake provider with an `openai` agent `smol` and an `anthropic` agent `ant` on it, and a worker
    /// `w1` holding both keys.
    static func bothAPIs(_ rig: Rig) throws -> (FakeServer, WorkerProcessTests.StartedWorker) {
        let server = try provider(rig)
        try addAgent(rig, "smol", preset: "openai", url: server.url + "/v1", model: "local/smollm2")
        try addAgent(rig, "ant", preset: "anthropic", url: server.url, model: "anthropic/claude-x")
        let worker = try rig.startWorker("w1", environment: ["OPENAI_API_KEY": "sk-test", "ANTHROPIC_API_KEY": "sk-ant-test"])
        return (server, worker)
    }

    /// `bgq agents add NAME --preset PRESET --url URL --model MODEL [--api-key-env VAR]`.
    static func addAgent(_ rig: Rig, _ name: String, preset: String, url: String, model: String, keyVariable: String? = nil) throws {
        try rig.ok(["agents", "add", name, "--preset", preset, "--url", url, "--model", model]
                   + (keyVariable.map { ["--api-key-env", $0] } ?? []))
    }

    /// The requests the provider received for this prompt (the last message's text), oldest first.
    static func requests(_ server: FakeServer, _ path: String, prompt: String) throws -> [JSONValue] {
        try server.requests("POST", path).filter { $0["body"]?["messages"]?.array?.last?["content"]?.string == prompt }
    }

    /// The HTTP statuses the provider answered these requests with (nil while one is pending).
    static func statuses(_ requests: [JSONValue]) -> [Int?] {
        requests.map { $0["status"]?.number.map { Int($0) } }
    }

    /// The messages of a logged request as (role, content) pairs.
    static func turns(_ request: JSONValue?) -> [[String]] {
        (request?["body"]?["messages"]?.array ?? []).map { [$0["role"]?.string ?? "?", $0["content"]?.string ?? "?"] }
    }

    /// A port on 127.0.0.1 where nothing listens (bound to find a free one, then closed).
    static func closedPort() -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        _ = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    /// A listener on 127.0.0.1 that accepts each connection and closes it at once without a word: a provider
    /// that is there but never answers (every attempt fails), and counts the attempts.
    final class DroppingListener: @unchecked Sendable {
        let fd: Int32
        let port: Int
        private let lock = NSLock()
        private var accepted = 0
        private var closed = false
        private let done = DispatchSemaphore(value: 0)

        init() throws {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            self.fd = fd
            var reuse: Int32 = 1
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &reuse, socklen_t(MemoryLayout<Int32>.size))
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = 0
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            let bound = withUnsafeMutablePointer(to: &address) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
            }
            guard bound == 0, listen(fd, 16) == 0 else {
                close(fd)
                throw BGQError.failure("cannot listen on 127.0.0.1: errno \(errno)")
            }
            _ = withUnsafeMutablePointer(to: &address) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
            }
            port = Int(UInt16(bigEndian: address.sin_port))
            let thread = Thread { [self] in
                while true {
                    let client = accept(self.fd, nil, nil)
                    if client < 0 {
                        if errno == EINTR { continue }
                        break
                    }
                    lock.withLock { accepted += 1 }
                    // Reset rather than a polite close: the client sees the connection drop.
                    var option = linger(l_onoff: 1, l_linger: 0)
                    setsockopt(client, SOL_SOCKET, SO_LINGER, &option, socklen_t(MemoryLayout<linger>.size))
                    close(client)
                }
                done.signal()
            }
            thread.start()
        }

        var connections: Int { lock.withLock { accepted } }
        var url: String { "http://127.0.0.1:\(port)" }

        func stop() {
            let first = lock.withLock { () -> Bool in
                defer { closed = true }
                return !closed
            }
            guard first else { return }
            shutdown(fd, Int32(SHUT_RDWR))
            close(fd)
            _ = done.wait(timeout: .now() + 5)
        }

        deinit { stop() }
    }

    // MARK: - Calls and conversations

    /// A task completes with the provider's reply; the request names the model without its provider, and
    /// carries `Authorization: Bearer <key>` only when the key's variable is set in the worker's environment.
    @Test func openaiTaskCompletesWithTheReplyAndSendsTheKeyOnlyWhenSet() throws {
        let rig = try Rig()
        defer { rig.stop() }
        let server = try Self.provider(rig)
        defer { server.stop() }
        try Self.addAgent(rig, "smol", preset: "openai", url: server.url + "/v1", model: "local/smollm2")
        try Self.addAgent(rig, "keyless", preset: "openai", url: server.url + "/v1", model: "local/smollm2",
                          keyVariable: "BGQ_TEST_UNSET_OPENAI_KEY_7Q2")
        let worker = try rig.startWorker("w1", environment: ["OPENAI_API_KEY": "sk-test-123"])

        let prompt = "Say hello to the queue"
        let id = try rig.enqueue(prompt, agent: "smol")
        let task = try rig.waitFor(id, .completed)
        #expect(task.result == "reply 1: \(prompt)", rig.comment)
        #expect(task.workerID == worker.id)
        let shown = try rig.ok(["show", id])
        #expect(shown.contains("reply 1: \(prompt)"), "bgq show printed: \(shown)")

        let sent = try Self.requests(server, Self.openaiPath, prompt: prompt)
        #expect(sent.count == 1, "\(sent)")
        #expect(sent.first?["body"]?["model"]?.string == "smollm2", "\(sent)")
        #expect(sent.first?["headers"]?["authorization"]?.string == "Bearer sk-test-123", "\(sent)")
        #expect(Self.turns(sent.first) == [["user", prompt]], "\(sent)")

        let keyless = "No key for this one"
        let other = try rig.waitFor(try rig.enqueue(keyless, agent: "keyless"), .completed)
        #expect(other.result == "reply 1: \(keyless)", rig.comment)
        let unkeyed = try Self.requests(server, Self.openaiPath, prompt: keyless)
        #expect(unkeyed.count == 1, "\(unkeyed)")
        #expect(unkeyed.first?["headers"]?["authorization"] == nil, "an authorization header without a key: \(unkeyed)")
        #expect(unkeyed.first?["body"]?["model"]?.string == "smollm2")
    }

    /// `bgq enqueue --session` continues the conversation: the earlier turns are sent again.
    @Test func continuingAnOpenAISessionSendsTheEarlierTurns() throws {
        let rig = try Rig()
        defer { rig.stop() }
        let server = try Self.provider(rig)
        defer { server.stop() }
        try Self.addAgent(rig, "smol", preset: "openai", url: server.url + "/v1", model: "local/smollm2")
        try rig.startWorker("w1", environment: ["OPENAI_API_KEY": "sk-test-123"])

        let first = "Remember the number 42"
        let done = try rig.waitFor(try rig.enqueue(first, agent: "smol"), .completed)
        #expect(done.result == "reply 1: \(first)", rig.comment)
        let sessionID = try #require(done.sessionID, rig.comment)

        let second = "Which number was it?"
        let id = try rig.enqueue(second, agent: nil, ["--session", sessionID])
        let continued = try rig.waitFor(id, .completed)
        #expect(continued.result == "reply 2: \(second)", rig.comment)
        #expect(continued.sessionID == sessionID)
        let sent = try Self.requests(server, Self.openaiPath, prompt: second)
        #expect(sent.count == 1, "\(sent)")
        #expect(Self.turns(sent.first) == [["user", first], ["assistant", "reply 1: \(first)"], ["user", second]], "\(sent)")

        // A third turn carries both earlier exchanges.
        let third = "And twice that?"
        let again = try rig.waitFor(try rig.enqueue(third, agent: nil, ["--session", sessionID]), .completed)
        #expect(again.result == "reply 3: \(third)", rig.comment)
        #expect(Self.turns(try Self.requests(server, Self.openaiPath, prompt: third).first)
                == [["user", first], ["assistant", "reply 1: \(first)"], ["user", second], ["assistant", "reply 2: \(second)"], ["user", third]])
    }

    @Test func anthropicTaskSendsItsHeadersAndContinuesItsSession() throws {
        let rig = try Rig()
        defer { rig.stop() }
        let server = try Self.provider(rig)
        defer { server.stop() }
        try Self.addAgent(rig, "ant", preset: "anthropic", url: server.url, model: "anthropic/claude-x")
        try rig.startWorker("w1", environment: ["ANTHROPIC_API_KEY": "sk-ant-test"])

        let first = "Plan the refactor"
        let done = try rig.waitFor(try rig.enqueue(first, agent: "ant"), .completed)
        #expect(done.result == "reply 1: \(first)", rig.comment)
        let shown = try rig.ok(["show", done.id])
        #expect(shown.contains("reply 1: \(first)"), "bgq show printed: \(shown)")
        let sent = try Self.requests(server, Self.anthropicPath, prompt: first)
        #expect(sent.count == 1, "\(sent)")
        let request = try #require(sent.first)
        #expect(request["headers"]?["x-api-key"]?.string == "sk-ant-test", "\(request)")
        #expect(request["headers"]?["anthropic-version"]?.string == "2023-06-01", "\(request)")
        #expect(request["headers"]?["authorization"] == nil, "\(request)")
        #expect(request["body"]?["model"]?.string == "claude-x", "\(request)")
        #expect((request["body"]?["max_tokens"]?.number ?? 0) > 0, "no max_tokens: \(request)")

        let sessionID = try #require(done.sessionID)
        let second = "Now do step one"
        let continued = try rig.waitFor(try rig.enqueue(second, agent: nil, ["--session", sessionID]), .completed)
        #expect(continued.result == "reply 2: \(second)", rig.comment)
        let next = try Self.requests(server, Self.anthropicPath, prompt: second)
        #expect(next.count == 1, "\(next)")
        #expect(Self.turns(next.first) == [["user", first], ["assistant", "reply 1: \(first)"], ["user", second]], "\(next)")
        #expect(next.first?["headers"]?["anthropic-version"]?.string == "2023-06-01")
        #expect((next.first?["body"]?["max_tokens"]?.number ?? 0) > 0)
    }

    // MARK: - Retries

    /// 429 with retry-after-ms: retried as the provider asks, and the task completes.
    @Test func rateLimitedCallsAreRetriedAndComplete() throws {
        let rig = try Rig()
        defer { rig.stop() }
        let (server, _) = try Self.bothAPIs(rig)
        defer { server.stop() }

        let prompt = "Busy provider [rate-limit 2]"
        let openai = try rig.enqueue(prompt, agent: "smol")
        let anthropic = try rig.enqueue(prompt, agent: "ant")
        for (id, path) in [(openai, Self.openaiPath), (anthropic, Self.anthropicPath)] {
            let task = try rig.waitFor(id, .completed)
            #expect(task.result == "reply 1: \(prompt)", rig.comment)
            let sent = try Self.requests(server, path, prompt: prompt)
            #expect(Self.statuses(sent) == [429, 429, 200], "\(path): \(sent)")
        }
    }

    /// A provider that never stops rate-limiting: the task ends in error after the bounded retries, quoting it.
    @Test func endlessRateLimitGivesUpAfterFiveRetries() throws {
        let rig = try Rig()
        defer { rig.stop() }
        let (server, worker) = try Self.bothAPIs(rig)
        defer { server.stop() }

        let prompt = "Never now [rate-limit-always]"
        let openai = try rig.enqueue(prompt, agent: "smol")
        let anthropic = try rig.enqueue(prompt, agent: "ant")
        for (id, path) in [(openai, Self.openaiPath), (anthropic, Self.anthropicPath)] {
            let task = try rig.waitFor(id, .error)
            let error = task.error ?? ""
            #expect(error.contains("Rate limited (fake)"), "error: \(error)")
            #expect(error.contains("429"), "error: \(error)")
            #expect(error.contains("gave up after 5 retries"), "error: \(error)")
            #expect(error.contains("POST \(path)"), "error: \(error)")
            let sent = try Self.requests(server, path, prompt: prompt)
            #expect(sent.count == 6, "\(path): \(Self.statuses(sent))")
            #expect(Self.statuses(sent).allSatisfy { $0 == 429 }, "\(path): \(Self.statuses(sent))")
            let shown = try rig.ok(["show", id])
            #expect(shown.contains("Rate limited (fake)") && shown.contains("error"), "bgq show printed: \(shown)")
        }
        #expect(try rig.leaseCount() == 0)
        #expect(!rig.exited(worker), rig.comment)
    }

    /// 503 (OpenAI) and 529 (Anthropic) without retry headers: exponential backoff, then success.
    @Test func overloadedProviderIsRetriedWithBackoffAndCompletes() throws {
        let rig = try Rig()
        defer { rig.stop() }
        let (server, _) = try Self.bothAPIs(rig)
        defer { server.stop() }

        let overloaded = "Heavy load [overloaded 1]"
        let broken = "Hiccup [server-error 1]"
        let ids = [
            (try rig.enqueue(overloaded, agent: "smol"), Self.openaiPath, overloaded, 503),
            (try rig.enqueue(overloaded, agent: "ant"), Self.anthropicPath, overloaded, 529),
            (try rig.enqueue(broken, agent: "smol"), Self.openaiPath, broken, 500),
        ]
        for (id, path, prompt, status) in ids {
            let task = try rig.waitFor(id, .completed)
            #expect(task.result == "reply 1: \(prompt)", rig.comment)
            let sent = try Self.requests(server, path, prompt: prompt)
            #expect(Self.statuses(sent) == [status, 200], "\(path): \(sent)")
        }
    }

    // MARK: - Errors that are not retried

    /// Quota and authentication errors fail at once (one request) with a hint; the error quotes the provider.
    @Test func quotaAndWrongKeyFailAtOnceWithAHint() throws {
        let rig = try Rig()
        defer { rig.stop() }
        let server = try Self.provider(rig)
        defer { server.stop() }
        try Self.addAgent(rig, "smol", preset: "openai", url: server.url + "/v1", model: "local/smollm2")
        try Self.addAgent(rig, "badkey", preset: "openai", url: server.url + "/v1", model: "local/smollm2", keyVariable: "BGQ_TEST_BAD_KEY")
        try Self.addAgent(rig, "antbad", preset: "anthropic", url: server.url, model: "anthropic/claude-x", keyVariable: "BGQ_TEST_BAD_KEY")
        try Self.addAgent(rig, "antnokey", preset: "anthropic", url: server.url, model: "anthropic/claude-x",
                          keyVariable: "BGQ_TEST_UNSET_ANTHROPIC_KEY_9Z")
        let worker = try rig.startWorker("w1", environment: ["OPENAI_API_KEY": "sk-test", "BGQ_TEST_BAD_KEY": "bad-key"])

        let quota = "Spend it all [quota]"
        let quotaID = try rig.enqueue(quota, agent: "smol")
        let wrong = "Wrong key"
        let wrongID = try rig.enqueue(wrong, agent: "badkey")
        let antWrong = "Wrong Anthropic key"
        let antWrongID = try rig.enqueue(antWrong, agent: "antbad")
        let antNone = "No Anthropic key"
        let antNoneID = try rig.enqueue(antNone, agent: "antnokey")

        let quotaError = try rig.waitFor(quotaID, .error).error ?? ""
        #expect(quotaError.contains("You exceeded your current quota (fake)"), "error: \(quotaError)")
        #expect(quotaError.contains("insufficient_quota") && quotaError.contains("not retried"), "error: \(quotaError)")
        #expect(try Self.requests(server, Self.openaiPath, prompt: quota).count == 1)

        let wrongError = try rig.waitFor(wrongID, .error).error ?? ""
        #expect(wrongError.contains("authentication failed") && wrongError.contains("401"), "error: \(wrongError)")
        #expect(wrongError.contains("Incorrect API key provided"), "error: \(wrongError)")
        #expect(wrongError.contains("BGQ_TEST_BAD_KEY"), "the hint does not name the variable: \(wrongError)")
        let wrongSent = try Self.requests(server, Self.openaiPath, prompt: wrong)
        #expect(wrongSent.count == 1, "\(wrongSent)")
        #expect(wrongSent.first?["headers"]?["authorization"]?.string == "Bearer bad-key")
        #expect(!wrongError.contains("bad-key"), "the error quotes the key itself: \(wrongError)")

        let antWrongError = try rig.waitFor(antWrongID, .error).error ?? ""
        #expect(antWrongError.contains("invalid x-api-key") && antWrongError.contains("BGQ_TEST_BAD_KEY"), "error: \(antWrongError)")
        #expect(try Self.requests(server, Self.anthropicPath, prompt: antWrong).count == 1)

        let antNoneError = try rig.waitFor(antNoneID, .error).error ?? ""
        #expect(antNoneError.contains("401") && antNoneError.contains("BGQ_TEST_UNSET_ANTHROPIC_KEY_9Z"), "error: \(antNoneError)")
        let antNoneSent = try Self.requests(server, Self.anthropicPath, prompt: antNone)
        #expect(antNoneSent.count == 1)
        #expect(antNoneSent.first?["headers"]?["x-api-key"] == nil, "\(antNoneSent)")

        #expect(try rig.leaseCount() == 0)
        #expect(!rig.exited(worker), rig.comment)
    }

    /// A 200 whose body is not of the API's shape is an error naming the endpoint; the worker goes on.
    @Test func malformedRepliesFailNamingTheEndpointAndTheWorkerGoesOn() throws {
        let rig = try Rig()
        defer { rig.stop() }
        let (server, worker) = try Self.bothAPIs(rig)
        defer { server.stop() }

        var cases: [(id: String, path: String, prompt: String)] = []
        for prompt in ["Odd shape [malformed]", "Not even JSON [garbage]"] {
            cases.append((try rig.enqueue(prompt, agent: "smol"), Self.openaiPath, prompt))
            cases.append((try rig.enqueue(prompt, agent: "ant"), Self.anthropicPath, prompt))
        }
        for (id, path, prompt) in cases {
            let task = try rig.waitFor(id, .error)
            let error = task.error ?? ""
            #expect(error.contains("POST \(path)"), "error does not name the endpoint: \(error)")
            #expect(error.contains("unexpected body"), "error: \(error)")
            if prompt.contains("[garbage]") { #expect(error.contains("not JSON"), "error: \(error)") }
            #expect(try Self.requests(server, path, prompt: prompt).count == 1, "a malformed reply was retried")
        }

        #expect(!rig.exited(worker), rig.comment)
        let after = "Still there?"
        for agent in ["smol", "ant"] {
            let task = try rig.waitFor(try rig.enqueue(after, agent: agent), .completed)
            #expect(task.result == "reply 1: \(after)", rig.comment)
            #expect(task.workerID == worker.id, rig.comment)
        }
        #expect(try rig.leaseCount() == 0)
    }

    /// A provider that cannot be reached: retried a bounded number of times, then an error that says so; the
    /// worker goes on. One agent points at a closed port; another at a listener that drops every connection
    /// (which counts the attempts).
    @Test func unreachableProviderFailsAfterBoundedRetriesAndTheWorkerGoesOn() throws {
        let rig = try Rig()
        defer { rig.stop() }
        let server = try Self.provider(rig)
        defer { server.stop() }
        let dropping = try DroppingListener()
        defer { dropping.stop() }
        let closedURL = "http://127.0.0.1:\(Self.closedPort())"
        try Self.addAgent(rig, "gone", preset: "openai", url: closedURL + "/v1", model: "local/smollm2")
        try Self.addAgent(rig, "mute", preset: "anthropic", url: dropping.url, model: "anthropic/claude-x")
        try Self.addAgent(rig, "smol", preset: "openai", url: server.url + "/v1", model: "local/smollm2")
        let worker = try rig.startWorker("w1", environment: ["OPENAI_API_KEY": "sk-test", "ANTHROPIC_API_KEY": "sk-ant-test"])

        let gone = try rig.enqueue("Anyone there?", agent: "gone")
        let mute = try rig.enqueue("Say something", agent: "mute")
        // Meanwhile the worker serves other agents.
        let meanwhile = try rig.waitFor(try rig.enqueue("Meanwhile", agent: "smol"), .completed)
        #expect(meanwhile.result == "reply 1: Meanwhile", rig.comment)
        #expect(try rig.status(gone) == .running && rig.status(mute) == .running, rig.comment)

        let goneTask = try rig.waitFor(gone, .error, timeout: 40)
        let goneError = goneTask.error ?? ""
        #expect(goneError.contains("unreachable"), "error: \(goneError)")
        #expect(goneError.contains(closedURL), "error does not name the URL: \(goneError)")

        let muteTask = try rig.waitFor(mute, .error, timeout: 40)
        let muteError = muteTask.error ?? ""
        #expect(muteError.contains("unreachable") && muteError.contains(dropping.url), "error: \(muteError)")
        // The first try and five retries, no more.
        #expect(dropping.connections == 6, "attempts: \(dropping.connections)\n\(rig.logs)")

        #expect(try rig.leaseCount() == 0)
        #expect(!rig.exited(worker), rig.comment)
        let after = try rig.waitFor(try rig.enqueue("After the outage", agent: "smol"), .completed)
        #expect(after.result == "reply 1: After the outage", rig.comment)
        #expect(after.workerID == worker.id)
    }

    // MARK: - Limits, cancel and adoption

    /// While a task backs off it keeps its slot: with a limit of 1 on the model, the next task waits for it.
    @Test func theSlotIsKeptWhileBackingOff() throws {
        let rig = try Rig()
        defer { rig.stop() }
        let server = try Self.provider(rig)
        defer { server.stop() }
        try Self.addAgent(rig, "smol", preset: "openai", url: server.url + "/v1", model: "local/smollm2")
        try rig.ok(["limits", "set", "--model", "local/smollm2", "1"])
        try rig.startWorker("w1", environment: ["OPENAI_API_KEY": "sk-test"])
        try rig.startWorker("w2", environment: ["OPENAI_API_KEY": "sk-test"])

        let slow = "Back off twice [rate-limit 2] [retry-after 1]"
        let a = try rig.enqueue(slow, agent: "smol")
        #expect(try rig.sampling(timeout: 20) { try rig.status(a) == .running }, rig.comment)
        // While it backs off, `bgq show` says why and when the next try is due.
        var shown = ""
        let explained = try rig.sampling(timeout: 20) {
            shown = try rig.bgq(["show", a]).stdout
            return shown.contains("HTTP 429") && shown.contains("retry 1/5")
        }
        #expect(explained, "bgq show during the backoff printed:\n\(shown)")
        let b = try rig.enqueue("Right after", agent: "smol")
        let finished = try rig.sampling(timeout: 40) { try rig.status(a).isTerminal && rig.status(b).isTerminal }
        #expect(finished, rig.comment)

        let first = try rig.task(a), second = try rig.task(b)
        #expect(first.status == .completed, rig.comment)
        #expect(first.result == "reply 1: \(slow)")
        #expect(second.status == .completed, rig.comment)
        #expect(second.result == "reply 1: Right after")
        #expect(try Self.requests(server, Self.openaiPath, prompt: slow).count == 3)
        let finishedA = try #require(first.finishedAt), startedB = try #require(second.startedAt)
        #expect(startedB >= finishedA, "B started \(startedB.iso8601) before A finished \(finishedA.iso8601)\n\(rig.logs)")
        #expect((rig.maxLeases["model:local/smollm2"] ?? 0) == 1, "leases: \(rig.maxLeases)\n\(rig.logs)")
        #expect((rig.maxRunning["model:local/smollm2"] ?? 0) == 1, "running: \(rig.maxRunning)\n\(rig.logs)")
        #expect(try rig.leaseCount() == 0)
    }

    /// `bgq cancel` during a slow call: the call is abandoned, the task is cancelled promptly, the worker goes on.
    @Test func cancelDuringASlowCall() throws {
        let rig = try Rig()
        defer { rig.stop() }
        let server = try Self.provider(rig)
        defer { server.stop() }
        try Self.addAgent(rig, "smol", preset: "openai", url: server.url + "/v1", model: "local/smollm2")
        let worker = try rig.startWorker("w1", environment: ["OPENAI_API_KEY": "sk-test"])

        let prompt = "Think hard [slow 30]"
        let id = try rig.enqueue(prompt, agent: "smol")
        let inFlight = try eventually(timeout: 20) {
            try Self.requests(server, Self.openaiPath, prompt: prompt).contains { $0["status"] == .null }
        }
        #expect(inFlight, "the call never reached the provider\n\(rig.logs)")
        try rig.ok(["cancel", id])
        let task = try rig.waitFor(id, .cancelled, timeout: 15)
        #expect(task.status == .cancelled)
        #expect(try rig.leaseCount(taskID: id) == 0)

        #expect(!rig.exited(worker), rig.comment)
        let next = try rig.waitFor(try rig.enqueue("Next one", agent: "smol"), .completed)
        #expect(next.result == "reply 1: Next one", rig.comment)
        #expect(next.workerID == worker.id)
        // Cancelled is final: the abandoned call did not come back as a result.
        #expect(try rig.task(id).status == .cancelled)
        #expect(try Self.requests(server, Self.openaiPath, prompt: prompt).count == 1)
    }

    /// A worker killed while its call is in flight: another adopts the task and sends the request again.
    @Test func adoptedTaskSendsItsRequestAgain() throws {
        let rig = try Rig(["lease_timeout_ms": 1500, "heartbeat_interval_ms": 300])
        defer { rig.stop() }
        let server = try Self.provider(rig)
        defer { server.stop() }
        try Self.addAgent(rig, "smol", preset: "openai", url: server.url + "/v1", model: "local/smollm2")
        let a = try rig.startWorker("A", environment: ["OPENAI_API_KEY": "sk-test"])

        let prompt = "Take your time [slow 3]"
        let id = try rig.enqueue(prompt, agent: "smol")
        let inFlight = try eventually(timeout: 20) {
            try Self.requests(server, Self.openaiPath, prompt: prompt).contains { $0["status"] == .null }
        }
        #expect(inFlight, "the call never reached the provider\n\(rig.logs)")
        #expect(try rig.task(id).workerID == a.id)
        rig.sigkill(a)

        let b = try rig.startWorker("B", environment: ["OPENAI_API_KEY": "sk-test"])
        let task = try rig.waitFor(id, .completed, timeout: 40)
        #expect(task.result == "reply 1: \(prompt)", rig.comment)
        #expect(task.workerID == b.id, rig.comment)
        #expect(task.attempt == 1)
        let sent = try Self.requests(server, Self.openaiPath, prompt: prompt)
        #expect(sent.count == 2, "\(sent)")
        let events = try rig.events(id)
        #expect(events.contains { WorkerProcessTests.isAdoption($0) && $0.workerID == b.id }, "\(events)\n\(rig.logs)")
        #expect(try rig.leaseCount() == 0)
    }

    // MARK: - Units: retry policy

    @Test func retryDelayHonoursTheProvidersWordWithinSixtySeconds() {
        let policy = ProviderRetryPolicy()
        // retry-after-ms wins over retry-after.
        #expect(policy.delayMs(retry: 1, headers: ["retry-after-ms": "50", "retry-after": "1"], jitter: 0.9) == 50)
        #expect(policy.delayMs(retry: 3, headers: ["retry-after-ms": "0"], jitter: 0.5) == 0)
        #expect(policy.delayMs(retry: 1, headers: ["retry-after-ms": "1500.7"], jitter: 0) == 1500)
        // retry-after in seconds (also fractional).
        #expect(policy.delayMs(retry: 1, headers: ["retry-after": "2"], jitter: 0.9) == 2000)
        #expect(policy.delayMs(retry: 4, headers: ["retry-after": "0.25"], jitter: 0) == 250)
        #expect(policy.delayMs(retry: 1, headers: ["retry-after": "60"], jitter: 0) == 60_000)
        // Over 60 s, negative or unreadable: ignored, exponential backoff instead.
        #expect(policy.delayMs(retry: 1, headers: ["retry-after": "61"], jitter: 0) == 500)
        #expect(policy.delayMs(retry: 2, headers: ["retry-after-ms": "60001"], jitter: 0) == 1000)
        #expect(policy.delayMs(retry: 1, headers: ["retry-after-ms": "-5"], jitter: 0) == 500)
        #expect(policy.delayMs(retry: 1, headers: ["retry-after": "soon"], jitter: 0) == 500)
        // An unusable retry-after-ms falls back to a usable retry-after.
        #expect(policy.delayMs(retry: 1, headers: ["retry-after-ms": "90000", "retry-after": "3"], jitter: 0) == 3000)
    }

    @Test func retryDelayBacksOffExponentiallyWithCappedJitter() {
        let policy = ProviderRetryPolicy()
        #expect(policy.maxRetries == 5)
        let expected: [Int64] = [500, 1000, 2000, 4000, 8000, 16_000, 30_000, 30_000]
        for (index, delay) in expected.enumerated() {
            #expect(policy.delayMs(retry: index + 1, headers: [:], jitter: 0) == delay, "retry \(index + 1)")
        }
        #expect(policy.delayMs(retry: 40, headers: [:], jitter: 0) == 30_000)
        #expect(policy.delayMs(retry: 1_000, headers: [:], jitter: 0) == 30_000)
        // Jitter takes at most a quarter off, never adds.
        #expect(policy.delayMs(retry: 1, headers: [:], jitter: 1) == 375)
        #expect(policy.delayMs(retry: 3, headers: [:], jitter: 0.5) == 1750)
        #expect(policy.delayMs(retry: 7, headers: [:], jitter: 1) == 22_500)
        #expect(policy.delayMs(retry: 2, headers: [:], jitter: 5) == 750, "jitter above 1 is clamped")
        #expect(policy.delayMs(retry: 2, headers: [:], jitter: -3) == 1000, "negative jitter is clamped")
        for retry in 1...8 {
            for jitter in stride(from: 0.0, through: 1.0, by: 0.125) {
                let full = policy.delayMs(retry: retry, headers: [:], jitter: 0)
                let delay = policy.delayMs(retry: retry, headers: [:], jitter: jitter)
                #expect(delay <= full && delay >= full - full / 4, "retry \(retry) jitter \(jitter): \(delay) of \(full)")
            }
        }
        var custom = ProviderRetryPolicy()
        custom.initialDelayMs = 100
        custom.maxDelayMs = 450
        #expect((1...5).map { custom.delayMs(retry: $0, headers: [:], jitter: 0) } == [100, 200, 400, 450, 450])
    }

    @Test func retryableStatuses() {
        for status in [408, 409, 429, 500, 502, 503, 504, 529] {
            #expect(ProviderRetryPolicy.isRetryable(status: status), "\(status)")
        }
        for status in [200, 400, 401, 403, 404, 413, 422] {
            #expect(!ProviderRetryPolicy.isRetryable(status: status), "\(status)")
        }
    }

    // MARK: - Units: API shapes

    static func data(_ text: String) -> Data { Data(text.utf8) }

    @Test func openaiReplies() {
        let api = ProviderAPI.openai
        #expect(api.reply(Self.data("""
            {"id":"chatcmpl-1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"Hello there"},\
            "finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}
            """)) == .text("Hello there", usage: TokenUsage(inputTokens: 3, outputTokens: 2)))
        // A tool-call reply has content null: an empty text, not an error.
        #expect(api.reply(Self.data(#"{"choices":[{"message":{"role":"assistant","content":null,"tool_calls":[]}}]}"#)) == .text(""))
        #expect(api.reply(Self.data(#"{"choices":[{"message":{"role":"assistant","content":"é ✓ \n two lines"}}]}"#)) == .text("é ✓ \n two lines"))
        guard case .malformed(let missing) = api.reply(Self.data(#"{"unexpected": true}"#)) else {
            Issue.record("accepted a body without choices")
            return
        }
        #expect(missing.contains("choices[0].message.content"))
        guard case .malformed = api.reply(Self.data(#"{"choices":[]}"#)) else { Issue.record("accepted empty choices"); return }
        guard case .malformed(let notText) = api.reply(Self.data(#"{"choices":[{"message":{"content":[1,2]}}]}"#)) else {
            Issue.record("accepted non-text content")
            return
        }
        #expect(notText.contains("not text"))
        guard case .malformed(let garbage) = api.reply(Self.data("not json at all")) else { Issue.record("accepted garbage"); return }
        #expect(garbage.contains("not JSON") && garbage.contains("not json at all"))
        guard case .malformed = api.reply(Data()) else { Issue.record("accepted an empty body"); return }
    }

    @Test func anthropicReplies() {
        let api = ProviderAPI.anthropic
        #expect(api.reply(Self.data("""
            {"id":"msg_1","type":"message","role":"assistant","model":"claude-x","content":[{"type":"text","text":"Hello "},\
            {"type":"tool_use","id":"toolu_1","name":"Read","input":{}},{"type":"text","text":"world"}],\
            "stop_reason":"end_turn","usage":{"input_tokens":1,"output_tokens":2}}
            """)) == .text("Hello world", usage: TokenUsage(inputTokens: 1, outputTokens: 2)))
        #expect(api.reply(Self.data(#"{"type":"message","content":[]}"#)) == .text(""))
        #expect(api.reply(Self.data(#"{"content":[{"type":"thinking","thinking":"hmm"},{"type":"text","text":"done"}]}"#)) == .text("done"))
        guard case .malformed(let missing) = api.reply(Self.data(#"{"unexpected": true}"#)) else {
            Issue.record("accepted a body without content")
            return
        }
        #expect(missing.contains("content"))
        guard case .malformed(let garbage) = api.reply(Self.data("<html>Bad Gateway</html>")) else { Issue.record("accepted garbage"); return }
        #expect(garbage.contains("not JSON") && garbage.contains("Bad Gateway"))
    }

    @Test func errorDetailsQuoteTheProvider() {
        // OpenAI: {error:{message,type,code}}; the code, else the type.
        let quota = ProviderAPI.openai.errorDetail(Self.data("""
            {"error":{"message":"You exceeded your current quota (fake)","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}
            """))
        #expect(quota.message == "You exceeded your current quota (fake)")
        #expect(quota.code == "insufficient_quota")
        let rate = ProviderAPI.openai.errorDetail(Self.data("""
            {"error":{"message":"Rate limited (fake): slow down","type":"requests","param":null,"code":"rate_limit_exceeded"}}
            """))
        #expect(rate.message == "Rate limited (fake): slow down" && rate.code == "rate_limit_exceeded")
        let server = ProviderAPI.openai.errorDetail(Self.data(#"{"error":{"message":"Internal server error (fake)","type":"server_error","code":null}}"#))
        #expect(server.message == "Internal server error (fake)" && server.code == "server_error")
        // Anthropic: {type:"error", error:{type,message}}.
        let overloaded = ProviderAPI.anthropic.errorDetail(Self.data(#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded (fake)"}}"#))
        #expect(overloaded.message == "Overloaded (fake)" && overloaded.code == "overloaded_error")
        let auth = ProviderAPI.anthropic.errorDetail(Self.data(#"{"type":"error","error":{"type":"authentication_error","message":"invalid x-api-key"}}"#))
        #expect(auth.message == "invalid x-api-key" && auth.code == "authentication_error")
        // A top-level message, or no JSON at all (a proxy's page): quoted as it is.
        let plain = ProviderAPI.openai.errorDetail(Self.data(#"{"message":"upstream timeout"}"#))
        #expect(plain.message == "upstream timeout" && plain.code == nil)
        let html = ProviderAPI.anthropic.errorDetail(Self.data("<html>502 Bad Gateway</html>"))
        #expect(html.message == "<html>502 Bad Gateway</html>" && html.code == nil)
        let long = String(repeating: "x", count: 1000)
        #expect(ProviderAPI.openai.errorDetail(Self.data(long)).message.count == 300)
    }

    @Test func requestShapes() throws {
        let turns = [ProviderAPI.Turn(role: "user", text: "one"), ProviderAPI.Turn(role: "assistant", text: "reply 1: one"),
                     ProviderAPI.Turn(role: "user", text: "two")]
        let openai = try #require(ProviderAPI.openai.request(base: "http://127.0.0.1:9/v1/", model: "smollm2", turns: turns, apiKey: "k", timeoutSeconds: 5))
        #expect(openai.url.absoluteString == "http://127.0.0.1:9/v1/chat/completions")
        #expect(openai.method == "POST" && openai.endpoint == "POST /v1/chat/completions")
        #expect(openai.headers["authorization"] == "Bearer k")
        #expect(openai.headers["x-api-key"] == nil)
        let openaiBody = try #require(JSONValue.parse(data: openai.body ?? Data()))
        #expect(openaiBody["model"] == .string("smollm2"))
        let expectedMessages: JSONValue = [["role": "user", "content": "one"], ["role": "assistant", "content": "reply 1: one"],
                                           ["role": "user", "content": "two"]]
        #expect(openaiBody["messages"] == expectedMessages)
        #expect(openaiBody["max_tokens"] == nil)
        // Streamed, with the token counts asked for.
        #expect(openaiBody["stream"] == .bool(true) && openaiBody["stream_options"]?["include_usage"] == .bool(true))
        #expect(openai.headers["accept"] == "text/event-stream")
        let keyless = try #require(ProviderAPI.openai.request(base: "http://h/v1", model: "m", turns: turns, apiKey: nil, timeoutSeconds: 5))
        #expect(keyless.headers["authorization"] == nil)

        let anthropic = try #require(ProviderAPI.anthropic.request(base: "http://127.0.0.1:9", model: "claude-x", turns: turns, apiKey: "ak", timeoutSeconds: 5))
        #expect(anthropic.url.absoluteString == "http://127.0.0.1:9/v1/messages")
        #expect(anthropic.headers["x-api-key"] == "ak" && anthropic.headers["anthropic-version"] == "2023-06-01")
        #expect(anthropic.headers["authorization"] == nil)
        let anthropicBody = try #require(JSONValue.parse(data: anthropic.body ?? Data()))
        #expect(anthropicBody["model"] == .string("claude-x"))
        #expect(anthropicBody["max_tokens"] == .int(4096))
        #expect(anthropicBody["messages"]?.array?.count == 3)
        #expect(anthropicBody["stream"] == .bool(true) && anthropicBody["stream_options"] == nil)
        #expect(anthropic.headers["accept"] == "text/event-stream")
        // A base that already ends in /v1 is not doubled.
        #expect(ProviderAPI.anthropic.endpoint(base: "https://api.anthropic.com/v1/") == "https://api.anthropic.com/v1/messages")
        #expect(ProviderAPI.anthropic.endpoint(base: "https://api.anthropic.com") == "https://api.anthropic.com/v1/messages")
        let noKey = try #require(ProviderAPI.anthropic.request(base: "http://h", model: "m", turns: turns, apiKey: nil, timeoutSeconds: 5))
        #expect(noKey.headers["x-api-key"] == nil && noKey.headers["anthropic-version"] == "2023-06-01")
        // Not an http(s) URL: no request (the agent's error says so).
        #expect(ProviderAPI.openai.request(base: "ftp://h/v1", model: "m", turns: turns, apiKey: nil, timeoutSeconds: 5) == nil)
        #expect(ProviderAPI.openai.request(base: "", model: "m", turns: turns, apiKey: nil, timeoutSeconds: 5) == nil)
    }

    @Test func anAPIAgentWithoutAModelIsRefusedAtEnqueueNotLater() throws {
        let db = TempDatabase()
        try BGQBinary.run(["agents", "add", "nomodel", "--preset", "openai", "--url", "http://127.0.0.1:9/v1"], db: db)
        let single = try BGQBinary.run(["enqueue", "--agent", "nomodel", "hello"], db: db)
        #expect(single.status == 2 && single.stderr.contains("needs a model"), "\(single.stderr)")
        let batch = try BGQBinary.run(["enqueue", "--jsonl", "-"], db: db,
                                      stdin: "{\"prompt\":\"a\",\"agent\":\"nomodel\",\"model\":\"x/y\"}\n{\"prompt\":\"b\",\"agent\":\"nomodel\"}\n")
        #expect(batch.status == 2 && batch.stderr.contains("line 2") && batch.stderr.contains("needs a model"), "\(batch.stderr)")
        #expect(try db.store().listTasks(TaskFilter()).isEmpty, "nothing is enqueued")
        let fine = try BGQBinary.run(["enqueue", "--agent", "nomodel", "--model", "local/m", "hello"], db: db)
        #expect(fine.status == 0)
    }

    @Test func httpsIsVerifiedAgainstTheTrustStoreAndWorksWhenTrusted() throws {
        let rig = try WorkerProcessTests.Rig()
        defer { rig.stop() }
        let (cert, key) = try Self.selfSignedCertificate(rig, altNames: "DNS:localhost,IP:127.0.0.1")
        let server = try FakeServer("fake_provider.py", ["--tls-cert", cert, "--tls-key", key], directory: rig.db.directory)
        defer { server.stop() }
        try rig.ok(["agents", "add", "tls", "--preset", "openai", "--url", "https://localhost:\(server.port)/v1", "--model", "local/m"])
        try rig.ok(["agents", "add", "tls-ip", "--preset", "anthropic", "--url", "https://127.0.0.1:\(server.port)", "--model", "local/m"])
        // A self-signed certificate that the trust store does not hold: refused at the handshake, not retried.
        let untrusted = try rig.enqueue("secret prompt", agent: "tls")
        let worker = try rig.startWorker("plain")
        let refused = try rig.waitFor(untrusted, .error)
        #expect(refused.error?.contains("not trusted") == true && refused.error?.contains("gave up") == false,
                "refused at once, not retried: \(refused.error ?? "-")")
        rig.sigkill(worker)
        // Trusted (SSL_CERT_FILE, as OpenSSL reads it): the call goes through, by name and by IP address.
        let byName = try rig.enqueue("over tls", agent: "tls")
        let byIP = try rig.enqueue("over tls by ip", agent: "tls-ip")
        try rig.startWorker("trusting", environment: ["SSL_CERT_FILE": cert, "ANTHROPIC_API_KEY": "k"])
        #expect(try rig.waitFor(byName, .completed).result == "reply 1: over tls")
        #expect(try rig.waitFor(byIP, .completed).result == "reply 1: over tls by ip")
    }

    @Test func httpsRefusesACertificateForAnotherHostEvenWhenItsIssuerIsTrusted() throws {
        let rig = try WorkerProcessTests.Rig()
        defer { rig.stop() }
        // Valid for the name localhost only, not for the address 127.0.0.1.
        let (cert, key) = try Self.selfSignedCertificate(rig, altNames: "DNS:localhost")
        let server = try FakeServer("fake_provider.py", ["--tls-cert", cert, "--tls-key", key], directory: rig.db.directory)
        defer { server.stop() }
        try rig.ok(["agents", "add", "by-ip", "--preset", "openai", "--url", "https://127.0.0.1:\(server.port)/v1", "--model", "local/m"])
        try rig.ok(["agents", "add", "by-name", "--preset", "openai", "--url", "https://localhost:\(server.port)/v1", "--model", "local/m"])
        let wrongHost = try rig.enqueue("to the wrong host", agent: "by-ip")
        let rightHost = try rig.enqueue("to the right host", agent: "by-name")
        try rig.startWorker("trusting", environment: ["SSL_CERT_FILE": cert])
        let refused = try rig.waitFor(wrongHost, .error)
        #expect(refused.error?.contains("not trusted") == true && refused.error?.contains("mismatch") == true, "error: \(refused.error ?? "-")")
        #expect(try rig.waitFor(rightHost, .completed).result == "reply 1: to the right host")
    }
}
