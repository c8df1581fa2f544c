import Foundation
import Testing
@testable import BGQBackends
@testable import BGQCLI
@testable import BGQCore
@testable import BGQSQLite
@testable import BGQScheduler
@testable import BGQSystem

/// Input is checked the same way on every path: argv like files and stdin, with a prompt size cap that
/// fits the agent's command line, checked at enqueue.
@Suite(.serialized) struct InputValidationTests {
    typealias Rig = WorkerProcessTests.Rig

    /// Runs `bgq` through a shell, so that an argument can hold bytes that are not UTF-8 (`printf '\377'`).
    static func shell(_ script: String, db: TempDatabase) throws -> CommandResult {
        try ForeignCommand.run("/bin/sh", ["-c", script], environment: ["BGQ": BGQBinary.path, "BGQ_DB": db.path])
    }

    @Test func invalidUTF8OnTheCommandLineIsRefusedLikeInAFile() throws {
        let db = TempDatabase()
        let prompt = try Self.shell(#""$BGQ" enqueue --agent shell "$(printf 'echo caf\351')""#, db: db)
        #expect(prompt.status == 2, "\(prompt.stderr)")
        #expect(prompt.stderr.contains("the prompt is not valid UTF-8"), "\(prompt.stderr)")
        let model = try Self.shell(#""$BGQ" enqueue --agent shell --model "$(printf 'local/m\377')" 'echo ok'"#, db: db)
        #expect(model.status == 2, "\(model.stderr)")
        #expect(model.stderr.contains("--model is not valid UTF-8"), "\(model.stderr)")
        let description = try Self.shell(#""$BGQ" enqueue --agent shell --description "$(printf '\300\200')" 'echo ok'"#, db: db)
        #expect(description.status == 2, "\(description.stderr)")
        #expect(try db.store().listTasks(TaskFilter()).isEmpty, "nothing was enqueued")
        // Valid UTF-8 beyond ASCII goes through.
        #expect(try Self.shell(#""$BGQ" enqueue --agent shell "$(printf 'echo caf\303\251')""#, db: db).status == 0)
    }

    @Test func aPromptTooLongForTheCommandLineIsRefusedAtEnqueue() throws {
        let db = TempDatabase()
        let file = db.directory + "/big"
        try ("echo " + String(repeating: "x", count: 200_000)).write(toFile: file, atomically: true, encoding: .utf8)
        for agent in ["shell", "claude"] {
            let refused = try BGQBinary.run(["enqueue", "--agent", agent, "--prompt-file", file], db: db)
            #expect(refused.status == 2, "\(agent): \(refused.stderr)")
            #expect(refused.stderr.contains("prompt too long for --agent \(agent)'s command line"), "\(refused.stderr)")
        }
        let claude = try BGQBinary.run(["enqueue", "--agent", "claude", "--prompt-file", file], db: db)
        #expect(claude.stderr.contains("use a stdin preset"), "\(claude.stderr)")
        // The same prompt on stdin fits.
        #expect(try BGQBinary.run(["agents", "add", "big", "--preset", "claude", "--prompt-via", "stdin"], db: db).status == 0)
        #expect(try BGQBinary.run(["enqueue", "--agent", "big", "--prompt-file", file], db: db).status == 0)
        // ...up to its own cap, a setting.
        #expect(try BGQBinary.run(["settings", "set", "max_prompt_bytes", "100000"], db: db).status == 0)
        let capped = try BGQBinary.run(["enqueue", "--agent", "big", "--prompt-file", file], db: db)
        #expect(capped.status == 2)
        #expect(capped.stderr.contains("max_prompt_bytes"), "\(capped.stderr)")
        #expect(try db.store().listTasks(TaskFilter()).count == 1)
    }

    @Test func aPromptJustUnderTheArgvCapRuns() throws {
        let rig = try Rig()
        defer { rig.stop() }
        try rig.startWorker("w1")
        let id = try rig.enqueue(": " + String(repeating: "x", count: 120_000) + "; echo fits")
        let task = try rig.waitFor(id, .completed)
        #expect(task.result == "fits", "\(task.error ?? "")")
    }

    @Test func emptyDescriptionAndParentAreRefused() throws {
        let db = TempDatabase()
        let description = try BGQBinary.run(["enqueue", "--agent", "shell", "--description", " ", "true"], db: db)
        #expect(description.status == 2)
        #expect(description.stderr.contains("description is empty"), "\(description.stderr)")
        let parent = try BGQBinary.run(["enqueue", "--agent", "shell", "--parent", "", "true"], db: db)
        #expect(parent.status == 2)
        #expect(parent.stderr.contains("parent is empty"), "\(parent.stderr)")
        let line = try BGQBinary.run(["enqueue", "--jsonl", "-"], db: db, stdin: #"{"agent":"shell","prompt":"true","description":""}"#)
        #expect(line.status == 2)
        #expect(line.stderr.contains("JSONL line 1: the description is empty"), "\(line.stderr)")
        #expect(try db.store().listTasks(TaskFilter()).isEmpty)
    }
}
