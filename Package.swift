// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "bgq",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "bgq", targets: ["bgq"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // The HTTP backends' client (SwiftNIO, NIOSSL). Its manifest needs a Swift 6.2 or later toolchain.
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
    ],
    targets: [
        // The system's SQLite3, found through pkg-config (Debian: libsqlite3-dev).
        .systemLibrary(
            name: "CSQLite",
            path: "Sources/CSQLite",
            pkgConfig: "sqlite3",
            providers: [.apt(["libsqlite3-dev"]), .brew(["sqlite"])]
        ),
        // Turns Migrations/*.sql into Swift source at build time, so the binary carries its schema.
        .executableTarget(name: "bgq-embed-migrations", path: "Sources/EmbedMigrationsTool"),
        .plugin(
            name: "EmbedMigrations",
            capability: .buildTool(),
            dependencies: ["bgq-embed-migrations"]
        ),
        // The layers, each a target so that the compiler keeps every import pointing down:
        // BGQCore (domain types, the store contract, the session-backend contract)
        //   <- BGQSystem (processes, signals, private files)
        //   <- BGQSQLite (the SQLite engine) / BGQBackends (agent sessions) / BGQScheduler (the worker)
        //   <- BGQCLI (commands, MCP server) <- bgq.
        .target(name: "BGQCore"),
        .target(name: "BGQSystem", dependencies: ["BGQCore"]),
        .target(name: "BGQSQLite", dependencies: ["BGQCore", "BGQSystem", "CSQLite"], plugins: ["EmbedMigrations"]),
        .target(
            name: "BGQBackends",
            dependencies: ["BGQCore", "BGQSystem", .product(name: "AsyncHTTPClient", package: "async-http-client")]
        ),
        .target(name: "BGQScheduler", dependencies: ["BGQCore", "BGQSystem"]),
        .target(
            name: "BGQCLI",
            dependencies: [
                "BGQCore", "BGQSystem", "BGQSQLite", "BGQBackends", "BGQScheduler",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // The tiny `bgq` entry point.
        .executableTarget(name: "bgq", dependencies: ["BGQCLI"]),
        // libFuzzer targets, one per parser of outside input (Scripts/fuzz builds it with -sanitize=fuzzer,
        // -DBGQ_FUZZ and its own scratch path); a plain build makes a stub that says how to fuzz.
        .executableTarget(name: "bgq-fuzz", dependencies: ["BGQCLI"], path: "Sources/BGQFuzz"),
        // The store conformance suite: written against the contract (BGQCore) only; each engine runs it by
        // handing in a factory (StoreFactory+SQLite.swift is the one file that knows SQLite).
        .testTarget(name: "BGQStoreConformanceTests", dependencies: ["BGQCore", "BGQSQLite"]),
        // Tests run the built `bgq` binary as real processes, so they depend on it.
        .testTarget(
            name: "BGQKitTests",
            dependencies: ["BGQCore", "BGQSystem", "BGQSQLite", "BGQBackends", "BGQScheduler", "BGQCLI", "bgq"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
