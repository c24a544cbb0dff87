import Foundation
import GridClient
import GridCore
import GridPeer
import GridProtocol
import GridSandbox
import GridTestSupport
import NIOCore
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Connections that never authenticate, on the manager's grid port and a worker's peer port: bounded in time, in
/// number per address and in the bytes they can make either side keep.
@Suite(.serialized) struct StrangerTests {
    /// Samples both processes' resident memory until told to stop; reports the largest growth over `idle`.
    final class RSSWatch: @unchecked Sendable {
        // Safe: `peak` is guarded by `lock`.
        let lock = NSLock()
        var peak: [Int32: Int] = [:]
        var running = true
        let pids: [Int32]

        init(_ pids: [Int32]) {
            self.pids = pids
            Thread.detachNewThread { [self] in
                while lock.withLock({ running }) {
                    for pid in pids {
                        let kb = PeerGrid.rssKb(pid)
                        lock.withLock { peak[pid] = max(peak[pid] ?? 0, kb) }
                    }
                    usleep(50_000)
                }
            }
        }

        func stop() -> [Int32: Int] {
            lock.withLock {
                running = false
                return peak
            }
        }
    }

    func code(_ m: [String: Any]?) -> String? { m?["type"] as? String == "ERROR" ? m?["code"] as? String : nil }

