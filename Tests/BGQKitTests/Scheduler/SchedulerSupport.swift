import Foundation
@testable import BGQBackends
@testable import BGQCore
@testable import BGQSQLite
@testable import BGQScheduler
@testable import BGQSystem

extension BackendRegistry {
    /// The backends `bgq worker` has, installed the same way: real ones, made on first use.
    static func standard(store: any QueueStore, environment: [String: String] = ProcessInfo.processInfo.environment) -> BackendRegistry {
        let registry = BackendRegistry()
        StandardBackends.install(into: registry, environment: environment, conversations: store, wake: WakeUp.signalSafeWake)
        return registry
    }
}

/// One worker's services on a fresh database, driven by hand: a manual clock, a store whose writes give
/// up after 20 ms when another connection holds the lock, and the real backends (noop in process, exec
/// as real processes). The worker reaps only its own children (the test process has others').
final class SchedulerRig {
    let db = TempDatabase()
    let clock = ManualClock(SystemClock().now())
    let store: SQLiteStore
    let worker: Worker

    init(maxSessions: Int = 16, settings: [String: String] = [:]) throws {
        _ = try db.store()
        store = SQLiteStore(connection: try Database.open(path: db.path, busyTimeoutMilliseconds: 20), clock: clock)
        for (key, value) in settings { try store.setSetting(key, value) }
        var options = WorkerOptions(name: "test")
        options.maxSessions = maxSessions
        options.ownsAllChildren = false
        worker = Worker(store: store, options: options, backends: .standard(store: store), clock: clock)
        try worker.register()
    }

    var context: WorkerContext { worker.context }

    /// Holds the write lock from another connection until `release` is called on the result.
    func holdWriteLock() throws -> WriteLock { try WriteLock(path: db.path) }

    struct WriteLock {
        let holder: Connection
        init(path: String) throws {
            holder = try Connection(path: path, create: false)
            try holder.execute("BEGIN IMMEDIATE")
        }
        func release() throws { try holder.execute("ROLLBACK") }
    }

    @discardableResult
    func enqueue(_ prompt: String, agent: String = "noop", onComplete: String? = nil) throws -> String {
        try store.enqueue([NewTask(description: "d", prompt: prompt, agent: agent, onComplete: onComplete)])[0].id
    }

    func status(_ id: String) throws -> TaskStatus? { try store.task(id: id)?.status }
}
