import Foundation
import GridClient
import GridCore
import GridSandbox
import GridTestSupport
import Testing

/// Jobs that bring their own Python packages, on a real grid with a bwrap worker: packages come from wheels written by
/// the test into a folder the worker installs from (`--no-index --find-links`), so nothing reaches the network.
@Suite(.serialized)
struct JobEnvironmentTests {
    /// A grid with one bwrap worker that installs from `wheels`.
    struct EnvGrid {
        let grid: TestGrid
        let alice: GridClient
        let worker: ManagedProcess
        let wheels: String
        var envs: String { grid.root + "/w1/envs" }

        static func start(_ label: String, prepare: (String) throws -> Void = { _ in }, extra: [String] = []) async throws -> EnvGrid {
            let grid = try TestGrid(label: label)
            let wheels = grid.root + "/wheels"
            try TestWheels.wheel(in: wheels, name: "cg-greet", module: "cg_greet", source: "GREETING = 'hello from cg-greet'\n")
            try prepare(wheels)
            try await grid.startManager()
            let alice = try await grid.user("alice")
            let worker = try await grid.startWorker(
                "w1", owner: alice, extra: ["--sandbox", "bwrap", "--no-index", "--find-links", wheels, "--env-installer", "pip"] + extra)
            return EnvGrid(grid: grid, alice: alice, worker: worker, wheels: wheels)
        }

        func script(_ name: String, _ text: String) throws -> String {
            let path = grid.root + "/" + name
            try Data(text.utf8).write(to: URL(fileURLWithPath: path))
            return path
        }

        /// Submits with the CLI and waits for the end; returns the final status as JSON.
        func run(_ script: String, _ options: [String] = [], timeout: Double = 240) throws -> [String: Any] {
            let r = try grid.cli(["submit", script, "--isolation", "bwrap", "--wait", "--json"] + options, token: alice.token, timeout: timeout)
            guard let status = try? JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any] else {
                throw TestGridError("submit gave no status: \(r.stdout)\n\(r.stderr)\n\(grid.logs())")
            }
            return status
        }

        func log(_ status: [String: Any]) async throws -> String {
            try await alice.logs(JobID(status["id"] as? Int ?? 0), from: 0).text
        }

