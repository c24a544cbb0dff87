import Foundation
import GridClient
import GridCore
import GridProtocol
import GridSandbox
import GridTestSupport
import Testing

@Suite(.serialized) struct FunctionTaskTests {
    func run(_ link: PeerLink, _ program: String, args: JSONValue = .array([]), confidential: Bool = true, timeout: Double? = nil, id: String? = nil)
        async throws -> Msg.CPUResult
    {
        let task = Msg.CPUTask(
            taskId: id ?? "t-\(UUID().uuidString.prefix(8))", program: program, args: args, confidential: confidential, timeout: timeout)
        guard case .cpuResult(let r) = try await link.request(.cpuTask(task), timeout: 120).message else { throw TestGridError("no result") }
        return r
    }

    @Test func failuresComeBackAsClearErrorsAndThePeerKeepsWorking() async throws {
        let g = try await PeerGrid(label: "tasks-errors")
        defer { g.shutdown() }
        let peers = try await g.startPeers(1)
        let link = try await g.link(peers[0])

        let syntax = try await run(link, "def main(:\n  pass")
        #expect(!syntax.ok && syntax.error == "syntax_error")
        let raised = try await run(link, "def main():\n    return 1 / 0")
        #expect(!raised.ok && raised.error == "exception")
        #expect(raised.message?.contains("ZeroDivisionError") == true)
        #expect(raised.traceback?.contains("line 2") == true)
        let slow = try await run(link, "import time\ndef main():\n    time.sleep(30)", timeout: 1)
        #expect(!slow.ok && slow.error == "timeout")
        let notJSON = try await run(link, "def main():\n    return object()")
        #expect(!notJSON.ok && notJSON.error == "not_json")
        let missing = try await run(link, "def other(): return 1")
        #expect(!missing.ok && missing.error == "no_function")
        let crash = try await run(link, "import os\ndef main():\n    os._exit(3)")
        #expect(!crash.ok && crash.error == "crashed")
        let killed = try await run(link, "import os, signal\ndef main():\n    os.kill(os.getpid(), signal.SIGKILL)")
        #expect(!killed.ok && killed.error == "crashed")
        do {
            _ = try await run(link, "def main(): return 1", timeout: -1)
            Issue.record("a negative timeout was accepted")
        } catch let e as GridError {
            #expect(e.code == .badRequest)
        }
        let fine = try await run(link, "def main(x, y=2): return {'sum': x + y}", args: .object(["x": .number(40)]))
        #expect(fine.ok && fine.result == .object(["sum": .number(42)]))
        await link.close()
    }

    @Test func tasksGetFreshGlobalsAndNeverShareAnInterpreterWithAnotherUser() async throws {
        let g = try await PeerGrid(label: "tasks-isolation")
        defer { g.shutdown() }
        let peers = try await g.startPeers(1, slots: 1)
        let bob = try await g.grid.user("bob")
        let aliceLink = try await g.link(peers[0])
        let bobLink = try await g.link(peers[0], token: bob.token)
        let patch = "import builtins, json, os\nCOUNTER = 41\ndef main():\n    builtins.leaked = 'x'\n    json.dumps = None\n    return [COUNTER + 1, os.getpid()]"
        let look = "import builtins, json, os\ndef main():\n    return [hasattr(builtins, 'leaked'), 'COUNTER' in globals(), json.dumps is None, os.getpid()]"
        let first = try await run(aliceLink, patch)
        guard first.ok, case .array(let a)? = first.result, a.count == 2, case .number(let alicePid) = a[1] else {
            Issue.record("\(first)")
            return
        }
        #expect(a[0] == .number(42))
        // Alice's next task: fresh globals, in the same warm interpreter (what she patched in modules stays hers).
        let again = try await run(aliceLink, look)
        #expect(again.result == .array([.bool(true), .bool(false), .bool(true), .number(alicePid)]), "\(again)")
        // Bob's task never runs where Alice's did, and sees nothing of it.
        let bobs = try await run(bobLink, look)
        guard bobs.ok, case .array(let b)? = bobs.result, b.count == 4 else {
            Issue.record("\(bobs)")
            return
        }
        #expect(Array(b.prefix(3)) == [.bool(false), .bool(false), .bool(false)], "\(bobs)")
        #expect(b[3] != .number(alicePid))
        // A task that ends its interpreter takes the patches with it: Alice's next task starts clean, in a new one.
        let crash = try await run(aliceLink, "import os\ndef main():\n    os._exit(3)")
        #expect(!crash.ok && crash.error == "crashed" && crash.message?.contains("status 3") == true, "\(crash)")
        let fresh = try await run(aliceLink, look)
        guard case .array(let f)? = fresh.result, f.count == 4 else {
            Issue.record("\(fresh)")
            return
        }
        #expect(Array(f.prefix(3)) == [.bool(false), .bool(false), .bool(false)], "\(fresh)")
        #expect(f[3] != .number(alicePid))
        await aliceLink.close()
        await bobLink.close()
    }

