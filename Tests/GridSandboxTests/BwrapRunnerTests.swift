import Foundation
import GridCore
import Testing

@testable import GridSandbox

@Suite struct BwrapArgumentsTests {
    let args = BwrapRunner.arguments(
        python: "/root/.pyenv/versions/3.11.7/bin/python3.11", pythonRoots: ["/root/.pyenv/versions/3.11.7"],
        topLevel: [("bin", "usr/bin"), ("lib", "usr/lib"), ("lib64", nil)], scratch: "/data/jobs/7-1", script: "main.py",
        environment: ["HOME": "/job", "PATH": "/usr/bin"], tmpBytes: 64 << 20, gpuDevices: [])

    /// Pairs (flag, value) and triples (flag, source, destination) for lookups.
    func binds(_ flag: String) -> [(String, String)] {
        var out: [(String, String)] = []
        for i in args.indices where args[i] == flag && i + 2 < args.count { out.append((args[i + 1], args[i + 2])) }
        return out
    }

    @Test func neverBindsTheHostRoot() {
        for flag in ["--bind", "--ro-bind", "--ro-bind-try", "--dev-bind", "--dev-bind-try"] {
            #expect(!binds(flag).contains { $0.0 == "/" }, "\(flag) / ...")
        }
    }

    @Test func isolatesEverythingAndDropsPrivileges() {
        for flag in ["--unshare-all", "--die-with-parent", "--new-session", "--unshare-user", "--disable-userns", "--clearenv"] {
            #expect(args.contains(flag), "missing \(flag)")
        }
        #expect(zip(args, args.dropFirst()).contains { $0 == ("--uid", "65534") })
        #expect(zip(args, args.dropFirst()).contains { $0 == ("--gid", "65534") })
        #expect(zip(args, args.dropFirst()).contains { $0 == ("--cap-drop", "ALL") })
        #expect(!args.contains("--share-net"))
    }

