import Testing
import BGQCore

/// The event history (one event per transition, one growing id sequence), stats and prune.
@Suite struct HistoryConformance {
    @Test(arguments: StoreFactory.all)
    func everyTransitionWritesOneEventWithItsWorkerAttemptAndReason(_ factory: StoreFactory) throws {
        let f = try Fixture(factory)
        let task = try enqueue(f.store, [newTask("t", retries: 1)])[0]
        let a = try registerWorker(f.store, "a")
        let held = try #require(try claim(f.store, a).first)
        #expect(try recordProgress(f.store, held, by: a, progressUpdate(held)) == .owned)  // progress is no transition
        #expect(try finish(f.store, held, by: a, .requeued(reason: "retry 1/1", delayMs: 0)) == .owned)
        let second = try #require(try claim(f.store, a).first)
        f.clock.advance(milliseconds: 31_000)
        let b = try registerWorker(f.store, "b")
        _ = try f.store.declareSilentWorkersDead(except: b, leaseTimeoutMs: 30_000)
        #expect(try f.store.adopt(second, from: a, by: b, reason: "adopted by b") == .owned)
        #expect(try finish(f.store, second, by: b, .failed(error: "agent failed")) == .owned)

        let history = try f.store.events(taskID: task.id)
        #expect(history.map(\.to) == [.pending, .running, .pending, .running, .running, .error])
        #expect(history.map(\.from) == [nil, .pending, .running, .pending, .running, .running])
        #expect(history.map(\.workerID) == [nil, a, a, a, b, b])
        #expect(history.map(\.attempt) == [0, 1, 1, 2, 2, 2])
        try #require(history.count == 6)
        #expect([history[0], history[2], history[4], history[5]].map(\.reason) == ["enqueued", "retry 1/1", "adopted by b", "agent failed"])
        #expect(history[1].reason?.contains("claimed by \(a)") == true && history[3].reason?.contains("claimed by \(a)") == true)
        #expect(TaskStatus.isValidPath(history.map(\.to)))
        #expect(zip(history, history.dropFirst()).allSatisfy { $0.id < $1.id && $0.at <= $1.at })
        #expect(try events(f.store).filter { $0.taskID == task.id } == history)

        // Cancel and the queued TTL are transitions too.
        let others = try enqueue(f.store, [newTask("cancelled"), newTask("expired")])
        _ = try f.store.cancel(taskIDs: [others[0].id])
        f.clock.advance(milliseconds: 31 * 60_000)
        #expect(try f.store.expireQueuedTasks(ttlMs: 30 * 60_000) == [others[1].id])
        #expect(try f.store.events(taskID: others[0].id).map(\.to) == [.pending, .cancelled])
        #expect(try f.store.events(taskID: others[1].id).map(\.to) == [.pending, .error])
    }

    @Test(arguments: StoreFactory.all)
    func creationsAndTransitionsShareOneGrowingIdSequence(_ factory: StoreFactory) throws {
        let f = try Fixture(factory)
        var seen: Int64 = 0
        /// Every event an operation adds is above every event before it.
        func expectNewEventsAbove(_ operation: () throws -> Void, sourceLocation: SourceLocation = #_sourceLocation) throws {
            let before = try f.store.latestEventID()
            #expect(before >= seen, sourceLocation: sourceLocation)
            try operation()
            let added = try events(f.store, after: before)
            #expect(!added.isEmpty, sourceLocation: sourceLocation)
            #expect(added.allSatisfy { $0.id > before }, sourceLocation: sourceLocation)
            seen = try f.store.latestEventID()
            #expect(seen == added.last?.id, sourceLocation: sourceLocation)
        }
        var first: [TaskRecord] = []
        try expectNewEventsAbove { first = try enqueue(f.store, [newTask("a"), newTask("b"), newTask("c")]) }
        let worker = try registerWorker(f.store)
        var claimed: [TaskRecord] = []
        try expectNewEventsAbove { claimed = try claim(f.store, worker, capacity: 1) }
        #expect(claimed.count == 1)
        try expectNewEventsAbove { try enqueue(f.store, [newTask("d")]) }
        try expectNewEventsAbove { _ = try f.store.cancel(taskIDs: [first[1].id]) }
        try expectNewEventsAbove { try enqueue(f.store, [newTask("e"), newTask("f")]) }

        // One creation per task, first in its history.
        let all = try events(f.store)
        #expect(zip(all, all.dropFirst()).allSatisfy { $0.id < $1.id })
        let stored = try tasks(f.store)
        #expect(stored.count == 6)
        for task in stored {
            let history = try f.store.events(taskID: task.id)
            let creation = try #require(history.first)
            #expect(creation.id == task.seq)
            #expect(creation.from == nil && creation.to == .pending && creation.workerID == nil && creation.attempt == 0)
            #expect(creation.reason == "enqueued" && creation.at == task.createdAt)
            #expect(history.dropFirst().allSatisfy { $0.from != nil })
            #expect(TaskStatus.isValidPath(history.map(\.to)))
            #expect(all.filter { $0.taskID == task.id } == history)
        }
        #expect(try events(f.store, after: seen, limit: 10).isEmpty)
    }

