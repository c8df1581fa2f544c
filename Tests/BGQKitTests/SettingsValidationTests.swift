import Foundation
import Testing
@testable import BGQBackends
@testable import BGQCLI
@testable import BGQCore
@testable import BGQSQLite
@testable import BGQScheduler
@testable import BGQSystem

/// Settings are checked against each other; numeric options and settings refuse out-of-range values with an
/// error that names them; `limits import` names the offending key.
@Suite struct SettingsValidationTests {
    @Test func aHeartbeatNotWellBelowTheLeaseIsRefused() throws {
        let db = TempDatabase()
        let lease = try BGQBinary.run(["settings", "set", "lease_timeout_ms", "5s"], db: db)
        #expect(lease.status == 2, "\(lease.stderr)")
        #expect(lease.stderr.contains("heartbeat_interval_ms (5000 ms)") && lease.stderr.contains("lease_timeout_ms (5000 ms)"), "\(lease.stderr)")
        #expect(lease.stderr.contains("a third"), "\(lease.stderr)")
        let heartbeat = try BGQBinary.run(["settings", "set", "heartbeat_interval_ms", "1h"], db: db)
        #expect(heartbeat.status == 2, "\(heartbeat.stderr)")
        #expect(try db.store().storedSettings().isEmpty, "nothing was stored")
        // Both at once, in one command: checked together.
        let both = try BGQBinary.run(["settings", "set", "heartbeat_interval_ms", "500ms", "lease_timeout_ms", "1500"], db: db)
        #expect(both.status == 0, "\(both.stderr)")
        #expect(try db.store().settings().leaseTimeoutMs == 1500)
    }

    @Test func aWorkerRefusesToStartOnContradictorySettings() throws {
        let db = TempDatabase()
        let store = try db.store()
        try store.setSetting("heartbeat_interval_ms", "3600000")
        try store.setSetting("lease_timeout_ms", "5000")
        let worker = try BGQBinary.run(["worker", "--exit-when-idle"], db: db, timeout: 30)
        #expect(worker.status == 2, "\(worker.stderr)")
        #expect(worker.stderr.contains("heartbeat_interval_ms") && worker.stderr.contains("lease_timeout_ms"), "\(worker.stderr)")
        #expect(try store.listWorkers(includeGone: true).isEmpty, "no worker registered")
    }

    /// A value out of range in the database (written with the sqlite3 shell) used to be replaced by the
    /// default without a word: commands that need the settings now refuse with the key and the fix,
    /// `bgq settings` shows it as invalid, and setting it again repairs it.
    @Test func aStoredValueOutOfRangeIsNamedNotSilentlyDefaulted() throws {
        let db = TempDatabase()
        let store = try db.store()
        try store.connection.run("INSERT INTO settings (key, value, updated_at) VALUES ('task_ttl_ms', '-5', '2026-01-01T00:00:00.000Z')")
        #expect(throws: BGQError.self) { try store.settings() }
        let enqueue = try BGQBinary.run(["enqueue", "--agent", "noop", "hello"], db: db)
        #expect(enqueue.status == 2, "\(enqueue.stderr)")
        #expect(enqueue.stderr.contains("task_ttl_ms") && enqueue.stderr.contains("bgq settings"), "\(enqueue.stderr)")
        let shown = try BGQBinary.run(["settings"], db: db)
        #expect(shown.status == 0 && shown.stdout.contains("INVALID"), "\(shown.stdout)\(shown.stderr)")
        #expect(try BGQBinary.run(["settings", "unset", "task_ttl_ms"], db: db).status == 0)
        #expect(try BGQBinary.run(["enqueue", "--agent", "noop", "hello"], db: db).status == 0)
    }

    /// An agent row whose arguments do not decode used to lose its arguments silently (the agent then ran
    /// without them); it is now a corrupt-database error that names the agent and how to fix it.
    @Test func anAgentWithUnreadableArgumentsIsNamed() throws {
        let db = TempDatabase()
        #expect(try BGQBinary.run(["agents", "add", "lint", "--preset", "shell", "--arg", "-x"], db: db).status == 0)
        let store = try db.store()
        try store.connection.run("UPDATE agents SET extra_args = '[1, 2]' WHERE name = 'lint'")
        let listed = try BGQBinary.run(["agents"], db: db)
        #expect(listed.status == 5, "\(listed.stdout)\(listed.stderr)")
        #expect(listed.stderr.contains("agent 'lint'") && listed.stderr.contains("extra_args"), "\(listed.stderr)")
    }

