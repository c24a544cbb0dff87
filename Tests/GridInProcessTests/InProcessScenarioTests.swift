import Foundation
import GridClient
import GridCore
import GridManager
import GridProtocol
import GridSandbox
@testable import GridWorker
import GridTestSupport
import NIOCore
import Synchronization
import Testing

/// Scenarios on a whole grid in this process (`withTestGrid`): the real manager and real worker agents over loopback,
/// jobs run by the scripted runner, no child process (issue 14).
@Suite struct InProcessScenarioTests {
    static func job(_ name: String, _ script: String, cpus: Int = 1, ramGb: Int = 1, minutes: Int = 5, outputs: [String] = []) -> API.SubmitRequest {
        API.SubmitRequest(
            spec: JobSpec(name: name, cpus: cpus, ramGb: ramGb, minutes: minutes, outputs: outputs),
            script: API.FileUpload(name: "\(name).py", contentBase64: Data(script.utf8).base64EncodedString()), inputs: [])
    }

    static func wait(_ client: GridClient, _ id: JobID, for states: Set<JobState>, timeout: Double = 30) async throws -> API.JobStatus {
        try await waitForJob(client, id, in: states, timeout: timeout, interval: 0.05)
    }

    @Test func aJobRunsToCompletionWithItsLogOutputAndTimeline() async throws {
        try await withTestGrid(workers: 1) { grid in
            let alice = try await grid.user("alice")
            let script = "# grid: print hello from the grid\n# grid: write result.txt 42\n# grid: print done\n"
            let submitted = try await alice.submit(Self.job("hello", script, outputs: ["result.txt"]))
            let done = try await Self.wait(alice, submitted.job.id, for: [.completed, .failed])
            #expect(done.state == .completed && done.exitCode == 0, "\(done)")
            let log = try await alice.logs(done.id, from: 0)
            #expect(log.text == "hello from the grid\ndone\n")
            #expect(try await alice.output(done.id, name: "result.txt") == Data("42".utf8))
            let states = try await alice.job(done.id).events?.map(\.state) ?? []
            #expect(states.contains(.pending) && states.contains(.running) && states.last == .completed, "\(states)")
        }
    }

    @Test func theHoldIsTakenAtSubmitAndSettledOnCompletionWithTheWorkerOwnerPaid() async throws {
        try await withTestGrid(workers: 1) { grid in
            let alice = try await grid.user("alice")
            // cpus 2, ram 3, minutes 7: hold = 5 + 4 + 3 + 7 = 19; a sub-minute run pays 5 + 4 + 3 + 1 = 13 (a run of
            // no measurable time would pay no minute).
            let submitted = try await alice.submit(Self.job("quick", "# grid: print hi\n# grid: sleep 0.05\n", cpus: 2, ramGb: 3, minutes: 7))
            #expect(submitted.hold == 19 && submitted.balance == 100 - 19)
            let done = try await Self.wait(alice, submitted.job.id, for: [.completed, .failed])
            #expect(done.state == .completed && done.paid == 13, "\(done)")
            #expect(try await alice.me().balance == 100 - 13)
            var owner = GridClient(baseURL: grid.baseURL)
            owner.token = try await owner.login("owner", password: "correct horse battery").token
            #expect(try await owner.credits().earned == 13)
            #expect(try await grid.ledgerOK())
        }
    }

    @Test func aFailingJobIsReportedWithItsExitCodeAndStillPaysForItsTime() async throws {
        try await withTestGrid(workers: 1) { grid in
            let alice = try await grid.user("alice")
            let submitted = try await alice.submit(Self.job("broken", "# grid: print about to fail\n# grid: exit 3\n"))
            let done = try await Self.wait(alice, submitted.job.id, for: [.completed, .failed])
            #expect(done.state == .failed && done.exitCode == 3, "\(done)")
            #expect((done.paid ?? 0) > 0 && (done.paid ?? 0) <= submitted.hold)
            #expect(try await alice.me().balance == 100 - (done.paid ?? 0))
            #expect(try await grid.ledgerOK())
        }
    }

    @Test func aCancelBeforeAnyWorkerIsThereRefundsInFull() async throws {
        try await withTestGrid(workers: 0) { grid in
            let alice = try await grid.user("alice")
            let submitted = try await alice.submit(Self.job("waits", "# grid: print never\n"))
            #expect(try await alice.me().balance == 100 - submitted.hold)
            let cancelled = try await alice.cancel(submitted.job.id)
            #expect(cancelled.state == .cancelled && cancelled.paid == 0)
            #expect(try await alice.me().balance == 100)
            #expect(try await grid.ledgerOK())
        }
    }

    @Test func aCancelOfARunningJobStopsItAndTheCreditsStillAddUp() async throws {
        try await withTestGrid(workers: 1) { grid in
            let alice = try await grid.user("alice")
            let submitted = try await alice.submit(Self.job("long", "# grid: print started\n# grid: sleep 600\n# grid: print never\n"))
            _ = try await Self.wait(alice, submitted.job.id, for: [.running])
            // Its first line is in the log: it really runs.
            #expect(try await eventually(timeout: 20, interval: 0.05) { (try await alice.logs(submitted.job.id, from: 0).next) > 0 })
            _ = try await alice.cancel(submitted.job.id)
            let done = try await Self.wait(alice, submitted.job.id, for: [.cancelled])
            let log = try await alice.logs(done.id, from: 0)
            #expect(!log.text.contains("never"))
            var owner = GridClient(baseURL: grid.baseURL)
            owner.token = try await owner.login("owner", password: "correct horse battery").token
            #expect(try await alice.me().balance + owner.me().balance == 200, "no credit made or lost")
            #expect(try await grid.ledgerOK())
        }
    }

    @Test func aJobWhoseWorkerVanishesRunsAgainOnAnotherAndIsPaidOnce() async throws {
        try await withTestGrid(workers: 1, leaseSeconds: 1) { grid in
            let alice = try await grid.user("alice")
            var owner = GridClient(baseURL: grid.baseURL)
            owner.token = try await owner.login("owner", password: "correct horse battery").token
            let submitted = try await alice.submit(Self.job("survivor", "# grid: print attempt\n# grid: sleep 1.5\n# grid: print finished\n"))
            let running = try await Self.wait(alice, submitted.job.id, for: [.running])
            let first = try #require(grid.workers.withLock { $0.first })
            #expect(running.workerId == first.workerId)
            // The first vanishes mid-run (its job sleeps 1.5 s); a second worker comes only then, so that nothing but the
            // lost worker's lease can give the job to it (starting it first raced the job's end on a loaded machine).
            await first.vanish()
            let second = try await grid.startWorker("w2", owner: owner)
            let done = try await Self.wait(alice, submitted.job.id, for: [.completed, .failed], timeout: 60)
            #expect(done.state == .completed && done.attempt >= 2, "\(done)")
            #expect(done.workerId == second.workerId)
            let interruptions = try await alice.job(done.id).interruptions ?? []
            #expect(interruptions.contains { $0.kind == "worker_lost" }, "\(interruptions)")
            // The lost run names its worker by name (looked up once for every run that expired together).
            let firstName = try await owner.workers().workers.first { $0.id == first.workerId }?.name
            #expect(firstName != nil && interruptions.contains { $0.reason.contains("worker \(firstName ?? "?") stopped responding") }, "\(interruptions)")
            #expect(try await alice.me().balance == 100 - (done.paid ?? 0), "paid once, for the run that finished")
            #expect(try await grid.ledgerOK())
            await second.stop()
        }
    }
}

/// A runner whose starts of jobs marked `# grid: slow start` block until the test opens the gate, as a container
/// engine's create and start can take seconds.
final class GatedRunner: JobRunner, Sendable {
    let inner = ScriptedRunner()
    var tier: SandboxTier { inner.tier }
    var label: String { inner.label }
    var notes: [String] { inner.notes }
    private let gate = DispatchSemaphore(value: 0)
    let blocked = Mutex(0)

