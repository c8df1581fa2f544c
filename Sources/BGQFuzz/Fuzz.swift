import BGQCLI
import Foundation

// `bgq-fuzz TARGET [libFuzzer flags and corpus folders]`, built by Scripts/fuzz.
//
// Built with -sanitize=address and libFuzzer's coverage flags, linked with libFuzzer's no-main
// runtime, and run through LLVMFuzzerRunDriver. Not `-sanitize=fuzzer`: SwiftPM passes -Xswiftc
// flags to the build-time tool of the EmbedMigrations plugin too, and libFuzzer's own `main` then
// collides with that tool's.

/// The target of this process; a global because libFuzzer's callback is a C function.
nonisolated(unsafe) var selectedTarget = FuzzTarget.json

#if BGQ_FUZZ
@_silgen_name("LLVMFuzzerRunDriver")
func runFuzzerDriver(_ argc: UnsafeMutablePointer<CInt>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                     _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> CInt
#endif

@main enum BGQFuzz {
    static func main() {
        let names = FuzzTarget.allCases.map(\.rawValue).joined(separator: ", ")
        guard CommandLine.arguments.count >= 2, let target = FuzzTarget(rawValue: CommandLine.arguments[1]) else {
            fail("usage: bgq-fuzz TARGET [libFuzzer options] [corpus folders]; targets: \(names)")
        }
        selectedTarget = target
        #if BGQ_FUZZ
        // libFuzzer reads its options from argv: hand it everything but the target's name.
        var arguments = [CommandLine.unsafeArgv[0]] + (2..<Int(CommandLine.argc)).map { CommandLine.unsafeArgv[$0] }
        var argc = CInt(arguments.count)
        let status = arguments.withUnsafeMutableBufferPointer { buffer -> CInt in
            var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = buffer.baseAddress
            return runFuzzerDriver(&argc, &argv) { start, count in
                selectedTarget.run(start.map { Data(bytes: $0, count: count) } ?? Data())
                return 0
            }
        }
        exit(status)
        #else
        fail("bgq-fuzz was built without libFuzzer: build and run it with Scripts/fuzz")
        #endif
    }

    static func fail(_ message: String) -> Never {
        FileHandle.standardError.write(Data((message + "\n").utf8))
        exit(2)
    }
}
