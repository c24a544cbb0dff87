import Foundation
import GridCore
import GridTestSupport
import Testing

@testable import GridSandbox

/// `EnvBuilder` on its own, with real installs (`python -m pip`, no sandbox: the restricted tier's way) from wheels
/// written by the test: the cache's eviction, the size limit, and the installer's command line.
@Suite(.serialized)
struct EnvBuilderTests {
    let folder = "/tmp/cg-envs-\(UUID().uuidString.prefix(8))"

    func builder(cacheBytes: Int64 = 10 << 30, maxBytes: Int64 = 5 << 30) throws -> EnvBuilder {
        for n in ["a", "b", "c"] {
            try TestWheels.wheel(in: folder + "/wheels", name: "cg-\(n)", module: "cg_\(n)", source: "X = '\(String(repeating: n, count: 2000))'\n")
        }
        var c = EnvBuilder.Configuration(root: folder + "/envs", python: SandboxHarness.python)
        c.noIndex = true
        c.findLinks = [folder + "/wheels"]
        c.cacheLimitBytes = cacheBytes
        c.maxEnvironmentBytes = maxBytes
        return EnvBuilder(configuration: c, interpreter: try EnvBuilder.probe(python: SandboxHarness.python))
    }

    func requirements(_ name: String) throws -> PythonRequirements { try PythonRequirements(lines: [name]) }

    @Test func theLeastRecentlyUsedEnvironmentIsEvictedButNeverOneInUse() async throws {
        defer { try? FileManager.default.removeItem(atPath: folder) }
        // Room for about one environment (each holds a 2 KB module plus pip's metadata).
        let envs = try builder(cacheBytes: 6_000)
        let a = try await envs.prepare(try requirements("cg-a")) { _ in }
        let b = try await envs.prepare(try requirements("cg-b")) { _ in }
        // Both are in use: over the limit, yet nothing is deleted.
        #expect(FileManager.default.fileExists(atPath: a.sitePath) && FileManager.default.fileExists(atPath: b.sitePath))
        envs.release(a.key)
        // `a` is idle and the older: it goes; `b` stays while in use.
        #expect(!FileManager.default.fileExists(atPath: a.sitePath))
        #expect(FileManager.default.fileExists(atPath: b.sitePath))
        #expect(envs.cachedDigests() == [b.digest])
        // Needed again, `a` is built again.
        let again = try await envs.prepare(try requirements("cg-a")) { _ in }
        #expect(again.built)
        #expect(await envs.builds == 3)
    }

    /// A task with packages finds its environment by the set's key and digest, remembered per set: the remembered
    /// ones equal those computed afresh, and however many sets come, only a bounded number is kept.
    @Test func aSetsKeyAndDigestAreRememberedExactlyAndBounded() throws {
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let envs = try builder()
        let set = try PythonRequirements(lines: ["cg-a>=1", "cg-b"])
        let first = envs.address(of: set)
        #expect(first.key == envs.key(for: set) && first.digest == set.digest)
        let again = envs.address(of: try PythonRequirements(lines: ["cg-b", "cg-a >= 1"]))
        #expect(again.key == first.key && again.digest == first.digest, "the same set, written otherwise")
        let other = envs.address(of: try requirements("cg-c"))
        #expect(other.key != first.key && other.digest != first.digest)
        for i in 0..<(EnvBuilder.addressLimit * 2 + 3) {
            let many = try requirements("cg-many-\(i)")
            let address = envs.address(of: many)
            #expect(address.key == envs.key(for: many) && address.digest == many.digest)
        }
        #expect(envs.rememberedAddresses <= EnvBuilder.addressLimit)
    }

    /// An environment uv built before it was asked for bytecode has another key than one built now, so a worker that
    /// finds one in its cache builds the set again; pip's keys are as they were (its builds always held bytecode).
    @Test func uvBuildsAreKeyedApartFromThoseWithoutBytecode() throws {
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let pip = try builder()
        var c = EnvBuilder.Configuration(root: folder + "/envs", python: SandboxHarness.python)
        c.noIndex = true
        c.findLinks = [folder + "/wheels"]
        c.uv = "/usr/bin/uv"
        let uv = EnvBuilder(configuration: c, interpreter: try EnvBuilder.probe(python: SandboxHarness.python))
        let set = try requirements("cg-a")
        #expect(uv.key(for: set) != pip.key(for: set))
        #expect(uv.address(of: set).digest == pip.address(of: set).digest, "the set is the same: the manager places by its digest")
        #expect(!pip.keyOptions.contains { $0.contains("compile") })
        #expect(uv.keyOptions.last == "uv --compile-bytecode")
    }

