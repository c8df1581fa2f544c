import Foundation
import Testing
@testable import BGQBackends
@testable import BGQCLI
@testable import BGQCore
@testable import BGQSQLite
@testable import BGQScheduler
@testable import BGQSystem

/// The event-stream parser against the WHATWG rules, whole and split at every byte.
@Suite struct ServerSentEventsTests {
    /// Every event of a stream fed at once, then `finish()`.
    static func events(_ bytes: [UInt8], maxEventBytes: Int = 1 << 20) throws(ServerSentEventError) -> [ServerSentEvent] {
        var parser = ServerSentEventParser(maxEventBytes: maxEventBytes)
        let events = try parser.feed(bytes)
        parser.finish()
        return events
    }

    static func events(_ text: String) throws -> [ServerSentEvent] { try events(Array(text.utf8)) }

    /// The events of a stream fed in two parts split at `index`.
    static func split(_ bytes: [UInt8], at index: Int) throws -> [ServerSentEvent] {
        var parser = ServerSentEventParser()
        return try parser.feed(bytes[..<index]) + parser.feed(bytes[index...])
    }

    @Test func dataLinesAreJoinedAndAnEmptyLineDispatches() throws {
        #expect(try Self.events("data: one\ndata: two\n\ndata:three\n\n") == [
            ServerSentEvent(data: "one\ntwo"), ServerSentEvent(data: "three"),
        ])
        // One space after the colon is dropped, not more; a value may hold colons.
        #expect(try Self.events("data:  two spaces\ndata: a: b\n\n") == [ServerSentEvent(data: " two spaces\na: b")])
        // An empty data line adds an empty line; `data` without a colon is a field with an empty value.
        #expect(try Self.events("data\ndata\n\n") == [ServerSentEvent(data: "\n")])
        #expect(try Self.events("data:\n\n") == [ServerSentEvent(data: "")])
    }

    @Test func everyLineEndCountsCRLFOnce() throws {
        let expected = [ServerSentEvent(data: "a\nb"), ServerSentEvent(data: "c")]
        #expect(try Self.events("data: a\ndata: b\n\ndata: c\n\n") == expected)
        #expect(try Self.events("data: a\rdata: b\r\rdata: c\r\r") == expected)
        #expect(try Self.events("data: a\r\ndata: b\r\n\r\ndata: c\r\n\r\n") == expected)
        #expect(try Self.events("data: a\r\ndata: b\r\rdata: c\n\r\n") == expected, "mixed line ends")
        // CR then LF is one line end; LF then CR is two (an empty line: dispatch).
        #expect(try Self.events("data: x\n\rdata: y\r\n\n") == [ServerSentEvent(data: "x"), ServerSentEvent(data: "y")])
    }

    @Test func commentsEventNamesIdsAndRetry() throws {
        let stream = ": a comment\nevent: content_block_delta\nid: 7\nretry: 2500\ndata: {}\n\n:keep-alive\n\ndata: next\n\n"
        var parser = ServerSentEventParser()
        let events = try parser.feed(Array(stream.utf8))
        #expect(events == [ServerSentEvent(type: "content_block_delta", data: "{}", lastEventID: "7"),
                           ServerSentEvent(type: "message", data: "next", lastEventID: "7")])
        #expect(parser.retryMs == 2500)
        // A retry that is not all ASCII digits is ignored; an id holding NUL is ignored; unknown fields too.
        let odd = try parser.feed(Array("retry: 12a\nretry:\nid: x\u{0}y\nfoo: bar\nEvent: loud\ndata: d\n\n".utf8))
        #expect(odd == [ServerSentEvent(type: "message", data: "d", lastEventID: "7")], "field names are case-sensitive")
        #expect(parser.retryMs == 2500)
        // An event without data dispatches nothing, and its type does not leak into the next one.
        #expect(try Self.events("event: ping\n\ndata: after\n\n") == [ServerSentEvent(data: "after")])
        // An empty id resets the last event id.
        #expect(try Self.events("id: 1\ndata: a\n\nid\ndata: b\n\n").map(\.lastEventID) == ["1", ""])
    }

    @Test func aLeadingBOMIsDroppedOnceAndOnlyAtTheStart() throws {
        #expect(try Self.events([0xEF, 0xBB, 0xBF] + Array("data: a\n\n".utf8)) == [ServerSentEvent(data: "a")])
        // A second BOM is part of the first line: a field named "\u{FEFF}data", which is ignored.
        #expect(try Self.events([0xEF, 0xBB, 0xBF, 0xEF, 0xBB, 0xBF] + Array("data: a\n\n".utf8)) == [])
        // A BOM's first bytes followed by something else are kept (and are not UTF-8 alone).
        let broken = try Self.events([0xEF, 0xBB] + Array("\ndata: z\n\n".utf8))
        #expect(broken == [ServerSentEvent(data: "z")])
    }

    @Test func anIncompleteLastEventIsDropped() throws {
        var parser = ServerSentEventParser()
        #expect(try parser.feed(Array("data: whole\n\ndata: cut off".utf8)) == [ServerSentEvent(data: "whole")])
        #expect(parser.hasIncompleteEvent)
        parser.finish()
        #expect(!parser.hasIncompleteEvent)
        #expect(try Self.events("data: no empty line\n") == [])
        // After finish the parser starts afresh: nothing of the dropped event remains.
        #expect(try parser.feed(Array("data: fresh\n\n".utf8)) == [ServerSentEvent(data: "fresh")])
    }

    @Test func invalidUTF8IsReplacedAndFlaggedNeverACrash() throws {
        let bytes: [UInt8] = Array("data: bad ".utf8) + [0xFF, 0xFE, 0xC3, 0x28] + Array("\n\ndata: good é\n\n".utf8)
        let events = try Self.events(bytes)
        #expect(events.count == 2)
        #expect(events.first?.isValidUTF8 == false && events.first?.data.contains("\u{FFFD}") == true, "\(events)")
        #expect(events.last == ServerSentEvent(data: "good é"))
        // In a field name or a comment it is only ignored.
        #expect(try Self.events([0xFF] + Array(": x\n\u{0}\ndata: ok\n\n".utf8)) == [ServerSentEvent(data: "ok")])
    }

    /// A line without end (or an event of many lines) past the cap fails with a reason, and keeps failing.
    @Test func anEventPastTheCapFailsClearlyInsteadOfGrowing() throws {
        var parser = ServerSentEventParser(maxEventBytes: 1000)
        #expect(try parser.feed(Array("data: \(String(repeating: "x", count: 900))\n\n".utf8)).count == 1)
        var failure: ServerSentEventError?
        do {
            for _ in 0..<100 { _ = try parser.feed(Array(repeating: UInt8(ascii: "y"), count: 100)) }
        } catch {
            failure = error
        }
        #expect(failure == .eventTooLarge(limit: 1000))
        #expect(failure?.description.contains("longer than 1000 bytes") == true, "\(failure?.description ?? "-")")
        #expect(throws: ServerSentEventError.eventTooLarge(limit: 1000)) { try parser.feed(Array("\n\n".utf8)) }
        // Many short data lines count together.
        let lines = String(repeating: "data: 0123456789\n", count: 200)
        #expect(throws: ServerSentEventError.eventTooLarge(limit: 1000)) { try Self.events(Array(lines.utf8), maxEventBytes: 1000) }
        // Comments and empty lines hold nothing: any number of them passes.
        let keepAlive = String(repeating: ": ping\n\n", count: 10_000) + "data: end\n\n"
        #expect(try Self.events(Array(keepAlive.utf8), maxEventBytes: 1000) == [ServerSentEvent(data: "end")])
    }

    /// Feeding one stream split at any byte (inside a CRLF, a BOM, a UTF-8 sequence) gives the same events,
    /// and so does feeding it byte by byte.
    @Test func splittingTheStreamAnywhereGivesTheSameEvents() throws {
        let stream: [UInt8] = [0xEF, 0xBB, 0xBF] + Array("""
            : hello\r\nevent: message_start\r\ndata: {"a": "é✓"}\r\n\r\nid: 4\rdata: one\rdata: two\r\r\
            data: three\n\nretry: 100\ndata\n\nevent: x\n:c\ndata: 😀\r\n\r\ndata: cut
            """.utf8) + [0xFF] + Array("data: tail\n\ndata: never finished".utf8)
        let whole = try Self.events(stream)
        #expect(whole.count == 6, "\(whole)")
        #expect(whole.last?.isValidUTF8 == false && whole.first?.type == "message_start", "\(whole)")
        for index in 0...stream.count {
            #expect(try Self.split(stream, at: index) == whole, "split at \(index)")
        }
        var parser = ServerSentEventParser()
        var byteByByte: [ServerSentEvent] = []
        for byte in stream { byteByByte += try parser.feed([byte]) }
        #expect(byteByByte == whole)
    }
}

