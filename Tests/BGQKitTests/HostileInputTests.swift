import Foundation
import Testing
@testable import BGQBackends
@testable import BGQCLI
@testable import BGQCore
@testable import BGQSQLite
@testable import BGQScheduler
@testable import BGQSystem

/// Hostile input gets a clear error or is stored and returned byte for byte; a rejected command
/// leaves the database unchanged.
@Suite(.serialized) struct HostileInputTests {
    /// The database's content as SQL text, to compare before and after a rejected command.
    static func dump(_ db: TempDatabase) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/sqlite3")
        process.arguments = [db.path, ".dump"]
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(decoding: data, as: UTF8.self)
    }

    static func expectRejected(_ arguments: [String], db: TempDatabase, stdin: String? = nil, code: Int32 = ExitStatus.usage,
                               mentioning: String? = nil, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let before = try dump(db)
        let result = try BGQBinary.run(arguments, db: db, stdin: stdin)
        #expect(result.status == code, "bgq \(arguments.joined(separator: " ")): \(result.stderr)", sourceLocation: sourceLocation)
        #expect(!result.stderr.contains("Fatal error") && !result.stderr.contains("Stack dump"), sourceLocation: sourceLocation)
        #expect(result.stderr.split(separator: "\n").count <= 3, "one clear error: \(result.stderr)", sourceLocation: sourceLocation)
        if let mentioning { #expect(result.stderr.contains(mentioning), "\(result.stderr)", sourceLocation: sourceLocation) }
        #expect(try dump(db) == before, "a rejected command changed the database", sourceLocation: sourceLocation)
    }

    static func seeded() throws -> TempDatabase {
        let db = TempDatabase()
        try BGQBinary.run(["enqueue", "--agent", "noop", "seed task"], db: db)
        return db
    }

    @Test func aTenMegabytePromptIsStoredAndReturnedByteForByte() throws {
        let db = TempDatabase()
        var random = SeededGenerator(seed: 10)
        let alphabet = Array("abcdefghijklmnopqrstuvwxyz $`'\"\\;|&<>(){}[]\n\téü漢字🙂")
        let prompt = String((0..<10_000_000).map { _ in alphabet[Int(random.next() % UInt64(alphabet.count))] })
        let file = db.directory + "/prompt.txt"
        try prompt.write(toFile: file, atomically: true, encoding: .utf8)
        let enqueued = try BGQBinary.run(["enqueue", "--agent", "noop", "--prompt-file", file, "--json"], db: db)
        #expect(enqueued.status == 0, "\(enqueued.stderr)")
        let store = try db.store()
        let id = try #require(try store.listTasks(TaskFilter()).first?.id)
        #expect(try store.task(id: id)?.prompt == prompt)
        // And through a worker: the no-op agent returns its prompt as the result.
        try BGQBinary.run(["worker", "--exit-when-idle"], db: db, timeout: 120)
        #expect(try store.task(id: id)?.result == prompt)
    }

    @Test func shellMetacharactersAreStoredByteForByte() throws {
        let db = TempDatabase()
        let prompt = "$(touch /tmp/x) `id` 'single' \"double\" ; rm -rf / && echo | cat > f < g \\ * ? [a] {b} ~ # %\nsecond line\ttab"
        let result = try BGQBinary.run(["enqueue", "--agent", "noop", "--json", "-"], db: db, stdin: prompt)
        #expect(result.status == 0)
        let shown = try BGQBinary.run(["show", "--json", String(try #require(try db.store().listTasks(TaskFilter()).first?.id))], db: db)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(shown.stdout.utf8)) as? [String: Any])
        #expect(object["prompt"] as? String == prompt)
    }

    @Test func invalidUTF8AndNULBytesAreRefused() throws {
        let db = try Self.seeded()
        let file = db.directory + "/bad.txt"
        try Data([0x66, 0x6F, 0xFF, 0xFE, 0x6F]).write(to: URL(fileURLWithPath: file))
        try Self.expectRejected(["enqueue", "--agent", "noop", "--prompt-file", file], db: db, mentioning: "UTF-8")
        try Self.expectRejected(["enqueue", "--agent", "noop", "-"], db: db, stdin: "before\u{0}after", mentioning: "NUL")
        try Self.expectRejected(["enqueue", "--agent", "noop", "   \n\t "], db: db, mentioning: "empty")
    }

    @Test(arguments: [
        ["limits", "set", "--default", "-1"],
        ["limits", "set", "--default", "99999999999999999999"],
        ["limits", "set", "--model", "a/b", "NaN"],
        ["limits", "set", "--provider", "anthropic", "1e9"],
        ["limits", "set", "--provider", "has/slash", "2"],
        ["limits", "set", "--model", "with space", "2"],
        ["enqueue", "--agent", "noop", "--priority", "NaN", "x"],
        ["enqueue", "--agent", "noop", "--priority", "2000000000", "x"],
        ["enqueue", "--agent", "noop", "--retries", "-1", "x"],
        ["enqueue", "--agent", "noop", "--retries", "101", "x"],
        ["show", "--block", "--timeout", "NaN", "bg_0"],
        ["show", "--block", "--timeout", "-5", "bg_0"],
        ["settings", "set", "poll_interval_ms", "-5"],
        ["settings", "set", "poll_interval_ms", "NaN"],
        ["settings", "set", "lease_timeout_ms", "1e400"],
        ["worker", "--max-sessions", "0"],
        ["worker", "--poll-interval", "inf"],
        ["list", "--limit", "-1"],
    ])
    func absurdNumbersAreRefused(_ arguments: [String]) throws {
        try Self.expectRejected(arguments, db: try Self.seeded())
    }

    @Test func unknownAndDuplicatedJSONFieldsAreRefusedWithTheLine() throws {
        let db = try Self.seeded()
        try Self.expectRejected(["enqueue", "--jsonl", "-"], db: db, stdin: #"{"agent":"noop","prompt":"a"}"# + "\n" + #"{"agent":"noop","prompt":"b","colour":"red"}"#,
                                mentioning: "line 2: unknown field 'colour'")
        try Self.expectRejected(["enqueue", "--jsonl", "-"], db: db, stdin: #"{"agent":"noop","prompt":"a","prompt":"b"}"#, mentioning: "duplicate key")
        try Self.expectRejected(["enqueue", "--jsonl", "-"], db: db, stdin: #"{"agent":"noop","prompt":"a","priority":1.5}"#, mentioning: "whole number")
        try Self.expectRejected(["enqueue", "--jsonl", "-"], db: db, stdin: #"{"agent":"noop","prompt":"a""#, mentioning: "line 1")
        let file = db.directory + "/omo.json"
        try #"{"background_task": {"defaultConcurrency": 2, "defaultConcurrency": 3}}"#.write(toFile: file, atomically: true, encoding: .utf8)
        try Self.expectRejected(["limits", "import", file], db: db, mentioning: "duplicate key")
    }

    @Test(arguments: ["bg_1' OR '1'='1", "'; DROP TABLE tasks; --", "bg_%", "bg_*", "bg_[a-f]", "\u{0}", String(repeating: "a", count: 5000)])
    func idsThatLookLikeSQLAreNotFound(_ id: String) throws {
        let db = try Self.seeded()
        try Self.expectRejected(["show", id], db: db, code: ExitStatus.notFound)
        try Self.expectRejected(["cancel", id], db: db, code: ExitStatus.notFound)
    }
}

/// Private data stays private, and prompts never reach a shell.
@Suite(.serialized) struct SecurityTests {
    static func mode(_ path: String) -> Int {
        ((try? FileManager.default.attributesOfItem(atPath: path)[.posixPermissions]) as? Int) ?? -1
    }

    /// A fake agent CLI that records its argv as JSON and prints nothing else.
    static func recorder(in directory: String) throws -> String {
        let path = directory + "/recorder"
        try """
            #!/usr/bin/env python3
            import json, os, sys
            with open(os.environ["RECORD_FILE"], "a") as f:
                f.write(json.dumps(sys.argv[1:]) + "\\n")
            """.write(toFile: path, atomically: true, encoding: .utf8)
        chmod(path, 0o755)
        return path
    }

    @Test func noPromptOrModelReachesAShellExceptTheShellPresetsCommand() throws {
        let db = TempDatabase()
        let recorder = try Self.recorder(in: db.directory)
        let record = db.directory + "/argv.jsonl"
        let canary = db.directory + "/pwned"
        let prompts = ["$(touch \(canary)-1)", "`touch \(canary)-2`", "x; touch \(canary)-3", "x && touch \(canary)-4 | cat", "'\"; touch \(canary)-5; \""]
        for preset in ["claude", "opencode", "codex", "gemini", "llm"] {
            try BGQBinary.run(["agents", "add", "rec-\(preset)", "--preset", preset, "--executable", recorder], db: db)
            for prompt in prompts {
                let queued = try BGQBinary.run(["enqueue", "--agent", "rec-\(preset)", "--model", "p/$(id>\(canary)-model)`id>\(canary)-tick`;id", prompt], db: db)
                #expect(queued.status == 0, "\(queued.stderr)")
            }
        }
        try BGQBinary.run(["worker", "--exit-when-idle", "--poll-interval", "100ms"], db: db, environment: ["RECORD_FILE": record], timeout: 120)
        let files = try FileManager.default.contentsOfDirectory(atPath: db.directory)
        #expect(!files.contains { $0.hasPrefix("pwned") }, "a prompt or model was run by a shell: \(files)")
        let lines = try String(contentsOfFile: record, encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 25)
        for line in lines {
            let argv = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String])
            #expect(prompts.contains { argv.contains($0) }, "the prompt arrives as one argument, unchanged: \(argv)")
        }
    }

    @Test func databaseWALAndSessionLogsAreOwnerOnly() throws {
        let db = TempDatabase()
        let nested = db.directory + "/private/dir/bgq.db"
        let env = ["BGQ_DB": nested]
        try BGQBinary.run(["enqueue", "--agent", "shell", "echo secret-result; echo oops >&2"], db: db, environment: env)
        let worker = try BGQBinary.start(["worker", "--poll-interval", "100ms"], db: db, environment: env)
        defer { kill(worker.processIdentifier, SIGKILL); worker.waitUntilExit() }
        let store = try SQLiteStore(path: nested)
        #expect(eventually { (try? store.listTasks(TaskFilter()).first?.status) == .completed })
        #expect(Self.mode(db.directory + "/private") & 0o077 == 0)
        #expect(Self.mode(db.directory + "/private/dir") == 0o700)
        #expect(Self.mode(nested) == 0o600)
        #expect(Self.mode(nested + "-wal") == 0o600)
        #expect(Self.mode(nested + "-shm") == 0o600)
        let runs = nested + ".runs"
        #expect(Self.mode(runs) == 0o700)
        for run in try FileManager.default.contentsOfDirectory(atPath: runs) {
            #expect(Self.mode(runs + "/" + run) == 0o700)
            for file in try FileManager.default.contentsOfDirectory(atPath: runs + "/" + run) {
                #expect(Self.mode(runs + "/" + run + "/" + file) == 0o600, "\(file)")
            }
        }
    }

    @Test func aPlantedAPIKeyIsWrittenNowhere() throws {
        let db = TempDatabase()
        let key = "sk-ant-planted-\(UUID().uuidString)"
        let password = "opencode-planted-\(UUID().uuidString)"
        let env = ["ANTHROPIC_API_KEY": key, "OPENAI_API_KEY": key, "OPENCODE_SERVER_PASSWORD": password, "BGQ_STANDIN_SECONDS": "0.2"]
        try BGQBinary.run(["agents", "add", "explore", "--preset", "claude", "--executable", repositoryRoot + "/Scripts/stand-in-agent"], db: db)
        let refused = try BGQBinary.run(["agents", "add", "leaky", "--preset", "claude", "--env", "ANTHROPIC_API_KEY=\(key)"], db: db)
        #expect(refused.status == ExitStatus.usage)
        #expect(!refused.stderr.contains(key), "the refusal does not echo the secret")
        var outputs = ""
        for prompt in ["find auth", "[fail] boom"] {
            outputs += try BGQBinary.run(["enqueue", "--agent", "explore", prompt], db: db, environment: env).stdout
        }
        let log = db.directory + "/worker.log"
        let worker = try BGQBinary.start(["worker", "--poll-interval", "100ms", "--log-format", "json"], db: db, environment: env, logTo: log)
        defer { kill(worker.processIdentifier, SIGKILL); worker.waitUntilExit() }
        let store = try db.store()
        #expect(eventually { (try? store.activeTaskIDs(parentID: nil).isEmpty) == true })
        for id in try store.listTasks(TaskFilter()).map(\.id) {
            outputs += try BGQBinary.run(["show", "--json", id], db: db).stdout
        }
        outputs += try BGQBinary.run(["list", "--json"], db: db).stdout + (try BGQBinary.run(["agents", "--json"], db: db).stdout)
        var written: [String: Data] = ["output": Data(outputs.utf8)]
        for suffix in ["", "-wal"] { written["db" + suffix] = FileManager.default.contents(atPath: db.path + suffix) ?? Data() }
        written["worker log"] = FileManager.default.contents(atPath: log) ?? Data()
        if let enumerator = FileManager.default.enumerator(atPath: db.path + ".runs") {
            for case let file as String in enumerator {
                written[file] = FileManager.default.contents(atPath: db.path + ".runs/" + file) ?? Data()
            }
        }
        for (name, data) in written {
            #expect(data.range(of: Data(key.utf8)) == nil, "the API key was written to \(name)")
            #expect(data.range(of: Data(password.utf8)) == nil, "the password was written to \(name)")
        }
    }
}
