public import Foundation
public import GridClient
public import GridSandbox

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
public import GridCore

#if canImport(Glibc)
import Glibc
#endif

/// The built `campusgrid` binary: `$CAMPUSGRID_BIN`, or the one next to the test bundle (`swift build` puts both in
/// the same folder). Tests never build it themselves.
public enum CampusGridBinary {
    public static var path: String {
        if let p = ProcessInfo.processInfo.environment["CAMPUSGRID_BIN"], !p.isEmpty { return p }
        var dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        if dir.lastPathComponent == "MacOS" || dir.path.hasSuffix(".xctest/Contents") { dir = dir.deletingLastPathComponent() }
        for _ in 0..<4 {
            let candidate = dir.appendingPathComponent("campusgrid").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            dir = dir.deletingLastPathComponent()
        }
        return URL(fileURLWithPath: FileManager.default.currentDirectoryPath).appendingPathComponent(".build/debug/campusgrid").path
    }
}

/// The real Python interpreter (`PythonLocator` on `python3`), resolved once for every test of the run.
public enum TestPython {
    public static let path: String = (try? PythonLocator.resolve("python3")) ?? "/usr/bin/python3"
}

/// The result of one CLI run.
public struct CLIResult: Sendable {
    public var status: Int32
    public var stdout: String
    public var stderr: String
}

/// A real grid for one test: a manager and workers as separate `campusgrid` processes on 127.0.0.1 with free ports,
/// a real SQLite file in a temporary folder. Everything it started is stopped by `shutdown()`, by PID.
public final class TestGrid: @unchecked Sendable {
    // Safe: a TestGrid is used by one test at a time; `processes` is guarded by `lock`.
    public let root: String
    public private(set) var manager: ManagedProcess?
    public private(set) var gridPort = 0
    public private(set) var httpPort = 0
    private var processes: [ManagedProcess] = []
    private var afterExit: [@Sendable () -> Void] = []
    private var adminClient: GridClient?
    private let lock = NSLock()

    /// The account every manager of a test grid names with `--admin`: the one that may check the ledger.
    public static let adminName = "grid-admin"

    public var baseURL: String { "\(tls ? "https" : "http")://127.0.0.1:\(httpPort)" }
    /// Whether the manager speaks TLS (started with `--tls`); its CA is then in `caPEM`.
    public private(set) var tls = false
    public var caPEM: String? {
        tls ? (try? String(contentsOfFile: root + "/manager/ca.pem", encoding: .utf8)) : nil
    }
    /// On a TLS grid, the CA of its peer ports (not the manager's CA: see `ManagerCA`).
    public var peerCAPEM: String? {
        tls ? (try? String(contentsOfFile: root + "/manager/peer-ca.pem", encoding: .utf8)) : nil
    }
    /// A command every process of the grid is started through, e.g. `["/usr/sbin/ip", "netns", "exec", NAME]` for a
    /// grid inside a network namespace (then only the CLI, through the same prefix, can reach it). Set before starting.
    public var launcher: [String] = []
    public var managerAddress: String { "127.0.0.1:\(gridPort)" }

    public init(label: String = "grid") throws {
        root = NSTemporaryDirectory() + "campusgrid-test-\(label)-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: root + "/config", withIntermediateDirectories: true)
    }

