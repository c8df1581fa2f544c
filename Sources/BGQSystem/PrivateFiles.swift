import BGQCore
import Foundation

/// Creating files and folders that only their owner can read: prompts and results are private.
package enum PrivateFiles {
    /// Creates `directory` (and missing parents) with mode 0700.
    package static func makeDirectory(_ directory: String) throws {
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
    package static func createFile(_ path: String) throws -> Bool {
        let fd = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0o600)
        if fd >= 0 {
            close(fd)
            return true
        }
        if errno == EEXIST { return false }
        throw BGQError.database(.cannotOpen, "cannot create \(path): \(String(cString: strerror(errno)))")
    }
}