/// The provider stream shapes, fed as the fake provider and the real APIs send them.
@Suite struct ProviderStreamDecoderTests {
    static func decode(_ api: ProviderAPI, _ text: String) -> ProviderStreamDecoder {
        var decoder = ProviderStreamDecoder(api: api)
        decoder.feed(Array(text.utf8))
        return decoder
    }

    @Test func openAIChunksUsageAndDone() {
        let stream = """
            data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}

            data: {"id":"c1","choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}],"usage":null}

            data: {"id":"c1","choices":[{"index":0,"delta":{"content":"lo ✓"},"finish_reason":null}]}

            data: {"id":"c1","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}

            data: {"id":"c1","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15}}

            data: [DONE]


            """
        let decoder = Self.decode(.openai, stream)
        #expect(decoder.state == .complete)
        #expect(decoder.text == "Hello ✓")
        #expect(decoder.stopReason == "stop")
        #expect(decoder.usage == TokenUsage(inputTokens: 12, outputTokens: 3))
        // Without [DONE] the reply is not complete, whatever came before.
        #expect(Self.decode(.openai, stream.replacingOccurrences(of: "data: [DONE]", with: "")).state == .open)
        // An error object inside the stream.
        let error = Self.decode(.openai, "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: {\"error\":{\"message\":\"boom\",\"type\":\"server_error\"}}\n\n")
        #expect(error.state == .providerError(message: "boom", type: "server_error"))
    }

