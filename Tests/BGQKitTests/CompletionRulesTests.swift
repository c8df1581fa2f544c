import Foundation
import Testing
@testable import BGQBackends
@testable import BGQCLI
@testable import BGQCore
@testable import BGQSQLite
@testable import BGQScheduler
@testable import BGQSystem

/// The original's completion rules, driven with explicit times (the injectable clock's view), no sleeping.
struct CompletionRulesTests {
    let rules = CompletionRules(settings: Settings())

    func snapshot(_ status: SessionStatus, messages: Int = 3, output: Bool = true, openTodos: Int = 0,
                  result: String? = "done", error: Bool = false) -> SessionSnapshot {
        SessionSnapshot(status: status, messageCount: messages, hasRealOutput: output, openTodos: openTodos, result: result, resultIsError: error)
    }

    @Test func idleWithOutputAndNoOpenTodoCompletes() {
        var memory = RuleMemory()
        #expect(rules.evaluate(snapshot(.idle), runtimeMs: 6000, sinceProgressMs: 0, memory: &memory) == .complete(result: "done"))
    }

    @Test func idleWithinFiveSecondsIsDeferredNotDropped_issue1517() {
        var memory = RuleMemory()
        #expect(rules.evaluate(snapshot(.idle), runtimeMs: 4999, sinceProgressMs: 0, memory: &memory) == .keepRunning)
        // The next poll, past the grace, completes it: the early idle was deferred, not lost.
        #expect(rules.evaluate(snapshot(.idle), runtimeMs: 5001, sinceProgressMs: 0, memory: &memory) == .complete(result: "done"))
    }

    @Test func endedSessionCompletesAtOnceEvenWithinTheIdleGrace() {
        var memory = RuleMemory()
        #expect(rules.evaluate(snapshot(.ended(exitCode: 0, detail: nil)), runtimeMs: 100, sinceProgressMs: 0, memory: &memory) == .complete(result: "done"))
    }

    @Test func idleWithoutRealOutputKeepsRunning() {
        var memory = RuleMemory()
        #expect(rules.evaluate(snapshot(.idle, output: false, result: nil), runtimeMs: 60_000, sinceProgressMs: 0, memory: &memory) == .keepRunning)
    }

    @Test func openTodoDelaysCompletion() {
        var memory = RuleMemory()
        #expect(rules.evaluate(snapshot(.idle, openTodos: 1), runtimeMs: 60_000, sinceProgressMs: 0, memory: &memory) == .keepRunning)
        #expect(rules.evaluate(snapshot(.idle, openTodos: 0), runtimeMs: 62_000, sinceProgressMs: 0, memory: &memory) == .complete(result: "done"))
    }

    @Test func missingFromTheStatusMapCountsAsIdle_issue2387() {
        var memory = RuleMemory()
        #expect(rules.evaluate(snapshot(.missing), runtimeMs: 6000, sinceProgressMs: 0, memory: &memory) == .complete(result: "done"))
    }

    @Test func stabilityNeedsTenSecondsThenThreeUnchangedPollsThenAnIdleRecheck() {
        var memory = RuleMemory()
        // Before 10 s of runtime, unchanged counts do not count.
        for runtime in stride(from: Int64(2000), through: 8000, by: 2000) {
            #expect(rules.evaluate(snapshot(.busy), runtimeMs: runtime, sinceProgressMs: 0, memory: &memory) == .keepRunning)
        }
        #expect(memory.stablePolls == 0)
        #expect(rules.evaluate(snapshot(.busy), runtimeMs: 10_000, sinceProgressMs: 0, memory: &memory) == .keepRunning)
        #expect(rules.evaluate(snapshot(.busy), runtimeMs: 12_000, sinceProgressMs: 0, memory: &memory) == .keepRunning)
        #expect(rules.evaluate(snapshot(.busy), runtimeMs: 14_000, sinceProgressMs: 0, memory: &memory) == .recheckStatus)
        // The re-check says idle: complete.
        #expect(rules.afterIdleRecheck(snapshot(.idle), memory: &memory) == .complete(result: "done"))
    }

    @Test func aChangedMessageCountResetsStability() {
        var memory = RuleMemory()
        _ = rules.evaluate(snapshot(.busy, messages: 3), runtimeMs: 10_000, sinceProgressMs: 0, memory: &memory)
        _ = rules.evaluate(snapshot(.busy, messages: 3), runtimeMs: 12_000, sinceProgressMs: 0, memory: &memory)
        #expect(memory.stablePolls == 1)
        _ = rules.evaluate(snapshot(.busy, messages: 4), runtimeMs: 14_000, sinceProgressMs: 0, memory: &memory)
        #expect(memory.stablePolls == 0)
    }

