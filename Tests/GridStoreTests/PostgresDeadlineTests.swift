import Foundation
import GridCore
import GridTestSupport
import Synchronization
import Testing

@testable import GridStore

/// A PostgreSQL statement is never waited for without a bound (`StoreDeadline`): one that outlasts it fails with a
/// clear error, its connection is closed (the server rolls its transaction back), and the store goes on working. This
/// is what keeps a leader's lease loop from hanging on a connection that went quiet, so that it steps down in time.
@Suite("PostgreSQL statement bounds")
struct PostgresDeadlineTests {
    /// The server's statement_timeout (57014) or, for a server gone quiet, the client's own bound.
    static func isTimeout(_ error: any Error) -> Bool {
        "\(error)".contains("57014") || "\(error)".contains("did not answer within")
    }

    @Test func boundsBecomeWholePositiveMilliseconds() {
        #expect(StoreDeadline.milliseconds(3) == 3000)
        #expect(StoreDeadline.milliseconds(0.0004) == 1)
        for nonsense in [0.0, -1.0, -Double.infinity, Double.nan, -Double.greatestFiniteMagnitude] {
            #expect(StoreDeadline.milliseconds(nonsense) == 1, "\(nonsense)")
        }
        #expect(StoreDeadline.milliseconds(.infinity) == 3_600_000)
        #expect(StoreDeadline.milliseconds(.greatestFiniteMagnitude) == 3_600_000)
    }

    @Test func aStatementPastItsBoundIsEndedByTheServerAndTheStoreGoesOn() async throws {
        let db = try await StoreBackend.postgres.open()
        let ada = try await db.createUser(username: "ada", passwordHash: "h", startingCredits: 100, now: 0)
        let started = ContinuousClock.now
        do {
            try await StoreDeadline.$seconds.withValue(2) {
                _ = try await db.write { session in
                    try session.execute(sql: "UPDATE users SET created_at = 1 WHERE id = ?", arguments: [ada.id])
                    return try session.execute(sql: "SELECT pg_sleep(30)", arguments: [])
                }
            }
            Issue.record("a 30 s statement returned inside a 2 s bound")
        } catch {
            #expect(Self.isTimeout(error), "\(error)")
        }
        #expect(ContinuousClock.now - started < .seconds(25), "the bound, not the statement, ended the wait")
        // The server stopped the statement too: the write lock it held is free long before the 30 s sleep would end.
        // The half-done transaction was rolled back, and the next call gets a working connection.
        #expect(try await db.user(id: ada.id)?.createdAt == 0)
        _ = try await db.createUser(username: "bob", passwordHash: "h", startingCredits: 100, now: 1)
        #expect(ContinuousClock.now - started < .seconds(25), "the next write did not wait for the abandoned statement")
        #expect(try await db.checkLedger().ok)
    }

    @Test(.timeLimit(.minutes(1))) func aServerThatGoesQuietIsLeftByTheClientsOwnBound() async throws {
        // The backend serving this transaction is stopped (SIGSTOP) mid-transaction: its statement_timeout cannot fire,
        // so only the client's backstop (the bound plus a second) ends the wait, closing the connection. The backend
        // is this test's own (it serves only this test's connection to its own database) and is woken afterwards.
        let db = try await StoreBackend.postgres.open()
        let stopped = Mutex<pid_t>(0)
        defer {
            let pid = stopped.withLock { $0 }
            if pid > 0 { kill(pid, SIGCONT) }
        }
        let started = ContinuousClock.now
        do {
            try await StoreDeadline.$seconds.withValue(1) {
                _ = try await db.read { session in
                    guard let row = try session.fetchOne(sql: "SELECT pg_backend_pid() AS pid", arguments: []) else { return 0 }
                    let pid: Int64 = row["pid"]
                    // Stopped only once it waits for this client's next message (in epoll_wait, bounded): stopped while
                    // it still finished the last statement, it may hold a lock every other backend needs, and the
                    // test's own next call hung until the time limit (seen once beside a CPU hog).
                    let waiting = Date().addingTimeInterval(10)
                    while Date() < waiting,
                        !((try? String(contentsOfFile: "/proc/\(pid)/wchan", encoding: .utf8)) ?? "").contains("epoll")
                    {
                        usleep(1_000)
                    }
                    stopped.withLock { $0 = pid_t(pid) }
                    kill(pid_t(pid), SIGSTOP)
                    return try session.execute(sql: "SELECT 1", arguments: [])
                }
            }
            Issue.record("a stopped server answered")
        } catch {
            #expect("\(error)".contains("did not answer within"), "\(error)")
        }
        #expect(ContinuousClock.now - started < .seconds(30))
        // The next call gets another connection and works.
        _ = try await db.createUser(username: "ada", passwordHash: "h", startingCredits: 100, now: 0)
        #expect(try await db.checkLedger().ok)
    }