    func start(_ request: RunRequest) throws -> JobExecution {
        let script = (try? String(contentsOf: request.scratch.appendingPathComponent(request.script), encoding: .utf8)) ?? ""
        if script.contains("# grid: slow start") {
            blocked.withLock { $0 += 1 }
            gate.wait()
        }
        return try inner.start(request)
    }

    func open() { gate.signal() }
}

@Suite struct InProcessStartTests {
    @Test func aCancelDuringASlowStartStopsTheRunOnceStartedAndTheLinkGoesOnMeanwhile() async throws {
        try await withTestGrid(workers: 0) { grid in
            let owner = try await grid.user("owner")
            let runner = GatedRunner()
            let worker = try await grid.startWorker("slow", owner: owner, cpus: 4, runner: runner)
            let alice = try await grid.user("alice")
            let slow = try await alice.submit(
                InProcessScenarioTests.job("slow", "# grid: slow start\n# grid: sleep 30\n# grid: print the job ran to its end\n"))
            #expect(try await eventually(timeout: 20, interval: 0.02) { runner.blocked.withLock { $0 } == 1 }, "its start began")
            // While that start blocks, the worker goes on answering: another job runs to its end.
            let quick = try await alice.submit(InProcessScenarioTests.job("quick", "# grid: print quick\n"))
            let quickDone = try await InProcessScenarioTests.wait(alice, quick.job.id, for: [.completed, .failed])
            #expect(quickDone.state == .completed && quickDone.workerId == worker.workerId)
            // A cancel read during the start: the run is stopped the moment it has started (a process may have run for that
            // moment; it never gets to the end of its 30 s).
            _ = try await alice.cancel(slow.job.id)
            runner.open()
            let done = try await InProcessScenarioTests.wait(alice, slow.job.id, for: [.cancelled, .completed, .failed])
            #expect(done.state == .cancelled, "\(done)")
            let log = try await alice.logs(done.id, from: 0).text
            #expect(!log.contains("the job ran to its end"), "\(log)")
            #expect(try await grid.ledgerOK())
            await worker.stop()
        }
    }
}

@Suite struct InProcessSilentWorkerTests {
    /// A worker whose heartbeats stop while its connection stays open (a laptop suspended, a starved process) is taken
    /// offline after a lease period, and its connection is closed, so that it connects and registers again when it
    /// wakes, instead of talking into a connection nobody listens to any more.
    @Test func aWorkerSilentForALeasePeriodIsTakenOfflineAndItsConnectionClosed() async throws {
        try await withTestGrid(workers: 0, leaseSeconds: 1) { grid in
            let owner = try await grid.user("owner")
            let token = try await owner.createToken(kind: "worker").token
            // Speaks for a worker itself, on the grid's transport: HELLO and REGISTER, then nothing at all.
            let link = try grid.transport.dial()
            var inbound = link.inbound.makeAsyncIterator()
            func next() async throws -> GridMessage? {
                guard case .frame(let f)? = try await inbound.next() else { return nil }
                return f.message
            }
            try await link.outbound.write(GridFrame(id: 1, .hello(Msg.Hello(token: token, name: "sleepy"))))
            guard case .helloOk? = try await next() else { Issue.record("no HELLO_OK"); return }
            let register = Msg.Register(resources: Resources(cpus: 2, ramGb: 4, gpus: 0), gpuNames: [], tier: .bwrap, slots: 2)
            try await link.outbound.write(GridFrame(id: 2, .register(register)))
            guard case .registered? = try await next() else { Issue.record("no REGISTERED"); return }
            #expect(try await owner.workers().workers.contains { $0.name == "sleepy" && $0.online })
            // Not a single heartbeat from here on: within a few lease periods the manager closes the connection (its
            // side ends: whatever else it says first, PINGs, is read and not answered). Bounded by the manager's
            // lease expiry (1 s leases); the suite's time limit is the backstop.
            var closed = false
            for _ in 0..<10_000 {
                guard try await next() != nil else { closed = true; break }
            }
            #expect(closed, "the manager kept the silent worker's connection open")
            #expect(try await eventually(timeout: 10) { try await !owner.workers().workers.contains { $0.name == "sleepy" && $0.online } })
        }
    }
}

@Suite struct InProcessRejoinTests {
    /// A worker that comes back (same identity) without the run it held has lost that run: the manager requeues it at
    /// once, at registration, with that reason, instead of waiting for the lease to run out (`Rejoin`'s forgotten runs).
    @Test func aWorkerThatRestartsWithoutItsRunLosesItAtRegistrationNotALeaseLater() async throws {
        try await withTestGrid(workers: 0, leaseSeconds: 30) { grid in
            let owner = try await grid.user("owner")
            let first = try await grid.startWorker("comeback", owner: owner)
            let alice = try await grid.user("alice")
            // Long enough that the run is still going when its worker vanishes, on a loaded machine too (a 1 s run had
            // ended first there); the run after the restart takes as long.
            let submitted = try await alice.submit(InProcessScenarioTests.job("steady", "# grid: print run\n# grid: sleep 5\n# grid: print end\n"))
            _ = try await InProcessScenarioTests.wait(alice, submitted.job.id, for: [.running])
            await first.vanish()
            // The same worker (its saved identity) starts again, empty-handed.
            let again = try await grid.startWorker("comeback", owner: owner)
            #expect(again.workerId == first.workerId)
            let done = try await InProcessScenarioTests.wait(alice, submitted.job.id, for: [.completed, .failed], timeout: 40)
            #expect(done.state == .completed && done.attempt == 2, "\(done)")
            let interruptions = try await alice.job(done.id).interruptions ?? []
            #expect(interruptions.count == 1)
            #expect(interruptions.first?.reason.contains("restarted without the job") == true, "\(interruptions)")
            #expect(try await grid.ledgerOK())
            await again.stop()
        }
    }
}

/// A hostile worker the test speaks for on the grid's in-memory transport: said HELLO and REGISTER, then frames as
/// the test writes them. It sends no heartbeats: a test that uses one gives its grid a lease longer than it runs
/// (with the default 10 s, a loaded machine expired it mid-test and ended its link).
final class RawInProcessWorker: @unchecked Sendable {
    // Safe: used by one test task at a time.
    let link: GridLink
    private var inbound: GridLink.Inbound.AsyncIterator

    private init(_ link: GridLink) {
        self.link = link
        inbound = link.inbound.makeAsyncIterator()
    }

    /// Registered with `token` as `name`, offering `cpus` CPUs (1 GB each) in as many slots.
    static func registered(_ grid: InProcessGrid, token: String, name: String, cpus: Int = 1) async throws -> RawInProcessWorker {
        let raw = RawInProcessWorker(try grid.transport.dial())
        try await raw.link.outbound.write(GridFrame(id: 1, .hello(Msg.Hello(token: token, name: name))))
        guard case .helloOk? = try await raw.next(where: { $0.id == 1 })?.message else { throw TestGridError("no HELLO_OK") }
        try await raw.link.outbound.write(
            GridFrame(id: 2, .register(Msg.Register(resources: Resources(cpus: cpus, ramGb: cpus, gpus: 0), tier: .bwrap, slots: cpus))))
        guard case .registered? = try await raw.next(where: { $0.id == 2 })?.message else { throw TestGridError("no REGISTERED") }
        return raw
    }

    /// The next frame that `wanted` picks (others on the way are skipped; at most 1,000 read).
    func next(where wanted: (GridFrame) -> Bool) async throws -> GridFrame? {
        for _ in 0..<1000 {
            guard case .frame(let f)? = try await inbound.next() else { return nil }
            if wanted(f) { return f }
        }
        return nil
    }

    /// The next `JOB_ASSIGN`.
    func nextAssignment() async throws -> Msg.JobAssign? {
        guard case .jobAssign(let a)? = try await next(where: { if case .jobAssign = $0.message { true } else { false } })?.message else {
            return nil
        }
        return a
    }
}

