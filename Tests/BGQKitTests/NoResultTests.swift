import Foundation
import Testing
@testable import BGQBackends
@testable import BGQCLI
@testable import BGQCore
@testable import BGQSQLite
@testable import BGQScheduler
@testable import BGQSystem

/// An agent CLI whose output format promises a result (claude, codex, gemini, opencode) and that exits 0
/// without one did not do its job: the task ends in error, not completed with an empty result.
@Suite(.serialized) struct NoResultTests {
    typealias Rig = WorkerProcessTests.Rig

    @Test func anAgentThatExitsZeroWithoutAResultLineFails() throws {
        let rig = try Rig()
        defer { rig.stop() }
        for preset in ["claude", "codex", "gemini", "opencode"] {
            try rig.ok(["agents", "add", "silent-\(preset)", "--preset", preset, "--executable", "/bin/true"])
        }
        try rig.startWorker("w1")
        let ids = try ["claude", "codex", "gemini", "opencode"].map { try rig.enqueue("say something", agent: "silent-\($0)") }
        let shell = try rig.enqueue("true")
        for id in ids {
            let task = try rig.waitFor(id, .error)
            #expect((task.error ?? "").hasPrefix("agent printed no result"), "\(task.agent): \(task.error ?? "nil")")
        }
        // A shell command may legitimately print nothing.
        let quiet = try rig.waitFor(shell, .completed)
        #expect(quiet.result == "")
    }
}