    /// The site folder must be a folder: a file where it should be is not taken for an environment.
    @Test func aFileWhereTheSiteFolderShouldBeIsNoEnvironment() async throws {
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let envs = try builder()
        let a = try await envs.prepare(try requirements("cg-a")) { _ in }
        envs.release(a.key)
        #expect(try envs.cachedEnvironment(for: try requirements("cg-a")) != nil)
        envs.release(a.key)
        try FileManager.default.removeItem(atPath: a.sitePath)
        #expect(FileManager.default.createFile(atPath: a.sitePath, contents: Data("not a folder".utf8)))
        #expect(try envs.cachedEnvironment(for: try requirements("cg-a")) == nil)
        #expect(EnvBuilder.isDirectory(folder) && !EnvBuilder.isDirectory(a.sitePath) && !EnvBuilder.isDirectory(folder + "/nothing-here"))
    }

    /// Function tasks take a cached environment without the builder's actor (`cachedEnvironment`), from many threads
    /// at once: every take is counted, so the environment is never evicted while one of them still uses it.
    @Test func concurrentTakesOfACachedEnvironmentKeepItUntilTheLastIsReleased() async throws {
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let envs = try builder(cacheBytes: 6_000)
        let a = try await envs.prepare(try requirements("cg-a")) { _ in }
        #expect(try envs.cachedEnvironment(for: try requirements("cg-b")) == nil, "an environment never built is not cached")
        let takes = 40
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<takes {
                group.addTask {
                    let hit = try #require(try envs.cachedEnvironment(for: try requirements("cg-a")))
                    #expect(hit.key == a.key && !hit.built)
                }
            }
            try await group.waitForAll()
        }
        envs.release(a.key)
        // `b` pushes the cache over its limit: `a`, still taken `takes` times, stays; `b`, idle once released, goes.
        let b = try await envs.prepare(try requirements("cg-b")) { _ in }
        envs.release(b.key)
        #expect(FileManager.default.fileExists(atPath: a.sitePath))
        #expect(!FileManager.default.fileExists(atPath: b.sitePath))
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<(takes - 1) { group.addTask { envs.release(a.key) } }
        }
        #expect(FileManager.default.fileExists(atPath: a.sitePath), "evicted while one task still used it")
        #expect(envs.cachedDigests() == [a.digest])
        // The last release: `a` alone fits, so it stays, idle, and is taken again from the shelf.
        envs.release(a.key)
        #expect(try envs.cachedEnvironment(for: try requirements("cg-a"))?.key == a.key)
        envs.release(a.key)
        #expect(await envs.builds == 2)
    }

    @Test func anEnvironmentIsFoundAgainAfterARestart() async throws {
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let first = try builder()
        let built = try await first.prepare(try requirements("cg-c")) { _ in }
        first.release(built.key)
        let restarted = try builder()
        #expect(restarted.cachedDigests() == [built.digest])
        let reused = try await restarted.prepare(try requirements("cg-c")) { _ in }
        #expect(!reused.built)
        #expect(await restarted.builds == 0)
    }

    @Test func theLastUsedStampIsWrittenOnFirstUseNotForEveryUse() async throws {
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let envs = try builder()
        let built = try await envs.prepare(try requirements("cg-b")) { _ in }
        envs.release(built.key)
        let stamp = folder + "/envs/" + built.key + "/last-used"
        let written = try #require(FileManager.default.contents(atPath: stamp), "no last-used stamp after the build")
        // Used again at once (as every function task of a cached environment uses it): the stamp is not rewritten.
        for _ in 0..<20 {
            let again = try await envs.prepare(try requirements("cg-b")) { _ in }
            #expect(!again.built)
            envs.release(again.key)
        }
        #expect(FileManager.default.contents(atPath: stamp) == written)
        #expect(EnvBuilder.stampSeconds == 60)
        // Another environment gets a stamp of its own on its first use.
        let other = try await envs.prepare(try requirements("cg-c")) { _ in }
        #expect(FileManager.default.fileExists(atPath: folder + "/envs/" + other.key + "/last-used"))
    }

    /// Whether PyPI answers from here: one bounded probe (the interpreter's own HTTPS client, 5 s; the probe process
    /// is killed, by its PID, after 10 s whatever it is waiting for).
    static let pypiAnswers: Bool = {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: SandboxHarness.python)
        p.arguments = ["-c", "import urllib.request; urllib.request.urlopen('https://pypi.org/simple/six/', timeout=5).read(1)"]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        guard (try? p.run()) != nil else { return false }
        let deadline = Date().addingTimeInterval(10)
        while p.isRunning && Date() < deadline { usleep(20_000) }
        if p.isRunning {
            kill(p.processIdentifier, SIGKILL)
            p.waitUntilExit()
            return false
        }
        return p.terminationStatus == 0
    }()

    /// The one test that reaches a real index (acceptance 1): a tiny pure-Python package, pinned, from PyPI, installed
    /// as a worker without `--no-index` installs it, in the build sandbox where bubblewrap works. Skipped offline.
    @Test(.enabled(if: pypiAnswers, "PyPI did not answer within 5 s: the real-index test is skipped (no network here)"), .timeLimit(.minutes(3)))
    func anEnvironmentIsBuiltFromTheRealIndex() async throws {
        defer { try? FileManager.default.removeItem(atPath: folder) }
        var c = EnvBuilder.Configuration(root: folder + "/envs", python: SandboxHarness.python)
        c.uv = EnvBuilder.findUV(python: SandboxHarness.python)
        c.sandbox = EnvBuilder.sandbox(of: RestrictedRunner(python: SandboxHarness.python), python: SandboxHarness.python)
        let envs = EnvBuilder(configuration: c, interpreter: try EnvBuilder.probe(python: SandboxHarness.python))
        let output = OutputBox()
        let ready = try await envs.prepare(try PythonRequirements(lines: ["six==1.16.0"])) { await output.append($0) }
        let log = await output.text
        #expect(ready.built, "\(log)")
        #expect(FileManager.default.fileExists(atPath: ready.sitePath + "/six.py"), "\(log)")
        // The installer's scratch (temporary files, uv's cache) is gone from the environment.
        #expect(!FileManager.default.fileExists(atPath: folder + "/envs/" + ready.key + "/tmp"))
        let check = Process()
        check.executableURL = URL(fileURLWithPath: SandboxHarness.python)
        check.arguments = ["-c", "import six; print(six.__version__)"]
        check.environment = ["PYTHONPATH": ready.sitePath, "PATH": "/usr/bin:/bin"]
        let pipe = Pipe()
        check.standardOutput = pipe
        try check.run()
        let printed = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        check.waitUntilExit()
        #expect(printed.trimmingCharacters(in: .whitespacesAndNewlines) == "1.16.0", "\(printed)\n\(log)")
    }

    @Test func anEnvironmentOverTheSizeLimitIsRefusedAndNotKept() async throws {
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let envs = try builder(maxBytes: 1_000)
        await #expect(throws: GridError.self) { _ = try await envs.prepare(try requirements("cg-a")) { _ in } }
        do {
            _ = try await envs.prepare(try requirements("cg-a")) { _ in }
        } catch let e as GridError {
            #expect(e.message.contains("limit"), "\(e.message)")
        }
        let left = ((try? FileManager.default.contentsOfDirectory(atPath: folder + "/envs")) ?? [])
        #expect(left.isEmpty, "\(left)")
    }

    /// The size check comes once the installer is done; meanwhile its folder is measured, and a build that would leave
    /// the disk under what it keeps free is stopped, saying why (here: a floor no disk meets).
    @Test func aBuildIsStoppedWhileItRunsWhenTheDiskRunsLow() async throws {
        defer { try? FileManager.default.removeItem(atPath: folder) }
        var c = try builder().configuration
        c.diskFloorBytes = .max
        let envs = EnvBuilder(configuration: c, interpreter: try EnvBuilder.probe(python: SandboxHarness.python))
        do {
            _ = try await envs.prepare(try requirements("cg-a")) { _ in }
            Issue.record("the build went on")
        } catch let e as GridError {
            #expect(e.message.contains("nearly full"), "\(e.message)")
        }
        let left = ((try? FileManager.default.contentsOfDirectory(atPath: folder + "/envs")) ?? [])
        #expect(left.isEmpty, "\(left)")
    }

    @Test func theIndexNeverGoesOnTheInstallersCommandLine() {
        var c = EnvBuilder.Configuration(root: "/data/envs", python: "/usr/bin/python3")
        c.indexURL = "https://student:secret@mirror.example/simple"
        let command = EnvBuilder.installCommand(configuration: c, site: "/build/site", requirementsFile: "/build/requirements.txt")
        #expect(!command.joined(separator: " ").contains("secret"))
        #expect(command.contains("--only-binary"))
        #expect(EnvBuilder.installerEnvironment(c, home: "/tmp", sandboxed: true)["PIP_INDEX_URL"] == c.indexURL)
        // A sandboxed installer's temporary files and uv's cache go to the build folder, not the 1 GiB tmpfs at /tmp.
        let sandboxed = EnvBuilder.installerEnvironment(c, home: "/tmp", sandboxed: true)
        #expect(sandboxed["TMPDIR"] == "/build/tmp" && sandboxed["UV_CACHE_DIR"] == "/build/tmp/uv-cache", "\(sandboxed)")
        c.allowSdist = true
        #expect(!EnvBuilder.installCommand(configuration: c, site: "/s", requirementsFile: "/r").contains("--only-binary"))
        // uv, unlike pip, leaves no bytecode unless asked.
        #expect(!command.contains("--compile-bytecode"))
        c.uv = "/usr/bin/uv"
        #expect(EnvBuilder.installCommand(configuration: c, site: "/s", requirementsFile: "/r").contains("--compile-bytecode"))
    }

    /// Jobs see their environment read-only, so Python cannot cache the bytecode of its modules there: the build
    /// leaves it, with either installer (uv only since it is asked to; pip always did), and in the build sandbox.
    @Test(arguments: ["pip", "uv"])
    func theEnvironmentHoldsTheBytecodeOfItsModules(installer: String) async throws {
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try TestWheels.wheel(in: folder + "/wheels", name: "cg-compiled", module: "cg_compiled", source: "VALUE = 'compiled'\n")
        var c = EnvBuilder.Configuration(root: folder + "/envs", python: SandboxHarness.python)
        c.noIndex = true
        c.findLinks = [folder + "/wheels"]
        if installer == "uv" {
            let uv: String = try #require(EnvBuilder.findUV(python: SandboxHarness.python), "uv is not installed next to python3: run scripts/setup")
            c.uv = uv
        }
        c.sandbox = EnvBuilder.sandbox(of: RestrictedRunner(python: SandboxHarness.python), python: SandboxHarness.python)
        let envs = EnvBuilder(configuration: c, interpreter: try EnvBuilder.probe(python: SandboxHarness.python))
        let output = OutputBox()
        let ready = try await envs.prepare(try requirements("cg-compiled")) { await output.append($0) }
        let log = await output.text
        #expect(ready.built && log.contains("with \(installer)"), "\(log)")
        let cache = ready.sitePath + "/__pycache__"
        let compiled = ((try? FileManager.default.contentsOfDirectory(atPath: cache)) ?? []).filter { $0.hasPrefix("cg_compiled.cpython-") && $0.hasSuffix(".pyc") }
        #expect(compiled.count == 1, "no bytecode in \(cache): \(compiled)\n\(log)")
        // A root worker's installer (a package's own build code runs in it) is 65534 outside, not root: what it wrote
        // is 65534's (`SandboxUser`).
        if geteuid() == 0 {
            // Decided by a probe through that very path, as the bwrap tier's runner decides it for its jobs.
            #expect(c.sandbox?.switchesUser == true)
            for path in [ready.sitePath, cache, cache + "/" + (compiled.first ?? "")] {
                let owner = (try FileManager.default.attributesOfItem(atPath: path))[.ownerAccountID] as? NSNumber
                #expect(owner == 65534, "\(path) is \(owner?.stringValue ?? "?")'s")
            }
        }
    }

    /// A package's build script (an sdist's setup.py) runs in the installer's sandbox, as root outside on a root worker:
    /// there too the kernel's settings are read-only (it could write kernel.core_pattern, and have the kernel run a
    /// program of its own as root). Run for real: it writes back the value it read.
    @Test func theBuildSandboxCannotChangeTheKernelsSettings() throws {
        var c = EnvBuilder.Configuration(root: "/tmp", python: SandboxHarness.python)
        c.noIndex = true
        let s = EnvBuilder.Sandbox(
            bwrapPath: "/usr/bin/bwrap", pythonRoots: BwrapRunner.pythonRoots(of: SandboxHarness.python), topLevel: BwrapRunner.topLevel())
        let folder = NSTemporaryDirectory() + "cg-build-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/bwrap")
        p.arguments =
            EnvBuilder.sandboxArguments(s, configuration: c, buildFolder: folder) + [
                SandboxHarness.python, "-c",
                "v=open('/proc/sys/kernel/core_uses_pid').read()\ntry:\n open('/proc/sys/kernel/core_uses_pid','w').write(v); print('CHANGED')\nexcept OSError as e:\n print('REFUSED', e.errno)",
            ]
        let out = Pipe()
        p.standardOutput = out
        p.standardError = out
        try p.run()
        p.waitUntilExit()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(text.contains("REFUSED") && !text.contains("CHANGED"), "\(text)")
    }

    @Test func theBuildSandboxHidesHomeAndHasNoNetworkWithoutAnIndex() {
        var c = EnvBuilder.Configuration(root: "/data/envs", python: "/opt/py/bin/python3")
        c.noIndex = true
        c.findLinks = ["/srv/wheels"]
        let s = EnvBuilder.Sandbox(bwrapPath: "/usr/bin/bwrap", pythonRoots: ["/opt/py"], topLevel: [])
        let args = EnvBuilder.sandboxArguments(s, configuration: c, buildFolder: "/data/envs/.build-x")
        #expect(!args.contains("--share-net"))
        #expect(!args.contains { $0.hasPrefix("/root") || $0.hasPrefix("/home") })
        #expect(args.contains("--ro-bind") && args.contains("/srv/wheels"))
        let bind = args.firstIndex(of: "--bind")!
        #expect(Array(args[bind...].prefix(3)) == ["--bind", "/data/envs/.build-x", "/build"])
        c.noIndex = false
        #expect(EnvBuilder.sandboxArguments(s, configuration: c, buildFolder: "/b").contains("--share-net"))
    }

    /// A package's build script (`--env-allow-sdist`) runs in the build folder: a link it leaves there as `meta.json`
    /// had the worker write through it (over any file the worker may write), and a `site` link had every job of that
    /// environment shown the worker's folder it named. Here an "installer" of the test's own leaves each.
    @Test(arguments: ["meta", "site"])
    func aLinkTheBuildLeavesIsNeverFollowed(_ planted: String) async throws {
        defer { try? FileManager.default.removeItem(atPath: folder) }
        let victim = folder + "/victim.txt"
        let secrets = folder + "/secrets"
        try FileManager.default.createDirectory(atPath: secrets, withIntermediateDirectories: true)
        try Data("the worker's own file\n".utf8).write(to: URL(fileURLWithPath: victim))
        let installer = folder + "/hostile-uv"
        let plant = planted == "meta" ? "ln -s '\(victim)' meta.json" : "rm -rf site && ln -s '\(secrets)' site"
        try Data("#!/bin/sh\n\(plant)\nexit 0\n".utf8).write(to: URL(fileURLWithPath: installer))
        chmod(installer, 0o755)
        var c = EnvBuilder.Configuration(root: folder + "/envs", python: SandboxHarness.python)
        c.uv = installer
        c.noIndex = true
        let envs = EnvBuilder(configuration: c, interpreter: try EnvBuilder.probe(python: SandboxHarness.python))
        await #expect(throws: GridError.self) { _ = try await envs.prepare(try requirements("cg-a")) { _ in } }
        #expect(try String(contentsOfFile: victim, encoding: .utf8) == "the worker's own file\n")
        #expect(envs.cachedDigests().isEmpty, "an environment was kept")
    }
}