    @Test func aBusyRecheckStartsCountingAgain() {
        var memory = RuleMemory()
        memory.stablePolls = 3
        #expect(rules.afterIdleRecheck(snapshot(.busy), memory: &memory) == .keepRunning)
        #expect(memory.stablePolls == 0)
    }

    @Test func staleAfterNoProgressCancelsWithTheOriginalText() {
        var memory = RuleMemory()
        #expect(rules.evaluate(snapshot(.busy), runtimeMs: 200_000, sinceProgressMs: 179_999, memory: &memory) == .keepRunning)
        #expect(rules.evaluate(snapshot(.busy), runtimeMs: 200_000, sinceProgressMs: 180_000, memory: &memory)
                == .cancel(reason: "Stale timeout (no activity for 3min)"))
    }

    @Test func staleWhileTheBackendCannotBeReachedFailsWithThatProblem() {
        var memory = RuleMemory()
        var unreachable = snapshot(.busy)
        unreachable.problem = "opencode server unreachable at http://127.0.0.1:4096"
        #expect(rules.evaluate(unreachable, runtimeMs: 200_000, sinceProgressMs: 179_999, memory: &memory) == .keepRunning)
        #expect(rules.evaluate(unreachable, runtimeMs: 200_000, sinceProgressMs: 180_000, memory: &memory)
                == .fail(error: "opencode server unreachable at http://127.0.0.1:4096", abort: true))
    }

    @Test func staleNeverFiresInTheFirstThirtySeconds() {
        var memory = RuleMemory()
        var settings = Settings()
        settings.staleTimeoutMs = 1000
        let quick = CompletionRules(settings: settings)
        #expect(quick.evaluate(snapshot(.busy), runtimeMs: 29_999, sinceProgressMs: 29_999, memory: &memory) == .keepRunning)
        #expect(quick.evaluate(snapshot(.busy), runtimeMs: 30_000, sinceProgressMs: 30_000, memory: &memory)
                == .cancel(reason: "Stale timeout (no activity for 1min)"))
    }

    @Test func runningTTLFailsWithTheOriginalTextAndAborts() {
        var memory = RuleMemory()
        #expect(rules.evaluate(snapshot(.busy), runtimeMs: 30 * 60_000, sinceProgressMs: 0, memory: &memory)
                == .fail(error: "Task timed out after 30 minutes", abort: true))
    }

    @Test func nonZeroExitFailsWithTheCode() {
        var memory = RuleMemory()
        let verdict = rules.evaluate(snapshot(.ended(exitCode: 3, detail: nil), result: nil), runtimeMs: 100, sinceProgressMs: 0, memory: &memory)
        #expect(verdict == .fail(error: "agent failed (exit code 3)", abort: false))
    }

    @Test func anAgentReportedErrorFailsWithItsMessage() {
        var memory = RuleMemory()
        let verdict = rules.evaluate(snapshot(.ended(exitCode: 1, detail: nil), result: "API Error: 429 rate limited", error: true),
                                     runtimeMs: 100, sinceProgressMs: 0, memory: &memory)
        #expect(verdict == .fail(error: "API Error: 429 rate limited", abort: false))
    }

    @Test func aVanishedProcessIsAFailureNotAHang_issue1769() {
        var memory = RuleMemory()
        let verdict = rules.evaluate(snapshot(.ended(exitCode: nil, detail: "the agent process disappeared without an exit status"), result: nil),
                                     runtimeMs: 100, sinceProgressMs: 0, memory: &memory)
        #expect(verdict == .fail(error: "agent failed (no exit status): the agent process disappeared without an exit status", abort: false))
    }
}

/// Agent output parsers: real shapes become events; garbage never crashes.
struct OutputParserTests {
    @Test func claudeStreamJSONGivesSessionMessagesTodosAndResult() {
        var transcript = AgentTranscript()
        let lines = [
            #"{"type":"system","subtype":"init","session_id":"abc-123","model":"claude"}"#,
            #"{"type":"assistant","message":{"content":[{"type":"text","text":"Looking"},{"type":"tool_use","name":"Grep","input":{"pattern":"auth"}}]},"session_id":"abc-123"}"#,
            #"{"type":"assistant","message":{"content":[{"type":"tool_use","name":"TodoWrite","input":{"todos":[{"content":"a","status":"in_progress"},{"content":"b","status":"completed"}]}}]}}"#,
            #"{"type":"result","subtype":"success","is_error":false,"result":"Found it","session_id":"abc-123"}"#,
        ]
        for line in lines { _ = transcript.apply(OutputParser.events(format: .claudeStreamJSON, line: line), at: Instant(milliseconds: 0)) }
        #expect(transcript.externalSessionID == "abc-123")
        #expect(transcript.toolCalls == 2)
        #expect(transcript.lastTool == "TodoWrite")
        #expect(transcript.openTodos == 1)
        #expect(transcript.result?.text == "Found it")
        #expect(transcript.result?.isError == false)
        #expect(transcript.hasRealOutput)
    }