/// Hostile workers, spoken for by the test on the grid's in-memory transport.
@Suite struct InProcessForgedReportTests {
    /// A worker that holds a job and a stranger that says it finished that job (with the greatest runtime there is):
    /// the stranger's report is acknowledged as stale and changes nothing; the job ends when its own worker says so,
    /// paid to its own worker's owner only.
    @Test func aJobDoneForgedByAnotherWorkerIsAcknowledgedAsStaleAndPaysNothing() async throws {
        try await withTestGrid(workers: 1) { grid in
            let alice = try await grid.user("alice")
            let submitted = try await alice.submit(
                InProcessScenarioTests.job("held", "# grid: print start\n# grid: sleep 2\n# grid: print end\n", cpus: 1, ramGb: 1, minutes: 5))
            let running = try await InProcessScenarioTests.wait(alice, submitted.job.id, for: [.running])
            let ref = JobRef(jobId: submitted.job.id, attempt: running.attempt)

            let mallory = try await grid.user("mallory")
            let token = try await mallory.createToken(kind: "worker").token
            let link = try grid.transport.dial()
            defer { link.close() }
            var inbound = link.inbound.makeAsyncIterator()
            func next(_ id: Int) async throws -> GridMessage? {
                // The answer to request `id` (PINGs and other pushes on the way are skipped; bounded).
                for _ in 0..<1000 {
                    guard case .frame(let f)? = try await inbound.next() else { return nil }
                    if f.id == id { return f.message }
                }
                return nil
            }
            try await link.outbound.write(GridFrame(id: 1, .hello(Msg.Hello(token: token, name: "mallory-box"))))
            guard case .helloOk? = try await next(1) else { Issue.record("no HELLO_OK"); return }
            try await link.outbound.write(
                GridFrame(id: 2, .register(Msg.Register(resources: Resources(cpus: 1, ramGb: 1, gpus: 0), tier: .bwrap, slots: 1))))
            guard case .registered? = try await next(2) else { Issue.record("no REGISTERED"); return }
            // Numbers no run can have are refused as such, before anything else is looked at.
            let absurd = Msg.JobDone(
                job: ref, outcome: .completed, exitCode: 0, runtimeMs: .max, peakMemoryKb: .max, cpuSeconds: .greatestFiniteMagnitude, reason: nil,
                files: [], logBytes: 0)
            try await link.outbound.write(GridFrame(id: 3, .jobDone(absurd)))
            let refused = try await next(3)
            guard case .error(let e)? = refused else { Issue.record("absurd numbers were not refused: \(String(describing: refused))"); return }
            #expect(e.code == .badRequest && e.message.contains("runtime_ms"), "\(e)")
            // Plausible ones, for a run that is not this worker's: acknowledged as stale, nothing stored.
            let forged = Msg.JobDone(
                job: ref, outcome: .completed, exitCode: 0, runtimeMs: 299_000, peakMemoryKb: 1, cpuSeconds: 1, reason: nil, files: [], logBytes: 0)
            try await link.outbound.write(GridFrame(id: 4, .jobDone(forged)))
            let answer = try await next(4)
            guard case .jobDoneAck(let ack)? = answer else { Issue.record("the forged JOB_DONE was not answered as stale: \(String(describing: answer))"); return }
            #expect(ack.job == ref)
            // Still running, or (on a loaded machine, its 2 s over) ended by its own worker: the checks below say which,
            // by its log's last line and who was paid.
            let after = try await alice.job(submitted.job.id)
            #expect(after.state == .running || after.state == .completed, "a stranger's report ended the job: \(after.state)")

            let done = try await InProcessScenarioTests.wait(alice, submitted.job.id, for: [.completed, .failed, .cancelled])
            #expect(done.state == .completed && done.attempt == running.attempt, "\(done)")
            #expect(try await alice.logs(submitted.job.id, from: 0).text.contains("end"))
            #expect(try await mallory.credits().earned == 0)
            var owner = GridClient(baseURL: grid.baseURL)
            owner.token = try await owner.login("owner", password: "correct horse battery").token
            #expect(try await owner.credits().earned == done.paid)
            #expect(try await grid.ledgerOK())
        }
    }

    /// Fair share orders the queue by the CPU time a user's runs took, and the leaderboard shows what workers gave:
    /// a worker reported 10⁹ CPU-seconds for a one-CPU run of a second and pushed the job's owner to the back of the
    /// queue for a day. What is recorded is at most the job's CPUs for the paid runtime.
    @Test func aRunsCPUTimeIsRecordedAtMostItsCPUsForItsPaidRuntime() async throws {
        try await withTestGrid(workers: 0, leaseSeconds: 120) { grid in
            let alice = try await grid.user("alice")
            let mallory = try await grid.user("mallory")
            let raw = try await RawInProcessWorker.registered(grid, token: try await mallory.createToken(kind: "worker").token, name: "mallory-box")
            let link = raw.link
            defer { link.close() }
            let id = try await alice.submit(InProcessScenarioTests.job("victim", "# grid: print hi\n", cpus: 1, ramGb: 1)).job.id
            guard let assign = try await raw.nextAssignment() else {
                Issue.record("the job was not assigned to the only worker")
                return
            }
            try await link.outbound.write(GridFrame(id: 3, .jobStarted(Msg.JobStarted(job: assign.job))))
            let done = Msg.JobDone(
                job: assign.job, outcome: .completed, exitCode: 0, runtimeMs: 1_000, peakMemoryKb: 1, cpuSeconds: 1e9, reason: nil, files: [], logBytes: 0)
            try await link.outbound.write(GridFrame(id: 4, .jobDone(done)))
            guard case .jobDoneAck? = try await raw.next(where: { $0.id == 4 })?.message else { Issue.record("the report was not acknowledged"); return }
            let ended = try await InProcessScenarioTests.wait(alice, id, for: [.completed, .failed])
            #expect(ended.state == .completed)
            let given = try #require(try await mallory.workers().workers.first { $0.name == "mallory-box" }?.cpuHoursGiven)
            // At most 1 CPU for the paid runtime, which is at most the 1 s reported.
            #expect(given <= 1.0 / 3600 + 1e-9, "recorded \(given * 3600) CPU-seconds")
        }
    }

    /// A worker's claims no longer decide how many other users' jobs it holds: one that claimed 4,096 CPUs was given
    /// every queued job (the least loaded by far), failed each at once and was paid each run's base. Its owner's workers
    /// hold their window of others' jobs (4) at once, between them; a run that fails keeps its place for a minute; and
    /// the owner's own jobs are not held back.
    @Test func aWorkerClaimingHugeResourcesHoldsOnlyItsWindowOfOthersJobs() async throws {
        try await withTestGrid(workers: 0, leaseSeconds: 120) { grid in
            let alice = try await grid.user("alice")
            let mallory = try await grid.user("mallory")
            let raw = try await RawInProcessWorker.registered(
                grid, token: try await mallory.createToken(kind: "worker").token, name: "mallory-box", cpus: 4_096)
            let link = raw.link
            defer { link.close() }
            var victims: Set<JobID> = []
            for i in 0..<8 {
                victims.insert(try await alice.submit(InProcessScenarioTests.job("v\(i)", "# grid: print hi\n", minutes: 1)).job.id)
            }
            // Its owner's jobs, submitted one after another: once the second is assigned, every pass that could have
            // given it more of alice's jobs has (her jobs were queued before either).
            func others(untilOwnJobs n: Int) async throws -> [Msg.JobAssign] {
                var out: [Msg.JobAssign] = []
                for k in 0..<n {
                    let own = try await mallory.submit(InProcessScenarioTests.job("own\(k)", "# grid: print mine\n", minutes: 1)).job.id
                    for _ in 0..<100 {
                        guard let a = try await raw.nextAssignment() else { throw TestGridError("the worker's link ended") }
                        if a.job.jobId == own { break }
                        #expect(victims.contains(a.job.jobId), "an unexpected job was assigned: \(a.job)")
                        out.append(a)
                    }
                }
                return out
            }
            var id = 100
            func report(_ a: Msg.JobAssign, _ outcome: Msg.Outcome) async throws {
                id += 1
                try await link.outbound.write(GridFrame(id: id, .jobStarted(Msg.JobStarted(job: a.job))))
                id += 1
                let done = Msg.JobDone(
                    job: a.job, outcome: outcome, exitCode: outcome == .failed ? 1 : nil, runtimeMs: 10, peakMemoryKb: 1, cpuSeconds: 0,
                    reason: outcome == .rejected ? "no room" : nil, files: [], logBytes: 0)
                try await link.outbound.write(GridFrame(id: id, .jobDone(done)))
                let answered = id
                guard case .jobDoneAck? = try await raw.next(where: { $0.id == answered })?.message else {
                    throw TestGridError("the report was not acknowledged")
                }
            }
            let given = try await others(untilOwnJobs: 2)
            #expect(given.count == 4, "a worker that claimed 4,096 CPUs was given \(given.count) of alice's jobs at once")
            // Failed at once: each keeps its place for a minute from its start.
            for a in given { try await report(a, .failed) }
            let after = try await others(untilOwnJobs: 2)
            #expect(after.isEmpty, "with its window held by four failed runs, it was given \(after.count) more of alice's jobs")
            #expect(try await grid.ledgerOK())
        }
    }