    /// The environment every child gets: cheap bcrypt, a private config folder, no inherited tokens.
    public var environment: [String: String] {
        var env = ProcessInfo.processInfo.environment
        env["CAMPUSGRID_BCRYPT_COST"] = "4"
        env["XDG_CONFIG_HOME"] = root + "/config"
        env["HOME"] = root
        env["CAMPUSGRID_TOKEN"] = nil
        env["CAMPUSGRID_MANAGER"] = nil
        env["CAMPUSGRID_LOG_LEVEL"] = env["CAMPUSGRID_LOG_LEVEL"] ?? "debug"
        // The real interpreter, found once per test run: each worker would otherwise find it through `python3` on
        // PATH, which here is pyenv's shim (about 0.2 CPU-s a worker). `WorkerJoin` keeps a worker that finds it so.
        env["CAMPUSGRID_PYTHON"] = env["CAMPUSGRID_PYTHON"] ?? TestPython.path
        // Workers run the restricted tier unless a test asks for another (`--sandbox`); `auto` would pick bwrap here.
        // Forced into it, they take every user's jobs (`--allow-unsandboxed`), and the CLI's jobs accept it
        // (`--isolation restricted`); a test of the refusal sets CAMPUSGRID_ALLOW_UNSANDBOXED=0 for its worker.
        if env["CAMPUSGRID_SANDBOX"] == nil {
            env["CAMPUSGRID_SANDBOX"] = "none"
            env["CAMPUSGRID_ALLOW_UNSANDBOXED"] = "1"
            env["CAMPUSGRID_ISOLATION"] = "restricted"
        }
        // Verification (spot checks, probation, the fund's share) is off in test grids unless a test turns it on through
        // its manager's environment: the other scenarios count exact earnings and have a single worker owner.
        for key in ["CAMPUSGRID_SPOT_CHECK_RATE", "CAMPUSGRID_PROBATION_RESULTS", "CAMPUSGRID_FUND_SHARE"] where env[key] == nil { env[key] = "0" }
        return env
    }

    /// Starts a process of the `campusgrid` binary and remembers it for `shutdown()`.
    /// `launcher` replaces the grid's own (`TestGrid.launcher`), e.g. to run a worker as another user.
    public func spawn(_ name: String, _ arguments: [String], extraEnvironment: [String: String] = [:], launcher: [String]? = nil) throws
        -> ManagedProcess
    {
        var env = environment
        for (k, v) in extraEnvironment { env[k] = v }
        let prefix = launcher ?? self.launcher
        // A manager or worker stops itself once this test process has ended, even when it was killed from outside
        // (SIGKILL, a timeout) and never got to `shutdown()`: no grid outlives the run that started it.
        var arguments = arguments
        if let command = arguments.first, ["manager", "tracker", "worker", "peer"].contains(command), !arguments.contains("--parent-pid") {
            arguments += ["--parent-pid", "\(getpid())"]
        }
        let p = try ManagedProcess(
            name: name, executable: prefix.first ?? CampusGridBinary.path,
            arguments: prefix.isEmpty ? arguments : Array(prefix.dropFirst()) + [CampusGridBinary.path] + arguments, environment: env,
            logDirectory: root)
        lock.lock()
        processes.append(p)
        lock.unlock()
        return p
    }

    /// Remembers a process started elsewhere (a browser driver, say) so that `shutdown()` stops it too, by its PID.
    @discardableResult
    public func adopt(_ p: ManagedProcess) -> ManagedProcess {
        lock.lock()
        processes.append(p)
        lock.unlock()
        return p
    }

    /// Starts the manager (on the same data folder each time) and waits for its ready line. It names
    /// `TestGrid.adminName` an admin; `extra` adds manager options.
    @discardableResult
    public func startManager(
        leaseSeconds: Double = 3, gridPort: Int = 0, httpPort: Int = 0, extraEnvironment: [String: String] = [:], extra: [String] = []
    ) throws -> ManagedProcess {
        let m = try spawnManager(leaseSeconds: leaseSeconds, gridPort: gridPort, httpPort: httpPort, extraEnvironment: extraEnvironment, extra: extra)
        return try managerReady(m, line: m.nextLine(timeout: 60))
    }

    /// `startManager`, waited for without holding a thread (see `ManagedProcess.nextLine(timeout:) async`).
    @discardableResult
    public func startManager(
        leaseSeconds: Double = 3, gridPort: Int = 0, httpPort: Int = 0, extraEnvironment: [String: String] = [:], extra: [String] = []
    ) async throws -> ManagedProcess {
        let m = try spawnManager(leaseSeconds: leaseSeconds, gridPort: gridPort, httpPort: httpPort, extraEnvironment: extraEnvironment, extra: extra)
        return try managerReady(m, line: await m.nextLine(timeout: 60))
    }

