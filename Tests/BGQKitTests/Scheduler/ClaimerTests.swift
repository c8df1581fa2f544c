import Foundation
import Testing
@testable import BGQBackends
@testable import BGQCore
@testable import BGQSQLite
@testable import BGQScheduler
@testable import BGQSystem

/// The claimer takes only what the worker has room for, and starts what it takes.
@Suite(.serialized) struct ClaimerTests {
    @Test func aFullWorkerClaimsNothingMore() throws {
        let rig = try SchedulerRig(maxSessions: 2)
        let ids = try (1...3).map { try rig.enqueue("answer \($0)") }
        #expect(try rig.worker.claimer.claimAndStart() == 2)
        // Its two sessions are not polled yet: no room, so the third task stays pending for another worker.
        #expect(try rig.worker.claimer.claimAndStart() == 0)
        let statuses = try ids.map { try rig.status($0) }
        #expect(statuses.filter { $0 == .running }.count == 2, "\(statuses)")
        #expect(statuses.filter { $0 == .pending }.count == 1, "\(statuses)")
        #expect(rig.context.sessions.count == 2)
        // Polled, they complete with their prompt as the result and free their slots.
        try rig.worker.poller.pollDue()
        #expect(try rig.worker.claimer.claimAndStart() == 1)
        try rig.worker.poller.pollDue()
        #expect(try ids.map { try rig.store.task(id: $0)?.result } == ["answer 1", "answer 2", "answer 3"])
    }
}
