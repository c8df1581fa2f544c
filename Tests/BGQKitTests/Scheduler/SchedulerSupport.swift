import Foundation
@testable import BGQBackends
@testable import BGQCore
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