extension EnvBuilderTests {
    /// A package's build script (`--env-allow-sdist`) runs in the build folder and may write beside `site`: 3 MB of
    /// junk, a folder without permissions, a `last-used` stamp from the future. None of it is kept (it went into the
    /// cache uncounted, for good, and skewed eviction); the environment's recorded size is its `site` alone.
    @Test func whatABuildLeavesBesideTheEnvironmentIsNotKept() async throws {
        defer { try? FileManager.default.removeItem(atPath: folder) }
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        let installer = folder + "/leaving-uv"
        let script = """
            #!/bin/sh
            mkdir -p site/pkg && printf 'x = 1\\n' > site/pkg/__init__.py
            head -c 3000000 /dev/zero > junk.bin
            mkdir -p locked/inner && touch locked/inner/f && chmod 000 locked
            touch -d '2100-01-01' last-used
            exit 0
            """
        try Data((script + "\n").utf8).write(to: URL(fileURLWithPath: installer))
        chmod(installer, 0o755)
        var c = EnvBuilder.Configuration(root: folder + "/envs", python: SandboxHarness.python)
        c.uv = installer
        c.noIndex = true
        let envs = EnvBuilder(configuration: c, interpreter: try EnvBuilder.probe(python: SandboxHarness.python))
        let ready = try await envs.prepare(try requirements("cg-a")) { _ in }
        let kept = (ready.sitePath as NSString).deletingLastPathComponent
        let names = Set(try FileManager.default.contentsOfDirectory(atPath: kept))
        #expect(names.isSubset(of: ["site", "meta.json", "last-used"]), "kept beside the environment: \(names.sorted())")
        if names.contains("last-used") {
            let stamp = try FileManager.default.attributesOfItem(atPath: kept + "/last-used")[.modificationDate] as? Date
            #expect((stamp ?? .distantFuture) < Date().addingTimeInterval(86_400), "a stamp from the future was kept")
        }
        let meta = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: kept + "/meta.json"))) as? [String: Any]
        let bytes = (meta?["bytes"] as? Int) ?? -1
        #expect(bytes >= 0 && bytes < 4096, "recorded size \(bytes): the site alone")
        envs.release(ready.key)
    }
}

