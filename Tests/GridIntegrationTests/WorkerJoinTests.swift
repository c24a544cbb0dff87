import Foundation
import GridClient
import GridCore
import GridSandbox
import GridTestSupport
import Testing

extension Integration {
    @Suite struct WorkerJoin {
        @Test func aWorkerWithABadTokenOrAnotherUsersNameStopsWithAClearMessage() async throws {
            let grid = try TestGrid(label: "join")
            defer { grid.shutdown() }
            try await grid.startManager()
            let ann = try await grid.user("ann")
            let token = try await ann.createToken(kind: "worker").token

            let bad = try grid.spawn("bad-token", ["worker", "-m", grid.managerAddress, "--token", "cgw_nope", "--data-dir", grid.root + "/w1"])
            await #expect(bad.waitForExit(timeout: 30) != 0)
            #expect(bad.errorLog.contains("the token is not valid"), "\(bad.errorLog.suffix(2000))")

            let impostor = try grid.spawn(
                "impostor", ["worker", "-m", grid.managerAddress, "--token", token, "-u", "bob", "--data-dir", grid.root + "/w2"])
            await #expect(impostor.waitForExit(timeout: 30) != 0)
            #expect(impostor.errorLog.contains("this token belongs to ann, not bob"), "\(impostor.errorLog.suffix(2000))")

            let none = try grid.spawn("no-token", ["worker", "-m", grid.managerAddress, "--data-dir", grid.root + "/w3"])
            await #expect(none.waitForExit(timeout: 30) != 0)
            #expect(none.errorLog.contains("needs a join token"))

            #expect(try await ann.workers().workers.isEmpty)
        }

        @Test func aRestartedWorkerKeepsItsIdentity() async throws {
            let grid = try TestGrid(label: "identity")
            defer { grid.shutdown() }
            try await grid.startManager()
            let ann = try await grid.user("ann")
            // This worker finds its interpreter as a fresh machine's would: `python3` on PATH (a pyenv shim here).
            let first = try await grid.startWorker(
                "lab", owner: ann, dataDirectory: grid.root + "/lab", extraEnvironment: ["CAMPUSGRID_PYTHON": "python3"])
            #expect(first.errorLog.contains("grid.env.python=3"), "\(first.errorLog.suffix(2000))")
            let id = try #require(try await ann.workers().workers.first?.id)
            // A second worker on the same data folder would share its id and sweep its folders: it is refused (after a
            // bounded wait for the first to end), naming the first's PID.
            let token = try await ann.createToken(kind: "worker").token
            let second = try grid.spawn("lab-again", ["worker", "-m", grid.managerAddress, "--token", token, "--data-dir", grid.root + "/lab"])
            await #expect(second.waitForExit(timeout: 60) != 0)
            #expect(second.errorLog.contains("another worker (PID \(first.process.processIdentifier)) is using the data folder"), "\(second.errorLog.suffix(2000))")
            #expect(try await ann.workers().workers.map(\.id) == [id])
            first.stop()
            try await grid.startWorker("lab", owner: ann, dataDirectory: grid.root + "/lab")
            let workers = try await ann.workers().workers
            #expect(workers.map(\.id) == [id])
            #expect(workers.first?.online == true)
        }
    }
}

