import Foundation
import GridCore
import GridStore
import Hummingbird
import HummingbirdTesting
import Testing

@testable import GridManager
@testable import GridScheduler

/// The job page shows where a result stands with verification; the workers page and the leaderboard show reputation.
@Suite struct VerificationPageTests {
    /// Runs `job` on `worker`, printing and writing `output`, and settles it with probation on.
    static func run(_ db: GridDatabase, _ job: JobID, on worker: WorkerID, output: String, now: Double) async throws -> GridDatabase.Finished {
        let started = try #require(try await db.apply([Placement.Assignment(job: job, worker: worker)], now: now).first)
        try await db.appendLog(started.ref, offset: 0, data: Data("\(output)\n".utf8))
        return try #require(
            try await db.finishRun(
                started.ref, worker: worker,
                result: .init(state: .completed, exitCode: 0, runtimeMs: 1_000, peakMemoryKb: 0, cpuSeconds: 1, reason: nil),
                outputs: [StoredFile(name: "out.txt", data: Data(output.utf8))], verification: Verification.Policy(spotCheckRate: 0, seed: 1),
                now: now + 1))
    }

    @Test func theJobPageSaysUnverifiedThenVerifiedByTheOtherWorkerAndTheWorkersPageShowsReputation() async throws {
        let db = try GridDatabase.inMemory()
        try await DashboardRouteTests.app(db: db).test(.router) { client in
            let browser = Browser(client)
            try await browser.register("alice")
            let alice = try #require(try await db.user(named: "alice"))
            for (id, owner) in [("w1", "bob"), ("w3", "carol")] {
                let user = try await db.createUser(username: owner, passwordHash: "h", startingCredits: 100, now: 0)
                try await db.registerWorker(
                    .init(
                        id: id, name: "\(owner)-pc", ownerId: user.id, resources: Resources(cpus: 4, ramGb: 8), gpuNames: [], tier: .bwrap, slots: 2,
                        host: nil, port: nil, webPort: nil),
                    now: 0)
            }
            let job = try await db.submitJob(
                owner: alice.id, spec: JobSpec(name: "fit", minutes: 5), script: StoredFile(name: "main.py", data: Data("print(1)".utf8)),
                inputs: [], now: 1)
            let check = try #require(try await Self.run(db, job.id, on: "w1", output: "42", now: 10).checkQueued)
            let before = try await browser.get("/jobs/\(job.id)")
            #expect(before.body.contains(#"data-verification="unverified""#), "\(before.body.prefix(3000))")
            // Its check waits in the queue (no scheduling pass here): the page says so, and why.
            #expect(before.body.contains(">unverified (its check waits: no worker of another owner has taken it yet)</dd>"), "\(before.body.prefix(3000))")
            _ = try await Self.run(db, check, on: "w3", output: "42", now: 20)
            let after = try await browser.get("/jobs/\(job.id)")
            #expect(after.body.contains("verified by worker carol-pc"))
            // Check runs are the manager's: not among Alice's jobs.
            let mine = try await browser.get("/my-jobs")
            #expect(!mine.body.contains("/jobs/\(check)\""))
            let workers = try await browser.get("/workers")
            #expect(workers.body.contains(#"<span class="worker-verified">1</span> agreed"#))
            #expect(workers.body.contains("probation"), "4 more agreeing results to go")
            let board = try await browser.get("/leaderboard")
            #expect(board.body.contains(#"<td data-label="Verified" class="num">1</td>"#))
        }
    }

    @Test func theSubmitFormOffersVerificationAndItsPreviewShowsTheDoubledHold() async throws {
        try await DashboardRouteTests.app().test(.router) { client in
            let browser = Browser(client)
            try await browser.register("alice")
            let page = try await browser.get("/submit")
            #expect(page.body.contains(#"name="verify""#) && page.body.contains(#"name="nondeterministic""#))
            #expect(page.body.contains("less 5%, which goes to the verification fund"))
            func hold(_ query: String) async throws -> Int? {
                let body = try await browser.get("/submit/preview?cpus=1&ram_gb=1&gpus=0&minutes=5" + query).body
                return (try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any])?["hold"] as? Int
            }
            let single = CreditRules.hold(JobSpec(name: "x", cpus: 1, ramGb: 1, minutes: 5))
            #expect(try await hold("") == single)
            #expect(try await hold("&verify=1") == 2 * single)
        }
    }
}
