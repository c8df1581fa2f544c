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
        // The abort reaches the agent: SIGINT, then SIGTERM and SIGKILL as the worker's clock passes the grace
        // period (an agent may ignore SIGINT, as one started by a test runner that ignores it does).
        #expect(eventually(timeout: 20) {
            rig.clock.advance(milliseconds: rig.context.settings.abortGraceMs)
            rig.worker.aborter.escalate()
            return !ProcessSupport.isRunning(pid: pid, start: nil)
        })
    }
}
