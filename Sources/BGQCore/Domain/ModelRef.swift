
/// A model as `provider/model` (OpenCode's form: `anthropic/claude-opus-4-5`).
/// The model part may itself contain slashes (`openrouter/anthropic/claude-3.5`).
public struct ModelRef: Hashable, Sendable, CustomStringConvertible {
    public let provider: String
    public let modelID: String

    public var description: String { "\(provider)/\(modelID)" }

    /// Parses `provider/model`; throws a usage error that shows the expected form.
    public init(parsing text: String) throws {
        guard let slash = text.firstIndex(of: "/") else {
            throw BGQError.usage("model '\(text)' is not of the form provider/model (for example anthropic/claude-sonnet-4-5)")
        }
        let provider = String(text[..<slash])
        let modelID = String(text[text.index(after: slash)...])
        guard Self.isValidPart(provider), Self.isValidPart(modelID, allowSlash: true) else {
            throw BGQError.usage("model '\(text)' is not of the form provider/model: both parts must be non-empty, without spaces or control characters")
        }
        self.provider = provider
        self.modelID = modelID
    }

    package static func isValidPart(_ part: String, allowSlash: Bool = false) -> Bool {
        guard !part.isEmpty, part.count <= 200 else { return false }
        return part.unicodeScalars.allSatisfy { scalar in
            scalar.value > 0x20 && scalar.value != 0x7F && (allowSlash || scalar != "/")
        } && !part.hasSuffix("/") && !part.hasPrefix("/")
    }
}