    private func spawnManager(leaseSeconds: Double, gridPort: Int, httpPort: Int, extraEnvironment: [String: String], extra: [String]) throws
        -> ManagedProcess
    {
        try spawn(
            "manager-\(processes.count)",
            [
                "manager", "--data-dir", root + "/manager", "--host", "127.0.0.1", "--port", "\(gridPort)", "--dashboard-port", "\(httpPort)",
                "--lease-seconds", "\(leaseSeconds)", "--admin", Self.adminName, "--json",
            ] + extra, extraEnvironment: extraEnvironment)
    }

    private func managerReady(_ m: ManagedProcess, line: String?) throws -> ManagedProcess {
        guard let line, let ready = try? JSONDecoder().decode([String: JSONValue].self, from: Data(line.utf8)),
            case .number(let g)? = ready["grid_port"], case .number(let h)? = ready["http_port"]
        else {
            throw TestGridError("the manager did not become ready:\n\(m.errorLog.suffix(3000))")
        }
        self.gridPort = Int(g)
        self.httpPort = Int(h)
        if case .bool(let t)? = ready["tls"] { tls = t } else { tls = false }
        manager = m
        return m
    }

    /// Creates an account and returns a client logged in as it.
    public func user(_ name: String, password: String = "correct horse battery") async throws -> GridClient {
        var client = GridClient(baseURL: baseURL, caCertificatePEM: caPEM)
        client.token = try await client.register(name, password: password).token
        return client
    }

    /// A client logged in as the grid's admin (`TestGrid.adminName`, created on first use): admin routes such as the
    /// ledger check refuse ordinary users.
    public func admin() async throws -> GridClient {
        if let known = lock.withLock({ adminClient }) { return known }
        let client = try await user(Self.adminName)
        lock.withLock { adminClient = client }
        return client
    }

    /// Writes a join token to a file only this user can read, for `worker --token-file`; returns its path.
    public func tokenFile(_ token: String, name: String = "join-token-\(UUID().uuidString.prefix(8))") throws -> String {
        let path = root + "/" + name
        guard FileManager.default.createFile(atPath: path, contents: Data((token + "\n").utf8), attributes: [.posixPermissions: 0o600]) else {
            throw TestGridError("cannot write \(path)")
        }
        return path
    }

    /// Starts a worker earning for `owner` and waits until it registered.
    @discardableResult
    public func startWorker(
        _ name: String, owner: GridClient, cpus: Int = 2, memoryGb: Int = 4, extra: [String] = [], dataDirectory: String? = nil,
        extraEnvironment: [String: String] = [:]
    ) async throws -> ManagedProcess {
        let created = try await owner.createToken(kind: "worker")
        // On a TLS grid the join string (TOKEN@sha256:…) pins the manager's CA.
        let token = created.join ?? created.token
        return try await startWorker(
            name, token: token, cpus: cpus, memoryGb: memoryGb, extra: extra, dataDirectory: dataDirectory, extraEnvironment: extraEnvironment)
    }

    public func startWorker(
        _ name: String, token: String, cpus: Int = 2, memoryGb: Int = 4, extra: [String] = [], dataDirectory: String? = nil,
        extraEnvironment: [String: String] = [:]
    ) throws -> ManagedProcess {
        let w = try spawnWorker(name, token: token, cpus: cpus, memoryGb: memoryGb, extra: extra, dataDirectory: dataDirectory, extraEnvironment: extraEnvironment)
        guard w.nextLine(timeout: 60) != nil else {
            throw TestGridError("worker \(name) did not register:\n\(w.errorLog.suffix(3000))")
        }
        return w
    }

    /// `startWorker(_:token:…)`, waited for without holding a thread (a worker probes its sandbox tiers first, which
    /// takes seconds on a loaded machine).
    public func startWorker(
        _ name: String, token: String, cpus: Int = 2, memoryGb: Int = 4, extra: [String] = [], dataDirectory: String? = nil,
        extraEnvironment: [String: String] = [:]
    ) async throws -> ManagedProcess {
        let w = try spawnWorker(name, token: token, cpus: cpus, memoryGb: memoryGb, extra: extra, dataDirectory: dataDirectory, extraEnvironment: extraEnvironment)
        guard await w.nextLine(timeout: 60) != nil else {
            throw TestGridError("worker \(name) did not register:\n\(w.errorLog.suffix(3000))")
        }
        return w
    }

