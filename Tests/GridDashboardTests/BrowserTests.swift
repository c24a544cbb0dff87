import Foundation
import GridClient
import GridCore
import GridSandbox
import GridTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// The dashboard in a real browser: headless Chromium through chromedriver, against a real manager and two workers.
@Suite(.serialized) struct BrowserTests {
    @Test(.timeLimit(.minutes(10)))
    func aStudentRegistersSubmitsAndWatchesTheirJobLiveAcrossAManagerRestart() async throws {
        let chromium = try #require(
            DashboardTools.executable(["/usr/bin/chromium", "/usr/bin/chromium-browser"]), "chromium is missing: run scripts/setup")
        let chromedriver = try #require(
            DashboardTools.executable(["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]), "chromedriver is missing: run scripts/setup")
        let grid = try TestGrid(label: "browser")
        defer { grid.shutdown() }
        // Over HTTPS, as a campus runs it: Chromium is told to trust the manager's CA (an NSS database in the HOME the
        // browser runs with), and nothing else.
        try await grid.startManager(leaseSeconds: 10, extra: ["--tls"])
        let nss = grid.root + "/.pki/nssdb"
        try FileManager.default.createDirectory(atPath: nss, withIntermediateDirectories: true)
        for args in [
            ["-N", "--empty-password", "-d", "sql:" + nss],
            ["-A", "-t", "C,,", "-n", "campusgrid-test-ca", "-i", grid.root + "/manager/ca.pem", "-d", "sql:" + nss],
        ] {
            let certutil = try DashboardTools.Tool("/usr/bin/certutil", args, outputPath: grid.root + "/certutil.log")
            #expect(try await certutil.wait(timeout: 60) == 0, "certutil \(args.first ?? ""): \(certutil.output)")
        }
        #expect(grid.baseURL.hasPrefix("https://"))
        let wendy = try await grid.user("wendy")
        let webPort = DashboardTools.freePort()
        try await grid.startWorker("lab-pc-1", owner: wendy, cpus: 2, memoryGb: 4, extra: ["--web-port", "\(webPort)", "--web-host", "127.0.0.1"])
        try await grid.startWorker("lab-pc-2", owner: wendy, cpus: 2, memoryGb: 4)

        let driverPort = try await grid.startChromedriver(chromedriver)

        let control = grid.root + "/browser-control"
        try FileManager.default.createDirectory(atPath: control, withIntermediateDirectories: true)
        let artifacts = DashboardTools.artifacts
        let script = DashboardTools.repositoryRoot.appendingPathComponent("Tests/GridDashboardTests/browser_flow.py").path
        let flow = try DashboardTools.Tool(
            DashboardTools.python, [script],
            environment: [
                "DASH_BASE": grid.baseURL, "DASH_DRIVER": "http://127.0.0.1:\(driverPort)", "DASH_ARTIFACTS": artifacts.path,
                "DASH_CONTROL": control, "DASH_WORKER_PAGE": "http://127.0.0.1:\(webPort)/", "DASH_CHROMIUM": chromium,
            ],
            outputPath: grid.root + "/browser-flow.log")
        var restarted = false
        let status = try await flow.wait(timeout: 480) {
            // The script asks for a manager restart in the middle of a running job; same ports, same data.
            if !restarted, FileManager.default.fileExists(atPath: control + "/restart") {
                restarted = true
                let old = try #require(grid.manager)
                old.signal(SIGTERM)
                old.waitForExit(timeout: 20)
                #expect(!old.isRunning, "the manager did not stop on SIGTERM")
                try grid.startManager(leaseSeconds: 10, gridPort: grid.gridPort, httpPort: grid.httpPort, extra: ["--tls"])
                _ = FileManager.default.createFile(atPath: control + "/restarted", contents: Data())
            }
        }
        try? flow.output.write(to: artifacts.appendingPathComponent("browser-flow.log"), atomically: true, encoding: .utf8)
        #expect(status == 0, "browser flow failed:\n\(flow.output.suffix(6000))\n\(grid.logs().suffix(6000))")
        #expect(restarted, "the flow never asked for the manager restart")
        for page in ["overview", "workers", "leaderboard", "login", "register", "submit", "jobs", "my-jobs", "job-running", "job-completed", "account"] {
            for width in ["desktop", "phone"] {
                #expect(FileManager.default.fileExists(atPath: artifacts.appendingPathComponent("\(page)-\(width).png").path), "\(page)-\(width)")
            }
        }
    }
}

extension TestGrid {
    /// Starts a helper program (not `campusgrid`) that `shutdown()` stops with the rest, by its PID.
    func spawnTool(_ name: String, executable: String, _ arguments: [String]) throws -> ManagedProcess {
        try adopt(ManagedProcess(name: name, executable: executable, arguments: arguments, environment: environment, logDirectory: root))
    }

    /// Starts chromedriver on a free loopback port and waits (bounded) until it says it listens; returns the port.
    func startChromedriver(_ executable: String) async throws -> Int {
        let port = DashboardTools.freePort()
        let driver = try spawnTool("chromedriver", executable: executable, ["--port=\(port)", "--allowed-ips=127.0.0.1"])
        // chromedriver says on standard output when it listens.
        var said: [String] = []
        for _ in 0..<5 {
            guard let line = await driver.nextLine(timeout: 60) else { break }
            said.append(line)
            if line.contains("started successfully") { return port }
        }
        throw DashboardToolError("chromedriver did not start: \(said) \(driver.errorLog.suffix(2000))")
    }
}

struct DashboardToolError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
