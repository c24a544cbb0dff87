import Foundation
import GridCore
import GridTestSupport
import Synchronization
import Testing

@testable import GridSandbox

#if canImport(Glibc)
import Glibc
#endif

/// Which jobs start in a warm standby's interpreter, and the start request (pure).
@Suite struct WarmStartRuleTests {
    let plain = WarmStart.startupEnvironment().merging(["OMP_NUM_THREADS": "1", "CAMPUSGRID_JOB_ID": "7", "CUDA_VISIBLE_DEVICES": ""]) { a, _ in a }

    @Test func aPlainJobIsWarmAndAnythingPythonReadsAtStartMakesItCold() {
        #expect(WarmStart.eligible(environment: plain, pythonEnvironment: nil, gpus: 0, script: "main.py", files: ["main.py"]))
        #expect(WarmStart.eligible(environment: plain.merging(["MY_SETTING": "x"]) { a, _ in a }, pythonEnvironment: nil, gpus: 0, script: "main.py", files: []))
        for (key, value) in [
            ("PYTHONPATH", "/x"), ("PYTHONHASHSEED", "1"), ("PYTHONSTARTUP", "/job/evil.py"), ("PYTHONUNBUFFERED", "0"), ("LANG", "de_DE.UTF-8"),
            ("LC_ALL", "C"), ("LANGUAGE", "de"), ("HOME", "/tmp"), ("PATH", "/job"), ("TMPDIR", "/job"),
        ] {
            var env = plain
            env[key] = value
            #expect(!WarmStart.eligible(environment: env, pythonEnvironment: nil, gpus: 0, script: "main.py", files: []), "\(key)=\(value)")
        }
        var missing = plain
        missing["LANG"] = nil
        #expect(!WarmStart.eligible(environment: missing, pythonEnvironment: nil, gpus: 0, script: "main.py", files: []))
        #expect(!WarmStart.eligible(environment: plain, pythonEnvironment: "/envs/x/site", gpus: 0, script: "main.py", files: []))
        #expect(!WarmStart.eligible(environment: plain, pythonEnvironment: nil, gpus: 1, script: "main.py", files: []))
        #expect(!WarmStart.eligible(environment: plain, pythonEnvironment: nil, gpus: 0, script: "", files: []))
        #expect(!WarmStart.eligible(environment: plain, pythonEnvironment: nil, gpus: 0, script: "main.py", files: [WarmStart.fifoName]))
    }

    @Test func theRequestIsTheScriptThenTheSortedEnvironmentNulSeparated() {
        let bytes = WarmStart.request(script: "src/main.py", environment: ["B": "2=two", "A": "1"])
        #expect(bytes.split(separator: 0, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) } == ["src/main.py", "A=1", "B=2=two"])
    }
}

/// A job in a warm standby's interpreter against the same job started cold (its own `python -u main.py` in the same
/// sandbox): what the script sees and what its run reports are the same. The hostile tests of the bwrap tier run every
/// plain job warm (`SandboxHarness`).
@Suite(.serialized)
struct WarmStartTests {
    let root = "/tmp/cg-warm-\(UUID().uuidString.prefix(8))"

    func runner(warm: Bool, standbys: Int = 1) throws -> BwrapRunner {
        var c = BwrapRunner.Configuration(python: SandboxHarness.python)
        c.limits = RunnerLimits(maxProcesses: 64)
        c.standbys = standbys
        if warm { c.warmDirectory = root + "/jobs" }
        return try BwrapRunner(configuration: c)
    }

    /// A warm runner whose standby's launcher already waits for a job (close its standbys when done).
    func readyWarmRunner() async throws -> BwrapRunner {
        let r = try runner(warm: true)
        try await onThread {
            try r.standbys.prepare()
            try r.standbys.waitUntilWarm()
        }
        return r
    }

