import Foundation

/// One OpenCode server (`opencode serve`) and project directory: how to reach it and what went wrong.
///
/// API facts: ../shared/reference/backends.md. Basic auth when the server has a password
/// (OPENCODE_SERVER_PASSWORD, user `opencode` or OPENCODE_SERVER_USERNAME); the project scope is the
/// `x-opencode-directory` header, and GET /session/status answers for that directory only.
public struct OpenCodeServer: Hashable, Sendable {
    public var url: String
    public var directory: String?

    public init(url: String, directory: String?) {
        var trimmed = url
        while trimmed.hasSuffix("/") { trimmed.removeLast() }
        self.url = trimmed
        self.directory = directory
    }

    public var json: JSONValue {
        var object: [String: JSONValue] = ["url": .string(url)]
        if let directory { object["directory"] = .string(directory) }
        return .object(object)
    }

    public init?(json: JSONValue?) {
        guard let url = json?["url"]?.string else { return nil }
        self.init(url: url, directory: json?["directory"]?.string)
    }
}