extension EnvBuilderTests {
    /// A build's memory, where resident memory summed over its processes passes the limit, is measured by each
    /// process's share of its pages: a parent of 100 MB that forked three children is about 100 MB, not 400.
    @Test func memorySharedAfterAForkCountsOnce() async throws {
        let dir = "/tmp/cg-pss-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: SandboxHarness.python)
        p.arguments = ["-c", "import os, time\nx = b'x' * (100 << 20)\nfor _ in range(3):\n    if os.fork() == 0:\n        time.sleep(60)\n        os._exit(0)\nopen('\(dir)/ready', 'w').close()\ntime.sleep(60)"]
        try p.run()
        defer { kill(-p.processIdentifier, SIGKILL); ProcessTree.descendants(of: p.processIdentifier).forEach { kill($0, SIGKILL) }; p.terminate() }
        #expect(try await eventually(timeout: 30) { FileManager.default.fileExists(atPath: dir + "/ready") })
        let pids = [p.processIdentifier] + ProcessTree.descendants(of: p.processIdentifier)
        #expect(pids.count >= 4)
        let rss = pids.reduce(Int64(0)) { sum, pid in
            let statm = (try? String(contentsOfFile: "/proc/\(pid)/statm", encoding: .utf8)) ?? ""
            return sum + (statm.split(separator: " ").dropFirst().first.flatMap { Int64($0) } ?? 0) * Int64(getpagesize())
        }
        let pss = try #require(JobNamespace.proportionalBytes(pids))
        #expect(rss > 350 << 20 && pss > 90 << 20 && pss < 200 << 20, "RSS \(rss >> 20) MiB, PSS \(pss >> 20) MiB")
        #expect(JobNamespace.proportionalBytes([]) == 0 && JobNamespace.proportionalBytes([0, -1]) == 0)
    }

