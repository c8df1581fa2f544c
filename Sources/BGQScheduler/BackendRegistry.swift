import BGQCore

/// The session backends a worker may use, by kind. The program fills it (`bgq worker`: every backend
/// this build has); the scheduler asks it for a backend and never names a concrete one.
///
/// Backends are made on first use, so a worker that only runs shell tasks never makes the HTTP client:
/// no event-loop thread, no socket, no TLS trust store read.
public final class BackendRegistry: BackendRegistering {
    private var makers: [AgentPreset.Backend: () -> SessionBackend] = [:]
    private var instances: [AgentPreset.Backend: SessionBackend] = [:]
    /// The kinds in the order they were made, for `made`.
    private var order: [AgentPreset.Backend] = []
    private var noticeKind: AgentPreset.Backend?
    private var shutdowns: [() -> Void] = []

    public init() {}

    /// Makes `kind`'s backend with `make` when a task first needs it.
    public func register(_ kind: AgentPreset.Backend, _ make: @escaping () -> SessionBackend) {
        makers[kind] = make
    }

    /// Parent notices go through `kind`'s backend, which must be a `NoticeTransport`.
    public func deliverNotices(through kind: AgentPreset.Backend) {
        noticeKind = kind
    }

    /// Run by `shutdown()` (e.g. to stop an HTTP client's event loop, if one was made).
    public func onShutdown(_ action: @escaping () -> Void) {
        shutdowns.append(action)
    }

    /// The backend for `kind`: made now if it was not yet; one that this program does not have fails
    /// every start with a clear error and leaves adoptions to a worker that has it.
    public func backend(for kind: AgentPreset.Backend) -> SessionBackend {
        if let made = instances[kind] { return made }
        let backend = makers[kind]?() ?? UnavailableBackend(kind: kind)
        instances[kind] = backend
        order.append(kind)
        return backend
    }

    public func backend(for preset: AgentPreset) -> SessionBackend { backend(for: preset.backend) }

    /// The backend that delivers parent notices, made now if needed; nil when there is none.
    public var noticeTransport: NoticeTransport? {
        noticeKind.flatMap { backend(for: $0) as? NoticeTransport }
    }

    /// The backends made so far (to collect ready sessions and tell them of exited children).
    public var made: [SessionBackend] { order.compactMap { instances[$0] } }

    /// Releases what the backends hold (pooled connections, event-loop threads).
    public func shutdown() {
        for action in shutdowns { action() }
    }
}

/// Stands in for a backend this program was built without: nothing starts, nothing is adopted here.
final class UnavailableBackend: SessionBackend {
    let kind: AgentPreset.Backend
    init(kind: AgentPreset.Backend) { self.kind = kind }

    var problem: String { "no \(kind.rawValue) backend in this bgq: run the task with a bgq that has one" }

    func start(_ request: StartRequest) throws -> SessionStart { throw BGQError.failure(problem) }
    func poll(_ session: ActiveSession) -> PollResult {
        PollResult(status: .ended(exitCode: nil, detail: problem), newMessages: [], madeProgress: false)
    }
    func finalResult(_ session: ActiveSession) -> (text: String, isError: Bool)? { nil }
    func failureDetail(_ session: ActiveSession) -> String? { nil }
    func abort(_ task: TaskRecord, agent: AgentDefinition?) {}
    func adoptionCheck(_ task: TaskRecord, host: String) -> AdoptionCheck { .unknown }
}
