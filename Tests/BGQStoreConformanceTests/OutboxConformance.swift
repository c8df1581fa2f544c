import Testing
import BGQCore

/// Completion hooks and parent notices: written with the terminal transition, claimed exactly once.
@Suite struct OutboxConformance {
    /// Where the no-op test session says its parent's OpenCode server is (the HTTP backends' handle).
    static let parentServer = #"{"parentServer":{"url":"http://127.0.0.1:4096","directory":"/src/app"}}"#

    @Test(arguments: StoreFactory.all)
    func aTerminalTransitionQueuesEachHookOnce(_ factory: StoreFactory) throws {
        let f = try Fixture(factory)
        try setSetting(f.store, "on_complete", "cat >> all.jsonl")
        let task = try enqueue(f.store, [newTask("hooked", retries: 1, onComplete: "notify-send done")])[0]
        let worker = try registerWorker(f.store)
        let first = try #require(try claim(f.store, worker).first)
        #expect(try finish(f.store, first, by: worker, .requeued(reason: "retry", delayMs: 0)) == .owned)
        #expect(try f.store.hooks(taskID: task.id).isEmpty, "a requeue is no end")
        let second = try #require(try claim(f.store, worker).first)
        try complete(f.store, second, by: worker)
        #expect(try hookStatuses(f.store, task.id) == ["notify-send done": "pending", "cat >> all.jsonl": "pending"])
        #expect(try finish(f.store, second, by: worker, .failed(error: "again")) == .lost)
        #expect(try f.store.hooks(taskID: task.id).count == 2)
        // A cancelled pending task ends too.
        let cancelled = try enqueue(f.store, [newTask("cancelled")])[0]
        _ = try f.store.cancel(taskIDs: [cancelled.id])
        #expect(try hookStatuses(f.store, cancelled.id) == ["cat >> all.jsonl": "pending"])
    }

    @Test(arguments: StoreFactory.all)
    func aHookRunsOnceAndItsEndIsRecorded(_ factory: StoreFactory) throws {
        let f = try Fixture(factory)
        try enqueue(f.store, [newTask("a", onComplete: "true"), newTask("b", onComplete: "false")])
        let worker = try registerWorker(f.store)
        for task in try claim(f.store, worker) { try complete(f.store, task, by: worker) }
        let hooks = try f.store.claimHooks(workerID: worker, limit: 10)
        #expect(hooks.map(\.command) == ["true", "false"])
        #expect(try f.store.claimHooks(workerID: worker, limit: 10).isEmpty)
        #expect(try f.another().claimHooks(workerID: try registerWorker(f.store, "other"), limit: 10).isEmpty)
        try finishHook(f.store, hooks[0], exitCode: 0)
        try finishHook(f.store, hooks[1], exitCode: 1, error: "exit 1")
        let recorded = try f.store.hooks(taskID: hooks[1].taskID)
        #expect(recorded.map(\.status) == [.failed] && recorded.first?.exitCode == 1 && recorded.first?.error == "exit 1")
        #expect(try hookStatuses(f.store, hooks[0].taskID) == ["true": "done"])
        // Finished is final: a second report changes nothing, and says so.
        #expect(try finishHook(f.store, hooks[0], exitCode: 9, error: "late") == .lost)
        #expect(try f.store.hooks(taskID: hooks[0].taskID).first?.exitCode == 0)
    }