    /// RLIMIT_NPROC is set inside a build's namespace only where the kernel counts it there (5.14 on).
    @Test func theProcessLimitIsSetOnlyWhereTheKernelCountsItPerNamespace() {
        #expect(RootlessLimits.nprocCountsPerNamespace(release: "6.18.44-fc-v1300"))
        #expect(RootlessLimits.nprocCountsPerNamespace(release: "5.14.0-284.el9.x86_64"))
        #expect(!RootlessLimits.nprocCountsPerNamespace(release: "5.10.0-28-amd64"))
        #expect(!RootlessLimits.nprocCountsPerNamespace(release: "4.19.0"))
        #expect(!RootlessLimits.nprocCountsPerNamespace(release: ""))
        #expect(!RootlessLimits.nprocCountsPerNamespace(release: "garbage"))
        #expect(RootlessLimits.nprocCountsPerNamespace(release: "10.0"))
        #expect(!RootlessLimits.kernelRelease.isEmpty)
        #expect(EnvBuilder.Configuration(root: "/r", python: "/p").maxBuildProcesses >= 1_024, "uv runs two threads a core")
    }

    /// A sandboxed build is stopped past the worker's process or memory limit, and says which (pure).
    @Test func aBuildOverItsProcessesOrMemoryIsStoppedWithTheReason() {
        #expect(EnvBuilder.overLimit(tasks: 255, residentBytes: 4 << 30, maxProcesses: 256, maxMemoryBytes: 4 << 30) == nil)
        #expect(EnvBuilder.overLimit(tasks: 256, residentBytes: 0, maxProcesses: 256, maxMemoryBytes: 4 << 30)?.contains("256 processes") == true)
        #expect(EnvBuilder.overLimit(tasks: 1, residentBytes: (4 << 30) + 1, maxProcesses: 256, maxMemoryBytes: 4 << 30)?.contains("4096 MB") == true)
        // Limits that make no sense are the tightest, never none; no trap at the extremes.
        #expect(EnvBuilder.overLimit(tasks: 1, residentBytes: 0, maxProcesses: 0, maxMemoryBytes: 1 << 30) != nil)
        #expect(EnvBuilder.overLimit(tasks: 0, residentBytes: 2, maxProcesses: Int.min, maxMemoryBytes: -1) != nil)
        #expect(EnvBuilder.overLimit(tasks: Int.max, residentBytes: .max, maxProcesses: .max, maxMemoryBytes: .max) != nil)
        #expect(EnvBuilder.overLimit(tasks: 0, residentBytes: .min, maxProcesses: .max, maxMemoryBytes: .max) == nil)
    }