    @Test func anthropicEvents() {
        let stream = """
            event: message_start
            data: {"type":"message_start","message":{"id":"m","content":[],"usage":{"input_tokens":25,"output_tokens":1}}}

            event: content_block_start
            data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}

            event: ping
            data: {"type": "ping"}

            event: content_block_delta
            data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi "}}

            event: content_block_delta
            data: {"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{}"}}

            event: content_block_delta
            data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"there"}}

            event: message_delta
            data: {"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":15}}

            event: message_stop
            data: {"type":"message_stop"}


            """
        let decoder = Self.decode(.anthropic, stream)
        #expect(decoder.state == .complete)
        #expect(decoder.text == "Hi there")
        #expect(decoder.stopReason == "end_turn")
        #expect(decoder.usage == TokenUsage(inputTokens: 25, outputTokens: 15))
        let overloaded = Self.decode(.anthropic, "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n")
        #expect(overloaded.state == .providerError(message: "Overloaded", type: "overloaded_error"))
        #expect(ProviderAPI.status(ofStreamError: "overloaded_error") == 529)
        #expect(ProviderRetryPolicy.isRetryable(status: ProviderAPI.status(ofStreamError: "overloaded_error")))
        #expect(!ProviderRetryPolicy.isRetryable(status: ProviderAPI.status(ofStreamError: "invalid_request_error")))
    }

    @Test func brokenEventsEndTheStreamWithAReason() {
        guard case .malformed(let notJSON) = Self.decode(.openai, "data: {\"choices\": [\n\n").state else {
            Issue.record("accepted data that is not JSON")
            return
        }
        #expect(notJSON.contains("not JSON"))
        let deep = "data: " + String(repeating: "[", count: 100_000) + String(repeating: "]", count: 100_000) + "\n\n"
        guard case .malformed(let tooDeep) = Self.decode(.anthropic, deep).state else { Issue.record("accepted JSON nested 100,000 deep"); return }
        #expect(tooDeep.contains("not JSON"))
        var decoder = ProviderStreamDecoder(api: .openai)
        decoder.feed(Array("data: {\"choices\":[{\"delta\":{\"content\":\"".utf8) + [0xC3, 0x28] + Array("\"}}]}\n\n".utf8))
        #expect(decoder.state == .malformed("an event's data is not UTF-8"))
        // Nothing is read after the end.
        var done = Self.decode(.openai, "data: [DONE]\n\n")
        done.feed(Array("data: {\"choices\":[{\"delta\":{\"content\":\"late\"}}]}\n\n".utf8))
        #expect(done.text.isEmpty && done.state == .complete)
    }
}
