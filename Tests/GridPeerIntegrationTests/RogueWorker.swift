import Foundation
import GridClient
import GridCore
import GridProtocol
import GridTestSupport
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A worker registered by the test itself over a raw manager connection, with its owner's own join token: it reports
/// whatever peer address and key it likes, keeps its registration alive with heartbeats, and keeps what the manager
/// answered (its id and credential).
final class RawWorker: @unchecked Sendable {
    // Safe: `connection` is used by the heartbeat thread only after `init` returns, and `stop` only sets a flag.
    let id: String
    let managerKey: String
    let credential: PeerTrust.Credential?
    private let connection: RawConnection
    private let stopped = Mutex(false)
    /// Answers to `ask`, by id; only the heartbeat thread reads the connection.
    private let answers = Mutex<[Int: String]>([:])

    init(gridPort: Int, token: String, peerKey: String?, host: String, peerPort: Int, slots: Int = 16) throws {
        connection = try RawConnection(port: gridPort)
        var hello: [String: Any] = ["type": "HELLO", "id": 1, "version": ProtocolVersion.current, "token": token, "name": "rogue"]
        if let peerKey { hello["peer_key"] = peerKey }
        connection.send(String(decoding: try JSONSerialization.data(withJSONObject: hello), as: UTF8.self) + "\n")
        guard let ok = connection.readMessage(timeout: 10), ok["type"] as? String == "HELLO_OK", let id = ok["worker_id"] as? String else {
            throw TestGridError("the manager did not accept the raw worker")
        }
        self.id = id
        managerKey = ok["manager_key"] as? String ?? ""
        connection.send(
            #"{"type":"REGISTER","id":2,"resources":{"cpus":16,"ram_gb":64,"gpus":0,"gpu_memory_gb":0},"gpu_names":[],"tier":"restricted","#
                + #""slots":\#(slots),"host":"\#(host)","port":\#(peerPort),"running":[]}"# + "\n")
        var credential: PeerTrust.Credential?
        while let m = connection.readMessage(timeout: 10) {
            guard m["type"] as? String == "REGISTERED" else { continue }
            if let c = m["credential"] {
                credential = try GridJSON.decode(PeerTrust.Credential.self, from: JSONSerialization.data(withJSONObject: c))
            }
            break
        }
        self.credential = credential
        let thread = Thread { [self] in
            while !stopped.withLock({ $0 }) {
                connection.send(#"{"type":"LOAD_UPDATE","id":0,"load":0,"running":[],"tasks":0}"# + "\n")
                // Messages are read for a while: answers to `ask` are kept, the rest (PEERS, …) dropped.
                let until = Date().addingTimeInterval(0.3)
                while Date() < until {
                    guard let line = connection.readLine(timeout: 0.05),
                        let m = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any], let id = m["id"] as? Int, id != 0
                    else { continue }
                    answers.withLock { $0[id] = line }
                }
            }
        }
        thread.start()
    }

    /// Sends one request on the worker's manager link and returns the answer with its id.
    func ask(_ json: String, id: Int) -> [String: Any]? {
        connection.send(json + "\n")
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline {
            if let line = answers.withLock({ $0.removeValue(forKey: id) }) {
                return (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any]
            }
            Thread.sleep(forTimeInterval: 0.02)
        }
        return nil
    }

    func stop() { stopped.withLock { $0 = true } }
}

/// A plain TCP listener the test controls, posing as a peer: it records every byte it receives, and answers every
/// `HELLO` with a `HELLO_OK` carrying `credential` and a proof over the caller's nonce: a real one when it holds the key
/// the credential names (`signer`: a worker of Mallory's own), else one it could not have made (a credential replayed
/// without its key). A `SESSION` is accepted as it comes, and a peer's `PEER_AUTH` too when the test says so
/// (`acceptingPeers`: a member honest peers open links to); any other request is answered `ERROR` with `code`
/// (`not_found` unless the test says otherwise).
final class RogueListener: @unchecked Sendable {
    // Safe: state behind the mutex; the socket is only used by the accept thread and closed by `stop`.
    let port: Int
    private let code: String
    private let acceptingPeers: Bool
    private let fd: Int32
    private let state = Mutex<(bytes: Data, credential: PeerTrust.Credential?, signer: PeerTrust.Signer?, workerId: String, stopped: Bool)>(
        (Data(), nil, nil, "", false))