    @Test(arguments: [0.0, -1.0, -Double.infinity, Double.nan])
    func aNonsenseBoundStillWaitsOnlyBriefly(_ bound: Double) async throws {
        // A bound of 0, below 0 or NaN is taken as the shortest wait, never as "for ever" and never a trap.
        let db = try await StoreBackend.postgres.open()
        do {
            try await StoreDeadline.$seconds.withValue(bound) {
                _ = try await db.read { session in try session.execute(sql: "SELECT pg_sleep(30)", arguments: []) }
            }
            Issue.record("a 30 s statement returned inside a bound of \(bound)")
        } catch {
            #expect(Self.isTimeout(error), "\(error)")
        }
    }

    /// The leadership loop's lease calls run on a thread of their own (`StoreLane.lease`): while every thread of the
    /// pool is held by slow statements (a loaded server, a term's own work), a lease read still answers at once, where
    /// a read on the pool waits its turn behind them. Without the lane, a deposed leader could learn it only after them.
    @Test(.timeLimit(.minutes(2))) func theLeaseIsReadOnAThreadOfItsOwnWhileThePoolIsBusy() async throws {
        let db = try await StoreBackend.postgres.open()
        let finished = FinishedCount()
        try await withThrowingTaskGroup(of: Void.self) { group in
            // Twice as many 5 s statements as the pool has threads: it stays busy for about 10 s.
            for _ in 0..<(2 * PostgresBackend.poolSize) {
                group.addTask {
                    _ = try await db.read { session in try session.execute(sql: "SELECT pg_sleep(5)", arguments: []) }
                    finished.n.withLock { $0 += 1 }
                }
            }
            // Wait (bounded) until every thread of the pool is in its statement, asking on the lease's own thread.
            let busy = try await eventually(timeout: 30, interval: 0.05) {
                let n = try await StoreLane.$lease.withValue(true) {
                    try await db.read { session -> Int64 in
                        let row = try session.fetchOne(
                            sql: "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND state = 'active' "
                                + "AND query LIKE '%pg_sleep(5)%' AND pid <> pg_backend_pid()", arguments: [])
                        return row?["n"] ?? 0
                    }
                }
                return n >= Int64(PostgresBackend.poolSize)
            }
            #expect(busy, "the pool's threads never all ran their statements")
            // On the lease's thread: answered before any of the statements holding the pool ended.
            _ = try await StoreLane.$lease.withValue(true) { try await db.leaderLease() }
            #expect(finished.n.withLock { $0 } == 0, "the lease read waited for the pool")
            // On the pool: it waits for a thread, behind at least the first round of statements.
            _ = try await db.leaderLease()
            #expect(finished.n.withLock { $0 } >= PostgresBackend.poolSize, "a pool read did not wait: the test shows nothing")
            try await group.waitForAll()
        }
    }
}

/// How many of a test's statements have ended.
private final class FinishedCount: Sendable {
    let n = Mutex(0)
}
