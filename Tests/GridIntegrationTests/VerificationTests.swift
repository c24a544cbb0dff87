import Foundation
import GridClient
import GridCore
import GridProtocol
import GridSandbox
import GridTestSupport
import Testing

extension Integration {
    /// Results you can trust from machines you don't (issue 15): a cheating worker is caught within its probation.
    @Suite struct Verification {
        /// A seeded job: its output file is a function of `CAMPUSGRID_SEED`, its stdout a seeded random draw, so honest
        /// runs of it agree and the test can tell the honest result from a forged one.
        static let script = """
            import os, random
            seed = int(os.environ["CAMPUSGRID_SEED"])
            assert os.environ["PYTHONHASHSEED"] == "0"
            random.seed(seed)
            print("draw", random.random())
            open("out.txt", "w").write(str(seed * 7 % 1000003))
            """

        static func request(_ name: String, verify: Bool = false, nondeterministic: Bool = false) -> API.SubmitRequest {
            API.SubmitRequest(
                spec: JobSpec(
                    name: name, cpus: 1, ramGb: 1, minutes: 2, minTier: .restricted, verify: verify ? true : nil,
                    nondeterministic: nondeterministic ? true : nil),
                script: API.FileUpload(name: "job.py", contentBase64: Data(script.utf8).base64EncodedString()), inputs: [])
        }

        /// The output an honest run of job `id` writes: its seed is keyed with the manager's key.
        static func honest(_ id: JobID, _ grid: TestGrid) throws -> String {
            let key = try PeerTrust.Signer(rawRepresentation: try Data(contentsOf: URL(fileURLWithPath: grid.root + "/manager/manager-key")))
            return String(UInt64(key.jobSeed(for: id)) * 7 % 1_000_003)
        }

