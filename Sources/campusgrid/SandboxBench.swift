import ArgumentParser
import Foundation
import GridBench

/// `campusgrid sandbox-bench`: the launch overhead of each sandbox tier against a plain process start, as a ratio —
/// the `sandbox` section of `campusgrid bench` on its own, with `--runs` launches per tier. Wiring only.
struct SandboxBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sandbox-bench", abstract: "Measure each sandbox tier's launch overhead against a plain process start (bench --only sandbox).")

    @Option(help: "Launches per tier.") var runs = 10
    @Option(help: "Also write the report as JSON to this file.") var json: String?

    func run() async throws {
        guard (1...1000).contains(runs) else { throw ValidationError("--runs is 1–1000") }
        var sizes = BenchSizes.quick
        sizes.sandboxLaunches = runs
        let suite = BenchSuite(
            sizes: sizes, binary: try executablePath(), repository: BenchCommand.findRepository(), sections: [.sandbox], installReferences: false,
            log: { complain($0) })
        let report = await suite.run()
        if let json { try report.json().write(to: URL(fileURLWithPath: json)) }
        say(report.table())
    }
}