    @Test(arguments: [
        (["limits", "set", "--default", "-1"], "--default"),
        (["limits", "set", "--model", "local/a", "-2"], "limit"),
        (["limits", "set", "--default", "1000001"], "--default"),
        (["enqueue", "--agent", "shell", "--retries", "-1", "true"], "--retries"),
        (["enqueue", "--agent", "shell", "--priority", "-2000000", "true"], "--priority"),
        (["worker", "--max-sessions", "-2"], "--max-sessions"),
        (["settings", "set", "poll_interval_ms", "-5"], "poll_interval_ms"),
        (["settings", "set", "stable_polls", "-1"], "stable_polls"),
    ])
    func negativeAndOutOfRangeNumbersAreNamed(_ arguments: [String], _ name: String) throws {
        let db = TempDatabase()
        let result = try BGQBinary.run(arguments, db: db)
        #expect(result.status == 2, "\(arguments): \(result.stderr)")
        #expect(result.stderr.contains(name) && result.stderr.contains("out of range"), "\(arguments): \(result.stderr)")
        #expect(!result.stderr.contains("Missing"), "\(arguments): \(result.stderr)")
    }

    /// A negative value used to be taken for a flag ("Missing value for '--limit <limit>'"): each option
    /// that takes a number or a duration names itself and its range instead.
    @Test(arguments: [
        (["list", "--limit", "-1"], "--limit"),
        (["watch", "--since", "-1"], "--since"),
        (["show", "bg_1", "--block", "--timeout", "-5"], "--timeout"),
        (["wait", "--all", "--timeout", "-1"], "--timeout"),
        (["cancel", "bg_1", "--wait", "-1"], "--wait"),
        (["worker", "--poll-interval", "-2s"], "--poll-interval"),
        (["stats", "--since", "-1h"], "--since"),
        (["prune", "--older-than", "-1d"], "--older-than"),
    ])
    func negativeNumbersAreValuesNotFlags(_ arguments: [String], _ name: String) throws {
        let db = TempDatabase()
        let result = try BGQBinary.run(arguments, db: db)
        #expect(result.status == 2, "\(arguments): \(result.stderr)")
        #expect(result.stderr.contains(name), "\(arguments): \(result.stderr)")
        #expect(!result.stderr.contains("Missing value"), "\(arguments): \(result.stderr)")
    }

    @Test func aNegativePriorityIsANumberNotAFlag() throws {
        let db = TempDatabase()
        let result = try BGQBinary.run(["enqueue", "--agent", "shell", "--priority", "-5", "--json", "true"], db: db)
        #expect(result.status == 0, "\(result.stderr)")
        #expect(try db.store().listTasks(TaskFilter()).first?.priority == -5)
    }

    @Test func limitsImportNamesTheOffendingKeyAndRefusesMisspelledOnes() throws {
        let db = TempDatabase()
        let file = db.directory + "/omo.json"
        try #"{"background_task": {"providerConcurency": {"anthropic": 2}, "defaultConcurrency": 3}}"#.write(toFile: file, atomically: true, encoding: .utf8)
        let misspelled = try BGQBinary.run(["limits", "import", file], db: db)
        #expect(misspelled.status == 2, "\(misspelled.stderr)")
        #expect(misspelled.stderr.contains("background_task.providerConcurency") && misspelled.stderr.contains("--lenient"), "\(misspelled.stderr)")
        #expect(try db.store().limits() == Limits(), "nothing was imported")
        let lenient = try BGQBinary.run(["limits", "import", "--lenient", file], db: db)
        #expect(lenient.status == 0, "\(lenient.stderr)")
        #expect(lenient.stderr.contains("ignored background_task.providerConcurency"))
        #expect(try db.store().limits().defaultLimit == 3)

        try #"{"background_task": {"modelConcurrency": {"anthropic/claude-opus-4-5": -1}}}"#.write(toFile: file, atomically: true, encoding: .utf8)
        let negative = try BGQBinary.run(["limits", "import", file], db: db)
        #expect(negative.status == 2)
        #expect(negative.stderr.contains("background_task.modelConcurrency.anthropic/claude-opus-4-5") && negative.stderr.contains("out of range"), "\(negative.stderr)")
    }
}
