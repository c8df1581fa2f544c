import Foundation
import Testing
import BGQCore

/// Several claimers at once, each on its own connection and thread, as worker processes are.
@Suite struct ConcurrencyConformance {
    /// What the threads found, collected under a lock.
    final class Findings: @unchecked Sendable {
        private let lock = NSLock()
        private var claims: [String: [String]] = [:]  // task id → claimers, in claim order
        private var problems: [String] = []
        private var claimersDone = 0

        func claimed(_ ids: [String], by claimer: String) { lock.withLock { for id in ids { claims[id, default: []].append(claimer) } } }
        /// The first few problems are enough to say what broke.
        func problem(_ text: String) { lock.withLock { if problems.count < 5 { problems.append(text) } } }
        func claimerDone() { lock.withLock { claimersDone += 1 } }
        func allDone(_ claimers: Int) -> Bool { lock.withLock { claimersDone >= claimers } }
        var claimsByTask: [String: [String]] { lock.withLock { claims } }
        var allProblems: [String] { lock.withLock { problems } }
    }

    /// Runs `body(index)` on `count` threads at once and waits for all of them.
    static func onThreads(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
        let group = DispatchGroup()
        for index in 0..<count {
            group.enter()
            let thread = Thread {
                body(index)
                group.leave()
            }
            thread.stackSize = 1 << 20
            thread.start()
        }
        group.wait()
    }

    @Test(arguments: StoreFactory.all)
    func concurrentClaimersNeverShareATaskOrExceedALimit(_ factory: StoreFactory) throws {
        let f = try Fixture(factory)
        let limits = ["model:acme/one": 1, "model:acme/two": 2, "model:acme/three": 3]
        try setLimit(f.store, .model, "acme/one", 1)
        try setLimit(f.store, .model, "acme/two", 2)
        try setLimit(f.store, .model, "acme/three", 3)
        let total = 120
        try enqueue(f.store, (0..<total).map { newTask("t\($0)", model: ["acme/one", "acme/two", "acme/three"][$0 % 3]) })
        let findings = Findings()
        let database = f.database, clock = f.clock
        let claimers = 4

        // Claimers 0-3 claim and finish until the queue is empty; thread 4 samples the queue meanwhile,
        // each sample one read (one consistent view), and checks no key runs more than its limit.
        Self.onThreads(claimers + 1) { index in
            defer { if index < claimers { findings.claimerDone() } }
            do {
                let store = try database.open(clock: clock)
                guard index < claimers else {
                    var samples = 0
                    while !findings.allDone(claimers) || samples == 0 {
                        samples += 1
                        for (key, count) in try runningByKey(store) where count > limits[key, default: 0] {
                            findings.problem("sample \(samples): \(key) runs \(count), above its limit \(limits[key, default: 0])")
                        }
                    }
                    return
                }
                let worker = try registerWorker(store, "claimer-\(index)")
                // Each round finishes what the last round claimed, so tasks of several claimers run at
                // once; until nothing is left (an empty claim while others hold the slots goes round again).
                // Bounded, so a broken engine that keeps offering tasks fails the test instead of hanging it.
                var holding: [TaskRecord] = []
                var rounds = 0
                while true {
                    rounds += 1
                    guard rounds <= total * 20 else { return findings.problem("\(worker) still claiming after \(rounds) rounds") }
                    let claimed = try claim(store, worker, capacity: 2)
                    findings.claimed(claimed.map(\.id), by: worker)
                    for task in holding where try finish(store, task, by: worker, .completed(result: "by \(worker)")) != .owned {
                        findings.problem("\(worker) lost \(task.id), which it had claimed")
                    }
                    holding = claimed
                    if claimed.isEmpty, try tasks(store, [.pending]).isEmpty { break }
                }
            } catch {
                findings.problem("thread \(index): \(error)")
            }
        }

        #expect(findings.allProblems == [])
        let claims = findings.claimsByTask
        #expect(claims.count == total)
        #expect(claims.filter { $0.value.count != 1 } == [:], "tasks claimed more than once")
        #expect(try tasks(f.store, [.completed]).count == total)
    }

    @Test(arguments: StoreFactory.all)
    func concurrentHookClaimersRunEachHookOnce(_ factory: StoreFactory) throws {
        let f = try Fixture(factory)
        let total = 40
        try enqueue(f.store, (0..<total).map { newTask("t\($0)", onComplete: "hook \($0)") })
        let worker = try registerWorker(f.store)
        while case let held = try claim(f.store, worker), !held.isEmpty {
            for task in held { try complete(f.store, task, by: worker) }
        }
        let findings = Findings()
        let database = f.database, clock = f.clock
        Self.onThreads(3) { index in
            do {
                let store = try database.open(clock: clock)
                let claimer = try registerWorker(store, "hooks-\(index)")
                for _ in 0..<total {  // bounded: each round claims at least one hook, or the loop ends
                    let hooks = try store.claimHooks(workerID: claimer, limit: 3)
                    if hooks.isEmpty { break }
                    findings.claimed(hooks.map(\.command), by: claimer)
                }
            } catch {
                findings.problem("thread \(index): \(error)")
            }
        }
        #expect(findings.allProblems == [])
        let claims = findings.claimsByTask
        #expect(claims.count == total)
        #expect(claims.filter { $0.value.count != 1 } == [:], "hooks claimed more than once")
    }
}
