import Foundation
import GridClient
import GridCore

/// Job latency and throughput through a real local grid, each against running the same Python script directly.
enum JobBench {
    static let script = "pass\n"
    /// Any tier: the bench measures the tier its workers chose (they take its jobs even when restricted).
    static let spec = JobSpec(name: "bench-empty", cpus: 1, ramGb: 0, minutes: 1, minTier: .restricted)

    static func submitRequest() -> API.SubmitRequest {
        API.SubmitRequest(
            spec: spec, script: API.FileUpload(name: "empty.py", contentBase64: Data(script.utf8).base64EncodedString()), inputs: [])
    }

    /// Submit → start and submit → completion of `count` empty jobs, one at a time on the idle grid.
    /// Times are the manager's own timestamps of each transition (its wall clock), so polling does not blur them.
    static func latency(grid: LocalGrid, count: Int, python: String, scratch: String, log: (String) -> Void) async throws -> [Figure] {
        var start = Figure(
            id: "job.submit_to_start", title: "Empty job: submit → start", unit: "ms", better: .lower,
            workload: "\(count) empty Python jobs, one at a time, idle grid of a manager + 2 workers (sandbox \(grid.tier)); started = the manager assigned it")
        var done = Figure(
            id: "job.submit_to_completion", title: "Empty job: submit → completion", unit: "ms", better: .lower,
            workload: "the same \(count) jobs; completion = the manager recorded the end")
        var toStart: [Double] = []
        var toDone: [Double] = []
        // One warm-up job: first-use costs (interpreter page cache, SQLite pages) are not what we report.
        _ = try await runOne(grid: grid)
        for i in 0..<count {
            let job = try await runOne(grid: grid)
            guard job.state == .completed, let s = job.startedAt, let f = job.finishedAt else {
                throw BenchError("bench job \(job.id) ended \(job.state.rawValue): \(job.reason ?? "no reason")\n\(grid.logs)")
            }
            toStart.append((s - job.submittedAt) * 1000)
            toDone.append((f - job.submittedAt) * 1000)
            if i % 10 == 9 { log("  latency: \(i + 1)/\(count) jobs") }
        }
        start.record(toStart)
        start.setTarget(50, better: .lower, description: "p50 under 50 ms")
        done.record(toDone)
        // Reference: the same script run directly, no grid: what the job itself costs.
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        let path = scratch + "/empty.py"
        try Data(script.utf8).write(to: URL(fileURLWithPath: path))
        var direct: [Double] = []
        for _ in 0..<count { direct.append(try PlainSpawn.run(python, ["-u", path], directory: scratch) * 1000) }
        done.add(Reference(name: "python3 empty.py run directly (posix_spawn + wait)", samples: direct))
        return [start, done]
    }

    /// Submits one job and polls (every 5 ms, at most 60 s) until it ends.
    static func runOne(grid: LocalGrid, request: API.SubmitRequest = submitRequest()) async throws -> API.JobStatus {
        do {
            return try await runOne(client: grid.client, request: request)
        } catch let e as BenchError {
            throw BenchError("\(e)\n\(grid.logs)")
        }
    }

    /// Submits one job through `client` and polls (every 5 ms, at most 60 s) until it ends.
    static func runOne(client: GridClient, request: API.SubmitRequest = submitRequest()) async throws -> API.JobStatus {
        let submitted = try await client.submit(request).job
        let deadline = Stats.now() + 60
        while Stats.now() < deadline {
            let job = try await client.job(submitted.id)
            if job.state.isFinal { return job }
            try await Task.sleep(for: .milliseconds(5))
        }
        throw BenchError("bench job \(submitted.id) did not finish in 60 s")
    }

    /// `count` empty jobs submitted at once (8 submitters), through 2 one-slot workers; repeated `repeats` times.
    /// A sample is jobs ÷ (last end − first submission), by the manager's clock.
    static func throughput(
        grid: LocalGrid, count: Int, repeats: Int, python: String, scratch: String, log: (String) -> Void
    ) async throws -> Figure {
        var figure = Figure(
            id: "job.throughput", title: "Job throughput", unit: "jobs/s", better: .higher,
            workload: "\(count) empty Python jobs submitted at once by 8 clients, 2 workers × 1 slot (sandbox \(grid.tier)); \(repeats) runs")
        var samples: [Double] = []
        var failed = 0
        for r in 0..<repeats {
            let before = try await grid.jobCounts()
            let doneBefore = ["completed", "failed", "cancelled", "timed_out"].reduce(0) { $0 + (before[$1] ?? 0) }
            let next = Counter()
            var ids: [JobID] = []
            try await withThrowingTaskGroup(of: [JobID].self) { group in
                for _ in 0..<8 {
                    group.addTask {
                        var mine: [JobID] = []
                        while next.take() < count { mine.append(try await grid.client.submit(submitRequest()).job.id) }
                        return mine
                    }
                }
                for try await part in group { ids += part }
            }
            // Wait for all to end: bounded by a generous time (half a second a job, at least two minutes).
            let deadline = Stats.now() + max(120, Double(count) * 0.5)
            var ended = 0
            while Stats.now() < deadline {
                let counts = try await grid.jobCounts()
                ended = ["completed", "failed", "cancelled", "timed_out"].reduce(0) { $0 + (counts[$1] ?? 0) } - doneBefore
                if ended >= count { break }
                try await Task.sleep(for: .milliseconds(200))
            }
            guard ended >= count else { throw BenchError("only \(ended) of \(count) throughput jobs ended in time\n\(grid.logs)") }
            let wanted = Set(ids)
            var first = Double.infinity
            var last = 0.0
            var seen = 0
            var offset = 0
            // The list is newest first; page through this run's jobs (bounded: count/1000 + 2 pages).
            for _ in 0..<(count / 1000 + 2) {
                let page = try await grid.client.jobsPage(offset: offset, limit: 1000)
                for job in page where wanted.contains(job.id) {
                    seen += 1
                    first = min(first, job.submittedAt)
                    last = max(last, job.finishedAt ?? 0)
                    if job.state != .completed { failed += 1 }
                }
                offset += page.count
                if page.count < 1000 || seen >= count { break }
            }
            guard seen == count, last > first else { throw BenchError("could not read back the throughput jobs (\(seen) of \(count))") }
            samples.append(Double(count) / (last - first))
            log("  throughput run \(r + 1)/\(repeats): \(String(format: "%.1f", samples.last!)) jobs/s")
        }
        figure.record(samples)
        figure.detail["jobs_not_completed"] = Double(failed)
        // Reference: the same script run directly, 2 at a time (the grid's concurrency), same count.
        let path = scratch + "/empty.py"
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        try Data(script.utf8).write(to: URL(fileURLWithPath: path))
        var direct: [Double] = []
        for _ in 0..<repeats {
            let seconds = try PlainSpawn.runMany(python, ["-u", path], directory: scratch, count: count, concurrency: 2)
            direct.append(Double(count) / seconds)
        }
        figure.add(Reference(name: "python3 empty.py run directly, 2 at a time", samples: direct))
        return figure
    }
}

extension GridClient {
    /// One page of the caller's jobs, newest first.
    func jobsPage(offset: Int, limit: Int) async throws -> [API.JobStatus] {
        try await jobs(mine: true, limit: limit, offset: offset).jobs
    }
}
