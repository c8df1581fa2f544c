import BGQCore
import Foundation

/// What a tool running on its own thread may look at: whether the client cancelled it, and where its
/// progress goes.
final class RequestContext: @unchecked Sendable {
    let id: RequestID
    /// Set from `_meta.progressToken`; nil when the client asked for no progress.
    let progress: ProgressReporter?
    private let condition = NSCondition()
    private var cancelled = false

    init(id: RequestID, progress: ProgressReporter?) {
        self.id = id
        self.progress = progress
    }

    var isCancelled: Bool {
        condition.lock()
        defer { condition.unlock() }
        return cancelled
    }

    /// `notifications/cancelled` named this request: wake its wait at once.
    func cancel() {
        condition.lock()
        cancelled = true
        condition.broadcast()
        condition.unlock()
    }

    /// Sleeps up to `milliseconds`; returns true (early) once the request is cancelled.
    func sleep(milliseconds: Int64) -> Bool {
        let deadline = Date().addingTimeInterval(Double(milliseconds) / 1000)
        condition.lock()
        defer { condition.unlock() }
        while !cancelled && condition.wait(until: deadline) {}
        return cancelled
    }
}

/// Sends `notifications/progress` for one request. MCP asks that progress only ever increases and
/// that notifications stop once the request is answered; the tool owns the reporter until then.
final class ProgressReporter: @unchecked Sendable {
    let token: JSONValue
    private let writer: MessageWriter
    private var last: Double?

    init(token: JSONValue, writer: MessageWriter) {
        self.token = token
        self.writer = writer
    }

    /// Sends progress unless it would not increase on the last value sent.
    func report(progress: Double, total: Double?, message: String) {
        if let last, progress <= last { return }
        last = progress
        var params: [String: JSONValue] = ["progressToken": token, "progress": .double(progress), "message": .string(message)]
        if let total { params["total"] = .double(total) }
        writer.notify("notifications/progress", .object(params))
    }
}

/// The requests being answered on their own threads, by id: so `notifications/cancelled` finds them,
/// a cancelled one is never answered, and the server can wait for them all at the end of input.
final class InFlightRequests: @unchecked Sendable {
    private let lock = NSLock()
    private var running: [RequestID: RequestContext] = [:]
    private let group = DispatchGroup()

    /// Registers a request; false when a request with this id is still in flight (ids must be unique).
    func start(_ context: RequestContext) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        guard running[context.id] == nil else { return false }
        running[context.id] = context
        group.enter()
        return true
    }

    /// Unregisters a request and sends its answer, unless the client cancelled it (MCP: a cancelled
    /// request gets no response). The answer is out before `waitForAll` returns.
    func finish(_ context: RequestContext, answer: () -> Void) {
        lock.lock()
        running[context.id] = nil
        lock.unlock()
        if !context.isCancelled { answer() }
        group.leave()
    }

    /// Cancels the request with this id; an unknown or finished one is ignored, as MCP allows.
    func cancel(_ id: RequestID) {
        lock.lock()
        let context = running[id]
        lock.unlock()
        context?.cancel()
    }

    /// Blocks until every request in flight has finished.
    func waitForAll() { group.wait() }
}
