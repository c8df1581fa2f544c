import Foundation
import Testing
@testable import BGQBackends
@testable import BGQCore
@testable import BGQSQLite
@testable import BGQScheduler
@testable import BGQSystem

/// The notice sender tells the parent OpenCode session (a fake server over a real socket) once.
@Suite(.serialized) struct NoticeSenderTests {
    @Test func aFinishedTaskIsToldToItsParentSessionOnce() throws {
        let rig = try SchedulerRig()
        let server = try FakeServer("fake_opencode.py", directory: rig.db.directory)
        defer { server.stop() }
        let parent = try #require(try server.request("POST", "/session", body: ["title": "lead"])?["id"]?.string)
        let id = try rig.store.enqueue([NewTask(description: "d", prompt: "the answer", agent: "noop", parentID: parent)])[0].id
        try rig.worker.claimer.claimAndStart()
        try rig.worker.poller.pollDue()
        #expect(try rig.status(id) == .completed)
        // The row an OpenCode task's transition writes (noop tasks have no parent server of their own).
        try rig.store.connection.run("""
            INSERT INTO parent_notices (task_id, kind, parent_id, server, state, attempts, created_at)
            VALUES (?, 'task', ?, ?, 'pending', 0, ?)
            """, [.text(id), .text(parent), .text(OpenCodeServer(url: "http://127.0.0.1:\(server.port)", directory: nil).json.serialized),
                  .text(rig.clock.now().iso8601)])

        try rig.worker.notices.deliver()
        try rig.worker.notices.deliver()
        #expect(try rig.store.parentNotices(taskID: id).map(\.state) == [.sent])
        let held = try OpenCodeBackendTests.notices(server, parent: parent).filter { $0.text.contains("Task ID: \(id)\n") }
        #expect(held.count == 1, "\(held)")
        #expect(held.first?.text.hasPrefix("[BACKGROUND TASK COMPLETED]") == true)
        #expect(held.first?.noReply == true, "a per-task notice does not wake the parent")
    }
}
