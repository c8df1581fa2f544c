import Foundation
import Testing
@testable import BGQBackends
@testable import BGQCore
@testable import BGQSQLite
@testable import BGQScheduler
@testable import BGQSystem

/// Maintenance expires tasks queued past their TTL by the worker's clock, not the wall clock.
@Suite(.serialized) struct MaintenanceTests {
    @Test func aTaskQueuedPastItsTTLEndsInErrorWhenTheClockSaysSo() throws {
        let rig = try SchedulerRig(settings: ["task_ttl_ms": "1800000"])
        let id = try rig.enqueue("never claimed")
        rig.clock.advance(milliseconds: 29 * 60_000)
        try rig.worker.maintenance.run()
        #expect(try rig.status(id) == .pending)

        rig.clock.advance(milliseconds: 2 * 60_000)
        try rig.worker.maintenance.run()
        let task = try #require(try rig.store.task(id: id))
        #expect(task.status == .error)
        #expect(task.error?.contains("Task timed out while queued") == true || task.error?.contains("timed out") == true, "\(task.error ?? "nil")")
    }

    @Test func contradictoryStoredSettingsKeepTheOnesTheWorkerRunsOn() throws {
        let rig = try SchedulerRig(settings: ["poll_interval_ms": "700"])
        try rig.worker.maintenance.run()
        #expect(rig.context.settings.pollIntervalMs == 700)
        // Written around `bgq settings set` (a heartbeat no shorter than the lease it must renew).
        try rig.store.connection.execute("""
            INSERT OR REPLACE INTO settings (key, value, updated_at)
            VALUES ('heartbeat_interval_ms', '20000', 'now'), ('lease_timeout_ms', '30000', 'now'), ('poll_interval_ms', '900', 'now')
            """)
        try rig.worker.maintenance.run()
        #expect(rig.context.settings.pollIntervalMs == 700, "kept the settings it ran on")
        #expect(rig.worker.maintenance.rejectedSettings != nil)
    }
}
