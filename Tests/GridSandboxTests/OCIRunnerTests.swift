import Foundation
import GridCore
import GridTestSupport
import Testing

@testable import GridSandbox

@Suite struct OCICreateBodyTests {
    let body = OCIRunner.createBody(
        image: "img:1", python: "python3", script: "main.py", environment: ["HOME": "/job"], scratch: "/data/jobs/3-1",
        spec: JobSpec(name: "j", cpus: 2, ramGb: 3, minutes: 5), limits: RunnerLimits(maxFileBytes: 1 << 20, maxOpenFiles: 512, maxProcesses: 99),
        tmpBytes: 32 << 20, jobId: "3-1")
    var host: [String: Any] { body["HostConfig"] as! [String: Any] }

    @Test func hasNoNetwork() {
        #expect(host["NetworkMode"] as? String == "none")
        #expect(body["NetworkDisabled"] as? Bool == true)
    }

    @Test func memoryEqualsMemoryPlusSwap() {
        #expect(host["Memory"] as? Int == 3 << 30)
        #expect(host["MemorySwap"] as? Int == 3 << 30)
    }

    @Test func limitsPidsAndCPU() {
        #expect(host["PidsLimit"] as? Int == 99)
        #expect(host["NanoCpus"] as? Int == 2_000_000_000)
    }

    @Test func rootIsReadOnlyAndOnlyScratchAndTmpAreWritable() {
        #expect(host["ReadonlyRootfs"] as? Bool == true)
        #expect(host["Binds"] as? [String] == ["/data/jobs/3-1:/job:rw"])
        #expect((host["Tmpfs"] as? [String: String])?["/tmp"]?.contains("size=\(32 << 20)") == true)
        for path in ["/var/tmp", "/run"] { #expect((host["Tmpfs"] as? [String: String])?[path]?.contains("size=\(16 << 20)") == true, "\(path)") }
    }

    @Test func runsAsNobodyWithoutPrivileges() {
        #expect(body["User"] as? String == "65534:65534")
        #expect(host["CapDrop"] as? [String] == ["ALL"])
        #expect(host["SecurityOpt"] as? [String] == ["no-new-privileges"])
        #expect(host["Privileged"] == nil)
    }

    @Test func gpuJobsRequestOnlyTheirDevices() {
        let b = OCIRunner.createBody(
            image: "i", python: "python3", script: "m.py", environment: ["CUDA_VISIBLE_DEVICES": "1"], scratch: "/s",
            spec: JobSpec(name: "g", gpus: 1), limits: RunnerLimits(), tmpBytes: 1, jobId: "1-1")
        let requests = (b["HostConfig"] as! [String: Any])["DeviceRequests"] as? [[String: Any]]
        #expect(requests?.first?["DeviceIDs"] as? [String] == ["1"])
        #expect(host["DeviceRequests"] == nil)
    }
}

@Suite(.serialized)
struct OCIRunnerTests {
    @Test func numpyImportsInsideTheContainer() async throws {
        let h = try await SandboxHarness.make(.oci)
        let r = try await h.run("import numpy, os\nprint('NUMPY', numpy.__version__, os.getuid(), os.getcwd())")
        #expect(r.report.outcome == .completed, "\(r.output)")
        #expect(r.output.contains("NUMPY") && r.output.contains(" 65534 /job"), "\(r.output)")
    }

    @Test func theContainerIsRemovedAfterTheJob() async throws {
        let h = try await SandboxHarness.make(.oci)
        let r = try await h.run("print('bye')")
        #expect(r.report.outcome == .completed)
        // Removed after the report, on the runner's queue: soon, not necessarily before the report.
        let engine = (h.runner as! OCIRunner).engine
        var names: [String] = []
        let gone = try await eventually(timeout: 20, interval: 0.05) {
            // A list the engine did not give proves nothing: only a real list without the job's container counts.
            let list = try engine.call("GET", "/libpod/containers/json?all=true")
            guard list.status == 200, let containers = list.json as? [[String: Any]] else { return false }
            names = containers.flatMap { ($0["Names"] as? [String]) ?? [] }
            let jobLabel = containers.compactMap { ($0["Labels"] as? [String: String])?["campusgrid.job"] }
            return !jobLabel.contains("\(h.lastJob.jobId)-1")
        }
        #expect(gone, "containers left: \(names)")
    }