    @Test func aNonConfidentialTaskRunsOnTheLeastLoadedPeer() async throws {
        let g = try await PeerGrid(label: "tasks-balance")
        defer { g.shutdown() }
        let peers = try await g.startPeers(2, slots: 2)
        let (a, b) = (peers[0], peers[1])
        let (linkA, linkB) = (try await g.link(a), try await g.link(b))
        // Idle grid: the connected peer has a free slot and runs the task itself.
        let idle = try await run(linkB, "def main(): return 1", confidential: false)
        #expect(idle.peer == b.id)
        // Load both, each with tasks sent to it while it has a free slot (so each runs its own): A one task of its two
        // slots, B two. (Confidential tasks would not do: their existence never reaches the manager.) The load lasts
        // long enough (60 s, ended with the grid) that a loaded machine cannot finish it before the public task comes.
        let sleep = "import time\ndef main():\n    time.sleep(60)"
        let load = Task {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { _ = try await self.run(linkA, sleep, confidential: false) }
                for _ in 0..<2 {
                    group.addTask { _ = try await self.run(linkB, sleep, confidential: false) }
                }
                try await group.waitForAll()
            }
        }
        defer { load.cancel() }
        // Wait until the manager knows both loads. The manager's best peer is A at A's load of 0.5 only once B's report
        // says more than 0.5 (the asking peer, B, wins a tie): B has at least two tasks, so that report is about the
        // load (the idle task above was one). A report B sent earlier (about the idle task, running or ended) is
        // already behind it, on the same connection, so the manager's view of B cannot fall back to idle.
        var last: Msg.BestPeer?
        let known = await eventually(timeout: 20, interval: 0.1) {
            guard case .bestPeer(let best)? = try? await linkB.request(.getBestPeer(Msg.GetBestPeer())).message else { return false }
            last = best
            return best.peer.workerId == a.id && best.load == 0.5
        }
        #expect(known, "the manager never saw both loads; its last best peer: \(String(describing: last))\n\(g.grid.logs())")
        let moved = try await run(linkB, "def main(): return 2", confidential: false)
        #expect(
            moved.ok && moved.peer == a.id,
            """
            a public task sent to the busy peer ran on \(moved.peer), not on the idle one
            \(g.grid.logs(matching: ["running here", "trusted link", "best peer", "peers changed", "error"]))
            """)
        await linkA.close()
        await linkB.close()
    }

    @Test func aPeerWhoseSlotRunsAJobSendsAPublicTaskToAnIdlePeer() async throws {
        let g = try await PeerGrid(label: "tasks-job-busy")
        defer { g.shutdown() }
        let peers = try await g.startPeers(2, slots: 1)
        let script = g.grid.root + "/sleep.py"
        try "import time\nprint('up', flush=True)\ntime.sleep(60)\n".write(toFile: script, atomically: true, encoding: .utf8)
        let submit = try await g.cli(["submit", "--json", script, "--minutes", "2"])
        #expect(submit.status == 0, "\(submit.stderr)")
        let line = submit.stdout.split(separator: "\n").first.map(String.init) ?? ""
        let id = try GridJSON.decode(API.SubmitResponse.self, from: Data(line.utf8)).job.id
        var worker: String?
        let running = await eventually(timeout: 30) {
            guard let job = try? await g.alice.job(id), job.state == .running else { return false }
            worker = job.workerId
            return true
        }
        #expect(running, "the job never ran:\n\(g.grid.logs())")
        // "running" starts when the manager hands the job out; wait until the worker has really started it.
        let started = await eventually(timeout: 30) { (try? await g.alice.logs(id, from: 0))?.text.contains("up") == true }
        #expect(started, "the job never printed:\n\(g.grid.logs())")
        let busy = try #require(peers.first { $0.id == worker })
        let idle = try #require(peers.first { $0.id != worker })
        // The busy peer has no task running or queued, but its one slot runs a job: it asks the manager, which names
        // the idle peer.
        let link = try await g.link(busy)
        let r = try await run(link, "def main(): return 3", confidential: false)
        #expect(r.ok && r.peer == idle.id, "a public task given to the peer running a job ran on \(r.peer)\n\(g.grid.logs())")
        await link.close()
        _ = try? await g.alice.cancel(id)
    }

    @Test func aConfidentialTaskStaysOnItsPeerAndTheManagerHearsNothingOfIt() async throws {
        let g = try await PeerGrid(label: "tasks-confidential")
        defer { g.shutdown() }
        let peers = try await g.startPeers(2, slots: 1)
        let link = try await g.link(peers[0])
        let secret = "SECRET-\(UUID().uuidString.prefix(8))"
        let publicMark = "PUBLIC-\(UUID().uuidString.prefix(8))"
        // The confidential task keeps peer 1's only slot busy while a public one arrives: a busy peer asks the manager
        // where the public task goes (an idle peer would run it at once without asking).
        async let confidential = run(link, "import time\ndef main():\n    time.sleep(2)\n    return '\(secret)'", confidential: true, id: "task-\(secret)")
        let busy = await eventually(timeout: 20) { ((try? await g.status(peers[0]))?.running ?? 0) >= 1 }
        #expect(busy)
        let p = try await run(link, "def main():\n    return 1", confidential: false, id: "task-\(publicMark)")
        #expect(p.ok, "\(p)")
        let r = try await confidential
        #expect(r.ok && r.peer == peers[0].id && r.result == .string(secret))
        // The manager logs every task it places (positive control), and nothing of the confidential one.
        let seen = await eventually(timeout: 10) { g.grid.manager?.errorLog.contains(publicMark) == true }
        #expect(seen)
        #expect(g.grid.manager?.errorLog.contains(secret) == false)
        await link.close()
    }

    @Test func twoUsersFloodingOnePeerAreServedInTurns() async throws {
        let g = try await PeerGrid(label: "tasks-fair")
        defer { g.shutdown() }
        let peers = try await g.startPeers(1, slots: 1)
        let bob = try await g.grid.user("bob")
        let aliceLink = try await g.link(peers[0])
        let bobLink = try await g.link(peers[0], token: bob.token)
        let program = "import time\ndef main(i):\n    time.sleep(0.3)\n    return i"
        // Alice's first task holds the only slot a while, so that her others wait in the queue however slowly they
        // arrive (beside a CPU hog they came too far apart to be five in the queue at once, each ending in 0.3 s).
        let holder = "import time\ndef main(i):\n    time.sleep(8)\n    return i"
        let results = try await withThrowingTaskGroup(of: (String, Msg.CPUResult).self) { group in
            group.addTask { ("alice", try await self.run(aliceLink, holder, args: .array([.number(0)]))) }
            let holding = await eventually(timeout: 30) { ((try? await g.status(peers[0]))?.running ?? 0) >= 1 }
            #expect(holding)
            for i in 1..<6 { group.addTask { ("alice", try await self.run(aliceLink, program, args: .array([.number(Double(i))]))) } }
            // Bob starts only once all of Alice's tasks wait in the queue.
            let queued = await eventually(timeout: 30) { ((try? await g.status(peers[0]))?.queued["alice"] ?? 0) >= 5 }
            #expect(queued)
            for i in 0..<6 { group.addTask { ("bob", try await self.run(bobLink, program, args: .array([.number(Double(i))]))) } }
            var all: [(String, Msg.CPUResult)] = []
            for try await r in group { all.append(r) }
            return all
        }
        #expect(results.allSatisfy { $0.1.ok })
        let order = results.sorted { ($0.1.startOrder ?? 0) < ($1.1.startOrder ?? 0) }.map(\.0)
        // First-come-first-served would start all six of Alice's before any of Bob's; turns interleave them.
        let firstSeven = order.prefix(7)
        #expect(firstSeven.filter { $0 == "bob" }.count >= 2, "start order: \(order)")
        await aliceLink.close()
        await bobLink.close()
    }
}

