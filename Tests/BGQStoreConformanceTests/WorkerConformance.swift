import Testing
import BGQCore

/// Workers: the lease, death, orphans, adoption (once), orphan resolution and death counting; the
/// queued TTL.
@Suite struct WorkerConformance {
    /// A fixture with one task held by `owner`, and `reaper`, which outlived `owner`'s lease.
    struct Orphaned {
        let f: Fixture
        let owner: String
        let reaper: String
        let task: TaskRecord

        init(_ factory: StoreFactory, ownerState: WorkerState = .dead, limit: Int = 1) throws {
            f = try Fixture(factory)
            try setLimit(f.store, .model, "acme/m", limit)
            try enqueue(f.store, newTasks("t", 2, model: "acme/m"))
            owner = try registerWorker(f.store, "owner")
            task = try #require(try claim(f.store, owner, capacity: 1).first)
            f.clock.advance(milliseconds: 31_000)
            reaper = try registerWorker(f.store, "reaper")
            if ownerState == .dead {
                #expect(try f.store.declareSilentWorkersDead(except: reaper, leaseTimeoutMs: 30_000) == [owner])
            } else {
                try setWorkerState(f.store, owner, ownerState)
            }
        }
    }

    @Test(arguments: StoreFactory.all)
    func silentWorkersAreDeclaredDeadAfterTheLease(_ factory: StoreFactory) throws {
        let f = try Fixture(factory)
        let silent = try registerWorker(f.store, "silent")
        let stopping = try registerWorker(f.store, "stopping")
        try setWorkerState(f.store, stopping, .stopping)
        let caller = try registerWorker(f.store, "caller")
        let beating = try registerWorker(f.store, "beating")
        f.clock.advance(milliseconds: 29_000)
        #expect(try f.store.heartbeat(workerID: beating) == .owned)
        #expect(try f.store.declareSilentWorkersDead(except: caller, leaseTimeoutMs: 30_000).isEmpty)
        f.clock.advance(milliseconds: 2_000)
        // Not the caller itself (it is alive: it is asking), nor one whose heartbeat is recent.
        #expect(Set(try f.store.declareSilentWorkersDead(except: caller, leaseTimeoutMs: 30_000)) == [silent, stopping])
        let states = Dictionary(uniqueKeysWithValues: try f.store.listWorkers(includeGone: true).map { ($0.id, $0.state) })
        #expect(states == [silent: .dead, stopping: .dead, caller: .running, beating: .running])
        #expect(Set(try f.store.listWorkers(includeGone: false).map(\.id)) == [caller, beating])
    }

    @Test(arguments: StoreFactory.all)
    func aDeclaredDeadWorkerLosesItsHeartbeatAndStaysDead(_ factory: StoreFactory) throws {
        let o = try Orphaned(factory)
        #expect(try o.f.store.heartbeat(workerID: o.owner) == .lost)
        #expect(try setWorkerState(o.f.store, o.owner, .stopped) == .lost)
        #expect(try setWorkerState(o.f.store, o.owner, .running) == .lost)
        #expect(try o.f.store.listWorkers(includeGone: true).first { $0.id == o.owner }?.state == .dead)
        // Its task is no longer its own to finish.
        #expect(try o.f.store.orphanedTasks().map(\.id) == [o.task.id])
        expectLostOwnership { _ = try claim(o.f.store, o.owner) }
    }

    @Test(arguments: StoreFactory.all)
    func orphansAreTheRunningTasksOfDeadOrStoppedWorkers(_ factory: StoreFactory) throws {
        let f = try Fixture(factory)
        try enqueue(f.store, newTasks("t", 4))
        let dying = try registerWorker(f.store, "dying")
        let stopping = try registerWorker(f.store, "stopping")
        let alive = try registerWorker(f.store, "alive")
        let a = try claim(f.store, dying, capacity: 1), b = try claim(f.store, stopping, capacity: 1), c = try claim(f.store, alive, capacity: 1)
        #expect(try f.store.orphanedTasks().isEmpty)
        try setWorkerState(f.store, stopping, .stopped)
        f.clock.advance(milliseconds: 31_000)
        #expect(try f.store.heartbeat(workerID: alive) == .owned)
        #expect(try f.store.declareSilentWorkersDead(except: alive, leaseTimeoutMs: 30_000) == [dying])
        #expect(try f.store.orphanedTasks().map(\.id) == (a + b).map(\.id))
        #expect(c.count == 1)
    }

    @Test(arguments: StoreFactory.all)
    func adoptionKeepsTheAttemptAndCountsADeadOwnerNotAStoppedOne(_ factory: StoreFactory) throws {
        for ownerState in [WorkerState.dead, .stopped] {
            let o = try Orphaned(factory, ownerState: ownerState)
            let orphan = try #require(try o.f.store.orphanedTasks().first)
            #expect(try o.f.store.adopt(orphan, from: o.owner, by: o.reaper, reason: "adopted by reaper") == .owned)
            let adopted = try reload(o.f.store, o.task)
            #expect(adopted.status == .running && adopted.workerID == o.reaper && adopted.attempt == o.task.attempt)
            let last = try #require(try o.f.store.events(taskID: o.task.id).last)
            #expect(last.from == .running && last.to == .running && last.workerID == o.reaper && last.reason == "adopted by reaper")
            #expect(try deaths(o.f.store, adopted, owner: o.owner) == (ownerState == .dead ? 1 : 0, ownerState == .dead))
            // The adopter owns it now, slot included; the old owner can do nothing with it.
            #expect(try finish(o.f.store, o.task, by: o.owner, .completed(result: "zombie")) == .lost)
            #expect(try o.f.store.orphanedTasks().isEmpty)
            #expect(try claim(o.f.store, o.reaper).isEmpty)
            try complete(o.f.store, adopted, by: o.reaper)
        }
    }

