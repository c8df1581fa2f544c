import BGQCore
import Foundation
import Synchronization

/// SIGINT / SIGTERM arrivals, counted by a signal handler and read by the worker loop.
public enum StopSignals {
    static let count = Atomic<Int>(0)
    static let lastSignal = Atomic<Int32>(0)
    /// A self-pipe: signal handlers write a byte so the sleeping loop wakes at once (an agent exited,
    /// a stop was asked). See `WakeUp`.
    static let wakeWriteFD = Atomic<Int32>(-1)

    /// Installs the handlers. The loop polls `received` at every tick.
    public static func install() {
        let handler: @convention(c) (Int32) -> Void = { signal in
            StopSignals.lastSignal.store(signal, ordering: .relaxed)
            StopSignals.count.add(1, ordering: .relaxed)
            WakeUp.signalSafeWake()
        }
        var action = sigaction()
        action.__sigaction_handler.sa_handler = handler
        sigemptyset(&action.sa_mask)
        action.sa_flags = 0
        sigaction(SIGINT, &action, nil)
        sigaction(SIGTERM, &action, nil)
        // An agent exiting wakes the loop, so its slot is handed off without waiting for the next tick.
        let childHandler: @convention(c) (Int32) -> Void = { _ in WakeUp.signalSafeWake() }
        var childAction = sigaction()
        childAction.__sigaction_handler.sa_handler = childHandler
        sigemptyset(&childAction.sa_mask)
        childAction.sa_flags = SA_RESTART | SA_NOCLDSTOP
        sigaction(SIGCHLD, &childAction, nil)
        signal(SIGPIPE, SIG_IGN)
        // A parent may have started us with these blocked (the mask is inherited): unblock them, or
        // a stop request would never arrive.
        var unblock = sigset_t()
        sigemptyset(&unblock)
        sigaddset(&unblock, SIGINT)
        sigaddset(&unblock, SIGTERM)
        pthread_sigmask(SIG_UNBLOCK, &unblock, nil)
    }

    public static var received: Int { count.load(ordering: .relaxed) }
    public static var last: Int32 { lastSignal.load(ordering: .relaxed) }

    package static func name(_ signal: Int32) -> String {
        switch signal {
        case SIGINT: "SIGINT"
        case SIGTERM: "SIGTERM"
        default: "signal \(signal)"
        }
    }
}

/// Sleeping until a deadline or until a signal handler wakes the loop.
public enum WakeUp {
    nonisolated(unsafe) static var readFD: Int32 = -1

    /// Creates the self-pipe (non-blocking, close-on-exec) once.
    package static func prepare() {
        guard readFD < 0 else { return }
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { return }
        for fd in fds {
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            _ = fcntl(fd, F_SETFD, fcntl(fd, F_GETFD) | FD_CLOEXEC)
        }
        readFD = fds[0]
        StopSignals.wakeWriteFD.store(fds[1], ordering: .relaxed)
    }

    /// Async-signal-safe: one write(2) to the pipe.
    package static func signalSafeWake() {
        let fd = StopSignals.wakeWriteFD.load(ordering: .relaxed)
        guard fd >= 0 else { return }
        var byte: UInt8 = 1
        _ = write(fd, &byte, 1)
    }

    /// Waits up to `milliseconds`, returning early when woken; drains pending wake-ups.
    package static func sleep(milliseconds: Int64) {
        guard readFD >= 0 else {
            usleep(useconds_t(max(0, milliseconds) * 1000))
            return
        }
        var descriptor = pollfd(fd: readFD, events: Int16(POLLIN), revents: 0)
        _ = poll(&descriptor, 1, Int32(max(0, min(milliseconds, 60_000))))
        var buffer = [UInt8](repeating: 0, count: 64)
        while read(readFD, &buffer, buffer.count) > 0 {}
    }
}
