import Foundation
import GridClient
import GridCore
import GridManager
import GridScheduler
import GridTestSupport
import Testing

/// Verification on a whole grid in this process: the manager's own loop ends a check that no worker can run.
@Suite struct InProcessVerificationTests {
    /// While a check waits in the queue the job says so, and why (its pending reason): the result is not being checked
    /// yet. (Before, it said only `unverified`, for as long as the check waited.)
    @Test func aJobWhoseCheckWaitsSaysWhy() async throws {
        try await withTestGrid(label: "checkwaits", configure: { config in
            config.verification = Verification.Policy(spotCheckRate: 0, fundSharePercent: 0, reputation: .init(probationResults: 1), seed: 1)
        }) { grid in
            let ada = try await grid.user("ada")
            let carols = try await grid.startWorker("wc", owner: try await grid.user("carol"))
            await carols.stop()
            try await grid.startWorker("wb", owner: try await grid.user("bob"))
            let submitted = try await ada.submit(InProcessScenarioTests.job("fit", "# grid: print 42\n"))
            let done = try await InProcessScenarioTests.wait(ada, submitted.job.id, for: [.completed, .failed])
            var last: API.JobStatus?
            let said = try await eventually(timeout: 30, interval: 0.1) {
                last = try await ada.job(done.id)
                return last?.verification?.checkWaiting != nil
            }
            #expect(said, "\(String(describing: last?.verification))")
            #expect(last?.verification?.state == .unverified)
            #expect(last?.verification?.label.hasPrefix("unverified (its check waits: ") == true, "\(String(describing: last?.verification?.label))")
            // The history names the check run; its submitter still cannot read it (its status, log or outputs): it is
            // the work of another owner's worker, and read by id it gave her the checker's result whatever the verdict.
            let named = last?.events?.compactMap(\.detail).first { $0.hasPrefix("unverified: a check run (job ") }
            let check = try #require(named.flatMap { JobID($0.dropFirst("unverified: a check run (job ".count).prefix { $0.isNumber }) })
            for read in [{ _ = try await ada.job(check) }, { _ = try await ada.logs(check, from: 0) }, { _ = try await ada.output(check, name: "out.txt") }] {
                do {
                    try await read()
                    Issue.record("the submitter read check run \(check)")
                } catch let failure as GridClient.Failure {
                    #expect(failure.status == 404, "\(failure)")
                }
            }
        }
    }

    /// Carol's worker joined and left, and then the manager was started again: a probation run on Bob's new worker is
    /// still checked, the check waiting for Carol's, and Bob's pay waits in escrow. Before, a restarted manager knew no
    /// checker until another owner's worker registered, so a stranger who joined just after a restart was paid for
    /// results nobody checked.
    @Test func aRestartedManagerStillChecksAProbationRun() async throws {
        try await withTestGrid(label: "checkrestart", configure: { config in
            config.verification = Verification.Policy(spotCheckRate: 0, fundSharePercent: 0, reputation: .init(probationResults: 1), seed: 1)
        }) { grid in
            let ada = try await grid.user("ada")
            let bob = try await grid.user("bob")
            let carols = try await grid.startWorker("wc", owner: try await grid.user("carol"))
            await carols.stop()
            try await grid.restartManager()
            try await grid.startWorker("wb", owner: bob)
            let submitted = try await ada.submit(InProcessScenarioTests.job("fit", "# grid: print 42\n"))
            let done = try await InProcessScenarioTests.wait(ada, submitted.job.id, for: [.completed, .failed])
            #expect(done.state == .completed, "\(done)")
            var last: API.JobStatus?
            let waits = try await eventually(timeout: 30, interval: 0.1) {
                last = try await ada.job(done.id)
                return last?.verification?.checkWaiting != nil
            }
            #expect(waits, "\(String(describing: last?.verification)); log: \(grid.root)/grid.log")
            #expect(last?.verification?.reason == "probation")
            #expect(try await bob.credits().earned == 0, "paid into escrow while the check waits")
            #expect(try await grid.ledgerOK())
        }
    }

    /// Carol's worker joined and left, so a probation run on Bob's worker is checked and the check waits for hers. She
    /// never comes back: after the wait the check ends without a result, Ada's job is inconclusive, and Bob is paid
    /// from the escrow (before, the check waited for ever and Bob's pay with it).
    @Test func aCheckNoWorkerCanRunEndsAfterTheWaitAndTheEscrowIsReleased() async throws {
        try await withTestGrid(label: "checkwait", configure: { config in
            config.verification = Verification.Policy(spotCheckRate: 0, fundSharePercent: 0, reputation: .init(probationResults: 1), seed: 1)
            config.checkWaitSeconds = 2
        }) { grid in
            let ada = try await grid.user("ada")
            let bob = try await grid.user("bob")
            let carol = try await grid.user("carol")
            let carols = try await grid.startWorker("wc", owner: carol)
            await carols.stop()
            try await grid.startWorker("wb", owner: bob)
            let submitted = try await ada.submit(InProcessScenarioTests.job("fit", "# grid: print 42\n"))
            let done = try await InProcessScenarioTests.wait(ada, submitted.job.id, for: [.completed, .failed])
            #expect(done.state == .completed, "\(done)")
            let paid = try #require(done.paid)
            #expect(paid > 0)
            var last: API.JobStatus?
            let ended = try await eventually(timeout: 30, interval: 0.1) {
                last = try await ada.job(done.id)
                return last?.verification?.state == .inconclusive
            }
            #expect(ended, "\(String(describing: last?.verification)); log: \(grid.root)/grid.log")
            #expect(last?.events?.contains { $0.detail == "verification inconclusive: no worker of another owner could run its check within 2 s" } == true)
            #expect(try await bob.credits().earned == paid, "released from escrow")
            #expect(try await ada.me().balance == 100 - paid)
            #expect(try await grid.ledgerOK())
        }
    }
}