    @Test(arguments: StoreFactory.all)
    func twoReapersAdoptAnOrphanOnce(_ factory: StoreFactory) throws {
        let o = try Orphaned(factory)
        let second = try o.f.another()
        let secondReaper = try registerWorker(second, "second-reaper")
        let orphan = try #require(try o.f.store.orphanedTasks().first)
        let seenBySecond = try #require(try second.orphanedTasks().first)
        let answers = [try o.f.store.adopt(orphan, from: o.owner, by: o.reaper, reason: "adopted"),
                       try second.adopt(seenBySecond, from: o.owner, by: secondReaper, reason: "adopted")]
        #expect(answers == [.owned, .lost])
        #expect(try reload(o.f.store, o.task).workerID == o.reaper)
        #expect(try deaths(o.f.store, o.task, owner: o.owner).recorded == 1)
        #expect(try second.resolveOrphan(seenBySecond, deadWorkerID: o.owner, outcome: .failed(error: "worker lost")) == .lost)
        #expect(try reload(o.f.store, o.task).status == .running)
    }

    @Test(arguments: StoreFactory.all)
    func anOrphanIsResolvedOnceAndItsRetryIsTheNextAttempt(_ factory: StoreFactory) throws {
        let o = try Orphaned(factory)
        let orphan = try #require(try o.f.store.orphanedTasks().first)
        #expect(try o.f.store.resolveOrphan(orphan, deadWorkerID: o.owner, outcome: .requeued(reason: "worker lost; retry", delayMs: 0)) == .owned)
        #expect(try o.f.store.resolveOrphan(orphan, deadWorkerID: o.owner, outcome: .failed(error: "worker lost")) == .lost)
        let requeued = try reload(o.f.store, o.task)
        #expect(requeued.status == .pending && requeued.workerID == nil)
        #expect(try deaths(o.f.store, requeued, owner: o.owner).recorded == 1)
        #expect(try o.f.store.events(taskID: o.task.id).map(\.to) == [.pending, .running, .pending])
        let retried = try #require(try claim(o.f.store, o.reaper, capacity: 1).first)
        #expect(retried.id == o.task.id && retried.attempt == o.task.attempt + 1)
    }

    @Test(arguments: StoreFactory.all)
    func aCancelRequestOnAnOrphanIsHonouredByItsResolution(_ factory: StoreFactory) throws {
        let o = try Orphaned(factory)
        #expect(try o.f.store.cancel(taskIDs: [o.task.id]).count == 1)
        let orphan = try #require(try o.f.store.orphanedTasks().first)
        #expect(orphan.cancelRequestedAt != nil)
        #expect(try o.f.store.resolveOrphan(orphan, deadWorkerID: o.owner, outcome: .cancelled(reason: "cancelled by user")) == .owned)
        #expect(try reload(o.f.store, o.task).status == .cancelled)
        #expect(try claim(o.f.store, o.reaper).count == 1)
    }

    // MARK: - TTL

    @Test(arguments: StoreFactory.all)
    func queuedTaskTimesOutAfterTheTTL(_ factory: StoreFactory) throws {
        let f = try Fixture(factory)
        let old = try enqueue(f.store, [newTask("old")])[0]
        f.clock.advance(milliseconds: 29 * 60_000)
        let young = try enqueue(f.store, [newTask("young")])[0]
        #expect(try f.store.expireQueuedTasks(ttlMs: 30 * 60_000).isEmpty)
        #expect(try f.store.expireQueuedTasks(ttlMs: 0).isEmpty)
        f.clock.advance(milliseconds: 60_000 + 1)
        #expect(try f.store.expireQueuedTasks(ttlMs: 30 * 60_000) == [old.id])
        let expired = try reload(f.store, old)
        #expect(expired.status == .error)
        #expect(expired.error == "Task timed out while queued (30 minutes)")
        #expect(expired.finishedAt == f.clock.now())
        #expect(try f.store.events(taskID: old.id).last?.to == .error)
        #expect(try reload(f.store, young).status == .pending)
        // A running task is not the queued TTL's business.
        let worker = try registerWorker(f.store)
        #expect(try claim(f.store, worker).map(\.id) == [young.id])
        f.clock.advance(milliseconds: 60 * 60_000)
        #expect(try f.store.expireQueuedTasks(ttlMs: 30 * 60_000).isEmpty)
        #expect(try reload(f.store, young).status == .running)
    }

    @Test(arguments: StoreFactory.all)
    func aFinishedTaskIsNeverNotFoundLater(_ factory: StoreFactory) throws {
        let f = try Fixture(factory)
        let task = try enqueue(f.store, [newTask("yesterday's work")])[0]
        let worker = try registerWorker(f.store)
        let held = try #require(try claim(f.store, worker).first)
        f.clock.advance(milliseconds: 5_000)
        try complete(f.store, held, by: worker, result: "the answer is 42")
        f.clock.advance(milliseconds: 86_400_000)
        let housekeeper = try registerWorker(f.store, "housekeeper")
        _ = try f.store.expireQueuedTasks(ttlMs: 30 * 60_000)
        _ = try f.store.declareSilentWorkersDead(except: housekeeper, leaseTimeoutMs: 30_000)
        _ = try f.store.failOrphanedHooks()
        let later = try reload(f.store, task)
        #expect(later.status == .completed && later.result == "the answer is 42")
        #expect(try f.store.resolveTaskID(String(task.id.dropFirst(3).prefix(6))) == task.id)
    }
}
