import Foundation
import GridClient
import GridCore
import GridProtocol
import GridTestSupport
import Synchronization
import Testing

/// A worker's status page under a flood of connections: it may be bound beyond loopback (`--web-host`), where anyone
/// who can reach it is a stranger.
@Suite struct WorkerStatusPageTests {
    /// Connections that say nothing hold the page's places up to its cap, and one more is closed at once; the worker
    /// itself is untouched, and a place given back serves the page again. Before, the page took every connection (only
    /// an idle one was closed, after 30 s), so a stranger could use up the worker process's descriptors.
    @Test func silentConnectionsPastTheCapAreClosedAtOnce() async throws {
        try await withTestGrid(label: "pagecap") { grid in
            let ada = try await grid.user("ada")
            // Loopback is counted only in all (a reverse proxy there makes everyone one address): 3 in all here.
            let worker = try await grid.startWorker(
                "wp", owner: ada, statusPage: StrangerLimits(maxPendingPerAddress: 3, maxOpenPerAddress: 3, maxPendingInAll: 3))
            let port = try #require(worker.statusPort.withLock { $0 })
            // The sockets block: on a thread of their own, not one of the pool the page's own answers need.
            let seen = try await onThread { () -> [String: Bool] in
                var seen: [String: Bool] = [:]
                // Each is answered once, so each is surely counted before the next (the server takes connections on
                // several event loops, in no set order), then kept open, saying nothing more.
                var held: [RawConnection] = []
                for i in 0..<3 {
                    let c = try RawConnection(port: port)
                    seen["held \(i) answered"] =
                        c.send("GET /status.json HTTP/1.1\r\nHost: x\r\n\r\n") && c.readLine(timeout: 10)?.hasPrefix("HTTP/1.1 200") == true
                    held.append(c)
                }
                seen["the fourth closed at once"] = try RawConnection(port: port).isClosed(timeout: 10)
                // A place given back serves again (within a bound: the server sees the close on its own event loop).
                held[2].shutdownWrite()
                seen["the third closed after its end"] = held[2].isClosed(timeout: 10)
                var answered = false
                for _ in 0..<50 where !answered {
                    let again = try RawConnection(port: port)
                    answered =
                        again.send("GET /status.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                        && again.readLine(timeout: 2)?.hasPrefix("HTTP/1.1 200") == true
                }
                seen["a freed place serves the page again"] = answered
                return seen
            }
            #expect(seen.count == 6 && seen.values.allSatisfy { $0 }, "\(seen)")
            #expect(try await ada.workers().workers.contains { $0.name == "wp" && $0.online }, "the worker is still online")
        }
    }
}
