import AsyncHTTPClient
import Foundation
public import GridClient
import GridCore
import GridSandbox
import NIOCore
import NIOFoundationCompat

/// An idle local grid the bench starts for itself: a manager and N workers as child processes of the `campusgrid`
/// binary, on free ports of 127.0.0.1, with a temporary data folder that is removed afterwards.
public final class LocalGrid: @unchecked Sendable {
    /// Given to every manager and worker the bench starts: each stops itself once this process is gone, so a bench
    /// interrupted (Ctrl-C, SIGKILL) leaves none of them running. `up` does the same.
    static var stopWithTheBench: [String] { ["--parent-pid", "\(getpid())"] }

    // Safe: created and stopped by one task; the children are only signalled by pid.
    public let root: String
    public let baseURL: String
    public let managerAddress: String
    /// A submitter with (practically) unlimited credits.
    public let client: GridClient
    /// The workers' owner, whose token the workers joined with.
    public let workerToken: String
    /// The sandbox tier the workers chose (their default, `auto`).
    public let tier: String
    /// Each worker's peer port (grid protocol, peer services).
    public let peerPorts: [Int]
    /// On a TLS grid: trust in its CA for links to the peers.
    public let peerTLS: PeerTLS?
    private var children: [ServerProcess]
    private let binary: String
    private let environment: [String: String]

    /// Starts the manager and `workers` workers (each offering 1 CPU and 1 slot, so the grid runs `workers` jobs at
    /// once) and waits until all registered. With `distinctOwners` each worker joins for an owner of its own (so that
    /// verification can check one worker's results on another's).
    /// `tls`: the manager speaks TLS on its grid and HTTP ports (`--tls`), the workers join with a join string that pins
    /// its CA, and their peer ports speak TLS with certificates from it (`peerTLS`).
    public static func start(
        binary: String, workers: Int, extraWorkerArguments: [String] = [], distinctOwners: Bool = false, tls: Bool = false,
        managerEnvironment: [String: String] = [:]
    ) async throws -> LocalGrid {
        let root = NSTemporaryDirectory() + "campusgrid-bench-\(UUID().uuidString.prefix(8))"
        let env = try childEnvironment(root: root)
        var children: [ServerProcess] = []
        do {
            let manager = try ServerProcess(
                name: "manager", path: binary,
                arguments: ["manager", "--data-dir", root + "/manager", "--host", "127.0.0.1", "--port", "0", "--dashboard-port", "0", "--json"]
                    + Self.stopWithTheBench
                    + (tls ? ["--tls"] : []),
                environment: env.merging(managerEnvironment) { $1 })
            children.append(manager)
            guard let line = await manager.nextLine(timeout: 60), let ready = try? JSONDecoder().decode([String: JSONValue].self, from: Data(line.utf8)),
                case .number(let g)? = ready["grid_port"], case .number(let h)? = ready["http_port"]
            else { throw BenchError("the bench's manager did not start:\n\(manager.errorLog.suffix(2000))") }
            let baseURL = "\(tls ? "https" : "http")://127.0.0.1:\(Int(h))"
            let managerAddress = "127.0.0.1:\(Int(g))"
            let caPEM = tls ? FileManager.default.contents(atPath: root + "/manager/ca.pem").map { String(decoding: $0, as: UTF8.self) } : nil
            if tls && caPEM == nil { throw BenchError("the TLS manager made no CA in \(root)/manager") }
            let password = UUID().uuidString
            var owner = GridClient(baseURL: baseURL, caCertificatePEM: caPEM)
            owner.token = try await owner.register("bench-owner", password: password).token
            let created = try await owner.createToken(kind: "worker")
            let workerToken = tls ? (created.join ?? created.token) : created.token
            var client = GridClient(baseURL: baseURL, caCertificatePEM: caPEM)
            client.token = try await client.register("bench", password: password).token
            // Peer ports show the peer CA's certificates, which the manager names (it is not the manager's CA).
            let peerCAPEM = tls ? try await client.peerAuthority() : nil
            // Workers read the join token from a private file, never from their command line (`ps` shows that).
            let tokenFile = root + "/worker-token"
            try PrivateFile.write(Data((workerToken + "\n").utf8), to: tokenFile)
            var tier = "?"
            var peerPorts: [Int] = []
            for i in 1...max(1, workers) {
                var tokenFile = tokenFile
                if distinctOwners, i > 1 {
                    var own = GridClient(baseURL: baseURL, caCertificatePEM: caPEM)
                    own.token = try await own.register("bench-owner-\(i)", password: password).token
                    tokenFile = root + "/worker-token-\(i)"
                    let made = try await own.createToken(kind: "worker")
                    let token = tls ? (made.join ?? made.token) : made.token
                    try PrivateFile.write(Data((token + "\n").utf8), to: tokenFile)
                }
                let peerPort = try Shell.freePort()
                peerPorts.append(peerPort)
                let w = try ServerProcess(
                    name: "worker-\(i)", path: binary,
                    arguments: [
                        "worker", "-m", managerAddress, "--token-file", tokenFile, "--data-dir", root + "/worker-\(i)", "-n", "bench-\(i)", "--cpus", "1",
                        "--slots", "1", "--memory", "2", "--port", "\(peerPort)", "--json", "--allow-unsandboxed",
                    ] + Self.stopWithTheBench + extraWorkerArguments,
                    environment: env)
                children.append(w)
                guard let ready = await w.nextLine(timeout: 60) else { throw BenchError("bench worker \(i) did not register:\n\(w.errorLog.suffix(2000))") }
                if let info = try? JSONDecoder().decode([String: JSONValue].self, from: Data(ready.utf8)), case .string(let t)? = info["tier"] { tier = t }
            }
            return LocalGrid(
                root: root, baseURL: baseURL, managerAddress: managerAddress, client: client, workerToken: workerToken, children: children,
                binary: binary, environment: env, tier: tier, peerPorts: peerPorts,
                peerTLS: try peerCAPEM.map { try PeerTLS(caPEM: $0) })
        } catch {
            for c in children.reversed() { c.stop() }
            try? FileManager.default.removeItem(atPath: root)
            throw error
        }
    }