        /// The built environments' folders (not the temporary ones).
        func environments() -> [String] {
            ((try? FileManager.default.contentsOfDirectory(atPath: envs)) ?? []).filter { !$0.hasPrefix(".") }.sorted()
        }
    }

    static let importGreet = "import cg_greet\nprint(cg_greet.GREETING)\n"

    @Test(.timeLimit(.minutes(10)))
    func aJobImportsAPackageItDeclaresWithPipRequirementsOrPEP723() async throws {
        let g = try await EnvGrid.start("env-ways") { wheels in
            try TestWheels.wheel(in: wheels, name: "cg-extra", module: "cg_extra", source: "VALUE = 'extra ok'\n")
            try TestWheels.wheel(in: wheels, name: "cg_pep", version: "2.0", module: "cg_pep", source: "VALUE = 'pep 723 ok'\n")
        }
        defer { g.grid.shutdown() }
        // Without declaring it, the package is missing: the worker's own Python lacks it.
        let bare = try g.run(try g.script("bare.py", Self.importGreet))
        #expect(bare["state"] as? String == "failed")
        #expect(try await g.log(bare).contains("ModuleNotFoundError"))

        let viaPip = try g.run(try g.script("pip.py", Self.importGreet), ["--pip", "cg-greet==1.0"])
        let pipLog = try await g.log(viaPip)
        #expect(viaPip["state"] as? String == "completed", "\(viaPip)\n\(pipLog)")
        #expect(pipLog.contains("hello from cg-greet"))
        #expect(pipLog.contains("=== preparing environment ==="), "\(pipLog)")

        let requirements = try g.script("requirements.txt", "# what the job needs\ncg-extra  # from the wheel folder\n")
        let viaFile = try g.run(try g.script("file.py", "import cg_extra\nprint(cg_extra.VALUE)\n"), ["--requirements", requirements])
        #expect(viaFile["state"] as? String == "completed", "\(viaFile)")
        #expect(try await g.log(viaFile).contains("extra ok"))

        let pep = """
            # /// script
            # requires-python = ">=3.8"
            # dependencies = [
            #   "cg-pep>=2",
            # ]
            # ///
            import cg_pep
            print(cg_pep.VALUE)
            """
        let viaMetadata = try g.run(try g.script("pep.py", pep))
        let pepLog = try await g.log(viaMetadata)
        #expect(viaMetadata["state"] as? String == "completed", "\(viaMetadata)\n\(pepLog)")
        #expect(pepLog.contains("pep 723 ok"))
        #expect(g.environments().count == 3)
    }

    @Test(.timeLimit(.minutes(10)))
    func aSecondJobReusesTheEnvironmentAndConcurrentJobsShareOneBuild() async throws {
        let g = try await EnvGrid.start("env-reuse") { wheels in
            try TestWheels.wheel(in: wheels, name: "cg-shared", module: "cg_shared", source: "VALUE = 'shared ok'\n")
        }
        defer { g.grid.shutdown() }
        let script = try g.script("greet.py", Self.importGreet)
        let first = try g.run(script, ["--pip", "cg-greet"])
        #expect(first["state"] as? String == "completed", "\(first)")
        let folder = try #require(g.environments().first)
        let inode = try FileManager.default.attributesOfItem(atPath: g.envs + "/" + folder)[.systemFileNumber] as? Int
        let second = try g.run(script, ["--pip", "CG_Greet"])
        #expect(second["state"] as? String == "completed", "\(second)")
        #expect(try await g.log(second).contains("is cached on this worker"))
        #expect(try FileManager.default.attributesOfItem(atPath: g.envs + "/" + folder)[.systemFileNumber] as? Int == inode)
        #expect(g.environments() == [folder])

        // Two jobs at once that need the same new environment: one build.
        let shared = try g.script("shared.py", "import cg_shared\nprint(cg_shared.VALUE)\n")
        var ids: [Int] = []
        for _ in 0..<2 {
            let r = try await g.grid.cli(["submit", shared, "--isolation", "bwrap", "--pip", "cg-shared", "--json"], token: g.alice.token)
            let answer = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], "\(r.stderr)")
            ids.append(try #require((answer["job"] as? [String: Any])?["id"] as? Int))
        }
        let ended = try await eventually(timeout: 240) {
            var all = true
            for id in ids where !(try await g.alice.job(JobID(id)).state.isFinal) { all = false }
            return all
        }
        #expect(ended)
        for id in ids { #expect(try await g.alice.job(JobID(id)).state == .completed) }
        #expect(g.environments().count == 2)
        let built = g.worker.errorLog.components(separatedBy: "environment built").count - 1
        #expect(built == 2, "\(g.worker.errorLog.suffix(4000))")
    }

    @Test(.timeLimit(.minutes(10)), arguments: ["bwrap", "oci"])
    func aJobCannotWriteItsMountedEnvironment(tier: String) async throws {
        let (flags, podman) = try SandboxGridTests.workerFlags(tier)
        let g: EnvGrid
        do {
            g = try await EnvGrid.start("env-rofs", extra: flags)
        } catch {
            podman?.stop()
            throw error
        }
        if let podman { g.grid.afterShutdown { podman.stop() } }
        defer { g.grid.shutdown() }
        let script = try g.script(
            "write.py",
            """
            import errno, os, cg_greet
            target = os.path.join(os.path.dirname(cg_greet.__file__), 'planted.py')
            try:
                open(target, 'w').write('x')
                print('WROTE', target)
            except OSError as e:
                print('refused:', errno.errorcode.get(e.errno))
            """)
        let status = try g.run(script, ["--pip", "cg-greet", "--isolation", tier])
        let log = try await g.log(status)
        #expect(status["state"] as? String == "completed", "\(status)\n\(log)")
        #expect(log.contains("refused: EROFS"), "\(log)")
        let folder = try #require(g.environments().first)
        #expect(!FileManager.default.fileExists(atPath: g.envs + "/" + folder + "/site/planted.py"))
    }

    @Test(.timeLimit(.minutes(10)))
    func anUnknownPackageFailsTheJobWithTheInstallersReasonAndAFullRefund() async throws {
        let g = try await EnvGrid.start("env-unknown")
        defer { g.grid.shutdown() }
        let before = try await g.alice.me().balance
        let status = try g.run(try g.script("missing.py", "print('never')\n"), ["--pip", "cg-no-such-package==3.1"])
        #expect(status["state"] as? String == "failed")
        let reason = status["reason"] as? String ?? ""
        #expect(reason.contains("could not install") && reason.contains("cg-no-such-package"), "\(reason)")
        #expect(try await g.log(status).contains("=== preparing environment ==="))
        #expect(try await g.alice.me().balance == before, "the hold comes back whole")
        #expect(try await g.grid.admin().ledgerCheck()["ok"] == .bool(true))
        #expect(g.environments().isEmpty)
    }

    /// Any worker could end a job that declares packages by saying its environment could not be built (`failed` with
    /// `refund`): the job ended failed at once, unchecked (money review). Now one stranger's word sends it to a worker of
    /// another owner, which builds it and runs it.
    @Test(.timeLimit(.minutes(10)))
    func aStrangersWordThatAnEnvironmentCannotBeBuiltSendsTheJobToAnotherOwnersWorker() async throws {
        let grid = try TestGrid(label: "env-stranger")
        defer { grid.shutdown() }
        let wheels = grid.root + "/wheels"
        try TestWheels.wheel(in: wheels, name: "cg-greet", module: "cg_greet", source: "GREETING = 'hello from cg-greet'\n")
        try await grid.startManager()
        let alice = try await grid.user("alice")
        let carol = try await grid.user("carol")
        let dave = try await grid.user("dave")
        let mallory = try await grid.user("mallory")
        // Carol's honest worker, one slot, busy with Dave's job: it could run Alice's, but has no room yet.
        try await grid.startWorker(
            "honest", owner: carol, cpus: 1,
            extra: ["--slots", "1", "--sandbox", "bwrap", "--no-index", "--find-links", wheels, "--env-installer", "pip"])
        func upload(_ text: String) -> API.FileUpload { API.FileUpload(name: "job.py", contentBase64: Data(text.utf8).base64EncodedString()) }
        let blocker = try await dave.submit(
            API.SubmitRequest(
                spec: JobSpec(name: "blocker", cpus: 1, ramGb: 1, minutes: 5, minTier: .bwrap), script: upload("import time\ntime.sleep(300)\n"),
                inputs: [])
        ).job.id
        _ = try await waitForJob(dave, blocker, in: [.running], timeout: 60, interval: 0.25)
        // Mallory's worker, speaking the protocol by hand, takes Alice's job and says its environment cannot be built.
        let c = try RawConnection(port: grid.gridPort)
        let token = try await mallory.createToken(kind: "worker").token
        _ = c.send(#"{"type":"HELLO","id":1,"version":2,"token":"\#(token)","name":"liar"}"# + "\n")
        #expect(c.next("HELLO_OK") != nil)
        _ = c.send(
            #"{"type":"REGISTER","id":2,"resources":{"cpus":8,"ram_gb":16,"gpus":0,"gpu_memory_gb":0},"gpu_names":[],"tier":"bwrap","slots":4,"running":[]}"#
                + "\n")
        #expect(c.next("REGISTERED") != nil)
        var spec = JobSpec(name: "greet", cpus: 1, ramGb: 1, minutes: 5, minTier: .bwrap)
        spec.requirements = ["cg-greet"]
        let id = try await alice.submit(API.SubmitRequest(spec: spec, script: upload(Self.importGreet), inputs: [])).job.id
        let assigned = try #require(c.next("JOB_ASSIGN", timeout: 30)?["job"] as? [String: Any], "the job did not go to the only worker with room")
        let ref = #"{"job_id":\#(assigned["job_id"] as? Int ?? 0),"attempt":\#(assigned["attempt"] as? Int ?? 0)}"#
        _ = c.send(
            #"{"type":"JOB_DONE","id":3,"job":\#(ref),"outcome":"failed","exit_code":null,"runtime_ms":0,"peak_memory_kb":0,"cpu_seconds":0,"reason":"could not install cg-greet (made up)","files":[],"refund":true}"#
                + "\n")
        #expect(c.next("JOB_DONE_ACK") != nil)
        let after = try await alice.job(id)
        #expect(after.state == .pending, "one stranger's word ended the job: \(after.state) \(after.reason ?? "")")
        // Dave's job ends; Carol's worker takes Alice's, builds its environment and runs it.
        _ = try await dave.cancel(blocker)
        let done = try await waitForJob(alice, id, in: [.completed, .failed, .cancelled], timeout: 240, interval: 0.25)
        #expect(done.state == .completed && done.worker == "honest", "\(done)\n\(grid.logs())")
        #expect(try await alice.logs(id, from: 0).text.contains("hello from cg-greet"))
        let lost = try await alice.job(id).interruptions ?? []
        #expect(lost.map(\.kind) == ["environment_failed"] && lost.first?.worker == "liar", "\(lost)")
        #expect(try await grid.admin().ledgerCheck()["ok"] == .bool(true))
    }

    @Test(.timeLimit(.minutes(10)))
    func anSdistIsRefusedByDefaultWithAClearReason() async throws {
        let g = try await EnvGrid.start("env-sdist") { wheels in
            try TestWheels.sdist(in: wheels, name: "cg-source-only", module: "cg_source_only", source: "VALUE = 1\n")
        }
        defer { g.grid.shutdown() }
        let status = try g.run(try g.script("src.py", "import cg_source_only\n"), ["--pip", "cg-source-only"])
        #expect(status["state"] as? String == "failed")
        let reason = status["reason"] as? String ?? ""
        #expect(reason.contains("wheels only") && reason.contains("--env-allow-sdist"), "\(reason)")
    }

    @Test func malformedRequirementsAreRefusedAtSubmitWithTheLine() async throws {
        let grid = try TestGrid(label: "env-bad")
        defer { grid.shutdown() }
        try await grid.startManager()
        let alice = try await grid.user("alice")
        let script = grid.root + "/s.py"
        try Data("print(1)\n".utf8).write(to: URL(fileURLWithPath: script))
        let file = grid.root + "/requirements.txt"
        try Data("numpy\n--extra-index-url https://evil.example/simple\n".utf8).write(to: URL(fileURLWithPath: file))
        let r = try await grid.cli(["submit", script, "--requirements", file], token: alice.token)
        #expect(r.status != 0)
        #expect(r.stderr.contains("requirements.txt line 2") && r.stderr.contains("--extra-index-url"), "\(r.stderr)")
        // The API refuses a bad PEP 723 block too, before anything is held.
        let before = try await alice.me().balance
        let bad = "# /// script\n# dependencies = [\"pkg @ https://evil.example/p.whl\"]\n# ///\n"
        await #expect(throws: (any Error).self) {
            try await alice.submit(
                API.SubmitRequest(
                    spec: JobSpec(name: "bad"), script: .init(name: "bad.py", contentBase64: Data(bad.utf8).base64EncodedString()), inputs: []))
        }
        #expect(try await alice.me().balance == before)
    }

    /// In every tier where bubblewrap works: the bwrap tier's own sandbox, and for a restricted worker (`none`) one of
    /// the builder's own.
    @Test(.timeLimit(.minutes(10)), arguments: ["bwrap", "none"])
    func aBuildCannotReadTheWorkersHomeNorWriteOutsideItsFolder(tier: String) async throws {
        var planted = ""
        var outside: [String] = []
        let g = try await EnvGrid.start("env-safe", prepare: { wheels in
            let root = URL(fileURLWithPath: wheels).deletingLastPathComponent().path
            planted = root + "/secret.txt"
            outside = [root + "/w1/escape.txt", root + "/w1/envs/escape.txt", "/escape-\(UUID().uuidString.prefix(8)).txt"]
            try Data("top secret\n".utf8).write(to: URL(fileURLWithPath: planted))
            let backend = TestWheels.writeWheelFunction + """
                def probe():
                    out = {}
                    try:
                        open(\(String(reflecting: planted))).read()
                        out['home'] = 'read'
                    except OSError:
                        out['home'] = 'refused'
                    for i, path in enumerate(\(outside.map { String(reflecting: $0) })):
                        try:
                            with open(path, 'w') as f:
                                f.write('x')
                            out[f'write{i}'] = 'written'
                        except OSError:
                            out[f'write{i}'] = 'refused'
                    return out

                def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
                    return write_wheel(wheel_directory, 'cg-probe', 'cg_probe', 'PROBE = %r\\n' % (probe(),))
                """
            try TestWheels.sdistWithBackend(in: wheels, name: "cg-probe", backend: backend)
        }, extra: ["--env-allow-sdist", "--sandbox", tier])
        defer { g.grid.shutdown() }
        let status = try g.run(
            try g.script("probe.py", "import cg_probe\nprint(sorted(cg_probe.PROBE.items()))\n"),
            ["--pip", "cg-probe", "--isolation", tier == "none" ? "restricted" : tier])
        let log = try await g.log(status)
        #expect(status["state"] as? String == "completed", "\(status)\n\(log)")
        #expect(log.contains("[('home', 'refused'), ('write0', 'refused'), ('write1', 'refused'), ('write2', 'refused')]"), "\(log)")
        for path in outside { #expect(!FileManager.default.fileExists(atPath: path), "\(path)") }
    }

    @Test(.timeLimit(.minutes(10)))
    func aBuildOverItsTimeLimitIsKilledAndTheJobFailsRefunded() async throws {
        let g = try await EnvGrid.start("env-slow", prepare: { wheels in
            let backend = TestWheels.writeWheelFunction + """
                import time
                def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
                    time.sleep(120)
                    return write_wheel(wheel_directory, 'cg-slow', 'cg_slow', 'VALUE = 1\\n')
                """
            try TestWheels.sdistWithBackend(in: wheels, name: "cg-slow", backend: backend)
        }, extra: ["--env-allow-sdist", "--env-build-minutes", "0.1"])
        defer { g.grid.shutdown() }
        let before = try await g.alice.me().balance
        let submitted = try await g.grid.cli(
            ["submit", try g.script("slow.py", "import cg_slow\n"), "--isolation", "bwrap", "--pip", "cg-slow", "--json"], token: g.alice.token)
        let answer = try #require(try JSONSerialization.jsonObject(with: Data(submitted.stdout.utf8)) as? [String: Any], "\(submitted.stderr)")
        let id = JobID(try #require((answer["job"] as? [String: Any])?["id"] as? Int))
        // While the build runs, `status` says so (and that no worker has the environment yet).
        let seen = try await eventually(timeout: 60) { try await g.alice.job(id).preparing != nil }
        #expect(seen)
        let text = try await g.grid.cli(["status", "\(id)"], token: g.alice.token).stdout
        #expect(text.contains("preparing:  environment (cached on 0 of 1 worker)") || text.contains("failed"), "\(text)")
        let ended = try await eventually(timeout: 90) { try await g.alice.job(id).state.isFinal }
        #expect(ended)
        let r = try await g.grid.cli(["status", "\(id)", "--json"], token: g.alice.token)
        let status = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], "\(r.stderr)")
        #expect(status["state"] as? String == "failed")
        let reason = status["reason"] as? String ?? ""
        #expect(reason.contains("took longer than this worker's limit of 6 s"), "\(reason)")
        #expect(try await g.alice.me().balance == before)
        #expect(g.environments().isEmpty)
    }

    @Test(.timeLimit(.minutes(10)))
    func jobsGoToTheWorkerThatHasTheirEnvironmentCached() async throws {
        let g = try await EnvGrid.start("env-local")
        defer { g.grid.shutdown() }
        let script = try g.script("greet.py", Self.importGreet)
        let first = try g.run(script, ["--pip", "cg-greet"])
        #expect(first["worker"] as? String == "w1", "\(first)")
        // A second, equally idle worker joins; it has no environment cached.
        try await g.grid.startWorker(
            "w2", owner: g.alice, extra: ["--sandbox", "bwrap", "--no-index", "--find-links", g.wheels, "--env-installer", "pip"])
        // Without locality each job would go to either worker at random (ties are broken at random).
        for _ in 0..<4 {
            let next = try g.run(script, ["--pip", "cg-greet"])
            #expect(next["state"] as? String == "completed")
            #expect(next["worker"] as? String == "w1", "\(next)")
        }
        let onSecond = (try? FileManager.default.contentsOfDirectory(atPath: g.grid.root + "/w2/envs")) ?? []
        #expect(onSecond.isEmpty, "w2 built \(onSecond)")
    }

    /// Whether `uv` is installed next to the jobs' interpreter (`scripts/setup` installs it).
    static let uvInstalled: Bool = {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", "-c", "import os, sys; print(os.path.realpath(sys.executable))"]
        let out = Pipe()
        p.standardOutput = out
        guard (try? p.run()) != nil else { return false }
        let path = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        p.waitUntilExit()
        return FileManager.default.isExecutableFile(atPath: URL(fileURLWithPath: path).deletingLastPathComponent().appendingPathComponent("uv").path)
    }()

    @Test(.enabled(if: uvInstalled, "uv is not installed next to python3: run scripts/setup"), .timeLimit(.minutes(10)))
    func uvBuildsTheEnvironmentWhenItIsInstalled() async throws {
        let g = try await EnvGrid.start("env-uv", extra: ["--env-installer", "uv"])
        defer { g.grid.shutdown() }
        let status = try g.run(try g.script("greet.py", Self.importGreet), ["--pip", "cg-greet"])
        let log = try await g.log(status)
        #expect(status["state"] as? String == "completed", "\(status)\n\(log)")
        #expect(log.contains("with uv") && log.contains("hello from cg-greet"), "\(log)")
        let missing = try g.run(try g.script("missing.py", "print(1)\n"), ["--pip", "cg-no-such-package"])
        #expect(missing["state"] as? String == "failed")
        #expect((missing["reason"] as? String ?? "").contains("cg-no-such-package"), "\(missing)")
        let sdistOnly = try await EnvGrid.start("env-uv-sdist", prepare: { wheels in
            try TestWheels.sdist(in: wheels, name: "cg-source-only", module: "cg_source_only", source: "VALUE = 1\n")
        }, extra: ["--env-installer", "uv"])
        defer { sdistOnly.grid.shutdown() }
        let refused = try sdistOnly.run(try sdistOnly.script("src.py", "import cg_source_only\n"), ["--pip", "cg-source-only"])
        #expect(refused["state"] as? String == "failed")
        #expect((refused["reason"] as? String ?? "").contains("wheels only"), "\(refused)")
    }

    @Test(.timeLimit(.minutes(10)))
    func aJobWhosePythonNoWorkerHasWaitsSayingWhyAndIsRefundedWhenCancelled() async throws {
        let g = try await EnvGrid.start("env-python")
        defer { g.grid.shutdown() }
        let before = try await g.alice.me().balance
        let script = try g.script("future.py", "# /// script\n# requires-python = \">=3.99\"\n# dependencies = [\"cg-greet\"]\n# ///\nprint(1)\n")
        let r = try await g.grid.cli(["submit", script, "--isolation", "bwrap", "--json"], token: g.alice.token)
        let answer = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], "\(r.stderr)")
        let id = JobID(try #require((answer["job"] as? [String: Any])?["id"] as? Int))
        var reason = ""
        let waits = try await eventually(timeout: 30) {
            reason = try await g.alice.job(id).pendingReason ?? ""
            return reason.contains("Python >=3.99")
        }
        #expect(waits, "\(reason)")
        #expect(try await g.alice.job(id).state == .pending)
        _ = try await g.alice.cancel(id)
        #expect(try await g.alice.me().balance == before)
    }
}