    @Test func silentAndBulkStrangersAreClosedAndMemoryStaysNearIdle() async throws {
        let g = try await PeerGrid(label: "strangers", managerExtra: ["--hello-deadline", "2", "--max-pending-per-address", "64"])
        defer { g.shutdown() }
        let peer = try await g.startPeer("p1", extra: ["--hello-deadline", "2", "--max-pending-per-address", "64"])
        let manager = try #require(g.grid.manager)
        try await Task.sleep(for: .seconds(1))
        let idle = [manager.pid: PeerGrid.rssKb(manager.pid), peer.process.pid: PeerGrid.rssKb(peer.process.pid)]
        let watch = RSSWatch([manager.pid, peer.process.pid])

        for port in [g.grid.gridPort, peer.port] {
            // 4 strangers announce a large bulk message and stream its bytes without a HELLO: refused from the line.
            var streamers: [RawConnection] = []
            for _ in 0..<4 {
                let c = try RawConnection(port: port)
                c.send(#"{"type":"JOB_LOG","id":1,"job":{"job_id":1,"attempt":1},"offset":0,"bytes":60000000}"# + "\n")
                streamers.append(c)
            }
            let block = [UInt8](repeating: 0x41, count: 1 << 20)
            var sentMiB = [Int](repeating: 0, count: 4)
            for _ in 0..<32 {
                for (i, c) in streamers.enumerated() where c.send(block) { sentMiB[i] += 1 }
            }
            for c in streamers {
                #expect(code(c.readMessage(timeout: 5)) == "not_authenticated", "port \(port)")
                #expect(c.isClosed(timeout: 5), "port \(port)")
            }
            #expect(sentMiB.allSatisfy { $0 < 32 }, "the stream was cut before 32 MiB were sent: \(sentMiB) MiB")

            // 100 strangers that never say HELLO: the first 64 wait for the deadline, the rest are refused at once.
            let start = Date()
            let silent = try (0..<100).map { _ in try RawConnection(port: port) }
            var closed = 0
            var refusedAtOnce = 0
            for c in silent {
                let m = c.readMessage(timeout: 8)
                if (m?["message"] as? String)?.contains("connection refused") == true { refusedAtOnce += 1 }
                if c.isClosed(timeout: 8) { closed += 1 }
            }
            let took = Date().timeIntervalSince(start)
            #expect(closed == 100, "port \(port): \(closed) of 100 closed")
            #expect(refusedAtOnce == 36, "port \(port): \(refusedAtOnce) refused by the per-address cap")
            #expect(took >= 1.5 && took < 15, "port \(port): closed after \(took) s (deadline 2 s)")
        }

        let peaks = watch.stop()
        for (pid, name) in [(manager.pid, "manager"), (peer.process.pid, "worker")] {
            let grew = (peaks[pid] ?? 0) - (idle[pid] ?? 0)
            print("stranger RSS: \(name) idle \(idle[pid] ?? 0) kB, peak \(peaks[pid] ?? 0) kB, growth \(grew) kB")
            #expect(grew < 50 * 1024, "\(name) grew by \(grew) kB under strangers")
        }

        // The grid still works for those who do authenticate (once the strangers' closes have been counted: bounded).
        var connected: PeerLink?
        _ = await eventually(timeout: 20, interval: 0.2) {
            connected = try? await g.link(peer)
            return connected != nil
        }
        let link = try #require(connected, "no link to the peer after the strangers left")
        guard case .memResult = try await link.request(.setMem(Msg.SetMem(key: "k", value: .number(1)))).message else {
            Issue.record("SET_MEM failed after the strangers")
            return
        }
        link.close()
    }

    /// On a TLS grid a stranger that connects and never begins the handshake is closed too: the refusal at the
    /// deadline cannot be written before a handshake, and the close used to wait for that write, so such connections
    /// kept their pending places for good and, enough of them, made both ports refuse every new connection.
    @Test func strangersThatNeverBeginTheTLSHandshakeAreClosedAndTheirPlacesFreed() async throws {
        let limits = ["--hello-deadline", "1", "--max-pending-per-address", "4"]
        let g = try await PeerGrid(label: "strangers-tls", managerExtra: ["--tls"] + limits, managerEnvironment: ["CAMPUSGRID_HTTP_IDLE_SECONDS": "1"])
        defer { g.shutdown() }
        let peer = try await g.startPeer("p1", extra: limits)
        // The HTTPS port: silent, a TLS record begun and not finished, plain HTTP bytes that never end a head. Each is
        // closed by the idle timeout (1 s here, 30 s by default); before, the port had none and kept them for good.
        let https = try (0..<3).map { _ in try RawConnection(port: g.grid.httpPort) }
        _ = https[1].send([0x16, 0x03, 0x01])
        _ = https[2].send("GET / HTTP/1.1\r\nHost: x\r\n")
        for (i, c) in https.enumerated() { #expect(c.isClosed(timeout: 20), "HTTPS port, stranger \(i)") }
        for port in [g.grid.gridPort, peer.port] {
            // 4 wait for the deadline, 4 more are refused at once by the per-address cap; none says a word.
            let silent = try (0..<8).map { _ in try RawConnection(port: port) }
            let closed = silent.filter { $0.isClosed(timeout: 20) }.count
            #expect(closed == 8, "port \(port): \(closed) of 8 strangers closed")
        }
        // Their places are free again: the manager's port and the peer's take a client that does authenticate.
        var connected: PeerLink?
        var failure = ""
        _ = await eventually(timeout: 20, interval: 0.2) {
            do { connected = try await g.link(peer) } catch { failure = "\(error)" }
            return connected != nil
        }
        let link = try #require(connected, "no link to the peer after the strangers were closed: \(failure); manager: \(g.grid.manager?.errorLog.suffix(4000) ?? "")")
        link.close()
        // A second worker joins through the manager's grid port.
        _ = try await g.startPeer("p2", extra: limits)
    }

    /// A signed-in client that asks and never reads the answers: once its replies have stayed unread for the stall
    /// limit (2 s here, 120 s by default) the peer closes the connection and frees them. Before, a connection held 32
    /// replies and its write buffer for good, and any account could open a thousand such connections on every peer.
    @Test func aClientThatNeverReadsItsRepliesIsClosedAfterTheStallLimit() async throws {
        let g = try await PeerGrid(label: "reply-stall")
        defer { g.shutdown() }
        let peer = try await g.startPeer("p1", environment: ["CAMPUSGRID_PEER_REPLY_STALL_SECONDS": "2"])
        let link = try await g.link(peer)
        _ = try await link.request(.setMem(Msg.SetMem(key: "big", value: .string(String(repeating: "x", count: 250_000)))), timeout: 60)
        link.close()
        let reader = try await g.rawSession(peer)
        // 200 answers of 250 KB: far more than the kernel's buffers and the peer's write buffer hold.
        var asks = ""
        for i in 0..<200 { asks += #"{"type":"GET_MEM","id":\#(100 + i),"key":"big"}"# + "\n" }
        reader.send(asks)
        let closed = await eventually(timeout: 60, interval: 0.2) {
            peer.process.errorLog.contains("closed a connection whose replies stayed unread")
        }
        #expect(closed, "the peer kept a connection whose replies stayed unread")
        #expect(reader.isClosed(timeout: 30), "the connection ends once what was sent before the close is read")
        // The peer serves others meanwhile and after.
        let again = try await g.link(peer)
        guard case .memResult = try await again.request(.getMem(Msg.MemKey(key: "big")), timeout: 60).message else {
            Issue.record("GET_MEM failed after the stalled reader")
            return
        }
        again.close()
    }

    /// Chunks sent ahead of their turn wait in memory until the ones before them come: a user who skips the first chunk
    /// of every upload on purpose is refused once their waiting chunks reach the per-user bound, and another user's
    /// upload goes on. (Before, 16 uploads × 3 chunks × 4 MiB stayed in memory for 10 minutes per user.)
    @Test func chunksSentAheadOfTheirTurnAreBoundedPerUser() async throws {
        let g = try await PeerGrid(label: "earlychunks")
        defer { g.shutdown() }
        let peer = try await g.startPeer("p1")
        let hog = try await g.link(peer)
        defer { hog.close() }
        let chunk = ByteBuffer(repeating: 0x6D, count: PeerNames.chunkSize)
        let perUpload = PeerNames.uploadWindow - 1
        var held = 0
        var refusal: GridError?
        uploads: for u in 0..<UploadQuota().perUser {
            guard case .upload(let up) = try await hog.request(.putFile(Msg.PutFile(filename: "skip-\(u).bin", size: Int64(8 * PeerNames.chunkSize)))).message
            else { throw TestGridError("no UPLOAD") }
            for index in 1...perUpload {
                do {
                    _ = try await hog.request(.putFileChunk(Msg.PutFileChunk(uploadId: up.uploadId, index: index)), payload: chunk, timeout: 60)
                    held += chunk.readableBytes
                } catch let e as GridError {
                    refusal = e
                    break uploads
                }
            }
        }
        #expect(held == UploadQuota().earlyBytesPerUser, "held \(held >> 20) MiB before the refusal: \(String(describing: refusal))")
        #expect(refusal?.code == .rateLimited && refusal?.message.contains("send each upload's chunks in order") == true, "\(String(describing: refusal))")

        let bob = try await g.grid.user("bob")
        let other = try await g.link(peer, token: bob.token)
        defer { other.close() }
        let path = g.grid.root + "/bob.bin"
        try Data(repeating: 0x62, count: 2 * PeerNames.chunkSize + 5).write(to: URL(fileURLWithPath: path))
        let manifest = try await other.upload(path: path, as: "bob.bin")
        #expect(manifest.size == Int64(2 * PeerNames.chunkSize + 5))
    }

    @Test func oneUserWithSixtyFourUploadsOpenDoesNotStopAnothersPutFile() async throws {
        let g = try await PeerGrid(label: "uploadquota")
        defer { g.shutdown() }
        let peer = try await g.startPeer("p1")
        let hog = try await g.link(peer)
        var opened = 0
        var refusal = ""
        for i in 0..<64 {
            do {
                _ = try await hog.request(.putFile(Msg.PutFile(filename: "hog-\(i).bin", size: 10 << 20)))
                opened += 1
            } catch let e as GridError {
                refusal = e.message
            }
        }
        #expect(opened == UploadQuota().perUser)
        #expect(refusal.contains("you have \(UploadQuota().perUser) uploads in progress"), "\(refusal)")

        let bob = try await g.grid.user("bob")
        let other = try await g.link(peer, token: bob.token)
        let path = g.grid.root + "/bob.txt"
        try Data("bob's bytes".utf8).write(to: URL(fileURLWithPath: path))
        let manifest = try await other.upload(path: path, as: "bob.txt")
        #expect(manifest.size == 11)
        hog.close()
        other.close()
    }

    @Test func aNinetyMiBRegisterBodyGets413AtOnce() async throws {
        let grid = try TestGrid(label: "bigregister")
        defer { grid.shutdown() }
        try await grid.startManager()
        let c = try RawConnection(port: grid.httpPort)
        let start = Date()
        c.send(
            "POST /api/v1/register HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: \(90 << 20)\r\n\r\n"
                + String(repeating: " ", count: 1024))
        let status = c.readLine(timeout: 5)
        #expect(status?.hasPrefix("HTTP/1.1 413") == true, "\(status ?? "no answer")")
        #expect(Date().timeIntervalSince(start) < 3, "answered before the body was sent")
    }
}

extension StrangerTests {
    /// A join token's holder that says `HELLO` and then never `REGISTER`s is closed a deadline after its `HELLO_OK`,
    /// not held open for good (it counts against its address's open connections meanwhile). A worker that registers
    /// at once stays.
    @Test func anAuthenticatedConnectionThatNeverRegistersIsClosedADeadlineAfterHelloOk() async throws {
        let grid = try TestGrid(label: "noregister")
        defer { grid.shutdown() }
        // A long lease: the hand-driven worker sends no heartbeats, and is not to be expired for that meanwhile.
        try await grid.startManager(leaseSeconds: 30, extra: ["--hello-deadline", "2"])
        let owner = try await grid.user("owner")
        let token = try await owner.createToken(kind: "worker").token
        func hello(_ name: String) throws -> RawConnection {
            let c = try RawConnection(port: grid.gridPort)
            c.send(#"{"type":"HELLO","id":1,"version":2,"token":"\#(token)","name":"\#(name)"}"# + "\n")
            return c
        }
        let silent = try hello("silent")
        #expect(silent.next("HELLO_OK") != nil)
        let honest = try hello("honest")
        #expect(honest.next("HELLO_OK") != nil)
        let register =
            #"{"type":"REGISTER","id":2,"resources":{"cpus":1,"ram_gb":1,"gpus":0,"gpu_memory_gb":0},"gpu_names":[],"tier":"bwrap","slots":1,"running":[]}"#
        honest.send(register + "\n")
        #expect(honest.next("REGISTERED") != nil)

        let start = Date()
        let said = silent.next("ERROR", timeout: 30)
        #expect(code(said) == "not_authenticated" && (said?["message"] as? String)?.contains("no REGISTER within 2 s of HELLO_OK") == true, "\(said ?? [:])")
        #expect(silent.isClosed(timeout: 10))
        #expect(Date().timeIntervalSince(start) < 30)
        // The registered worker is not closed by the deadline (past twice it now).
        let stillThere = Date().addingTimeInterval(2)
        while Date() < stillThere, honest.readFrame(timeout: stillThere.timeIntervalSinceNow) != nil {}
        #expect(!honest.isClosed(timeout: 0.1), "a registered worker was closed")
        honest.send(#"{"type":"PING","id":3}"# + "\n")
        #expect(honest.next("PONG") != nil, "a registered worker no longer answered")
    }
}
