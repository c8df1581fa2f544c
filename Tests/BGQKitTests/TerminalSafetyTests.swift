import Foundation
import Testing
@testable import BGQBackends
@testable import BGQCLI
@testable import BGQCore
@testable import BGQSQLite
@testable import BGQScheduler
@testable import BGQSystem

/// User-controlled text cannot drive the terminal of whoever reads bgq's output: escapes are shown, not sent.
@Suite struct TerminalSafetyTests {
    /// Colour, a window title (OSC … BEL), a carriage return that would overwrite the line, a backspace,
    /// a C1 CSI and a right-to-left override.
    static let hostile = "\u{1B}[31mred\u{1B}]0;owned\u{07}\rX\u{08}\u{9B}2J\u{202E}txt"
    static let shown = "\\e[31mred\\e]0;owned\\x07\\rX\\x08\\u{009B}2J\\u{202E}txt"

    /// No byte a terminal acts on: ESC, BEL, CR, BS, other C0 controls (newline and tab aside), C1 controls, bidi overrides.
    static func isTerminalSafe(_ text: String) -> Bool {
        !text.unicodeScalars.contains { s in
            (s.value < 0x20 && s.value != 0x0A && s.value != 0x09) || (0x7F..<0xA0).contains(s.value) || (0x202A...0x202E).contains(s.value)
                || (0x2066...0x2069).contains(s.value)
        }
    }

    @Test func controlCharactersAndEscapeSequencesAreShownEscaped() {
        #expect(Render.safe(Self.hostile) == Self.shown)
        #expect(Render.safe("plain text, tabs\tand ümlauts") == "plain text, tabs\tand ümlauts")
        #expect(Render.safe("two\nlines") == "two\\nlines")
        #expect(Render.safe("two\nlines\r\n", keepNewlines: true) == "two\nlines\\r\n")
    }

    @Test func listShowHistoryAndWaitEscapeWhatTheJSONKeepsRaw() throws {
        let db = TempDatabase()
        let prompt = "first line\n" + Self.hostile + "\nlast line"
        let enqueued = try BGQBinary.run(["enqueue", "--agent", "noop", "--json", "--description", Self.hostile, prompt], db: db)
        #expect(enqueued.status == 0, "\(enqueued.stderr)")
        let id = try #require((try JSONSerialization.jsonObject(with: Data(enqueued.stdout.utf8)) as? [String: Any])?["id"] as? String)
        let launched = try BGQBinary.run(["enqueue", "--agent", "noop", "--description", Self.hostile, "x"], db: db)
        #expect(Self.isTerminalSafe(launched.stdout) && launched.stdout.contains(Self.shown))
        try BGQBinary.run(["worker", "--exit-when-idle", "--poll-interval", "100ms"], db: db, timeout: 60)

        for command in [["list"], ["show", id], ["history", id], ["wait", id]] {
            let output = try BGQBinary.run(command, db: db)
            #expect(output.status == 0, "\(command): \(output.stderr)")
            #expect(Self.isTerminalSafe(output.stdout), "bgq \(command.joined(separator: " ")) printed raw control characters")
            if command[0] != "history" {  // history shows reasons, not the description
                #expect(output.stdout.contains(command[0] == "list" ? "\\e[31mred" : Self.shown), "bgq \(command[0]) shows the escapes")
            }
        }
        // A multi-line result keeps its lines in `show`; only the controls inside them are escaped.
        let shown = try BGQBinary.run(["show", id], db: db).stdout
        #expect(shown.contains("first line\n" + Self.shown + "\nlast line"))
        // --json stays raw: a program gets the exact text.
        let json = try BGQBinary.run(["show", "--json", id], db: db).stdout
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        #expect(object["description"] as? String == Self.hostile)
        #expect(object["result"] as? String == prompt)
    }

    @Test func watchLinesNoticesAndWorkerLogLinesAreEscaped() throws {
        let store = try TempDatabase().store()
        let task = try #require(try store.enqueue([NewTask(description: Self.hostile, prompt: "p", agent: "noop")]).first)
        let event = TaskEvent(id: 1, taskID: task.id, at: task.createdAt, from: .running, to: .error, workerID: "wrk_1", attempt: 1, reason: Self.hostile)
        #expect(Self.isTerminalSafe(BGQCommand.Watch.line(event, Self.hostile)))
        var failed = task
        failed.status = .error
        failed.error = Self.hostile
        #expect(Self.isTerminalSafe(Notices.taskFinished(failed, remaining: 0)))
        #expect(Self.isTerminalSafe(Notices.allFinished([failed])))
    }

    @Test func errorsNamingWhatWasTypedAreEscaped() throws {
        let db = TempDatabase()
        try BGQBinary.run(["enqueue", "--agent", "noop", "x"], db: db)
        let refused = try BGQBinary.run(["enqueue", "--agent", "no\u{1B}[2Jsuch", "x"], db: db)
        #expect(refused.status != 0)
        #expect(Self.isTerminalSafe(refused.stderr) && refused.stderr.contains("\\e[2J"), "\(refused.stderr)")
    }
}