    /// Runs `script` (as `main.py`, with `files`) as job 41 attempt 1 in `runner`; its output, report and folder.
    func run(_ runner: BwrapRunner, _ script: String, files: [String: String] = [:], environment: [String: String] = [:], folder: String) async throws
        -> (output: String, report: RunReport)
    {
        let scratch = URL(fileURLWithPath: root + "/jobs/" + folder)
        try FileManager.default.createDirectory(at: scratch, withIntermediateDirectories: true)
        try Data(script.utf8).write(to: scratch.appendingPathComponent("main.py"))
        for (name, text) in files { try Data(text.utf8).write(to: scratch.appendingPathComponent(name)) }
        var request = RunRequest(job: JobRef(jobId: 41, attempt: 1), spec: JobSpec(name: "t", cpus: 1, ramGb: 1, minutes: 1), scratch: scratch, script: "main.py")
        request.environment = environment
        let execution = try runner.start(request)
        var output: [UInt8] = []
        for await chunk in execution.output { output += chunk }
        return (String(decoding: output, as: UTF8.self), await execution.wait())
    }

    /// Runs `script` cold and warm; returns both.
    func both(_ script: String, files: [String: String] = [:]) async throws -> (cold: (output: String, report: RunReport), warm: (output: String, report: RunReport)) {
        let cold = try runner(warm: false)
        let warm = try await readyWarmRunner()
        defer { warm.standbys.close() }
        let before = warm.standbys.servedWarm
        let c = try await run(cold, script, files: files, folder: "cold-\(UUID().uuidString.prefix(6))")
        let w = try await run(warm, script, files: files, folder: "warm-\(UUID().uuidString.prefix(6))")
        #expect(warm.standbys.servedWarm == before + 1, "the job did not start warm")
        return (c, w)
    }

