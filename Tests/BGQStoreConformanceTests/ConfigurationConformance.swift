import Testing
import BGQCore

/// Limits, settings and agents: shared by every worker and command through the store.
@Suite struct ConfigurationConformance {
    @Test(arguments: StoreFactory.all)
    func limitsRoundTripAndAreSeenByEveryConnection(_ factory: StoreFactory) throws {
        let f = try Fixture(factory)
        #expect(try f.store.limits() == Limits())
        try setLimit(f.store, .model, "anthropic/claude-opus-4-5", 2)
        try setLimit(f.store, .provider, "anthropic", 3)
        try setLimit(f.store, .default, "", 4)
        try setLimit(f.store, .model, "anthropic/claude-opus-4-5", 1)  // replaces
        let expected = Limits(model: ["anthropic/claude-opus-4-5": 1], provider: ["anthropic": 3], defaultLimit: 4)
        #expect(try f.another().limits() == expected)
        #expect(try f.store.unsetLimit(.provider, name: "anthropic"))
        #expect(try !f.store.unsetLimit(.provider, name: "anthropic"), "there was none left")
        #expect(try f.store.unsetLimit(.default, name: ""))
        #expect(try f.store.limits() == Limits(model: ["anthropic/claude-opus-4-5": 1]))
    }

    @Test(arguments: StoreFactory.all)
    func settingsRoundTripAndKeepKeysThisVersionDoesNotKnow(_ factory: StoreFactory) throws {
        let f = try Fixture(factory)
        #expect(try f.store.settings() == Settings())
        try setSetting(f.store, "poll_interval_ms", "500")
        try setSetting(f.store, "lease_timeout_ms", "60000")
        try setSetting(f.store, "from_a_newer_bgq", "yes")
        var expected = Settings()
        expected.pollIntervalMs = 500
        expected.leaseTimeoutMs = 60_000
        let reader = try f.another()
        #expect(try reader.settings() == expected)
        #expect(try reader.storedSettings() == ["poll_interval_ms": "500", "lease_timeout_ms": "60000", "from_a_newer_bgq": "yes"])
        #expect(try f.store.unsetSetting("poll_interval_ms"))
        #expect(try !f.store.unsetSetting("poll_interval_ms"))
        #expect(try reader.settings().pollIntervalMs == Settings().pollIntervalMs)
    }

    /// Issue 14 (point 4): a stored value a setting cannot take must be an error that names it, not a
    /// silent default (a worker would run with other timings than the ones a person set).
    @Test(arguments: StoreFactory.all)
    func aStoredSettingOutOfRangeIsAnErrorNotASilentDefault(_ factory: StoreFactory) throws {
        let f = try Fixture(factory)
        try setSetting(f.store, "poll_interval_ms", "1")  // below its range (50 ms and up)
        let error = #expect(throws: BGQError.self) { _ = try f.store.settings() }
        if case .usage(let text) = error { #expect(text.contains("poll_interval_ms")) } else {
            Issue.record("expected .usage naming the setting, got \(String(describing: error))")
        }
    }

    @Test(arguments: StoreFactory.all)
    func agentsRoundTripAndReplaceByName(_ factory: StoreFactory) throws {
        let f = try Fixture(factory)
        #expect(try f.store.userAgents().isEmpty)
        let review = AgentDefinition(name: "review", preset: "command", executable: "./review.sh", extraArgs: ["--model", "{model}", "{prompt}"],
                                     model: "acme/m", environment: ["MODE": "strict"], workingDirectory: "/src", promptVia: .stdin,
                                     summary: "reviews a diff")
        let smol = AgentDefinition(name: "smol", preset: "openai", model: "local/smollm2", url: "http://127.0.0.1:8080/v1", apiKeyEnv: "LOCAL_KEY")
        try f.store.saveAgent(smol)
        try f.store.saveAgent(review)
        #expect(try f.another().userAgents() == [review, smol])
        var changed = review
        changed.extraArgs = []
        changed.promptVia = .argv
        try f.store.saveAgent(changed)
        #expect(try f.store.userAgents() == [changed, smol])
        #expect(try f.store.removeAgent(named: "review"))
        #expect(try !f.store.removeAgent(named: "review"))
        #expect(try f.store.userAgents() == [smol])
    }
}
