import BGQCore
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Starting, checking and signalling agent processes.
public enum ProcessSupport {
    /// Spawns `arguments` in a new process group (so it outlives its worker and can be signalled as a
    /// whole), with stdin, stdout and stderr redirected to files. Returns the pid (= the group id).
    public static func spawn(arguments: [String], environment: [String: String], stdinPath: String?,
                             stdoutPath: String, stderrPath: String) throws -> Int32 {
        guard let program = arguments.first else { throw BGQError.failure("empty command") }
        var fileActions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&fileActions)
        defer { posix_spawn_file_actions_destroy(&fileActions) }
        posix_spawn_file_actions_addopen(&fileActions, 0, stdinPath ?? "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&fileActions, 1, stdoutPath, O_WRONLY | O_CREAT | O_APPEND, 0o600)
        posix_spawn_file_actions_addopen(&fileActions, 2, stderrPath, O_WRONLY | O_CREAT | O_APPEND, 0o600)
        // Every other descriptor is closed in the child, whatever its close-on-exec flag: one opened
        // without O_CLOEXEC after `markInheritedDescriptorsCloseOnExec` (by a library) must not reach agents.
        if let closeFrom = closeFromAction { _ = closeFrom(&fileActions, 3) }

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        posix_spawnattr_setpgroup(&attributes, 0)
        // The child starts with default signal handling and nothing blocked, whatever the worker set up.
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGINT, SIGTERM, SIGHUP, SIGPIPE, SIGCHLD, SIGQUIT] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))

        let argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        let envp: [UnsafeMutablePointer<CChar>?] = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, program, &fileActions, &attributes, argv, envp)
        guard rc == 0 else {
            throw BGQError.failure("cannot start \(program): \(String(cString: strerror(rc)))")
        }
        return pid
    }

    /// glibc 2.34's `posix_spawn_file_actions_addclosefrom_np`, looked up at run time so bgq still runs
    /// (relying on close-on-exec alone) where the C library is older.
    nonisolated(unsafe) static let closeFromAction: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32)? = {
        // RTLD_DEFAULT is a null handle on glibc: search the process's libraries.
        guard let symbol = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np") else { return nil }
        return unsafeBitCast(symbol, to: (@convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32).self)
    }()

    /// Marks every open descriptor from 3 up close-on-exec, so agents inherit nothing of the worker's
    /// (pipes or sockets its parent passed down would otherwise stay open in every agent, and the
    /// parent would wait for them). SQLite opens its own files with O_CLOEXEC already.
    public static func markInheritedDescriptorsCloseOnExec() {
        guard let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd") else { return }
        for entry in entries {
            guard let fd = Int32(entry), fd > 2 else { continue }
            let flags = fcntl(fd, F_GETFD)
            if flags >= 0 { _ = fcntl(fd, F_SETFD, flags | FD_CLOEXEC) }
        }
    }

    /// The process's start time (clock ticks since boot, /proc/PID/stat field 22) and state letter.
    public static func stat(pid: Int32) -> (start: Int64, state: Character)? {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = text.lastIndex(of: ")") else { return nil }
        // Fields after "pid (comm)": state is field 3, starttime field 22.
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 19, let start = Int64(fields[19]), let state = fields[0].first else { return nil }
        return (start, state)
    }

    /// Whether the process that was started as (pid, start time) still runs (a zombie does not count).
    public static func isRunning(pid: Int32, start: Int64?) -> Bool {
        guard let info = stat(pid: pid) else { return false }
        if let start, info.start != start { return false }  // the pid was reused
        return info.state != "Z" && info.state != "X"
    }

    /// Sends a signal to a whole process group.
    public static func signalGroup(_ pgid: Int32, _ signal: Int32) {
        guard pgid > 1 else { return }
        kill(-pgid, signal)
    }

    /// Reaps every exited child without blocking.
    public static func reapChildren() -> [(pid: Int32, exit: ChildExit)] {
        var reaped: [(Int32, ChildExit)] = []
        while true {
            var status: Int32 = 0
            let pid = waitpid(-1, &status, WNOHANG)
            guard pid > 0 else { break }
            // WIFEXITED / WEXITSTATUS / WTERMSIG, spelled out (they are macros in C).
            let signal = status & 0x7F
            reaped.append((pid, signal == 0 ? .exited((status >> 8) & 0xFF) : .signaled(signal)))
        }
        return reaped
    }

    /// Every process id in /proc, read with readdir: a process that ends during the listing is simply
    /// missing (Foundation's directory listing failed as a whole in that case, on a busy machine).
    public static func processIDs() -> [Int32] {
        guard let directory = opendir("/proc") else { return [] }
        defer { closedir(directory) }
        var pids: [Int32] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if let pid = Int32(name) { pids.append(pid) }
        }
        return pids
    }

    /// Reaps only these children, if they exited.
    public static func reapChildren(among pids: [Int32]) -> [(pid: Int32, exit: ChildExit)] {
        pids.compactMap { pid in
            var status: Int32 = 0
            guard waitpid(pid, &status, WNOHANG) == pid else { return nil }
            let signal = status & 0x7F
            return (pid, signal == 0 ? .exited((status >> 8) & 0xFF) : .signaled(signal))
        }
    }

    /// Finds `name` on PATH (or checks an explicit path); nil when it cannot be run.
    public static func resolveExecutable(_ name: String, path: String?) -> String? {
        if name.contains("/") { return access(name, X_OK) == 0 ? name : nil }
        for directory in (path ?? "/usr/local/bin:/usr/bin:/bin").split(separator: ":") {
            let candidate = "\(directory)/\(name)"
            if access(candidate, X_OK) == 0 { return candidate }
        }
        return nil
    }

    public static var hostName: String {
        var buffer = [CChar](repeating: 0, count: 256)
        gethostname(&buffer, buffer.count)
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
