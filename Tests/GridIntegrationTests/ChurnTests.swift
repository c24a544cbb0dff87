import Foundation
import GridClient
import GridCore
import GridSandbox
import GridTestSupport
import Testing

extension Integration {
    /// Runs that end while the manager is down, and jobs whose workers come and go (issue: data loss and churn).
    @Suite struct Churn {
        /// A job that waits for `gate` (a file the test creates) before and after its last output.
        static func gatedScript(_ grid: TestGrid, gate: String, lastOutputBeforeGate: Bool) throws -> String {
            try Scenario.script(
                grid, "gated.py",
                """
                import os, time
                def wait(path):
                    for _ in range(1200):
                        if os.path.exists(path):
                            return
                        time.sleep(0.05)
                print("started", flush=True)
                \(lastOutputBeforeGate ? "" : "wait(\(String(reflecting: gate)))")
                for i in range(40):
                    print(f"answer {i * i}", flush=True)
                open("result.txt", "w").write("1600\\n" * 1000)
                \(lastOutputBeforeGate ? "wait(\(String(reflecting: gate)))" : "")
                """)
        }

        static let expectedTail = (0..<40).map { "answer \($0 * $0)\n" }.joined()

        /// The manager is killed; the job's end (and maybe its last output) happens while it is down; it comes back.
        func finishWhileTheManagerIsDown(lastOutputBeforeKill: Bool) async throws {
            let grid = try TestGrid(label: "finish-down")
            defer { grid.shutdown() }
            let first = try await grid.startManager(leaseSeconds: 3)
            let (gridPort, httpPort) = (grid.gridPort, grid.httpPort)
            let owner = try await grid.user("owner")
            let worker = try await grid.startWorker("w1", owner: owner)
            let alice = try await grid.user("alice")
            let gate = grid.root + "/gate"
            let script = try Self.gatedScript(grid, gate: gate, lastOutputBeforeGate: lastOutputBeforeKill)
            let id = try await Scenario.submit(grid, token: alice.token!, [script]).job.id
            // Wait until the manager holds what the job printed before the gate.
            let before = lastOutputBeforeKill ? "answer 1521\n" : "started\n"
            let seen = try await eventually(timeout: 30) { try await alice.logs(id, from: 0).text.contains(before) }
            #expect(seen, "the job's output before the gate never reached the manager")

            first.signal(SIGKILL)
            await #expect(first.waitForExit(timeout: 10) != 0)
            _ = FileManager.default.createFile(atPath: gate, contents: Data())
            // The run ends while the manager is down: the worker says so in its log.
            let ended = await eventually(timeout: 30) { worker.errorLog.contains("job ended") }
            #expect(ended, "the job did not end while the manager was down:\n\(worker.errorLog.suffix(2000))")

            try await grid.startManager(leaseSeconds: 3, gridPort: gridPort, httpPort: httpPort)
            let done = try await Scenario.waitForState(alice, id, [.completed, .failed, .cancelled], timeout: 60)
            #expect(done.state == .completed, "\(done.reason ?? "")")
            #expect(done.attempt == 1, "the run that ended while the manager was down is the one settled")
            let log = try await alice.logs(id, from: 0).text
            #expect(log == "started\n" + Self.expectedTail, "the whole log, byte for byte; got:\n\(log.suffix(400))")
            #expect(done.outputs?.map(\.name) == ["result.txt"])
            let output = try await alice.output(id, name: "result.txt")
            #expect(output == Data(("1600\n" * 1000).utf8))
            let paid = try #require(done.paid)
            #expect(try await alice.me().balance == 100 - paid)
            #expect(try await owner.me().balance == 100 + paid)
            #expect(try await Scenario.ledgerOK(grid))
        }

        @Test func aJobWhoseLastOutputAndEndComeWhileTheManagerIsDownCompletesWithItsWholeLog() async throws {
            try await finishWhileTheManagerIsDown(lastOutputBeforeKill: false)
        }

        @Test func aJobThatEndsRightAfterTheManagerGotItsLastOutputCompletesWithItsWholeLog() async throws {
            try await finishWhileTheManagerIsDown(lastOutputBeforeKill: true)
        }

