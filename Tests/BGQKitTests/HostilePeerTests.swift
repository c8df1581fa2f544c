import Foundation
import Testing
@testable import BGQBackends
@testable import BGQCLI
@testable import BGQCore
@testable import BGQSQLite
@testable import BGQScheduler
@testable import BGQSystem

/// Real `bgq worker` processes against a hostile HTTP peer (Tests/Servers/hostile_peer.py, real sockets on
/// 127.0.0.1) through the `openai`, `anthropic` and `opencode-server` presets: lengths and chunk sizes that are
/// negative or overflow, bodies of 200 MB, replies that stall, headers without end, broken JSON and UTF-8, and
/// certificates for another name. For every one the task ends in error with a one-line reason (after the
/// README's retries where the failure is transient), the worker goes on serving its other sessions, and nothing
/// else in the database changes.
@Suite(.serialized) struct HostilePeerTests {
    typealias Rig = WorkerProcessTests.Rig

    /// What a task's error says for each scenario: (openai and anthropic, opencode-server).
    static let expectedErrors: [(scenario: String, provider: String, opencode: String)] = [
        ("negative-length", "malformed HTTP response", "malformed HTTP response"),
        ("huge-length", "response too large", "response too large"),
        ("negative-chunk", "malformed HTTP response", "malformed HTTP response"),
        ("overflow-chunk", "malformed HTTP response", "malformed HTTP response"),
        ("nonhex-chunk", "malformed HTTP response", "malformed HTTP response"),
        ("huge-body", "response too large", "response too large"),
        ("huge-body-chunked", "response too large", "response too large"),
        // Silence is transient: the provider call is retried (README), then fails; an OpenCode start fails at once.
        ("stall-body", "gave up after 5 retries", "in time"),
        ("endless-headers", "malformed HTTP response", "malformed HTTP response"),
        ("stall-headers", "gave up after 5 retries", "in time"),
        ("invalid-json", "not JSON", "not JSON"),
        ("deep-json", "not JSON", "not JSON"),
        ("invalid-utf8", "not UTF-8", "not UTF-8"),
    ]

    /// Hostile event streams (a provider's streamed reply; an OpenCode server is not streamed): what the
    /// task's error says. A stalled stream is retried as a silent peer is, and says that it timed out.
    static let streamErrors: [(scenario: String, provider: String)] = [
        ("sse-endless-line", "longer than 4 MB"),
        ("sse-stall", "timed out: nothing arrived for 2 seconds"),
        ("sse-invalid-utf8", "not UTF-8"),
        ("sse-invalid-json", "not JSON"),
        ("sse-deep-json", "not JSON"),
    ]

    /// The worker's environment: keys for both APIs, and a short read timeout so that a stalled reply ends soon.
    static let workerEnvironment = ["OPENAI_API_KEY": "sk-test", "ANTHROPIC_API_KEY": "sk-ant-test", "BGQ_HTTP_READ_TIMEOUT_MS": "2000"]

    /// What must not change while hostile replies are handled: configuration and a task that finished before.
    static func snapshot(_ rig: Rig, bystander: String) throws -> [String] {
        let tables = try ["agents", "limits", "settings"].flatMap { table in
            let columns = try rig.store.connection.query("SELECT name FROM pragma_table_info('\(table)')") { $0.text(0) }
            let row = columns.map { "quote(\"\($0)\")" }.joined(separator: " || '|' || ")
            return try rig.store.connection.query("SELECT \(row) FROM \(table) ORDER BY 1") { $0.text(0) }
        }
        return tables + [try rig.ok(["show", bystander, "--json"])] + (try rig.events(bystander)).map { "\($0)" }
    }

    /// Waits until every task is terminal, or the worker died (then at once: a trap must not cost a timeout).
    static func waitForAll(_ ids: [String], rig: Rig, worker: WorkerProcessTests.StartedWorker, timeout: TimeInterval = 120) throws {
        let finished = try eventually(timeout: timeout, interval: 0.1) {
            try rig.exited(worker) || ids.allSatisfy { try rig.status($0).isTerminal }
        }
        let active = try ids.filter { try !rig.status($0).isTerminal }
        #expect(finished, "tasks still active: \(active)\n\(rig.logs)")
        #expect(!rig.exited(worker), "the worker died on a hostile reply\n\(rig.logs)")
    }

