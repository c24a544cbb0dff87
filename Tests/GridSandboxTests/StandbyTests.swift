import CGridSpawn
import Foundation
import GridCore
import Testing

@testable import GridSandbox

#if canImport(Glibc)
import Glibc
#endif

/// A job's first process forked ahead into its cgroup (issue 17): what it holds while it waits, how it ends when it
/// is not used, and how a bad exec request fails. The bwrap tier's hostile tests run every job from a standby
/// (`SandboxHarness`), so the limits and the isolation of that path are proven there.
@Suite(.serialized)
struct StandbyTests {
    func runner() throws -> BwrapRunner {
        var c = BwrapRunner.Configuration(python: SandboxHarness.python)
        c.limits = RunnerLimits(maxProcesses: 64)
        return try BwrapRunner(configuration: c)
    }

    /// What `/proc/PID/fd` of `pid` points at.
    func descriptors(of pid: pid_t) -> [String] {
        let dir = "/proc/\(pid)/fd"
        return ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).compactMap {
            try? FileManager.default.destinationOfSymbolicLink(atPath: dir + "/" + $0)
        }
    }

    func alive(_ pid: pid_t) -> Bool {
        guard kill(pid, 0) == 0 else { return false }
        // A zombie is gone for our purpose.
        let stat = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? ""
        return !stat.contains(") Z ")
    }

    @Test func aStandbyWaitsInItsOwnCgroupHoldingNoneOfTheWorkersDescriptors() throws {
        // A socket of the worker's that is not close-on-exec: a standby may wait for minutes, and must not keep it
        // (or any connection the worker closes meanwhile) open.
        var pair: [Int32] = [-1, -1]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair) == 0)
        defer { pair.forEach { close($0) } }
        let leaky = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(pair[0])")
        let r = try runner()
        defer { r.standbys.close() }
        try r.standbys.prepare()
        let pid = try #require(r.standbys.readyPid)
        // A made standby is ready: it joined its cgroup and closed what it inherited.
        let held = descriptors(of: pid)
        #expect(!held.contains(leaky), "the standby holds the worker's socket: \(held)")
        // stdin/out/err as inherited, /dev/null, the request socket, the report pipe, the job's output pipe; and a
        // root worker's, its sandbox's user namespace (`SandboxUser`).
        #expect(held.count <= (r.switchesUser ? 8 : 7), "\(held)")
        #expect(held.filter { $0.hasPrefix("user:[") }.count == (r.switchesUser ? 1 : 0), "\(held)")
        // Nor the worker's standard output and error (a log pipe of a test grid, a terminal): the job's pipe instead.
        let ownOut = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/2")
        if ownOut != "/dev/null" {
            #expect(try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/1") != ownOut)
            #expect(try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/2") != ownOut)
        }
        let cgroups = try String(contentsOfFile: "/proc/\(pid)/cgroup", encoding: .utf8)
        #expect(cgroups.contains(r.standbyCgroupPrefix), "\(cgroups)")
    }

    @Test func aDiscardedStandbyLeavesNoProcessAndNoCgroup() throws {
        let r = try runner()
        try r.standbys.prepare()
        let pid = try #require(r.standbys.readyPid)
        #expect(alive(pid))
        r.standbys.close()
        #expect(!alive(pid))
        #expect(standbyCgroups(prefix: r.standbyCgroupPrefix).isEmpty)
        // A closed slot makes no more.
        r.standbys.refill()
        try r.standbys.prepare()
        #expect(r.standbys.readyPid == nil)
    }

    @Test func aNewRunnerRemovesTheEmptyStandbyCgroupsOfWorkersThatAreGone() throws {
        // A pid no process has (pid_max is 4194304 at most): a worker that exited and left its standby's cgroup.
        let gone: pid_t = 4_194_000
        #expect(kill(gone, 0) != 0 && errno == ESRCH)
        let staleName = "standby-\(gone)-t\(UUID().uuidString.prefix(6))-x"
        let liveName = "standby-\(getpid())-t\(UUID().uuidString.prefix(6))-x"
        let parents = layoutParents()
        for parent in parents {
            #expect(mkdir(parent + "/" + staleName, 0o755) == 0)
            #expect(mkdir(parent + "/" + liveName, 0o755) == 0)
        }
        defer { for parent in parents { rmdir(parent + "/" + liveName) } }
        let r = try runner()
        defer { r.standbys.close() }
        #expect(standbyCgroups(prefix: staleName).isEmpty)
        // This process is alive: its cgroups are another runner's, and stay.
        #expect(standbyCgroups(prefix: liveName).count == parents.count)
    }

    @Test func anExecThatFailsSaysWhyAndTheStandbyIsSpent() throws {
        let prefix = "standby-\(getpid())-t\(UUID().uuidString.prefix(6))-"
        let s = try Standby.make(root: "/sys/fs/cgroup", parent: nil, name: prefix + "a", pids: 16)
        let missing = "/nonexistent/\(UUID().uuidString)"
        #expect {
            try s.go(path: missing, arguments: [], environment: [:], directory: "/", limits: [])
        } throws: { ($0 as? SpawnError)?.errno == ENOENT }
        // A second request is refused: a standby serves one job.
        #expect(throws: SpawnError.self) { try s.go(path: "/bin/true", arguments: [], environment: [:], directory: "/", limits: []) }
        _ = s.process.waitForExit(seconds: 5)
        #expect(!alive(s.process.pid))
        s.discard()
        #expect(standbyCgroups(prefix: prefix).isEmpty)
    }

    @Test func aRequestWithANulByteIsRefusedAndRunsNothing() throws {
        let prefix = "standby-\(getpid())-t\(UUID().uuidString.prefix(6))-"
        let s = try Standby.make(root: "/sys/fs/cgroup", parent: nil, name: prefix + "b", pids: 16)
        defer { s.discard() }
        #expect {
            try s.go(path: "/bin/sh", arguments: ["-c", "touch /tmp/should-not\0exist"], environment: [:], directory: "/", limits: [])
        } throws: { ($0 as? SpawnError)?.errno == EINVAL }
        // Its socket closed unused: it exits having run nothing.
        let status = s.process.waitForExit(seconds: 5)
        #expect(status == 0)
    }

    /// Everything `fd` gives until its end (bounded: 1 MiB).
    func readAll(_ fd: Int32) -> String {
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while out.count < 1 << 20 {
            let n = read(fd, &buffer, buffer.count)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { break }
            out += buffer[0..<n]
        }
        return String(decoding: out, as: UTF8.self)
    }

    @Test func rlimitValuesUpToUInt64MaxReachTheExec() throws {
        // RLIM_INFINITY is UInt64.max: the child's parser must take the largest value, and refuse one past it.
        let prefix = "standby-\(getpid())-t\(UUID().uuidString.prefix(6))-"
        let s = try Standby.make(root: "/sys/fs/cgroup", parent: nil, name: prefix + "c", pids: 16)
        try s.go(
            path: "/bin/sh", arguments: ["-c", "ulimit -c; ulimit -n"], environment: ["PATH": "/usr/bin:/bin"], directory: "/",
            limits: [grid_rlimit(resource: RLimit.core, value: UInt64.max), grid_rlimit(resource: RLimit.nofile, value: 77)])
        let output = readAll(s.outputFD)
        #expect(output == "unlimited\n77\n", "\(output)")
        #expect(s.process.waitForExit(seconds: 10) == 0)
        close(s.outputFD)
        s.cgroup.remove()

        let t = try Standby.make(root: "/sys/fs/cgroup", parent: nil, name: prefix + "d", pids: 16)
        defer { t.discard() }
        var request = Standby.request(
            path: "/bin/true", arguments: [], environment: [:], directory: "/", limits: [grid_rlimit(resource: RLimit.core, value: 0)],
            newSession: true)
        // The last value, 0, becomes UInt64.max + 1.
        request.removeLast(2)
        request += Array("18446744073709551616".utf8) + [0]
        #expect { try t.send(request) } throws: { ($0 as? SpawnError)?.errno == EINVAL }
    }

    @Test func theRequestCarriesEveryFieldInOrder() {
        let bytes = Standby.request(
            path: "/usr/bin/bwrap", arguments: ["--a", "b"], environment: ["Z": "1", "A": "x=y"], directory: "/data/jobs/1-1",
            limits: [grid_rlimit(resource: 4, value: 0), grid_rlimit(resource: 1, value: UInt64.max)], newSession: true)
        let fields = bytes.split(separator: 0, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
        #expect(
            fields == [
                "/usr/bin/bwrap", "/data/jobs/1-1", "1", "3", "/usr/bin/bwrap", "--a", "b", "2", "A=x=y", "Z=1", "2", "4", "0", "1",
                String(UInt64.max), "",
            ])
    }

    @Test func aJobFromAStandbyGetsOnlyItsOwnEnvironmentAndLimits() async throws {
        let h = try await SandboxHarness.make(.bwrap, limits: RunnerLimits(maxFileBytes: 1 << 20, maxOpenFiles: 77, maxProcesses: 64))
        let r = try await h.run(
            """
            import os, resource
            print("ENV", sorted(k for k in os.environ if k.startswith("CAMPUSGRID")))
            print("NOFILE", resource.getrlimit(resource.RLIMIT_NOFILE)[0])
            print("FSIZE", resource.getrlimit(resource.RLIMIT_FSIZE)[0])
            print("SID", os.getsid(0) == os.getpid() or os.getsid(0) != 0)
            print("CWD", os.getcwd())
            """)
        #expect(r.report.outcome == .completed, "\(r.output)")
        #expect(r.output.contains("NOFILE 77"), "\(r.output)")
        #expect(r.output.contains("FSIZE \(1 << 20)"), "\(r.output)")
        #expect(r.output.contains("CWD /job"), "\(r.output)")
        // The worker's run marker and nothing of the worker's environment reach the job (bwrap clears it).
        #expect(!r.output.contains("CAMPUSGRID_RUN"), "\(r.output)")
    }

    /// The folders job and standby cgroups are made in, one per controller.
    func layoutParents() -> [String] {
        CgroupLayout.make(
            version: JobCgroup.hostVersion(root: "/sys/fs/cgroup"), root: "/sys/fs/cgroup",
            selfCgroup: (try? String(contentsOfFile: "/proc/self/cgroup", encoding: .utf8)) ?? "", name: "x"
        ).parents
    }

    /// Standby cgroups whose names begin with `prefix`, in every controller.
    func standbyCgroups(prefix: String) -> [String] {
        layoutParents().flatMap { parent in
            ((try? FileManager.default.contentsOfDirectory(atPath: parent)) ?? []).filter { $0.hasPrefix(prefix) }.map { parent + "/" + $0 }
        }
    }
}
