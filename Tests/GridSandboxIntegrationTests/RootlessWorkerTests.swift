import Foundation
import GridCore
import GridSandbox

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import GridTestSupport
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Issue 12, acceptance 1 and 2: a real worker run by an ordinary user (`campusgrid-test`, made by scripts/setup), and
/// one inside a network namespace, pick a rootless tier instead of restricted, and hold the hostile suite: jobs from
/// another user, through the CLI, against a real manager.
@Suite(.serialized)
struct RootlessWorkerTests {
    @Test("a worker run by an ordinary user picks bwrap without root and holds hostile jobs")
    func ordinaryUser() async throws {
        let user = try #require(TestAccount.lookup(), "no user \(TestAccount.name): run scripts/setup")
        let grid = try TestGrid(label: "rootless")
        defer { grid.shutdown() }
        let suite = try HostileSuite(grid: grid, account: user, workerLauncher: ["/usr/sbin/runuser", "-u", TestAccount.name, "--"])
        // A port the kernel found free, not a random one: 32768-60999 are its ephemeral ports here, and a random pick
        // there once collided with a connection of another test (the worker could not bind its status page).
        suite.webPort = freeTCPPort()
        try await onThread { try suite.run() }
        // The status page and the dashboard's workers page show the tier and why the stronger ones were skipped.
        let page = String(decoding: try await URLSession.shared.data(from: URL(string: "http://127.0.0.1:\(suite.webPort!)/")!).0, as: UTF8.self)
        #expect(page.contains("bwrap, rootless, rlimits") && page.contains("Stronger tiers skipped") && page.contains("need root"), "\(page)")
        let dashboard = String(decoding: try await URLSession.shared.data(from: URL(string: grid.baseURL + "/workers")!).0, as: UTF8.self)
        #expect(dashboard.contains("bwrap, rootless, rlimits") && dashboard.contains("stronger tiers skipped") && dashboard.contains("need root"))
        #expect(suite.workerLog.contains("bwrap, rootless, rlimits"), "\(suite.workerLog.suffix(3000))")
        #expect(suite.workerLog.contains("need root (this worker runs as uid \(user.uid))"), "\(suite.workerLog.suffix(3000))")
    }

    @Test("a worker inside a network namespace (no /sys/fs/cgroup) uses the rootless path, not restricted")
    func insideANetworkNamespace() async throws {
        let user = try #require(TestAccount.lookup(), "no user \(TestAccount.name): run scripts/setup")
        let name = "cgtest-\(UUID().uuidString.prefix(8).lowercased())"
        try sh("/usr/sbin/ip", "netns", "add", name)
        defer { _ = try? sh("/usr/sbin/ip", "netns", "delete", name) }
        try sh("/usr/sbin/ip", "netns", "exec", name, "/usr/sbin/ip", "link", "set", "lo", "up")
        let grid = try TestGrid(label: "netns")
        defer { grid.shutdown() }
        // The manager, the worker and the CLI all run in the namespace, on its own 127.0.0.1.
        grid.launcher = ["/usr/sbin/ip", "netns", "exec", name]
        let suite = try HostileSuite(
            grid: grid, account: user, workerLauncher: grid.launcher + ["/usr/sbin/runuser", "-u", TestAccount.name, "--"])
        try await onThread { try suite.run() }
        #expect(suite.workerLog.contains("/sys/fs/cgroup is empty"), "\(suite.workerLog.suffix(3000))")
        #expect(suite.workerLog.contains("bwrap, rootless, rlimits"))
    }

    @Test("a root worker inside a network namespace uses bwrap with rlimits, its jobs running as uid 65534 on the host")
    func rootInsideANetworkNamespace() async throws {
        let user = try #require(TestAccount.lookup(), "no user \(TestAccount.name): run scripts/setup")
        let name = "cgtest-\(UUID().uuidString.prefix(8).lowercased())"
        try sh("/usr/sbin/ip", "netns", "add", name)
        defer { _ = try? sh("/usr/sbin/ip", "netns", "delete", name) }
        try sh("/usr/sbin/ip", "netns", "exec", name, "/usr/sbin/ip", "link", "set", "lo", "up")
        let grid = try TestGrid(label: "netns-root")
        defer { grid.shutdown() }
        grid.launcher = ["/usr/sbin/ip", "netns", "exec", name]
        let suite = try HostileSuite(grid: grid, account: user, workerLauncher: grid.launcher)
        suite.workerIsRoot = true
        try await onThread { try suite.run() }
        #expect(suite.workerLog.contains("/sys/fs/cgroup is empty"), "\(suite.workerLog.suffix(3000))")
        #expect(suite.workerLog.contains("sandbox: bwrap, rlimits"), "\(suite.workerLog.suffix(3000))")
        // Its sandboxes run as 65534 (`SandboxUser`), so RLIMIT_NPROC binds them as it binds an ordinary user's.
        #expect(suite.workerLog.contains("uid 65534 on this machine too") && !suite.workerLog.contains("RLIMIT_NPROC does not bind"))
    }

