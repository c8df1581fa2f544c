import BGQCore
import Foundation

/// Every session backend this build of bgq has, for a worker's `BackendRegistry`.
public enum StandardBackends {
    /// Registers exec, noop, opencode-server, openai and anthropic. The HTTP ones share one client,
    /// made with the first of them: a worker that runs only shell tasks never makes it.
    ///
    /// - Parameters:
    ///   - environment: the agents' environment, and the HTTP client's proxy and TLS settings.
    ///   - conversations: where the provider backends read a continued session's earlier turns.
    ///   - wake: wakes the worker's loop from another thread (a provider's reply came in); must be
    ///     safe to call from any thread.
    public static func install(into registry: some BackendRegistering, environment: [String: String], conversations: any QueueStore,
                               wake: @escaping @Sendable () -> Void) {
        let http = SharedHTTPClient(environment: environment)
        registry.register(.exec) { ExecBackend(environment: environment) }
        registry.register(.noop) { NoopBackend() }
        registry.register(.opencodeServer) { OpenCodeBackend(http: http.client, environment: environment) }
        func provider(_ api: ProviderAPI) -> ProviderBackend {
            ProviderBackend(api: api, http: http.client, environment: environment,
                            loadConversation: { sessionID, taskID in try conversations.sessionMessages(sessionID: sessionID, exceptTaskID: taskID) },
                            wake: wake)
        }
        registry.register(.openai) { provider(.openai) }
        registry.register(.anthropic) { provider(.anthropic) }
        registry.deliverNotices(through: .opencodeServer)
        registry.onShutdown { http.shutdown() }
    }
}

/// One HTTP client for the HTTP backends, made when the first of them is.
final class SharedHTTPClient {
    let environment: [String: String]
    private var made: HTTPClient?

    init(environment: [String: String]) { self.environment = environment }

    var client: HTTPClient {
        if let made { return made }
        let client = HTTPClient(environment: environment)
        made = client
        return client
    }

    /// Closes the client's connections and stops its event loop, if it was made.
    func shutdown() { made?.shutdown() }
}
