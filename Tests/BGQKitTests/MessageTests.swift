import Foundation
import Testing
@testable import BGQKit

/// Messages and figures say what really happened.
@Suite struct MessageTests {
    /// A clock whose monotonic time moves on by `step` each time it is read: what a slow operation looks like.
    final class SteppingClock: Clock {
        let step: Int64
        var monotonic: Int64 = 0
        init(step: Int64) { self.step = step }
        func now() -> Instant { Instant(milliseconds: 1_790_000_000_000) }
        func monotonicMilliseconds() -> Int64 {
            monotonic += step
            return monotonic
        }
    }

    @Test func oneMinuteIsSingular() throws {
        #expect(spelledDuration(milliseconds: 60_000) == "1 minute")
        #expect(spelledDuration(milliseconds: 30 * 60_000) == "30 minutes")
        #expect(spelledDuration(milliseconds: 90_000) == "90 seconds")
        #expect(spelledDuration(milliseconds: 3_600_000) == "1 hour")
        let clock = ManualClock()
        let store = try TempDatabase().store(clock: clock)
        let task = try #require(try store.enqueue([NewTask(description: "d", prompt: "p", agent: "noop")]).first)
        clock.advance(milliseconds: 61_000)
        #expect(try store.expireQueuedTasks(ttlMs: 60_000) == [task.id])
        #expect(try store.requireTask(id: task.id).error == "Task timed out while queued (1 minute)")
        var settings = Settings()
        settings.taskTTLMs = 60_000
        var memory = RuleMemory()
        let verdict = CompletionRules(settings: settings).evaluate(
            SessionSnapshot(status: .busy, messageCount: 0, hasRealOutput: false, openTodos: 0, result: nil, resultIsError: false, problem: nil),
            runtimeMs: 61_000, sinceProgressMs: 0, memory: &memory)
        #expect(verdict == .fail(error: "Task timed out after 1 minute", abort: true))
    }
}