    @Test(
        "an ordinary user's worker with --sandbox podman starts its own Podman service and runs jobs in rootless containers")
    func rootlessPodman() async throws {
        let user = try #require(TestAccount.lookup(), "no user \(TestAccount.name): run scripts/setup")
        let grid = try TestGrid(label: "rootless-podman")
        defer { grid.shutdown() }
        // The user's Podman needs a runtime folder of its own and the sandbox image in its own storage.
        let runtime = grid.root + "/xdg"
        try FileManager.default.createDirectory(atPath: runtime, withIntermediateDirectories: true)
        try FileManager.default.setAttributes(
            [.ownerAccountID: NSNumber(value: user.uid), .groupOwnerAccountID: NSNumber(value: user.gid), .posixPermissions: 0o700], ofItemAtPath: runtime)
        let asUser = ["/usr/sbin/runuser", "-u", TestAccount.name, "--", "/usr/bin/env", "HOME=\(user.home)", "XDG_RUNTIME_DIR=\(runtime)"]
        if (try? sh(asUser[0], Array(asUser.dropFirst()) + ["podman", "image", "exists", PodmanService.image])) == nil {
            let tar = grid.root + "/image.tar"
            try sh("/usr/bin/podman", "save", "-o", tar, PodmanService.image)
            try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: tar)
            try sh(asUser[0], Array(asUser.dropFirst()) + ["podman", "load", "-i", tar])
        }
        let suite = try HostileSuite(grid: grid, account: user, workerLauncher: ["/usr/sbin/runuser", "-u", TestAccount.name, "--"])
        suite.sandboxFlags = ["--sandbox", "podman", "--image", PodmanService.image]
        suite.extraEnvironment = ["XDG_RUNTIME_DIR": runtime]
        suite.expectedTier = "oci"
        suite.expectedLabel = "rootless"
        // On cgroup v1 a rootless engine ignores resource limits (the label says so): only the isolation is checked.
        suite.only = ["net", "home", "write", "uid", "fds", "disk"]
        try await onThread { try suite.run() }
        #expect(suite.workerLog.contains("starting `podman system service`"), "\(suite.workerLog.suffix(3000))")
    }
}

/// The ordinary account the rootless tests run workers as.
struct TestAccount {
    static let name = "campusgrid-test"
    var uid: uid_t
    var gid: gid_t
    var home: String

    static func lookup() -> TestAccount? {
        guard let pw = getpwnam(name) else { return nil }
        return TestAccount(uid: pw.pointee.pw_uid, gid: pw.pointee.pw_gid, home: String(cString: pw.pointee.pw_dir))
    }
}

/// Runs a command to its end; throws when it fails.
@discardableResult
func sh(_ path: String, _ args: String...) throws -> String { try sh(path, args) }

@discardableResult
func sh(_ path: String, _ args: [String]) throws -> String { try runTool(path, args) }

/// The hostile suite against a real grid: a manager, one worker (run through `workerLauncher`), jobs from a user who
/// does not own the worker, every result read back through the CLI.
final class HostileSuite: @unchecked Sendable {
    // Safe: used by one test at a time.
    let grid: TestGrid
    let account: TestAccount
    let workerLauncher: [String]
    let id = UUID().uuidString.prefix(8)
    private(set) var workerLog = ""
    /// The worker's status page port, when it should have one.
    var webPort: Int?
    /// The worker runs as root (its folders stay root's); else as the test account, which owns them.
    var workerIsRoot = false
    /// The worker's sandbox flags, the tier and label it must report, and the jobs to run (nil = all).
    var sandboxFlags = ["--sandbox", "auto"]
    var expectedTier = "bwrap"
    var expectedLabel = "rlimits"
    var only: Set<String>?
    var extraEnvironment: [String: String] = [:]

    init(grid: TestGrid, account: TestAccount, workerLauncher: [String]) throws {
        self.grid = grid
        self.account = account
        self.workerLauncher = workerLauncher
    }

