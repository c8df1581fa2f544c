
/// The concurrency limits, as stored in the database: model > provider > default.
/// A limit of 0 means unlimited (for model and provider limits, as in the original).
public struct Limits: Equatable, Sendable {
    /// Keyed by `provider/model` or by the bare model name (the seed writes `claude-opus-4-5`).
    public var model: [String: Int] = [:]
    public var provider: [String: Int] = [:]
    /// The default limit per model; 5 unless set.
    public var defaultLimit: Int = Limits.builtInDefault

    public static let builtInDefault = 5

    public init(model: [String: Int] = [:], provider: [String: Int] = [:], defaultLimit: Int = Limits.builtInDefault) {
        self.model = model
        self.provider = provider
        self.defaultLimit = defaultLimit
    }

    /// The concurrency key and limit that apply to a task with this model (or, without a model, this agent).
    ///
    /// - A model limit applies (matching `provider/model` first, then the bare `model`): the key is that model.
    /// - Else a provider limit applies: the key is the provider, shared by all of its models
    ///   (the original counted per model here: oh-my-opencode issue #3968).
    /// - Else the default limit applies, per model.
    /// A task without a model uses its agent name as the model.
    public func concurrencyKey(model: ModelRef?, agent: String) -> ConcurrencyKey {
        guard let model else {
            if let limit = self.model[agent] { return ConcurrencyKey(name: "model:\(agent)", limit: limit, source: .model) }
            return ConcurrencyKey(name: "model:\(agent)", limit: defaultLimit, source: .defaultLimit)
        }
        let full = model.description
        if let limit = self.model[full] { return ConcurrencyKey(name: "model:\(full)", limit: limit, source: .model) }
        if let limit = self.model[model.modelID] {
            return ConcurrencyKey(name: "model:\(model.modelID)", limit: limit, source: .model)
        }
        if let limit = provider[model.provider] {
            return ConcurrencyKey(name: "provider:\(model.provider)", limit: limit, source: .provider)
        }
        return ConcurrencyKey(name: "model:\(full)", limit: defaultLimit, source: .defaultLimit)
    }

    /// The same rule for a stored model key (`provider/model`, or the agent name when the task has none).
    public func concurrencyKey(modelKey: String) -> ConcurrencyKey {
        if modelKey.contains("/"), let model = try? ModelRef(parsing: modelKey) {
            return concurrencyKey(model: model, agent: modelKey)
        }
        return concurrencyKey(model: nil, agent: modelKey)
    }
}

/// The name under which running tasks share slots, and how many slots it has.
public struct ConcurrencyKey: Hashable, Sendable {
    public enum Source: String, Sendable { case model, provider, defaultLimit = "default" }
    /// `model:<name>` or `provider:<name>`.
    public let name: String
    /// 0 means unlimited: such tasks hold no slot lease.
    public let limit: Int
    public let source: Source

    public var isLimited: Bool { limit > 0 }
}