    /// A build script (`--env-allow-sdist`; here the installer itself, a script of the test's) that forks without bound,
    /// or allocates without bound, in the build sandbox: stopped at the worker's limits, with the reason. Before, the
    /// build's processes and memory had no bound but the machine's for its ten minutes.
    @Test(arguments: ["processes", "memory"])
    func aBuildThatForksOrAllocatesWithoutBoundIsStopped(_ what: String) async throws {
        defer { try? FileManager.default.removeItem(atPath: folder) }
        // Not under /tmp, which the sandbox has a private one of.
        let bin = "/var/tmp/cg-greedy-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: bin, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: bin) }
        let installer = bin + "/greedy-uv"
        // Forks until a fork is refused (RLIMIT_NPROC), and holds what it has; or fills 400 MB.
        let program =
            what == "processes"
            ? "import os, time\nfor i in range(200):\n    try:\n        pid = os.fork()\n    except OSError:\n        break\n    if pid == 0:\n        time.sleep(60)\n        os._exit(0)\ntime.sleep(60)"
            : "import time\nx = b\"x\" * (400 << 20)\ntime.sleep(60)"
        let body = "exec '\(SandboxHarness.python)' -c '\(program)'"
        try Data("#!/bin/sh\n\(body)\n".utf8).write(to: URL(fileURLWithPath: installer))
        chmod(installer, 0o755)
        var c = EnvBuilder.Configuration(root: folder + "/envs", python: SandboxHarness.python)
        c.uv = installer
        c.noIndex = true
        c.maxBuildProcesses = 32
        c.maxBuildMemoryBytes = 128 << 20
        c.timeLimitSeconds = 120
        c.sandbox = EnvBuilder.sandbox(of: RestrictedRunner(python: SandboxHarness.python), python: SandboxHarness.python)
        try #require(c.sandbox != nil, "no build sandbox on this machine")
        let envs = EnvBuilder(configuration: c, interpreter: try EnvBuilder.probe(python: SandboxHarness.python))
        do {
            _ = try await envs.prepare(try requirements("cg-a")) { _ in }
            Issue.record("the build went on past its \(what) limit")
        } catch let e as GridError {
            let expected = what == "processes" ? "processes, this worker's limit is 32" : "over this worker's limit of 128 MB"
            #expect(e.message.contains("was stopped") && e.message.contains(expected), "\(e.message)")
        }
        #expect(envs.cachedDigests().isEmpty, "an environment was kept")
        #expect(hostProcesses(containing: installer).isEmpty, "the build's processes outlived it")
    }
}

/// The installer's output, gathered across the builder's log calls.
actor OutputBox {
    private var bytes: [UInt8] = []
    func append(_ chunk: [UInt8]) { bytes += chunk }
    var text: String { String(decoding: bytes, as: UTF8.self) }
}
