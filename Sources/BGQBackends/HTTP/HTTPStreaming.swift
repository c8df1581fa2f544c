import AsyncHTTPClient
import BGQCore
import Foundation
import NIOCore
import NIOHTTP1

extension HTTPClient {
    /// What a stream's reader wants after a body part.
    public enum StreamDecision: Sendable {
        case more
        /// It has what it needs (the stream's last event, or an error it reports itself): stop reading.
        case stop
    }

    /// Starts an exchange whose successful (2xx) body is handed over part by part as it arrives: a
    /// provider's streamed completion. `onHead` runs once for a 2xx reply, then `onBodyPart` for each part;
    /// a reply of any other status is read whole (error bodies are short) and comes to `completion`.
    ///
    /// The limits of `start` hold over the whole stream: the response size cap (past it `.tooLarge`), the
    /// read timeout between two parts (a stream that stalls ends `.timedOut`) and the request's timeout as
    /// the deadline of the whole exchange. `completion` runs once, on the event loop thread: for a streamed
    /// reply its body is empty (the parts went to `onBodyPart`), also when the reader stopped it early.
    /// The callbacks run on the event loop thread and must not block.
    @discardableResult
    public func stream(_ request: HTTPRequest, onHead: @escaping @Sendable (_ status: Int, _ headers: [String: String]) -> Void,
                       onBodyPart: @escaping @Sendable (ArraySlice<UInt8>) -> StreamDecision,
                       completion: @escaping @Sendable (Result<HTTPResponse, HTTPFailure>) -> Void) -> InFlight {
        let limit = settings.maxResponseBytes
        let host = request.url.host ?? ""
        let delegate = StreamingDelegate(limit: limit, onHead: onHead, onBodyPart: onBodyPart)
        return launch(request, delegate: { _ in delegate }, completion: { result in
            switch result {
            case .success(let response):
                completion(.success(response))
            case .failure(let error) where error is StreamingDelegate.StoppedByReader:
                completion(.success(delegate.headOnly))
            case .failure(let error):
                completion(.failure(HTTPFailure(error, host: host, limit: limit)))
            }
        })
    }

    /// Sends a request with the given delegate under the request's deadline; `completion` runs once.
    func launch<Delegate: HTTPClientResponseDelegate>(_ request: HTTPRequest,
                                                      delegate makeDelegate: (AsyncHTTPClient.HTTPClient.Request) -> Delegate,
                                                      completion: @escaping @Sendable (Result<Delegate.Response, any Error>) -> Void) -> InFlight {
        let prepared: (AsyncHTTPClient.HTTPClient, AsyncHTTPClient.HTTPClient.Request)
        do {
            prepared = try prepare(request)
        } catch {
            completion(.failure(error))
            return InFlight(cancelAction: {})
        }
        let (client, outgoing) = prepared
        let deadline = NIODeadline.now() + .milliseconds(Int64(max(request.timeoutSeconds, 0.1) * 1000))
        let task = client.execute(request: outgoing, delegate: makeDelegate(outgoing), deadline: deadline)
        task.futureResult.whenComplete { completion($0) }
        return InFlight(cancelAction: { task.cancel() })
    }
}

/// Hands a 2xx body to its reader part by part, reads any other body whole, and counts every byte
/// against the size cap. AHC calls it on the connection's event loop only, one call at a time.
final class StreamingDelegate: HTTPClientResponseDelegate, @unchecked Sendable {
    typealias Response = HTTPResponse

    /// The reader asked to stop: not a failure of the exchange.
    struct StoppedByReader: Error {}

    let limit: Int
    let onHead: @Sendable (Int, [String: String]) -> Void
    let onBodyPart: @Sendable (ArraySlice<UInt8>) -> HTTPClient.StreamDecision
    private var status = 0
    private var headers: [String: String] = [:]
    private var streams = false
    private var received = 0
    private var body = Data()

    init(limit: Int, onHead: @escaping @Sendable (Int, [String: String]) -> Void,
         onBodyPart: @escaping @Sendable (ArraySlice<UInt8>) -> HTTPClient.StreamDecision) {
        self.limit = limit
        self.onHead = onHead
        self.onBodyPart = onBodyPart
    }

    /// The reply's status and headers without a body (what a stopped stream answers).
    var headOnly: HTTPResponse { HTTPResponse(status: status, headers: headers, body: Data()) }

    func didReceiveHead(task: AsyncHTTPClient.HTTPClient.Task<HTTPResponse>, _ head: HTTPResponseHead) -> EventLoopFuture<Void> {
        status = Int(head.status.code)
        for (name, value) in head.headers { headers[name.lowercased()] = value }
        if let announced = head.headers.first(name: "content-length").flatMap({ Int($0) }), announced > limit {
            return task.eventLoop.makeFailedFuture(HTTPFailure.tooLarge(limit: limit))
        }
        streams = (200..<300).contains(status)
        if streams { onHead(status, headers) }
        return task.eventLoop.makeSucceededVoidFuture()
    }

    func didReceiveBodyPart(task: AsyncHTTPClient.HTTPClient.Task<HTTPResponse>, _ buffer: ByteBuffer) -> EventLoopFuture<Void> {
        received += buffer.readableBytes
        // The cap counts the whole stream, not one event: a reply that never ends must end here.
        guard received <= limit else { return task.eventLoop.makeFailedFuture(HTTPFailure.tooLarge(limit: limit)) }
        guard streams else {
            body.append(contentsOf: buffer.readableBytesView)
            return task.eventLoop.makeSucceededVoidFuture()
        }
        switch onBodyPart(ArraySlice(buffer.readableBytesView)) {
        case .more: return task.eventLoop.makeSucceededVoidFuture()
        case .stop: return task.eventLoop.makeFailedFuture(StoppedByReader())
        }
    }

    func didFinishRequest(task: AsyncHTTPClient.HTTPClient.Task<HTTPResponse>) throws -> HTTPResponse {
        HTTPResponse(status: status, headers: headers, body: body)
    }
}
