import BGQCore
import Foundation

/// The worker's log: one line per state change on stderr, readable or JSON.
public final class WorkerLog {
    public enum Format: String, Sendable { case text, json }
    let format: Format
    let clock: Clock
    var workerID = ""

    public init(format: Format, clock: Clock) {
        self.format = format
        self.clock = clock
    }

    public func event(_ name: String, task: String? = nil, _ message: String, fields: [String: String] = [:]) {
        let time = clock.now().iso8601
        let line: String
        switch format {
        case .text:
            // Reasons, errors and hook commands come from users and agents: escaped for the terminal.
            line = "\(time) \(workerID) \(task.map { "\($0) " } ?? "")\(Render.safe(message))\n"
        case .json:
            var object: [String: String] = fields
            object["time"] = time
            object["worker"] = workerID
            object["event"] = name
            object["message"] = message
            if let task { object["task"] = task }
            let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data()
            line = String(decoding: data, as: UTF8.self) + "\n"
        }
        FileHandle.standardError.write(Data(line.utf8))
    }
}
