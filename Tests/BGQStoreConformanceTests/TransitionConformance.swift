import Testing
import BGQCore

/// Guarded transitions: only the owner of the current attempt writes, anyone else learns `.lost` and
/// changes nothing; a slot goes with the transition that ends its task; cancel.
@Suite struct TransitionConformance {
    /// A key with one slot and two tasks: the first held by `owner`, the second waiting; `other` is a live worker.
    static func oneSlotHeld(_ factory: StoreFactory) throws -> (f: Fixture, owner: String, other: String, held: TaskRecord) {
        let f = try Fixture(factory)
        try setLimit(f.store, .model, "acme/m", 1)
        try enqueue(f.store, newTasks("t", 2, model: "acme/m"))
        let owner = try registerWorker(f.store, "owner")
        let other = try registerWorker(f.store, "other")
        return (f, owner, other, try #require(try claim(f.store, owner).first))
    }

    @Test(arguments: StoreFactory.all)
    func finishByAnotherWorkerIsLostAndChangesNothing(_ factory: StoreFactory) throws {
        let (f, owner, other, held) = try Self.oneSlotHeld(factory)
        let before = try reload(f.store, held)
        let eventsBefore = try f.store.events(taskID: held.id)

        #expect(try finish(f.store, held, by: other, .completed(result: "stolen")) == .lost)
        #expect(try finish(f.store, held, by: other, .failed(error: "nope")) == .lost)
        #expect(try finish(f.store, held, by: other, .cancelled(reason: "nope")) == .lost)
        #expect(try finish(f.store, held, by: other, .requeued(reason: "nope", delayMs: 0)) == .lost)

        #expect(try reload(f.store, held) == before)
        #expect(try f.store.events(taskID: held.id) == eventsBefore)
        // Its slot is still held: the other task of the key cannot start.
        #expect(try claim(f.store, other).isEmpty)
    }

    @Test(arguments: StoreFactory.all)
    func finishWithAStaleAttemptIsLost(_ factory: StoreFactory) throws {
        let f = try Fixture(factory)
        try enqueue(f.store, [newTask("t")])
        let owner = try registerWorker(f.store)
        let held = try #require(try claim(f.store, owner).first)
        var stale = held
        stale.attempt -= 1
        #expect(try finish(f.store, stale, by: owner, .completed(result: "old")) == .lost)
        #expect(try reload(f.store, held).status == .running)
    }

    @Test(arguments: StoreFactory.all)
    func progressAndSessionStartByANonOwnerWriteNothing(_ factory: StoreFactory) throws {
        let f = try Fixture(factory)
        try enqueue(f.store, [newTask("t")])
        let owner = try registerWorker(f.store, "owner")
        let other = try registerWorker(f.store, "other")
        let held = try #require(try claim(f.store, owner).first)
        let before = try reload(f.store, held)

        let forged = Identifier.newSessionID()
        #expect(try startSession(f.store, held, by: other, sessionStart(forged)) == .lost)
        #expect(try f.store.session(id: forged) == nil, "a lost start writes no session row either")
        #expect(try recordProgress(f.store, held, by: other, progressUpdate(held, lastMessage: "forged")) == .lost)
        #expect(try reload(f.store, held) == before)
        #expect(try f.store.messages(taskID: held.id).isEmpty)

        // The owner's own writes go through.
        let session = Identifier.newSessionID()
        #expect(try startSession(f.store, held, by: owner, sessionStart(session)) == .owned)
        let started = try reload(f.store, held)
        #expect(started.sessionID == session)
        let message = assistantMessage("hello", at: f.clock.now())
        #expect(try recordProgress(f.store, started, by: owner, progressUpdate(started, messages: [message])) == .owned)
        #expect(try reload(f.store, held).progress.lastMessage == "hello")
        #expect(try f.store.messages(taskID: held.id) == [message])
    }

    @Test(arguments: StoreFactory.all)
    func aFinishedTaskCannotBeFinishedAgain(_ factory: StoreFactory) throws {
        let f = try Fixture(factory)
        try enqueue(f.store, [newTask("t")])
        let owner = try registerWorker(f.store)
        let held = try #require(try claim(f.store, owner).first)
        try complete(f.store, held, by: owner, result: "first")
        let done = try reload(f.store, held)
        f.clock.advance(milliseconds: 1_000)
        #expect(try finish(f.store, held, by: owner, .failed(error: "second")) == .lost)
        #expect(try finish(f.store, held, by: owner, .requeued(reason: "again", delayMs: 0)) == .lost)
        #expect(try f.store.cancel(taskIDs: [held.id]) == [.alreadyFinished(done)])
        #expect(try reload(f.store, held) == done)
        #expect(try f.store.events(taskID: held.id).map(\.to) == [.pending, .running, .completed])
    }

    /// Every way a running task ends gives its slot back at once: the next task of a limit-1 key starts.
    @Test(arguments: StoreFactory.all)
    func everyEndOfARunningTaskFreesItsSlotAtOnce(_ factory: StoreFactory) throws {
        let f = try Fixture(factory)
        try setLimit(f.store, .model, "acme/m", 1)
        let outcomes: [TaskOutcome] = [.completed(result: "r"), .failed(error: "e"), .cancelled(reason: "c"),
                                       .requeued(reason: "back", delayMs: 60_000)]
        try enqueue(f.store, newTasks("t", outcomes.count + 2, model: "acme/m"))
        let worker = try registerWorker(f.store)
        var held = try #require(try claim(f.store, worker).first)
        for outcome in outcomes {
            #expect(try finish(f.store, held, by: worker, outcome) == .owned)
            let next = try claim(f.store, worker)
            #expect(next.count == 1, "after \(outcome)")
            held = try #require(next.first)
        }
        // The reaper's ending of a dead worker's task frees the slot the same way.
        f.clock.advance(milliseconds: 31_000)
        let reaper = try registerWorker(f.store, "reaper")
        #expect(try f.store.declareSilentWorkersDead(except: reaper, leaseTimeoutMs: 30_000) == [worker])
        #expect(try f.store.resolveOrphan(held, deadWorkerID: worker, outcome: .failed(error: "worker lost")) == .owned)
        #expect(try claim(f.store, reaper).count == 1)
    }

    @Test(arguments: StoreFactory.all)
    func aLateFinishAfterRequeueAndReclaimIsLostAndKeepsTheNewOwnersSlot(_ factory: StoreFactory) throws {
        let (f, a, b, first) = try Self.oneSlotHeld(factory)
        #expect(try finish(f.store, first, by: a, .requeued(reason: "handed back", delayMs: 0)) == .owned)
        let again = try #require(try claim(f.store, b).first)
        #expect(again.id == first.id && again.workerID == b)
        // A's stale copy cannot end B's attempt, nor free B's slot.
        #expect(try finish(f.store, first, by: a, .completed(result: "late")) == .lost)
        #expect(try reload(f.store, again).status == .running)
        #expect(try claim(f.store, a).isEmpty)
        #expect(try runningByKey(f.store) == ["model:acme/m": 1])
    }

    // MARK: - Cancel

    @Test(arguments: StoreFactory.all)
    func cancelOfAPendingTaskEndsItAtOnce(_ factory: StoreFactory) throws {
        let f = try Fixture(factory)
        let task = try enqueue(f.store, [newTask("t")])[0]
        f.clock.advance(milliseconds: 2_000)
        let outcome = try f.store.cancel(taskIDs: [task.id], reason: "not needed")
        let cancelled = try reload(f.store, task)
        #expect(outcome == [.cancelled(cancelled)])
        #expect(cancelled.status == .cancelled && cancelled.finishedAt == f.clock.now() && cancelled.error == "not needed")
        let last = try #require(try f.store.events(taskID: task.id).last)
        #expect(last.from == .pending && last.to == .cancelled && last.reason == "not needed")
        #expect(try claim(f.store, try registerWorker(f.store)).isEmpty)
    }

    @Test(arguments: StoreFactory.all)
    func cancelOfARunningTaskIsARequestItsOwnerSees(_ factory: StoreFactory) throws {
        let (f, owner, other, held) = try Self.oneSlotHeld(factory)
        // Asked from another connection, as `bgq cancel` is.
        let outcome = try f.another().cancel(taskIDs: [held.id], reason: "cancelled by user")
        let requested = try reload(f.store, held)
        #expect(outcome == [.requested(requested)])
        #expect(requested.status == .running && requested.cancelRequestedAt == f.clock.now())
        #expect(try f.store.cancelRequests(workerID: owner) == [held.id])
        #expect(try f.store.cancelRequests(workerID: other).isEmpty)
        // The owner aborts the session and ends the task: the slot is free for the next one.
        #expect(try finish(f.store, held, by: owner, .cancelled(reason: "cancelled by user")) == .owned)
        #expect(try f.store.cancelRequests(workerID: owner).isEmpty)
        #expect(try claim(f.store, other).count == 1)
    }

    @Test(arguments: StoreFactory.all)
    func unknownIdsAreTypedNotFound(_ factory: StoreFactory) throws {
        let f = try Fixture(factory)
        let task = try enqueue(f.store, [newTask("t")])[0]
        let missing = task.id == "bg_00000000" ? "bg_00000001" : "bg_00000000"
        #expect(try f.store.task(id: missing) == nil)
        for attempt in [{ _ = try f.store.requireTask(id: missing) }, { _ = try f.store.cancel(taskIDs: [missing]) },
                        { _ = try f.store.resolveTaskID(missing) }, { _ = try f.store.resolveSessionID("ses_000000000000") }] as [() throws -> Void] {
            let error = #expect(throws: BGQError.self) { try attempt() }
            guard case .notFound = error else { Issue.record("expected .notFound, got \(String(describing: error))"); continue }
        }
        #expect(try reload(f.store, task).status == .pending)
    }
}