@Suite(.serialized) struct FunctionTaskSandboxTests {
    /// With `--sandbox bwrap`, the warm interpreters run inside bubblewrap: tasks run as nobody, without the network.
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/bwrap")))
    func functionTasksRunInTheWorkersBwrapTier() async throws {
        let g = try await PeerGrid(label: "tasks-bwrap")
        defer { g.shutdown() }
        let peer = try await g.startPeer("peer-1", extra: ["--sandbox", "bwrap"])
        try await g.waitForMembership([peer])
        let link = try await g.link(peer)
        let program = """
            import os, socket
            def main(port):
                s = socket.socket()
                s.settimeout(2)
                try:
                    s.connect(("127.0.0.1", port))
                    net = "reachable"
                except OSError:
                    net = "blocked"
                return [os.getuid(), net, os.getcwd()]
            """
        let task = Msg.CPUTask(taskId: "bw", program: program, args: .array([.number(Double(peer.port))]), confidential: true)
        guard case .cpuResult(let r) = try await link.request(.cpuTask(task), timeout: 60).message else { throw TestGridError("no result") }
        #expect(r.ok, "\(r)\n\(g.grid.logs())")
        #expect(r.result == .array([.number(65534), .string("blocked"), .string("/job")]), "\(r)")
        await link.close()
    }