    /// A worker waives its pay (`refund`) only for a job whose environment could not be built, and a refunded run is not
    /// checked: a worker that called any result refunded went unchecked (and a refunded failure kept no place in its
    /// window). The manager takes a refund only for a failed run of a job that declares packages, or a cancelled one.
    @Test func aRefundIsTakenOnlyForAFailedRunOfAJobWithPackagesOrACancelledOne() async throws {
        try await withTestGrid(workers: 0, leaseSeconds: 120) { grid in
            let alice = try await grid.user("alice")
            let mallory = try await grid.user("mallory")
            let raw = try await RawInProcessWorker.registered(grid, token: try await mallory.createToken(kind: "worker").token, name: "mallory-box")
            let link = raw.link
            defer { link.close() }
            for (i, outcome) in [Msg.Outcome.completed, .failed].enumerated() {
                let id = try await alice.submit(InProcessScenarioTests.job("plain\(i)", "# grid: print hi\n", minutes: 1)).job.id
                guard let a = try await raw.nextAssignment(), a.job.jobId == id else {
                    Issue.record("job \(id) was not assigned")
                    return
                }
                try await link.outbound.write(GridFrame(id: 10 + i, .jobStarted(Msg.JobStarted(job: a.job))))
                let done = Msg.JobDone(
                    job: a.job, outcome: outcome, exitCode: outcome == .completed ? 0 : 1, runtimeMs: 10, peakMemoryKb: 1, cpuSeconds: 0, reason: nil,
                    files: [], logBytes: 0, refund: true)
                try await link.outbound.write(GridFrame(id: 20 + i, .jobDone(done)))
                guard case .jobDoneAck? = try await raw.next(where: { $0.id == 20 + i })?.message else {
                    Issue.record("the report was not acknowledged")
                    return
                }
                let ended = try await InProcessScenarioTests.wait(alice, id, for: [.completed, .failed])
                #expect((ended.paid ?? 0) > 0, "a \(outcome) run of a job without packages was refunded on the worker's word")
            }
            // A job its submitter cancelled before it started (while its environment was prepared, say) costs nothing:
            // the worker reports it cancelled with its refund, and the hold goes back whole.
            let before = try await alice.me().balance
            let id = try await alice.submit(InProcessScenarioTests.job("cancelled", "# grid: print hi\n", minutes: 1)).job.id
            guard let a = try await raw.nextAssignment(), a.job.jobId == id else {
                Issue.record("job \(id) was not assigned")
                return
            }
            _ = try await alice.cancel(id)
            guard case .cancel? = try await raw.next(where: { if case .cancel = $0.message { true } else { false } })?.message else {
                Issue.record("the worker was not told to cancel")
                return
            }
            let cancelled = Msg.JobDone(
                job: a.job, outcome: .cancelled, exitCode: nil, runtimeMs: 0, peakMemoryKb: 0, cpuSeconds: 0, reason: "cancelled before it started",
                files: [], logBytes: 0, refund: true)
            try await link.outbound.write(GridFrame(id: 30, .jobDone(cancelled)))
            guard case .jobDoneAck? = try await raw.next(where: { $0.id == 30 })?.message else {
                Issue.record("the report was not acknowledged")
                return
            }
            let ended = try await InProcessScenarioTests.wait(alice, id, for: [.cancelled])
            #expect((ended.paid ?? 0) == 0, "a run cancelled before it started cost \(ended.paid ?? 0)")
            #expect(try await alice.me().balance == before)
            #expect(try await grid.ledgerOK())
        }
    }

    /// A report whose log has not all arrived is held with its outputs until it does: a worker holding many jobs sent
    /// each a report with 64 MiB of outputs and a log it never sent, and pinned gigabytes in the manager. A worker's
    /// held reports are bounded in bytes; one beyond is refused until its log is in.
    @Test func aWorkersHeldReportsAreBoundedInBytes() async throws {
        try await withTestGrid(workers: 0, leaseSeconds: 120, configure: { $0.maxHeldReportBytes = 1_500 }) { grid in
            let alice = try await grid.user("alice")
            let mallory = try await grid.user("mallory")
            let raw = try await RawInProcessWorker.registered(
                grid, token: try await mallory.createToken(kind: "worker").token, name: "mallory-box", cpus: 2)
            let link = raw.link
            defer { link.close() }
            for i in 0..<2 { _ = try await alice.submit(InProcessScenarioTests.job("v\(i)", "# grid: print hi\n", cpus: 1, ramGb: 1)) }
            var assigned: [Msg.JobAssign] = []
            for _ in 0..<2 {
                guard let a = try await raw.nextAssignment() else {
                    Issue.record("the jobs were not assigned")
                    return
                }
                assigned.append(a)
            }
            for (i, a) in assigned.enumerated() {
                try await link.outbound.write(GridFrame(id: 10 + i, .jobStarted(Msg.JobStarted(job: a.job))))
                var payload = ByteBuffer()
                payload.writeBytes([UInt8](repeating: 7, count: 1_000))
                let done = Msg.JobDone(
                    job: a.job, outcome: .completed, exitCode: 0, runtimeMs: 1_000, peakMemoryKb: 1, cpuSeconds: 1, reason: nil,
                    files: [FileEntry(name: "out.bin", size: 1_000)], logBytes: 1_000_000)
                try await link.outbound.write(GridFrame(id: 20 + i, .jobDone(done), payload: payload))
            }
            // The first is held (no answer until its log comes); the second would pass the bound.
            // Bounded: a second report held too is never answered.
            let reader = Task { try await raw.next(where: { $0.id == 21 || $0.id == 20 }) }
            let timer = Task {
                try? await Task.sleep(for: .seconds(20))
                link.close()
            }
            let answer = try? await reader.value
            timer.cancel()
            guard answer?.id == 21, case .error(let e)? = answer?.message else { Issue.record("the second report was taken: \(String(describing: answer))"); return }
            #expect(e.code == .rateLimited && e.message.contains("send the log"), "\(e)")
        }
    }

