import Foundation
import GridClient
import GridCore
import GridStore
import GridTestSupport
import Testing

// `Placement.Assignment` has no public initializer: plans normally come from `Placement.plan`.
@testable import GridScheduler

/// Issue 15 in a real browser: the job page says "verified by worker X", "unverified" or "contradicted → rerun on Y",
/// and the workers page shows reputation and a quarantine. The states are made by the store's own verification rules in
/// the running manager's database (the same calls the manager makes when workers report); a real manager serves the
/// pages; headless Chromium reads them and takes the screenshots (`test-artifacts/dashboard/job-*.png`).
@Suite(.serialized) struct BrowserVerificationTests {
    /// Ada submits; Bob's worker forges its results, Carol's and Dave's are honest.
    struct Scene {
        let db: GridDatabase
        let ada: UserID
        static let policy = Verification.Policy(spotCheckRate: 0, fundSharePercent: 5, seed: 1)

        func submit(_ name: String) async throws -> JobID {
            try await db.submitJob(
                owner: ada, spec: JobSpec(name: name, cpus: 1, ramGb: 1, minutes: 5),
                script: StoredFile(name: "main.py", data: Data("print(42)".utf8)), inputs: [], now: Date().timeIntervalSince1970
            ).id
        }

        /// Starts `job` on `worker`, which prints and writes `output`, and settles the run as the manager does.
        @discardableResult
        func run(_ job: JobID, on worker: WorkerID, output: String, policy: Verification.Policy = Scene.policy) async throws
            -> GridDatabase.Finished
        {
            let now = Date().timeIntervalSince1970
            let started = try #require(try await db.apply([Placement.Assignment(job: job, worker: worker)], now: now).first)
            _ = try await db.appendLog(started.ref, offset: 0, data: Data("\(output)\n".utf8))
            return try #require(
                try await db.finishRun(
                    started.ref, worker: worker,
                    result: .init(state: .completed, exitCode: 0, runtimeMs: 30_000, peakMemoryKb: 0, cpuSeconds: 1, reason: nil),
                    outputs: [StoredFile(name: "out.txt", data: Data(output.utf8))], verification: policy, now: now + 1))
        }
    }

    @Test(.timeLimit(.minutes(10)))
    func theJobAndWorkersPagesShowEachVerificationStateInTheBrowser() async throws {
        let chromium = try #require(
            DashboardTools.executable(["/usr/bin/chromium", "/usr/bin/chromium-browser"]), "chromium is missing: run scripts/setup")
        let chromedriver = try #require(
            DashboardTools.executable(["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]), "chromedriver is missing: run scripts/setup")
        let grid = try TestGrid(label: "browser-verify")
        defer { grid.shutdown() }
        try await grid.startManager()
        let ada = try await grid.user("ada")
        let adaID = try await ada.me().id

        // The manager's own database file, shared with the running manager (SQLite WAL), as a second writer.
        let db = try GridDatabase.open(path: grid.root + "/manager/grid.sqlite")
        let scene = Scene(db: db, ada: adaID)
        let now = Date().timeIntervalSince1970
        for (id, owner) in [("w-bob", "bob"), ("w-carol", "carol"), ("w-dave", "dave")] {
            let user = try await db.createUser(username: owner, passwordHash: "unused", startingCredits: 100, now: now)
            try await db.registerWorker(
                .init(
                    id: id, name: "\(owner)-pc", ownerId: user.id, resources: Resources(cpus: 4, ramGb: 8), gpuNames: [], tier: .bwrap,
                    slots: 2, host: nil, port: nil, webPort: nil),
                now: now)
        }
        // The fund pays for probation checks: seed it with runs whose whole payment goes there, unchecked.
        let seeding = Verification.Policy(spotCheckRate: 0, fundSharePercent: 100, reputation: .init(probationResults: 0))
        for i in 0..<5 { try await scene.run(try await scene.submit("seed-\(i)"), on: "w-carol", output: "seed", policy: seeding) }

        // Bob's worker forges two results: each is contradicted by Carol's and Dave's runs; the second quarantines it.
        var contradicted: JobID = 0
        for i in 0..<2 {
            let job = try await scene.submit("forged-\(i)")
            let check = try #require(try await scene.run(job, on: "w-bob", output: "forged").checkQueued)
            let third = try #require(try await scene.run(check, on: "w-carol", output: "42").checkQueued)
            try await scene.run(third, on: "w-dave", output: "42")
            contradicted = job
        }
        // Dave's result checked by Carol's worker agrees: verified.
        let verified = try await scene.submit("honest")
        let check = try #require(try await scene.run(verified, on: "w-dave", output: "7").checkQueued)
        try await scene.run(check, on: "w-carol", output: "7")
        // Another of Dave's results, its check not run yet: unverified.
        let pending = try await scene.submit("pending")
        #expect(try await scene.run(pending, on: "w-dave", output: "8").checkQueued != nil)
        #expect(try await db.checkLedger().ok)

        let driverPort = try await grid.startChromedriver(chromedriver)

        let artifacts = DashboardTools.artifacts
        let expect: [String: Any] = [
            "verified": "verified by worker carol-pc", "unverified": "unverified", "contradicted": "contradicted → rerun on carol-pc",
            "workers": ["quarantined", "contradicted 2 times"],
        ]
        let script = DashboardTools.repositoryRoot.appendingPathComponent("Tests/GridDashboardTests/browser_verification.py").path
        let flow = try DashboardTools.Tool(
            DashboardTools.python, [script],
            environment: [
                "DASH_BASE": grid.baseURL, "DASH_DRIVER": "http://127.0.0.1:\(driverPort)", "DASH_ARTIFACTS": artifacts.path,
                "DASH_CHROMIUM": chromium, "DASH_USER": "ada", "DASH_PASSWORD": "correct horse battery",
                "DASH_JOBS": String(decoding: try JSONSerialization.data(withJSONObject: [
                    "verified": verified, "unverified": pending, "contradicted": contradicted,
                ]), as: UTF8.self),
                "DASH_EXPECT": String(decoding: try JSONSerialization.data(withJSONObject: expect), as: UTF8.self),
            ],
            outputPath: grid.root + "/browser-verification.log")
        let status = try await flow.wait(timeout: 300)
        try? flow.output.write(to: artifacts.appendingPathComponent("browser-verification.log"), atomically: true, encoding: .utf8)
        #expect(status == 0, "browser flow failed:\n\(flow.output.suffix(6000))\n\(grid.logs().suffix(4000))")
        for page in ["job-verified", "job-unverified", "job-contradicted", "workers-reputation"] {
            for width in ["desktop", "phone"] {
                #expect(FileManager.default.fileExists(atPath: artifacts.appendingPathComponent("\(page)-\(width).png").path), "\(page)-\(width)")
            }
        }
    }
}