        @Test(.timeLimit(.minutes(6)))
        func aCheatingWorkerIsCaughtWithinItsProbationItsJobsRerunItsEscrowForfeitedAndItIsQuarantined() async throws {
            let grid = try TestGrid(label: "verify-cheat")
            defer { grid.shutdown() }
            // The cheater sends no heartbeat until its results are in (two real workers start meanwhile): a lease long
            // enough on a loaded machine that its runs are not taken back first.
            try await grid.startManager(
                leaseSeconds: 60, extra: ["--spot-check-rate", "0.05", "--probation-results", "5", "--fund-share", "5"])
            let alice = try await grid.user("alice")
            let bob = try await grid.user("bob")
            let carol = try await grid.user("carol")
            let dave = try await grid.user("dave")

            // Bob's worker cheats: it takes jobs and returns a forged output, with a plausible runtime. It offers peer
            // services too (a key and a port, where nothing listens): until it is caught, it is a peer.
            let cheater = try FakeWorker(
                port: grid.gridPort, token: try await bob.createToken(kind: "worker").token, name: "cheater", peerKey: PeerTrust.Signer().publicKey)
            #expect(cheater.ask(FakeWorker.register(cpus: "2", slots: "2", extra: #","port":9"#))?["type"] as? String == "REGISTERED")
            cheater.send(#""type":"CREDENTIAL""#)
            #expect(cheater.c.next("CREDENTIAL") != nil, "the cheater got no peer credential before it was caught, so the test proves nothing")
            var ids: [JobID] = []
            for i in 0..<2 { ids.append(try await alice.submit(Self.request("seeded-\(i)")).job.id) }
            // Both assignments first: `ask` skips every frame but its answer.
            var assigns: [[String: Any]] = []
            for _ in ids { assigns.append(try #require(cheater.c.next("JOB_ASSIGN", timeout: 30), "\(grid.logs().suffix(4000))")) }
            // While the cheater "runs" them, honest workers of two other owners join (a probation check is made only
            // while a worker that could run it, of another owner than the cheater's and the submitter's, is known).
            let honest = [try await grid.startWorker("honest-carol", owner: carol), try await grid.startWorker("honest-dave", owner: dave)]
            for assign in assigns {
                let job = try #require(assign["job"] as? [String: Any])
                let id = JobID(job["job_id"] as? Int ?? 0)
                let spec = try #require(assign["spec"] as? [String: Any])
                let key = try PeerTrust.Signer(rawRepresentation: try Data(contentsOf: URL(fileURLWithPath: grid.root + "/manager/manager-key")))
                #expect((spec["seed"] as? Int).map(UInt32.init) == key.jobSeed(for: id), "every run gets the job's fixed seed")
                let ref = FakeWorker.ref(job)
                cheater.send(#""type":"JOB_STARTED","job":\#(ref)"#)
                let log = Array("draw 0.5\n".utf8)
                cheater.send(#""type":"JOB_LOG","job":\#(ref),"offset":0"#, payload: log)
                let forged = Array("forged".utf8)
                let ack = cheater.ask(
                    #""type":"JOB_DONE","job":\#(ref),"outcome":"completed","exit_code":0,"runtime_ms":900,"peak_memory_kb":1,"cpu_seconds":0.9,"log_bytes":\#(log.count),"files":[{"name":"out.txt","size":\#(forged.count)}]"#,
                    payload: forged)
                #expect(ack?["type"] as? String == "JOB_DONE_ACK", "\(String(describing: ack))")
                // The submitter has the first result at once (settled before the acknowledgement), marked unverified
                // while its check runs (two runs in a row on other machines: far longer than these two requests).
                let status = try await alice.job(id)
                #expect(status.state == .completed)
                #expect(status.verification?.state == .unverified)
                #expect(status.verification?.reason == "probation")
                #expect(String(decoding: try await alice.output(id, name: "out.txt"), as: UTF8.self) == "forged")
            }
            #expect(try await bob.me().balance == 100, "a worker on probation is paid into escrow, not to its owner")

            // The check runs go to the honest workers, never to Bob's; the disagreement goes to a third run on the
            // third owner's worker, which decides by majority.
            for id in ids {
                var last: API.JobStatus?
                let decided = try await eventually(timeout: 150, interval: 0.25) {
                    cheater.send(#""type":"LOAD_UPDATE","load":0,"running":[]"#)
                    last = try await alice.job(id)
                    return last?.verification?.state == .contradicted
                }
                #expect(decided, "job \(id): \(String(describing: last?.verification))\n\(grid.logs().suffix(3000))")
                let label = last?.verification?.label ?? ""
                #expect(label.hasPrefix("contradicted → rerun on honest-"), "\(label)")
                #expect(last?.state == .completed)
                // The submitter's final result is the honest one.
                #expect(String(decoding: try await alice.output(id, name: "out.txt"), as: UTF8.self) == (try Self.honest(id, grid)))
            }

            // Bob's escrow went to the fund; he earned nothing. The ledger still adds up, with a fund.
            #expect(try await bob.me().balance == 100)
            let ledger = try await grid.admin().ledgerCheck()
            #expect(ledger["ok"] == .bool(true), "\(ledger)")
            if case .number(let fund)? = ledger["fund"] { #expect(fund > 0) } else { Issue.record("no fund in \(ledger)") }
            #expect(ledger["escrow"] == .number(0), "every check decided: nothing left in escrow")

            // Two contradictions in its last 20 checks: quarantined, and the workers page says so.
            let workers = try await alice.workers().workers
            let bad = try #require(workers.first { $0.id == cheater.workerId })
            #expect(bad.reputation?.quarantined == true)
            #expect(bad.reputation?.contradicted == 2)
            #expect(bad.reputation?.quarantineReason?.contains("contradicted 2 times") == true)
            for name in ["honest-carol", "honest-dave"] {
                #expect(workers.first { $0.name == name }?.reputation?.verified == 2, "\(name) agreed on both jobs")
            }

            // Nor is it a peer any more: the others are told it left (it holds and serves nobody's data, and runs no
            // forwarded task), and it gets no new credential.
            // They are told to refuse the credential it still holds, too, until it lapses.
            var peersSeen: [String] = []
            var barred: [String] = []
            let leftThePeers = await eventually(timeout: 30, interval: 0) {
                guard let message = cheater.c.next("PEERS", timeout: 1), let peers = message["peers"] as? [[String: Any]] else { return false }
                peersSeen = peers.compactMap { $0["worker_id"] as? String }
                barred = (message["barred"] as? [[String: Any]] ?? []).compactMap { $0["worker_id"] as? String }
                return !peersSeen.contains(cheater.workerId)
            }
            #expect(leftThePeers, "the PEERS the manager sent still list the quarantined worker: \(peersSeen)")
            #expect(barred.contains(cheater.workerId), "the PEERS the manager sent do not bar the quarantined worker: \(barred)")
            #expect(FakeWorker.code(cheater.ask(#""type":"CREDENTIAL""#)) == "forbidden", "a quarantined worker got a peer credential")

            // A quarantined worker gets no jobs from others: with only it online, Alice's next job waits, saying why.
            for p in honest {
                p.signal(SIGKILL)
                _ = await p.waitForExit(timeout: 10)
            }
            let waiting = try await alice.submit(Self.request("after-quarantine")).job.id
            var reason: String?
            let saidWhy = try await eventually(timeout: 60, interval: 0.25) {
                cheater.send(#""type":"LOAD_UPDATE","load":0,"running":[]"#)
                reason = try await alice.job(waiting).pendingReason
                return reason?.contains("quarantined") == true
            }
            #expect(saidWhy, "\(String(describing: reason))")
            #expect(try await alice.job(waiting).state == .pending)
            // An admin lifts the quarantine: the worker takes other users' jobs again.
            let lifted = try await grid.admin().liftQuarantine(worker: cheater.workerId)
            #expect(lifted.reputation?.quarantined == false)
            let assign = try #require(cheater.c.next("JOB_ASSIGN", timeout: 30), "no job after the quarantine was lifted")
            #expect((assign["job"] as? [String: Any])?["job_id"] as? Int == Int(waiting))
            cheater.send(#""type":"CREDENTIAL""#)
            #expect(cheater.c.next("CREDENTIAL") != nil, "no peer credential after the quarantine was lifted")
            #expect(try await Scenario.ledgerOK(grid))
            print("cheater caught: \(bad.reputation.map { "\($0.contradicted) contradicted, quarantined: \($0.quarantineReason ?? "-")" } ?? "-"); fund \(ledger["fund"].map { "\($0)" } ?? "-")")
        }

        @Test(.timeLimit(.minutes(5)))
        func aVerifiedSeededJobAgreesAndANondeterministicOneIsNeverChecked() async throws {
            let grid = try TestGrid(label: "verify-honest")
            defer { grid.shutdown() }
            // Every trusted result spot-checked (rate 1) and no probation: only the job's own flags decide.
            try await grid.startManager(leaseSeconds: 10, extra: ["--spot-check-rate", "1", "--probation-results", "0"])
            let alice = try await grid.user("alice")
            try await grid.startWorker("carol-pc", owner: try await grid.user("carol"))
            try await grid.startWorker("dave-pc", owner: try await grid.user("dave"))
            let path = try Scenario.script(grid, "seeded.py", Self.script)

            // `submit --verify` through the CLI: the doubled hold is shown; the result is verified by the other worker.
            let verified = try await Scenario.submit(grid, token: try #require(alice.token), ["--verify", "--minutes", "2", path])
            let runCost = CreditRules.runCost(JobSpec(name: "x", cpus: 1, ramGb: 1, minutes: 2))
            #expect(verified.hold == 2 * runCost)
            var last: API.JobStatus?
            let agreed = try await eventually(timeout: 120, interval: 0.25) {
                last = try await alice.job(verified.job.id)
                return last?.verification?.state == .verified
            }
            #expect(agreed, "\(String(describing: last?.verification))\n\(grid.logs().suffix(3000))")
            #expect(last?.verification?.reason == "requested")
            #expect(last?.verification?.label.hasPrefix("verified by worker ") == true)
            #expect(String(decoding: try await alice.output(verified.job.id, name: "out.txt"), as: UTF8.self) == (try Self.honest(verified.job.id, grid)))
            let status = try await grid.cli(["status", verified.job.id.description], token: alice.token)
            #expect(status.stdout.contains("result:     verified by worker"), "\(status.stdout)")

            // `--nondeterministic`: never checked, even at a spot-check rate of 1.
            let free = try await Scenario.submit(grid, token: try #require(alice.token), ["--nondeterministic", "--minutes", "2", path])
            let done = try await Scenario.waitForState(alice, free.job.id, [.completed])
            #expect(done.verification == nil)
            #expect(done.spec.nondeterministic == true)
            #expect(try await Scenario.ledgerOK(grid))
        }
    }
}

extension Integration.Verification {
    @Test(.timeLimit(.minutes(4)))
    func aCheckInProgressSurvivesAManagerRestartAndNoCreditIsCreatedOrLost() async throws {
        let grid = try TestGrid(label: "verify-restart")
        defer { grid.shutdown() }
        let flags = ["--probation-results", "5", "--fund-share", "5"]
        let first = try await grid.startManager(leaseSeconds: 10, extra: flags)
        let (gridPort, httpPort) = (grid.gridPort, grid.httpPort)
        let alice = try await grid.user("alice")
        let bob = try await grid.user("bob")
        let carol = try await grid.user("carol")
        let carolToken = try await carol.createToken(kind: "worker").token
        let a = try FakeWorker(port: gridPort, token: try await bob.createToken(kind: "worker").token, name: "bob-pc")
        #expect(a.ask(FakeWorker.register(cpus: "2", slots: "2"))?["type"] as? String == "REGISTERED")
        let submitted = try await alice.submit(Self.request("checked", verify: true))
        let id = submitted.job.id
        let ref = FakeWorker.ref(try #require(a.c.next("JOB_ASSIGN")?["job"] as? [String: Any]))
        let b = try FakeWorker(port: gridPort, token: carolToken, name: "carol-pc")
        #expect(b.ask(FakeWorker.register(cpus: "2", slots: "2"))?["type"] as? String == "REGISTERED")

        // Both runs say the same thing.
        let log = Array("same\n".utf8)
        let out = Array("same".utf8)
        func report(_ w: FakeWorker, _ ref: String) -> [String: Any]? {
            w.send(#""type":"JOB_LOG","job":\#(ref),"offset":0"#, payload: log)
            return w.ask(
                #""type":"JOB_DONE","job":\#(ref),"outcome":"completed","exit_code":0,"runtime_ms":500,"peak_memory_kb":1,"cpu_seconds":0.5,"log_bytes":\#(log.count),"files":[{"name":"out.txt","size":\#(out.count)}]"#,
                payload: out)
        }
        a.send(#""type":"JOB_STARTED","job":\#(ref)"#)
        #expect(report(a, ref)?["type"] as? String == "JOB_DONE_ACK")
        #expect(try await alice.job(id).verification?.state == .unverified)
        let checkRef = FakeWorker.ref(try #require(b.c.next("JOB_ASSIGN")?["job"] as? [String: Any], "the check run went to Carol's worker"))
        b.send(#""type":"JOB_STARTED","job":\#(checkRef)"#)
        #expect(try await Scenario.ledgerOK(grid))

        // The manager dies in the middle of the check and comes back on the same data.
        first.signal(SIGKILL)
        _ = await first.waitForExit(timeout: 10)
        try await grid.startManager(leaseSeconds: 10, gridPort: gridPort, httpPort: httpPort, extra: flags)
        #expect(try await alice.job(id).verification?.state == .unverified)
        #expect(try await Scenario.ledgerOK(grid))
        let again = try FakeWorker(port: gridPort, token: carolToken, name: "carol-pc", workerId: b.workerId)
        #expect(again.ask(FakeWorker.register(cpus: "2", slots: "2", running: "[\(checkRef)]"))?["type"] as? String == "REGISTERED")
        #expect(report(again, checkRef)?["type"] as? String == "JOB_DONE_ACK")

        let verified = try await alice.job(id)
        #expect(verified.verification?.state == .verified)
        #expect(verified.verification?.label == "verified by worker carol-pc")
        // Alice paid both runs (she asked); each owner got their pay less the fund's share; nothing is left in escrow.
        let ledger = try await grid.admin().ledgerCheck()
        #expect(ledger["ok"] == .bool(true), "\(ledger)")
        #expect(ledger["escrow"] == .number(0))
        guard case .number(let fund)? = ledger["fund"] else { throw TestGridError("no fund in \(ledger)") }
        let (aliceNow, bobNow, carolNow) = (try await alice.me().balance, try await bob.me().balance, try await carol.me().balance)
        #expect(bobNow > 100 && carolNow > 100)
        #expect(fund >= 2, "the fund's share of two payments")
        #expect(aliceNow + bobNow + carolNow + Int(fund) == 300, "no credit created or lost")
    }
}

extension Integration.Verification {
    /// `--verify --save-outputs`: only the job's own run saves its outputs in the grid. Its check run is sent the spec
    /// without `save_outputs_as` and no write ticket (a hostile checker's forged outputs would otherwise replace the
    /// first run's in the grid before anything was compared). What the worker says it saved goes in the job's history,
    /// not its log, so the logs of the two runs still agree; names that are not among the run's outputs are ignored.
    @Test(.timeLimit(.minutes(4)))
    func aCheckRunSavesNoOutputsInTheGridAndTheSavedNoteStaysOutOfTheLog() async throws {
        let grid = try TestGrid(label: "verify-saved")
        defer { grid.shutdown() }
        try await grid.startManager(leaseSeconds: 10)
        let alice = try await grid.user("alice")
        let bob = try await grid.user("bob")
        let carol = try await grid.user("carol")
        var request = Self.request("saves", verify: true)
        request.spec.saveOutputsAs = "results/"
        let id = try await alice.submit(request).job.id
        let a = try FakeWorker(port: grid.gridPort, token: try await bob.createToken(kind: "worker").token, name: "bob-pc")
        #expect(a.ask(FakeWorker.register(cpus: "2", slots: "2"))?["type"] as? String == "REGISTERED")
        let assign = try #require(a.c.next("JOB_ASSIGN"), "\(grid.logs().suffix(3000))")
        let ticket = try #require(assign["write_ticket"] as? [String: Any], "the job's own run gets a write ticket: \(assign)")
        #expect(ticket["prefix"] as? String == "results/" && ticket["user"] as? String == "alice")
        #expect((assign["spec"] as? [String: Any])?["save_outputs_as"] as? String == "results/")
        let ref = FakeWorker.ref(try #require(assign["job"] as? [String: Any]))

        let log = Array("same\n".utf8)
        let (out, aux) = (Array("same".utf8), Array("aux".utf8))
        func report(_ w: FakeWorker, _ ref: String, saved: String) -> [String: Any]? {
            w.send(#""type":"JOB_STARTED","job":\#(ref)"#)
            w.send(#""type":"JOB_LOG","job":\#(ref),"offset":0"#, payload: log)
            return w.ask(
                #""type":"JOB_DONE","job":\#(ref),"outcome":"completed","exit_code":0,"runtime_ms":500,"peak_memory_kb":1,"cpu_seconds":0.5,"log_bytes":\#(log.count),"files":[{"name":"out.txt","size":\#(out.count)},{"name":"aux.txt","size":\#(aux.count)}]\#(saved)"#,
                payload: out + aux)
        }
        // The first run says it saved one output, and names a file it never had.
        let claimed = #","saved":[{"name":"out.txt"},{"name":"../../etc/forged.txt","error":"never\nmind"}]"#
        #expect(report(a, ref, saved: claimed)?["type"] as? String == "JOB_DONE_ACK")

        let b = try FakeWorker(port: grid.gridPort, token: try await carol.createToken(kind: "worker").token, name: "carol-pc")
        #expect(b.ask(FakeWorker.register(cpus: "2", slots: "2"))?["type"] as? String == "REGISTERED")
        let check = try #require(b.c.next("JOB_ASSIGN"), "the check run went to Carol's worker")
        #expect(check["write_ticket"] == nil, "a check run got a write ticket: \(check)")
        let checkSpec = try #require(check["spec"] as? [String: Any])
        #expect(checkSpec["save_outputs_as"] == nil, "a check run was told to save its outputs: \(checkSpec)")
        #expect(checkSpec["seed"] as? Int == (assign["spec"] as? [String: Any])?["seed"] as? Int, "the check run has the job's seed")
        #expect(report(b, FakeWorker.ref(try #require(check["job"] as? [String: Any])), saved: "")?["type"] as? String == "JOB_DONE_ACK")

        let done = try await alice.job(id)
        #expect(done.verification?.state == .verified, "the runs' logs differ: \(String(describing: done.verification))")
        let history = (done.events ?? []).compactMap(\.detail)
        #expect(history.contains("outputs saved in the grid as results/NAME: out.txt"), "\(history)")
        #expect(!history.joined().contains("forged"), "\(history)")
        let logs = try await alice.logs(id, from: 0)
        #expect(logs.text == "same\n", "\(logs)")
        #expect(try await Scenario.ledgerOK(grid))
    }
}