    /// In the bwrap tier each interpreter has a cgroup: a task that eats more than its slot's share of the worker's
    /// memory is killed with its interpreter, says so, and the next task runs in a fresh one.
    @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/bin/bwrap")))
    func aTaskThatEatsTooMuchMemoryLosesOnlyItsInterpreter() async throws {
        let g = try await PeerGrid(label: "tasks-oom")
        defer { g.shutdown() }
        let peer = try await g.startPeer("peer-1", slots: 1, extra: ["--sandbox", "bwrap", "--memory", "1"])
        try await g.waitForMembership([peer])
        let link = try await g.link(peer)
        func run(_ program: String) async throws -> Msg.CPUResult {
            let task = Msg.CPUTask(taskId: "m-\(UUID().uuidString.prefix(6))", program: program, confidential: true, timeout: 60)
            guard case .cpuResult(let r) = try await link.request(.cpuTask(task), timeout: 90).message else { throw TestGridError("no result") }
            return r
        }
        let hog = try await run("def main():\n    b = bytearray(3 << 30)\n    return len(b)")
        #expect(!hog.ok && hog.error == "crashed" && hog.message?.contains("ran out of memory (1024 MiB per interpreter)") == true, "\(hog)")
        let fine = try await run("def main():\n    return 7")
        #expect(fine.ok && fine.result == .number(7), "\(fine)")
        await link.close()
    }
}

