import Foundation
import Testing
@testable import BGQBackends
@testable import BGQCLI
@testable import BGQCore
@testable import BGQSQLite
@testable import BGQScheduler
@testable import BGQSystem

/// A task whose workers keep dying (a reply that crashes the worker that reads it) ends in error after
/// `max_worker_deaths` deaths instead of being adopted by, and killing, every worker in turn.
@Suite(.serialized) struct PoisonTaskTests {
    typealias Rig = WorkerProcessTests.Rig

    @Test func aTaskWhoseWorkersDieTwiceEndsInErrorAndIsNotAdoptedAgain() throws {
        let rig = try Rig(["lease_timeout_ms": 1500])
        defer { rig.stop() }
        let first = try rig.startWorker("A")
        let id = try rig.enqueue("echo started; echo 'agent stderr line' >&2; sleep 60; echo never")
        let pid = try #require(try rig.waitRunning(id).run.pid)
        // The first worker dies holding the task: the next one adopts the session.
        rig.sigkill(first)
        let second = try rig.startWorker("B")
        #expect(try eventually(timeout: 30) { try rig.task(id).workerID == second.id }, rig.comment)
        // The second worker dies holding it too: the third gives up on the task instead of adopting it.
        rig.sigkill(second)
        let third = try rig.startWorker("C")

        let failed = try rig.waitFor(id, .error, timeout: 40)
        let error = failed.error ?? ""
        #expect(error.hasPrefix("worker died 2 times while running this task; last worker log: "), "\(error)\n\(rig.logs)")
        #expect(error.contains("/stderr"), "names the run's stderr file: \(error)")
        #expect(error.contains("agent stderr line"), "quotes its tail: \(error)")
        let adoptions = try rig.events(id).filter(WorkerProcessTests.isAdoption)
        #expect(adoptions.count == 1, "adopted once (by B), never by C: \(adoptions)\n\(rig.logs)")
        #expect(!adoptions.contains { $0.workerID == third.id })
        // The agent that outlived both workers is stopped, and the slot is free.
        #expect(eventually(timeout: 20) { WorkerProcessTests.processGone(pid) }, "the agent was left running\n\(rig.logs)")
        #expect(try rig.leaseCount() == 0, rig.comment)
        #expect(!rig.exited(third), "the third worker lives on")
    }

    @Test func oneDeathStillAdoptsAndTheLimitIsASetting() throws {
        let rig = try Rig(["lease_timeout_ms": 1500])
        defer { rig.stop() }
        try rig.ok(["settings", "set", "max_worker_deaths", "1"])
        let first = try rig.startWorker("A")
        let id = try rig.enqueue("sleep 60")
        _ = try rig.waitRunning(id)
        rig.sigkill(first)
        try rig.startWorker("B")
        let failed = try rig.waitFor(id, .error, timeout: 40)
        #expect((failed.error ?? "").hasPrefix("worker died 1 time while running this task"), "\(failed.error ?? "nil")\n\(rig.logs)")

        let refused = try rig.bgq(["settings", "set", "max_worker_deaths", "0"])
        #expect(refused.status == 2)
        #expect(refused.stderr.contains("max_worker_deaths"), "\(refused.stderr)")
    }
}