    private func spawnWorker(
        _ name: String, token: String, cpus: Int, memoryGb: Int, extra: [String], dataDirectory: String?, extraEnvironment: [String: String]
    ) throws -> ManagedProcess {
        try spawn(
            name,
            [
                "worker", "-m", managerAddress, "--token-file", try tokenFile(token), "--data-dir", dataDirectory ?? root + "/\(name)", "-n", name, "--cpus", "\(cpus)",
                "--memory", "\(memoryGb)", "--json",
            ] + extra, extraEnvironment: extraEnvironment)
    }

    /// Runs the CLI to completion (bounded by `timeout`), against this grid, as `token`'s owner.
    public func cli(_ arguments: [String], token: String? = nil, stdin: String? = nil, timeout: Double = 120) throws -> CLIResult {
        let run = try startCLI(arguments, token: token, stdin: stdin)
        let deadline = Date().addingTimeInterval(timeout)
        while run.process.isRunning && Date() < deadline { usleep(10_000) }
        return run.finish()
    }

    /// `cli`, waited for without holding a thread (tests run in parallel on a pool as wide as the machine's cores).
    public func cli(_ arguments: [String], token: String? = nil, stdin: String? = nil, timeout: Double = 120) async throws -> CLIResult {
        let run = try startCLI(arguments, token: token, stdin: stdin)
        let deadline = Date().addingTimeInterval(timeout)
        while run.process.isRunning && Date() < deadline { try? await Task.sleep(for: .milliseconds(10)) }
        let readDeadline = Date().addingTimeInterval(5)
        while !run.drained && Date() < readDeadline { try? await Task.sleep(for: .milliseconds(10)) }
        return run.finish()
    }

    private func startCLI(_ arguments: [String], token: String?, stdin: String?) throws -> CLIRun {
        var env = environment
        env["CAMPUSGRID_MANAGER"] = baseURL
        env["CAMPUSGRID_TOKEN"] = token
        let p = Process()
        p.executableURL = URL(fileURLWithPath: launcher.first ?? CampusGridBinary.path)
        p.arguments = launcher.isEmpty ? arguments : Array(launcher.dropFirst()) + [CampusGridBinary.path] + arguments
        p.environment = env
        let out = Pipe()
        let err = Pipe()
        p.standardOutput = out
        p.standardError = err
        let input = Pipe()
        p.standardInput = input
        try p.run()
        if let stdin { input.fileHandleForWriting.write(Data(stdin.utf8)) }
        try? input.fileHandleForWriting.close()
        // Read both pipes while waiting, so a chatty child never blocks on a full pipe.
        let run = CLIRun(process: p)
        let t1 = Thread { run.outData.set(out.fileHandleForReading.readDataToEndOfFile()) }
        let t2 = Thread { run.errData.set(err.fileHandleForReading.readDataToEndOfFile()) }
        t1.start()
        t2.start()
        return run
    }

    /// GETs a path of the manager's HTTP server; returns the status and body.
    public func httpGet(_ path: String, token: String? = nil) async throws -> (status: Int, body: String) {
        var request = URLRequest(url: URL(string: baseURL + path)!)
        if let token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        let (data, response) = try await URLSession.shared.data(for: request)
        return ((response as? HTTPURLResponse)?.statusCode ?? 0, String(decoding: data, as: UTF8.self))
    }

    /// Stops everything this grid started (SIGTERM now; SIGKILL to what is left after 10 s) and removes its folder.
    /// Called from `defer` in async tests, so it returns at once: the waiting happens on a thread of its own, never on
    /// the pool every test shares (where a few grids stopping at once stalled every other test's timers and links).
    /// Runs `action` once the grid's processes have exited at `shutdown`: e.g. stopping the Podman service its workers
    /// run jobs on, which must outlive their last container removal (a service stopped mid-removal left a container
    /// "Removing" that broke the host's container list).
    public func afterShutdown(_ action: @escaping @Sendable () -> Void) {
        lock.withLock { afterExit.append(action) }
    }

