import Foundation
import GridClient
import GridCore

/// What verification costs the grid at the manager's default rates, measured from a run: the CPU-seconds workers gave
/// to check runs, per 100 jobs.
enum VerificationBench {
    /// About a tenth of a CPU-second, the same output every run (so honest checks agree).
    static let script = "print(sum(i * i for i in range(400_000)))\n"

    static func request(_ i: Int) -> API.SubmitRequest {
        API.SubmitRequest(
            spec: JobSpec(name: "bench-verify-\(i)", cpus: 1, ramGb: 0, minutes: 1, minTier: .restricted),
            script: API.FileUpload(name: "busy.py", contentBase64: Data(script.utf8).base64EncodedString()), inputs: [])
    }

    /// `jobs` jobs through a fresh grid of three one-slot workers of three owners, with the manager's defaults
    /// (probation until 5 agreeing results, spot checks of 5%, the fund's 5%). Extra CPU = what the workers report
    /// having given, less what the jobs themselves used: the check runs (and any third runs).
    static func cost(binary: String, jobs: Int, log: (String) -> Void) async throws -> Figure {
        var figure = Figure(
            id: "verification.extra_cpu_per_100_jobs", title: "Verification: extra CPU per 100 jobs", unit: "CPU-s", better: .lower,
            workload: "\(jobs) jobs of about 0.1 CPU-s from one submitter, a fresh grid of 3 one-slot workers of 3 owners (each starts on probation), "
                + "manager defaults: probation until 5 agreeing results, spot checks of 5%")
        let grid = try await LocalGrid.start(binary: binary, workers: 3, distinctOwners: true)
        defer { grid.stop() }
        var ids: [JobID] = []
        for i in 0..<jobs { ids.append(try await grid.client.submit(request(i)).job.id) }
        let wanted = Set(ids)
        // Every job ended and every check decided: bounded by a generous time (two seconds a job, at least three minutes).
        let deadline = Stats.now() + max(180, Double(jobs) * 2)
        var listed: [API.JobStatus] = []
        while true {
            listed = try await grid.client.jobs(mine: true, limit: max(100, jobs)).jobs.filter { wanted.contains($0.id) }
            let settled = listed.count == jobs && listed.allSatisfy { $0.state.isFinal && $0.verification?.state != .unverified }
            if settled { break }
            guard Stats.now() < deadline else {
                throw BenchError("verification bench: \(listed.filter { $0.state.isFinal }.count) of \(jobs) jobs ended, some checks undecided\n\(grid.logs)")
            }
            try await Task.sleep(for: .milliseconds(250))
        }
        let jobCPU = listed.reduce(0.0) { $0 + ($1.cpuSeconds ?? 0) }
        let given = try await grid.client.workers().workers.reduce(0.0) { $0 + $1.cpuHoursGiven * 3600 }
        let extra = max(0, given - jobCPU)
        figure.record([extra / Double(max(1, jobs)) * 100])
        figure.detail["jobs_checked"] = Double(listed.filter { $0.verification != nil }.count)
        figure.detail["jobs_contradicted"] = Double(listed.filter { $0.verification?.state == .contradicted }.count)
        figure.detail["job_cpu_seconds"] = jobCPU
        figure.detail["check_cpu_seconds"] = extra
        figure.detail["extra_cpu_share"] = jobCPU > 0 ? extra / jobCPU : 0
        log(String(format: "  verification: %d of %d jobs checked, %.2f extra CPU-s (%.0f%% of the jobs' own)", Int(figure.detail["jobs_checked"] ?? 0), jobs, extra, (figure.detail["extra_cpu_share"] ?? 0) * 100))
        return figure
    }
}
