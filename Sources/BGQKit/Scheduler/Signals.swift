import Foundation
import Synchronization

/// SIGINT / SIGTERM arrivals, counted by a signal handler and read by the worker loop.
public enum StopSignals {
    static let count = Atomic<Int>(0)
    static let lastSignal = Atomic<Int32>(0)

    /// Installs the handlers. The loop polls `received` at every tick (at most 50 ms apart).
    public static func install() {
        let handler: @convention(c) (Int32) -> Void = { signal in
            StopSignals.lastSignal.store(signal, ordering: .relaxed)
            StopSignals.count.add(1, ordering: .relaxed)
        }
        var action = sigaction()
        action.__sigaction_handler.sa_handler = handler
        sigemptyset(&action.sa_mask)
        action.sa_flags = 0
        sigaction(SIGINT, &action, nil)
        sigaction(SIGTERM, &action, nil)
        signal(SIGPIPE, SIG_IGN)
        // A parent may have started us with these blocked (the mask is inherited): unblock them, or
        // a stop request would never arrive.
        var unblock = sigset_t()
        sigemptyset(&unblock)
        sigaddset(&unblock, SIGINT)
        sigaddset(&unblock, SIGTERM)
        pthread_sigmask(SIG_UNBLOCK, &unblock, nil)
    }

    public static var received: Int { count.load(ordering: .relaxed) }
    public static var last: Int32 { lastSignal.load(ordering: .relaxed) }

    static func name(_ signal: Int32) -> String {
        switch signal {
        case SIGINT: "SIGINT"
        case SIGTERM: "SIGTERM"
        default: "signal \(signal)"
        }
    }
}

/// The worker's log: one line per state change on stderr, readable or JSON.
public final class WorkerLog {
    public enum Format: String, Sendable { case text, json }
    let format: Format
    let clock: Clock
    var workerID = ""

    public init(format: Format, clock: Clock) {
        self.format = format
        self.clock = clock
    }

    public func event(_ name: String, task: String? = nil, _ message: String, fields: [String: String] = [:]) {
        let time = clock.now().iso8601
        let line: String
        switch format {
        case .text:
            line = "\(time) \(workerID) \(task.map { "\($0) " } ?? "")\(message)\n"
        case .json:
            var object: [String: String] = fields
            object["time"] = time
            object["worker"] = workerID
            object["event"] = name
            object["message"] = message
            if let task { object["task"] = task }
            let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data()
            line = String(decoding: data, as: UTF8.self) + "\n"
        }
        FileHandle.standardError.write(Data(line.utf8))
    }
}