    public func shutdown(keepFiles: Bool = false) {
        lock.lock()
        let all = processes
        processes = []
        let then = afterExit
        afterExit = []
        lock.unlock()
        for p in all.reversed() { p.signal(SIGTERM) }
        let root = root
        Thread.detachNewThread {
            for p in all.reversed() { p.waitForExit(timeout: 10) }
            for action in then { action() }
            // CAMPUSGRID_TEST_KEEP_FILES=1 keeps every grid's folder (its processes' logs) for a post-mortem.
            if !keepFiles && ProcessInfo.processInfo.environment["CAMPUSGRID_TEST_KEEP_FILES"] != "1" {
                try? FileManager.default.removeItem(atPath: root)
            }
        }
    }

    /// Logs of every process, for a failing test's message.
    public func logs() -> String {
        lock.lock()
        defer { lock.unlock() }
        return processes.map { "==== \($0.name)\n\($0.errorLog.suffix(4000))" }.joined(separator: "\n")
    }

    /// Every log line of every process that contains one of `needles`, for a failing test's message when the line
    /// that explains it may be older than `logs()` keeps.
    public func logs(matching needles: [String]) -> String {
        lock.lock()
        defer { lock.unlock() }
        return processes.map { p in
            let lines = p.errorLog.split(separator: "\n").filter { line in needles.contains { line.contains($0) } }
            return "==== \(p.name)\n" + lines.suffix(200).joined(separator: "\n")
        }.joined(separator: "\n")
    }
}

/// A CLI process being run: its output is read by two threads into `outData` and `errData`.
final class CLIRun: @unchecked Sendable {
    // Safe: `process` is only queried and reaped; the data boxes lock themselves.
    let process: Process
    let outData = LockedData()
    let errData = LockedData()
    init(process: Process) { self.process = process }

    /// Both pipes have been read to their end.
    var drained: Bool { outData.get() != nil && errData.get() != nil }

    /// Kills the process if it still runs, reaps it and returns what it printed (pipes waited for up to 5 s).
    func finish() -> CLIResult {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        let readDeadline = Date().addingTimeInterval(5)
        while !drained && Date() < readDeadline { usleep(10_000) }
        return CLIResult(
            status: process.terminationStatus, stdout: String(decoding: outData.get() ?? Data(), as: UTF8.self),
            stderr: String(decoding: errData.get() ?? Data(), as: UTF8.self))
    }
}

final class LockedData: @unchecked Sendable {
    // Safe: all access goes through `lock`.
    private let lock = NSLock()
    private var value: Data?
    func set(_ d: Data) {
        lock.lock()
        value = d
        lock.unlock()
    }
    func get() -> Data? {
        lock.lock()
        defer { lock.unlock() }
        return value
    }
}

public struct TestGridError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Polls job `id` as `client` sees it until it is in one of `states`, within `timeout` seconds; throws with its last
/// state when it never is.
public func waitForJob(
    _ client: GridClient, _ id: JobID, in states: Set<JobState>, timeout: Double = 60, interval: Double = 0.1
) async throws -> API.JobStatus {
    var last: API.JobStatus?
    let reached = try await eventually(timeout: timeout, interval: interval) {
        last = try await client.job(id)
        return states.contains(last!.state)
    }
    guard reached, let last else { throw TestGridError("job \(id) never reached \(states); last: \(String(describing: last?.state))") }
    return last
}

/// Polls `condition` every `interval` seconds until it holds or `timeout` passes; returns whether it held.
public func eventually(timeout: Double = 30, interval: Double = 0.1, _ condition: () async throws -> Bool) async rethrows -> Bool {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if try await condition() { return true }
        try? await Task.sleep(for: .milliseconds(Int(interval * 1000)))
    }
    return try await condition()
}
