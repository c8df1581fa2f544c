import Foundation
import Testing
@testable import BGQBackends
@testable import BGQCLI
@testable import BGQCore
@testable import BGQSQLite
@testable import BGQScheduler
@testable import BGQSystem

@Test func binaryEnqueuesAndListsOnAFreshDatabase() throws {
    let db = TempDatabase()
    let enqueued = try BGQBinary.run(["enqueue", "--agent", "shell", "echo hi"], db: db)
    #expect(enqueued.status == 0)
    #expect(enqueued.stdout.contains("Background task launched."))
    #expect(enqueued.stdout.contains("Session ID: (pending)"))
    let listed = try BGQBinary.run(["list"], db: db)
    #expect(listed.stdout.contains("pending"))
}
