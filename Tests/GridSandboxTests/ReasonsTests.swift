import Foundation
import GridCore
import Testing

@testable import GridSandbox

@Suite struct ReasonsTests {
    let spec = JobSpec(name: "j", cpus: 1, ramGb: 2, minutes: 3)
    let limits = RunnerLimits(maxFileBytes: 8 << 20, maxProcesses: 50)

    func failed(code: Int32?) -> RunReport {
        RunReport(outcome: .failed, exitCode: code, runtimeMs: 10, peakMemoryKb: 1, cpuSeconds: 0.1, reason: "exited with code \(code ?? -1)")
    }

    @Test func oomKillSaysOutOfMemoryWithTheLimit() {
        let r = Reasons.explain(failed(code: 137), usage: .init(oomKilled: true), spec: spec, limits: limits)
        #expect(r.reason == "out of memory (limit 2 GB)")
        #expect(r.signal == 9)
    }

    @Test func pidsLimitSaysTooManyProcesses() {
        let r = Reasons.explain(failed(code: 1), usage: .init(pidsLimitHit: true), spec: spec, limits: limits)
        #expect(r.reason == "too many processes (limit 50)")
    }

    @Test func fileSizeSignalSaysOutputTooLarge() {
        let r = Reasons.explain(failed(code: 128 + 25), usage: .init(), spec: spec, limits: limits)
        #expect(r.reason == "output too large (a file reached the 8 MB limit)")
    }

    @Test func aFileAtTheSizeLimitSaysOutputTooLarge() {
        let r = Reasons.explain(failed(code: 1), usage: .init(fileLimitHit: true), spec: spec, limits: limits)
        #expect(r.reason == "output too large (a file reached the 8 MB limit)")
    }

    @Test func timeoutSaysTimeLimitReached() {
        let t = RunReport(outcome: .timedOut, exitCode: nil, signal: 9, runtimeMs: 1, peakMemoryKb: 1, cpuSeconds: 1)
        #expect(Reasons.explain(t, usage: .init(), spec: spec, limits: limits).reason == "time limit reached (3 min)")
    }

    @Test func anOrdinaryFailureKeepsItsExitCode() {
        let r = Reasons.explain(failed(code: 2), usage: .init(), spec: spec, limits: limits)
        #expect(r.reason == "exited with code 2")
    }

    @Test func cgroupMeasurementsReplaceTheWrappersOwn() {
        let ok = RunReport(outcome: .completed, exitCode: 0, runtimeMs: 1, peakMemoryKb: 1, cpuSeconds: 0.01)
        let r = Reasons.explain(ok, usage: .init(cpuSeconds: 4.5, peakMemoryBytes: 10 << 20), spec: spec, limits: limits)
        #expect(r.cpuSeconds == 4.5 && r.peakMemoryKb == 10 << 10)
        #expect(r.reason == nil)
    }
}

/// The one place a spec's minutes become the seconds a runner enforces.
@Suite struct RunRequestTests {
    @Test(arguments: [(1, 60.0), (3, 180.0), (1440, 86_400.0)])
    func aRunsLimitIsItsSpecsMinutes(minutes: Int, seconds: Double) {
        let r = RunRequest(job: JobRef(jobId: 1, attempt: 1), spec: JobSpec(name: "j", minutes: minutes), scratch: URL(fileURLWithPath: "/tmp"), script: "main.py")
        #expect(r.timeLimitSeconds == seconds)
    }
}

/// A run's time limit at its boundaries: whatever a caller puts in `RunRequest.timeLimitSeconds`, starting the run
/// never traps. A limit of zero or less stops the run at once; one too large to reach (or not a number) leaves the run
/// to end by itself.
@Suite struct RunTimeLimitBoundaryTests {
    /// A run that ends by itself after about 2 s unless it is stopped first.
    static func run(limit: Double) async throws -> RunReport {
        let execution = try JobExecution.inProcess(deadline: limit) { _, stopped in
            for _ in 0..<200 {
                if stopped() { return 137 }
                usleep(10_000)
            }
            return 0
        }
        for await _ in execution.output {}
        return await execution.wait()
    }

    @Test(arguments: [0, -1, -Double.infinity, -Double.greatestFiniteMagnitude])
    func aLimitOfZeroOrLessStopsTheRunAtOnce(limit: Double) async throws {
        let r = try await Self.run(limit: limit)
        #expect(r.outcome == .timedOut)
    }

    @Test(arguments: [Double.nan, .infinity, .greatestFiniteMagnitude, 1e300, Double(Int64.max)])
    func aLimitTooLargeToReachLetsTheRunEnd(limit: Double) async throws {
        let r = try await Self.run(limit: limit)
        #expect(r.outcome == .completed)
    }
}
