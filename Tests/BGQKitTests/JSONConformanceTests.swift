import Foundation
import Testing
@testable import BGQBackends
@testable import BGQCLI
@testable import BGQCore
@testable import BGQSQLite
@testable import BGQScheduler
@testable import BGQSystem

/// bgq's JSON parser against JSONTestSuite (github.com/nst/JSONTestSuite, test_parsing): every `y_`
/// document accepted, every `n_` refused, every `i_` answered either way without a crash or hang.
/// The corpus lives beside the repository, in ../shared/testdata/JSONTestSuite.
@Suite struct JSONConformanceTests {
    static let corpus = repositoryRoot + "/../shared/testdata/JSONTestSuite/test_parsing"

    static func documents(_ prefix: String) throws -> [(name: String, bytes: Data)] {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: corpus) else {
            throw BGQError.failure("JSONTestSuite corpus missing at \(corpus): put nst/JSONTestSuite's test_parsing folder there")
        }
        return try names.filter { $0.hasPrefix(prefix) && $0.hasSuffix(".json") }.sorted().map { name in
            (name, try Data(contentsOf: URL(fileURLWithPath: corpus + "/" + name)))
        }
    }

    /// Both modes: RFC 8259 lets an object repeat a key, so only `.lastWins` takes those two `y_` files.
    @Test func everyValidDocumentIsAccepted() throws {
        let valid = try Self.documents("y_")
        #expect(valid.count >= 90)
        for (name, bytes) in valid {
            #expect(throws: Never.self, "\(name)") { try JSONValue.parse(bytes: bytes, duplicateKeys: .lastWins) }
            if name.hasPrefix("y_object_duplicated_key") {
                #expect(throws: BGQError.self, "\(name)") { try JSONValue.parse(bytes: bytes, duplicateKeys: .refuse) }
            } else {
                #expect(throws: Never.self, "\(name)") { try JSONValue.parse(bytes: bytes) }
            }
        }
    }

    @Test func everyInvalidDocumentIsRefused() throws {
        let invalid = try Self.documents("n_")
        #expect(invalid.count >= 180)
        for (name, bytes) in invalid {
            #expect(throws: BGQError.self, "\(name) was accepted") { try JSONValue.parse(bytes: bytes, duplicateKeys: .lastWins) }
        }
    }

    /// Implementation-defined documents: answered, one way or the other, with a one-line error.
    @Test func everyImplementationDefinedDocumentIsAnswered() throws {
        let open = try Self.documents("i_")
        #expect(open.count >= 30)
        for (_, bytes) in open {
            do { _ = try JSONValue.parse(bytes: bytes, duplicateKeys: .lastWins) } catch let error as BGQError {
                #expect(!error.description.contains("\n"))
            }
        }
    }

    @Test func values() throws {
        #expect(try JSONValue.parse("[0, -0, 10, -9223372036854775808, 9223372036854775807, 9223372036854775808, 1.5e2, 1E-2]")
                == .array([.int(0), .int(0), .int(10), .int(.min), .int(.max), .double(9223372036854775808), .double(150), .double(0.01)]))
        #expect(try JSONValue.parse(#""\ud834\udd1e \u00e9 \u0000 \/""#) == .string("𝄞 é \u{0} /"))
        #expect(try JSONValue.parse(#"{"a":1,"a":2}"#, duplicateKeys: .lastWins) == ["a": 2])
    }

    @Test(arguments: ["01", "-01", "1.", ".5", "1e", "1e+", "+1", "-", "NaN", "Infinity", "0x10", "1.0e400", "-1e999"])
    func numbersOutsideTheGrammarAreRefused(_ text: String) {
        #expect(throws: BGQError.self) { try JSONValue.parse(text) }
    }

    @Test(arguments: [#""\ud800""#, #""\udc00""#, #""\ud800x""#, #""\ud800\u0041""#, #""\ud800\ud800""#])
    func loneSurrogatesAreRefused(_ text: String) throws {
        let error = try #require(throws: BGQError.self) { try JSONValue.parse(text) }
        #expect(error.description.contains("lone surrogate escape"), "\(error)")
        #expect(error.description.hasSuffix("at byte 1"), "\(error)")
    }

    /// 512 levels parse; the 513th is refused with an error that says so, and 100,000 levels (a stack
    /// overflow without the limit) get the same answer.
    @Test func nestingIsLimitedTo512Levels() throws {
        @Sendable func nested(_ depth: Int) -> String { String(repeating: "[", count: depth) + String(repeating: "]", count: depth) }
        #expect(throws: Never.self) { try JSONValue.parse(nested(JSONValue.maxDepth)) }
        #expect(throws: Never.self) { try JSONValue.parse(String(repeating: #"{"a":"#, count: 511) + "[1]" + String(repeating: "}", count: 511)) }
        for depth in [JSONValue.maxDepth + 1, 100_000] {
            let error = try #require(throws: BGQError.self) { try JSONValue.parse(nested(depth)) }
            #expect(error.description.contains("nested deeper than 512 levels"), "\(error)")
        }
        let objects = String(repeating: #"{"a":"#, count: 100_000)
        #expect(throws: BGQError.self) { try JSONValue.parse(objects) }
        // The deepest accepted document fits in the stack a Linux thread gets (8 MiB), in a debug build and
        // under ThreadSanitizer too, whose frames are several times larger (1 MiB held without it only).
        nonisolated(unsafe) var parsed = false
        let done = DispatchSemaphore(value: 0)
        let deepest = nested(JSONValue.maxDepth)
        let thread = Thread {
            parsed = (try? JSONValue.parse(deepest)) != nil
            done.signal()
        }
        thread.stackSize = 8 << 20
        thread.start()
        done.wait()
        #expect(parsed)
    }

    /// Bytes from outside are refused when they are not UTF-8, never repaired into U+FFFD.
    @Test func invalidUTF8IsRefused() {
        #expect(throws: BGQError.self) { try JSONValue.parse(bytes: Data([0x22, 0xFF, 0x22])) }
        #expect(JSONValue.parse(data: Data([0x22, 0xC3, 0x28, 0x22])) == nil)
    }
}

/// `bgq enqueue --jsonl` reads its lines with the same parser, so the same refusals reach the user.
@Suite struct JSONLConformanceTests {
    @Test func aJSONLLineWithALoneSurrogateIsRefusedNamingTheLineAndNothingIsEnqueued() throws {
        let db = try HostileInputTests.seeded()
        let input = #"{"agent":"noop","prompt":"fine"}"# + "\n" + #"{"agent":"noop","prompt":"half an emoji \ud83d"}"# + "\n"
        try HostileInputTests.expectRejected(["enqueue", "--jsonl", "-"], db: db, stdin: input, mentioning: "JSONL line 2: lone surrogate escape \\ud83d")
        let result = try BGQBinary.run(["enqueue", "--jsonl", "-"], db: db, stdin: input)
        #expect(result.stderr.split(separator: "\n").count == 1, "\(result.stderr)")
        #expect(try BGQBinary.run(["list", "--json"], db: db).stdout.components(separatedBy: "\"id\"").count == 2, "only the seed task")
    }

    @Test func aJSONLLineWithALeadingZeroOrDeepNestingIsRefused() throws {
        let db = try HostileInputTests.seeded()
        try HostileInputTests.expectRejected(["enqueue", "--jsonl", "-"], db: db, stdin: #"{"agent":"noop","prompt":"a","priority":007}"#,
                                             mentioning: "JSONL line 1: invalid number: no leading zeros")
        let deep = #"{"agent":"noop","prompt":"a","x":"# + String(repeating: "[", count: 100_000)
        try HostileInputTests.expectRejected(["enqueue", "--jsonl", "-"], db: db, stdin: deep, mentioning: "nested deeper than 512 levels")
    }
}