/// Function tasks with Python packages (`CPU_TASK.requirements`): an interpreter of that environment, never one
/// serving another user or another environment.
@Suite(.serialized) struct FunctionTaskEnvironmentTests {
    @Test(.timeLimit(.minutes(10)), arguments: ["none", "bwrap"])
    func aTaskWithRequirementsRunsInAnInterpreterOfThatEnvironmentOnly(tier: String) async throws {
        let g = try await PeerGrid(label: "tasks-env")
        defer { g.shutdown() }
        let wheels = g.grid.root + "/wheels"
        try TestWheels.wheel(in: wheels, name: "cg-greet", module: "cg_greet", source: "GREETING = 'hello from cg-greet'\n")
        let peer = try await g.startPeer(
            "peer-1", slots: 1, extra: ["--no-index", "--find-links", wheels, "--env-installer", "pip", "--sandbox", tier])
        try await g.waitForMembership([peer])
        let bob = try await g.grid.user("bob")
        let aliceLink = try await g.link(peer)
        let bobLink = try await g.link(peer, token: bob.token)
        func run(_ link: PeerLink, _ program: String, requirements: [String]?) async throws -> Msg.CPUResult {
            let task = Msg.CPUTask(
                taskId: "t-\(UUID().uuidString.prefix(8))", program: program, confidential: true, requirements: requirements)
            guard case .cpuResult(let r) = try await link.request(.cpuTask(task), timeout: 120).message else { throw TestGridError("no result") }
            return r
        }
        // The interpreter's identity: its PID and start time (in the bwrap tier every interpreter is PID 2 of its own namespace).
        let greet = "import os\ndef main():\n    import cg_greet\n    return [cg_greet.GREETING, '%d@%s' % (os.getpid(), open('/proc/self/stat').read().split()[21])]"
        let first = try await run(aliceLink, greet, requirements: ["cg-greet"])
        #expect(first.ok, "\(first)")
        guard case .array(let a)? = first.result, a.count == 2, a[0] == .string("hello from cg-greet") else {
            Issue.record("unexpected result \(String(describing: first.result)) \(first.message ?? "")")
            return
        }
        // The same user without the package: another interpreter, which lacks it.
        let plain = try await run(aliceLink, "import os\ndef main():\n    import cg_greet\n    return os.getpid()", requirements: nil)
        #expect(!plain.ok && plain.message?.contains("cg_greet") == true, "\(plain)")
        // Another user with the same package: an interpreter of their own.
        let other = try await run(bobLink, greet, requirements: ["cg-greet"])
        #expect(other.ok, "\(other)")
        if case .array(let b)? = other.result { #expect(b[1] != a[1], "bob's task ran in alice's interpreter") }
        // Alice again: her interpreter of that environment is reused.
        let again = try await run(aliceLink, greet, requirements: ["cg-greet"])
        if case .array(let c)? = again.result { #expect(c[1] == a[1]) }
        // An unknown package: a clear error, and the peer keeps working.
        let missing = try await run(aliceLink, greet, requirements: ["cg-no-such-package"])
        #expect(!missing.ok && missing.error == "environment" && missing.message?.contains("cg-no-such-package") == true, "\(missing)")
        // A malformed line is refused with its reason every time (a set that failed to parse is never remembered),
        // and the good set still runs.
        for _ in 0..<2 {
            do {
                let r = try await run(aliceLink, greet, requirements: ["cg-greet", "-e ./elsewhere"])
                Issue.record("a malformed requirement line was accepted: \(r)")
            } catch let e as GridError {
                #expect(e.message.contains("-e ./elsewhere") || e.message.contains("option"), "\(e)")
            }
        }
        #expect(try await run(aliceLink, greet, requirements: ["cg-greet"]).ok)
        await aliceLink.close()
        await bobLink.close()
    }
}
