import Foundation
import GridClient
import GridCore
import GridTestSupport
import Testing

extension Integration {
    @Suite struct Credits {
        @Test func holdOnSubmitSettleOnCompletionAndWorkerOwnerIsPaid() async throws {
            let grid = try TestGrid(label: "credits")
            defer { grid.shutdown() }
            try await grid.startManager()
            let owner = try await grid.user("owner")
            try await grid.startWorker("w1", owner: owner)
            let alice = try await grid.user("alice")
            let script = try Scenario.script(grid, "quick.py", "print('hi')\n")
            // cpus 2, ram 3, minutes 7: hold = 5 + 4 + 3 + 7 = 19; a sub-minute run pays 5 + 4 + 3 + 1 = 13.
            let submitted = try await Scenario.submit(grid, token: alice.token!, [script, "--cpus", "2", "--ram", "3", "--minutes", "7"])
            #expect(submitted.hold == 19)
            #expect(submitted.balance == 100 - 19)
            let done = try await Scenario.waitForState(alice, submitted.job.id, [.completed, .failed])
            #expect(done.state == .completed)
            #expect(done.paid == 13)
            #expect(try await alice.me().balance == 100 - 13)
            #expect(try await owner.me().balance == 100 + 13)
            let ledger = try await alice.credits().ledger.map { ($0.reason, $0.amount) }
            #expect(ledger.contains { $0 == ("hold", -19) })
            #expect(ledger.contains { $0 == ("release", 6) })
            let earned = try await owner.credits()
            #expect(earned.earned == 13)
            let board = try await grid.cli(["leaderboard", "--json"])
            let parsed = try GridJSONTest.decode(API.Leaderboard.self, board.stdout)
            #expect(parsed.contributors.first?.username == "owner")
            #expect(parsed.contributors.first?.creditsEarned == 13)
            #expect(try await Scenario.ledgerOK(grid))
        }

        @Test func unaffordableJobIsRefusedWithBalanceAndCost() async throws {
            let grid = try TestGrid(label: "afford")
            defer { grid.shutdown() }
            try await grid.startManager()
            let alice = try await grid.user("alice")
            let script = try Scenario.script(grid, "big.py", "print('never')\n")
            // 5 + 2×16 + 64 + 10×0 + 60 = 161 > 100
            let r = try await grid.cli(["submit", script, "--cpus", "16", "--ram", "64", "--minutes", "60"], token: alice.token!)
            #expect(r.status != 0)
            #expect(r.stderr.contains("161"), "the cost is in the message: \(r.stderr)")
            #expect(r.stderr.contains("100"), "the balance is in the message: \(r.stderr)")
            #expect(try await alice.me().balance == 100)
            #expect(try await alice.jobs(mine: true).jobs.isEmpty)
            #expect(try await Scenario.ledgerOK(grid))
        }

        @Test func cancelBeforeStartRefundsInFull() async throws {
            let grid = try TestGrid(label: "refund")
            defer { grid.shutdown() }
            try await grid.startManager()
            let alice = try await grid.user("alice")
            let script = try Scenario.script(grid, "wait.py", "print('never')\n")
            let submitted = try await Scenario.submit(grid, token: alice.token!, [script])
            #expect(try await alice.me().balance == 100 - submitted.hold)
            let r = try await grid.cli(["cancel", "\(submitted.job.id)"], token: alice.token!)
            #expect(r.status == 0, "\(r.stderr)")
            let job = try await alice.job(submitted.job.id)
            #expect(job.state == .cancelled)
            #expect(job.paid == 0)
            #expect(try await alice.me().balance == 100)
            #expect(try await Scenario.ledgerOK(grid))
            let again = try await grid.cli(["cancel", "\(submitted.job.id)"], token: alice.token!)
            #expect(again.status != 0 && again.stderr.contains("already ended"))
        }

        @Test func badResourcesAndMissingScriptGetClearCLIErrors() async throws {
            let grid = try TestGrid(label: "badcli")
            defer { grid.shutdown() }
            try await grid.startManager()
            let alice = try await grid.user("alice")
            let script = try Scenario.script(grid, "ok.py", "print(1)\n")
            let negative = try await grid.cli(["submit", script, "--cpus", "-1"], token: alice.token!)
            #expect(negative.status != 0)
            #expect(negative.stderr.contains("cpus must be"), "\(negative.stderr)")
            let absurd = try await grid.cli(["submit", script, "--minutes", "999999"], token: alice.token!)
            #expect(absurd.status != 0)
            #expect(absurd.stderr.contains("minutes must be"), "\(absurd.stderr)")
            let missing = try await grid.cli(["submit", grid.root + "/nope.py"], token: alice.token!)
            #expect(missing.status != 0)
            #expect(missing.stderr.contains("cannot read the script"), "\(missing.stderr)")
            let notLoggedIn = try await grid.cli(["submit", script])
            #expect(notLoggedIn.status != 0)
            #expect(notLoggedIn.stderr.contains("not logged in"), "\(notLoggedIn.stderr)")
            let huge = grid.root + "/huge.bin"
            FileManager.default.createFile(atPath: huge, contents: Data(count: 50 << 20))
            let tooBig = try await grid.cli(["submit", script, "--input", huge], token: alice.token!)
            #expect(tooBig.status != 0)
            #expect(tooBig.stderr.contains("the limit is 48 MB"), "\(tooBig.stderr)")
            // The API refuses what the CLI would have refused too.
            var raw = alice
            raw.token = alice.token
            await #expect(throws: GridClient.Failure.self) {
                _ = try await raw.submit(
                    API.SubmitRequest(
                        spec: JobSpec(name: "x", cpus: 0), script: API.FileUpload(name: "../x.py", contentBase64: "cHJpbnQoMSk="), inputs: []))
            }
            #expect(try await alice.me().balance == 100)
        }
    }
}