    /// Whoever stops the engine first waits for the removals the runner has queued: once `finishRemovals` says so,
    /// the job's container is gone, with no polling. Bounds that are not numbers, or huge, neither trap nor hang.
    @Test func finishRemovalsReturnsOnceTheQueuedRemovalsAreMade() async throws {
        let h = try await SandboxHarness.make(.oci)
        let runner = h.runner as! OCIRunner
        let r = try await h.run("print('bye')")
        #expect(r.report.outcome == .completed)
        #expect(runner.finishRemovals(within: 30), "the removal did not end in 30 s")
        let list = try runner.engine.call("GET", "/libpod/containers/json?all=true")
        let containers = try #require(list.json as? [[String: Any]], "the engine gave no list (\(list.status)): \(list.message)")
        let labels = containers.compactMap { ($0["Labels"] as? [String: String])?["campusgrid.job"] }
        #expect(list.status == 200 && !labels.contains("\(h.lastJob.jobId)-1"), "\(list.status): \(labels)")
        for bound in [Double.nan, -1, 0, .infinity, .greatestFiniteMagnitude] {
            _ = runner.finishRemovals(within: bound)
        }
        #expect(runner.finishRemovals(within: .infinity), "an empty queue is finished")
    }

    /// The end is read from the engine's state once the attach ends, which is when the container's first process
    /// ends. A process that closes its output and runs on must not be taken for ended: its exit code and its time
    /// come from the engine's wait.
    @Test func aJobThatClosesItsOutputAndRunsOnEndsWithItsOwnExitCodeAndTime() async throws {
        let h = try await SandboxHarness.make(.oci)
        let r = try await h.run("import os, sys, time\nprint('closing', flush=True)\nos.close(1)\nos.close(2)\ntime.sleep(1.5)\nos._exit(5)")
        #expect(r.output == "closing\n", "\(r.output)")
        #expect(r.report.exitCode == 5 && r.report.outcome == .failed, "\(r.report)")
        #expect(r.report.runtimeMs >= 1400, "ended before its process did: \(r.report.runtimeMs) ms")
    }

    /// The output comes through an attach made before the container starts: a job that writes at once, to both
    /// streams, and exits at once loses none of it, and its exit code comes back (Podman's own wait here).
    @Test func aJobThatWritesAndExitsAtOnceLosesNoOutputAndKeepsItsExitCode() async throws {
        let h = try await SandboxHarness.make(.oci)
        #expect((h.runner as! OCIRunner).host?.podman == true, "the tests' engine is Podman")
        for round in 0..<3 {
            let r = try await h.run("import sys\nsys.stdout.write('A' * 70000 + 'END\\n')\nsys.stderr.write('ERR\\n')\nsys.exit(7)")
            #expect(r.report.exitCode == 7, "round \(round): \(r.report)")
            // The engine reads the two streams apart, so stderr's line may fall between parts of stdout's.
            var stdout = r.output
            if let err = stdout.range(of: "ERR\n") { stdout.removeSubrange(err) } else { Issue.record("round \(round): no stderr line") }
            #expect(stdout == String(repeating: "A", count: 70000) + "END\n", "round \(round): \(r.output.count) bytes of output")
        }
    }

    /// A worker killed while its job ran leaves the job's container running, unsupervised and past its time limit:
    /// the next runner on that engine removes it. Containers of a live worker, of another PID namespace, or without
    /// the labels stay.
    @Test func aNewRunnerRemovesTheJobContainersOfWorkersThatAreGoneAndNoOthers() throws {
        let service = try PodmanService()
        defer { service.stop() }
        let engine = DockerEngine(socket: service.socket)
        let gone = Process()
        gone.executableURL = URL(fileURLWithPath: "/bin/true")
        try gone.run()
        gone.waitUntilExit()
        /// `orphan`: another test's runner may sweep it between its creation and its start (a hog run saw the start
        /// answer 404): gone is what this test wants of it.
        func container(_ labels: [String: String], orphan: Bool = false) throws -> String {
            let body: [String: Any] = [
                "Image": OCIRunner.defaultImage, "Cmd": ["python3", "-c", "import time; time.sleep(600)"], "Labels": labels,
                "HostConfig": ["NetworkMode": "none"],
            ]
            let created = try engine.call("POST", "/containers/create", json: body)
            let id = try #require((created.json as? [String: Any])?["Id"] as? String, "\(created.message)")
            let started = try engine.call("POST", "/containers/\(id)/start")
            #expect(started.status == 204 || (orphan && started.status == 404), "\(started.message)")
            return id
        }
        let ns = OCIRunner.pidNamespace
        let orphan = try container(["campusgrid.job": "1-1", OCIRunner.ownerLabel: "\(gone.processIdentifier)", OCIRunner.namespaceLabel: ns], orphan: true)
        let kept = [
            try container(["campusgrid.job": "2-1", OCIRunner.ownerLabel: "\(getpid())", OCIRunner.namespaceLabel: ns]),
            try container(["campusgrid.job": "3-1", OCIRunner.ownerLabel: "\(gone.processIdentifier)", OCIRunner.namespaceLabel: "pid:[1]"]),
            try container(["other": "x"]),
        ]
        defer { for id in kept { _ = try? engine.call("DELETE", "/containers/\(id)?force=true", timeout: 30) } }

        // Every Podman service of this host shares one store, so a runner that another test starts meanwhile may be
        // the one that removes it: gone is what counts, and no runner takes a container that is not an orphan.
        let runner = try OCIRunner(configuration: .init(socket: service.socket))
        #expect(Set(runner.sweptOrphans).isDisjoint(with: Set(kept)))
        #expect(runner.sweepFailure == nil, "\(runner.sweepFailure ?? "")")
        // The list itself can fail while another runner removes a container (a suite run had it answer no list, and
        // this test took that for "everything went"): asked again, a few times, and no list is a failure of its own.
        func listed() -> [String]? {
            for _ in 0..<10 {
                if let r = try? engine.call("GET", "/containers/json?all=true"), r.status == 200, let list = r.json as? [[String: Any]] {
                    return list.compactMap { $0["Id"] as? String }
                }
                usleep(200_000)
            }
            return nil
        }
        let left = try #require(listed(), "the engine never listed its containers")
        #expect(!left.contains(orphan), "the orphan is still there")
        #expect(Set(kept).isSubset(of: Set(left)), "a container that was not an orphan went: \(left)")
    }

