import Foundation
import Testing
@testable import BGQBackends
@testable import BGQCLI
@testable import BGQCore
@testable import BGQSQLite
@testable import BGQScheduler
@testable import BGQSystem

/// Agent definitions cannot hijack each other.
@Suite(.serialized) struct AgentDefinitionTests {
    typealias Rig = WorkerProcessTests.Rig

    @Test func replacingAnAgentNeedsForceAndSaysWhatItReplaces() throws {
        let db = TempDatabase()
        #expect(try BGQBinary.run(["agents", "add", "explore", "--preset", "claude", "--model", "anthropic/claude-sonnet-4-5"], db: db).status == 0)
        let again = try BGQBinary.run(["agents", "add", "explore", "--preset", "codex"], db: db)
        #expect(again.status == 2, "\(again.stderr)")
        #expect(again.stderr.contains("agent 'explore' exists (preset claude"), "\(again.stderr)")
        #expect(again.stderr.contains("--force"), "\(again.stderr)")
        #expect(try db.store().userAgents().first?.preset == "claude", "nothing was replaced")

        let forced = try BGQBinary.run(["agents", "add", "explore", "--preset", "codex", "--force"], db: db)
        #expect(forced.status == 0, "\(forced.stderr)")
        #expect(forced.stdout.contains("replaces agent 'explore' (preset claude"), "\(forced.stdout)")
        #expect(try db.store().userAgents().first?.preset == "codex")
    }

    @Test func aBuiltInNameKeepsItsPresetKind() throws {
        let db = TempDatabase()
        for force in [[], ["--force"]] {
            let hijack = try BGQBinary.run(["agents", "add", "claude", "--preset", "shell"] + force, db: db)
            #expect(hijack.status == 2, "\(hijack.stderr)")
            #expect(hijack.stderr.contains("built-in agent 'claude'"), "\(hijack.stderr)")
            #expect(hijack.stderr.contains("preset claude"), "\(hijack.stderr)")
        }
        // Through the command preset too (it runs any program with the prompt).
        #expect(try BGQBinary.run(["agents", "add", "claude", "--preset", "command", "--executable", "/bin/sh", "--force"], db: db).status == 2)
        #expect(try db.store().userAgents().isEmpty)

        let unforced = try BGQBinary.run(["agents", "add", "claude", "--preset", "claude", "--executable", "/usr/local/bin/claude"], db: db)
        #expect(unforced.status == 2)
        #expect(unforced.stderr.contains("built-in agent 'claude'") && unforced.stderr.contains("--force"), "\(unforced.stderr)")
        let pointed = try BGQBinary.run(["agents", "add", "claude", "--preset", "claude", "--executable", "/usr/local/bin/claude", "--force"], db: db)
        #expect(pointed.status == 0, "\(pointed.stderr)")
        #expect(pointed.stdout.contains("replaces the built-in agent 'claude'"), "\(pointed.stdout)")
    }
}