    init(answering code: GridError.Code = .notFound, acceptingPeers: Bool = false) throws {
        self.code = code.rawValue
        self.acceptingPeers = acceptingPeers
        let sock = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var one: Int32 = 1
        setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = 0
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(sock, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
        guard bound, listen(sock, 64) == 0 else { throw TestGridError("the rogue listener could not bind") }
        var out = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &out) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(sock, $0, &len) } }
        fd = sock
        port = Int(UInt16(bigEndian: out.sin_port))
        let thread = Thread { [self] in acceptLoop() }
        thread.start()
    }

    /// The credential to replay and the worker id to claim.
    func pose(as workerId: String, credential: PeerTrust.Credential?, signer: PeerTrust.Signer? = nil) {
        state.withLock {
            $0.workerId = workerId
            $0.credential = credential
            $0.signer = signer
        }
    }

    /// Everything received so far, as text.
    var received: String { String(decoding: state.withLock { $0.bytes }, as: UTF8.self) }

    func stop() {
        state.withLock { $0.stopped = true }
        shutdown(fd, Int32(SHUT_RDWR))
        close(fd)
    }

    private func acceptLoop() {
        while !state.withLock({ $0.stopped }) {
            let c = accept(fd, nil, nil)
            if c < 0 { return }
            let thread = Thread { [self] in serve(c) }
            thread.start()
        }
    }

    private func serve(_ c: Int32) {
        defer { close(c) }
        var pending = Data()
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = recv(c, &chunk, chunk.count, 0)
            if n <= 0 { return }
            state.withLock { $0.bytes.append(contentsOf: chunk[0..<n]) }
            pending.append(contentsOf: chunk[0..<n])
            while let nl = pending.firstIndex(of: 0x0A) {
                let line = pending[pending.startIndex..<nl]
                pending = Data(pending[(nl + 1)...])
                guard let m = (try? JSONSerialization.jsonObject(with: line)) as? [String: Any], let type = m["type"] as? String else { continue }
                let (credential, signer, workerId) = state.withLock { ($0.credential, $0.signer, $0.workerId) }
                var answer: [String: Any]
                switch type {
                case "HELLO":
                    let proof =
                        signer.map { $0.proof(nonce: m["nonce"] as? String ?? "", workerId: workerId, role: .server) }
                        ?? Data(repeating: 7, count: 64).base64EncodedString()
                    answer = [
                        "type": "HELLO_OK", "id": m["id"] ?? 0, "version": ProtocolVersion.current, "worker_id": workerId, "owner": "mallory", "heartbeat_seconds": 0,
                        "proof": proof, "nonce": String(repeating: "ab", count: 16),
                    ]
                    if let credential, let data = try? GridJSON.encode(credential) { answer["credential"] = try? JSONSerialization.jsonObject(with: data) }
                case "SESSION":
                    let user = ((m["ticket"] as? [String: Any])?["user"] as? String) ?? ""
                    answer = ["type": "HELLO_OK", "id": m["id"] ?? 0, "version": ProtocolVersion.current, "worker_id": workerId, "owner": user, "heartbeat_seconds": 0]
                case "PEER_AUTH" where acceptingPeers:
                    answer = ["type": "OK", "id": m["id"] ?? 0]
                default:
                    answer = ["type": "ERROR", "id": m["id"] ?? 0, "code": code, "message": "nothing here"]
                }
                guard let reply = try? JSONSerialization.data(withJSONObject: answer) else { continue }
                _ = (reply + Data([0x0A])).withUnsafeBytes { send(c, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            }
        }
    }
}

extension RawWorker {
    /// An entry sealed by this worker (with `signer`, the key its credential names) under `authority`, as an honest
    /// peer seals the writes it makes.
    func sealed(_ key: String, _ value: JSONValue?, version: Int64, signer: PeerTrust.Signer, authority: PeerTrust.Authority) throws -> Msg.MemEntry {
        guard let credential else { throw TestGridError("the raw worker has no credential") }
        let seal = signer.seal(key: key, value: value, version: version, origin: id, authority: authority, credential: credential)
        return Msg.MemEntry(key: key, value: value, version: version, origin: id, seal: seal)
    }
}

extension PeerGrid {
    /// Mallory's rogue peer: her account, her own key (the test holds it, as a hostile contributor holds their
    /// worker's), and a real credential from the manager. The caller stops the worker.
    func rogueMallory() async throws -> (user: GridClient, signer: PeerTrust.Signer, worker: RawWorker) {
        let mallory = try await grid.user("mallory")
        let signer = PeerTrust.Signer()
        return (mallory, signer, try await RawWorker.proven(grid, owner: mallory, signer: signer))
    }

    /// The session the person of `token` (Alice by default) opens with raw worker `worker`, as a person does with any
    /// peer they talk to: what that worker may seal their writes with.
    func session(with worker: RawWorker, token: String? = nil) async throws -> PeerTrust.Authority {
        var manager = alice
        manager.token = token ?? self.token
        let pass = try await manager.grantSource(worker.id)
        let nonce = PeerTrust.nonce()
        guard let authority = PeerTrust.Authority.session(pass.session(holder: worker.id, nonce: nonce, now: Int64(Date().timeIntervalSince1970))) else {
            throw TestGridError("the pass gave no write grant")
        }
        return authority
    }
}

extension RawWorker {
    /// A raw worker of `owner`'s, registered with `signer`'s public key as its peer key: the test holds the private
    /// half, as a hostile contributor holds their worker's.
    static func proven(_ grid: TestGrid, owner: GridClient, signer: PeerTrust.Signer) async throws -> RawWorker {
        try RawWorker(
            gridPort: grid.gridPort, token: try await owner.createToken(kind: "worker").token, peerKey: signer.publicKey, host: "127.0.0.1",
            peerPort: 1)
    }

    /// A peer link from this worker to the peer at `port`, proven with its credential and `signer`.
    func link(to port: Int, signer: PeerTrust.Signer, tls: PeerTLS?) async throws -> PeerLink {
        guard let credential else { throw TestGridError("the raw worker has no credential") }
        let id = self.id
        return try await PeerLink.connectAsPeer(host: "127.0.0.1", port: port, nonce: PeerTrust.nonce(), tls: tls) { ok, _ in
            Msg.PeerAuth(credential: credential, proof: signer.proof(nonce: ok.nonce ?? "", workerId: id, role: .client, audience: ok.workerId))
        }
    }
}
