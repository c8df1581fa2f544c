import ArgumentParser

public struct BGQCommand: ParsableCommand {
    public init() {}
    public static func runAsMain() { main() }
}