    private init(
        root: String, baseURL: String, managerAddress: String, client: GridClient, workerToken: String, children: [ServerProcess], binary: String,
        environment: [String: String], tier: String, peerPorts: [Int], peerTLS: PeerTLS?
    ) {
        self.peerTLS = peerTLS
        self.peerPorts = peerPorts
        self.tier = tier
        self.root = root
        self.baseURL = baseURL
        self.managerAddress = managerAddress
        self.client = client
        self.workerToken = workerToken
        self.children = children
        self.binary = binary
        self.environment = environment
    }

    /// The environment of a bench grid's children under `root` (created): a private HOME and config folder, cheap
    /// bcrypt, (practically) unlimited starting credits, quiet logs, no inherited token or manager.
    static func childEnvironment(root: String) throws -> [String: String] {
        // The bench's folder holds the workers' token file: its own alone, whatever the umask.
        try PrivateFile.makeFolder(root)
        try FileManager.default.createDirectory(atPath: root + "/config", withIntermediateDirectories: true)
        var env = ProcessInfo.processInfo.environment
        env["HOME"] = root
        env["XDG_CONFIG_HOME"] = root + "/config"
        env["CAMPUSGRID_BCRYPT_COST"] = "4"
        env["STARTING_CREDITS"] = "1000000000"
        env["CAMPUSGRID_LOG_LEVEL"] = env["CAMPUSGRID_BENCH_LOG_LEVEL"] ?? "warning"
        env["CAMPUSGRID_TOKEN"] = nil
        env["CAMPUSGRID_MANAGER"] = nil
        return env
    }

    /// Jobs by state, from the manager's `/metrics`.
    public func jobCounts() async throws -> [String: Int] {
        let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: baseURL + "/metrics"), timeout: .seconds(30))
        let body = String(buffer: try await response.body.collect(upTo: 1 << 20))
        var out: [String: Int] = [:]
        for line in body.split(separator: "\n") where line.hasPrefix("campusgrid_jobs{state=\"") {
            let rest = line.dropFirst("campusgrid_jobs{state=\"".count)
            guard let quote = rest.firstIndex(of: "\""), let space = rest.lastIndex(of: " "), let n = Int(rest[rest.index(after: space)...]) else {
                continue
            }
            out[String(rest[..<quote])] = n
        }
        return out
    }

    /// Stops the workers, then the manager, and removes the data folder.
    public func stop() {
        for c in children.dropFirst().reversed() { c.stop() }
        children.first?.stop()
        children = []
        try? FileManager.default.removeItem(atPath: root)
    }

    /// The last messages of every child, for an error.
    public var logs: String {
        children.map { "== \($0.name)\n\($0.errorLog.suffix(1500))" }.joined(separator: "\n")
    }
}