    /// One owner's workers rejecting a job in turn (each `JOB_DONE rejected`) ended it as failed after ten tries, and an
    /// honest worker never got it. One refusal keeps the job away from that worker only (it may be that machine's: a
    /// full disk): another worker of the same owner still gets it. A second refusal by that owner keeps it away from
    /// all its workers.
    @Test func aJobRejectedTwiceByOneOwnerKeepsAwayFromAllItsWorkers() async throws {
        try await withTestGrid(workers: 0, leaseSeconds: 120) { grid in
            let alice = try await grid.user("alice")
            let mallory = try await grid.user("mallory")
            let token = try await mallory.createToken(kind: "worker").token
            var puppets: [RawInProcessWorker] = []
            defer { for p in puppets { p.link.close() } }
            func reject(_ assign: Msg.JobAssign, on p: RawInProcessWorker) async throws {
                let rejected = Msg.JobDone(
                    job: assign.job, outcome: .rejected, exitCode: nil, runtimeMs: 0, peakMemoryKb: 0, cpuSeconds: 0, reason: "no", files: [],
                    logBytes: 0)
                try await p.link.outbound.write(GridFrame(id: 3, .jobDone(rejected)))
            }
            puppets.append(try await RawInProcessWorker.registered(grid, token: token, name: "puppet-0"))
            let id = try await alice.submit(InProcessScenarioTests.job("victim", "# grid: print hi\n", cpus: 1, ramGb: 1)).job.id
            let first = try #require(try await puppets[0].nextAssignment(), "the job was not assigned to the only worker")
            try await reject(first, on: puppets[0])
            // Another machine of the same owner still gets it.
            puppets.append(try await RawInProcessWorker.registered(grid, token: token, name: "puppet-1"))
            let second = try #require(try await puppets[1].nextAssignment(), "one refusal kept the job from the owner's other worker")
            #expect(second.job.jobId == id)
            puppets.append(try await RawInProcessWorker.registered(grid, token: token, name: "puppet-2"))
            try await reject(second, on: puppets[1])
            // Now none of that owner's: an honest worker joins and the job goes to it.
            let owner = try await grid.user("owner")
            let honest = try await grid.startWorker("honest", owner: owner, cpus: 1)
            let done = try await InProcessScenarioTests.wait(alice, id, for: [.completed, .failed, .cancelled], timeout: 60)
            #expect(done.state == .completed && done.workerId == honest.workerId, "\(done.state) on \(done.workerId ?? "-")")
            #expect((done.interruptions ?? []).count == 2, "\(done.interruptions ?? [])")
        }
    }

    /// Messages only a manager sends (a CANCEL, an acknowledgement, a peer list), sent by a worker: each is refused
    /// with the reason, nothing happens to the job it names, and the connection goes on (a PING is answered).
    @Test func messagesOnlyAManagerSendsAreRefusedFromAWorkerAndChangeNothing() async throws {
        try await withTestGrid(workers: 1) { grid in
            let alice = try await grid.user("alice")
            let submitted = try await alice.submit(InProcessScenarioTests.job("kept", "# grid: print start\n# grid: sleep 1\n# grid: print end\n"))
            let running = try await InProcessScenarioTests.wait(alice, submitted.job.id, for: [.running])
            let ref = JobRef(jobId: submitted.job.id, attempt: running.attempt)
            let mallory = try await grid.user("mallory")
            let link = try grid.transport.dial()
            defer { link.close() }
            var inbound = link.inbound.makeAsyncIterator()
            func answer(_ id: Int, _ message: GridMessage) async throws -> GridMessage? {
                try await link.outbound.write(GridFrame(id: id, message))
                for _ in 0..<1000 {
                    guard case .frame(let f)? = try await inbound.next() else { return nil }
                    if f.id == id { return f.message }
                }
                return nil
            }
            let token = try await mallory.createToken(kind: "worker").token
            guard case .helloOk? = try await answer(1, .hello(Msg.Hello(token: token, name: "mallory-box"))) else { Issue.record("no HELLO_OK"); return }
            let register = Msg.Register(resources: Resources(cpus: 1, ramGb: 1, gpus: 0), tier: .bwrap, slots: 1)
            guard case .registered? = try await answer(2, .register(register)) else { Issue.record("no REGISTERED"); return }
            let orders: [GridMessage] = [
                .cancel(Msg.Cancel(job: ref, reason: "mallory says so")), .jobDoneAck(Msg.JobDoneAck(job: ref)), .peers(Msg.Peers(peers: [])),
            ]
            for (i, order) in orders.enumerated() {
                let reply = try await answer(10 + i, order)
                guard case .error(let e)? = reply else { Issue.record("\(order.type) from a worker was not refused: \(String(describing: reply))"); continue }
                #expect(e.code == .badRequest && e.message.contains(order.type), "\(e)")
            }
            guard case .pong? = try await answer(20, .ping) else { Issue.record("the connection did not go on after the refusals"); return }
            let done = try await InProcessScenarioTests.wait(alice, submitted.job.id, for: [.completed, .failed, .cancelled])
            #expect(done.state == .completed && done.attempt == running.attempt, "\(done)")
            #expect(try await grid.ledgerOK())
        }
    }
}

/// Only a job's owner cancels it. A worker that stops (SIGTERM) cancels its runs, and a hostile one may report a run
/// cancelled that nobody cancelled; either way the job is not over: it runs again, and the stopped run pays nothing.
@Suite struct InProcessStoppedRunTests {
    @Test func aJobWhoseWorkerStopsMidRunRunsAgainOnAnotherAndIsNotCancelled() async throws {
        // A lease long enough that a loaded machine's late heartbeat does not lose the second worker too (seen once
        // beside a CPU hog): the stop is reported, not found by the lease.
        try await withTestGrid(workers: 0, leaseSeconds: 10) { grid in
            let alice = try await grid.user("alice")
            let owner = try await grid.user("contributor")
            let first = try await grid.startWorker("first", owner: owner)
            // The first run waits long enough that no loaded machine ends it before the stop (3 s did, once, beside
            // three other test targets); the rerun is quick.
            let submitted = try await alice.submit(InProcessScenarioTests.job("long", "# grid: print start\n# grid: sleep-first 40\n# grid: print end\n"))
            let id = submitted.job.id
            _ = try await InProcessScenarioTests.wait(alice, id, for: [.running])
            let started = await eventually(timeout: 20) { (try? await alice.logs(id, from: 0))?.text.contains("start") == true }
            #expect(started)
            // Stopped as SIGTERM would stop it: the run is cancelled and reported so, and the worker goes.
            await first.stop()
            let requeued = try await InProcessScenarioTests.wait(alice, id, for: [.pending, .cancelled, .failed, .completed], timeout: 20)
            #expect(requeued.state == .pending, "a worker that stopped ended the job: \(requeued.state) \(requeued.reason ?? "")")
            // The worker reported the run it stopped before it left: the manager knows why the run ended (not a worker
            // lost, which would count against the job if it happened on three workers), and says so.
            // It said it was stopping before it reported the run, so the job is not offered to it again.
            #expect((try await alice.job(id).interruptions ?? []).first?.kind == "stopped_by_worker")
            // Another worker runs it to the end; it is paid once, for that run.
            try await grid.startWorker("second", owner: owner)
            let done = try await InProcessScenarioTests.wait(alice, id, for: [.completed, .failed, .cancelled])
            let interruptions = done.interruptions ?? []
            #expect(interruptions.first?.kind == "stopped_by_worker", "\(interruptions)")
            #expect(interruptions.map(\.kind) == ["stopped_by_worker"], "\(interruptions)")
            #expect(interruptions.allSatisfy { !$0.blamed }, "a worker that stops says nothing against the job")
            #expect(done.state == .completed && done.attempt == 2, "\(done)")
            #expect(try await alice.logs(id, from: 0).text.contains("end"))
            #expect(try await grid.ledgerOK())
        }
    }

    /// A worker told to stop while a run's sandbox is still starting (a container engine can take seconds) stops that
    /// run the moment it has started and reports it, as it does a running one: the job is queued again at once, for
    /// the worker's going, not a lease later as a worker lost (which counts against the job).
    @Test func aWorkerStoppedWhileARunStartsReportsThatRunStoppedNotLost() async throws {
        try await withTestGrid(workers: 0) { grid in
            let alice = try await grid.user("alice")
            let owner = try await grid.user("contributor")
            let runner = GatedRunner()
            let first = try await grid.startWorker("first", owner: owner, runner: runner)
            let submitted = try await alice.submit(
                InProcessScenarioTests.job("slow", "# grid: slow start\n# grid: print start\n# grid: sleep 30\n# grid: print end\n"))
            let id = submitted.job.id
            #expect(try await eventually(timeout: 20, interval: 0.02) { runner.blocked.withLock { $0 } == 1 }, "its start began")
            let stopping = Task { await first.stop() }
            // The manager heard it stop (so it offers it nothing more) before the start is let go.
            #expect(await grid.managerHeardStopping(first.workerId), "the manager never heard that the worker stops; log: \(grid.root)/grid.log")
            runner.open()
            await stopping.value
            let requeued = try await InProcessScenarioTests.wait(alice, id, for: [.pending, .cancelled, .failed, .completed], timeout: 20)
            #expect(requeued.state == .pending, "\(requeued.state) \(requeued.reason ?? "")")
            let interruptions = try await alice.job(id).interruptions ?? []
            #expect(interruptions.map(\.kind) == ["stopped_by_worker"], "\(interruptions)")
            #expect(interruptions.allSatisfy { !$0.blamed }, "\(interruptions)")
            #expect(try await alice.me().balance == 100 - submitted.hold, "the stopped run cost nothing: only the hold is out")
            #expect(try await grid.ledgerOK())
        }
    }

