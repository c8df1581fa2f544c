import Testing

/// The suite must be able to fail: each test here runs conformance tests against a SQLite engine with
/// one guarantee broken on purpose, and `withKnownIssue` fails if the broken engine passes them.
/// (Guards written in Swift, not in the schema, were broken by hand once; the commit says which.)
@Suite struct MutationTests {
    /// Leases are forgotten as soon as they are written: every claim believes every slot is free.
    static let forgottenLeases = StoreFactory.sqlite(mutant: "leases forgotten", afterOpen: """
        CREATE TRIGGER mutant_forget_leases AFTER INSERT ON slot_leases BEGIN DELETE FROM slot_leases WHERE task_id = NEW.task_id; END;
        """)

    @Test func aClaimBlindToHeldSlotsFailsTheLimitTests() throws {
        withKnownIssue { try ClaimConformance().claimHonoursAModelLimit(Self.forgottenLeases) }
        withKnownIssue { try ClaimConformance().providerLimitIsSharedAcrossModels_issue3968(Self.forgottenLeases) }
        withKnownIssue { try ClaimConformance().loweredLimitAppliesToNewClaimsAtOnce(Self.forgottenLeases) }
        withKnownIssue { try TransitionConformance().finishByAnotherWorkerIsLostAndChangesNothing(Self.forgottenLeases) }
        withKnownIssue { try ConcurrencyConformance().concurrentClaimersNeverShareATaskOrExceedALimit(Self.forgottenLeases) }
    }

    @Test func aSlotKeptAfterItsTaskEndedFailsTheSlotTests() throws {
        let leaked = StoreFactory.sqlite(mutant: "slot kept", afterOpen: "DROP TRIGGER tasks_release_slot")
        withKnownIssue { try TransitionConformance().everyEndOfARunningTaskFreesItsSlotAtOnce(leaked) }
        withKnownIssue { try TransitionConformance().cancelOfARunningTaskIsARequestItsOwnerSees(leaked) }
        withKnownIssue { try ClaimConformance().priorityFirstThenFIFOWithinAKey(leaked) }
    }

    @Test func transitionsWithoutEventsFailTheHistoryTests() throws {
        let silent = StoreFactory.sqlite(mutant: "no transition events", afterOpen: "DROP TRIGGER tasks_event_on_transition")
        withKnownIssue { try HistoryConformance().everyTransitionWritesOneEventWithItsWorkerAttemptAndReason(silent) }
        withKnownIssue { try HistoryConformance().creationsAndTransitionsShareOneGrowingIdSequence(silent) }
        withKnownIssue { try WorkerConformance().adoptionKeepsTheAttemptAndCountsADeadOwnerNotAStoppedOne(silent) }
    }

    @Test func endingsWithoutOutboxRowsFailTheHookAndNoticeTests() throws {
        let noHooks = StoreFactory.sqlite(mutant: "no hooks", afterOpen: "DROP TRIGGER tasks_completion_hooks")
        withKnownIssue { try OutboxConformance().aTerminalTransitionQueuesEachHookOnce(noHooks) }
        withKnownIssue { try ConcurrencyConformance().concurrentHookClaimersRunEachHookOnce(noHooks) }
        let noNotices = StoreFactory.sqlite(mutant: "no notices", afterOpen: "DROP TRIGGER tasks_parent_notices")
        withKnownIssue { try OutboxConformance().aTaskUnderAParentOnAServerQueuesOneTaskAndOneBatchNotice(noNotices) }
    }
}
