import Foundation

/// Where the database lives: `--db PATH`, else `$BGQ_DB`, else `$XDG_DATA_HOME/bgq/bgq.db`,
/// else `~/.local/share/bgq/bgq.db`.
public enum DatabaseLocation {
    public static func resolve(explicit: String?, environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        if let explicit, !explicit.isEmpty { return absolute(explicit) }
        if let fromEnvironment = environment["BGQ_DB"], !fromEnvironment.isEmpty { return absolute(fromEnvironment) }
        if let xdg = environment["XDG_DATA_HOME"], xdg.hasPrefix("/") {
            return xdg + "/bgq/bgq.db"
        }
        let home = environment["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory()
        return home + "/.local/share/bgq/bgq.db"
    }

    static func absolute(_ path: String) -> String {
        if path.hasPrefix("/") { return path }
        if path.hasPrefix("~/") { return NSHomeDirectory() + String(path.dropFirst(1)) }
        return FileManager.default.currentDirectoryPath + "/" + path
    }
}

/// Creating files and folders that only their owner can read: prompts and results are private.
enum PrivateFiles {
    /// Creates `directory` (and missing parents) with mode 0700.
    static func makeDirectory(_ directory: String) throws {
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else { throw BGQError.database(.cannotOpen, "\(directory) exists but is not a directory") }
            return
        }
        let parent = (directory as NSString).deletingLastPathComponent
        if !parent.isEmpty, parent != directory { try makeDirectory(parent) }
        if mkdir(directory, 0o700) != 0 && errno != EEXIST {
            throw BGQError.database(.cannotOpen, "cannot create directory \(directory): \(String(cString: strerror(errno)))")
        }
    }

    /// Creates an empty file with mode 0600 unless it exists. Returns true when it created it.
    @discardableResult
    static func createFile(_ path: String) throws -> Bool {
        let fd = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0o600)
        if fd >= 0 {
            close(fd)
            return true
        }
        if errno == EEXIST { return false }
        throw BGQError.database(.cannotOpen, "cannot create \(path): \(String(cString: strerror(errno)))")
    }
}