    /// A root worker's sandbox (`SandboxUser`): set up as root in a user namespace the worker made (so no
    /// `--unshare-user`, which bubblewrap refuses beside `--userns`), every other namespace its own, the capabilities
    /// only `setpriv` needs, which then runs Python as 65534 after a shell closed the namespace's descriptor. The
    /// folders above a Python root are made open to all (bubblewrap would copy `/root`'s 0700), as are `/tmp` and
    /// `/dev/shm`.
    @Test func aRootWorkersSandboxIsSetUpAsRootAndRunsTheJobAs65534() {
        let a = BwrapRunner.arguments(
            python: "/root/.pyenv/versions/3.11.7/bin/python3.11", pythonRoots: ["/root/.pyenv/versions/3.11.7"],
            topLevel: [("bin", "usr/bin")], scratch: "/data/jobs/7-1", script: "main.py", environment: ["HOME": "/job"], tmpBytes: 64 << 20,
            gpuDevices: [], userns: "37")
        let pairs = Array(zip(a, a.dropFirst()))
        #expect(pairs.contains { $0 == ("--userns", "37") })
        for flag in ["--unshare-ipc", "--unshare-pid", "--unshare-net", "--unshare-uts", "--die-with-parent", "--new-session", "--clearenv"] {
            #expect(a.contains(flag), "missing \(flag)")
        }
        for flag in ["--unshare-all", "--unshare-user", "--unshare-user-try", "--disable-userns", "--share-net"] { #expect(!a.contains(flag), "\(flag)") }
        #expect(pairs.contains { $0 == ("--uid", "0") } && pairs.contains { $0 == ("--gid", "0") })
        #expect(pairs.contains { $0 == ("--cap-drop", "ALL") })
        #expect(pairs.filter { $0.0 == "--cap-add" }.map(\.1).sorted() == ["CAP_SETGID", "CAP_SETPCAP", "CAP_SETUID"])
        // The job's command: the shell closing descriptor 37, setpriv to 65534 with nothing kept, then Python.
        let tail = Array(a.suffix(SandboxUser.dropPrefix(closing: "37").count + 3))
        #expect(tail == SandboxUser.dropPrefix(closing: "37") + ["/root/.pyenv/versions/3.11.7/bin/python3.11", "-u", "main.py"])
        #expect(tail.contains("37") && tail.contains("--reuid=65534") && tail.contains("--regid=65534") && tail.contains("--clear-groups"))
        #expect(tail.contains("--inh-caps=-all") && tail.contains("--bounding-set=-all"))
        for folder in ["/etc", "/root", "/root/.pyenv", "/root/.pyenv/versions"] {
            let at = a.indices.first { a[$0] == "--dir" && a[$0 + 1] == folder }
            #expect(at != nil && a[at! - 2] == "--perms" && a[at! - 1] == "0755", "\(folder)")
            #expect(at! < a.firstIndex(of: folder == "/etc" ? "/etc/passwd" : "/root/.pyenv/versions/3.11.7")!)
        }
        for path in ["/tmp", "/dev/shm"] {
            let at = a.indices.first { a[$0] == "--tmpfs" && a[$0 + 1] == path }
            #expect(at != nil && a[at! - 4] == "--perms" && a[at! - 3] == "1777", "\(path)")
        }
        // The worker's own sandbox stays as it was.
        #expect(!args.contains("--userns") && !args.contains(SandboxUser.setpriv) && !args.contains("--perms"))
    }

    @Test func bindsUsrAndThePythonPrefixReadOnlyAtTheirOwnPaths() {
        let ro = binds("--ro-bind")
        #expect(ro.contains { $0 == ("/usr", "/usr") })
        #expect(ro.contains { $0 == ("/root/.pyenv/versions/3.11.7", "/root/.pyenv/versions/3.11.7") })
        #expect(ro.contains { $0 == ("/lib64", "/lib64") })
        #expect(binds("--symlink").contains { $0 == ("usr/bin", "/bin") })
    }

    @Test func scratchIsTheOnlyWritableBindAndTheWorkingDirectory() {
        #expect(binds("--bind").map(\.0) == ["/data/jobs/7-1"])
        #expect(binds("--bind").first?.1 == BwrapRunner.jobDirectory)
        #expect(zip(args, args.dropFirst()).contains { $0 == ("--chdir", "/job") })
        // The sandbox's own root and its /dev become read-only after every mount point was made (/dev/shm and
        // the GPU's device nodes included).
        let remounts = args.indices.filter { args[$0] == "--remount-ro" }
        #expect(remounts.map { args[$0 + 1] } == ["/dev", "/"])
        #expect(remounts.allSatisfy { $0 > args.lastIndex(of: "--bind")! && $0 > args.firstIndex(of: "/dev/shm")! })
    }

    @Test func tmpAndDevShmAreSizeCappedTmpfs() {
        for path in ["/tmp", "/dev/shm"] {
            let at = args.indices.first { args[$0] == "--tmpfs" && args[$0 + 1] == path }
            #expect(at != nil && args[at! - 2] == "--size" && args[at! - 1] == String(64 << 20), "\(path)")
        }
        // After /dev, which it would otherwise be under.
        #expect(args.firstIndex(of: "--dev")! < args.firstIndex(of: "/dev/shm")!)
    }

    @Test func theKernelsSettingsAreReadOnly() {
        let sys = args.indices.first { args[$0] == "--ro-bind" && args[$0 + 1] == "/proc/sys" }
        #expect(sys != nil && args[sys! + 2] == "/proc/sys" && sys! > args.firstIndex(of: "--proc")!)
    }

    @Test func environmentIsSetAfterClearingAndTheScriptRunsLast() {
        let clear = args.firstIndex(of: "--clearenv")!
        let set = args.firstIndex(of: "--setenv")!
        #expect(set > clear)
        #expect(Array(args.suffix(3)) == ["/root/.pyenv/versions/3.11.7/bin/python3.11", "-u", "main.py"])
    }

    @Test func gpuJobsGetOnlyTheirAssignedDevices() {
        let devices = BwrapRunner.gpuDevices(gpus: 1, visible: "1")
        #expect(devices.contains("/dev/nvidia1") && !devices.contains("/dev/nvidia0"))
        #expect(devices.contains("/dev/nvidiactl"))
        #expect(BwrapRunner.gpuDevices(gpus: 0, visible: "0").isEmpty)
        let a = BwrapRunner.arguments(
            python: "/usr/bin/python3", pythonRoots: [], topLevel: [], scratch: "/s", script: "m.py", environment: [:], tmpBytes: 1,
            gpuDevices: devices)
        #expect(zip(a, a.dropFirst()).contains { $0 == ("--dev-bind-try", "/dev/nvidia1") })
    }
}

@Suite(.serialized)
struct BwrapRunnerTests {
    @Test func missingBubblewrapFailsWithAClearMessage() {
        var c = BwrapRunner.Configuration(python: SandboxHarness.python)
        c.bwrapPath = "/nonexistent/bwrap"
        #expect {
            _ = try BwrapRunner(configuration: c)
        } throws: { error in
            "\(error)".contains("/nonexistent/bwrap") && "\(error)".contains("bubblewrap")
        }
    }

    @Test func pythonPrefixOutsideUsrIsFound() throws {
        let roots = BwrapRunner.pythonRoots(of: SandboxHarness.python)
        if SandboxHarness.python.hasPrefix("/usr/") {
            #expect(roots.isEmpty)
        } else {
            #expect(!roots.isEmpty && roots.allSatisfy { SandboxHarness.python.hasPrefix($0) })
        }
    }

    @Test func numpyImportsInsideTheSandbox() async throws {
        let h = try await SandboxHarness.make(.bwrap)
        let r = try await h.run("import numpy, os\nprint('NUMPY', numpy.__version__, os.getuid(), os.getcwd())")
        #expect(r.report.outcome == .completed, "\(r.output)")
        #expect(r.output.contains("NUMPY") && r.output.contains(" 65534 /job"), "\(r.output)")
    }

