import Testing
import BGQCore

/// Claims: model > provider > default limits, read in the claim's own transaction; priorities, FIFO,
/// backoff, sessions and dead workers.
@Suite struct ClaimConformance {
    @Test(arguments: StoreFactory.all)
    func claimHonoursAModelLimit(_ factory: StoreFactory) throws {
        let f = try Fixture(factory)
        try setLimit(f.store, .model, "acme/model-x", 2)
        try enqueue(f.store, newTasks("t", 5, model: "acme/model-x"))
        let claimed = try claim(f.store, try registerWorker(f.store))
        #expect(claimed.count == 2)
        #expect(Set(claimed.compactMap(\.concurrencyKey)) == ["model:acme/model-x"])
        #expect(try tasks(f.store, [.pending]).count == 3)
        // A second worker, on its own connection, gets nothing while the key is full.
        let other = try f.another()
        #expect(try claim(other, try registerWorker(other, "second")).isEmpty)
        #expect(try runningByKey(f.store) == ["model:acme/model-x": 2])
    }

    @Test(arguments: StoreFactory.all)
    func providerLimitIsSharedAcrossModels_issue3968(_ factory: StoreFactory) throws {
        let f = try Fixture(factory)
        try setLimit(f.store, .provider, "anthropic", 3)
        try enqueue(f.store, newTasks("a", 4, model: "anthropic/a") + newTasks("b", 4, model: "anthropic/b"))
        let claimed = try claim(f.store, try registerWorker(f.store, "one")) + claim(f.store, try registerWorker(f.store, "two"))
        #expect(claimed.count == 3)
        #expect(Set(claimed.compactMap(\.concurrencyKey)) == ["provider:anthropic"])
        let usage = try f.store.keyUsage().first { $0.key == "provider:anthropic" }
        #expect(usage?.running == 3 && usage?.limit == 3 && usage?.pending == 5)
    }

    @Test(arguments: StoreFactory.all)
    func bareModelLimitMatchesProviderQualifiedModel(_ factory: StoreFactory) throws {
        let f = try Fixture(factory)
        try setLimit(f.store, .model, "claude-opus-4-5", 2)
        try setLimit(f.store, .provider, "anthropic", 10)
        try enqueue(f.store, newTasks("t", 5, model: "anthropic/claude-opus-4-5"))
        let claimed = try claim(f.store, try registerWorker(f.store))
        #expect(claimed.count == 2)
        #expect(Set(claimed.compactMap(\.concurrencyKey)) == ["model:claude-opus-4-5"])
    }

    @Test(arguments: StoreFactory.all)
    func modelLimitBeatsProviderBeatsDefault(_ factory: StoreFactory) throws {
        let f = try Fixture(factory)
        try setLimit(f.store, .model, "acme/special", 1)
        try setLimit(f.store, .provider, "acme", 2)
        try setLimit(f.store, .default, "", 3)
        try enqueue(f.store, newTasks("s", 4, model: "acme/special") + newTasks("p", 2, model: "acme/plain")
                    + newTasks("q", 2, model: "acme/other") + newTasks("o", 4, model: "else/where"))
        let claimed = try claim(f.store, try registerWorker(f.store))
        #expect(try runningByKey(f.store) == ["model:acme/special": 1, "provider:acme": 2, "model:else/where": 3])
        #expect(claimed.count == 6)
    }

    @Test(arguments: StoreFactory.all)
    func defaultLimitIsFivePerModel(_ factory: StoreFactory) throws {
        let f = try Fixture(factory)
        try enqueue(f.store, newTasks("a", 7, model: "acme/a") + newTasks("b", 7, model: "acme/b"))
        let claimed = try claim(f.store, try registerWorker(f.store))
        #expect(claimed.filter { $0.model == "acme/a" }.count == 5)
        #expect(claimed.filter { $0.model == "acme/b" }.count == 5)
    }

    @Test(arguments: StoreFactory.all)
    func zeroLimitMeansUnlimited(_ factory: StoreFactory) throws {
        let f = try Fixture(factory)
        try setLimit(f.store, .provider, "acme", 0)
        try enqueue(f.store, newTasks("t", 8, model: "acme/m"))
        let worker = try registerWorker(f.store)
        #expect(try claim(f.store, worker).count == 8)
        let usage = try f.store.keyUsage()
        #expect(usage.map(\.key) == ["provider:acme"] && usage.first?.running == 8 && usage.first?.limit == 0)
        // The capacity the worker asks for still bounds a claim.
        try enqueue(f.store, newTasks("more", 5, model: "acme/m"))
        #expect(try claim(f.store, worker, capacity: 2).count == 2)
    }

    @Test(arguments: StoreFactory.all)
    func priorityFirstThenFIFOWithinAKey(_ factory: StoreFactory) throws {
        let f = try Fixture(factory)
        try setLimit(f.store, .model, "acme/m", 1)
        try enqueue(f.store, [
            newTask("old-low", model: "acme/m"), newTask("mid-low", model: "acme/m"),
            newTask("high-1", model: "acme/m", priority: 5), newTask("new-low", model: "acme/m"),
            newTask("high-2", model: "acme/m", priority: 5),
        ])
        let worker = try registerWorker(f.store)
        var order: [String] = []
        for _ in 0..<5 {
            let claimed = try claim(f.store, worker)
            #expect(claimed.count == 1)
            guard let task = claimed.first else { break }
            order.append(task.description)
            try complete(f.store, task, by: worker)
        }
        #expect(order == ["high-1", "high-2", "old-low", "mid-low", "new-low"])
    }

