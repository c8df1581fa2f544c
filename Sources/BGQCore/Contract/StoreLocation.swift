import Foundation

/// Where the data lives: `--db`, else `$BGQ_DB`, else `$XDG_DATA_HOME/bgq/bgq.db`, else
/// `~/.local/share/bgq/bgq.db`. A plain path or `sqlite:PATH` is a SQLite file (the embedded default);
/// `postgres://…` or `postgresql://…` names a PostgreSQL server, for teams that outgrow one machine.
public enum StoreLocation: Sendable, Hashable, CustomStringConvertible {
    case sqlite(path: String)
    case postgres(url: String)

    /// Reads what a person wrote: `~` and relative paths become absolute.
    public init(parsing text: String) throws {
        let lower = text.lowercased()
        if lower.hasPrefix("postgres://") || lower.hasPrefix("postgresql://") {
            guard let url = URL(string: text), url.host != nil else {
                throw BGQError.usage("not a PostgreSQL URL: '\(Self.redacted(text))'; write postgres://USER@HOST:PORT/DATABASE")
            }
            self = .postgres(url: text)
        } else if lower.hasPrefix("sqlite:") {
            var path = String(text.dropFirst("sqlite:".count))
            if path.hasPrefix("//") { path.removeFirst(2) }
            guard !path.isEmpty else { throw BGQError.usage("no file in '\(text)'; write sqlite:PATH, for example sqlite:./bgq.db") }
            self = .sqlite(path: Paths.absolute(path))
        } else if let scheme = text.range(of: "://"), !text[..<scheme.lowerBound].contains("/") {
            throw BGQError.usage("unknown database '\(Self.redacted(text))': give a file path, sqlite:PATH or postgres://…")
        } else {
            self = .sqlite(path: Paths.absolute(text))
        }
    }

    /// The location commands use: `--db`, else `$BGQ_DB`, else the per-user default file.
    public static func resolve(explicit: String?, environment: [String: String] = ProcessInfo.processInfo.environment) throws -> StoreLocation {
        if let explicit, !explicit.isEmpty { return try StoreLocation(parsing: explicit) }
        if let fromEnvironment = environment["BGQ_DB"], !fromEnvironment.isEmpty { return try StoreLocation(parsing: fromEnvironment) }
        if let xdg = environment["XDG_DATA_HOME"], xdg.hasPrefix("/") { return .sqlite(path: xdg + "/bgq/bgq.db") }
        return .sqlite(path: Paths.home(environment) + "/.local/share/bgq/bgq.db")
    }

    /// For messages: a SQLite file's path as it is (so every message names the file), a URL without its password.
    public var description: String {
        switch self {
        case .sqlite(let path): path
        case .postgres(let url): Self.redacted(url)
        }
    }

    /// Where a worker on this host keeps its exec sessions' files unless told otherwise: beside a
    /// SQLite file (`<file>.runs`, private to its owner); for a server, in the user's state folder.
    public func defaultRunsDirectory(environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        switch self {
        case .sqlite(let path):
            return path + ".runs"
        case .postgres(let text):
            let state = environment["XDG_STATE_HOME"].flatMap { $0.hasPrefix("/") ? $0 : nil } ?? Paths.home(environment) + "/.local/state"
            let url = URL(string: text)
            let host: String = url?.host ?? "server"
            let port: String = url?.port.map { String($0) } ?? "5432"
            let database: String = url?.path.split(separator: "/").first.map { String($0) } ?? "bgq"
            let name = "\(host)-\(port)-\(database)".filter { $0.isLetter || $0.isNumber || "-._".contains($0) }
            return state + "/bgq/runs/" + name
        }
    }

    /// `text` with the password of a URL's user part replaced by `***`.
    static func redacted(_ text: String) -> String {
        guard let scheme = text.range(of: "://"), let at = text[scheme.upperBound...].firstIndex(of: "@") else { return text }
        let userInfo = text[scheme.upperBound..<at]
        guard let colon = userInfo.firstIndex(of: ":") else { return text }
        return String(text[..<colon]) + ":***" + String(text[at...])
    }
}

/// Paths as a person types them.
public enum Paths {
    /// `path` made absolute: `~/x` under the home folder, a relative path under the current directory.
    public static func absolute(_ path: String) -> String {
        if path.hasPrefix("/") { return path }
        if path.hasPrefix("~/") { return NSHomeDirectory() + String(path.dropFirst(1)) }
        return FileManager.default.currentDirectoryPath + "/" + path
    }

    static func home(_ environment: [String: String]) -> String {
        environment["HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory()
    }
}
