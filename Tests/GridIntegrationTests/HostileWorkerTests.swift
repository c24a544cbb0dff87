import Foundation
import GridClient
import GridCore
import GridSandbox
import GridTestSupport
import Synchronization
import Testing

/// A worker speaking the grid protocol by hand, claiming whatever a test tells it to.
final class FakeWorker {
    let c: RawConnection
    private(set) var workerId = ""
    private var nextId = 10

    /// `peerKey`: a public key to offer peer services with (it must register a `port` too).
    init(port: Int, token: String, name: String, workerId: String? = nil, peerKey: String? = nil) throws {
        c = try RawConnection(port: port)
        let wanted = (workerId.map { #","worker_id":"\#($0)""# } ?? "") + (peerKey.map { #","peer_key":"\#($0)""# } ?? "")
        c.send(#"{"type":"HELLO","id":1,"version":2,"token":"\#(token)","name":"\#(name)"\#(wanted)}"# + "\n")
        guard let ok = c.next("HELLO_OK"), let id = ok["worker_id"] as? String else { throw TestGridError("no HELLO_OK for \(name)") }
        self.workerId = id
    }

    /// Sends one frame (a JSON object without `id`, and an optional payload) and returns its id.
    @discardableResult
    func send(_ fields: String, payload: [UInt8] = []) -> Int {
        nextId += 1
        let bytes = payload.isEmpty ? "" : #","bytes":\#(payload.count)"#
        c.send(Array(#"{"id":\#(nextId),\#(fields)\#(bytes)}"#.utf8) + [0x0A] + payload)
        return nextId
    }

    /// Sends a frame and returns the first `ERROR`, `REGISTERED` or `JOB_DONE_ACK` answer (skipping `PEERS`, `CANCEL`…).
    func ask(_ fields: String, payload: [UInt8] = []) -> [String: Any]? {
        send(fields, payload: payload)
        let deadline = Date().addingTimeInterval(10)
        while deadline.timeIntervalSinceNow > 0 {
            guard let f = c.readFrame(timeout: deadline.timeIntervalSinceNow) else { return nil }
            if ["ERROR", "REGISTERED", "JOB_DONE_ACK", "PONG"].contains(f.message["type"] as? String) { return f.message }
        }
        return nil
    }

    static func register(cpus: String = "2", slots: String = "2", running: String = "[]", extra: String = "") -> String {
        #""type":"REGISTER","resources":{"cpus":\#(cpus),"ram_gb":4,"gpus":0,"gpu_memory_gb":0},"gpu_names":[],"tier":"bwrap","slots":\#(slots),"running":\#(running)\#(extra)"#
    }

    static func ref(_ job: [String: Any]) -> String {
        #"{"job_id":\#(job["job_id"] as? Int ?? 0),"attempt":\#(job["attempt"] as? Int ?? 0)}"#
    }

    static func code(_ m: [String: Any]?) -> String? { m?["type"] as? String == "ERROR" ? m?["code"] as? String : nil }
}

extension Integration {
    /// Workers are strangers: every number they send is a claim (issue: trust between strangers).
    @Suite struct HostileWorker {
        static func submit(_ user: GridClient, minutes: Int = 5, cpus: Int = 1) async throws -> JobID {
            let request = API.SubmitRequest(
                spec: JobSpec(name: "target", cpus: cpus, ramGb: 1, minutes: minutes, minTier: .restricted),
                script: API.FileUpload(name: "job.py", contentBase64: Data("print(1)\n".utf8).base64EncodedString()), inputs: [])
            return try await user.submit(request).job.id
        }

        /// A worker that stops reading (its socket full) froze the whole grid: the scheduler waited forever on its
        /// `JOB_ASSIGN`, and lease expiry on its `CANCEL`. Now what the manager sends it waits in its own queue, and
        /// a queue past its limit closes the connection; everyone else's jobs go on.
        @Test func aWorkerThatStopsReadingFreezesNobodyElseAndIsCutOff() async throws {
            let grid = try TestGrid(label: "hostile-deaf")
            defer { grid.shutdown() }
            try await grid.startManager(leaseSeconds: 10, extraEnvironment: ["CAMPUSGRID_WORKER_SEND_STALL_SECONDS": "3"])
            let mallory = try await grid.user("mallory")
            let alice = try await grid.user("alice")
            let deaf = try FakeWorker(port: grid.gridPort, token: try await mallory.createToken(kind: "worker").token, name: "deaf")
            deaf.c.shrinkReceiveBuffer()
            #expect(deaf.ask(FakeWorker.register(cpus: "8", slots: "8"))?["type"] as? String == "REGISTERED")
            // From here it never reads: it only beats, so it stays live (bounded: two minutes at most).
            let stop = Mutex(false)
            // Only this thread uses the connection from here on.
            nonisolated(unsafe) let beat = deaf
            let beating = Thread {
                let deadline = Date().addingTimeInterval(120)
                while !stop.withLock({ $0 }), Date() < deadline {
                    beat.send(#""type":"LOAD_UPDATE","load":0,"running":[]"#)
                    Thread.sleep(forTimeInterval: 0.5)
                }
            }
            beating.start()
            defer { stop.withLock { $0 = true } }
            // Mallory's own jobs go to her deaf worker (the only one): 3 MiB bundles, more than its socket takes. The
            // write stalls; the next message queued for it (another job, or a CANCEL when its leases run out) finds
            // the write stuck for longer than 3 s, and its connection is closed.
            let bundle = Data((0..<(3 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 2_654_435_761 >> 13) }).base64EncodedString()
            for i in 0..<4 {
                _ = try await mallory.submit(
                    API.SubmitRequest(
                        spec: JobSpec(name: "fill-\(i)", cpus: 1, ramGb: 1, minutes: 5, minTier: .restricted),
                        script: API.FileUpload(name: "job.py", contentBase64: Data("print(1)\n".utf8).base64EncodedString()),
                        inputs: [API.FileUpload(name: "blob.bin", contentBase64: bundle)]))
            }
            #expect(
                await eventually(timeout: 60) { grid.logs(matching: ["stopped reading what the manager sends"]).contains("stopped reading") },
                "the deaf worker's connection was not given up")
            // Alice's job, on an honest worker that joins now, is placed and runs: nothing waits on the deaf one.
            try await grid.startWorker("honest", owner: try await grid.user("owner"))
            let id = try await Self.submit(alice, minutes: 1)
            let done = try await Scenario.waitForState(alice, id, [.completed, .failed, .cancelled], timeout: 90)
            #expect(done.state == .completed, "\(done)")
        }

        /// A worker that ends a stranger's run on its own word ("cancelled", though nobody cancelled it; or back without
        /// it) was given the job straight back, again and again, until it failed after ten losses. Now the job keeps
        /// away from that worker, and runs on another.
        @Test func aWorkerThatEndsARunOnItsOwnWordIsNotGivenTheJobBack() async throws {
            let grid = try TestGrid(label: "hostile-canceller")
            defer { grid.shutdown() }
            try await grid.startManager(leaseSeconds: 10)
            let mallory = try await grid.user("mallory")
            let alice = try await grid.user("alice")
            let w = try FakeWorker(port: grid.gridPort, token: try await mallory.createToken(kind: "worker").token, name: "canceller")
            #expect(w.ask(FakeWorker.register(cpus: "8", slots: "8"))?["type"] as? String == "REGISTERED")
            let id = try await Self.submit(alice, minutes: 1)
            let job = FakeWorker.ref(try #require(w.c.next("JOB_ASSIGN")?["job"] as? [String: Any]))
            w.send(#""type":"JOB_STARTED","job":\#(job)"#)
            let answer = w.ask(#""type":"JOB_DONE","job":\#(job),"outcome":"cancelled","exit_code":-1,"runtime_ms":1,"peak_memory_kb":0,"cpu_seconds":0,"files":[]"#)
            #expect(answer?["type"] as? String == "JOB_DONE_ACK", "\(String(describing: answer))")
            // It is the only worker: the job waits rather than going back to it (it came back at once before).
            #expect(w.c.next("JOB_ASSIGN", timeout: 3) == nil, "the job went back to the worker that ended it")
            try await grid.startWorker("honest", owner: try await grid.user("owner"))
            let done = try await Scenario.waitForState(alice, id, [.completed, .failed, .cancelled], timeout: 90)
            #expect(done.state == .completed && done.worker == "honest", "\(done)")
        }

        @Test func outOfRangeNumbersFromAWorkerGetErrorsAndTheManagerStaysUpAlsoAfterARestart() async throws {
            let grid = try TestGrid(label: "hostile-numbers")
            defer { grid.shutdown() }
            // A long lease: this worker's every LOAD_UPDATE is refused, so it never renews one, and the whole test must
            // run within it (3 s was too short on a loaded machine).
            let first = try await grid.startManager(leaseSeconds: 30)
            let (gridPort, httpPort) = (grid.gridPort, grid.httpPort)
            let owner = try await grid.user("owner")
            let alice = try await grid.user("alice")
            let token = try await owner.createToken(kind: "worker").token
            let w = try FakeWorker(port: gridPort, token: token, name: "liar")

            // REGISTER: each figure at its boundaries.
            for (cpus, slots) in [("9223372036854775807", "1"), ("0", "1"), ("-1", "1"), ("2", "0"), ("2", "-1"), ("2", "9223372036854775807")] {
                let answer = w.ask(FakeWorker.register(cpus: cpus, slots: slots))
                #expect(FakeWorker.code(answer) == "bad_request", "cpus \(cpus) slots \(slots): \(String(describing: answer))")
            }
            #expect(FakeWorker.code(w.ask(FakeWorker.register(extra: #","port":70000"#))) == "bad_request")
            #expect(FakeWorker.code(w.ask(FakeWorker.register(running: #"[{"job_id":-9223372036854775808,"attempt":-1}]"#))) == "bad_request")
            #expect(w.ask(FakeWorker.register())?["type"] as? String == "REGISTERED", "a sane REGISTER still works")

            // LOAD_UPDATE.
            for load in ["-1", "1e308", "-1e308"] {
                #expect(FakeWorker.code(w.ask(#""type":"LOAD_UPDATE","load":\#(load),"running":[]"#)) == "bad_request", "load \(load)")
            }
            #expect(FakeWorker.code(w.ask(#""type":"LOAD_UPDATE","load":0,"running":[],"tasks":9223372036854775807"#)) == "bad_request")

            // A job to lie about.
            let id = try await Self.submit(alice)
            let assign = try #require(w.c.next("JOB_ASSIGN"))
            let job = FakeWorker.ref(try #require(assign["job"] as? [String: Any]))
            w.send(#""type":"JOB_STARTED","job":\#(job)"#)
            w.send(#""type":"JOB_LOG","job":\#(job),"offset":0"#, payload: Array("hello\n".utf8))
            // A gap, then offsets at the boundaries.
            w.send(#""type":"JOB_LOG","job":\#(job),"offset":100"#, payload: Array("after a gap\n".utf8))
            for offset in ["-9223372036854775808", "9223372036854775807", "-1"] {
                let answer = w.ask(#""type":"JOB_LOG","job":\#(job),"offset":\#(offset)"#, payload: Array("x".utf8))
                #expect(FakeWorker.code(answer) == "bad_request", "offset \(offset)")
            }
            // JOB_DONE with impossible figures.
            let hostileDone = [
                #""runtime_ms":9223372036854775807,"peak_memory_kb":0,"cpu_seconds":0"#,
                #""runtime_ms":-1,"peak_memory_kb":0,"cpu_seconds":0"#,
                #""runtime_ms":1,"peak_memory_kb":-9223372036854775808,"cpu_seconds":0"#,
                #""runtime_ms":1,"peak_memory_kb":0,"cpu_seconds":1e300"#,
                #""runtime_ms":1,"peak_memory_kb":0,"cpu_seconds":-1"#,
                #""runtime_ms":1,"peak_memory_kb":0,"cpu_seconds":0,"log_bytes":-1"#,
            ]
            for figures in hostileDone {
                let answer = w.ask(#""type":"JOB_DONE","job":\#(job),"outcome":"completed","exit_code":0,\#(figures),"files":[]"#)
                #expect(FakeWorker.code(answer) == "bad_request", "\(figures): \(String(describing: answer))")
            }
            #expect(w.ask(#""type":"PING""#)?["type"] as? String == "PONG", "the worker's connection is still up")
            #expect(try await alice.job(id).state == .running)
            #expect(try await Scenario.ledgerOK(grid))

            // After a restart, the same hostile report is refused again (it once crashed the manager twice).
            first.signal(SIGKILL)
            _ = await first.waitForExit(timeout: 10)
            try await grid.startManager(leaseSeconds: 30, gridPort: gridPort, httpPort: httpPort)
            let again = try FakeWorker(port: gridPort, token: token, name: "liar", workerId: w.workerId)
            #expect(again.ask(FakeWorker.register(running: "[\(job)]"))?["type"] as? String == "REGISTERED")
            let answer = again.ask(#""type":"JOB_DONE","job":\#(job),"outcome":"completed","exit_code":0,\#(hostileDone[0]),"files":[]"#)
            #expect(FakeWorker.code(answer) == "bad_request")
            #expect(again.ask(#""type":"PING""#)?["type"] as? String == "PONG")
            #expect(try await alice.me().username == "alice", "the manager still serves the API")
            #expect(try await Scenario.ledgerOK(grid))
        }

        @Test func aFakeWorkerThatAnswersAtOnceIsPaidForTheTimeTheManagerSawNotTheHold() async throws {
            let grid = try TestGrid(label: "hostile-pay")
            defer { grid.shutdown() }
            // A lease long enough that the fake worker, which sends no heartbeat, keeps its run until it answers.
            try await grid.startManager(leaseSeconds: 30)
            let owner = try await grid.user("owner")
            let alice = try await grid.user("alice")
            let w = try FakeWorker(port: grid.gridPort, token: try await owner.createToken(kind: "worker").token, name: "liar")
            #expect(w.ask(FakeWorker.register(cpus: "64", slots: "64"))?["type"] as? String == "REGISTERED")
            let id = try await Self.submit(alice, minutes: 30)
            let job = FakeWorker.ref(try #require(w.c.next("JOB_ASSIGN")?["job"] as? [String: Any]))
            w.send(#""type":"JOB_STARTED","job":\#(job)"#)
            let ack = w.ask(
                #""type":"JOB_DONE","job":\#(job),"outcome":"completed","exit_code":0,"runtime_ms":1800000,"peak_memory_kb":1,"cpu_seconds":1800,"files":[]"#
            )
            #expect(ack?["type"] as? String == "JOB_DONE_ACK")
            let done = try await Scenario.waitForState(alice, id, [.completed])
            let spec = JobSpec(name: "target", cpus: 1, ramGb: 1, minutes: 30, minTier: .restricted)
            #expect(done.paid == CreditRules.base(spec) + 1, "one minute by the manager's clock, not the 30 claimed")
            #expect(done.hold == CreditRules.hold(spec))
            #expect(try await owner.me().balance == 100 + CreditRules.base(spec) + 1)
            #expect(try await Scenario.ledgerOK(grid))
        }
    }
}

/// A worker that heartbeats a run past its limit and never obeys a cancel. Not in the serialized `Integration` chain: it
/// waits out a one-minute limit with a manager and a hand-written worker that are idle meanwhile, so it runs beside
/// other tests instead of adding a minute to the chain. Beside them the machine is busier, so the worker's heartbeats
/// come from a thread of their own, every quarter second, whatever the test's own requests cost; a missed lease would
/// take the run away from the worker, and a run without a lease is no longer the manager's to time out.
@Suite struct HostileWorkerTimeLimit {
    /// 10 s: the worker is silent from its REGISTER until both runs are assigned and its heartbeat thread starts, and
    /// on a loaded machine that took over 3 s (the worker was let go, and the second run never assigned to it).
    static let leaseSeconds = 10.0

    @Test func aRunHeartbeatedPastItsLimitIsTimedOutAndACancelSettlesEvenIfTheWorkerNeverObeys() async throws {
        let grid = try TestGrid(label: "hostile-time")
        defer { grid.shutdown() }
        try await grid.startManager(leaseSeconds: Self.leaseSeconds, extra: ["--time-grace-seconds", "1"])
        let owner = try await grid.user("owner")
        let alice = try await grid.user("alice")
        let w = try FakeWorker(port: grid.gridPort, token: try await owner.createToken(kind: "worker").token, name: "stubborn")
        #expect(w.ask(FakeWorker.register(cpus: "4", slots: "4"))?["type"] as? String == "REGISTERED")
        let long = try await Integration.HostileWorker.submit(alice, minutes: 1)
        let longRef = FakeWorker.ref(try #require(w.c.next("JOB_ASSIGN")?["job"] as? [String: Any]))
        let cancelled = try await Integration.HostileWorker.submit(alice, minutes: 5)
        let cancelledRef = FakeWorker.ref(try #require(w.c.next("JOB_ASSIGN")?["job"] as? [String: Any]))
        for ref in [longRef, cancelledRef] { w.send(#""type":"JOB_STARTED","job":\#(ref)"#) }
        // The worker keeps claiming both jobs run, four times a second, and never obeys.
        let heartbeat = Heartbeat(w.c, frame: #"{"id":9000,"type":"LOAD_UPDATE","load":0,"running":[\#(longRef),\#(cancelledRef)]}"#, every: 0.25)
        defer { heartbeat.stop() }
        let started = Date()
        _ = try await alice.cancel(cancelled)

        var cancelEndedAfter: Double?
        var timedOutAfter: Double?
        for _ in 0..<200 where timedOutAfter == nil {
            try await Task.sleep(for: .milliseconds(500))
            if cancelEndedAfter == nil, try await alice.job(cancelled).state == .cancelled { cancelEndedAfter = Date().timeIntervalSince(started) }
            if try await alice.job(long).state == .timedOut { timedOutAfter = Date().timeIntervalSince(started) }
            if Date().timeIntervalSince(started) > 90 { break }
        }
        let c = try #require(cancelEndedAfter, "the cancel never settled\n\(grid.logs())")
        #expect(c < 2 * Self.leaseSeconds + 2, "settled within about one lease period (\(c) s)")
        #expect(try await alice.job(cancelled).paid == 0)
        let longNow = try await alice.job(long)
        let t = try #require(timedOutAfter, "the run past its limit was never stopped: \(longNow.state) \(longNow.reason ?? "")\n\(grid.logs())")
        #expect(t >= 60, "not before its minute (\(t) s)")
        let timedOut = try await alice.job(long)
        #expect(timedOut.reason?.contains("time limit") == true)
        #expect(timedOut.paid == CreditRules.base(JobSpec(name: "t", cpus: 1, ramGb: 1, minutes: 1)) + 1)
        heartbeat.stop()
        #expect(w.c.next("CANCEL", timeout: 5) != nil, "the worker was told to stop")
        #expect(try await Scenario.ledgerOK(grid))
        print("cancel settled after \(c) s; the overrun was stopped after \(t) s")
    }

    /// Sends one frame on a raw connection every `every` seconds from a thread of its own, until stopped. The test's
    /// own flow only reads the connection meanwhile, and sends nothing.
    final class Heartbeat: @unchecked Sendable {
        // Safe: `connection` is only sent on by the thread (a send touches only its fd); `stopped` is behind `lock`.
        private let connection: RawConnection
        private let lock = NSLock()
        private var stopped = false
        private let done = DispatchSemaphore(value: 0)

        init(_ connection: RawConnection, frame: String, every: Double) {
            self.connection = connection
            let bytes = Array(frame.utf8) + [0x0A]
            Thread.detachNewThread { [self] in
                while !lock.withLock({ stopped }) {
                    _ = self.connection.send(bytes)
                    Thread.sleep(forTimeInterval: every)
                }
                done.signal()
            }
        }

        /// Stops the thread and waits (a beat at most) until it sent its last frame.
        func stop() {
            let first = lock.withLock {
                defer { stopped = true }
                return !stopped
            }
            if first { _ = done.wait(timeout: .now() + 5) }
        }
    }
}

/// A worker on a slow link: its report of a run (the outputs in one `JOB_DONE`) takes longer than a lease period to
/// arrive, and its heartbeats wait behind it on the connection. Not in the serialized chain: it mostly waits on its
/// own trickle. Before (money review), the manager heard nothing for a lease period, dropped the worker with the frame
/// half read and gave the run to the queue again; a cancelled run's report that came so was refunded, its worker
/// unpaid for a whole honest run.
@Suite struct SlowReport {
    static let leaseSeconds = 4.0

    @Test func aReportSlowerThanALeasePeriodIsTakenAndACancelledRunsResultWithIt() async throws {
        let grid = try TestGrid(label: "slow-report")
        defer { grid.shutdown() }
        try await grid.startManager(leaseSeconds: Self.leaseSeconds)
        let owner = try await grid.user("owner")
        let alice = try await grid.user("alice")
        let w = try FakeWorker(port: grid.gridPort, token: try await owner.createToken(kind: "worker").token, name: "slow-link")
        #expect(w.ask(FakeWorker.register(cpus: "4", slots: "4"))?["type"] as? String == "REGISTERED")
        // Beats (no runs yet) from a thread of its own while the jobs are submitted and assigned.
        var beat = HostileWorkerTimeLimit.Heartbeat(w.c, frame: #"{"id":9000,"type":"LOAD_UPDATE","load":0,"running":[]}"#, every: 0.25)
        let kept = try await Integration.HostileWorker.submit(alice, minutes: 5)
        let keptJob = try #require(w.c.next("JOB_ASSIGN")?["job"] as? [String: Any])
        let keptRef = FakeWorker.ref(keptJob)
        let cancelled = try await Integration.HostileWorker.submit(alice, minutes: 5)
        let cancelledRef = FakeWorker.ref(try #require(w.c.next("JOB_ASSIGN")?["job"] as? [String: Any]))
        beat.stop()
        for ref in [keptRef, cancelledRef] { w.send(#""type":"JOB_STARTED","job":\#(ref)"#) }
        beat = HostileWorkerTimeLimit.Heartbeat(
            w.c, frame: #"{"id":9001,"type":"LOAD_UPDATE","load":0,"running":[\#(keptRef),\#(cancelledRef)]}"#, every: 0.25)
        defer { beat.stop() }
        _ = try await alice.cancel(cancelled)
        #expect(w.c.next("CANCEL", timeout: 20) != nil, "the worker was told to stop the cancelled run")
        beat.stop()
        // Both reports, back to back as a worker sends them, trickled over about three and a half lease periods: the
        // first carries 256 KiB of outputs; no heartbeat can pass them.
        let output = (0..<(256 << 10)).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        func report(_ id: Int, _ ref: String, _ file: [UInt8]) -> [UInt8] {
            let line =
                #"{"id":\#(id),"type":"JOB_DONE","job":\#(ref),"outcome":"completed","exit_code":0,"runtime_ms":1000,"peak_memory_kb":1,"cpu_seconds":1,"files":[{"name":"out.bin","size":\#(file.count)}],"bytes":\#(file.count)}"#
            return Array(line.utf8) + [0x0A] + file
        }
        let bytes = report(9100, keptRef, output) + report(9101, cancelledRef, Array(output.prefix(1024)))
        let pieces = 56
        let size = (bytes.count + pieces - 1) / pieces
        for start in stride(from: 0, to: bytes.count, by: size) {
            guard w.c.send(Array(bytes[start..<min(bytes.count, start + size)])) else {
                Issue.record("the manager closed the connection mid-report, at byte \(start) of \(bytes.count)")
                break
            }
            try await Task.sleep(for: .milliseconds(250))
        }
        // Both reports are acknowledged, on the connection the worker kept.
        var acks: Set<Int> = []
        let deadline = Date().addingTimeInterval(30)
        while acks.count < 2, deadline.timeIntervalSinceNow > 0, let f = w.c.readFrame(timeout: deadline.timeIntervalSinceNow) {
            if f.message["type"] as? String == "JOB_DONE_ACK", let job = f.message["job"] as? [String: Any], let id = job["job_id"] as? Int {
                acks.insert(id)
            }
        }
        #expect(acks == [Int(kept), Int(cancelled)], "acknowledged: \(acks)\n\(grid.logs())")
        let done = try await Scenario.waitForState(alice, kept, [.completed, .failed, .cancelled], timeout: 30)
        #expect(done.state == .completed && done.attempt == keptJob["attempt"] as? Int && done.worker == "slow-link", "\(done)")
        #expect(done.outputs?.first?.size == output.count)
        #expect(done.interruptions?.isEmpty ?? true, "the run was never taken away: \(String(describing: done.interruptions))")
        let stopped = try await Scenario.waitForState(alice, cancelled, [.completed, .failed, .cancelled], timeout: 30)
        #expect((stopped.paid ?? 0) > 0, "the cancelled run's result came in whole: its worker is paid (\(stopped))")
        #expect(!grid.logs(matching: ["stopped sending heartbeats"]).contains("stopped sending"), "the worker was dropped while its report came in")
        #expect(try await Scenario.ledgerOK(grid))
    }
}
