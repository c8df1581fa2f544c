import Foundation
import Testing
@testable import BGQBackends
@testable import BGQCLI
@testable import BGQCore
@testable import BGQSQLite
@testable import BGQScheduler
@testable import BGQSystem

/// Every command's help reads well at 80 columns.
@Suite struct HelpTests {
    static let commands: [[String]] = [[]] + CLITests.topLevelCommands + CLITests.nestedCommands

    static func help(_ command: [String], columns: Int) throws -> String {
        let result = try BGQBinary.run(command + ["--help"], db: nil, environment: ["COLUMNS": String(columns)])
        #expect(result.status == 0, "bgq \(command.joined(separator: " ")) --help: \(result.stderr)")
        return result.stdout
    }

    @Test(arguments: commands)
    func helpFitsIn80ColumnsWithEachDefaultOnce(_ command: [String]) throws {
        let name = (["bgq"] + command).joined(separator: " ")
        let text = try Self.help(command, columns: 80)
        for line in text.split(separator: "\n") {
            #expect(line.count <= 80, "\(name) --help has a line of \(line.count) columns: \(line)")
        }
        // One option's entry: its first line and the more-indented lines under it.
        var entries: [String] = []
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("  -") || line.hasPrefix("  <") { entries.append(String(line)) } else if line.hasPrefix("      "), !entries.isEmpty {
                entries[entries.count - 1] += " " + line.trimmingCharacters(in: .whitespaces)
            }
        }
        for entry in entries {
            #expect(entry.lowercased().components(separatedBy: "(default").count <= 2, "\(name): a default said twice: \(entry)")
        }
    }

    /// Wide enough that nothing is wrapped: the text as written. Prose is one line per paragraph (the
    /// parser wraps it to the terminal), and an indented example fits in 80 columns, so the parser
    /// never breaks it (it would continue it at the margin, or split a quoted argument).
    @Test(arguments: commands)
    func discussionIsNotPreWrappedAndExamplesFit(_ command: [String]) throws {
        let name = (["bgq"] + command).joined(separator: " ")
        let text = try Self.help(command, columns: 1000)
        guard let usage = text.range(of: "\nUSAGE:") else { Issue.record("\(name): no USAGE"); return }
        let discussion = text[..<usage.lowerBound].split(separator: "\n", omittingEmptySubsequences: false).dropFirst()
        var previous: Substring = ""
        for line in discussion {
            if line.hasPrefix(" ") {
                #expect(line.count <= 80, "\(name): an example longer than 80 columns: \(line)")
            } else if let first = line.first, !previous.isEmpty, !previous.hasPrefix(" "), first.isLowercase || first == "(" {
                Issue.record("\(name): a paragraph wrapped by hand: \"\(previous)\" / \"\(line)\"")
            }
            previous = line
        }
    }

    @Test func dbIsAcceptedBeforeTheCommand() throws {
        let db = TempDatabase()
        try BGQBinary.run(["enqueue", "--agent", "noop", "here"], db: db)
        for arguments in [["--db", db.path, "list"], ["--db=\(db.path)", "list"], ["--db", db.path, "limits", "show"]] {
            let result = try BGQBinary.run(arguments, db: nil)
            #expect(result.status == 0, "bgq \(arguments.joined(separator: " ")): \(result.stderr)")
        }
        #expect(try BGQBinary.run(["--db", db.path, "list"], db: nil).stdout.contains("here"))
    }

    @Test func aLongUsageLineBreaksBetweenElements() {
        let usage = "USAGE: bgq list [--db <path>] [--status <status> ...] [--agent <agent>] [--model <model>] [--parent <parent>] [--limit <limit>] [--json]"
        let fitted = HelpText.fittingUsage("x\n" + usage + "\n", columns: 60)
        let lines = fitted.split(separator: "\n").dropFirst()
        #expect(lines.allSatisfy { $0.count <= 60 })
        #expect(lines.joined(separator: " ").split(separator: " ").joined(separator: " ") == usage)
        #expect(lines.dropFirst().allSatisfy { $0.hasPrefix(String(repeating: " ", count: 16) + "[") })
    }
}
