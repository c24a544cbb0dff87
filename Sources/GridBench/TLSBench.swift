import Foundation
import GridClient
import GridCore

/// What TLS costs (issue 11): the same work on a grid whose manager, grid protocol and peer ports speak TLS 1.3,
/// against the plain-text grid of the same run. Each figure's reference is its plain-text twin, so each ratio is
/// TLS over plain text; the target is within 1.3× (for throughputs, at least 1/1.3 of it).
enum TLSBench {
    static let slower = 1.3

    static func run(plain: LocalGrid, tls: LocalGrid, sizes: BenchSizes, scratch: String, log: (String) -> Void) async throws -> [Figure] {
        let grids = "an idle manager + 2 workers each, one with TLS 1.3 on every port and one in plain text, started by this run"
        var out: [Figure] = []

        var job = Figure(
            id: "tls.job_submit_to_start", title: "TLS: empty job submit → start", unit: "ms", better: .lower,
            workload: "\(sizes.latencyJobs) empty jobs, one at a time; \(grids)")
        job.record(try await startLatencies(tls, count: sizes.latencyJobs))
        job.add(Reference(name: "the same, plain text", samples: try await startLatencies(plain, count: sizes.latencyJobs), targetRatio: slower))
        out.append(job)
        log("  tls: jobs done")

        let secure = GridPeerDriver(ports: tls.peerPorts, manager: tls.client, tls: tls.peerTLS)
        let clear = GridPeerDriver(ports: plain.peerPorts, manager: plain.client)
        var trip = Figure(
            id: "tls.task_round_trip", title: "TLS: function task round trip", unit: "ms", better: .lower,
            workload: "\(sizes.roundTrips) sequential x*x tasks on one link; \(grids)")
        trip.record(try await secure.taskRoundTrips(sizes.roundTrips))
        trip.add(Reference(name: "the same, plain text", samples: try await clear.taskRoundTrips(sizes.roundTrips), targetRatio: slower))
        out.append(trip)
        log("  tls: tasks done")

        var memory = Figure(
            id: "tls.memory_ops", title: "TLS: memory set/get", unit: "ops/s", better: .higher,
            workload: "\(sizes.kvClients) clients × \(sizes.kvOpsPerClient) ops (SET then GET, 100 bytes), \(sizes.kvRepeats) runs; \(grids)")
        memory.record(try await kv(secure, sizes))
        memory.add(Reference(name: "the same, plain text", samples: try await kv(clear, sizes), targetRatio: 1 / slower))
        out.append(memory)
        log("  tls: memory done")

        let blob = scratch + "/tls-blob.bin"
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        try PeerBench.writeBlob(path: blob, bytes: sizes.fileBytes)
        defer { try? FileManager.default.removeItem(atPath: blob) }
        var get = Figure(
            id: "tls.file_get", title: "TLS: file get", unit: "MB/s", better: .higher,
            workload: "a \(sizes.fileBytes >> 20) MiB file put once, then got \(fileGetRuns(sizes)) times through the other peer and saved, TLS and plain text runs taking turns; \(grids)")
        let gets = try await fileGets(secure, clear, path: blob, sizes: sizes, scratch: scratch)
        get.record(gets.first)
        get.add(Reference(name: "the same, plain text", samples: gets.second, targetRatio: 1 / slower))
        out.append(get)
        log("  tls: files done")
        return out
    }

    /// Submit → start of `count` empty jobs, one at a time (after one warm-up), from the manager's own timestamps.
    static func startLatencies(_ grid: LocalGrid, count: Int) async throws -> [Double] {
        _ = try await JobBench.runOne(grid: grid)
        var out: [Double] = []
        for _ in 0..<max(1, count) {
            let job = try await JobBench.runOne(grid: grid)
            guard job.state == .completed, let s = job.startedAt else { throw BenchError("bench job \(job.id) ended \(job.state.rawValue)") }
            out.append((s - job.submittedAt) * 1000)
        }
        return out
    }

    static func kv(_ driver: GridPeerDriver, _ sizes: BenchSizes) async throws -> [Double] {
        var out: [Double] = []
        for _ in 0..<max(1, sizes.kvRepeats) {
            let r = try await KVLoad.run(clients: sizes.kvClients, opsPerClient: sizes.kvOpsPerClient, timeLimit: 60) { c in
                try await driver.memoryConnection(c)
            }
            out.append(r.opsPerSecond)
        }
        return out
    }

    /// Twice the files section's runs: a saved download's speed varies with the disk's write-back by more than TLS costs
    /// (a full run at ee5a840 spread 367–717 MB/s over TLS and 705–1,025 plain, run after run).
    static func fileGetRuns(_ sizes: BenchSizes) -> Int { max(1, sizes.fileRepeats) * 2 }

    /// Downloads of the same file through `first` and `second` (MB/s), each warmed up once, then taking turns run by run,
    /// so that a slow spell of the disk falls on both sides alike (before, all of one side's runs came before the other's).
    static func fileGets(_ first: GridPeerDriver, _ second: GridPeerDriver, path: String, sizes: BenchSizes, scratch: String) async throws
        -> (first: [Double], second: [Double])
    {
        for driver in [first, second] {
            _ = try await driver.filePut(path: path, repeats: 1)
            _ = try await driver.downloads(name: "blob.bin", bytes: sizes.fileBytes, repeats: 1, scratch: scratch, warmUp: false)  // the warm-up
        }
        var out: (first: [Double], second: [Double]) = ([], [])
        for _ in 0..<fileGetRuns(sizes) {
            out.first += try await first.downloads(name: "blob.bin", bytes: sizes.fileBytes, repeats: 1, scratch: scratch, warmUp: false)
            out.second += try await second.downloads(name: "blob.bin", bytes: sizes.fileBytes, repeats: 1, scratch: scratch, warmUp: false)
        }
        return out
    }
}