extension Integration.WorkerJoin {
    @Test func aJobTheWorkerCannotStartRunsElsewhereAndIsChargedOnce() async throws {
        let grid = try TestGrid(label: "reject")
        defer { grid.shutdown() }
        // A long lease: the hand-driven worker sends no heartbeats, and a loaded machine must not expire it meanwhile.
        try await grid.startManager(leaseSeconds: 30)
        let owner = try await grid.user("owner")
        let token = try await owner.createToken(kind: "worker").token
        // A hand-driven worker that takes the job and says it cannot start it.
        let raw = try RawConnection(port: grid.gridPort)
        raw.send(#"{"type":"HELLO","id":1,"version":2,"token":"\#(token)","name":"broken"}"# + "\n")
        #expect(raw.readMessage()?["type"] as? String == "HELLO_OK")
        raw.send(
            #"{"type":"REGISTER","id":2,"resources":{"cpus":2,"ram_gb":4,"gpus":0,"gpu_memory_gb":0},"gpu_names":[],"tier":"restricted","slots":2,"running":[]}"#
                + "\n")
        #expect(raw.readMessage()?["type"] as? String == "REGISTERED")
        let alice = try await grid.user("alice")
        let script = try Scenario.script(grid, "fine.py", "print('fine')\n")
        let id = try await Scenario.submit(grid, token: alice.token!, [script]).job.id
        var assign: [String: Any]?
        for _ in 0..<20 {
            guard let m = raw.readMessage(timeout: 10) else { break }
            if m["type"] as? String == "JOB_ASSIGN" {
                assign = m
                break
            }
        }
        let job = try #require(assign?["job"] as? [String: Any])
        #expect(job["job_id"] as? Int == Int(id))
        raw.send(
            #"{"type":"JOB_DONE","id":3,"job":{"job_id":\#(id),"attempt":1},"outcome":"rejected","runtime_ms":0,"peak_memory_kb":0,"cpu_seconds":0,"reason":"sandbox unavailable","files":[]}"#
                + "\n")
        let pending = try await Scenario.waitForState(alice, id, [.pending], timeout: 10)
        #expect(pending.events?.last?.detail?.contains("sandbox unavailable") == true)
        let explained = try await eventually(timeout: 10) {
            try await alice.job(id).pendingReason?.contains("other than the ones that could not start it") == true
        }
        #expect(explained, "the job waits for another worker and says so")
        raw.shutdownWrite()

        try await grid.startWorker("good", owner: owner)
        let finished = try await eventually(timeout: 90) { try await alice.job(id).state.isFinal }
        let done = try await alice.job(id)
        #expect(finished, "job \(id) is \(done.state) on \(done.worker ?? "-") (attempt \(done.attempt)); logs:\n\(grid.logs())")
        #expect(done.state == .completed)
        #expect(done.attempt == 2, "the worker that could not start it is not offered it again; logs:\n\(grid.logs())")
        #expect(done.worker == "good")
        #expect(try await alice.me().balance == 100 - (done.paid ?? 0), "charged once, for the run that happened")
        #expect(try await Scenario.ledgerOK(grid))
    }
}

extension Integration.WorkerJoin {
    @Test func managerAndWorkerStopCleanlyOnSIGTERMEvenWhenStartedFromAsyncCode() async throws {
        let grid = try TestGrid(label: "sigterm")
        defer { grid.shutdown() }
        let manager = try await grid.startManager()
        let owner = try await grid.user("owner")
        let worker = try await grid.startWorker("w1", owner: owner)
        // Both were started from a thread of Swift's concurrency pool, whose blocked signals a child inherits.
        worker.signal(SIGTERM)
        await #expect(worker.waitForExit(timeout: 15) == 0, "the worker exits by itself, not by the SIGKILL that follows a timeout")
        manager.signal(SIGTERM)
        await #expect(manager.waitForExit(timeout: 15) == 0)
        // Its grid port stopped as a service's normal end, and the leadership was handed over (the row released), not
        // cut short by a service that threw.
        #expect(manager.errorLog.contains("grid protocol stopped listening"), "\(manager.errorLog.suffix(3000))")
        #expect(manager.errorLog.contains("released the leadership"), "\(manager.errorLog.suffix(3000))")
    }
}

extension Integration.WorkerJoin {
    /// A contributor stops their worker (SIGTERM, as Ctrl-C or `systemctl stop`) while it runs a job: the worker stops
    /// the run, reports it before it leaves, and exits by itself; the job goes back to the queue at once, is not held
    /// against (a stop is not a crash), runs on another worker, and is paid once.
    @Test func aWorkerStoppedMidRunHandsItsJobBackAndTheJobRunsElsewhere() async throws {
        let grid = try TestGrid(label: "sigterm-run")
        defer { grid.shutdown() }
        try await grid.startManager(leaseSeconds: 30)
        let owner = try await grid.user("owner")
        let alice = try await grid.user("alice")
        let first = try await grid.startWorker("first", owner: owner)
        let script = try Scenario.script(grid, "steps.py", "import os, time\nprint('start', flush=True)\ntime.sleep(60 if os.environ.get('CAMPUSGRID_ATTEMPT') == '1' else 0)\nprint('end', flush=True)\n")
        let id = try await Scenario.submit(grid, token: alice.token!, [script]).job.id
        let started = try await eventually(timeout: 60) { try await alice.logs(id, from: 0).text.contains("start") }
        #expect(started, "the job never started:\n\(grid.logs())")
        first.signal(SIGTERM)
        await #expect(first.waitForExit(timeout: 20) == 0, "the worker exits by itself")
        // Back in the queue well before the 30 s lease could have run out: the worker said why the run ended.
        let back = try await Scenario.waitForState(alice, id, [.pending], timeout: 15)
        #expect(back.interruptions?.map(\.kind) == ["stopped_by_worker"], "\(back.interruptions ?? [])\n\(grid.logs())")
        #expect(back.interruptions?.first?.blamed == false)
        try await grid.startWorker("second", owner: owner)
        let done = try await Scenario.waitForState(alice, id, [.completed, .failed, .cancelled], timeout: 60)
        #expect(done.state == .completed && done.attempt == 2 && done.worker == "second", "\(done)")
        #expect(try await alice.me().balance == 100 - (done.paid ?? 0), "charged once, for the run that finished")
        #expect(try await Scenario.ledgerOK(grid))
    }
}