    /// Only the worker that claimed a hook may record its process and its end: another worker (one that
    /// wrongly thinks it runs the hook) is told `.lost` and changes nothing.
    @Test(arguments: StoreFactory.all)
    func aHookIsRecordedOnlyByTheWorkerThatClaimedIt(_ factory: StoreFactory) throws {
        let f = try Fixture(factory)
        try enqueue(f.store, [newTask("a", onComplete: "make deploy")])
        let owner = try registerWorker(f.store, "owner")
        let other = try registerWorker(f.store, "other")
        for task in try claim(f.store, owner) { try complete(f.store, task, by: owner) }
        let hook = try #require(try f.store.claimHooks(workerID: owner, limit: 1).first)
        #expect(try f.store.recordHookStarted(hook, pid: 99, workerID: other) == .lost)
        #expect(try finishHook(f.store, hook, exitCode: 0, by: other) == .lost)
        #expect(try hookStatuses(f.store, hook.taskID) == ["make deploy": "running"])
        #expect(try f.store.recordHookStarted(hook, pid: 99, workerID: owner) == .owned)
        #expect(try finishHook(f.store, hook, exitCode: 0, by: owner) == .owned)
        #expect(try hookStatuses(f.store, hook.taskID) == ["make deploy": "done"])
    }

    @Test(arguments: StoreFactory.all)
    func aHookCutOffByItsWorkersDeathFailsAndIsNeverRunAgain(_ factory: StoreFactory) throws {
        let f = try Fixture(factory)
        let task = try enqueue(f.store, [newTask("t", onComplete: "make deploy")])[0]
        let dying = try registerWorker(f.store, "dying")
        try complete(f.store, try #require(try claim(f.store, dying).first), by: dying)
        #expect(try f.store.claimHooks(workerID: dying, limit: 1).count == 1)
        #expect(try f.store.failOrphanedHooks() == 0, "its worker is alive")
        f.clock.advance(milliseconds: 31_000)
        let reaper = try registerWorker(f.store, "reaper")
        #expect(try f.store.declareSilentWorkersDead(except: reaper, leaseTimeoutMs: 30_000) == [dying])
        #expect(try f.store.failOrphanedHooks() == 1)
        #expect(try hookStatuses(f.store, task.id) == ["make deploy": "failed"])
        #expect(try f.store.claimHooks(workerID: reaper, limit: 10).isEmpty)
    }

    // MARK: - Parent notices

    /// A parent with two tasks on an OpenCode server, both finished: their notices as the trigger wrote them.
    static func finishedBatch(_ f: Fixture, worker: String) throws -> [TaskRecord] {
        let batch = try enqueue(f.store, [newTask("one", parent: "ses_parent"), newTask("two", parent: "ses_parent")])
        let held = try claim(f.store, worker)
        for task in held {
            #expect(try startSession(f.store, task, by: worker, sessionStart(handle: parentServer)) == .owned)
        }
        try complete(f.store, try reload(f.store, held[0]), by: worker)
        #expect(try notices(f.store, batch[0].id).map(\.kind) == ["task"], "one task still runs: no batch notice yet")
        try complete(f.store, try reload(f.store, held[1]), by: worker)
        return batch
    }

    @Test(arguments: StoreFactory.all)
    func aTaskUnderAParentOnAServerQueuesOneTaskAndOneBatchNotice(_ factory: StoreFactory) throws {
        let f = try Fixture(factory)
        let worker = try registerWorker(f.store)
        let batch = try Self.finishedBatch(f, worker: worker)
        #expect(try notices(f.store, batch[0].id).map(\.kind) == ["task"])
        #expect(try notices(f.store, batch[1].id).map(\.kind) == ["task", "batch"])
        #expect(try notices(f.store, batch[1].id).allSatisfy { $0.state == "pending" })
        // A task without a parent session on a server queues none.
        let plain = try enqueue(f.store, [newTask("plain")])[0]
        try complete(f.store, try #require(try claim(f.store, worker).first), by: worker)
        #expect(try f.store.parentNotices(taskID: plain.id).isEmpty)
    }

    @Test(arguments: StoreFactory.all)
    func aNoticeIsClaimedOnceAndOnlyItsSenderRecordsItsOutcome(_ factory: StoreFactory) throws {
        let f = try Fixture(factory)
        let worker = try registerWorker(f.store)
        let batch = try Self.finishedBatch(f, worker: worker)
        let other = try f.another()
        let otherWorker = try registerWorker(other, "other")
        let claimed = try f.store.claimParentNotices(workerID: worker, limit: 10)
        #expect(claimed.count == 3 && claimed.allSatisfy { !$0.mayHaveBeenSent && $0.attempts == 1 })
        #expect(claimed.first?.server.url == "http://127.0.0.1:4096" && claimed.first?.parentID == "ses_parent")
        #expect(try other.claimParentNotices(workerID: otherWorker, limit: 10).isEmpty)
        for notice in claimed { #expect(try finishNotice(other, notice, by: otherWorker, .sent) == .lost) }
        #expect(try notices(f.store, batch[1].id).map(\.state) == ["sending", "sending"])
        for notice in claimed { #expect(try finishNotice(f.store, notice, by: worker, .sent) == .owned) }
        #expect(try notices(f.store, batch[1].id).map(\.state) == ["sent", "sent"])
        // Recorded once: a second report of the same claim is stale.
        #expect(try finishNotice(f.store, claimed[0], by: worker, .failed("late")) == .lost)
        #expect(try f.store.claimParentNotices(workerID: worker, limit: 10).isEmpty)
    }

    @Test(arguments: StoreFactory.all)
    func aNoticeLeftSendingByADeadWorkerIsOfferedAgainMarkedMayHaveBeenSent(_ factory: StoreFactory) throws {
        let f = try Fixture(factory)
        let dying = try registerWorker(f.store, "dying")
        let batch = try Self.finishedBatch(f, worker: dying)
        #expect(try f.store.claimParentNotices(workerID: dying, limit: 1).count == 1)
        f.clock.advance(milliseconds: 31_000)
        let heir = try registerWorker(f.store, "heir")
        #expect(try f.store.declareSilentWorkersDead(except: heir, leaseTimeoutMs: 30_000) == [dying])
        let offered = try f.store.claimParentNotices(workerID: heir, limit: 10)
        #expect(offered.count == 3)
        #expect(offered.filter(\.mayHaveBeenSent).map(\.taskID) == [batch[0].id])
        #expect(offered.first { $0.mayHaveBeenSent }?.attempts == 2)
        // The dead worker's late report of its old claim changes nothing.
        let stale = ParentNotice(id: offered[0].id, taskID: offered[0].taskID, kind: offered[0].kind, parentID: offered[0].parentID,
                                 server: offered[0].server, attempts: 1, mayHaveBeenSent: false)
        #expect(try finishNotice(f.store, stale, by: dying, .sent) == .lost)
        // Retried later: pending again, and offered once more.
        for notice in offered { try finishNotice(f.store, notice, by: heir, .retryLater("parent busy")) }
        #expect(try f.store.claimParentNotices(workerID: heir, limit: 10).count == 3)
    }

    /// A pass that claimed notices and then failed before recording how each went (a locked database)
    /// leaves them `sending` under a live worker: that worker is offered them again, marked as maybe
    /// sent, instead of leaving them `sending` until it stops.
    @Test(arguments: StoreFactory.all)
    func aNoticeItsOwnLiveWorkerLeftSendingIsOfferedToItAgain(_ factory: StoreFactory) throws {
        let f = try Fixture(factory)
        let worker = try registerWorker(f.store)
        _ = try Self.finishedBatch(f, worker: worker)
        let first = try f.store.claimParentNotices(workerID: worker, limit: 10)
        #expect(first.count == 3 && first.allSatisfy { !$0.mayHaveBeenSent })
        let again = try f.store.claimParentNotices(workerID: worker, limit: 10)
        #expect(again.map(\.id) == first.map(\.id))
        #expect(again.allSatisfy { $0.mayHaveBeenSent && $0.attempts == 2 })
        #expect(try f.another().claimParentNotices(workerID: try registerWorker(f.store, "other"), limit: 10).isEmpty,
                "another live worker's claim stays its own")
    }
}