    /// A hostile worker reports the run it holds as cancelled, with a long runtime: the job is not ended, its owner pays
    /// nothing for that run, and the worker's owner earns nothing.
    @Test func aWorkerThatReportsItsRunCancelledUnaskedEndsNothingAndEarnsNothing() async throws {
        try await withTestGrid(workers: 0) { grid in
            let alice = try await grid.user("alice")
            let before = try await alice.me().balance
            let mallory = try await grid.user("mallory")
            let link = try grid.transport.dial()
            defer { link.close() }
            var inbound = link.inbound.makeAsyncIterator()
            func next(where wanted: (GridFrame) -> Bool) async throws -> GridFrame? {
                for _ in 0..<1000 {
                    guard case .frame(let f)? = try await inbound.next() else { return nil }
                    if wanted(f) { return f }
                }
                return nil
            }
            let token = try await mallory.createToken(kind: "worker").token
            try await link.outbound.write(GridFrame(id: 1, .hello(Msg.Hello(token: token, name: "mallory-box"))))
            guard case .helloOk? = try await next(where: { $0.id == 1 })?.message else { Issue.record("no HELLO_OK"); return }
            try await link.outbound.write(
                GridFrame(id: 2, .register(Msg.Register(resources: Resources(cpus: 2, ramGb: 4, gpus: 0), tier: .bwrap, slots: 1))))
            guard case .registered? = try await next(where: { $0.id == 2 })?.message else { Issue.record("no REGISTERED"); return }

            let id = try await alice.submit(InProcessScenarioTests.job("target", "# grid: print hi\n", minutes: 5)).job.id
            guard case .jobAssign(let assign)? = try await next(where: { if case .jobAssign = $0.message { true } else { false } })?.message else {
                Issue.record("the job never came to the hand-spoken worker")
                return
            }
            let ref = assign.job
            try await link.outbound.write(GridFrame(id: 3, .jobStarted(Msg.JobStarted(job: ref))))
            let claim = Msg.JobDone(
                job: ref, outcome: .cancelled, exitCode: nil, runtimeMs: 299_000, peakMemoryKb: 1, cpuSeconds: 299, reason: "cancelled", files: [],
                logBytes: 0)
            try await link.outbound.write(GridFrame(id: 4, .jobDone(claim)))
            guard case .jobDoneAck(let ack)? = try await next(where: { $0.id == 4 })?.message else { Issue.record("the report was not acknowledged"); return }
            #expect(ack.job == ref)
            // Back in the queue, and (the only worker being this one) perhaps given to it again, as a new attempt.
            let job = try await alice.job(id)
            #expect(job.state == .pending || (job.state == .running && job.attempt > ref.attempt), "a worker's word ended the job: \(job.state) \(job.reason ?? "")")
            #expect(job.paid == nil || job.paid == 0)
            #expect((job.interruptions ?? []).map(\.kind) == ["stopped_by_worker"], "\(job.interruptions ?? [])")
            #expect(try await mallory.credits().earned == 0)
            #expect(try await alice.me().balance == before - job.hold, "only the hold is out of alice's balance: \(job.hold)")
            #expect(try await grid.ledgerOK())
        }
    }
}

@Suite struct InProcessManagerRestartTests {
    /// The manager stops while jobs run (and one waits) and starts again on its store: no job and no credit is lost, the
    /// running jobs finish on their first attempt on the workers that had them, and the workers reconnect by
    /// themselves. (The process-level `FaultTolerance` test does the same with a SIGKILL.)
    @Test func aManagerRestartedMidRunLosesNoJobOrCreditAndItsWorkersReconnect() async throws {
        // The default 10 s lease: a restarted manager keeps each running job's lease for three leases while its worker
        // reconnects. With a 2 s lease (6 s of grace) a worker beside a CPU hog once came back too late, and both jobs
        // ran a second time.
        try await withTestGrid(workers: 2) { grid in
            let alice = try await grid.user("alice")
            let script = "# grid: print step 1\n# grid: sleep 1.5\n# grid: print step 2\n# grid: write result.txt ok\n"
            let a = try await alice.submit(InProcessScenarioTests.job("a", script, outputs: ["result.txt"])).job.id
            let b = try await alice.submit(InProcessScenarioTests.job("b", script, outputs: ["result.txt"])).job.id
            let queued = try await alice.submit(InProcessScenarioTests.job("queued", script, cpus: 2, outputs: ["result.txt"])).job.id
            // Each seen running (under load the first may have ended by the time the second is: that is no loss either).
            _ = try await InProcessScenarioTests.wait(alice, a, for: [.running, .completed])
            _ = try await InProcessScenarioTests.wait(alice, b, for: [.running, .completed])
            let balanceBefore = try await alice.me().balance

            try await grid.restartManager()
            let log = try String(contentsOfFile: grid.root + "/grid.log", encoding: .utf8)
            #expect(log.components(separatedBy: "grid protocol listening in memory").count - 1 == 2, "the manager did not start twice")
            // Nothing is taken in the restart; a job that ended meanwhile (a loaded machine restarts slowly) gives back
            // what it did not use. The exact sums are checked once every job has ended.
            #expect(try await alice.me().balance >= balanceBefore, "credit lost in the restart")
            for id in [a, b, queued] {
                let job = try await InProcessScenarioTests.wait(alice, id, for: [.completed, .failed, .cancelled], timeout: 30)
                #expect(job.state == .completed, "job \(id): \(job)")
                #expect(try await alice.logs(id, from: 0).text.contains("step 2"))
            }
            #expect(try await alice.job(a).attempt == 1, "the running job finished on its first worker, across the restart")
            #expect(try await alice.job(b).attempt == 1)
            var owner = GridClient(baseURL: grid.baseURL)
            owner.token = try await owner.login("owner", password: "correct horse battery").token
            let online = try await eventually(timeout: 10) { try await owner.workers().workers.filter(\.online).count == 2 }
            #expect(online, "both workers reconnected by themselves")
            var paid = 0
            for id in [a, b, queued] { paid += try await alice.job(id).paid ?? 0 }
            #expect(try await alice.me().balance == 100 - paid)
            #expect(try await owner.credits().earned == paid)
            #expect(try await grid.ledgerOK())
        }
    }
}

@Suite struct InProcessManagerLinkTests {
    /// A registered link that breaks with an error (a reset, as when the manager's host dies) is a lost manager, as
    /// much as one that closed cleanly: the worker says "lost the manager", with the error, not "manager unreachable"
    /// (the line for a manager it never reached), and registers again.
    @Test func aLinkResetAfterRegistrationIsALostManagerAndTheWorkerRegistersAgain() async throws {
        try await withTestGrid(workers: 1) { grid in
            let path = grid.root + "/grid.log"
            func log() -> Data { FileManager.default.contents(atPath: path) ?? Data() }
            let before = log().count
            func since() -> [Substring] {
                String(decoding: log().dropFirst(before), as: UTF8.self).split(separator: "\n").filter { $0.contains("worker=w1") }
            }
            grid.transport.resetAll()
            let back = await eventually(timeout: 30, interval: 0.05) { since().contains { $0.contains("registered with the manager") } }
            #expect(back, "the worker did not register again after the reset; log: \(path)")
            let lines = since()
            #expect(
                lines.contains { $0.contains("lost the manager") && $0.contains("Connection reset") },
                "no \"lost the manager\" with the reset:\n\(lines.joined(separator: "\n"))")
            #expect(!lines.contains { $0.contains("manager unreachable") }, "\(lines.joined(separator: "\n"))")
        }
    }
}

