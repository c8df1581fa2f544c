import BGQCore
import BGQSystem
import Foundation

/// Reaps exited child processes and tells whoever waits for them: a hook's end is recorded, a
/// session is polled at once (fast hand-off), and every backend made so far hears of the exit.
struct ChildExits {
    let context: WorkerContext
    let hooks: HookRunner

    func collect() {
        let reaped = context.options.ownsAllChildren
            ? ProcessSupport.reapChildren()
            : ProcessSupport.reapChildren(among: context.sessions.values.compactMap(\.task.run.pid) + Array(hooks.running.keys))
        guard !reaped.isEmpty else { return }
        // One index per batch of exits, not a scan of every session per exit (1,000 sessions are polled).
        var byPid: [Int32: ActiveSession] = [:]
        for session in context.sessions.values { if let pid = session.task.run.pid { byPid[pid] = session } }
        let made = context.backends.made
        for (pid, exit) in reaped {
            for backend in made { backend.childExited(pid: pid, exit: exit) }
            if let running = hooks.running.removeValue(forKey: pid) {
                hooks.finish(running.hook, exit: exit)
                continue
            }
            if let session = byPid[pid] {
                session.exitStatus = exit
                session.nextPollMonotonic = 0
            }
        }
    }
}