    @Test func aMissingImageFailsWithAClearMessage() throws {
        let service = try PodmanService()
        defer { service.stop() }
        var c = OCIRunner.Configuration(socket: service.socket)
        c.image = "localhost/no-such-image:0"
        #expect {
            _ = try OCIRunner(configuration: c)
        } throws: { "\($0)".contains("localhost/no-such-image:0") }
    }

    @Test func noEngineFailsWithAClearMessage() {
        #expect {
            _ = try OCIRunner(configuration: .init(socket: "/nonexistent/engine.sock"))
        } throws: { "\($0)".contains("/nonexistent/engine.sock") }
    }
}

@Suite struct OCIEngineHostTests {
    /// A list the engine would not give is said in one bounded line, with the engine's own words: Podman's answer when
    /// a container it lists is gone from its store, a huge or multi-line message, none at all, no answer.
    @Test func aFailedContainerListIsSaidInOneBoundedLine() {
        let podman = OCIRunner.listFailure(
            status: 500, message: #"getting container from store "dc0d57a19ff4": container not known"#)
        #expect(podman.contains("HTTP 500") && podman.contains(#"store "dc0d57a19ff4": container not known"#), "\(podman)")
        #expect(podman.hasSuffix("job containers of workers that are gone stay until it does"))
        let huge = OCIRunner.listFailure(status: 502, message: String(repeating: "x", count: 100_000) + "\nsecond line")
        #expect(huge.count < 500 && !huge.contains("\n") && huge.contains("x…"), "\(huge.count)")
        let control = OCIRunner.listFailure(status: -1, message: "a\u{1b}[31mred\r\nb\u{0}c\u{7f}")
        #expect(!control.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7f }, "\(control.debugDescription)")
        #expect(OCIRunner.listFailure(status: 200, message: "").contains("HTTP 200): no message"))
        #expect(OCIRunner.listFailure(status: nil, message: "connection refused").contains("(no answer): connection refused"))
        #expect(OCIRunner.listFailure(status: Int.min, message: "m").contains("HTTP \(Int.min)"))
    }

    @Test func aContainersEndIsWaitedForThroughPodmansOwnWaitWhenItIsPodman() {
        #expect(OCIRunner.waitPath(container: "c1", podman: true) == "/libpod/containers/c1/wait?condition=stopped&condition=exited&interval=10ms")
        #expect(OCIRunner.waitPath(container: "c1", podman: false) == "/containers/c1/wait")
        #expect(OCIRunner.exitCode(fromWait: Array("3\n".utf8)) == 3)
        #expect(OCIRunner.exitCode(fromWait: Array(#"{"StatusCode":137,"Error":null}"#.utf8)) == 137)
        #expect(OCIRunner.exitCode(fromWait: Array(#"{"StatusCode":-1}"#.utf8)) == -1)
        // An error from the engine, or nonsense, is no exit code (the job then ends with -1, not a made-up 0).
        #expect(OCIRunner.exitCode(fromWait: Array(#"{"cause":"no such container","message":"x","response":404}"#.utf8)) == nil)
        #expect(OCIRunner.exitCode(fromWait: []) == nil)
        #expect(OCIRunner.exitCode(fromWait: Array("99999999999".utf8)) == nil)
    }

    @Test func anInspectGivesAnExitCodeOnlyOnceTheProcessHasEnded() {
        func state(_ fields: String) -> [UInt8] { Array(#"{"Id":"c1","State":{\#(fields)}}"#.utf8) }
        #expect(OCIRunner.exitCode(fromInspect: state(#""Status":"exited","Running":false,"ExitCode":3"#)) == 3)
        #expect(OCIRunner.exitCode(fromInspect: state(#""Status":"stopped","Running":false,"ExitCode":0"#)) == 0)
        #expect(OCIRunner.exitCode(fromInspect: state(#""Status":"exited","Running":false,"ExitCode":137,"OOMKilled":true"#)) == 137)
        // Still running, or not started, or a state that contradicts itself: no exit code yet.
        #expect(OCIRunner.exitCode(fromInspect: state(#""Status":"running","Running":true,"ExitCode":0"#)) == nil)
        #expect(OCIRunner.exitCode(fromInspect: state(#""Status":"exited","Running":true,"ExitCode":0"#)) == nil)
        #expect(OCIRunner.exitCode(fromInspect: state(#""Status":"created","Running":false,"ExitCode":0"#)) == nil)
        #expect(OCIRunner.exitCode(fromInspect: state(#""Status":"configured","Running":false,"ExitCode":0"#)) == nil)
        // Forged or broken numbers and bodies: no exit code rather than a trap or a made-up one.
        #expect(OCIRunner.exitCode(fromInspect: state(#""Status":"exited","Running":false,"ExitCode":9223372036854775807"#)) == nil)
        #expect(OCIRunner.exitCode(fromInspect: state(#""Status":"exited","Running":false,"ExitCode":-9223372036854775808"#)) == nil)
        #expect(OCIRunner.exitCode(fromInspect: state(#""Status":"exited","Running":false,"ExitCode":"3""#)) == nil)
        #expect(OCIRunner.exitCode(fromInspect: state(#""Status":"exited","Running":false,"ExitCode":2.5"#)) == nil)
        #expect(OCIRunner.exitCode(fromInspect: state(#""Status":"exited","Running":false"#)) == nil)
        #expect(OCIRunner.exitCode(fromInspect: Array(#"{"cause":"no such container","message":"x","response":404}"#.utf8)) == nil)
        #expect(OCIRunner.exitCode(fromInspect: []) == nil)
    }

    @Test func onlyJobContainersOfAGoneWorkerInThisPIDNamespaceAreOrphans() {
        let ns = "pid:[4026531836]"
        func c(_ id: String, _ labels: [String: String]?) -> [String: Any] {
            var c: [String: Any] = ["Id": id]
            if let labels { c["Labels"] = labels }
            return c
        }
        func job(_ pid: String, _ namespace: String = ns) -> [String: String] {
            ["campusgrid.job": "1-1", OCIRunner.ownerLabel: pid, OCIRunner.namespaceLabel: namespace]
        }
        let alive: (Int32) -> Bool = { $0 == 100 }
        let list = [
            c("gone", job("200")), c("live", job("100")), c("elsewhere", job("200", "pid:[1]")),
            c("not-a-job", [OCIRunner.ownerLabel: "200", OCIRunner.namespaceLabel: ns]), c("unlabelled", nil),
            c("no-owner", ["campusgrid.job": "1-1", OCIRunner.namespaceLabel: ns]),
            // Forged or broken owners: never a reason to remove.
            c("init", job("1")), c("zero", job("0")), c("negative", job("-5")), c("huge", job("9223372036854775807")),
            c("words", job("abc")), c("", job("200")),
        ]
        #expect(OCIRunner.orphans(list, namespace: ns, alive: alive) == ["gone"])
        #expect(OCIRunner.orphans([], namespace: ns, alive: alive).isEmpty)
        // Every job container says whose it is.
        let labels = OCIRunner.createBody(
            image: "i", python: "python3", script: "m.py", environment: [:], scratch: "/s", spec: JobSpec(name: "j"), limits: RunnerLimits(),
            tmpBytes: 1, jobId: "7-2", owner: 4321)["Labels"] as? [String: String]
        #expect(labels == ["campusgrid.job": "7-2", OCIRunner.ownerLabel: "4321", OCIRunner.namespaceLabel: OCIRunner.pidNamespace])
        #expect(OCIRunner.pidNamespace.hasPrefix("pid:["))
    }

    @Test func aRootlessEngineOnCgroupV1SaysItsLimitsDoNotHold() {
        let v1 = OCIRunner.describe(OCIRunner.EngineHost(rootless: true, cgroupVersion: "1"))
        #expect(v1.label == "oci, rootless, no resource limits" && !v1.limitsHold)
        #expect(v1.notes.first?.contains("ignores") == true)
        let v2 = OCIRunner.describe(OCIRunner.EngineHost(rootless: true, cgroupVersion: "2"))
        #expect(v2.label == "oci, rootless" && v2.limitsHold)
        #expect(OCIRunner.describe(OCIRunner.EngineHost(rootless: false, cgroupVersion: "1")).label == "oci")
        #expect(OCIRunner.describe(nil).limitsHold)
    }
}