    /// A task that met a hostile peer: in error with a one-line reason naming what went wrong, its slot freed, and a
    /// plain history (claimed once, then the error).
    static func expectFailed(_ id: String, containing fragment: String, _ label: String, rig: Rig,
                             sourceLocation: SourceLocation = #_sourceLocation) throws {
        let task = try rig.task(id)
        let error = task.error ?? ""
        #expect(task.status == .error, "\(label): \(task.status), error: \(error)", sourceLocation: sourceLocation)
        #expect(!error.isEmpty && !error.contains("\n") && error.count < 1000, "\(label): not one line: \(error)", sourceLocation: sourceLocation)
        #expect(error.contains(fragment), "\(label): error does not say '\(fragment)': \(error)", sourceLocation: sourceLocation)
        let events = try rig.events(id).filter { $0.from != nil }  // after the creation
        #expect(events.map { "\($0.from?.rawValue ?? "-")→\($0.to.rawValue)" } == ["pending→running", "running→error"],
                "\(label): \(events)", sourceLocation: sourceLocation)
        #expect(try rig.leaseCount(taskID: id) == 0, sourceLocation: sourceLocation)
    }

    /// A rig with a finished bystander task, a hostile peer and a healthy fake provider with agent `healthy`.
    static func setUp() throws -> (rig: Rig, hostile: FakeServer, healthy: FakeServer, bystander: String) {
        let rig = try Rig(["min_idle_ms": 300, "min_stability_ms": 1000])
        let hostile = try FakeServer("hostile_peer.py", directory: rig.db.directory)
        let healthy = try FakeServer("fake_provider.py", directory: rig.db.directory)
        try rig.ok(["agents", "add", "healthy", "--preset", "openai", "--url", healthy.url + "/v1", "--model", "local/smollm2"])
        let bystander = try rig.enqueue("finished before", agent: "noop")
        return (rig, hostile, healthy, bystander)
    }

    // MARK: - Provider APIs

    /// Every hostile reply, to an `openai` and an `anthropic` agent (the scenario is the model's name), while a
    /// slow healthy task runs beside them on the same worker.
    @Test func hostileRepliesToProviderCallsFailTheirTaskAndTheWorkerGoesOn() throws {
        let (rig, hostile, healthy, bystander) = try Self.setUp()
        defer { rig.stop(); hostile.stop(); healthy.stop() }
        try rig.ok(["agents", "add", "h-openai", "--preset", "openai", "--url", hostile.url + "/v1", "--model", "hostile/ok"])
        try rig.ok(["agents", "add", "h-anthropic", "--preset", "anthropic", "--url", hostile.url, "--model", "hostile/ok"])
        let worker = try rig.startWorker("w1", environment: Self.workerEnvironment)
        _ = try rig.waitFor(bystander, .completed)
        let before = try Self.snapshot(rig, bystander: bystander)

        let slow = try rig.enqueue("Beside the hostile ones [slow 0.5]", agent: "healthy")
        var cases: [(id: String, label: String, fragment: String)] = []
        let expectations = Self.expectedErrors.map { ($0.scenario, $0.provider) } + Self.streamErrors.map { ($0.scenario, $0.provider) }
        let objects: [[String: Any]] = expectations.flatMap { scenario, _ in
            ["h-openai", "h-anthropic"].map { ["agent": $0, "model": "hostile/\(scenario)", "prompt": "\($0) \(scenario)"] }
        }
        let ids = try rig.enqueueJSONL(objects)
        for (index, id) in ids.enumerated() {
            let (scenario, fragment) = expectations[index / 2]
            cases.append((id, "\(objects[index]["agent"]!) \(scenario)", fragment))
        }
        try Self.waitForAll(ids + [slow], rig: rig, worker: worker)
        for item in cases { try Self.expectFailed(item.id, containing: item.fragment, item.label, rig: rig) }
        let beside = try rig.task(slow)
        #expect(beside.result == "reply 1: Beside the hostile ones [slow 0.5]", "\(beside.status): \(beside.error ?? "-")\n\(rig.logs)")

        // Still polling: a new task after all of them completes on the same worker.
        let after = try rig.waitFor(try rig.enqueue("After the storm", agent: "healthy"), .completed)
        #expect(after.result == "reply 1: After the storm" && after.workerID == worker.id, rig.comment)
        #expect(try Self.snapshot(rig, bystander: bystander) == before)
        #expect(try rig.leaseCount() == 0)
    }

    // MARK: - OpenCode server

    /// Every hostile reply to an `opencode-server` agent (the scenario is the first segment of the server's URL):
    /// the task cannot start its session and fails with the reason; the worker goes on.
    @Test func hostileRepliesToAnOpenCodeServerFailTheTaskAndTheWorkerGoesOn() throws {
        let (rig, hostile, healthy, bystander) = try Self.setUp()
        defer { rig.stop(); hostile.stop(); healthy.stop() }
        for expected in Self.expectedErrors {
            try rig.ok(["agents", "add", "oc-\(expected.scenario)", "--preset", "opencode-server", "--url", "\(hostile.url)/\(expected.scenario)"])
        }
        let worker = try rig.startWorker("w1", environment: Self.workerEnvironment)
        _ = try rig.waitFor(bystander, .completed)
        let before = try Self.snapshot(rig, bystander: bystander)

        let slow = try rig.enqueue("Beside the hostile server [slow 0.5]", agent: "healthy")
        let ids = try rig.enqueueJSONL(Self.expectedErrors.map { ["agent": "oc-\($0.scenario)", "prompt": "opencode \($0.scenario)"] })
        try Self.waitForAll(ids + [slow], rig: rig, worker: worker)
        for (id, expected) in zip(ids, Self.expectedErrors) {
            try Self.expectFailed(id, containing: expected.opencode, "opencode-server \(expected.scenario)", rig: rig)
            let error = try rig.task(id).error ?? "-"
            #expect(error.hasPrefix("cannot start session: "), "\(expected.scenario): \(error)")
        }
        let beside = try rig.task(slow)
        #expect(beside.result == "reply 1: Beside the hostile server [slow 0.5]", "\(beside.status): \(beside.error ?? "-")\n\(rig.logs)")
        let after = try rig.waitFor(try rig.enqueue("After the storm", agent: "healthy"), .completed)
        #expect(after.result == "reply 1: After the storm" && after.workerID == worker.id, rig.comment)
        #expect(try Self.snapshot(rig, bystander: bystander) == before)
    }

    // MARK: - TLS names

    /// A certificate is checked against the URL's host name, hex-letter names included (`bad.cafe` once passed for
    /// an IP address and was not checked at all), and a short IP form (`127.1`) is no way around the check.
    /// `bad.cafe` reaches 127.0.0.1 through HTTPS_PROXY (the hostile peer as a CONNECT proxy), so no DNS or
    /// /etc/hosts entry is needed; NO_PROXY keeps the healthy provider's calls direct.
    @Test func certificatesForAnotherNameAreRefusedHexLetterNamesIncluded() throws {
        let (rig, hostile, healthy, _) = try Self.setUp()
        defer { rig.stop(); hostile.stop(); healthy.stop() }
        func certificate(_ name: String, _ altNames: String) throws -> (cert: String, key: String) {
            let cert = rig.path("\(name).pem"), key = rig.path("\(name).key")
            let made = try ForeignCommand.run("/usr/bin/env", ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                                                               "-out", cert, "-days", "2", "-subj", "/CN=\(name)", "-addext", "subjectAltName=\(altNames)"])
            try #require(made.status == 0, "openssl: \(made.stderr)")
            return (cert, key)
        }
        let cafe = try certificate("cafe.test", "DNS:cafe.test")
        let local = try certificate("localhost", "DNS:localhost,IP:127.0.0.1")
        let hexName = try certificate("bad.cafe", "DNS:bad.cafe")
        // All three are trusted: only the name can make bgq refuse them.
        let bundle = rig.path("trusted.pem")
        try [cafe, local, hexName].map { try String(contentsOfFile: $0.cert, encoding: .utf8) }.joined().write(toFile: bundle, atomically: true, encoding: .utf8)
        var peers: [FakeServer] = []
        defer { peers.forEach { $0.stop() } }
        for pair in [cafe, local, hexName] {
            peers.append(try FakeServer("hostile_peer.py", ["--tls-cert", pair.cert, "--tls-key", pair.key], directory: rig.db.directory))
        }
        let proxyLog = rig.path("proxy.log")
        let proxy = try FakeServer("hostile_peer.py", ["--proxy", "--log", proxyLog], directory: rig.db.directory)
        defer { proxy.stop() }
        let (cafePeer, localPeer, hexPeer) = (peers[0], peers[1], peers[2])
        let agents = [
            ("localhost-gets-cafe", "https://localhost:\(cafePeer.port)/v1"),
            ("hexname-gets-localhost", "https://bad.cafe:\(localPeer.port)/v1"),
            ("short-ip-gets-localhost", "https://127.1:\(localPeer.port)/v1"),
            ("hexname-gets-hexname", "https://bad.cafe:\(hexPeer.port)/v1"),
        ]
        for (name, url) in agents {
            try rig.ok(["agents", "add", name, "--preset", "openai", "--url", url, "--model", "local/m"])
        }
        let worker = try rig.startWorker("w1", environment: Self.workerEnvironment.merging([
            "SSL_CERT_FILE": bundle, "HTTPS_PROXY": "http://127.0.0.1:\(proxy.port)", "HTTP_PROXY": "http://127.0.0.1:\(proxy.port)",
            "NO_PROXY": ".example.org,localhost,127.0.0.1",
        ], uniquingKeysWith: { $1 }))

        let ids = try rig.enqueueJSONL(agents.map { ["agent": $0.0, "prompt": "secret for \($0.0)"] })
        let healthyID = try rig.enqueue("Direct, not through the proxy", agent: "healthy")
        try Self.waitForAll(ids + [healthyID], rig: rig, worker: worker, timeout: 60)
        for (id, (name, _)) in zip(ids.prefix(3), agents) {
            try Self.expectFailed(id, containing: "not trusted", name, rig: rig)
            let error = try rig.task(id).error ?? "-"
            #expect(!error.contains("gave up"), "\(name) was retried: \(error)")
        }
        let rightName = try rig.task(ids[3])
        #expect(rightName.result == "hostile peer says hello", "the right name is accepted: \(rightName.error ?? "-")")
        #expect(try rig.task(healthyID).result == "reply 1: Direct, not through the proxy", rig.comment)
        let connects = WorkerProcessTests.lines(proxyLog)
        #expect(connects.contains("CONNECT bad.cafe:\(localPeer.port)") && connects.contains("CONNECT bad.cafe:\(hexPeer.port)"), "\(connects)")
        #expect(!connects.contains { $0.hasSuffix(":\(healthy.port)") || $0.contains("localhost") }, "NO_PROXY ignored: \(connects)")
    }
}

