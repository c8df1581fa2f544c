import Foundation
import Testing
@testable import BGQBackends
@testable import BGQCore
@testable import BGQSQLite
@testable import BGQScheduler
@testable import BGQSystem

/// A hook's end is recorded even when the database refuses the first write.
@Suite(.serialized) struct HookRunnerTests {
    @Test func aHookEndThatCouldNotBeWrittenIsRecordedOnceTheDatabaseTakesWrites() throws {
        let rig = try SchedulerRig()
        let id = try rig.enqueue("done", onComplete: "echo oops >&2; exit 3")
        try rig.worker.claimer.claimAndStart()
        try rig.worker.poller.pollDue()
        #expect(try rig.status(id) == .completed)
        let hooks = rig.worker.hooks
        try hooks.startPending()
        #expect(hooks.running.count == 1)
        #expect(try rig.store.hooks(taskID: id).map(\.status) == [.running])

        // The hook ends while another process holds the write lock.
        let lock = try rig.holdWriteLock()
        let children = ChildExits(context: rig.context, hooks: hooks)
        #expect(eventually(timeout: 20) { children.collect(); return hooks.running.isEmpty })
        #expect(try rig.store.hooks(taskID: id).map(\.status) == [.running], "not written yet")
        try lock.release()

        try hooks.startPending()
        let recorded = try rig.store.hooks(taskID: id)
        #expect(recorded.map(\.status) == [.failed])
        #expect(recorded.first?.exitCode == 3)
        #expect(recorded.first?.error?.contains("oops") == true, "\(recorded)")
        #expect(!hooks.isBusy)
    }
}
