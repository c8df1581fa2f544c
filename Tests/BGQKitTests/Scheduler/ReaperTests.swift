import Foundation
import Testing
@testable import BGQBackends
@testable import BGQCore
@testable import BGQSQLite
@testable import BGQScheduler
@testable import BGQSystem

/// The reaper resolves a dead worker's tasks; a database busy for a moment delays it, nothing more.
@Suite(.serialized) struct ReaperTests {
    @Test func aBusyDatabaseDelaysReapingAndTheUnstartedOrphanIsThenRequeued() throws {
        let rig = try SchedulerRig()
        let id = try rig.enqueue("echo hi", agent: "shell")
        // Another worker claimed it and died before starting the agent.
        let dead = try rig.store.registerWorker(WorkerRegistration(name: "dead", host: ProcessSupport.hostName, pid: 1, maxSessions: 1,
                                                                   runsDirectory: rig.context.runsDirectory))
        #expect(try rig.store.claimTasks(workerID: dead, capacity: 1).map(\.id) == [id])
        _ = try rig.store.setWorkerState(dead, to: .stopped, reason: "killed in the test")

        let lock = try rig.holdWriteLock()
        try rig.worker.reaper.reap()  // logged, not thrown: the worker goes on
        #expect(try rig.status(id) == .running)
        try lock.release()

        try rig.worker.reaper.reap()
        let task = try #require(try rig.store.task(id: id))
        #expect(task.status == .pending)
        #expect(task.statusReason?.contains("lost before the session started") == true, "\(task.statusReason ?? "nil")")
    }
}