/// `HTTPClient.stream` on its own against the hostile peer: the size cap counts the whole stream, and a
/// stream in progress can be cancelled.
@Suite struct HTTPStreamingTests {
    final class Parts: @unchecked Sendable {
        let lock = NSLock()
        var bytes = 0
        var heads = 0
        func add(_ count: Int) { lock.withLock { bytes += count } }
        func head() { lock.withLock { heads += 1 } }
        var seen: (heads: Int, bytes: Int) { lock.withLock { (heads, bytes) } }
    }

    static func run(_ client: HTTPClient, _ url: String, cancelAfterHead: Bool = false) throws -> (Result<HTTPResponse, HTTPFailure>, Parts) {
        let parts = Parts()
        let box = ResultBox()
        let done = DispatchSemaphore(value: 0)
        let request = HTTPRequest(method: "POST", url: URL(string: url)!, body: Data("{}".utf8), timeoutSeconds: 60)
        let inFlight = client.stream(request, onHead: { _, _ in parts.head() }, onBodyPart: { parts.add($0.count); return .more },
                                     completion: { box.set($0); done.signal() })
        if cancelAfterHead {
            #expect(eventually(timeout: 20) { parts.seen.heads == 1 })
            inFlight.cancel()
        }
        #expect(done.wait(timeout: .now() + 60) == .success, "the stream never ended")
        return (try #require(box.get()), parts)
    }

    @Test func theSizeCapCountsTheWholeStreamAndAStreamCanBeCancelled() throws {
        let db = TempDatabase()
        let hostile = try FakeServer("hostile_peer.py", directory: db.directory)
        defer { hostile.stop() }
        let client = HTTPClient(environment: ["BGQ_HTTP_MAX_RESPONSE_BYTES": "1048576"])
        defer { client.shutdown() }
        let (capped, parts) = try Self.run(client, hostile.url + "/sse-endless-line/v1/chat/completions")
        guard case .failure(.tooLarge(let limit)) = capped else { Issue.record("not refused as too large: \(capped)"); return }
        #expect(limit == 1 << 20)
        #expect("\(HTTPFailure.tooLarge(limit: 1 << 20))".hasPrefix("response too large"))
        #expect(parts.seen.heads == 1 && parts.seen.bytes <= 1 << 20 && parts.seen.bytes > 0, "\(parts.seen)")
        let (cancelled, _) = try Self.run(client, hostile.url + "/sse-stall/v1/chat/completions", cancelAfterHead: true)
        guard case .failure(.cancelled) = cancelled else { Issue.record("not cancelled: \(cancelled)"); return }
        // A 2xx JSON body (a server that does not stream) goes to the reader as well.
        let (whole, wholeParts) = try Self.run(client, hostile.url + "/ok/v1/chat/completions")
        #expect((try? whole.get())?.status == 200 && wholeParts.seen.bytes > 0)
    }
}

/// The proxy and size settings a worker reads from its environment.
@Suite struct HTTPSettingsTests {
    @Test func proxiesFollowTheConventionOfOtherAgentTools() throws {
        let settings = HTTPSettings(environment: ["HTTPS_PROXY": "http://user:p%40ss@proxy.local:3128", "http_proxy": "10.0.0.1:8080",
                                                  "HTTP_PROXY": "http://ignored:1", "NO_PROXY": "localhost, .internal.example,10.1.2.3:443 [::1]"])
        #expect(settings.problem == nil)
        let viaHTTPS = try #require(settings.proxy(for: URL(string: "https://api.openai.com/v1")!))
        #expect(viaHTTPS == ProxyEndpoint(host: "proxy.local", port: 3128, user: "user", password: "p@ss"))
        #expect(settings.proxy(for: URL(string: "http://model.lan:8080/v1")!) == ProxyEndpoint(host: "10.0.0.1", port: 8080))
        for direct in ["https://localhost:4096", "http://api.internal.example/v1", "https://internal.example", "https://10.1.2.3",
                       "http://[::1]:4096", "https://LOCALHOST."] {
            #expect(settings.proxy(for: URL(string: direct)!) == nil, "\(direct) should bypass the proxy")
        }
        // A suffix matches at a dot only; an entry is not a substring match.
        #expect(settings.proxy(for: URL(string: "https://notinternal.example")!) != nil)
        #expect(settings.proxy(for: URL(string: "https://mylocalhost")!) != nil)
        let everything = HTTPSettings(environment: ["https_proxy": "http://p:1", "no_proxy": "*"])
        #expect(everything.proxy(for: URL(string: "https://api.anthropic.com")!) == nil)
        #expect(HTTPSettings(environment: [:]).proxy(for: URL(string: "https://api.anthropic.com")!) == nil)
    }

