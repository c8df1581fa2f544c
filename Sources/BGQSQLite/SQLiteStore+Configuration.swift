import BGQCore
import CSQLite
import Foundation

// MARK: - Limits

extension SQLiteStore {
    /// The limits every worker uses, as stored.
    public func limits() throws -> Limits {
        try read { try loadLimits() }
    }

    func loadLimits() throws -> Limits {
        var limits = Limits()
        _ = try connection.query("SELECT scope, name, max_running FROM limits") { row in
            switch row.text(0) {
            case "model": limits.model[row.text(1)] = row.int(2)
            case "provider": limits.provider[row.text(1)] = row.int(2)
            default: limits.defaultLimit = row.int(2)
            }
        }
        return limits
    }

    /// Sets limits (0 = unlimited), all in one transaction. Takes effect for the next claim of every worker.
    public func setLimits(_ changes: [LimitChange]) throws {
        guard !changes.isEmpty else { return }
        try write {
            let upsert = try connection.cached("""
                INSERT INTO limits (scope, name, max_running, updated_at) VALUES (?, ?, ?, ?)
                ON CONFLICT (scope, name) DO UPDATE SET max_running = excluded.max_running, updated_at = excluded.updated_at
                """)
            for change in changes {
                try upsert.run([.text(change.scope.rawValue), .text(change.scope == .default ? "" : change.name), .int(change.value), .text(now.iso8601)])
            }
        }
    }

    /// Removes a limit; returns false when there was none.
    @discardableResult
    public func unsetLimit(_ scope: LimitScope, name: String) throws -> Bool {
        try write {
            try connection.run("DELETE FROM limits WHERE scope = ? AND name = ?", [.text(scope.rawValue), .text(scope == .default ? "" : name)]) > 0
        }
    }

    /// Per concurrency key: running (from the slot leases and running tasks), its limit, and pending.
    public func keyUsage() throws -> [KeyUsage] {
        try read {
            let limits = try loadLimits()
            var usage: [String: KeyUsage] = [:]
            _ = try connection.query("SELECT model_key, count(*) FROM tasks WHERE status = 'pending' GROUP BY model_key") { row in
                let key = limits.concurrencyKey(modelKey: row.text(0))
                usage[key.name, default: KeyUsage(key: key.name, running: 0, limit: key.limit, pending: 0)].pending += row.int(1)
            }
            _ = try connection.query("SELECT concurrency_key, model_key, count(*) FROM tasks WHERE status = 'running' GROUP BY concurrency_key, model_key") { row in
                let name = row.text(0)
                let limit = limits.concurrencyKey(modelKey: row.text(1)).limit
                usage[name, default: KeyUsage(key: name, running: 0, limit: limit, pending: 0)].running += row.int(2)
            }
            return usage.values.sorted { $0.key < $1.key }
        }
    }
}

// MARK: - Settings

extension SQLiteStore {
    public func settings() throws -> Settings {
        try read { try loadSettings() }
    }

    func loadSettings() throws -> Settings {
        let stored = try connection.query("SELECT key, value FROM settings") { ($0.text(0), $0.text(1)) }
        return try Settings.parsed(stored: Dictionary(stored, uniquingKeysWith: { $1 }))
    }

    /// Raw stored settings (key → value), including ones this bgq does not know.
    public func storedSettings() throws -> [String: String] {
        try read { Dictionary(uniqueKeysWithValues: try connection.query("SELECT key, value FROM settings") { ($0.text(0), $0.text(1)) }) }
    }

    /// Sets (or, for a nil value, removes) settings, all in one transaction, so a worker never reads
    /// half of a change. Returns the keys that had a stored value before.
    @discardableResult
    public func setSettings(_ changes: [SettingChange]) throws -> Set<String> {
        guard !changes.isEmpty else { return [] }
        return try write {
            let existing = try connection.cached("SELECT 1 FROM settings WHERE key = ?")
            let upsert = try connection.cached("""
                INSERT INTO settings (key, value, updated_at) VALUES (?, ?, ?)
                ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at
                """)
            let delete = try connection.cached("DELETE FROM settings WHERE key = ?")
            var hadValue: Set<String> = []
            for change in changes {
                if try existing.queryFirst([.text(change.key)], { $0.int(0) }) != nil { hadValue.insert(change.key) }
                if let value = change.value {
                    try upsert.run([.text(change.key), .text(value), .text(now.iso8601)])
                } else {
                    try delete.run([.text(change.key)])
                }
            }
            return hadValue
        }
    }
}

// MARK: - Agents

extension SQLiteStore {
    public func userAgents() throws -> [AgentDefinition] {
        try read {
            try connection.query("""
                SELECT name, preset, executable, extra_args, model, env, cwd, prompt_via, description, url, api_key_env FROM agents ORDER BY name
                """) { row in
                let name = row.text(0)
                // The CHECKs keep these JSON; a shape bgq cannot read would silently drop the agent's arguments.
                func decoded<T: Decodable>(_ type: T.Type, _ column: Int32, _ field: String) throws -> T {
                    guard let value = try? JSONDecoder().decode(type, from: Data(row.text(column).utf8)) else {
                        throw BGQError.database(.corrupt, "\(path): agent '\(name)' has an unreadable \(field) ('\(row.text(column).prefix(60))'); redefine it with `bgq agents add \(name) …` or remove it with `bgq agents remove \(name)`")
                    }
                    return value
                }
                return AgentDefinition(
                    name: name, preset: row.text(1), executable: row.optionalText(2),
                    extraArgs: try decoded([String].self, 3, "extra_args"),
                    model: row.optionalText(4),
                    environment: try decoded([String: String].self, 5, "env"),
                    workingDirectory: row.optionalText(6),
                    promptVia: try stored(AgentDefinition.PromptVia.self, row.text(7), in: "agents.prompt_via"),
                    summary: row.optionalText(8), isBuiltIn: false, url: row.optionalText(9), apiKeyEnv: row.optionalText(10))
            }
        }
    }

    public func saveAgent(_ agent: AgentDefinition) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        let args = String(decoding: try encoder.encode(agent.extraArgs), as: UTF8.self)
        let env = String(decoding: try encoder.encode(agent.environment), as: UTF8.self)
        try write {
            let stamp = now.iso8601
            try connection.run("""
                INSERT INTO agents (name, preset, executable, extra_args, model, env, cwd, prompt_via, description, url, api_key_env,
                                    created_at, updated_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (name) DO UPDATE SET preset = excluded.preset, executable = excluded.executable,
                    extra_args = excluded.extra_args, model = excluded.model, env = excluded.env, cwd = excluded.cwd,
                    prompt_via = excluded.prompt_via, description = excluded.description, url = excluded.url,
                    api_key_env = excluded.api_key_env, updated_at = excluded.updated_at
                """, [.text(agent.name), .text(agent.preset), .optionalText(agent.executable), .text(args), .optionalText(agent.model),
                      .text(env), .optionalText(agent.workingDirectory), .text(agent.promptVia.rawValue), .optionalText(agent.summary),
                      .optionalText(agent.url), .optionalText(agent.apiKeyEnv), .text(stamp), .text(stamp)])
        }
    }

    @discardableResult
    public func removeAgent(named name: String) throws -> Bool {
        try write { try connection.run("DELETE FROM agents WHERE name = ?", [.text(name)]) > 0 }
    }
}