    @Test func opencodeCodexAndGeminiLinesAreUnderstood() {
        var opencode = AgentTranscript()
        _ = opencode.apply(OutputParser.events(format: .opencodeJSON, line: #"{"type":"text","sessionID":"ses_9","part":{"type":"text","text":"hi"}}"#), at: Instant(milliseconds: 0))
        #expect(opencode.externalSessionID == "ses_9")
        #expect(opencode.assistantText == ["hi"])
        var codex = AgentTranscript()
        _ = codex.apply(OutputParser.events(format: .codexJSON, line: #"{"type":"thread.started","thread_id":"t1"}"#), at: Instant(milliseconds: 0))
        _ = codex.apply(OutputParser.events(format: .codexJSON, line: #"{"type":"item.completed","item":{"type":"agent_message","text":"answer"}}"#), at: Instant(milliseconds: 0))
        #expect(codex.externalSessionID == "t1")
        #expect(codex.assistantText == ["answer"])
        var gemini = AgentTranscript()
        _ = gemini.apply(OutputParser.events(format: .geminiStreamJSON, line: #"{"type":"init","session_id":"g1"}"#), at: Instant(milliseconds: 0))
        _ = gemini.apply(OutputParser.events(format: .geminiStreamJSON, line: #"{"type":"result","status":"error","error":{"message":"quota"}}"#), at: Instant(milliseconds: 0))
        #expect(gemini.externalSessionID == "g1")
        #expect(gemini.result?.isError == true)
    }

    /// A fixed-seed fuzz: random bytes, truncated JSON, deep nesting and huge lines never crash a parser, every
    /// message is clipped to 64 KiB (and says so with "…"), and the transcript counts exactly the messages it returned.
    @Test func garbageAndHugeLinesNeverCrashTheParsers() {
        var generator = SeededGenerator(seed: 0xB60)
        let fragments = [#"{"type":"assistant","message":{"content":[{"type":"text","text":"#, #"{"type":"result","is_error":"#, "{", "}", "[", "]",
                         #"""#, "\\", "null", "\u{0}", "é", "💥", "\u{FFFD}", ",", ":", "1e999", "-0", "true"]
        let clipped = 64 * 1024 + "…".utf8.count  // the documented limit, not the constant: a changed limit must fail here
        for format in [AgentPreset.OutputFormat.plainText, .claudeStreamJSON, .opencodeJSON, .codexJSON, .geminiStreamJSON] {
            var transcript = AgentTranscript()
            var returned = 0
            for _ in 0..<400 {
                let count = Int(generator.next() % 40)
                let line = (0..<count).map { _ in fragments[Int(generator.next() % UInt64(fragments.count))] }.joined()
                returned += transcript.apply(OutputParser.events(format: format, line: line), at: Instant(milliseconds: 0)).count
            }
            // 3 MB of assistant text: one message, cut to 64 KiB plus the ellipsis (formats without an
            // assistant line type drop it; none keeps it whole).
            let huge = #"{"type":"assistant","message":{"content":[{"type":"text","text":""# + String(repeating: "x", count: 3_000_000) + #""}]}}"#
            let hugeMessages = transcript.apply(OutputParser.events(format: format, line: huge), at: Instant(milliseconds: 0))
            returned += hugeMessages.count
            #expect(hugeMessages.allSatisfy { $0.content.utf8.count <= clipped }, "\(format): a message longer than 64 KiB")
            if format == .plainText || format == .claudeStreamJSON {
                #expect(hugeMessages.count == 1, "\(format)")
                #expect(hugeMessages.first?.content.utf8.count == clipped && hugeMessages.first?.content.hasSuffix("x…") == true, "\(format)")
            }
            // 100,000 open brackets: not JSON a parser recurses into, but one line of output, clipped.
            let nested = transcript.apply(OutputParser.events(format: format, line: "{\"a\":" + String(repeating: "[", count: 100_000)),
                                          at: Instant(milliseconds: 0))
            returned += nested.count
            #expect(nested.count == 1, "\(format): \(nested.count) messages")
            #expect(nested.first?.kind == .output && nested.first?.content.utf8.count == clipped, "\(format)")
            if format != .plainText { #expect(nested.first?.role == .system, "\(format)") }
            #expect(transcript.messageCount == returned, "\(format): counted \(transcript.messageCount), returned \(returned)")
        }
    }
}

/// A small deterministic generator (SplitMix64), so fuzz runs replay exactly.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
