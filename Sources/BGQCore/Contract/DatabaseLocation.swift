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

    package static func absolute(_ path: String) -> String {
        if path.hasPrefix("/") { return path }
        if path.hasPrefix("~/") { return NSHomeDirectory() + String(path.dropFirst(1)) }
        return FileManager.default.currentDirectoryPath + "/" + path
    }
}
