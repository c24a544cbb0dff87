import Foundation
import GridClient
import GridCore
import GridProtocol
import GridSandbox
import GridTestSupport
import NIOCore

#if canImport(Glibc)
import Glibc
#endif

/// A started worker with its peer port and id.
struct Peer {
    var name: String
    var process: ManagedProcess
    var port: Int
    var id: String
    var dataDirectory: String
}

/// A real grid for peer tests: the manager, one account, workers started with their peer ports on 127.0.0.1.
final class PeerGrid: @unchecked Sendable {
    // Safe: used by one test at a time.
    let grid: TestGrid
    let alice: GridClient
    var token: String { alice.token ?? "" }

    /// `leaseSeconds`: how long the manager keeps a silent worker online (and its jobs).
    init(label: String, leaseSeconds: Double = 3, managerExtra: [String] = [], managerEnvironment: [String: String] = [:]) async throws {
        grid = try TestGrid(label: label)
        try await grid.startManager(leaseSeconds: leaseSeconds, extraEnvironment: managerEnvironment, extra: managerExtra)
        alice = try await grid.user("alice")
    }

    /// Starts a worker (repair passes every second, so re-replication is quick) and reads its ready line.
    func startPeer(
        _ name: String, slots: Int = 2, extra: [String] = [], owner: GridClient? = nil, environment: [String: String] = [:]
    ) async throws -> Peer {
        let created = try await (owner ?? alice).createToken(kind: "worker")
        // On a TLS grid the join string (TOKEN@sha256:…) pins the manager's CA; the token goes in a file, never argv.
        let tokenFile = try grid.tokenFile(created.join ?? created.token)
        let dir = grid.root + "/\(name)"
        let w = try grid.spawn(
            name,
            [
                "worker", "-m", grid.managerAddress, "--token-file", tokenFile, "--data-dir", dir, "-n", name, "--cpus", "2", "--memory", "4",
                "--slots", "\(slots)", "--port", "0", "--json",
            ] + extra, extraEnvironment: ["CAMPUSGRID_PEER_REPAIR_SECONDS": "1"].merging(environment) { $1 })
        guard let line = await w.nextLine(timeout: 60), let ready = try? JSONDecoder().decode([String: JSONValue].self, from: Data(line.utf8)),
            case .number(let port)? = ready["port"], case .string(let id)? = ready["worker_id"]
        else { throw TestGridError("worker \(name) did not register:\n\(w.errorLog.suffix(3000))") }
        return Peer(name: name, process: w, port: Int(port), id: id, dataDirectory: dir + "/peer")
    }

    /// Starts `count` peers and waits until each knows all of them.
    func startPeers(_ count: Int, slots: Int = 2) async throws -> [Peer] {
        var peers: [Peer] = []
        for i in 1...count { peers.append(try await startPeer("peer-\(i)", slots: slots)) }
        try await waitForMembership(peers)
        return peers
    }

    /// Waits until every peer in `peers` lists exactly them as online.
    func waitForMembership(_ peers: [Peer]) async throws {
        let want = Set(peers.map(\.id))
        for p in peers {
            let ok = await eventually(timeout: 30) {
                guard let s = try? await self.status(p) else { return false }
                return Set(s.peers.map(\.workerId)) == want
            }
            if !ok { throw TestGridError("peer \(p.name) did not learn the membership \(want)") }
        }
    }

    /// A link as the CLI opens one: the peer proves itself, then sees the manager's tickets for the user of `token`
    /// (Alice's by default), never the token.
    func link(_ peer: Peer, token: String? = nil) async throws -> PeerLink {
        var manager = alice
        manager.token = token ?? self.token
        return try await PeerLink.connect(host: "127.0.0.1", port: peer.port, grant: manager.grantSource, tls: peerTLS())
    }

    /// A raw connection with a person's session open on it (Alice's by default), as `link` opens one: for tests that
    /// send the peer what no client would. Plain text only.
    func rawSession(_ peer: Peer, token: String? = nil) async throws -> RawConnection {
        var manager = alice
        manager.token = token ?? self.token
        let c = try RawConnection(port: peer.port)
        let nonce = PeerTrust.nonce()
        c.send(#"{"type":"HELLO","id":1,"version":2,"token":"","nonce":"\#(nonce)"}"# + "\n")
        guard let ok = c.next("HELLO_OK"), let workerId = ok["worker_id"] as? String, let theirs = ok["nonce"] as? String else {
            throw TestGridError("the peer did not answer HELLO {nonce}")
        }
        let pass = try await manager.grantSource(workerId)
        var bytes = ByteBuffer()
        try GridFrame(id: 2, .session(pass.session(holder: workerId, nonce: theirs, now: Int64(Date().timeIntervalSince1970)))).write(to: &bytes)
        c.send(Array(bytes.readableBytesView))
        guard c.next("HELLO_OK") != nil else { throw TestGridError("the peer did not open the session") }
        return c
    }

    /// On a TLS grid: trust in its peer CA for links to peers (nil: plain text).
    func peerTLS() throws -> PeerTLS? {
        guard grid.tls, let ca = grid.peerCAPEM else { return nil }
        return try PeerTLS(caPEM: ca)
    }

    func status(_ peer: Peer) async throws -> Msg.PeerStatus {
        let l = try await link(peer)
        defer { Task { await l.close() } }
        guard case .peerStatus(let s) = try await l.request(.getPeerStatus).message else { throw TestGridError("no status") }
        return s
    }

    func cli(_ args: [String], timeout: Double = 300) throws -> CLIResult {
        try grid.cli(args, token: token, timeout: timeout)
    }

    /// `cli`, waited for without holding a thread.
    func cli(_ args: [String], timeout: Double = 300) async throws -> CLIResult {
        try await grid.cli(args, token: token, timeout: timeout)
    }

    /// The peak resident memory of a process, from /proc (kB).
    static func peakRSSKb(_ pid: Int32) -> Int {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return -1 }
        for line in text.split(separator: "\n") where line.hasPrefix("VmHWM:") {
            return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") ?? -1
        }
        return -1
    }

    /// The resident memory of a process now, from /proc (kB).
    static func rssKb(_ pid: Int32) -> Int {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return -1 }
        for line in text.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") ?? -1
        }
        return -1
    }

    /// Chunk files held in a peer's data folder.
    static func chunkFiles(_ peer: Peer) -> [String: String] {
        var out: [String: String] = [:]
        let root = peer.dataDirectory + "/chunks"
        for d in (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? [] {
            for f in (try? FileManager.default.contentsOfDirectory(atPath: root + "/" + d)) ?? [] where f.count == 64 {
                out[f] = root + "/" + d + "/" + f
            }
        }
        return out
    }

    func shutdown() { grid.shutdown() }
}

/// Sends raw bytes to a port and reads back lines (for malformed-input tests).
func rawExchange(port: Int, send: String, lines: Int, timeout: Double = 10) -> [String] {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return [] }
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = in_port_t(UInt16(port).bigEndian)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    let ok = withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
    }
    guard ok else { return [] }
    var tv = timeval(tv_sec: Int(timeout), tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    _ = send.withCString { write(fd, $0, strlen($0)) }
    var got = Data()
    var buf = [UInt8](repeating: 0, count: 4096)
    while got.filter({ $0 == 0x0A }).count < lines {
        let n = read(fd, &buf, buf.count)
        if n <= 0 { break }
        got.append(contentsOf: buf[0..<n])
    }
    return String(decoding: got, as: UTF8.self).split(separator: "\n").map(String.init)
}
