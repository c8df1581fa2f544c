import Foundation
import Testing
@testable import BGQBackends
@testable import BGQCLI
@testable import BGQCore
@testable import BGQSQLite
@testable import BGQScheduler
@testable import BGQSystem

/// Every committed fuzz input (seeds, and each input that once crashed a target) runs through its
/// target in the normal suite, so a parser that regresses fails here, not only under Scripts/fuzz.
/// A target traps (fatalError) when its own checks fail, which fails the test run.
@Suite struct FuzzRegressionTests {
    static let seeds = repositoryRoot + "/Tests/Fuzz"

    @Test(arguments: FuzzTarget.allCases)
    func everyCommittedInputRunsThroughItsTarget(_ target: FuzzTarget) throws {
        let folder = Self.seeds + "/" + target.rawValue
        let names = try FileManager.default.contentsOfDirectory(atPath: folder).sorted()
        #expect(!names.isEmpty, "no seeds in \(folder)")
        for name in names {
            target.run(try Data(contentsOf: URL(fileURLWithPath: folder + "/" + name)))
        }
    }
}