    @Test func unusableSettingsAreOneLineProblemsNotGuesses() {
        #expect(HTTPSettings(environment: [:]).maxResponseBytes == 64 << 20)
        #expect(HTTPSettings(environment: ["BGQ_HTTP_MAX_RESPONSE_BYTES": "1048576"]).maxResponseBytes == 1 << 20)
        let badSize = HTTPSettings(environment: ["BGQ_HTTP_MAX_RESPONSE_BYTES": "64MB"]).problem ?? ""
        #expect(badSize.contains("BGQ_HTTP_MAX_RESPONSE_BYTES") && badSize.contains("64MB"), "\(badSize)")
        let socks = HTTPSettings(environment: ["HTTPS_PROXY": "socks5://127.0.0.1:1080"]).problem ?? ""
        #expect(socks.contains("HTTPS_PROXY") && socks.contains("socks5"), "\(socks)")
        #expect(HTTPSettings(environment: ["BGQ_HTTP_READ_TIMEOUT_MS": "0"]).problem != nil)
    }

    /// A certificate's names against the URL's host: by name for names (hex-letter ones included), by address
    /// for literals, one label per wildcard.
    @Test func certificateNamesAreMatchedByNameNotByTheAddressConnectedTo() {
        let local: [UInt8] = [127, 0, 0, 1]
        #expect(CertificateName.covers(host: "bad.cafe", dnsNames: ["bad.cafe"], ipAddresses: []))
        #expect(!CertificateName.covers(host: "bad.cafe", dnsNames: ["localhost"], ipAddresses: [local]))
        #expect(!CertificateName.covers(host: "127.1", dnsNames: ["localhost"], ipAddresses: [local]), "127.1 is a name, not 127.0.0.1")
        #expect(CertificateName.covers(host: "127.0.0.1", dnsNames: [], ipAddresses: [local]))
        #expect(!CertificateName.covers(host: "127.0.0.1", dnsNames: ["127.0.0.1"], ipAddresses: []))
        #expect(CertificateName.covers(host: "API.Example.COM.", dnsNames: ["api.example.com"], ipAddresses: []))
        #expect(CertificateName.covers(host: "api.example.com", dnsNames: ["*.example.com"], ipAddresses: []))
        #expect(!CertificateName.covers(host: "a.api.example.com", dnsNames: ["*.example.com"], ipAddresses: []))
        #expect(!CertificateName.covers(host: "example.com", dnsNames: ["*.example.com"], ipAddresses: []))
        #expect(!CertificateName.covers(host: "example.com", dnsNames: ["*.com"], ipAddresses: []))
        #expect(CertificateName.covers(host: "[::1]", dnsNames: [], ipAddresses: [CertificateName.ipLiteral("::1")!]))
    }
}
