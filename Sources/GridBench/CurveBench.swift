import Foundation
import GridClient
import GridCore

/// How costs grow with the work (issue 17): memory ops/s by number of peers, file get MB/s by file size, and an empty
/// job's submit → start by the number of jobs already queued. Placements by workers × queued jobs are in
/// `SchedulerBench.curve`. Every point is measured in this run; a point that fails ends its curve with the reason.
enum CurveBench {
    /// Memory set+get ops/s against grids of `peers` workers each (a fresh local grid per point), the load spread over
    /// every peer.
    static func memoryByPeers(binary: String, peers: [Int], sizes: BenchSizes, log: (String) -> Void) async -> Curve {
        var curve = Curve(
            id: "curve.memory_peers", title: "Memory set/get by peers", unit: "ops/s", better: .higher, x: "peers",
            workload:
                "\(sizes.kvClients) clients × \(sizes.kvOpsPerClient) ops (SET then GET, 100 bytes), clients spread over every peer; a fresh grid per point; \(sizes.kvRepeats) runs")
        var series = Curve.Series(name: "set+get, two copies per key")
        for n in peers {
            do {
                let grid = try await LocalGrid.start(binary: binary, workers: n)
                defer { grid.stop() }
                guard grid.client.token != nil else { throw BenchError("the bench grid gave no token") }
                let driver = GridPeerDriver(ports: grid.peerPorts, manager: grid.client)
                var samples: [Double] = []
                for _ in 0..<sizes.kvRepeats {
                    samples.append(
                        try await KVLoad.run(clients: sizes.kvClients, opsPerClient: sizes.kvOpsPerClient, timeLimit: 60) { c in
                            try await driver.memoryConnection(c)
                        }.opsPerSecond)
                }
                log("  memory, \(n) peers: \(String(format: "%.0f", Stats.median(samples) ?? 0)) ops/s")
                series.points.append(Curve.Point(x: Double(n), samples: samples))
            } catch {
                curve.notMeasured = "at \(n) peers: \(error)"
                break
            }
        }
        curve.series = [series]
        return curve
    }

    /// File get MB/s by file size, through the shared grid's peers: each file stored once, then read back `repeats`
    /// times (saved to a file, as `get-file` does).
    static func fileGetBySize(bytes: [Int], repeats: Int, scratch: String, log: (String) -> Void) async -> Curve {
        var curve = Curve(
            id: "curve.file_get", title: "File get by size", unit: "MB/s", better: .higher, x: "bytes",
            workload: "one file per size stored through a peer, then read back through the other peer and saved; \(repeats) runs per size")
        guard let peers = PeerServices.current else {
            curve.notMeasured = PeerBench.unavailable
            return curve
        }
        var series = Curve.Series(name: "get, saved to a file")
        let dir = scratch + "/file-curve"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for size in bytes {
            do {
                try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
                let name = "curve-\(size).bin"
                let path = dir + "/" + name
                try PeerBench.writeBlob(path: path, bytes: size)
                try await peers.fileUpload(path: path, as: name)
                try? FileManager.default.removeItem(atPath: path)
                let samples = try await peers.fileGet(name: name, bytes: size, repeats: repeats, scratch: dir)
                log("  file get, \(size >> 20) MiB: \(String(format: "%.0f", Stats.median(samples) ?? 0)) MB/s")
                series.points.append(Curve.Point(x: Double(size), samples: samples))
            } catch {
                curve.notMeasured = "at \(size) bytes: \(error)"
                break
            }
        }
        curve.series = [series]
        return curve
    }

    /// An empty job's submit → start p50 with `queued` jobs already waiting (jobs asking for 256 CPUs: valid, never
    /// placeable on this grid, so every scheduling pass considers them all). One fresh grid; the queue grows between
    /// points.
    static func submitToStartByQueue(binary: String, queued levels: [Int], count: Int, log: (String) -> Void) async -> Curve {
        var curve = Curve(
            id: "curve.submit_to_start", title: "Empty job submit → start by queue length", unit: "ms", better: .lower, x: "queued jobs",
            workload: "\(count) empty jobs one at a time on a manager + 2 workers, with that many unplaceable jobs (256 CPUs) pending")
        var series = Curve.Series(name: "submit → start")
        do {
            let grid = try await LocalGrid.start(binary: binary, workers: 2)
            defer { grid.stop() }
            var waiting = 0
            let blocker = API.SubmitRequest(
                spec: JobSpec(name: "bench-blocker", cpus: 256, ramGb: 0, minutes: 1, minTier: .restricted),
                script: API.FileUpload(name: "blocker.py", contentBase64: Data("pass\n".utf8).base64EncodedString()), inputs: [])
            for level in levels.sorted() {
                let add = max(0, level - waiting)
                let next = Counter()
                let client = grid.client
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for _ in 0..<8 {
                        group.addTask {
                            while next.take() < add { _ = try await client.submit(blocker) }
                        }
                    }
                    try await group.waitForAll()
                }
                waiting += add
                _ = try await JobBench.runOne(grid: grid)  // warm-up at this queue length
                var samples: [Double] = []
                for _ in 0..<count {
                    let job = try await JobBench.runOne(grid: grid)
                    guard job.state == .completed, let s = job.startedAt else {
                        throw BenchError("bench job \(job.id) ended \(job.state.rawValue): \(job.reason ?? "no reason")")
                    }
                    samples.append((s - job.submittedAt) * 1000)
                }
                log("  submit → start with \(waiting) queued: p50 \(String(format: "%.1f", Stats.median(samples) ?? 0)) ms")
                series.points.append(Curve.Point(x: Double(waiting), samples: samples))
            }
        } catch {
            curve.notMeasured = "after \(series.points.count) points: \(error)"
        }
        curve.series = [series]
        return curve
    }
}
