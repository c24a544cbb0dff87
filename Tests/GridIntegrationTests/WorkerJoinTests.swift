import Foundation
import GridClient
import GridCore
import GridTestSupport
import Testing

extension Integration {
    @Suite struct WorkerJoin {
        @Test func aWorkerWithABadTokenOrAnotherUsersNameStopsWithAClearMessage() async throws {
            let grid = try TestGrid(label: "join")
            defer { grid.shutdown() }
            try grid.startManager()
            let ann = try await grid.user("ann")
            let token = try await ann.createToken(kind: "worker").token

            let bad = try grid.spawn("bad-token", ["worker", "-m", grid.managerAddress, "--token", "cgw_nope", "--data-dir", grid.root + "/w1"])
            #expect(bad.waitForExit(timeout: 30) != 0)
            #expect(bad.errorLog.contains("the token is not valid"), "\(bad.errorLog.suffix(2000))")

            let impostor = try grid.spawn(
                "impostor", ["worker", "-m", grid.managerAddress, "--token", token, "-u", "bob", "--data-dir", grid.root + "/w2"])
            #expect(impostor.waitForExit(timeout: 30) != 0)
            #expect(impostor.errorLog.contains("this token belongs to ann, not bob"), "\(impostor.errorLog.suffix(2000))")

            let none = try grid.spawn("no-token", ["worker", "-m", grid.managerAddress, "--data-dir", grid.root + "/w3"])
            #expect(none.waitForExit(timeout: 30) != 0)
            #expect(none.errorLog.contains("needs a join token"))

            #expect(try await ann.workers().workers.isEmpty)
        }

        @Test func aRestartedWorkerKeepsItsIdentity() async throws {
            let grid = try TestGrid(label: "identity")
            defer { grid.shutdown() }
            try grid.startManager()
            let ann = try await grid.user("ann")
            let first = try await grid.startWorker("lab", owner: ann, dataDirectory: grid.root + "/lab")
            let id = try #require(try await ann.workers().workers.first?.id)
            first.stop()
            try await grid.startWorker("lab", owner: ann, dataDirectory: grid.root + "/lab")
            let workers = try await ann.workers().workers
            #expect(workers.map(\.id) == [id])
            #expect(workers.first?.online == true)
        }
    }
}
