import Foundation
import Testing
@testable import BGQBackends
@testable import BGQCLI
@testable import BGQCore
@testable import BGQSQLite
@testable import BGQScheduler
@testable import BGQSystem

/// A worker that dies between starting an agent and recording it must not make the task run twice:
/// found by chaos (a task ran twice after its worker was killed in that instant).
@Suite(.serialized) struct UnrecordedStartTests {
    func scenario(agentFinishesFirst: Bool) throws {
        let db = TempDatabase()
        let store = try db.store()
        try store.setSetting("poll_interval_ms", "100")
        let marker = db.directory + "/marker"
        let seconds = agentFinishesFirst ? "0" : "1"
        _ = try store.enqueue([NewTask(description: "once", prompt: "echo run >> \(marker); sleep \(seconds); echo done", agent: "shell")])
        // Worker A claims and starts the agent, then dies before writing the session start.
        let deadWorker = try store.registerWorker(WorkerRegistration(name: "a", host: ProcessSupport.hostName, pid: 1, maxSessions: 1))
        let claimed = try #require(try store.claimTasks(workerID: deadWorker, capacity: 1).first)
        let (agent, preset) = try AgentRegistry(userAgents: []).require("shell")
        let exec = ExecBackend()
        _ = try exec.start(StartRequest(task: claimed, agent: agent, preset: preset, model: nil, sessionID: Identifier.newSessionID(),
                                        resumeExternalID: nil, runsDirectory: store.location.defaultRunsDirectory(), host: ProcessSupport.hostName))
        if agentFinishesFirst {
            #expect(eventually { FileManager.default.fileExists(atPath: RunFolders.directory(runsDirectory: store.location.defaultRunsDirectory(), task: claimed) + "/exit") })
        }
        _ = try store.setWorkerState(deadWorker, to: .stopped, reason: "killed in the test")

        // Worker B reaps A and must adopt the agent that is already running (or done), not start it again.
        var options = WorkerOptions(name: "b")
        options.wakeIntervalMs = 10
        options.ownsAllChildren = false  // this test process has other tests' children too
        let worker = Worker(store: store, options: options, backends: .standard(store: store))
        try worker.register()
        try worker.reapDeadWorkers()
        var timers = Worker.Timers(now: SystemClock().monotonicMilliseconds(), settings: try store.settings(), reapIntervalMs: 1000)
        #expect(try eventually(timeout: 20) {
            _ = try worker.tick(&timers)
            return try store.task(id: claimed.id)?.status.isTerminal == true
        })
        let task = try #require(try store.task(id: claimed.id))
        #expect(task.status == .completed)
        #expect(task.result == "done")
        #expect(task.attempt == 1, "not run again")
        let runs = try String(contentsOfFile: marker, encoding: .utf8).split(separator: "\n")
        #expect(runs.count == 1, "the agent ran \(runs.count) times")
        #expect(try store.events(taskID: claimed.id).contains { $0.reason?.hasPrefix("adopted") == true })
    }

    @Test func aStartedButUnrecordedAgentIsAdoptedNotRunAgain() throws {
        try scenario(agentFinishesFirst: false)
    }

    @Test func anUnrecordedAgentThatAlreadyFinishedIsFoundByItsExitFile() throws {
        try scenario(agentFinishesFirst: true)
    }
}
