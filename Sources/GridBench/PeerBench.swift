import Foundation
import GridCore
import GridSandbox

/// The peer-service figures — function tasks, distributed memory, distributed files — with their references
/// (Dask and Ray; redis-server; nginx). The references always run when installed; the peers' side plugs in through
/// `PeerServices` once this build has them, and is reported as not measured until then (never estimated).
enum PeerBench {
    static let unavailable = "not measured: peer services not available"

    // MARK: Function tasks

    static func tasks(sizes: BenchSizes, references: ReferenceTools, log: (String) -> Void) async throws -> [Figure] {
        var throughput = Figure(
            id: "tasks.throughput", title: "Function tasks (x*x)", unit: "tasks/s", better: .higher,
            workload: "\(sizes.tasks) calls of def main(x): return x*x submitted at once, 2 worker processes; \(sizes.taskRepeats) runs, warm pools")
        var roundTrip = Figure(
            id: "tasks.round_trip", title: "Function task round trip", unit: "ms", better: .lower,
            workload: "\(sizes.roundTrips) sequential calls of main(x), warm pools")
        if let peers = PeerServices.current {
            throughput.record(try await peers.taskThroughput(tasks: sizes.tasks, repeats: sizes.taskRepeats))
            roundTrip.record(try await peers.taskRoundTrips(sizes.roundTrips))
        } else {
            throughput.skip(unavailable)
            roundTrip.skip(unavailable)
        }
        for framework in ["ray", "dask"] {
            switch references.pythonTasks(framework, sizes: sizes, log: log) {
            case .success(let run):
                // Targets (issue 17): throughput at least 3× Ray's, round-trip p50 at most a quarter of Ray's.
                throughput.add(Reference(name: run.name, samples: run.tasksPerSecond, targetRatio: framework == "ray" ? 3.0 : nil))
                roundTrip.add(Reference(name: run.name, samples: run.roundTripMs, targetRatio: framework == "ray" ? 0.25 : nil))
            case .failure(let why):
                throughput.add(.missing(framework, because: why.description, targetRatio: framework == "ray" ? 3.0 : nil))
                roundTrip.add(.missing(framework, because: why.description, targetRatio: framework == "ray" ? 0.25 : nil))
            }
        }
        return [throughput, roundTrip]
    }

    // MARK: Distributed memory

    /// Set+get alternating (`memory.ops`, the figure of earlier runs), then SET and GET apart. Our SET keeps two
    /// copies before it answers, so its fair reference is Redis with a replica and `WAIT 1 0` after each SET; plain
    /// Redis (one copy) is shown beside it for scale.
    static func memory(sizes: BenchSizes, references: ReferenceTools, scratch: String, log: (String) -> Void) async throws -> [Figure] {
        let load = "\(sizes.kvClients) concurrent clients × \(sizes.kvOpsPerClient) ops of a 100-byte value, one request in flight per client; \(sizes.kvRepeats) runs; same Swift load generator for all"
        var mixed = Figure(id: "memory.ops", title: "Memory set/get", unit: "ops/s", better: .higher, workload: load + " (SET then GET, alternating)")
        var set = Figure(id: "memory.set", title: "Memory SET (ours: two copies)", unit: "ops/s", better: .higher, workload: load + " (SET only)")
        var get = Figure(
            id: "memory.get", title: "Memory GET", unit: "ops/s", better: .higher, workload: load + " (GET only, of keys stored first, untimed)")
        func measure(_ mix: KVLoad.Mix, _ connect: @escaping @Sendable (Int) async throws -> any KVConnection) async throws -> [Double] {
            var samples: [Double] = []
            for _ in 0..<sizes.kvRepeats {
                samples.append(
                    try await KVLoad.run(clients: sizes.kvClients, opsPerClient: sizes.kvOpsPerClient, mix: mix, timeLimit: 60, connect: connect)
                        .opsPerSecond)
            }
            return samples
        }
        if let peers = PeerServices.current {
            mixed.record(try await measure(.setThenGet) { try await peers.memoryConnection($0) })
            set.record(try await measure(.setOnly) { try await peers.memoryConnection($0) })
            get.record(try await measure(.getOnly) { try await peers.memoryConnection($0) })
        } else {
            mixed.skip(unavailable)
            set.skip(unavailable)
            get.skip(unavailable)
        }
        do {
            let redis = try references.startRedis(scratch: scratch)
            defer { redis.server.stop() }
            let port = redis.port
            let connect: @Sendable (Int) async throws -> any KVConnection = { _ in try await RESPConnection.connect(port: port) }
            let samples = try await measure(.setThenGet, connect)
            log("  redis: \(String(format: "%.0f", Stats.median(samples) ?? 0)) ops/s set+get")
            mixed.add(Reference(name: redis.name, samples: samples, targetRatio: 0.3))
            set.add(Reference(name: redis.name + ", one copy", samples: try await measure(.setOnly, connect)))
            get.add(Reference(name: redis.name, samples: try await measure(.getOnly, connect), targetRatio: 1.0))
        } catch {
            mixed.add(.missing("redis-server", because: "\(error)", targetRatio: 0.3))
            get.add(.missing("redis-server", because: "\(error)", targetRatio: 1.0))
        }
        do {
            let pair = try await references.startRedisWithReplica(scratch: scratch + "/replicated")
            defer { for s in pair.servers { s.stop() } }
            let port = pair.port
            let samples = try await measure(.setOnly) { _ in try await RESPConnection.connect(port: port, replicas: 1) }
            log("  redis + replica, WAIT 1 0: \(String(format: "%.0f", Stats.median(samples) ?? 0)) SET/s")
            set.add(Reference(name: pair.name, samples: samples, targetRatio: 1.0))
        } catch {
            set.add(.missing("redis-server + replica", because: "\(error)", targetRatio: 1.0))
        }
        return [mixed, set, get]
    }

