import Foundation
import GridClient
import GridCore
import GridProtocol

/// The peer services of a local grid, driven over the grid protocol with `PeerLink` (the client the CLI uses).
struct GridPeerDriver: PeerServiceDriver {
    let ports: [Int]
    /// The manager, with the bench user's token: it grants each link's session tickets (the token never goes to a
    /// peer, as with the CLI).
    let manager: GridClient
    var tls: PeerTLS? = nil
    static let program = "def main(x):\n    return x * x\n"

    func link(_ i: Int) async throws -> PeerLink {
        try await PeerLink.connect(host: "127.0.0.1", port: ports[i % ports.count], grant: manager.grantSource, tls: tls)
    }

    /// `requirements`: Python packages the task declares (`CPU_TASK.requirements`); nil: none.
    func call(_ link: PeerLink, _ x: Int, requirements: [String]? = nil) async throws {
        let task = Msg.CPUTask(
            taskId: "b-\(UUID().uuidString.prefix(12))", program: Self.program, function: "main", args: .array([.number(Double(x))]),
            requirements: requirements)
        let answer = try await link.request(.cpuTask(task), timeout: 120).message
        guard case .cpuResult(let r) = answer, r.ok, case .number(let v)? = r.result, Int(v) == x * x else {
            if case .cpuResult(let r) = answer, !r.ok { throw BenchError("a function task failed: \(r.error ?? "?") \(r.message ?? "")") }
            throw BenchError("a function task did not return x*x")
        }
    }

    func taskThroughput(tasks: Int, repeats: Int) async throws -> [Double] {
        var opened: [PeerLink] = []
        for i in 0..<ports.count { opened.append(try await link(i)) }
        let links = opened
        defer { for l in links { l.close() } }
        for x in 0..<min(50, tasks) { try await call(links[x % links.count], x) }  // warm the pools
        var rates: [Double] = []
        for _ in 0..<repeats {
            let next = Counter()
            let start = Stats.now()
            // 32 requests in flight per link (bounded), each link to one peer.
            try await withThrowingTaskGroup(of: Void.self) { group in
                for lane in 0..<(32 * links.count) {
                    group.addTask {
                        while true {
                            let x = next.take()
                            if x >= tasks { return }
                            try await call(links[lane % links.count], x)
                        }
                    }
                }
                try await group.waitForAll()
            }
            rates.append(Double(tasks) / (Stats.now() - start))
        }
        return rates
    }

    func taskRoundTrips(_ count: Int) async throws -> [Double] {
        try await taskRoundTrips(count, requirements: nil)
    }

    /// Sequential round trips on one link after 10 warm-up calls (which build or find the environment of `requirements`).
    func taskRoundTrips(_ count: Int, requirements: [String]?) async throws -> [Double] {
        let l = try await link(0)
        defer { l.close() }
        for x in 0..<10 { try await call(l, x, requirements: requirements) }
        var out: [Double] = []
        for x in 0..<count {
            let start = Stats.now()
            try await call(l, x, requirements: requirements)
            out.append((Stats.now() - start) * 1000)
        }
        return out
    }

    /// Sequential round trips on one link, alternating a task that declares `requirements` with the same task
    /// declaring none, after 10 warm-up calls of each: drift in the machine's load (or in the peer's state as a run
    /// goes on) hits both series alike, as the sandbox figures alternate with their plain starts.
    func alternatingRoundTrips(_ count: Int, requirements: [String]) async throws -> (declaring: [Double], plain: [Double]) {
        let l = try await link(0)
        defer { l.close() }
        for x in 0..<10 {
            try await call(l, x, requirements: requirements)
            try await call(l, x)
        }
        var declaring: [Double] = []
        var plain: [Double] = []
        for x in 0..<count {
            var start = Stats.now()
            try await call(l, x, requirements: requirements)
            declaring.append((Stats.now() - start) * 1000)
            start = Stats.now()
            try await call(l, x)
            plain.append((Stats.now() - start) * 1000)
        }
        return (declaring, plain)
    }

    func memoryConnection(_ client: Int) async throws -> any KVConnection {
        PeerKV(link: try await link(client))
    }

    func filePut(path: String, repeats: Int) async throws -> [Double] {
        let l = try await link(0)
        defer { l.close() }
        let bytes = Double((try FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0)
        var out: [Double] = []
        for r in 0..<repeats {
            // Each run starts with no dirty pages of the one before (the references do the same): it measures its own
            // writes, not the write-back of the last.
            Stats.settleDisk()
            let start = Stats.now()
            _ = try await l.upload(path: path, as: r == 0 ? "blob.bin" : "blob-\(r).bin")
            out.append(bytes / (Stats.now() - start) / 1e6)
        }
        return out
    }

    func fileUpload(path: String, as name: String) async throws {
        let l = try await link(0)
        defer { l.close() }
        _ = try await l.upload(path: path, as: name)
    }

    func fileGet(name: String, bytes: Int, repeats: Int, scratch: String) async throws -> [Double] {
        try await downloads(name: name, bytes: bytes, repeats: repeats, scratch: scratch, warmUp: true)
    }

    /// `repeats` timed downloads through peer 1 (MB/s), after one untimed warm-up unless `warmUp` is false.
    func downloads(name: String, bytes: Int, repeats: Int, scratch: String, warmUp: Bool) async throws -> [Double] {
        let l = try await link(1)
        defer { l.close() }
        var out: [Double] = []
        // One warm-up, as the reference has; each run starts with no dirty pages (the put's, or the last run's).
        for i in (warmUp ? 0 : 1)...max(1, repeats) {
            let target = scratch + "/got.bin"
            Stats.settleDisk()
            let start = Stats.now()
            _ = try await l.download(name, to: target)
            if i > 0 { out.append(Double(bytes) / (Stats.now() - start) / 1e6) }
            try? FileManager.default.removeItem(atPath: target)
        }
        return out
    }
}

/// Distributed memory as a `KVConnection`: SET_MEM / GET_MEM on one peer link; bytes travel as base64 strings.
struct PeerKV: KVConnection {
    let link: PeerLink
    func set(_ key: String, _ value: [UInt8]) async throws {
        guard case .memResult = try await link.request(.setMem(Msg.SetMem(key: key, value: .string(Data(value).base64EncodedString())))).message
        else { throw BenchError("SET_MEM got an unexpected answer") }
    }
    func get(_ key: String) async throws -> [UInt8]? {
        guard case .memResult(let r) = try await link.request(.getMem(Msg.MemKey(key: key))).message else {
            throw BenchError("GET_MEM got an unexpected answer")
        }
        guard case .string(let s)? = r.value, let d = Data(base64Encoded: s) else { return nil }
        return Array(d)
    }
    func close() async { await link.close() }
}