    func json(_ text: String) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any], "not JSON: \(text)")
    }

    func register(_ name: String) throws -> String {
        let r = try grid.cli(["register", "--username", name, "--password-stdin", "--json"], stdin: "correct horse battery\n")
        #expect(r.status == 0, "\(r.stderr)")
        return try #require(try json(r.stdout)["token"] as? String)
    }

    /// Makes `path` belong to the test account.
    func give(_ path: String, mode: Int) throws {
        try FileManager.default.setAttributes(
            [.ownerAccountID: NSNumber(value: account.uid), .groupOwnerAccountID: NSNumber(value: account.gid), .posixPermissions: mode], ofItemAtPath: path)
    }

    func run() throws {
        try grid.startManager()
        let ann = try register("ann")  // owns the laptop
        let bob = try register("bob")  // a stranger whose jobs it runs
        let joinToken = try #require(try json(try grid.cli(["token", "create", "--worker", "--json"], token: ann).stdout)["token"] as? String)

        // The worker's folders belong to the ordinary user; a secret waits in its home directory.
        let dataDir = grid.root + "/laptop"
        try FileManager.default.createDirectory(atPath: dataDir, withIntermediateDirectories: true)
        let tokenPath = dataDir + "/join-token"
        try Data((joinToken + "\n").utf8).write(to: URL(fileURLWithPath: tokenPath))
        if workerIsRoot {
            try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: tokenPath)
        } else {
            try give(dataDir, mode: 0o700)
            try give(tokenPath, mode: 0o600)
        }
        let ssh = account.home + "/.ssh"
        try FileManager.default.createDirectory(atPath: ssh, withIntermediateDirectories: true)
        try give(ssh, mode: 0o700)
        let planted = ssh + "/cg-planted-\(id)"
        try Data("PLANTED-SECRET-\(id)\n".utf8).write(to: URL(fileURLWithPath: planted))
        try give(planted, mode: 0o600)
        defer { try? FileManager.default.removeItem(atPath: planted) }

        let worker = try grid.spawn(
            "laptop",
            [
                "worker", "-m", grid.managerAddress, "--token-file", tokenPath, "--data-dir", dataDir, "-n", "laptop", "--cpus", "2", "--memory", "4",
                "--json", "--python", "/usr/bin/python3",
            ] + sandboxFlags + (webPort.map { ["--web-port", "\($0)"] } ?? []),
            extraEnvironment: ["CAMPUSGRID_ALLOW_UNSANDBOXED": "0", "HOME": account.home, "XDG_RUNTIME_DIR": "", "TMPDIR": "/tmp"].merging(
                extraEnvironment, uniquingKeysWith: { $1 }),
            launcher: workerLauncher)
        let ready = try #require(worker.nextLine(timeout: 90), "the worker did not register:\n\(worker.errorLog.suffix(3000))")
        let info = try json(ready)
        #expect(info["tier"] as? String == expectedTier, "\(ready)\n\(worker.errorLog.suffix(3000))")
        #expect((info["tier_label"] as? String)?.contains(expectedLabel) == true, "\(ready)")

        // The tier and the reasons appear in `workers --json`.
        let workers = try json(try grid.cli(["workers", "--json"], token: bob).stdout)
        let row = try #require((workers["workers"] as? [[String: Any]])?.first)
        let sandbox = try #require(row["sandbox"] as? [String: Any], "\(row)")
        #expect((sandbox["label"] as? String)?.contains(expectedLabel) == true)
        if sandboxFlags == ["--sandbox", "auto"] { #expect(!((sandbox["skipped"] as? [String]) ?? []).isEmpty) }
        #expect(row["unsandboxed"] as? Bool == false)

        let escapee = "cgescape\(id)"
        let marker = "cg-written-\(id)"
        // /dev too: bubblewrap's is a tmpfs of no size of its own, and an ordinary user's sandbox owned it.
        let writeTargets = [account.home, ssh, dataDir, grid.root, "/tmp", "/var/tmp", "/dev/shm", "/dev", "/etc", "/"]
        let allJobs: [(name: String, script: String, extra: [String])] = [
            (
                "net",
                """
                import socket
                try:
                    socket.create_connection(("127.0.0.1", \(grid.httpPort)), timeout=3)
                    print("CONNECTED")
                except OSError as e:
                    print("BLOCKED", e)
                try:
                    socket.getaddrinfo("example.com", 443)
                    print("RESOLVED")
                except OSError:
                    print("NO-DNS")
                """, []
            ),
            (
                "home",
                """
                import os
                for p in ["\(planted)", "\(tokenPath)"]:
                    try:
                        print("READ", open(p).read())
                    except OSError as e:
                        print("DENIED", p)
                for d in ["\(account.home)", "/home"]:
                    try:
                        print("LIST", d, os.listdir(d))
                    except OSError:
                        print("NOLIST", d)
                """, []
            ),
            (
                "write",
                """
                import os
                for d in [\(writeTargets.map { "\"\($0)\"" }.joined(separator: ", "))]:
                    try:
                        with open(os.path.join(d, "\(marker)"), "w") as f:
                            f.write("x")
                        print("WROTE", d)
                    except OSError:
                        print("DENIED", d)
                open("ok.txt", "w").write("ok")
                print("OK")
                """, []
            ),
            ("uid", "import os\nprint('UID', os.getuid(), os.geteuid(), os.getgid())\n", []),
            (
                "fds",
                """
                import os
                for fd in sorted(int(f) for f in os.listdir("/proc/self/fd")):
                    try:
                        print("FD", fd, os.readlink("/proc/self/fd/%d" % fd))
                    except OSError:
                        pass
                """, []
            ),
            ("bomb", HostileScripts.forkBomb, []),
            (
                "hog",
                """
                chunks = []
                for i in range(64):
                    chunks.append(bytearray(64 << 20))
                    for j in range(0, len(chunks[-1]), 4096):
                        chunks[-1][j] = 1
                print("SURVIVED")
                """, ["--ram", "1"]
            ),
            (
                // Blocks held in a folder of its own the worker's user may not enter (a rootless container's files are a
                // subordinate uid's): still the job's, and past its own disk limit (1 GB) it is stopped.
                "disk",
                """
                import os, time
                os.mkdir("hide", 0o700)
                # Two files under the 1 GB file-size cap, 1.5 GiB together.
                for name in ("a.bin", "b.bin"):
                    fd = os.open("hide/" + name, os.O_CREAT | os.O_WRONLY, 0o600)
                    os.posix_fallocate(fd, 0, 3 << 28)
                    os.close(fd)
                os.chmod("hide", 0o700)
                print("HIDDEN", flush=True)
                time.sleep(100)
                print("KEPT IT")
                """, ["--disk", "1"]
            ),
            (
                "escape",
                """
                import os, subprocess, sys, time
                child = '''
                import os, signal, sys, time
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
                if os.fork() == 0:
                    os.setsid()
                    open(sys.argv[2], "w").close()
                    while True: time.sleep(1)
                while True: time.sleep(1)
                '''
                # The child leads a session of its own (start_new_session); its child makes another.
                subprocess.Popen([sys.executable, "-c", child, "\(escapee)", "grandchild-up"], start_new_session=True)
                for _ in range(3000):
                    if os.path.exists("grandchild-up"): break
                    time.sleep(0.01)
                print("LEFT A CHILD" if os.path.exists("grandchild-up") else "NO GRANDCHILD", flush=True)
                """, []
            ),
        ]
        try FileManager.default.createDirectory(atPath: grid.root + "/scripts", withIntermediateDirectories: true)
        var ids: [String: Int] = [:]
        let jobs = allJobs.filter { only?.contains($0.name) ?? true }
        for job in jobs {
            let path = grid.root + "/scripts/\(job.name).py"
            try Data(job.script.utf8).write(to: URL(fileURLWithPath: path))
            let r = try grid.cli(["submit", path, "--name", job.name, "--minutes", "2", "--json"] + job.extra, token: bob)
            #expect(r.status == 0, "\(r.stderr)")
            ids[job.name] = try #require((try json(r.stdout)["job"] as? [String: Any])?["id"] as? Int)
        }
        var results: [String: (status: [String: Any], log: String)] = [:]
        let deadline = Date().addingTimeInterval(240)
        while results.count < jobs.count && Date() < deadline {
            for (name, id) in ids where results[name] == nil {
                let s = try json(try grid.cli(["status", "\(id)", "--json"], token: bob).stdout)
                if let state = s["state"] as? String, ["completed", "failed", "cancelled", "timed_out"].contains(state) {
                    results[name] = (s, try grid.cli(["logs", "\(id)"], token: bob).stdout)
                    if name == "escape" { #expect(Self.waitUntilGone(escapee), "the setsid escapee outlived its job") }
                }
            }
            usleep(300_000)
        }
        workerLog = worker.errorLog
        #expect(results.count == jobs.count, "jobs unfinished: \(Set(ids.keys).subtracting(results.keys))\n\(grid.logs().suffix(4000))")
        func check(_ name: String, _ body: ([String: Any], String) -> Void) {
            guard let r = results[name] else { return }
            body(r.status, r.log)
        }
        check("net") { s, log in
            #expect(log.contains("BLOCKED") && log.contains("NO-DNS") && !log.contains("CONNECTED") && !log.contains("RESOLVED"), "\(log)")
            #expect(s["tier"] as? String == expectedTier, "\(s)")
        }
        check("home") { _, log in
            #expect(!log.contains("PLANTED-SECRET") && !log.contains(joinToken), "\(log)")
            #expect(log.contains("DENIED \(planted)") && !log.split(separator: "\n").contains { $0.hasPrefix("LIST ") }, "\(log)")
        }
        check("write") { s, log in
            #expect(s["state"] as? String == "completed" && log.contains("OK"), "\(log)")
            // /tmp and /dev/shm are the sandbox's own bounded tmpfs, and a container's /dev and /var/tmp are too
            // (the host's are checked below). (The list reached Python quoted twice until now: every path was refused as a name
            // that does not exist, and this check held whatever the sandbox allowed.)
            #expect(log.contains("WROTE /tmp\n") && log.contains("DENIED /etc\n"), "\(log)")
            for d in writeTargets where d != "/tmp" && d != "/dev/shm" && !(expectedTier == "oci" && (d == "/dev" || d == "/var/tmp")) {
                #expect(!log.contains("WROTE \(d)\n"), "wrote \(d): \(log)")
            }
            for d in writeTargets { #expect(!FileManager.default.fileExists(atPath: d + "/" + marker), "\(d) was written on the host") }
        }
        check("uid") { _, log in #expect(log.contains("UID 65534 65534 65534"), "\(log)") }
        check("fds") { _, log in
            let leaked = log.split(separator: "\n").filter { line in
                let parts = line.split(separator: " ", maxSplits: 2)
                return parts.count == 3 && parts[0] == "FD" && (Int(parts[1]) ?? 0) > 2 && !parts[2].hasPrefix("/proc/")
            }
            #expect(log.contains("FD 1 ") && leaked.isEmpty, "\(log)")
        }
        check("bomb") { s, _ in
            #expect(s["state"] as? String == "failed")
            #expect((s["reason"] as? String)?.hasPrefix("too many processes") == true, "\(s)")
        }
        check("hog") { s, log in
            #expect(s["state"] as? String == "failed")
            #expect(s["reason"] as? String == "out of memory (limit 1 GB)", "\(s) \(log.suffix(300))")
            #expect(!log.contains("SURVIVED"))
        }
        check("escape") { s, log in #expect(log.contains("LEFT A CHILD"), "\(s) \(log)") }
        check("disk") { s, log in
            #expect(s["state"] as? String == "failed" && !log.contains("KEPT IT"), "\(s) \(log)")
            #expect((s["reason"] as? String)?.contains("disk limit reached") == true, "\(s)")
        }
        if let id = ids["disk"], results["disk"] != nil {
            // Its folder, the part the worker's user could not enter too, is gone once the run has ended.
            func left() -> [String] {
                ((try? FileManager.default.contentsOfDirectory(atPath: dataDir + "/jobs")) ?? []).filter { $0.hasPrefix("run-") && $0.hasSuffix("-\(id)-1") }
            }
            var gone = left().isEmpty
            for _ in 0..<300 where !gone {
                usleep(100_000)
                gone = left().isEmpty
            }
            #expect(gone, "the disk job's folder was left: \(left())")
        }
        if only?.contains("escape") ?? true { #expect(Self.hostProcesses(containing: escapee).isEmpty) }
    }

    static func waitUntilGone(_ marker: String) -> Bool {
        for _ in 0..<40 {
            if hostProcesses(containing: marker).isEmpty { return true }
            usleep(100_000)
        }
        return false
    }

    /// Host processes whose command line contains `marker`.
    static func hostProcesses(containing marker: String) -> [Int32] {
        ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap { e -> Int32? in
            guard let pid = Int32(e), pid != getpid(), let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline") else { return nil }
            return String(decoding: data, as: UTF8.self).contains(marker) ? pid : nil
        }
    }
}