    // MARK: Distributed files

    static func files(sizes: BenchSizes, references: ReferenceTools, scratch: String, log: (String) -> Void) async throws -> [Figure] {
        let mb = sizes.fileBytes >> 20
        var put = Figure(
            id: "files.put", title: "File put (\(mb) MiB)", unit: "MB/s", better: .higher,
            workload: "one \(mb) MiB file stored through a peer; \(sizes.fileRepeats) runs")
        var get = Figure(
            id: "files.get", title: "File get (\(mb) MiB)", unit: "MB/s", better: .higher,
            workload:
                "the same \(mb) MiB file read back through a peer over loopback and saved to a file, as `get-file` does; \(sizes.fileRepeats) runs (page cache warm). The target applies to nginx with curl saving to disk too; curl discarding the bytes is shown for scale"
        )
        let dir = scratch + "/files"
        try FileManager.default.createDirectory(atPath: dir + "/www", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/www/blob.bin"
        try writeBlob(path: path, bytes: sizes.fileBytes)
        if let peers = PeerServices.current {
            put.record(try await peers.filePut(path: path, repeats: sizes.fileRepeats))
            get.record(try await peers.fileGet(name: "blob.bin", bytes: sizes.fileBytes, repeats: sizes.fileRepeats, scratch: dir))
        } else {
            put.skip(unavailable)
            get.skip(unavailable)
        }
        // Targets (issue 17): get at least 0.9× nginx saving and 0.5× nginx discarding; put at least half our get.
        for save in [true, false] {
            let goal = save ? 0.9 : 0.5
            do {
                let samples = try references.nginxGet(root: dir, file: "blob.bin", bytes: sizes.fileBytes, repeats: sizes.fileRepeats, save: save)
                log("  \(samples.name): \(String(format: "%.0f", Stats.median(samples.samples) ?? 0)) MB/s")
                get.add(Reference(name: samples.name, samples: samples.samples, targetRatio: goal))
            } catch {
                get.add(.missing("nginx", because: "\(error)", targetRatio: goal))
            }
        }
        do {
            let samples = try references.nginxPut(root: dir, path: path, bytes: sizes.fileBytes, repeats: sizes.fileRepeats)
            log("  \(samples.name): \(String(format: "%.0f", Stats.median(samples.samples) ?? 0)) MB/s")
            put.add(Reference(name: samples.name, samples: samples.samples))
        } catch {
            put.add(.missing("nginx upload", because: "\(error)"))
        }
        if let p = put.value, let g = get.value, g > 0 {
            put.detail["ratio_to_our_get"] = p / g
            put.setTarget(0.5 * g, better: .higher, description: "at least half our get (\(String(format: "%.0f", 0.5 * g)) MB/s)")
        }
        return [put, get]
    }

    /// Writes `bytes` of incompressible data (one random MiB, repeated).
    static func writeBlob(path: String, bytes: Int) throws {
        FileManager.default.createFile(atPath: path, contents: nil, attributes: [.posixPermissions: 0o644])
        guard let handle = FileHandle(forWritingAtPath: path) else { throw BenchError("cannot write \(path)") }
        defer { try? handle.close() }
        var rng = SplitMix(seed: 7)
        var block = [UInt8](repeating: 0, count: 1 << 20)
        for i in stride(from: 0, to: block.count, by: 8) {
            withUnsafeBytes(of: rng.next()) { raw in for j in 0..<8 { block[i + j] = raw[j] } }
        }
        let data = Data(block)
        var left = bytes
        while left > 0 {
            let n = min(left, data.count)
            try handle.write(contentsOf: data.prefix(n))
            left -= n
        }
    }
}

/// The grid's peer services as the bench drives them. `current` is nil until this build has them (the peer-services
/// issue); then it connects to the peers of a local grid and every figure above gains its measured side.
protocol PeerServiceDriver: Sendable {
    func taskThroughput(tasks: Int, repeats: Int) async throws -> [Double]
    func taskRoundTrips(_ count: Int) async throws -> [Double]
    func memoryConnection(_ client: Int) async throws -> any KVConnection
    func filePut(path: String, repeats: Int) async throws -> [Double]
    /// Stores the file at `path` under `name`, once.
    func fileUpload(path: String, as name: String) async throws
    func fileGet(name: String, bytes: Int, repeats: Int, scratch: String) async throws -> [Double]
}

enum PeerServices {
    /// Set by the suite once its local grid (with peer ports) is up.
    nonisolated(unsafe) static var current: (any PeerServiceDriver)?
}