    @Test(arguments: StoreFactory.all)
    func fullKeyDoesNotBlockAnotherKey(_ factory: StoreFactory) throws {
        let f = try Fixture(factory)
        try setLimit(f.store, .model, "acme/busy", 1)
        try enqueue(f.store, newTasks("busy", 5, model: "acme/busy"))
        let worker = try registerWorker(f.store)
        #expect(try claim(f.store, worker, capacity: 1).map(\.description) == ["busy0"])
        try enqueue(f.store, [newTask("free", model: "other/free")])
        #expect(try claim(f.store, worker, capacity: 1).map(\.description) == ["free"])
        #expect(try claim(f.store, worker, capacity: 5).isEmpty)
    }

    @Test(arguments: StoreFactory.all)
    func loweredLimitAppliesToNewClaimsAtOnce(_ factory: StoreFactory) throws {
        let f = try Fixture(factory)
        try setLimit(f.store, .model, "acme/m", 3)
        try enqueue(f.store, newTasks("t", 6, model: "acme/m"))
        let worker = try registerWorker(f.store)
        let held = try claim(f.store, worker)
        #expect(held.count == 3)
        try setLimit(f.store, .model, "acme/m", 1)
        #expect(try claim(f.store, worker).isEmpty)
        // Two of three finish: the one still running fills the lowered limit.
        try complete(f.store, held[0], by: worker)
        try complete(f.store, held[1], by: worker)
        #expect(try claim(f.store, worker).isEmpty)
        try complete(f.store, held[2], by: worker)
        #expect(try claim(f.store, worker).count == 1)
        #expect(try running(f.store).count == 1)
    }

    @Test(arguments: StoreFactory.all)
    func raisedLimitLetsWaitingTasksBeClaimedAtOnce(_ factory: StoreFactory) throws {
        let f = try Fixture(factory)
        try setLimit(f.store, .model, "acme/m", 1)
        try enqueue(f.store, newTasks("t", 5, model: "acme/m"))
        let worker = try registerWorker(f.store)
        #expect(try claim(f.store, worker).count == 1)
        #expect(try claim(f.store, worker).isEmpty)
        try setLimit(f.store, .model, "acme/m", 3)
        #expect(try claim(f.store, worker).count == 2)
        #expect(try running(f.store).count == 3)
    }

    @Test(arguments: StoreFactory.all)
    func aRetryWaitsForItsBackoffThenRunsAsTheNextAttempt(_ factory: StoreFactory) throws {
        let f = try Fixture(factory)
        try enqueue(f.store, [newTask("flaky", retries: 2)])
        let worker = try registerWorker(f.store)
        let first = try #require(try claim(f.store, worker).first)
        #expect(try finish(f.store, first, by: worker, .requeued(reason: "retry 1/2", delayMs: 5_000)) == .owned)
        let waiting = try reload(f.store, first)
        #expect(waiting.status == .pending && waiting.workerID == nil && waiting.runAfter == f.clock.now() + 5_000)
        f.clock.advance(milliseconds: 4_999)
        #expect(try claim(f.store, worker).isEmpty)
        f.clock.advance(milliseconds: 1)
        let second = try #require(try claim(f.store, worker).first)
        #expect(second.id == first.id)
        #expect(second.attempt == first.attempt + 1)
    }

    @Test(arguments: StoreFactory.all)
    func aFollowUpWaitsWhileItsSessionRuns(_ factory: StoreFactory) throws {
        let f = try Fixture(factory)
        try enqueue(f.store, [newTask("first")])
        let worker = try registerWorker(f.store)
        let first = try #require(try claim(f.store, worker).first)
        let session = Identifier.newSessionID()
        #expect(try startSession(f.store, first, by: worker, sessionStart(session)) == .owned)
        let followUp = try enqueue(f.store, [newTask("follow-up", session: session)])[0]
        // The session is busy: its follow-up waits, other work does not.
        try enqueue(f.store, [newTask("unrelated")])
        #expect(try claim(f.store, worker).map(\.description) == ["unrelated"])
        try complete(f.store, try reload(f.store, first), by: worker)
        #expect(try claim(f.store, worker).map(\.id) == [followUp.id])
    }

    @Test(arguments: StoreFactory.all)
    func aWorkerDeclaredDeadCannotClaim(_ factory: StoreFactory) throws {
        let f = try Fixture(factory)
        try enqueue(f.store, [newTask("t")])
        let silent = try registerWorker(f.store, "silent")
        f.clock.advance(milliseconds: 31_000)
        let reaper = try registerWorker(f.store, "reaper")
        #expect(try f.store.declareSilentWorkersDead(except: reaper, leaseTimeoutMs: 30_000) == [silent])
        expectLostOwnership { _ = try claim(f.store, silent) }
        #expect(try tasks(f.store, [.pending]).count == 1)
    }
}
