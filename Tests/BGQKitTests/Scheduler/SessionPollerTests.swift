import Foundation
import Testing
@testable import BGQBackends
@testable import BGQCore
@testable import BGQSQLite
@testable import BGQScheduler
@testable import BGQSystem

/// The poller applies the completion rules on the worker's clock.
@Suite(.serialized) struct SessionPollerTests {
    @Test func aSessionSilentPastTheStaleTimeoutIsCancelledAndItsAgentStopped() throws {
        let rig = try SchedulerRig(settings: ["stale_timeout_ms": "180000"])
        let id = try rig.enqueue("sleep 60", agent: "shell")
        #expect(try rig.worker.claimer.claimAndStart() == 1)
        let pid = try #require(try rig.store.task(id: id)?.run.pid)
        defer { ProcessSupport.signalGroup(pid, SIGKILL); _ = ProcessSupport.reapChildren(among: [pid]) }
        try rig.worker.poller.pollDue()
        rig.clock.advance(milliseconds: 179_000)
        rig.context.sessions[id]?.nextPollMonotonic = 0
        try rig.worker.poller.pollDue()
        #expect(try rig.status(id) == .running, "not stale before 180 s")

        rig.clock.advance(milliseconds: 2_000)
        rig.context.sessions[id]?.nextPollMonotonic = 0
        try rig.worker.poller.pollDue()
        let task = try #require(try rig.store.task(id: id))
        #expect(task.status == .cancelled)
        #expect(task.statusReason?.contains("Stale timeout") == true || task.error?.contains("Stale timeout") == true, "\(task)")
        // The abort reached the agent: its process group got SIGINT.
        #expect(eventually(timeout: 10) { !ProcessSupport.isRunning(pid: pid, start: nil) })
    }
}