    @Test(arguments: StoreFactory.all)
    func eventsAfterACursorPageThroughEveryEventOnceWithOrWithoutAParent(_ factory: StoreFactory) throws {
        let f = try Fixture(factory)
        let cursor = try f.store.latestEventID()
        try enqueue(f.store, [newTask("a", parent: "p1"), newTask("b"), newTask("c", parent: "p1")])
        _ = try claim(f.store, try registerWorker(f.store))
        try enqueue(f.store, [newTask("d", parent: "p1"), newTask("e")])
        for parent in [nil, "p1"] as [String?] {
            let whole = try events(f.store, after: cursor, parent: parent)
            var paged: [TaskEvent] = []
            var position = cursor
            while true {
                let batch = try events(f.store, after: position, parent: parent, limit: 2)
                paged += batch
                guard let last = batch.last else { break }
                position = last.id
            }
            #expect(paged == whole)
            #expect(whole.count == (parent == nil ? 5 + 3 : 3 + 2))  // creations, then the claims of the first batch
        }
        #expect(try f.store.taskIDs(parentID: "p1").count == 3)
        #expect(try f.store.activeTaskIDs(parentID: "p1") == f.store.taskIDs(parentID: "p1"))
    }

    // MARK: - Stats and prune

    @Test(arguments: StoreFactory.all)
    func statsCountsByStatusDurationsKeysAndErrors(_ factory: StoreFactory) throws {
        let f = try Fixture(factory)
        let start = f.clock.now()
        try enqueue(f.store, newTasks("ok", 3) + [newTask("broken"), newTask("waiting"), newTask("dropped")])
        let worker = try registerWorker(f.store)
        let held = try claim(f.store, worker, capacity: 4)
        f.clock.advance(milliseconds: 2_000)
        try complete(f.store, held[0], by: worker)
        f.clock.advance(milliseconds: 2_000)
        try complete(f.store, held[1], by: worker)
        try complete(f.store, held[2], by: worker)
        #expect(try finish(f.store, held[3], by: worker, .failed(error: "agent failed (exit code 7)\nlast lines")) == .owned)
        _ = try f.store.cancel(taskIDs: [try tasks(f.store, [.pending]).last!.id])

        for since in [nil, start] as [Instant?] {
            let stats = try f.store.stats(since: since)
            #expect(stats.byStatus == [.pending: 1, .completed: 3, .error: 1, .cancelled: 1], "since \(String(describing: since))")
            let durations = try #require(stats.durations.first)
            #expect(durations.agent == "noop" && durations.count == 3 && durations.p50Ms == 4_000 && durations.p95Ms == 4_000)
            #expect(stats.keys.map(\.key) == ["model:noop"])
            #expect(stats.keys.first?.tasks == 4 && stats.keys.first?.busyMs == 2_000 + 4_000 * 3)
            #expect(Dictionary(uniqueKeysWithValues: stats.errors.map { ($0.reason, $0.count) })
                    == ["agent failed (exit code 7)": 1, "cancelled by user": 1])
        }
        // A window after everything happened counts nothing finished.
        #expect(try f.store.stats(since: f.clock.now() + 1).durations.isEmpty)
    }

    @Test(arguments: StoreFactory.all)
    func pruneDeletesOnlyFinishedTasksOlderThanTheCutoff(_ factory: StoreFactory) throws {
        let f = try Fixture(factory)
        let session = Identifier.newSessionID()
        try enqueue(f.store, [newTask("old-done"), newTask("old-failed"), newTask("old-running"), newTask("old-pending")])
        let worker = try registerWorker(f.store)
        let held = try claim(f.store, worker, capacity: 3)
        #expect(try startSession(f.store, held[0], by: worker, sessionStart(session)) == .owned)
        try complete(f.store, try reload(f.store, held[0]), by: worker)
        #expect(try finish(f.store, held[1], by: worker, .failed(error: "e")) == .owned)
        f.clock.advance(milliseconds: 3_600_000)
        let cutoff = f.clock.now()
        let young = try enqueue(f.store, [newTask("young-done", priority: 1)])[0]
        try complete(f.store, try #require(try claim(f.store, worker, capacity: 1).first), by: worker)

        let dry = try prune(f.store, olderThan: cutoff, dryRun: true)
        #expect(dry.tasks == 2)
        #expect(try tasks(f.store).count == 5, "a dry run deletes nothing")
        #expect(try prune(f.store, olderThan: cutoff, statuses: [.completed]).tasks == 1)
        let pruned = try prune(f.store, olderThan: cutoff)
        #expect(pruned.tasks == 1)
        #expect(Set(try tasks(f.store).map(\.description)) == ["old-running", "old-pending", "young-done"])
        // Its events and its session went with it; nothing else did.
        #expect(try f.store.events(taskID: held[0].id).isEmpty)
        #expect(try f.store.session(id: session) == nil)
        #expect(try events(f.store).allSatisfy { $0.taskID != held[0].id && $0.taskID != held[1].id })
        #expect(try reload(f.store, young).status == .completed)
        // Pending and running tasks are never pruned, whatever is asked.
        #expect(try prune(f.store, olderThan: f.clock.now() + 86_400_000, statuses: [.pending, .running]).tasks == 0)
        #expect(try tasks(f.store, [.pending, .running]).count == 2)
    }
}
