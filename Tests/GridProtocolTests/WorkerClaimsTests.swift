import GridCore
import GridProtocol
import Testing

private let job = JobRef(jobId: 7, attempt: 1)
private let sane = Msg.Register(resources: Resources(cpus: 4, ramGb: 8), tier: .bwrap, slots: 2, port: 9000)

private func done(
    runtime: Int64 = 1000, peak: Int64 = 10, cpu: Double = 0.5, logBytes: Int64? = 12, files: [FileEntry] = [], saved: [Msg.SavedOutput]? = nil
) -> GridMessage {
    .jobDone(
        Msg.JobDone(
            job: job, outcome: .completed, exitCode: 0, runtimeMs: runtime, peakMemoryKb: peak, cpuSeconds: cpu, reason: nil, files: files,
            logBytes: logBytes, saved: saved))
}

@Suite("WorkerClaims")
struct WorkerClaimsTests {
    /// A report the manager would refuse is sent as a failed run, naming the problem, with no files: it was never
    /// acknowledged, and the worker kept it and its outputs for good, sending it again on each reconnect. A sane
    /// report goes as it is.
    @Test func aReportOutOfRangeIsFittedAsAFailedRunWithNoFiles() {
        guard case .jobDone(let fine) = done(files: [FileEntry(name: "a.txt", size: 3)], saved: [Msg.SavedOutput(name: "a.txt")]) else { return }
        #expect(WorkerClaims.fitted(fine) == fine)
        let many = (0...WorkerClaims.files.upperBound).map { FileEntry(name: "f\($0)", size: 1) }
        for case .jobDone(let bad) in [
            done(files: many), done(runtime: -1), done(peak: .max), done(cpu: .nan), done(logBytes: .min),
            done(files: [FileEntry(name: "a", size: 1)], saved: [Msg.SavedOutput(name: String(repeating: "x", count: 5_000))]),
        ] {
            let fitted = WorkerClaims.fitted(bad)
            #expect(WorkerClaims.problem(.jobDone(fitted)) == nil, "\(fitted)")
            #expect(fitted.outcome == .failed && fitted.files.isEmpty && fitted.saved == nil && fitted.job == bad.job)
            #expect(fitted.reason?.hasPrefix("the worker's report was out of the manager's ranges") == true, "\(fitted.reason ?? "")")
        }
    }

    @Test func saneMessagesPass() {
        #expect(WorkerClaims.problem(.register(sane)) == nil)
        #expect(WorkerClaims.problem(.loadUpdate(Msg.LoadUpdate(load: 0.5, running: [job], tasks: 3))) == nil)
        #expect(WorkerClaims.problem(.jobLog(Msg.JobLog(job: job, offset: 0))) == nil)
        #expect(WorkerClaims.problem(done()) == nil)
        #expect(WorkerClaims.problem(done(logBytes: nil)) == nil)
    }

    @Test func cachedEnvironmentsAndThePythonVersionAreBounded() {
        var r = sane
        r.envs = [String(repeating: "a", count: 64)]
        r.python = "3.11.7"
        #expect(WorkerClaims.problem(.register(r)) == nil)
        r.envs = [String(repeating: "a", count: 129)]
        #expect(WorkerClaims.problem(.register(r))?.message.contains("envs (length)") == true)
        r.envs = [""]
        #expect(WorkerClaims.problem(.register(r)) != nil)
        r.envs = nil
        r.python = String(repeating: "3", count: 33)
        #expect(WorkerClaims.problem(.register(r))?.message.contains("python (length)") == true)
        let tooMany = Array(repeating: "d", count: WorkerClaims.envs.upperBound + 1)
        #expect(WorkerClaims.problem(.loadUpdate(Msg.LoadUpdate(load: 0, running: [], envs: tooMany)))?.message.contains("envs (count)") == true)
    }

    @Test func aSandboxReportIsBoundedAndMustMatchTheTier() {
        var r = sane
        r.sandbox = SandboxReport(tier: .bwrap, label: "bwrap, rootless, rlimits", skipped: ["oci: no engine"], acceptsOthers: true)
        #expect(WorkerClaims.problem(.register(r)) == nil)
        r.sandbox?.tier = .oci
        #expect(WorkerClaims.problem(.register(r))?.message.contains("sandbox.tier") == true)
        r.sandbox?.tier = .bwrap
        r.sandbox?.skipped = Array(repeating: "x", count: 17)
        #expect(WorkerClaims.problem(.register(r))?.message.contains("sandbox.skipped") == true)
        r.sandbox?.skipped = [String(repeating: "x", count: 1_001)]
        #expect(WorkerClaims.problem(.register(r)) != nil)
    }