@Suite struct InProcessWorkerIdentityTests {
    /// Each new worker identity is a row the manager keeps for good, and a loop of HELLOs without an id made one each:
    /// an owner has at most `maxWorkersPerOwner`. Past it a new one is refused, saying why; a worker that comes back
    /// with its id still joins, and another owner is not affected.
    @Test func anOwnerHasAtMostMaxWorkersOnRecordAndAKnownOneStillJoins() async throws {
        try await withTestGrid(workers: 0, configure: { $0.maxWorkersPerOwner = 2 }) { grid in
            let owner = try await grid.user("owner")
            let first = try await grid.startWorker("w1", owner: owner)
            try await grid.startWorker("w2", owner: owner)
            func hello(_ token: String, workerId: String? = nil) async throws -> GridMessage? {
                let link = try grid.transport.dial()
                defer { link.close() }
                var inbound = link.inbound.makeAsyncIterator()
                try await link.outbound.write(GridFrame(id: 1, .hello(Msg.Hello(token: token, name: "another", workerId: workerId))))
                guard case .frame(let f)? = try await inbound.next() else { return nil }
                return f.message
            }
            let token = try await owner.createToken(kind: "worker").token
            guard case .error(let refused)? = try await hello(token) else { Issue.record("a third identity was accepted"); return }
            #expect(refused.code == .forbidden && refused.message.contains("2 workers on record"), "\(refused)")
            guard case .error? = try await hello(token, workerId: "w-made-up") else { Issue.record("a made-up id was a third identity"); return }
            guard case .helloOk(let ok)? = try await hello(token, workerId: first.workerId) else { Issue.record("a known worker was refused"); return }
            #expect(ok.workerId == first.workerId)
            let other = try await grid.user("other")
            guard case .helloOk? = try await hello(try await other.createToken(kind: "worker").token) else { Issue.record("another owner was refused"); return }
        }
    }
}

extension InProcessWorkerIdentityTests {
    /// Peers rank each other by id to place keys, and an id that ranks first for a chosen person's key takes a few
    /// dozen tries to find offline: a worker that names an id of no one's gets one the manager makes instead. Its own
    /// id, or one the manager gave it moments ago (a HELLO again before it registered), it keeps; another owner's
    /// pending one it does not get.
    @Test func aWorkerCannotChooseAnIdNoOneWasGiven() async throws {
        try await withTestGrid(workers: 0) { grid in
            let owner = try await grid.user("owner")
            let token = try await owner.createToken(kind: "worker").token
            func hello(_ token: String, workerId: String? = nil) async throws -> String? {
                let link = try grid.transport.dial()
                defer { link.close() }
                var inbound = link.inbound.makeAsyncIterator()
                try await link.outbound.write(GridFrame(id: 1, .hello(Msg.Hello(token: token, name: "chooser", workerId: workerId))))
                guard case .frame(let f)? = try await inbound.next(), case .helloOk(let ok) = f.message else { return nil }
                return ok.workerId
            }
            let made = try #require(try await hello(token, workerId: "evil-ranks-first"))
            #expect(made != "evil-ranks-first")
            // Given moments ago and not registered yet: the same worker saying HELLO again keeps it.
            #expect(try await hello(token, workerId: made) == made)
            // Another owner's worker naming it gets an id of its own.
            let other = try await grid.user("other")
            let theirs = try await hello(try await other.createToken(kind: "worker").token, workerId: made)
            #expect(theirs != nil && theirs != made)
            // A registered worker's own id is its own.
            let first = try await grid.startWorker("w1", owner: owner)
            #expect(try await hello(token, workerId: first.workerId) == first.workerId)
        }
    }

    /// The count was checked at HELLO and the row made only at REGISTER: HELLOs on parallel connections all passed it
    /// before any row existed. An identity given at HELLO counts until it registers.
    @Test func parallelHellosGetNoMoreIdentitiesThanTheBound() async throws {
        try await withTestGrid(workers: 0, configure: { $0.maxWorkersPerOwner = 2 }) { grid in
            let owner = try await grid.user("owner")
            let token = try await owner.createToken(kind: "worker").token
            let links = try (0..<8).map { _ in try grid.transport.dial() }
            defer { for l in links { l.close() } }
            let accepted = try await withThrowingTaskGroup(of: Bool.self) { group in
                for (i, link) in links.enumerated() {
                    group.addTask {
                        var inbound = link.inbound.makeAsyncIterator()
                        try await link.outbound.write(GridFrame(id: 1, .hello(Msg.Hello(token: token, name: "burst-\(i)"))))
                        guard case .frame(let f)? = try await inbound.next() else { return false }
                        if case .helloOk = f.message { return true }
                        return false
                    }
                }
                var n = 0
                for try await ok in group where ok { n += 1 }
                return n
            }
            #expect(accepted == 2, "\(accepted) new identities were given for a bound of 2")
        }
    }
}

@Suite struct InProcessJoinTokenRevocationTests {
    /// A contributor revokes a worker's join token on the dashboard (a stolen laptop, a machine given away). Before,
    /// the token row went, but the worker that joined with it stayed connected, kept taking jobs, and renewed its peer
    /// credential for as long as its connection lasted. Now it is let go at once and cannot come back with that token;
    /// another user posting the same hash revokes nothing.
    @Test func aRevokedJoinTokenLetsItsWorkerGoAtOnceAndNobodyElseCanRevokeIt() async throws {
        try await withTestGrid(workers: 0) { grid in
            let owner = try await grid.user("owner")
            let worker = try await grid.startWorker("w1", owner: owner)
            func online() async throws -> Bool? { try await owner.workers().workers.first { $0.id == worker.workerId }?.online }
            #expect(try await online() == true)

            let browser = DashboardBrowser(baseURL: grid.baseURL)
            try await browser.login("owner")
            let account = try await browser.get("/account")
            let workerSection = account.body.components(separatedBy: "id=\"api-tokens-heading\"")[0]
            let hashes = workerSection.matches(of: /name="hash" value="([0-9a-f]{64})"/).map { String($0.1) }
            let hash = try #require(hashes.first, "the account page lists no join token: \(account.body.prefix(2000))")
            #expect(hashes.count == 1, "\(hashes)")

            // Another user posting the hash revokes nothing, and the worker stays.
            _ = try await grid.user("mallory")
            let mallory = DashboardBrowser(baseURL: grid.baseURL)
            try await mallory.login("mallory")
            try await mallory.post("/account/tokens/revoke", ["hash": hash])
            #expect(try await online() == true, "another user's post revoked the worker")
            #expect(try await browser.get("/account").body.contains(hash), "another user's post removed the token")

            let revoked = try await browser.post("/account/tokens/revoke", ["hash": hash])
            #expect(revoked.status == 303, "\(revoked.status) \(revoked.body.prefix(300))")
            // Offline at once (no lease period waited), and its HELLO with that token is refused from then on.
            #expect(try await online() == false, "the worker of a revoked join token is still online")
            let path = grid.root + "/grid.log"
            let refused = await eventually(timeout: 30, interval: 0.05) {
                let log = String(decoding: FileManager.default.contents(atPath: path) ?? Data(), as: UTF8.self)
                return log.split(separator: "\n").contains { $0.contains("the manager refused this worker") && $0.contains("worker=w1") }
            }
            #expect(refused, "the worker was not refused when it came back; log: \(path)")
            #expect(try await online() == false)
        }
    }

