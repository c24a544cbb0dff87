import Foundation
import GridClient
import GridCore
import GridSandbox
import GridTestSupport
import Testing

extension ManagerFaults {
    @Suite struct FaultTolerance {
        @Test func killedWorkersJobRerunsElsewhereChargedOnceAndTheDeadOwnerEarnsNothing() async throws {
            let grid = try TestGrid(label: "killworker")
            defer { grid.shutdown() }
            // The killed worker's run comes back when its lease ends; 2 s was short enough that one stall of a loaded
            // machine cost a survivor its run too.
            try await grid.startManager(leaseSeconds: 6)
            let ann = try await grid.user("ann")
            let bob = try await grid.user("bob")
            let wa = try await grid.startWorker("ann-laptop", owner: ann)
            let wb = try await grid.startWorker("bob-laptop", owner: bob)
            let alice = try await grid.user("alice")
            let script = try Scenario.script(
                grid, "slow.py",
                """
                import os, time
                print("started", os.getpid(), flush=True)
                # The first run must still be running when its worker is killed, however slowly its log reaches the
                # test on a loaded machine; the rerun is quick. (The first run dies with its worker.)
                time.sleep(15 if os.environ.get("CAMPUSGRID_ATTEMPT") == "1" else 1)
                print("finished", flush=True)
                """)
            let id = try await Scenario.submit(grid, token: alice.token!, [script]).job.id
            let running = try await Scenario.waitForState(alice, id, [.running])
            let victim = running.worker == "ann-laptop" ? wa : wb
            let survivorOwner = running.worker == "ann-laptop" ? bob : ann
            let victimOwner = running.worker == "ann-laptop" ? ann : bob
            var firstRun: Int32 = 0
            _ = try await eventually(timeout: 10) {
                let text = try await alice.logs(id, from: 0).text
                firstRun = text.split(separator: "\n").first { $0.hasPrefix("started ") }.flatMap { Int32($0.dropFirst(8)) } ?? 0
                return firstRun > 0
            }
            victim.signal(SIGKILL)
            await #expect(victim.waitForExit(timeout: 10) != 0)
            // The job's process dies with its worker: nothing of a dead worker keeps running on the owner's machine.
            let gone = await eventually(timeout: 10) {
                let stat = (try? String(contentsOfFile: "/proc/\(firstRun)/stat", encoding: .utf8)) ?? ""
                return firstRun > 0 && (stat.isEmpty || stat.split(separator: ")").last?.trimmingCharacters(in: .whitespaces).hasPrefix("Z") == true)
            }
            #expect(gone, "the first run (pid \(firstRun)) outlived its worker")

            let done = try await Scenario.waitForState(alice, id, [.completed, .failed], timeout: 60)
            #expect(done.state == .completed)
            #expect(done.attempt == 2)
            #expect(done.worker != running.worker)
            let states = (done.events ?? []).map(\.state)
            #expect(states == [.submitted, .pending, .running, .pending, .running, .completed])
            let paid = try #require(done.paid)
            #expect(try await alice.me().balance == 100 - paid, "charged once")
            #expect(try await victimOwner.me().balance == 100, "the dead worker's owner earned nothing")
            #expect(try await survivorOwner.me().balance == 100 + paid)
            #expect(try await Scenario.ledgerOK(grid))
        }

        @Test(arguments: IntegrationStore.allCases)
        func managerKilledMidRunLosesNoJobOrCreditAndWorkersReconnect(_ store: IntegrationStore) async throws {
            let grid = try TestGrid(label: "killmanager")
            defer { grid.shutdown() }
            let storeEnvironment = try await store.managerEnvironment()
            // A lease long enough that the workers, back after the restart, keep their runs on a loaded machine.
            let first = try await grid.startManager(leaseSeconds: 10, extraEnvironment: storeEnvironment)
            let (gridPort, httpPort) = (grid.gridPort, grid.httpPort)
            let owner = try await grid.user("owner")
            let w1 = try await grid.startWorker("w1", owner: owner)
            let w2 = try await grid.startWorker("w2", owner: owner)
            let alice = try await grid.user("alice")
            let script = try Scenario.script(
                grid, "long.py",
                """
                import time
                for i in range(8):
                    print(f"step {i}", flush=True)
                    time.sleep(0.5)
                open("result.txt", "w").write("ok")
                """)
            let a = try await Scenario.submit(grid, token: alice.token!, [script]).job.id
            let b = try await Scenario.submit(grid, token: alice.token!, [script]).job.id
            let queued = try await Scenario.submit(grid, token: alice.token!, [script, "--cpus", "2"]).job.id
            _ = try await Scenario.waitForState(alice, a, [.running])
            _ = try await Scenario.waitForState(alice, b, [.running])
            let balanceBefore = try await alice.me().balance

            let logged = [w1, w2].map { $0.errorLog.utf8.count }
            first.signal(SIGKILL)
            await #expect(first.waitForExit(timeout: 10) != 0)
            // The new manager starts once both workers know the old one is gone (a state, not a fixed pause). Each says
            // "lost the manager", whether its link closed cleanly or broke with an error (a reset while it wrote a job's
            // output, say: a hog run once saw such a worker say "manager unreachable" instead).
            let bothLost = await eventually(timeout: 30) {
                zip([w1, w2], logged).allSatisfy { worker, before in
                    String(decoding: worker.errorLog.utf8.dropFirst(before), as: UTF8.self).contains("lost the manager")
                }
            }
            #expect(bothLost, "a worker never noticed its manager die\n\(grid.logs())")
            try await grid.startManager(leaseSeconds: 10, gridPort: gridPort, httpPort: httpPort, extraEnvironment: storeEnvironment)
            #expect(try await alice.me().balance == balanceBefore, "no credit lost in the crash")

            for id in [a, b, queued] {
                let job = try await Scenario.waitForState(alice, id, [.completed, .failed, .cancelled], timeout: 90)
                #expect(job.state == .completed, "job \(id): \(job.reason ?? "")")
                #expect(job.outputs?.map(\.name) == ["result.txt"])
            }
            let jobA = try await alice.job(a)
            #expect(jobA.attempt == 1, "the running job finished on its first worker, across the restart")
            var online = 0
            _ = try await eventually(timeout: 30) {
                online = try await owner.workers().workers.filter(\.online).count
                return online == 2
            }
            #expect(online == 2, "both workers reconnected by themselves")
            let paid = try await [a, b, queued].asyncMap { try await alice.job($0).paid ?? 0 }.reduce(0, +)
            #expect(try await alice.me().balance == 100 - paid)
            #expect(try await owner.me().balance == 100 + paid)
            #expect(try await Scenario.ledgerOK(grid))
        }
    }
}

extension Array {
    func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var out: [T] = []
        for e in self { out.append(try await transform(e)) }
        return out
    }
}