    @Test func registerFiguresAtTheirBoundariesAreRefusedNamingTheField() {
        for cpus in [0, -1, Int.max, Int.min, 4097] {
            var r = sane
            r.resources.cpus = cpus
            let problem = WorkerClaims.problem(.register(r))
            #expect(problem?.code == .badRequest, "cpus \(cpus)")
            #expect(problem?.message.contains("resources.cpus = \(cpus)") == true)
        }
        for slots in [0, -1, Int.max] {
            var r = sane
            r.slots = slots
            #expect(WorkerClaims.problem(.register(r)) != nil, "slots \(slots)")
        }
        var r = sane
        r.resources.ramGb = -1
        #expect(WorkerClaims.problem(.register(r)) != nil)
        r = sane
        r.resources.gpus = Int.max
        #expect(WorkerClaims.problem(.register(r)) != nil)
        r = sane
        r.port = 65_536
        #expect(WorkerClaims.problem(.register(r)) != nil)
        r = sane
        r.webPort = -1
        #expect(WorkerClaims.problem(.register(r)) != nil)
        r = sane
        r.running = [JobRef(jobId: Int64.min, attempt: -1)]
        #expect(WorkerClaims.problem(.register(r)) != nil)
        r = sane
        r.finished = [JobRef(jobId: 1, attempt: 0)]
        #expect(WorkerClaims.problem(.register(r)) != nil)
        r = sane
        r.host = String(repeating: "h", count: 300)
        #expect(WorkerClaims.problem(.register(r)) != nil)
    }

    @Test func loadThatIsNotANumberOrOutOfRangeIsRefused() {
        for load: Double in [-1, .nan, .infinity, -.infinity, 1e300, -0.0001] {
            #expect(WorkerClaims.problem(.loadUpdate(Msg.LoadUpdate(load: load, running: []))) != nil, "load \(load)")
        }
        #expect(WorkerClaims.problem(.loadUpdate(Msg.LoadUpdate(load: 0, running: [], tasks: Int.max))) != nil)
        #expect(WorkerClaims.problem(.loadUpdate(Msg.LoadUpdate(load: 0, running: [], tasks: -1))) != nil)
        let many = (1...10_001).map { JobRef(jobId: Int64($0), attempt: 1) }
        #expect(WorkerClaims.problem(.loadUpdate(Msg.LoadUpdate(load: 0, running: many))) != nil)
    }

    @Test func logOffsetsAtTheirBoundariesAreRefused() {
        for offset: Int64 in [Int64.min, -1, Int64.max, (1 << 30) + 1] {
            #expect(WorkerClaims.problem(.jobLog(Msg.JobLog(job: job, offset: offset))) != nil, "offset \(offset)")
        }
        #expect(WorkerClaims.problem(.jobLog(Msg.JobLog(job: job, offset: 1 << 30))) == nil)
    }

    @Test func jobDoneFiguresAtTheirBoundariesAreRefused() {
        for runtime: Int64 in [Int64.min, -1, Int64.max] { #expect(WorkerClaims.problem(done(runtime: runtime)) != nil, "runtime \(runtime)") }
        for peak: Int64 in [Int64.min, -1, Int64.max] { #expect(WorkerClaims.problem(done(peak: peak)) != nil, "peak \(peak)") }
        for cpu: Double in [-1, .nan, .infinity, 1e300] { #expect(WorkerClaims.problem(done(cpu: cpu)) != nil, "cpu \(cpu)") }
        for bytes: Int64 in [Int64.min, -1, Int64.max] { #expect(WorkerClaims.problem(done(logBytes: bytes)) != nil, "log bytes \(bytes)") }
        #expect(WorkerClaims.problem(done(files: [FileEntry(name: "a", size: -1)])) != nil)
        #expect(WorkerClaims.problem(done(files: [FileEntry(name: "a", size: Int.max)])) != nil)
    }

    /// `saved`: no more entries than outputs, and no reason longer than a run's own.
    @Test func savedOutputsBeyondTheRunsOutputsOrWithOverlongReasonsAreRefused() {
        let one = [FileEntry(name: "a", size: 1)]
        #expect(WorkerClaims.problem(done(files: one, saved: [.init(name: "a")])) == nil)
        #expect(WorkerClaims.problem(done(files: one, saved: [.init(name: "a"), .init(name: "b")])) != nil)
        #expect(WorkerClaims.problem(done(files: [], saved: [.init(name: "a")])) != nil)
        #expect(WorkerClaims.problem(done(files: one, saved: [.init(name: "a", error: String(repeating: "x", count: 10_001))])) != nil)
        #expect(WorkerClaims.problem(done(files: one, saved: [.init(name: String(repeating: "x", count: 1_025))])) != nil)
    }

    @Test func theSessionRefusesAnOutOfRangeClaimKeepsTheConnectionAndTakesAGoodOneAfter() {
        let who = WorkerSession.Identity(workerId: "w-1", name: "pc", ownerId: 1, ownerName: "ada")
        var m = WorkerSession.StateMachine(heartbeatSeconds: 1)
        _ = m.received(.hello(Msg.Hello(token: "t")), id: 1)
        _ = m.authenticated(who, id: 1)
        var bad = sane
        bad.resources.cpus = Int.max
        guard case .refuse(let error, id: 2) = m.received(.register(bad), id: 2) else {
            Issue.record("an out-of-range REGISTER must be refused")
            return
        }
        #expect(error.code == .badRequest)
        #expect(m.state == .awaitingRegister(who), "still waiting for a good REGISTER")
        #expect(m.received(.register(sane), id: 3) == .register(who, sane, id: 3))
        guard case .refuse = m.received(done(runtime: Int64.max), id: 4) else {
            Issue.record("an out-of-range JOB_DONE must be refused")
            return
        }
        #expect(m.state == .active(who))
        #expect(m.received(done(), id: 5) == .deliver(who, done(), id: 5))
    }
}