    /// The worker of a revoked join token still holds its peer credential (10 minutes), and its key. Before, other
    /// peers took it until it lapsed: a new link it opened, and the requests of a link opened before. Now the manager's
    /// `PEERS` bars it, and they refuse both.
    /// `offline`: the stolen machine left the manager before the revocation (a thief disconnects first), keeping its
    /// credential: it is barred all the same.
    /// `revokedThenRestart`: the manager restarts after the revocation; the new one announced no bars before (they were
    /// kept in memory), and the honest peer, keeping the last list it was sent, took the credential again.
    /// `restartThenRevoked`: the stolen machine left before a restart, and the new manager, which gave it nothing, did
    /// not know it held a credential under the token.
    enum Revocation: String, CaseIterable, Sendable { case online, offline, revokedThenRestart, restartThenRevoked }

    @Test(arguments: Revocation.allCases)
    func aRevokedWorkersCredentialOpensNothingAtOtherPeers(_ revocation: Revocation) async throws {
        try await withTestGrid(workers: 0) { grid in
            let owner = try await grid.user("owner")
            let honest = try await grid.startWorker("honest", owner: owner, cpus: 1, peer: true)
            let laptop = try await grid.user("laptop-owner")
            let stolen = try await grid.startWorker("stolen", owner: laptop, cpus: 1, peer: true)
            let service = try #require(stolen.peerService)
            let port = try #require(honest.peerPort)
            // As the stolen machine would: its credential and its key, proving itself to the honest peer.
            func link() async throws -> PeerLink {
                let credential = try #require(await service.credential)
                let signer = await service.signer
                return try await PeerLink.connectAsPeer(host: "127.0.0.1", port: port, nonce: PeerTrust.nonce()) { ok, _ in
                    Msg.PeerAuth(credential: credential, proof: signer.proof(nonce: ok.nonce ?? "", workerId: credential.workerId, role: .client, audience: ok.workerId))
                }
            }
            var before: PeerLink?
            // Both peers learn of each other first (bounded).
            _ = await eventually(timeout: 30, interval: 0.05) {
                before = try? await link()
                return before != nil
            }
            let opened = try #require(before, "the stolen worker's credential opened no link while its token stood")
            defer { opened.close() }
            guard case .pong = try await opened.request(.ping).message else { Issue.record("no PONG before the revocation"); return }
            if revocation != .online { await stolen.vanish() }
            if revocation == .restartThenRevoked { try await grid.restartManager() }

            let browser = DashboardBrowser(baseURL: grid.baseURL)
            try await browser.login("laptop-owner")
            let workerSection = try await browser.get("/account").body.components(separatedBy: "id=\"api-tokens-heading\"")[0]
            let hash = try #require(workerSection.matches(of: /name="hash" value="([0-9a-f]{64})"/).map { String($0.1) }.first)
            try await browser.post("/account/tokens/revoke", ["hash": hash])
            if revocation == .revokedThenRestart || revocation == .restartThenRevoked {
                // The bar is announced after the restart too: a worker that joins only then is sent to the honest peer in
                // a PEERS of the new manager, with the bars it knows (bounded).
                if revocation == .revokedThenRestart { try await grid.restartManager() }
                let late = try await grid.startWorker("late", owner: owner, cpus: 1, peer: true)
                let honestService = try #require(honest.peerService)
                let heard = await eventually(timeout: 30, interval: 0.05) {
                    await honestService.members.contains { $0.workerId == late.workerId }
                }
                #expect(heard, "the honest peer never heard of a worker that joined after the restart")
            }

            // The honest peer hears PEERS {barred} (bounded), then refuses a new link and the old link's requests.
            var refusal: GridError?
            _ = await eventually(timeout: 30, interval: 0.05) {
                do {
                    let l = try await link()
                    l.close()
                    return false
                } catch let e as GridError {
                    refusal = e
                    return e.code == .forbidden
                } catch { return false }
            }
            #expect(refusal?.code == .forbidden && refusal?.message.contains("barred") == true, "\(String(describing: refusal))")
            do {
                let r = try await opened.request(.ping).message
                Issue.record("a link the stolen worker opened before was answered after: \(r)")
            } catch let e as GridError {
                #expect(e.code == .forbidden, "\(e)")
            }
        }
    }

    /// A worker chooses its id (HELLO) and the host it is reached at (REGISTER), and both go into the credential the
    /// manager signs: one with a newline in it passed for another worker's credential. Such an id or host is refused.
    @Test func aWorkerIdOrHostWithControlCharactersIsRefused() async throws {
        try await withTestGrid(workers: 0) { grid in
            let owner = try await grid.user("owner")
            let token = try await owner.createToken(kind: "worker").token
            func exchange(_ frames: [GridMessage]) async throws -> GridMessage? {
                let link = try grid.transport.dial()
                defer { link.close() }
                var inbound = link.inbound.makeAsyncIterator()
                var last: GridMessage?
                for (i, m) in frames.enumerated() {
                    try await link.outbound.write(GridFrame(id: i + 1, m))
                    while case .frame(let f)? = try await inbound.next() {
                        if case .peers = f.message { continue }
                        last = f.message
                        break
                    }
                    if case .error = last { return last }
                }
                return last
            }
            let badId = try await exchange([.hello(Msg.Hello(token: token, name: "x", workerId: "w-victim\nx"))])
            guard case .error(let e)? = badId else { Issue.record("a worker id with a newline was taken: \(String(describing: badId))"); return }
            #expect(e.code == .badRequest && e.message.contains("worker id"), "\(e)")
            var reg = Msg.Register(resources: Resources(cpus: 1, ramGb: 1, gpus: 0), tier: .bwrap, slots: 1)
            reg.host = "x\n127.0.0.1"
            reg.port = 9000
            let badHost = try await exchange([.hello(Msg.Hello(token: token, name: "y")), .register(reg)])
            guard case .error(let h)? = badHost else { Issue.record("a host with a newline was taken: \(String(describing: badHost))"); return }
            #expect(h.code == .badRequest && h.message.contains("host"), "\(h)")
            #expect(try await owner.workers().workers.allSatisfy { !$0.online }, "a worker went online")
        }
    }

    /// Whoever holds a stolen join token could say HELLO on a spare connection, keep it open, and send REGISTER after
    /// the owner revoked the token: only live workers were let go, and registration did not look at the token again.
    /// Now REGISTER on a connection whose token was revoked since its HELLO is refused, and nothing goes online.
    @Test func aHelloBeforeTheRevocationRegistersNothingAfterIt() async throws {
        try await withTestGrid(workers: 0) { grid in
            let owner = try await grid.user("owner")
            let token = try await owner.createToken(kind: "worker").token
            let link = try grid.transport.dial()
            defer { link.close() }
            var inbound = link.inbound.makeAsyncIterator()
            func answer() async throws -> GridMessage? {
                while case .frame(let f)? = try await inbound.next() {
                    if case .peers = f.message { continue }
                    return f.message
                }
                return nil
            }
            try await link.outbound.write(GridFrame(id: 1, .hello(Msg.Hello(token: token, name: "stolen"))))
            guard case .helloOk(let ok)? = try await answer() else { Issue.record("the join token was not accepted before its revocation"); return }

            let browser = DashboardBrowser(baseURL: grid.baseURL)
            try await browser.login("owner")
            let workerSection = try await browser.get("/account").body.components(separatedBy: "id=\"api-tokens-heading\"")[0]
            let hashes = workerSection.matches(of: /name="hash" value="([0-9a-f]{64})"/).map { String($0.1) }
            #expect(hashes.count == 1, "\(hashes)")
            try await browser.post("/account/tokens/revoke", ["hash": try #require(hashes.first)])

            try await link.outbound.write(GridFrame(id: 2, .register(Msg.Register(resources: Resources(cpus: 2, ramGb: 4, gpus: 0), tier: .bwrap, slots: 2))))
            guard case .error(let refused)? = try await answer() else { Issue.record("REGISTER after the revocation was not refused"); return }
            #expect(refused.code == .unauthorized && refused.message.contains("revoked"), "\(refused)")
            #expect(try await owner.workers().workers.first { $0.id == ok.workerId }?.online != true, "the worker went online")
        }
    }
}