    static let probe = #"""
import os, sys
def shown():
    return [n for n in sorted(globals()) if not n.startswith("__")]
print("argv", sys.argv)
print("orig_argv", sys.orig_argv[1:])
print("name", __name__, "file", __file__, "path0", sys.path[0], "cwd", os.getcwd())
print("main is me", sys.modules["__main__"].__dict__ is globals(), getattr(sys.modules["__main__"], "__file__", None))
print("spec", __spec__, "cached", __cached__, "loader", type(__loader__).__name__, "doc", __doc__)
print("globals", shown())
print("flags", sys.stdout.write_through, sys.flags.isolated, sys.flags.no_site, sys.dont_write_bytecode, sys.stdout.encoding, sys.getfilesystemencoding())
print("env", sorted(os.environ.items()))
print("files", sorted(os.listdir(".")))
print("uid", os.getuid(), "pid1", open("/proc/1/cmdline", "rb").read().split(b"\0")[0].decode())
import helper
print("helper", helper.VALUE)
def fail():
    raise ValueError("from the job")
fail()
"""#

    @Test func aWarmJobSeesWhatAColdOneSeesAndFailsTheSame() async throws {
        defer { try? FileManager.default.removeItem(atPath: root) }
        let (cold, warm) = try await both(Self.probe, files: ["helper.py": "VALUE = 42\n"])
        #expect(cold.output.contains("helper 42") && cold.output.contains("ValueError: from the job"), "\(cold.output)")
        #expect(warm.output == cold.output, "warm:\n\(warm.output)\ncold:\n\(cold.output)")
        #expect(warm.report.outcome == .failed && warm.report.exitCode == 1 && cold.report.exitCode == 1)
        // Nothing of the launcher: no FIFO among the job's files, no name of its own in the job's globals, no frame.
        #expect(!warm.output.contains(WarmStart.fifoName) && !warm.output.contains("_campusgrid") && !warm.output.contains("<string>"))
    }

    @Test func exitCodesSyntaxErrorsEncodingsThreadsAndAtexitEndAsInAColdStart() async throws {
        defer { try? FileManager.default.removeItem(atPath: root) }
        for script in [
            "import sys\nprint('bye')\nsys.exit(3)\n", "import sys\nsys.exit('a message')\n", "print('ok')\n", "def broken(:\n    pass\n",
            "# -*- coding: latin-1 -*-\nprint('caf\u{e9}')\n", "import threading, time\nthreading.Thread(target=lambda: (time.sleep(0.2), print('thread done'))).start()\n",
            "import atexit\natexit.register(lambda: print('at exit'))\nraise SystemExit(0)\n",
            // An uncaught KeyboardInterrupt: CPython prints it, finalizes, then ends the process by SIGINT.
            "import atexit\natexit.register(lambda: print('at exit'))\nprint('before')\nraise KeyboardInterrupt\n",
            "import os, signal, time\nos.kill(os.getpid(), signal.SIGINT)\ntime.sleep(5)\n",
        ] {
            let (cold, warm) = try await both(script)
            #expect(warm.output == cold.output, "\(script)\nwarm:\n\(warm.output)\ncold:\n\(cold.output)")
            #expect(
                warm.report.exitCode == cold.report.exitCode && warm.report.signal == cold.report.signal && warm.report.outcome == cold.report.outcome,
                "\(script): warm \(warm.report), cold \(cold.report)")
        }
    }

    @Test func aJobWithItsOwnPythonSettingStartsColdAndLeavesTheWarmStandbyReady() async throws {
        defer { try? FileManager.default.removeItem(atPath: root) }
        let r = try await readyWarmRunner()
        defer { r.standbys.close() }
        let ready = try #require(r.standbys.readyPid)
        let seeded = try await run(r, "import os\nprint(hash('x') == hash('x'), os.environ['PYTHONHASHSEED'])\n", environment: ["PYTHONHASHSEED": "123"], folder: "seeded")
        #expect(seeded.output == "True 123\n" && seeded.report.exitCode == 0, "\(seeded.output)")
        #expect(r.standbys.servedWarm == 0 && r.standbys.readyPid == ready, "a cold job took the warm standby")
        let plain = try await run(r, "print('warm')\n", folder: "plain")
        #expect(plain.output == "warm\n" && r.standbys.servedWarm == 1)
    }

    @Test func aWarmStandbyWhoseLauncherDiedIsReplacedAndTheJobStartsCold() async throws {
        defer { try? FileManager.default.removeItem(atPath: root) }
        let r = try await readyWarmRunner()
        defer { r.standbys.close() }
        let dead = try #require(r.standbys.readyPid)
        kill(dead, SIGKILL)
        #expect(try await eventually(timeout: 10) { kill(dead, 0) != 0 || (try? String(contentsOfFile: "/proc/\(dead)/stat", encoding: .utf8))?.contains(") Z ") == true })
        // Its job starts cold (and still runs); the dead standby is not kept, a new one is made.
        let cold = try await run(r, "print('cold')\n", folder: "after-death")
        #expect(cold.output == "cold\n" && cold.report.exitCode == 0 && r.standbys.servedWarm == 0)
        try await onThread { try r.standbys.prepare(); try r.standbys.waitUntilWarm() }
        let fresh = try #require(r.standbys.readyPid)
        #expect(fresh != dead)
        let warm = try await run(r, "print('warm')\n", folder: "after-replace")
        #expect(warm.output == "warm\n" && r.standbys.servedWarm == 1)
    }

    /// A warm launcher whose worker is gone exits, and its sandbox with it. Bubblewrap arms the death signal of its
    /// sandbox's first process only once the sandbox is set up, so a worker killed before then (its standby's
    /// bubblewrap killed with it) left that sandbox running, its launcher waiting on its FIFO for good: one was found
    /// after whole-suite runs. Here the race is made certain (the sandbox starts without `--die-with-parent`), the
    /// standby's bubblewrap is killed, and the feed is closed as the kernel closes a dead worker's descriptors.
    @Test func aWarmLauncherWhoseWorkerIsGoneExitsWithItsSandbox() async throws {
        defer { try? FileManager.default.removeItem(atPath: root) }
        let r = try runner(warm: false)
        let c = r.configuration
        let folder = root + "/jobs/" + WarmStart.folderPrefix + "\(getpid())-orphan"
        try FileManager.default.createDirectory(atPath: root + "/jobs", withIntermediateDirectories: true)
        let standby = try Standby.makeWarm(
            root: c.cgroupRoot, parent: c.cgroupParent, name: r.standbyCgroupPrefix + "orphan", pids: 64, directory: folder,
            bwrap: c.bwrapPath,
            arguments: { _ in
                var args = BwrapRunner.arguments(
                    python: c.python, pythonRoots: r.pythonRoots, topLevel: r.topLevel, scratch: folder, script: "-",
                    environment: WarmStart.startupEnvironment(), tmpBytes: c.tmpBytes, gpuDevices: [])
                args.removeLast(3)
                args.removeAll { $0 == "--die-with-parent" }
                return args + [c.python, "-u", "-c", WarmStart.launcher]
            }, limits: BwrapRunner.rlimits(c.limits))
        defer { standby.discard() }
        let ready = try await eventually(timeout: 60, interval: 0.01) { WarmStart.isReady(folder) }
        #expect(ready, "the launcher never opened its FIFO")
        let sandbox = { hostProcesses(containing: folder).filter { $0 != standby.process.pid } }
        #expect(!sandbox().isEmpty, "no sandbox runs for \(folder)")
        // The worker dies: first its standby's bubblewrap (the sandbox, its death signal not armed, stays), then its
        // descriptors close.
        kill(standby.process.pid, SIGKILL)
        #expect(try await onThread { standby.process.waitForExit(seconds: 10) } != nil)
        #expect(!sandbox().isEmpty, "the sandbox went with its bubblewrap: the race was not made")
        if let feed = standby.takeFeed() { close(feed) }
        let gone = try await eventually(timeout: 20, interval: 0.01) { sandbox().isEmpty }
        #expect(gone, "the sandbox outlived its worker: \(sandbox())")
    }

    @Test func anUnusedWarmStandbyLeavesNoProcessNoFolderAndNoCgroup() throws {
        defer { try? FileManager.default.removeItem(atPath: root) }
        let r = try runner(warm: true)
        try r.standbys.prepare()
        let pid = try #require(r.standbys.readyPid)
        let folders = { (try? FileManager.default.contentsOfDirectory(atPath: root + "/jobs"))?.filter { $0.hasPrefix(WarmStart.folderPrefix) } ?? [] }
        #expect(folders().count == 1)
        let cgroup = try String(contentsOfFile: "/proc/\(pid)/cgroup", encoding: .utf8)
        #expect(cgroup.contains(r.standbyCgroupPrefix))
        r.standbys.close()
        #expect(kill(pid, 0) != 0 || (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8))?.contains(") Z ") == true)
        #expect(folders().isEmpty, "\(folders())")
        #expect(hostProcesses(containing: "_campusgrid_run").allSatisfy { p in
            (try? String(contentsOfFile: "/proc/\(p)/cgroup", encoding: .utf8))?.contains(r.standbyCgroupPrefix) != true
        })
    }

    /// Back-to-back jobs: with one standby, the job right after another finds its successor still starting Python
    /// and starts cold; with two (a one-slot worker keeps its slot's and one more), both start warm, and each taken
    /// standby is made again. Closing leaves none of them.
    @Test func withTwoStandbysTwoJobsInARowStartWarmAndNoneIsLeftAfterClose() async throws {
        defer { try? FileManager.default.removeItem(atPath: root) }
        let r = try runner(warm: true, standbys: 2)
        #expect(r.standbys.capacity == 2)
        r.standbys.ensureMaking()
        let bothReady = try await eventually(timeout: 60, interval: 0.01) { r.standbys.readyCount == 2 }
        #expect(bothReady, "\(r.standbys.readyCount) ready")
        try r.standbys.waitUntilWarm()
        let pids = try await eventually(timeout: 60, interval: 0.01) {
            hostProcesses(containing: "_campusgrid_run").filter { p in
                (try? String(contentsOfFile: "/proc/\(p)/cgroup", encoding: .utf8))?.contains(r.standbyCgroupPrefix) == true
            }.count >= 2
        }
        #expect(pids)
        // Both launchers wait (each made its ready file) before the two jobs come.
        let folders = { (try? FileManager.default.contentsOfDirectory(atPath: self.root + "/jobs"))?.filter { $0.hasPrefix(WarmStart.folderPrefix) } ?? [] }
        let launchersReady = try await eventually(timeout: 60, interval: 0.01) {
            folders().count == 2 && folders().allSatisfy { WarmStart.isReady(self.root + "/jobs/" + $0) }
        }
        #expect(launchersReady, "\(folders())")
        let first = try await run(r, "print('one')\n", folder: "first")
        let second = try await run(r, "print('two')\n", folder: "second")
        #expect(first.output == "one\n" && second.output == "two\n")
        #expect(r.standbys.servedWarm == 2, "\(r.standbys.servedWarm) of 2 jobs started warm")
        // Each taken standby is made again: two ready, then none of them or their folders after close.
        let refilled = try await eventually(timeout: 60, interval: 0.01) { r.standbys.readyCount == 2 }
        #expect(refilled)
        r.standbys.close()
        #expect(r.standbys.readyCount == 0)
        #expect(folders().isEmpty, "\(folders())")
        #expect(hostProcesses(containing: "_campusgrid_run").allSatisfy { p in
            (try? String(contentsOfFile: "/proc/\(p)/cgroup", encoding: .utf8))?.contains(r.standbyCgroupPrefix) != true
        })
    }

    @Test func aWorkersBwrapRunnerKeepsOneStandbyPerSlotAndOneMoreAtMostEight() throws {
        defer { try? FileManager.default.removeItem(atPath: root) }
        var settings = SandboxSelection.Settings(python: SandboxHarness.python)
        settings.jobsDirectory = root + "/jobs"
        for (slots, kept) in [(1, 2), (3, 4), (7, 8), (64, 8), (Int.max, 8), (0, 2), (-1, 2), (Int.min, 2)] {
            settings.slots = slots
            let (runner, _) = try SandboxSelection.makeRunner([.bwrap], settings: settings)
            let bwrap = try #require(runner as? BwrapRunner)
            defer { bwrap.standbys.close() }
            #expect(bwrap.standbys.capacity == kept, "\(slots) slots")
        }
    }

    @Test func aRunnerKeepsBetweenOneAndSixtyFourStandbys() throws {
        #expect(StandbySlot(capacity: 0) { throw SpawnError(errno: EINVAL, path: "x") }.capacity == 1)
        #expect(StandbySlot(capacity: -5) { throw SpawnError(errno: EINVAL, path: "x") }.capacity == 1)
        #expect(StandbySlot(capacity: Int.max) { throw SpawnError(errno: EINVAL, path: "x") }.capacity == 64)
        #expect(StandbySlot(capacity: 3) { throw SpawnError(errno: EINVAL, path: "x") }.capacity == 3)
    }

    /// Makes still queued when the slot closes are dropped: only one in progress is waited for. (They used to be made
    /// one after another and then discarded, and under a hog `close` ran out of its 10 s with a standby's cgroup
    /// still there.)
    @Test func closingASlotDropsTheMakesStillQueued() async throws {
        let calls = Mutex(0)
        let slot = StandbySlot(capacity: 4) {
            calls.withLock { $0 += 1 }
            usleep(500_000)
            throw SpawnError(errno: EINVAL, path: "x")
        }
        slot.refill()
        slot.close()
        // `close` returns once nothing counts as being made: every queued make has been taken off the queue by then,
        // run or dropped, so the count is final here (no pause to wait for). At most the one in progress ran.
        let made = calls.withLock { $0 }
        #expect(made <= 1, "\(made) of 4 queued makes ran after the slot closed")
        slot.refill()
        try await Task.sleep(for: .milliseconds(100))
        #expect(calls.withLock { $0 } == made, "a closed slot made another standby")
    }

    /// `close` returns only once a standby that was being made is gone, its cgroup included. (A make used to count as
    /// over before its standby was discarded, so `close` could return with the standby's cgroup still there: seen as
    /// a rare failure of `theJobCgroupIsRemovedAfterTheRun`.) Each round closes the slot while a make is under way.
    @Test func closeReturnsOnlyOnceTheStandbyBeingMadeIsGone() async throws {
        defer { try? FileManager.default.removeItem(atPath: root) }
        let parent = try #require(Self.standbyCgroupParent())
        for round in 1...5 {
            let r = try runner(warm: false)
            let mine = { ((try? FileManager.default.contentsOfDirectory(atPath: parent)) ?? []).filter { $0.hasPrefix(r.standbyCgroupPrefix) } }
            r.standbys.ensureMaking()
            // The make has made its cgroup and is starting the standby's process in it.
            let making = try await eventually(timeout: 30, interval: 0.001) { !mine().isEmpty }
            #expect(making, "round \(round): the standby's cgroup never appeared")
            r.standbys.close()
            #expect(mine().isEmpty, "round \(round): left after close: \(mine())")
        }
    }

    /// Where this host's runners make their standby cgroups (the memory controller's parent on v1).
    static func standbyCgroupParent() -> String? {
        let layout = CgroupLayout.make(
            version: JobCgroup.hostVersion(root: "/sys/fs/cgroup"), root: "/sys/fs/cgroup",
            selfCgroup: (try? String(contentsOfFile: "/proc/self/cgroup", encoding: .utf8)) ?? "", name: "x")
        return layout.parents.first { $0.contains("/memory/") } ?? layout.parents.first
    }

    /// A standby cgroup of a worker that is gone, still holding a process (a sandbox that outlived its worker), is
    /// emptied and removed by the next runner; before, a cgroup that held a process was left alone, and so was the
    /// process.
    @Test(arguments: ["standby-", Standby.coldPrefix])
    func aNewRunnerKillsWhatAGoneWorkersStandbyCgroupStillHolds(_ prefix: String) async throws {
        defer { try? FileManager.default.removeItem(atPath: root) }
        let parent = try #require(Self.standbyCgroupParent())
        let dir = parent + "/" + prefix + "4194303-\(UUID().uuidString.prefix(8))-left"
        #expect(mkdir(dir, 0o755) == 0)
        defer { rmdir(dir) }
        let orphan = Process()
        orphan.executableURL = URL(fileURLWithPath: "/bin/sleep")
        orphan.arguments = ["300"]
        try orphan.run()
        defer { if orphan.isRunning { kill(orphan.processIdentifier, SIGKILL) } }
        #expect(JobCgroup.write("\(orphan.processIdentifier)", to: dir + "/cgroup.procs"))
        #expect((JobCgroup.read(dir + "/cgroup.procs") ?? "").contains("\(orphan.processIdentifier)"))
        let r = try runner(warm: true)
        defer { r.standbys.close() }
        let killed = try await eventually(timeout: 10) { !orphan.isRunning }
        #expect(killed && orphan.terminationReason == .uncaughtSignal && orphan.terminationStatus == SIGKILL)
        #expect(!FileManager.default.fileExists(atPath: dir))
    }

    @Test func aNewRunnerRemovesTheWarmFoldersOfWorkersThatAreGone() throws {
        defer { try? FileManager.default.removeItem(atPath: root) }
        let jobs = root + "/jobs"
        // A PID that is not running (the highest possible is never handed out here), and this process's own.
        let gone = jobs + "/" + WarmStart.folderPrefix + "4194303-deadbeef"
        let mine = jobs + "/" + WarmStart.folderPrefix + "\(getpid())-cafebabe"
        for dir in [gone, mine, jobs + "/12-1"] { try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true) }
        let r = try runner(warm: true)
        defer { r.standbys.close() }
        #expect(!FileManager.default.fileExists(atPath: gone))
        #expect(FileManager.default.fileExists(atPath: mine) && FileManager.default.fileExists(atPath: jobs + "/12-1"))
    }
}