    @Test func theJobCgroupIsRemovedAfterTheRun() async throws {
        let h = try await SandboxHarness.make(.bwrap)
        let bwrap = try #require(h.runner as? BwrapRunner)
        _ = try await h.run("import subprocess, sys\nsubprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\nprint('bye')")
        // The job ran in a standby's cgroup (the harness checks); closing the slot discards the next one too.
        bwrap.standbys.close()
        // Only this runner's cgroups are checked: other tests may be running jobs of their own meanwhile.
        let mine = try jobCgroups().filter { $0.hasPrefix("cold-\(getpid())-\(h.lastJob.jobId)-") || $0.hasPrefix(bwrap.standbyCgroupPrefix) }
        #expect(mine.isEmpty, "left behind: \(mine)")
    }

    @Test func aColdStartAlsoRemovesItsCgroupAndLeavesNoProcess() async throws {
        let h = try await SandboxHarness.make(.bwrap)
        let bwrap = try #require(h.runner as? BwrapRunner)
        bwrap.standbys.close()
        let marker = "cgcold\(UUID().uuidString.prefix(8))"
        // No standby: the runner starts the job cold, joining a cgroup named for the job.
        let request = RunRequest(job: JobRef(jobId: 4242, attempt: 1), spec: JobSpec(name: "t", cpus: 1, ramGb: 1, minutes: 1),
            scratch: URL(fileURLWithPath: h.dataDir + "/jobs"), script: "main.py")
        try Data("import subprocess, sys, os\nsubprocess.Popen([sys.executable, '-c', 'import os, time; os.setsid(); time.sleep(600)', '\(marker)'])\nprint('bye', flush=True)\n".utf8)
            .write(to: URL(fileURLWithPath: h.dataDir + "/jobs/main.py"))
        let execution = try bwrap.start(request)
        var output = ""
        for await chunk in execution.output { output += String(decoding: chunk, as: UTF8.self) }
        let report = await execution.wait()
        #expect(report.outcome == .completed, "\(output)")
        #expect(bwrap.standbys.served == 0)
        #expect(hostProcesses(containing: marker).isEmpty)
        #expect(try jobCgroups().filter { $0.hasPrefix("cold-\(getpid())-4242-1-") }.isEmpty)
    }

    @Test func aDaemonAJobLeavesBehindIsKilledWhenItEnds() async throws {
        // The cgroup tier skips the scan of every process's environment: its cgroup kill must reach a daemon that
        // left the job's session.
        let h = try await SandboxHarness.make(.bwrap)
        let marker = "cgdaemon\(UUID().uuidString.prefix(8))"
        let r = try await h.run(
            "import subprocess, sys\nsubprocess.Popen([sys.executable, '-c', 'import os, time; os.setsid(); os.fork() or time.sleep(600); time.sleep(600)', '\(marker)'])\nprint('bye')"
        )
        #expect(r.report.outcome == .completed, "\(r.output)")
        #expect(hostProcesses(containing: marker).isEmpty)
    }

    @Test func cancelKillsTheWholeTree() async throws {
        let h = try await SandboxHarness.make(.bwrap)
        let marker = "cgcancel\(UUID().uuidString.prefix(8))"
        let (execution, _) = try h.start(
            "import subprocess, sys, time\nsubprocess.Popen([sys.executable, '-c', 'import os, time; os.setsid(); time.sleep(600)', '\(marker)'])\nprint('UP', flush=True)\ntime.sleep(600)"
        )
        var seen = ""
        for await chunk in execution.output {
            seen += String(decoding: chunk, as: UTF8.self)
            if seen.contains("UP") { break }
        }
        #expect(seen.contains("UP"))
        execution.cancel()
        let report = await execution.wait()
        #expect(report.outcome == .cancelled)
        #expect(hostProcesses(containing: marker).isEmpty)
    }

    @Test func aFileOverTheSizeLimitIsReportedAsOutputTooLarge() async throws {
        let h = try await SandboxHarness.make(.bwrap, limits: RunnerLimits(maxFileBytes: 1 << 20, maxProcesses: 64))
        let r = try await h.run("with open('big.bin', 'wb') as f:\n    f.write(b'x' * (4 << 20))")
        #expect(r.report.outcome == .failed)
        #expect(r.report.reason == "output too large (a file reached the 1 MB limit)", "\(String(describing: r.report.reason))")
    }

    /// The names of job and standby cgroups under this process's memory cgroup.
    func jobCgroups() throws -> Set<String> {
        let layout = CgroupLayout.make(
            version: JobCgroup.hostVersion(root: "/sys/fs/cgroup"), root: "/sys/fs/cgroup",
            selfCgroup: (try? String(contentsOfFile: "/proc/self/cgroup", encoding: .utf8)) ?? "", name: "x")
        let parent = layout.parents.first { $0.contains("/memory/") } ?? layout.parents[0]
        return Set(((try? FileManager.default.contentsOfDirectory(atPath: parent)) ?? []).filter { $0.hasPrefix("cold-") || $0.hasPrefix("standby-") })
    }
}
