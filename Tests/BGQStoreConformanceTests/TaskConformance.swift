import Testing
import BGQCore

/// Enqueueing, ids, sessions and their messages, and seeing other connections' commits.
@Suite struct TaskConformance {
    @Test(arguments: StoreFactory.all)
    func enqueueBatchIsAllOrNothing(_ factory: StoreFactory) throws {
        let f = try Fixture(factory)
        // The third task breaks a constraint (priority out of range) after two were stored.
        var bad = newTask("bad")
        bad.priority = 5_000_000
        #expect(throws: (any Error).self) { try enqueue(f.store, [newTask("a"), newTask("b"), bad, newTask("c")]) }
        #expect(try tasks(f.store).isEmpty)
        #expect(try events(f.store).isEmpty)
        // A task continuing a session that does not exist fails the batch the same way, as not found.
        let error = #expect(throws: BGQError.self) { try enqueue(f.store, [newTask("a"), newTask("orphan", session: "ses_000000000000")]) }
        if case .notFound = error {} else { Issue.record("expected .notFound, got \(String(describing: error))") }
        #expect(try tasks(f.store).isEmpty)
        // A good batch is stored whole, in order, with what was asked.
        let stored = try enqueue(f.store, [newTask("x", model: "acme/m", priority: 3, parent: "p", retries: 2), newTask("y")])
        #expect(try tasks(f.store) == stored)
        #expect(stored[0].status == .pending && stored[0].model == "acme/m" && stored[0].priority == 3)
        #expect(stored[0].parentID == "p" && stored[0].maxRetries == 2 && stored[0].attempt == 0 && stored[0].createdAt == f.clock.now())
        #expect(try f.store.enqueueReturningIDs([newTask("z")]).count == 1)
    }

    @Test(arguments: StoreFactory.all)
    func enqueueWithASessionContinuesItAndSeesItsEarlierTurns(_ factory: StoreFactory) throws {
        let f = try Fixture(factory)
        let first = try enqueue(f.store, [newTask("first", model: "acme/m")])[0]
        let worker = try registerWorker(f.store)
        let held = try #require(try claim(f.store, worker).first)
        let session = Identifier.newSessionID()
        #expect(try startSession(f.store, held, by: worker, sessionStart(session)) == .owned)
        let turn = [SessionMessage(role: .user, kind: .text, content: "question", at: f.clock.now()),
                    assistantMessage("answer", at: f.clock.now())]
        let started = try reload(f.store, held)
        #expect(try recordProgress(f.store, started, by: worker, progressUpdate(started, messages: turn)) == .owned)
        try complete(f.store, started, by: worker)
        let stored = try f.store.session(id: session)
        #expect(stored?.agent == "noop" && stored?.backend == "noop" && stored?.model == "acme/m")

        let next = try enqueue(f.store, [newTask("follow-up", session: session)])[0]
        #expect(next.sessionID == session && next.continuesSession)
        #expect(try !reload(f.store, first).continuesSession)
        let continued = try #require(try claim(f.store, worker).first)
        #expect(continued.id == next.id)
        #expect(try startSession(f.store, continued, by: worker, sessionStart(session)) == .owned)
        // The follow-up sees the earlier turns of its session, not its own.
        let reply = [assistantMessage("second answer", at: f.clock.now())]
        #expect(try recordProgress(f.store, continued, by: worker, progressUpdate(continued, messages: reply)) == .owned)
        #expect(try f.store.messages(taskID: first.id) == turn)
        #expect(try f.store.messages(taskID: next.id) == reply)
        #expect(try f.store.sessionMessages(sessionID: session, exceptTaskID: next.id) == turn)
        #expect(try f.store.sessionMessages(sessionID: session, exceptTaskID: first.id) == reply)
        #expect(try f.store.resolveSessionID(String(session.prefix(8))) == session)
    }

    @Test(arguments: StoreFactory.all)
    func aTaskIdResolvesFromAUniquePrefixAndAnAmbiguousOneIsAUsageError(_ factory: StoreFactory) throws {
        let f = try Fixture(factory)
        // 40 random ids over 16 first hex digits: at least two share one.
        let stored = try enqueue(f.store, newTasks("t", 40))
        let byDigit = Dictionary(grouping: stored.map(\.id), by: { $0.dropFirst(3).prefix(1) })
        let shared = try #require(byDigit.first { $0.value.count > 1 })
        let unique = try #require(stored.first { task in stored.filter { $0.id.hasPrefix(task.id.prefix(9)) }.count == 1 })
        #expect(try f.store.resolveTaskID(String(unique.id.prefix(9))) == unique.id)
        #expect(try f.store.resolveTaskID(String(unique.id.dropFirst(3).prefix(6))) == unique.id, "without bg_")
        #expect(try f.store.resolveTaskID(unique.id.uppercased()) == unique.id)
        let ambiguous = #expect(throws: BGQError.self) { _ = try f.store.resolveTaskID("bg_" + shared.key) }
        guard case .usage(let text) = ambiguous else { Issue.record("expected .usage, got \(String(describing: ambiguous))"); return }
        // The message lists the matches so a person can pick one.
        #expect(shared.value.allSatisfy { text.contains($0) })
        let notHex = #expect(throws: BGQError.self) { _ = try f.store.resolveTaskID("bg_xyz") }
        if case .notFound = notHex {} else { Issue.record("expected .notFound, got \(String(describing: notHex))") }
    }

    @Test(arguments: StoreFactory.all)
    func listsFilterByStatusAgentModelAndParent(_ factory: StoreFactory) throws {
        let f = try Fixture(factory)
        try enqueue(f.store, [newTask("a", model: "acme/x", parent: "p1"), newTask("b", model: "other/x"),
                              newTask("c", agent: "shell", parent: "p1"), newTask("d", model: "acme/y")])
        let worker = try registerWorker(f.store)
        _ = try claim(f.store, worker, capacity: 1)
        func listed(_ change: (inout TaskFilter) -> Void) throws -> [String] {
            var filter = TaskFilter()
            change(&filter)
            return try f.store.listTasks(filter).map(\.description)
        }
        #expect(try listed { _ in } == ["d", "c", "b", "a"], "newest first")
        #expect(try listed { $0.statuses = [.running] } == ["a"])
        #expect(try listed { $0.agent = "shell" } == ["c"])
        #expect(try listed { $0.model = "x" } == ["b", "a"], "a bare model matches provider/model")
        #expect(try listed { $0.parentID = "p1" } == ["c", "a"])
        #expect(try listed { $0.limit = 2 } == ["d", "c"])
        #expect(try f.store.activeTaskIDs(parentID: nil).count == 4)
    }

    @Test(arguments: StoreFactory.all)
    func aCommitByAnotherConnectionWakesTheChangeFeed(_ factory: StoreFactory) throws {
        let f = try Fixture(factory)
        let feed = try f.another().changeFeed()
        #expect(try feed.poll(), "the first poll says there may be something to read")
        #expect(try !feed.poll(), "nothing happened")
        try enqueue(f.store, [newTask("t")])
        #expect(try feed.wait(timeoutMs: 5_000), "another connection's commit is seen")
        #expect(try !feed.poll(), "and seen once")
    }
}
