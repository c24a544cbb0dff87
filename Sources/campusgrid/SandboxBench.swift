import ArgumentParser
import Foundation
import GridCore
import GridSandbox

/// `campusgrid sandbox-bench`: the launch overhead of each sandbox tier against a plain process start, as a ratio.
/// Each run starts the job interpreter on an empty script and waits for its end; the median of `--runs` is reported.
struct SandboxBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sandbox-bench", abstract: "Measure each sandbox tier's launch overhead against a plain process start.")

    @Option(help: "Runs per tier.") var runs = 10
    @Option(help: "Python interpreter (default python3, resolved once).") var python: String?
    @Option(help: "Docker-API engine socket for the OCI tier (skipped when none answers).") var engineSocket: String?
    @Option(help: "Container image for the OCI tier.") var image: String = OCIRunner.defaultImage
    @Option(help: "The bubblewrap binary.") var bwrap: String = "/usr/bin/bwrap"
    @Flag(help: "Print JSON.") var json = false

    func run() async throws {
        guard (1...1000).contains(runs) else { throw ValidationError("--runs is 1–1000") }
        let interpreter = try PythonLocator.resolve(python ?? "python3")
        let scratchRoot = FileManager.default.temporaryDirectory.appendingPathComponent("campusgrid-bench-\(UUID().uuidString.prefix(8))")
        defer { try? FileManager.default.removeItem(at: scratchRoot) }

        var results: [(name: String, ms: Double)] = []
        results.append(("plain", try median { try Self.plainStart(interpreter) }))
        var runners: [(String, any JobRunner)] = [("restricted", RestrictedRunner(python: interpreter))]
        var bc = BwrapRunner.Configuration(python: interpreter)
        bc.bwrapPath = bwrap
        do { runners.append(("bwrap", try BwrapRunner(configuration: bc))) } catch { complain("bwrap tier skipped: \(error)") }
        bc.limitSource = .rlimits
        do { runners.append(("bwrap-rootless", try BwrapRunner(configuration: bc))) } catch { complain("bwrap-rootless tier skipped: \(error)") }
        for socket in SandboxSelection.sockets(for: .auto, given: engineSocket, environment: ProcessInfo.processInfo.environment) {
            var oc = OCIRunner.Configuration(socket: socket)
            oc.image = image
            if let r = try? OCIRunner(configuration: oc) {
                runners.append(("oci", r))
                break
            }
        }
        if !runners.contains(where: { $0.0 == "oci" }) { complain("oci tier skipped: no engine with \(image) answered") }
        var n = 0
        for (name, runner) in runners {
            let ms = try await medianAsync {
                n += 1
                let scratch = scratchRoot.appendingPathComponent("\(n)")
                try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
                try Data("pass\n".utf8).write(to: scratch.appendingPathComponent("main.py"))
                let start = Date()
                let e = try runner.start(RunRequest(job: JobRef(jobId: JobID(n), attempt: 1), spec: JobSpec(name: "bench"), scratch: scratch, script: "main.py"))
                for await _ in e.output {}
                let report = await e.wait()
                guard report.outcome == .completed else { throw ValidationError("\(name): the empty job failed: \(report.reason ?? "?")") }
                return Date().timeIntervalSince(start) * 1000
            }
            results.append((name, ms))
        }
        let plain = results[0].ms
        if json {
            let rows = results.map { #"{"tier":"\#($0.name)","median_ms":\#(String(format: "%.1f", $0.ms)),"ratio":\#(String(format: "%.2f", $0.ms / plain))}"# }
            say("[" + rows.joined(separator: ",") + "]")
        } else {
            say("Launch overhead (median of \(runs) runs of an empty Python job):")
            for r in results {
                say("  \(r.name.padding(toLength: 11, withPad: " ", startingAt: 0)) \(String(format: "%8.1f", r.ms)) ms   \(String(format: "%6.2f", r.ms / plain))x plain")
            }
        }
    }

    private func median(_ body: () throws -> Double) throws -> Double {
        var samples: [Double] = []
        for _ in 0..<runs { samples.append(try body()) }
        return samples.sorted()[samples.count / 2]
    }

    private func medianAsync(_ body: () async throws -> Double) async throws -> Double {
        var samples: [Double] = []
        for _ in 0..<runs { samples.append(try await body()) }
        return samples.sorted()[samples.count / 2]
    }

    /// Milliseconds to start the interpreter on an empty program and see it end.
    static func plainStart(_ python: String) throws -> Double {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: python)
        p.arguments = ["-c", "pass"]
        let start = Date()
        try p.run()
        p.waitUntilExit()
        return Date().timeIntervalSince(start) * 1000
    }
}
