import Foundation

// Usage: bgq-embed-migrations OUTPUT.swift 0001_a.sql 0002_b.sql ...
// Writes `enum EmbeddedMigrations { static let all: [(name: String, sql: String)] }`.
let arguments = CommandLine.arguments.dropFirst()
guard let outputPath = arguments.first else {
    FileHandle.standardError.write(Data("usage: bgq-embed-migrations OUTPUT FILE...\n".utf8))
    exit(2)
}
var source = """
// Generated from Migrations/*.sql by the EmbedMigrations plugin. Do not edit.
enum EmbeddedMigrations {
    static let all: [(name: String, sql: String)] = [

"""
for path in arguments.dropFirst() {
    let url = URL(fileURLWithPath: path)
    guard let sql = try? String(contentsOf: url, encoding: .utf8) else {
        FileHandle.standardError.write(Data("cannot read migration \(path) as UTF-8\n".utf8))
        exit(1)
    }
    // A raw string delimiter longer than any run of '#' in the SQL keeps the text verbatim.
    var hashes = "#"
    while sql.contains("\"" + hashes) || sql.contains(hashes + "\"") { hashes += "#" }
    let name = url.deletingPathExtension().lastPathComponent
    source += "        (\(name.debugDescription), \(hashes)\"\"\"\n\(sql)\n\"\"\"\(hashes)),\n"
}
source += "    ]\n}\n"
do {
    try source.write(toFile: outputPath, atomically: true, encoding: .utf8)
} catch {
    FileHandle.standardError.write(Data("cannot write \(outputPath): \(error)\n".utf8))
    exit(1)
}
