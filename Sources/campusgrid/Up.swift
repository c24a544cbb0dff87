import ArgumentParser
import Foundation
import GridClient
import GridCore
import GridSandbox
import ServiceLifecycle
import UnixSignals

#if canImport(Glibc)
import Glibc
#endif

/// `campusgrid up`: a whole local grid in one command — a manager and N workers as child processes, a demo account
/// whose workers earn for it, and the dashboard URL. Runs until SIGINT/SIGTERM, then stops its children cleanly.
struct Up: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Start a local grid: a manager, N workers and a demo account.")

    @Option(help: "Number of local workers.") var workers = 2
    @Option(help: "Data folder (default ~/.campusgrid/local).") var dataDir: String?
    @Option(help: "Sandbox for the workers (as `worker --sandbox`).") var sandbox: String?
    @Option(help: "Peer port of the first worker; the others count up from it (a busy port is replaced by a free one; 0: all free ports).")
    var peerPort = 9000
    @Option(help: "Managers on one shared store (issue 16: one leads, the others take over if it dies); workers list them all (default 1).")
    var managers = 1
    @Flag(help: "Store in a local PostgreSQL started by scripts/postgres instead of a SQLite file.") var postgres = false
    @Flag(help: "First line of output is one JSON object with the dashboard URL, manager address and demo credentials.") var json = false

    /// One worker's peer ports, as printed.
    struct PeerLine: Codable {
        var name: String
        var port: Int
        var webPort: Int?
        enum CodingKeys: String, CodingKey {
            case name, port
            case webPort = "web_port"
        }
    }

    struct Demo: Codable {
        var username: String
        var password: String
    }

    func run() async throws {
        guard (0...64).contains(workers) else { throw ValidationError("--workers must be 0–64") }
        guard (1...5).contains(managers) else { throw ValidationError("--managers must be 1–5") }
        guard (0...65535).contains(peerPort) else { throw ValidationError("--peer-port must be 0–65535 (0: free ports)") }
        let dir = URL(fileURLWithPath: dataDir ?? Env.home + "/.campusgrid/local").standardizedFileURL.path
        try PrivateFile.makeFolder(dir)
        let me = try executablePath()
        // Every manager gets the same store: with --postgres the database scripts/postgres starts, else the SQLite file
        // in the shared data folder (which also gives them one identity: key, CA).
        // The database URL carries a password: it goes to the managers in a private file, never on their command
        // lines (`ps` shows those to every local user).
        var storeArgs: [String] = []
        if postgres {
            let urlFile = dir + "/database-url"
            try PrivateFile.write(Data((try Self.startPostgres() + "\n").utf8), to: urlFile)
            storeArgs = ["--database-file", urlFile]
        }
        // Neither the person's API token nor another store's URL goes to the grid's processes (a worker's jobs in the
        // restricted tier could read its environment, and a manager would open that store instead of this grid's).
        let childEnvironment = Self.childEnvironment(ProcessInfo.processInfo.environment)
        var children: [ChildProcess] = []
        var standbys: [ChildProcess] = []
        func stopAll() {
            // Workers first (they stop their jobs), then the standby managers, then the first manager.
            let workers = children.dropFirst()
            for c in workers { c.signal(SIGTERM) }
            for c in workers { c.waitForExit(timeout: 10) }
            for c in standbys { c.signal(SIGTERM) }
            for c in standbys { c.waitForExit(timeout: 10) }
            if let manager = children.first {
                manager.signal(SIGTERM)
                manager.waitForExit(timeout: 10)
            }
        }
        do {
            // The usual ports when free; if another program takes one between the check and the bind, free ports.
            var managerReady: (child: ChildProcess, line: String)?
            for attempt in 0..<2 where managerReady == nil {
                let gridPort = attempt == 0 && Self.isFree(9999) ? 9999 : 0
                let httpPort = attempt == 0 && Self.isFree(5000) ? 5000 : 0
                let m = try ChildProcess(
                    name: "manager", path: me,
                    arguments: [
                        "manager", "--data-dir", dir + "/manager", "--host", "127.0.0.1", "--port", "\(gridPort)", "--dashboard-port", "\(httpPort)",
                        "--json", "--parent-pid", "\(getpid())",
                    ] + storeArgs, environment: childEnvironment, errors: .inherit)
                if let line = await m.nextLine(timeout: 60) {
                    managerReady = (m, line)
                } else {
                    m.signal(SIGTERM)
                    await m.waitForExit(timeout: 5)
                }
            }
            guard let (manager, ready) = managerReady else { throw ValidationError("the manager did not start; see its messages above") }
            children.append(manager)
            guard let info = try? JSONDecoder().decode([String: JSONValue].self, from: Data(ready.utf8)),
                case .number(let g)? = info["grid_port"], case .number(let h)? = info["http_port"]
            else { throw ValidationError("the manager did not start; see its messages above") }
            let dashboard = "http://127.0.0.1:\(Int(h))"
            let managerAddress = "127.0.0.1:\(Int(g))"
            // The other managers (issue 16): started after the first (which made the identity), on free ports; each
            // says it is ready once it has seen the leader renew its lease.
            var dashboards = [dashboard]
            var managerAddresses = [managerAddress]
            for i in 1..<managers {
                let m = try ChildProcess(
                    name: "manager-\(i + 1)", path: me,
                    arguments: [
                        "manager", "--data-dir", dir + "/manager", "--host", "127.0.0.1", "--port", "0", "--dashboard-port", "0", "--json",
                        "--parent-pid", "\(getpid())",
                    ] + storeArgs, environment: childEnvironment, errors: .inherit)
                standbys.append(m)
                guard let line = await m.nextLine(timeout: 60), let info = try? JSONDecoder().decode([String: JSONValue].self, from: Data(line.utf8)),
                    case .number(let g2)? = info["grid_port"], case .number(let h2)? = info["http_port"]
                else { throw ValidationError("manager \(i + 1) did not start; see its messages above") }
                dashboards.append("http://127.0.0.1:\(Int(h2))")
                managerAddresses.append("127.0.0.1:\(Int(g2))")
            }

            // The demo account: created once, its password kept in the data folder (mode 0600).
            let demoPath = dir + "/demo.json"
            var client = GridClient(baseURL: dashboard)
            let token: String
            if let data = FileManager.default.contents(atPath: demoPath), let demo = try? JSONDecoder().decode(Demo.self, from: data) {
                token = try await client.login(demo.username, password: demo.password).token
            } else {
                let demo = Demo(username: "demo", password: Self.randomPassword())
                token = try await client.register(demo.username, password: demo.password).token
                try PrivateFile.write(try JSONEncoder().encode(demo), to: demoPath)
            }
            let demo = try JSONDecoder().decode(Demo.self, from: FileManager.default.contents(atPath: demoPath)!)
            client.token = token
            // So that the seed's client commands (`campusgrid cpu --port 9000 …`) work as written: log the CLI in as
            // the demo user unless it already has a login for this manager.
            if CredentialStore.token(for: dashboard) == nil { try? CredentialStore.save(token, for: dashboard) }
            // The workers read their join token from a file only this user can read: on a command line, `ps` would
            // show it to everyone on the machine.
            let tokenFile = dir + "/worker-token"
            try writePrivateFile(tokenFile, try await client.createToken(kind: "worker").token + "\n")

            var peers: [PeerLine] = []
            for i in 1...max(workers, 1) where workers > 0 {
                let wanted = peerPort + i - 1
                let port = peerPort > 0 && (1...65535).contains(wanted) && Self.isFree(wanted) ? wanted : 0
                // Status pages from 5001 up (the manager's dashboard has 5000), free ports otherwise.
                let wantedWeb = 5000 + i
                let web = peerPort > 0 && Self.isFree(wantedWeb) ? wantedWeb : Self.freePort()
                var started: (child: ChildProcess, line: String)?
                for attempt in 0..<2 where started == nil {
                    var args = [
                        "worker", "-m", managerAddresses.joined(separator: ","), "--token-file", tokenFile, "--data-dir", dir + "/worker-\(i)", "-n", "local-\(i)", "--json", "--parent-pid", "\(getpid())",
                        "--port", "\(attempt == 0 ? port : 0)", "--web-port", "\(attempt == 0 ? web : Self.freePort())",
                    ]
                    if let sandbox { args += ["--sandbox", sandbox] }
                    let w = try ChildProcess(name: "worker-\(i)", path: me, arguments: args, environment: childEnvironment, errors: .inherit)
                    if let line = await w.nextLine(timeout: 60) {
                        started = (w, line)
                    } else {
                        w.signal(SIGTERM)
                        await w.waitForExit(timeout: 5)
                    }
                }
                guard let (w, ready) = started else { throw ValidationError("worker \(i) did not start; see its messages above") }
                children.append(w)
                let info = (try? JSONDecoder().decode([String: JSONValue].self, from: Data(ready.utf8))) ?? [:]
                var line = PeerLine(name: "local-\(i)", port: 0, webPort: nil)
                if case .number(let p)? = info["port"] { line.port = Int(p) }
                if case .number(let p)? = info["web_port"] { line.webPort = Int(p) }
                peers.append(line)
            }

            // Trap the signals before saying we are up, so a stop right after the ready line is still clean.
            let signals = await UnixSignalsSequence(trapping: .sigterm, .sigint)
            if json {
                // A flat object of strings (scripts decode it as such); the peers' ports as comma-separated lists.
                var line: [String: String] = [
                    "dashboard": dashboard, "manager": managerAddress, "user": demo.username, "password": demo.password, "token": token,
                    "peer_ports": peers.map { String($0.port) }.joined(separator: ","),
                    "web_ports": peers.map { $0.webPort.map(String.init) ?? "" }.joined(separator: ","),
                ]
                if managers > 1 {
                    // Only with --managers: every manager's grid address and dashboard, comma-separated, the leader first.
                    line["managers"] = managerAddresses.joined(separator: ",")
                    line["dashboards"] = dashboards.joined(separator: ",")
                }
                let e = JSONEncoder()
                e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
                sayJSON(String(decoding: try e.encode(line), as: UTF8.self))
            } else {
                say(
                    """
                    CampusGrid is up.
                      Dashboard:  \(dashboard)
                      Manager:    \(managerAddress) (grid protocol), data in \(dir)
                      Workers:    \(workers) local worker(s), earning for \(demo.username)\(managers > 1 ? "\n  Managers:   \(managers) on one store, the first leads: \(dashboards.joined(separator: ","))" : "")
                    \(peers.map { "  Peer \($0.name): grid port \($0.port), web port \($0.webPort.map(String.init) ?? "none (no status page yet)")" }.joined(separator: "\n"))
                      Peer try:   CAMPUSGRID_TOKEN=\(token) campusgrid cpu --port \(peers.first?.port ?? 9000) --program "def main(a, b): return a + b" --args "[10, 32]"
                      Demo login: \(demo.username) / \(demo.password)
                      Try:        CAMPUSGRID_MANAGER=\(dashboard) CAMPUSGRID_TOKEN=\(token) campusgrid submit examples/sum_of_squares.py --follow
                    Press Ctrl-C to stop.
                    """)
            }
            for await _ in signals { break }
            if !json { say("Stopping…") }
            stopAll()
        } catch {
            stopAll()
            throw error
        }
    }

    /// `--postgres`: starts the local PostgreSQL with `scripts/postgres start` (from the repository the command runs
    /// in) and returns the database URL it prints last.
    static func startPostgres() throws -> String {
        let script = FileManager.default.currentDirectoryPath + "/scripts/postgres"
        guard FileManager.default.isExecutableFile(atPath: script) else {
            throw ValidationError(
                "--postgres starts PostgreSQL with scripts/postgres, which this build does not have (run from the repository root of a build with the PostgreSQL store)")
        }
        // Its messages go to the terminal; the script bounds its own waits, and this one is bounded too.
        let r = try Command.run(script, ["start"], timeout: 300, inheritStderr: true)
        let url = r.stdout.split(separator: "\n").last.map(String.init) ?? ""
        guard r.succeeded, url.hasPrefix("postgres") else {
            throw ValidationError(
                "scripts/postgres start failed (\(r.timedOut ? "no answer within 300 s" : "exit \(r.status)")); see its messages above")
        }
        return url
    }

    static func randomPassword() -> String {
        let alphabet = Array("abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789")
        var rng = SystemRandomNumberGenerator()
        return String((0..<16).map { _ in alphabet.randomElement(using: &rng)! })
    }

    /// A TCP port on 127.0.0.1 that is free now (the kernel's pick), so a child can be told a concrete port.
    static func freePort() -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return 0 }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = 0
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) == 0 && getsockname(fd, $0, &len) == 0 }
        }
        return ok ? Int(UInt16(bigEndian: addr.sin_port)) : 0
    }

    /// Whether a TCP port on 127.0.0.1 can be bound now.
    /// The environment `up` gives its managers and workers: its own, less `CAMPUSGRID_TOKEN` (a person's API token)
    /// and `CAMPUSGRID_DATABASE` (each manager is told its store).
    static func childEnvironment(_ environment: [String: String]) -> [String: String] {
        environment.filter { $0.key != "CAMPUSGRID_TOKEN" && $0.key != "CAMPUSGRID_DATABASE" }
    }

    static func isFree(_ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        return withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
    }
}

/// Writes `contents` to `path` as a file only its owner can read or write (0600 from the moment it exists; an
/// existing file is truncated and its mode tightened).
func writePrivateFile(_ path: String, _ contents: String) throws {
    try PrivateFile.write(Data(contents.utf8), to: path)
}

/// This program's own path, to start its children.
func executablePath() throws -> String {
    if let p = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") { return p }
    return URL(fileURLWithPath: CommandLine.arguments[0]).standardizedFileURL.path
}