        @Test func aJobWhoseWorkersAreKilledFiveTimesWhileOthersRunOnCompletesOnceAndPaysOnce() async throws {
            let grid = try TestGrid(label: "churn")
            defer { grid.shutdown() }
            // A killed worker is restarted on its data folder and says at once that it holds no run, so the kills need no
            // short lease; bob's job must survive a minute of them, and a 2 s lease lost it to one stall of a loaded machine.
            try await grid.startManager(leaseSeconds: 10)
            let owner = try await grid.user("owner")
            let alice = try await grid.user("alice")
            let bob = try await grid.user("bob")
            // w3 is busy for the whole test with bob's job, which must survive every kill.
            try await grid.startWorker("w3", owner: owner, cpus: 1, extra: ["--slots", "1"])
            let release = grid.root + "/release"
            let survivor = try Scenario.script(
                grid, "survivor.py",
                """
                import os, time
                print("survivor up", flush=True)
                for _ in range(3000):
                    if os.path.exists(\(String(reflecting: release))):
                        break
                    time.sleep(0.05)
                print("survivor done", flush=True)
                """)
            let long = try await Scenario.submit(grid, token: bob.token!, [survivor, "--cpus", "1"]).job.id
            _ = try await Scenario.waitForState(bob, long, [.running])
            var workers: [String: ManagedProcess] = [:]
            for name in ["w1", "w2"] { workers[name] = try await grid.startWorker(name, owner: owner, cpus: 1, extra: ["--slots", "1"]) }
            let script = try Scenario.script(
                grid, "victim.py",
                """
                import os, time
                print("attempt", os.environ.get("CAMPUSGRID_ATTEMPT"), flush=True)
                time.sleep(120 if int(os.environ.get("CAMPUSGRID_ATTEMPT", "1")) <= 5 else 0.2)
                print("victim done", flush=True)
                """)
            let id = try await Scenario.submit(grid, token: alice.token!, [script, "--cpus", "1"]).job.id
            // Kill the job's worker five times (a loaded machine may add an interruption of its own: counted, not assumed).
            var kills = 0
            while kills < 5 {
                let running = try await Scenario.waitForState(alice, id, [.running, .completed, .failed], timeout: 60)
                if running.state != .running { break }
                let attempt = running.attempt
                let started = try await eventually(timeout: 30) { try await alice.logs(id, from: 0).text.contains("attempt \(attempt)\n") }
                let now = try await alice.job(id)
                guard started, now.state == .running, now.attempt == attempt else { continue }
                let name = try #require(running.worker)
                let victim = try #require(workers[name], "job ran on \(name)")
                victim.signal(SIGKILL)
                await #expect(victim.waitForExit(timeout: 10) != 0)
                kills += 1
                workers[name] = try await grid.startWorker(name, owner: owner, cpus: 1, extra: ["--slots", "1"], dataDirectory: grid.root + "/\(name)")
            }
            #expect(kills == 5, "the job's workers were killed \(kills) times")
            let done = try await Scenario.waitForState(alice, id, [.completed, .failed, .cancelled], timeout: 90)
            #expect(done.state == .completed, "\(done.reason ?? "")")
            let interruptions = done.interruptions ?? []
            #expect(interruptions.count >= 5)
            #expect(done.attempt == interruptions.count + 1)
            #expect(interruptions.allSatisfy { $0.kind == "worker_lost" })
            #expect(Set(interruptions.map(\.worker)).isSubset(of: ["w1", "w2"]))
            let status = try await grid.cli(["status", "\(id)"], token: alice.token!)
            #expect(status.stdout.contains("interrupted: \(interruptions.count) times"), "\(status.stdout)")
            #expect(done.events?.filter { $0.state == .completed }.count == 1, "completed exactly once")

            _ = FileManager.default.createFile(atPath: release, contents: Data())
            let other = try await Scenario.waitForState(bob, long, [.completed, .failed, .cancelled], timeout: 60)
            #expect(other.state == .completed)
            #expect(other.attempt == 1, "the other worker's job survived every kill")
            let paid = try #require(done.paid) + (try #require(other.paid))
            #expect(try await alice.me().balance + (try await bob.me().balance) == 200 - paid)
            #expect(try await owner.me().balance == 100 + paid)
            #expect(try await Scenario.ledgerOK(grid))
        }

        @Test func aJobThatKillsEveryWorkerItRunsOnIsFailedAfterThreeWorkersAndRefunded() async throws {
            let grid = try TestGrid(label: "hostkiller")
            defer { grid.shutdown() }
            try await grid.startManager(leaseSeconds: 2)
            let owner = try await grid.user("owner")
            let alice = try await grid.user("alice")
            var workers: [ManagedProcess] = []
            for name in ["w1", "w2", "w3", "w4"] { workers.append(try await grid.startWorker(name, owner: owner, cpus: 1, extra: ["--slots", "1"])) }
            let script = try Scenario.script(
                grid, "killer.py",
                """
                import os, signal, time
                print("taking my host down", flush=True)
                time.sleep(0.3)
                os.kill(os.getppid(), signal.SIGKILL)
                time.sleep(30)
                """)
            let id = try await Scenario.submit(grid, token: alice.token!, [script, "--cpus", "1"]).job.id
            let done = try await Scenario.waitForState(alice, id, [.completed, .failed, .cancelled], timeout: 90)
            #expect(done.state == .failed)
            #expect(done.reason?.contains("3 different workers") == true, "\(done.reason ?? "")")
            #expect(done.reason?.contains("crash the machines it runs on") == true)
            #expect(done.reason?.contains("refunded") == true)
            #expect(done.paid == 0)
            #expect((done.interruptions ?? []).filter(\.blamed).count == 3)
            #expect(Set((done.interruptions ?? []).map(\.worker)).count == 3)
            _ = workers
            #expect(try await alice.me().balance == 100, "refunded in full")
            #expect(try await owner.me().balance == 100)
            #expect(try await Scenario.ledgerOK(grid))
        }
    }
}

func * (s: String, n: Int) -> String { String(repeating: s, count: n) }
