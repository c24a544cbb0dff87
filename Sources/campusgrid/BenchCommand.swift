import ArgumentParser
import Foundation
import GridBench

/// `campusgrid bench`: the performance figures of DESIGN §11 with reference tools run in the same session.
/// Wiring only; the bench itself is in GridBench.
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure CampusGrid against reference tools (Dask, Ray, Redis, nginx) on this machine, in one run.")

    @Flag(help: "Smaller sizes: finishes in under 5 minutes on 2 cores.") var quick = false
    @Flag(help: .hidden) var tiny = false
    @Option(help: "Also write the report as JSON to this file.") var json: String?
    @Option(help: "Sections to run, comma-separated: jobs, scheduler, sandbox, tasks, memory, files, tls, verification, env, curves, ha (default: all).") var only: String?
    @Option(help: "The repository checkout with scripts/bench-reference (default: found from here).") var repository: String?
    @Flag(help: "Do not install missing reference tools; report them as not run.") var noInstall = false

    func run() async throws {
        let env = ProcessInfo.processInfo.environment
        let tinyMode = tiny || env["CAMPUSGRID_BENCH_TINY"] == "1"
        var sizes: BenchSizes = tinyMode ? .tiny : quick ? .quick : .full
        // For profiling one part: CAMPUSGRID_BENCH_SCHEDULER=WORKERS,JOBS.
        if let wj = env["CAMPUSGRID_BENCH_SCHEDULER"]?.split(separator: ",").compactMap({ Int($0) }), wj.count == 2 {
            sizes.schedulerWorkers = wj[0]
            sizes.schedulerJobs = wj[1]
        }
        var sections = BenchSuite.Section.allCases
        if let only {
            sections = try only.split(separator: ",").map { name in
                guard let s = BenchSuite.Section(rawValue: name.trimmingCharacters(in: .whitespaces)) else {
                    throw ValidationError("--only takes \(BenchSuite.Section.allCases.map(\.rawValue).joined(separator: ", ")) (got \(name))")
                }
                return s
            }
        }
        let suite = BenchSuite(
            sizes: sizes, binary: try executablePath(), repository: repository ?? Self.findRepository(), sections: sections,
            installReferences: !noInstall && !tinyMode, log: { complain($0) })
        let report = await suite.run()
        if let json {
            try report.json().write(to: URL(fileURLWithPath: json))
        }
        say(report.table())
    }

    /// The checkout holding scripts/bench-reference: the current folder or one above it, else the one above the binary.
    static func findRepository() -> String? {
        var candidates = [URL(fileURLWithPath: FileManager.default.currentDirectoryPath)]
        if let exe = try? executablePath() { candidates.append(URL(fileURLWithPath: exe).deletingLastPathComponent()) }
        for start in candidates {
            var dir = start
            for _ in 0..<6 {
                if FileManager.default.fileExists(atPath: dir.appendingPathComponent("scripts/bench-reference").path) { return dir.path }
                dir = dir.deletingLastPathComponent()
            }
        }
        return nil
    }
}
