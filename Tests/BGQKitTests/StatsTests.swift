import Foundation
import Testing
@testable import BGQBackends
@testable import BGQCLI
@testable import BGQCore
@testable import BGQSQLite
@testable import BGQScheduler
@testable import BGQSystem

/// `bgq stats` reads the run time each task stored when it finished, through indexes.
@Suite struct StatsTests {
    @Test func percentilesAndSlotTimeComeFromEachTasksStoredRunTime() throws {
        let clock = ManualClock()
        let store = try TempDatabase().store(clock: clock)
        try store.setLimit(.default, name: "", value: 0)
        let worker = try store.registerWorker(WorkerRegistration(name: "w", host: "h", pid: 1, maxSessions: 100))
        let runTimes: [Int64] = [100, 200, 300, 400, 5000, 700, 800, 900, 1000, 1100]
        _ = try store.enqueue(runTimes.map { NewTask(description: "t\($0)", prompt: "p", agent: "noop") })
        _ = try store.enqueue([NewTask(description: "fails", prompt: "p", agent: "shell")])
        let claimed = try store.claimTasks(workerID: worker, capacity: 100)
        #expect(claimed.count == 11)
        var elapsed: Int64 = 0
        for ms in runTimes.sorted() {
            clock.advance(milliseconds: ms - elapsed)
            elapsed = ms
            let task = try #require(claimed.first { $0.description == "t\(ms)" })
            #expect(try store.finish(task, workerID: worker, outcome: .completed(result: "ok")) == .owned)
        }
        let failing = try #require(claimed.first { $0.agent == "shell" })
        #expect(try store.finish(failing, workerID: worker, outcome: .failed(error: "agent failed (exit code 2)\nmore")) == .owned)
        let stored = try store.connection.query("SELECT run_ms FROM tasks WHERE agent = 'noop' ORDER BY run_ms") { $0.int64(0) }
        #expect(stored == runTimes.sorted(), "each task stores how long it ran")

        let stats = try store.stats(since: nil)
        #expect(stats.byStatus[.completed] == 10 && stats.byStatus[.error] == 1)
        let noop = try #require(stats.durations.first { $0.agent == "noop" })
        #expect(noop.count == 10 && noop.model == "-")
        #expect(noop.p50Ms == 700 && noop.p95Ms == 5000)
        let key = try #require(stats.keys.first { $0.key == "model:noop" })
        #expect(key.tasks == 10 && key.busyMs == runTimes.reduce(0, +))
        #expect(stats.errors.map(\.reason) == ["agent failed (exit code 2)"])
        // --since: only what finished in the window (the last 4 s: 1000, 1100 and 5000 ms).
        let recent = try #require(try store.stats(since: clock.now() + -4000).durations.first { $0.agent == "noop" })
        #expect(recent.count == 3 && recent.p50Ms == 1100)
        // Pruned tasks leave the figures (the rollups are kept by the deletion too).
        _ = try store.prune(PruneRequest(olderThan: clock.now() + 1, statuses: [.completed], dryRun: false))
        let after = try store.stats(since: nil)
        #expect((after.byStatus[.completed] ?? 0) == 0 && after.byStatus[.error] == 1)
        #expect(after.durations.isEmpty && after.keys.allSatisfy { $0.key != "model:noop" })
        #expect(after.errors.map(\.count) == [1])
    }
}
