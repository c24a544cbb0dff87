import Foundation
import GridClient
import GridCore
import GridPeer
import GridProtocol
import GridTestSupport
import NIOCore
import Testing

/// Issue 10, "Trust between strangers": hostile users and a rogue listener against real peers.
@Suite(.serialized) struct TrustTests {
    func code(_ link: PeerLink, _ m: GridMessage) async -> GridError.Code? {
        do {
            _ = try await link.request(m, timeout: 30)
            return nil
        } catch let e as GridError { return e.code } catch { return nil }
    }

    func value(_ link: PeerLink, _ key: String) async throws -> JSONValue? {
        guard case .memResult(let r) = try await link.request(.getMem(Msg.MemKey(key: key)), timeout: 30).message else { return nil }
        return r.value
    }

    func run(_ link: PeerLink, _ program: String, id: String) async throws -> Msg.CPUResult {
        guard case .cpuResult(let r) = try await link.request(.cpuTask(Msg.CPUTask(taskId: id, program: program)), timeout: 60).message else {
            throw TestGridError("no CPU_RESULT")
        }
        return r
    }

    @Test func honestPeersSendARogueListenerNoTokenValueOrTaskAndNoResultComesFromIt() async throws {
        let g = try await PeerGrid(label: "trust-rogue")
        defer { g.shutdown() }
        let peers = try await g.startPeers(2)
        // Mallory registers a worker with her own join token; it reports the address of a listener she controls, and a
        // key she does not hold: the manager signs a real credential for it, which her listener replays.
        let mallory = try await g.grid.user("mallory")
        let join = try await mallory.createToken(kind: "worker").token
        let rogue = try RogueListener()
        defer { rogue.stop() }
        let worker = try RawWorker(
            gridPort: g.grid.gridPort, token: join, peerKey: PeerTrust.Signer().publicKey, host: "127.0.0.1", peerPort: rogue.port)
        defer { worker.stop() }
        #expect(worker.credential != nil, "the manager issues a credential to every worker with a key and a peer port")
        rogue.pose(as: worker.id, credential: worker.credential)
        for p in peers {
            let listed = await eventually(timeout: 30) { (try? await g.status(p))?.peers.contains { $0.workerId == worker.id } == true }
            #expect(listed, "\(p.name) never listed the rogue worker")
        }

        // Alice uses the honest peers: values, a file, and more tasks than the first peer has slots (so it forwards).
        let a = try await g.link(peers[0])
        let b = try await g.link(peers[1])
        for i in 0..<40 {
            _ = try? await a.request(.setMem(Msg.SetMem(key: "k\(i)", value: .string("secret-value-\(i)"))), timeout: 30)
        }
        _ = try? await a.request(.putFile(Msg.PutFile(filename: "doc.txt", data: Data("secret-file-bytes".utf8).base64EncodedString())), timeout: 30)
        let program = "def main(i):\n    import time\n    time.sleep(0.5)\n    return 'PROGRAM-MARKER-%d' % i"
        let results = try await withThrowingTaskGroup(of: Msg.CPUResult?.self) { group in
            for i in 0..<6 {
                group.addTask {
                    guard case .cpuResult(let r) = try await a.request(
                        .cpuTask(Msg.CPUTask(taskId: "t\(i)", program: program, args: .array([.number(Double(i))]))), timeout: 60
                    ).message else { return nil }
                    return r
                }
            }
            var out: [Msg.CPUResult] = []
            for try await r in group { if let r { out.append(r) } }
            return out
        }
        #expect(results.count == 6)
        for r in results {
            guard case .string(let text)? = r.result else {
                Issue.record("task \(r.taskId) failed: \(r)")
                continue
            }
            #expect(r.ok && text.hasPrefix("PROGRAM-MARKER"), "\(r)")
            #expect(Set(peers.map(\.id)).contains(r.peer), "a result came from \(r.peer), not an honest peer")
        }
        // Every value still reads back (from honest owners).
        for i in stride(from: 0, to: 40, by: 7) { #expect(try await value(b, "k\(i)") == .string("secret-value-\(i)")) }

        // The rogue was contacted (keys and chunks are placed on it), yet it saw no secret of any kind.
        let seen = rogue.received
        #expect(seen.contains("HELLO"), "no honest peer tried the rogue, so the test proves nothing")
        #expect(!seen.contains(g.token), "an API token reached the rogue")
        #expect(seen.range(of: #""token":"[^"]"#, options: .regularExpression) == nil, "a token reached the rogue: \(seen.prefix(2000))")
        #expect(!seen.contains("secret-value"), "a memory value reached the rogue")
        #expect(!seen.contains("PROGRAM-MARKER") && !seen.contains("CPU_TASK"), "a task reached the rogue")
        #expect(!seen.contains("PEER_AUTH") && !seen.contains("MEM_SYNC") && !seen.contains("CHUNK_PUT"), "the rogue was trusted: \(seen.prefix(2000))")
        await a.close()
        await b.close()
    }

    /// A person's API token never goes to a peer: the peer is a stranger's machine, and a token is the whole account.
    /// Alice's CLI talks to a peer of Mallory's, a real registered worker whose key Mallory holds; Mallory records every
    /// byte. She sees Alice's certificate and a proof made for her worker and that connection, not the token, and they
    /// open nothing anywhere else: not at an honest peer, not at the manager. (Before `SESSION`, the CLI said
    /// `HELLO {token}` to every peer.)
    @Test func aPeerAUserTalksToSeesAProofForItselfAndThatConnectionNeverTheToken() async throws {
        let g = try await PeerGrid(label: "trust-tickets")
        defer { g.shutdown() }
        let honest = try await g.startPeers(1)[0]
        let mallory = try await g.grid.user("mallory")
        let key = PeerTrust.Signer()
        let rogue = try RogueListener()
        defer { rogue.stop() }
        let worker = try RawWorker(
            gridPort: g.grid.gridPort, token: try await mallory.createToken(kind: "worker").token, peerKey: key.publicKey, host: "127.0.0.1",
            peerPort: rogue.port)
        defer { worker.stop() }
        rogue.pose(as: worker.id, credential: try #require(worker.credential), signer: key)

        // Alice's CLI, with her token in its environment, asks Mallory's peer for a value.
        let asked = try await g.cli(["get-mem", "--port", "\(rogue.port)", "--key", "anything"], timeout: 60)
        #expect(asked.status != 0 && asked.stderr.contains("nothing here"), "the CLI did not get the rogue's answer: \(asked.stderr)")
        let seen = rogue.received
        #expect(seen.contains("\"SESSION\""), "the CLI never opened a session, so the test proves nothing: \(seen.prefix(1000))")
        #expect(!seen.contains(g.token), "Alice's API token reached a peer")
        #expect(seen.range(of: #""token":"[^"]"#, options: .regularExpression) == nil, "a token reached the peer: \(seen.prefix(2000))")

        // What Mallory holds: Alice's certificate and Alice's proof for Mallory's worker and that connection. No
        // forwarding ticket: a session carries one only for a plain `cpu` task, the one thing a peer hands on (every
        // session used to, so any peer a user read through could run tasks as them anywhere for 15 minutes).
        let line = try #require(seen.split(separator: "\n").first { $0.contains("\"SESSION\"") })
        guard case .session(let stolen) = try GridMessage.decode(type: "SESSION", from: Data(line.utf8)) else {
            throw TestGridError("no SESSION in \(line)")
        }
        #expect(stolen.certificate.user == "alice" && stolen.forward == nil)
        // Shown at an honest peer, as it is or with a proof of Mallory's own key over that peer's nonce, it opens nothing.
        func replay(_ session: (String) -> Msg.Session) throws -> [String: Any]? {
            let c = try RawConnection(port: honest.port)
            _ = c.send(String(decoding: try GridMessage.hello(Msg.Hello(token: "", nonce: PeerTrust.nonce())).encodeLine(id: 1, bulkBytes: nil), as: UTF8.self) + "\n")
            guard let ok = c.next("HELLO_OK"), let nonce = ok["nonce"] as? String else { return nil }
            _ = c.send(String(decoding: try GridMessage.session(session(nonce)).encodeLine(id: 2, bulkBytes: nil), as: UTF8.self) + "\n")
            return c.readMessage(timeout: 10)
        }
        let asSeen = try replay { _ in stolen }
        #expect(asSeen?["type"] as? String == "ERROR" && asSeen?["code"] as? String == "unauthorized", "\(asSeen ?? [:])")
        let reProved = try replay { nonce in
            var s = stolen
            s.proof = key.sign(PeerTrust.sessionChallenge(nonce: nonce, holder: honest.id, user: "alice"))
            return s
        }
        #expect(reProved?["type"] as? String == "ERROR" && reProved?["code"] as? String == "unauthorized", "\(reProved ?? [:])")
        // Nothing she saw is a token at the manager either.
        var posing = g.alice
        posing.token = stolen.proof
        await #expect(throws: (any Error).self) { _ = try await posing.me() }
        // And Alice's token still works, unspent: nothing of hers was revoked or changed.
        #expect(try await g.alice.me().username == "alice")
    }

    @Test func aUserCannotReachAnotherUsersMemoryFilesTasksOrInterpreters() async throws {
        let g = try await PeerGrid(label: "trust-users")
        defer { g.shutdown() }
        let peers = try await g.startPeers(2)
        let bobClient = try await g.grid.user("bob")
        let alice = try await g.link(peers[0])
        let bob = try await g.link(peers[1], token: bobClient.token)

        // Memory: bob neither reads, lists, overwrites nor deletes alice's key; his own key of that name is his alone.
        _ = try await alice.request(.setMem(Msg.SetMem(key: "user:id", value: .string("alice-secret"))))
        #expect(await code(bob, .getMem(Msg.MemKey(key: "user:id"))) == .notFound)
        #expect(await code(bob, .delMem(Msg.MemKey(key: "user:id"))) == .notFound)
        guard case .memKeys(let listed) = try await bob.request(.listMem(Msg.ListMem(prefix: ""))).message else { throw TestGridError("list") }
        #expect(!listed.keys.contains("user:id"))
        _ = try await bob.request(.setMem(Msg.SetMem(key: "user:id", value: .string("bob"))))
        #expect(try await value(alice, "user:id") == .string("alice-secret"))
        #expect(try await value(bob, "user:id") == .string("bob"))
        _ = try await bob.request(.delMem(Msg.MemKey(key: "user:id")))
        #expect(try await value(alice, "user:id") == .string("alice-secret"))

        // Public: everyone reads it, only alice changes or deletes it.
        _ = try await alice.request(.setMem(Msg.SetMem(key: "motd", value: .string("hello all"), isPublic: true)))
        #expect(try await value(bob, "motd") == .string("hello all"))
        #expect(await code(bob, .setMem(Msg.SetMem(key: "motd", value: .string("defaced"), isPublic: true))) == .forbidden)
        #expect(await code(bob, .delMem(Msg.MemKey(key: "motd"))) == .forbidden)
        #expect(try await value(alice, "motd") == .string("hello all"))

        // Files, the same way.
        let bytes = Data("alice's file".utf8).base64EncodedString()
        _ = try await alice.request(.putFile(Msg.PutFile(filename: "notes.txt", data: bytes)))
        #expect(await code(bob, .getFile(Msg.FileRef(filename: "notes.txt"))) == .notFound)
        #expect(await code(bob, .deleteFile(Msg.FileRef(filename: "notes.txt"))) == .notFound)
        guard case .fileList(let files) = try await bob.request(.listFiles(Msg.ListFiles())).message else { throw TestGridError("files") }
        #expect(!files.files.contains { $0.filename == "notes.txt" })
        guard case .fileInfo(let mine) = try await alice.request(.getFile(Msg.FileRef(filename: "notes.txt"))).message else {
            throw TestGridError("alice lost her file")
        }
        #expect(mine.data == bytes)
        _ = try await alice.request(.putFile(Msg.PutFile(filename: "syllabus.txt", data: bytes, isPublic: true)))
        guard case .fileInfo(let shared) = try await bob.request(.getFile(Msg.FileRef(filename: "syllabus.txt"))).message else {
            throw TestGridError("bob cannot read a public file")
        }
        #expect(shared.data == bytes)
        #expect(await code(bob, .putFile(Msg.PutFile(filename: "syllabus.txt", data: "eA==", isPublic: true))) == .forbidden)
        #expect(await code(bob, .deleteFile(Msg.FileRef(filename: "syllabus.txt"))) == .forbidden)

        // Tasks: bob cannot name alice as the user, and sees neither her interpreter state nor her task files.
        let forged = Msg.CPUTask(taskId: "f1", program: "def main(): return 1", user: "alice")
        #expect(await code(bob, .cpuTask(forged)) == .forbidden)
        let bobOnAlicesPeer = try await g.link(peers[0], token: bobClient.token)
        let plant = try await run(alice, "def main():\n    import json\n    json.alice_mark = 1\n    open('note.txt', 'w').write('x')\n    return 1", id: "p1")
        #expect(plant.ok, "\(plant)")
        for i in 0..<4 {
            let look = try await run(
                bobOnAlicesPeer, "def main():\n    import json, os\n    return [hasattr(json, 'alice_mark'), os.path.exists('note.txt')]", id: "l\(i)")
            #expect(look.ok && look.result == .array([.bool(false), .bool(false)]), "\(look)")
        }
        // Priorities are bounded.
        #expect(await code(bob, .cpuTask(Msg.CPUTask(taskId: "p", program: "def main(): return 1", priority: 11))) == .badRequest)
        #expect(await code(bob, .cpuTask(Msg.CPUTask(taskId: "p", program: "def main(): return 1", priority: Int.min))) == .badRequest)
        for l in [alice, bob, bobOnAlicesPeer] { await l.close() }
    }

    /// No token ever opens anything at a peer, nor is checked for one. A join token gets no session ticket from the
    /// manager. A `HELLO {token}` (what clients older than `SESSION` sent: a person's API token, handed to the peer) is
    /// refused unchecked, a person's real token included. And the manager answers no `AUTH_CHECK {token}` (a worker
    /// holding a stolen token learns nothing of it, and gets no ticket to act for its owner).
    @Test func noTokenOpensAPeerSessionAndAuthCheckAnswersNoToken() async throws {
        let g = try await PeerGrid(label: "trust-tokens")
        defer { g.shutdown() }
        let peers = try await g.startPeers(1)
        let join = try await g.alice.createToken(kind: "worker").token
        do {
            let l = try await g.link(peers[0], token: join)
            await l.close()
            Issue.record("a join token got a peer session")
        } catch let e as GridError { #expect([.unauthorized, .forbidden].contains(e.code), "\(e)") }
        for token in [g.token, join] {
            let c = try RawConnection(port: peers[0].port)
            c.send(#"{"type":"HELLO","id":1,"version":2,"token":"\#(token)"}"# + "\n")
            let said = c.readMessage(timeout: 10)
            #expect(said?["type"] as? String == "ERROR" && said?["code"] as? String == "unauthorized", "\(said ?? [:])")
            #expect((said?["message"] as? String)?.contains("a secret never goes to a peer") == true, "\(said ?? [:])")
            #expect(c.isClosed(timeout: 10))
        }
        let worker = try RawWorker(gridPort: g.grid.gridPort, token: join, peerKey: nil, host: "127.0.0.1", peerPort: 1)
        defer { worker.stop() }
        for (id, token) in [(50, join), (51, g.token)] {
            let refused = worker.ask(#"{"type":"AUTH_CHECK","id":\#(id),"token":"\#(token)"}"#, id: id)
            #expect(refused?["type"] as? String == "ERROR" && refused?["code"] as? String == "bad_request", "\(refused ?? [:])")
            #expect(refused?["ticket"] == nil && refused?["user"] == nil)
        }
        // A certificate is answered only if the manager signed it, as it is: a genuine one of a standing token stands;
        // one with its token hash swapped (to learn whether another token stands), one signed by another key, and one
        // with no token hash are refused.
        func authCheck(_ certificate: PeerTrust.UserCertificate, id: Int) throws -> [String: Any]? {
            var bytes = ByteBuffer()
            try GridFrame(id: id, .authCheck(Msg.AuthCheck(certificate: certificate))).write(to: &bytes)
            return worker.ask(String(decoding: bytes.readableBytesView.dropLast(), as: UTF8.self), id: id)
        }
        let genuine = try await g.alice.peerGrant(key: PeerTrust.Signer().publicKey, worker: nil).certificate
        let stands = try authCheck(genuine, id: 60)
        #expect(stands?["type"] as? String == "AUTH_OK" && stands?["user"] as? String == "alice", "\(stands ?? [:])")
        var swapped = genuine
        swapped.tokenHash = String(repeating: "0", count: 64)
        let forger = PeerTrust.Signer()
        var selfSigned = genuine
        selfSigned.signature = forger.sign(selfSigned.signedBytes)
        var noHash = genuine
        noHash.tokenHash = nil
        for (id, forged) in [(61, swapped), (62, selfSigned), (63, noHash)] {
            let refused = try authCheck(forged, id: id)
            #expect(refused?["type"] as? String == "ERROR" && ["unauthorized", "bad_request"].contains(refused?["code"] as? String), "\(refused ?? [:])")
        }
        // The peer still works for a person's session.
        let l = try await g.link(peers[0])
        guard case .memResult = try await l.request(.setMem(Msg.SetMem(key: "k", value: .number(1)))).message else {
            Issue.record("a session could not write")
            return
        }
        await l.close()
    }

    /// A peer reads another's stored keys only for a person who gave it a mandate: Mallory's proven peer (a real
    /// credential, a key she holds) asks an honest peer for Alice's value, lists every key, or shows a mandate of
    /// Alice's made out to another peer: refused each time; public names stay readable. Meanwhile Alice, through
    /// another peer, reads her value as before: that peer holds her delegation from her session.
    @Test func aProvenPeerReadsAnotherUsersKeysOnlyWithTheirMandate() async throws {
        let g = try await PeerGrid(label: "trust-mandate")
        defer { g.shutdown() }
        let peers = try await g.startPeers(2)
        let alice = try await g.link(peers[0])
        defer { alice.close() }
        // A key of Alice's held by peer 1 (so that peer 0 must fetch it there), and a public one.
        let name = try #require(
            (0..<1000).map { "alice-secret-\($0)" }.first { n in
                let owners = Rendezvous.owners(of: PeerNamespace.stored(n, user: "alice", kind: .memory), among: peers.map(\.id), replicas: 1)
                return owners == [peers[1].id]
            })
        let before = Int64(Date().timeIntervalSince1970 * 1000)
        _ = try await alice.request(.setMem(Msg.SetMem(key: name, value: .string("for alice only"))), timeout: 30)
        _ = try await alice.request(.setMem(Msg.SetMem(key: "notice", value: .string("for all"), isPublic: true)), timeout: 30)

        let mine = PeerTrust.Signer()
        let mallory = try await g.grid.user("mallory")
        let worker = try await RawWorker.proven(g.grid, owner: mallory, signer: mine)
        defer { worker.stop() }
        let link = try await worker.link(to: peers[1].port, signer: mine, tls: g.peerTLS())
        defer { link.close() }
        let secret = PeerNamespace.stored(name, user: "alice", kind: .memory)
        #expect(await code(link, .memFetch(Msg.MemFetch(keys: [secret]))) == .forbidden)
        #expect(await code(link, .listMem(Msg.ListMem(prefix: "", local: true))) == .forbidden)
        #expect(await code(link, .listMem(Msg.ListMem(prefix: PeerNamespace.prefix(user: "alice", kind: .memory), local: true))) == .forbidden)
        // A mandate of Alice's, but made out to another peer (the one she talked to), is no mandate for Mallory's.
        let theirs = worker.managerKey
        let forged = PeerTrust.Mandate(ticket: PeerTrust.Ticket(user: "alice", holder: worker.id, expires: Int64.max, signature: "AAAA"))
        #expect(await code(link, .memFetch(Msg.MemFetch(keys: [secret], mandate: forged))) == .forbidden)
        let grant = try await g.alice.peerGrant(key: PeerTrust.Signer().publicKey, worker: peers[0].id)
        #expect(grant.managerKey == theirs)
        let elsewhere = PeerTrust.Mandate(ticket: try #require(grant.forward))
        #expect(await code(link, .memFetch(Msg.MemFetch(keys: [secret], mandate: elsewhere))) == .forbidden)
        // Nor does an old version sent to it (MEM_SYNC) bring back the value that won: only its version. The entry is
        // sealed under a session Alice opened with Mallory's peer (any peer she talks to holds one), else it would be
        // refused before its version counted.
        let stale = try worker.sealed(secret, .string("x"), version: before - 1, signer: mine, authority: try await g.session(with: worker))
        let answer = try await link.request(.memSync(Msg.MemEntries(entries: [stale])), timeout: 10).message
        guard case .memEntries(let won) = answer else { throw TestGridError("MEM_SYNC of a stale version answered \(answer.type)") }
        #expect(won.entries.count == 1 && won.entries.allSatisfy { $0.value == nil && $0.version >= before }, "\(won.entries)")
        // Public names need no mandate.
        let publicKey = PeerNamespace.stored("notice", user: nil, kind: .memory)
        guard case .memEntries = try await link.request(.memFetch(Msg.MemFetch(keys: [publicKey])), timeout: 10).message else {
            throw TestGridError("a public name was not readable by a peer")
        }
        // Alice reads her value through peer 0, which fetches it from peer 1 with her delegation.
        guard case .memResult(let r) = try await alice.request(.getMem(Msg.MemKey(key: name)), timeout: 30).message else {
            throw TestGridError("no MEM_RESULT")
        }
        #expect(r.value == .string("for alice only"))
        // A mandate's reference stands for a mandate only from the peer that showed it: Mallory naming the reference
        // of Alice's ticket for peer 0, or one she made up, is told to show a mandate, and reads nothing.
        #expect(await code(link, .memFetch(Msg.MemFetch(keys: [secret], mandateRef: elsewhere.ref))) == .mandateUnknown)
        #expect(await code(link, .memFetch(Msg.MemFetch(keys: [secret], mandateRef: "d:AAAA:BBBB"))) == .mandateUnknown)
        // Alice reads again, and again: peer 0 now names the mandate it showed peer 1 (its reference alone).
        for _ in 0..<2 {
            guard case .memResult(let again) = try await alice.request(.getMem(Msg.MemKey(key: name)), timeout: 30).message else {
                throw TestGridError("no MEM_RESULT")
            }
            #expect(again.value == .string("for alice only"))
        }
    }

    /// A stranger's worker asks a peer for one public value of 200 KB a thousand times in one `MEM_FETCH`: answered
    /// once, not with 200 MB (32 such requests at once per connection held gigabytes of the contributor's memory). Six
    /// such values asked together are refused (`line_too_long`): their answer would not fit a line. The same link goes
    /// on.
    @Test func aFetchOfLargeValuesIsAnsweredWithinALineOrRefused() async throws {
        let g = try await PeerGrid(label: "trust-fetch-bound")
        defer { g.shutdown() }
        // Two peers, two replicas: each holds every key.
        let peers = try await g.startPeers(2)
        let alice = try await g.link(peers[0])
        defer { alice.close() }
        let big = JSONValue.string(String(repeating: "b", count: 200_000))
        for i in 0..<6 { _ = try await alice.request(.setMem(Msg.SetMem(key: "big\(i)", value: big, isPublic: true)), timeout: 30) }
        let mine = PeerTrust.Signer()
        let mallory = try await g.grid.user("mallory")
        let worker = try await RawWorker.proven(g.grid, owner: mallory, signer: mine)
        defer { worker.stop() }
        let keys = (0..<6).map { PeerNamespace.stored("big\($0)", user: nil, kind: .memory) }
        let link = try await worker.link(to: peers[1].port, signer: mine, tls: g.peerTLS())
        defer { link.close() }
        guard case .memEntries(let once) = try await link.request(.memFetch(Msg.MemFetch(keys: Array(repeating: keys[0], count: 1_000))), timeout: 30).message
        else { throw TestGridError("no MEM_ENTRIES") }
        #expect(once.entries.count == 1 && (once.entries.first?.value?.encodedSizeBound ?? 0) > 200_000, "\(once.entries.count) entries")
        #expect(await code(link, .memFetch(Msg.MemFetch(keys: keys))) == .lineTooLong)
        guard case .memEntries(let two) = try await link.request(.memFetch(Msg.MemFetch(keys: Array(keys.prefix(2)))), timeout: 30).message else {
            throw TestGridError("no MEM_ENTRIES")
        }
        #expect(two.entries.count == 2)
    }

    @Test func boundaryMemSyncVersionsAreRefusedAndAPinnedKeyIsReportedAsLost() async throws {
        let g = try await PeerGrid(label: "trust-versions")
        defer { g.shutdown() }
        let peers = try await g.startPeers(2)
        // A real peer (its own key, its credential from the manager) proves itself to peer 1 and sends MEM_SYNCs.
        let mine = PeerTrust.Signer()
        let join = try await g.alice.createToken(kind: "worker").token
        let worker = try RawWorker(gridPort: g.grid.gridPort, token: join, peerKey: mine.publicKey, host: "127.0.0.1", peerPort: 1)
        defer { worker.stop() }
        let credential = try #require(worker.credential)
        let c = try RawConnection(port: peers[0].port)
        let nonce = PeerTrust.nonce()
        c.send(#"{"type":"HELLO","id":1,"version":2,"token":"","nonce":"\#(nonce)"}"# + "\n")
        let hello = try #require(c.readMessage(timeout: 10))
        let theirs = try #require(hello["nonce"] as? String)
        let auth = Msg.PeerAuth(
            credential: credential, proof: mine.proof(nonce: theirs, workerId: worker.id, role: .client, audience: try #require(hello["worker_id"] as? String)))
        c.send(String(decoding: try GridMessage.peerAuth(auth).encodeLine(id: 2, bulkBytes: nil), as: UTF8.self) + "\n")
        #expect(c.readMessage(timeout: 10)?["type"] as? String == "OK")

        // A key peer 0 owns whether or not it counts the raw worker (listed at port 1) among the peers.
        let honest = peers.map(\.id)
        let name = try #require(
            (0..<1000).map { "pinned-\($0)" }.first { n in
                let k = PeerNamespace.stored(n, user: "alice", kind: .memory)
                return Rendezvous.owners(of: k, among: honest + [worker.id], replicas: 2).contains(honest[0])
                    && Rendezvous.owners(of: k, among: honest, replicas: 2).contains(honest[0])
            })
        let stored = PeerNamespace.stored(name, user: "alice", kind: .memory)
        let keyJSON = String(decoding: try GridJSON.encode(stored), as: UTF8.self)
        var id = 10
        func sync(version: String, value: String?) -> [String: Any]? {
            id += 1
            let v = value.map { #","value":\#($0)"# } ?? ""
            c.send(#"{"type":"MEM_SYNC","id":\#(id),"entries":[{"key":\#(keyJSON),"origin":"\#(worker.id)","version":\#(version)\#(v)}]}"# + "\n")
            return c.readMessage(timeout: 10)
        }
        // Refused: the whole message when it cannot be read, else the entry alone, with its reason.
        func isRefused(_ a: [String: Any]?, _ words: String? = nil) -> Bool {
            if a?["type"] as? String == "ERROR" { return words.map { (a?["message"] as? String)?.contains($0) == true } ?? true }
            guard a?["type"] as? String == "MEM_ENTRIES", let why = (a?["refused"] as? [String: String])?[stored] else { return false }
            return words.map { why.contains($0) } ?? true
        }
        for version in ["0", "-1", "\(Int64.max)", "\(Int64.min)", "\(Int64.max - 1)"] {
            for value in ["1", nil] as [String?] {
                let answer = sync(version: version, value: value)
                #expect(isRefused(answer), "version \(version): \(answer ?? [:])")
            }
        }
        let farFuture = Int64(Date().timeIntervalSince1970 * 1000) + 3_600_000
        #expect(isRefused(sync(version: "\(farFuture)", value: "1"), "future"))
        // An entry larger than any a client may store (a 200 KB origin, a 300 KB value) is refused too: a peer keeps
        // what it accepts, and counted the origin at nothing before.
        let now = Int64(Date().timeIntervalSince1970 * 1000)
        let hugeOrigin = String(repeating: "o", count: 200_000)
        c.send(#"{"type":"MEM_SYNC","id":90,"entries":[{"key":\#(keyJSON),"origin":"\#(hugeOrigin)","version":\#(now),"value":1}]}"# + "\n")
        let origin = c.readMessage(timeout: 10)
        #expect(isRefused(origin, "origin"), "\(origin ?? [:])")
        let hugeValue = "\"" + String(repeating: "v", count: 300_000) + "\""
        c.send(#"{"type":"MEM_SYNC","id":91,"entries":[{"key":\#(keyJSON),"origin":"\#(worker.id)","version":\#(now),"value":\#(hugeValue)}]}"# + "\n")
        let value = c.readMessage(timeout: 10)
        #expect(isRefused(value, "over the limit"), "\(value ?? [:])")
        // The peer is still up, and a version a little ahead (within the allowed skew) is kept, sealed under a session
        // Alice opened with that peer (unsealed, it is refused)…
        _ = try await g.status(peers[0])
        let ahead = Int64(Date().timeIntervalSince1970 * 1000) + 120_000
        let unsealed = sync(version: "\(ahead)", value: #""pinned-by-a-peer""#)
        #expect(unsealed?["type"] as? String == "MEM_ENTRIES" && (unsealed?["refused"] as? [String: String])?[stored]?.contains("no seal") == true, "\(unsealed ?? [:])")
        let pinned = try worker.sealed(stored, .string("pinned-by-a-peer"), version: ahead, signer: mine, authority: try await g.session(with: worker))
        c.send(String(decoding: try GridMessage.memSync(Msg.MemEntries(entries: [pinned])).encodeLine(id: 99, bulkBytes: nil), as: UTF8.self) + "\n")
        let kept = c.readMessage(timeout: 10)
        #expect(kept?["type"] as? String == "OK", "\(kept ?? [:])")
        // …so alice's write, older than it, is reported as lost, never as stored.
        let link = try await g.link(peers[0])
        #expect(await code(link, .setMem(Msg.SetMem(key: name, value: .string("alice")))) == .conflict)
        await link.close()
    }

    /// Any proven peer may send `MEM_SYNC`; before seals, Mallory's peer could rewrite or delete any of Alice's values
    /// and manifests, or take her public name. Now each entry must carry its writer's seal, under a session its person
    /// opened with that writer: unsealed, sealed for Mallory, re-signed, re-attributed or changed, every forgery is
    /// refused, and Alice reads back what she wrote. Mallory's own key takes her sealed write.
    @Test func aRoguePeerCannotForgeAnotherPersonsEntries() async throws {
        let g = try await PeerGrid(label: "trust-seals")
        defer { g.shutdown() }
        let peers = try await g.startPeers(2)
        let alice = try await g.link(peers[0])
        defer { alice.close() }
        _ = try await alice.request(.setMem(Msg.SetMem(key: "diary", value: .string("dear diary"))), timeout: 30)
        _ = try await alice.request(.setMem(Msg.SetMem(key: "notice", value: .string("alice's notice"), isPublic: true)), timeout: 30)

        // Mallory's peer: her own key, a real credential, and a session of her own with it.
        let (mallory, mine, worker) = try await g.rogueMallory()
        defer { worker.stop() }
        let hers = try await g.session(with: worker, token: mallory.token)
        let link = try await worker.link(to: peers[0].port, signer: mine, tls: g.peerTLS())
        defer { link.close() }
        let diary = PeerNamespace.stored("diary", user: "alice", kind: .memory)
        let notice = PeerNamespace.stored("notice", user: nil, kind: .memory)
        let now = Int64(Date().timeIntervalSince1970 * 1000) + 1000
        // Each forgery goes beside an honest entry of Mallory's own: the forgery is refused alone, with its reason, and
        // the honest one is kept (a batch carries many people's writes).
        var n = 0
        func refused(_ entry: Msg.MemEntry, _ words: String, sourceLocation: SourceLocation = #_sourceLocation) async {
            n += 1
            do {
                let own = try worker.sealed(
                    PeerNamespace.stored("beside-\(n)", user: "mallory", kind: .memory), .number(Double(n)), version: now, signer: mine, authority: hers)
                let answer = try await link.request(.memSync(Msg.MemEntries(entries: [entry, own])), timeout: 10).message
                guard case .memEntries(let m) = answer, let why = m.refused?[entry.key] else {
                    Issue.record("a forged entry was answered \(answer)", sourceLocation: sourceLocation)
                    return
                }
                #expect(why.contains(words) && m.refused?[own.key] == nil, "\(m)", sourceLocation: sourceLocation)
                // Refused for what it is, not for room: the writer is told `forbidden`.
                #expect(m.forbidden == [entry.key], "\(m)", sourceLocation: sourceLocation)
            } catch {
                Issue.record("\(error)", sourceLocation: sourceLocation)
            }
        }
        // No seal at all: a new value, a deletion.
        await refused(Msg.MemEntry(key: diary, value: .string("forged"), version: now, origin: worker.id), "no seal")
        await refused(Msg.MemEntry(key: diary, value: nil, version: now, origin: worker.id), "no seal")
        // Sealed, but for Mallory: Alice's key, Alice's public name (replaced, deleted, or a value still naming Alice).
        await refused(try worker.sealed(diary, .string("forged"), version: now, signer: mine, authority: hers), "under alice's key")
        await refused(try worker.sealed(diary, nil, version: now, signer: mine, authority: hers), "under alice's key")
        await refused(try worker.sealed(notice, PeerNamespace.wrap(.string("mine"), owner: "mallory"), version: now, signer: mine, authority: hers), "held by another")
        await refused(try worker.sealed(notice, nil, version: now, signer: mine, authority: hers), "held by another")
        await refused(try worker.sealed(notice, PeerNamespace.wrap(.string("x"), owner: "alice"), version: now, signer: mine, authority: hers), "names another owner")
        // Even a seal under a session Alice opened with Mallory's peer binds what it was made for: not another value,
        // not another peer's name as its origin, not another key's signature.
        let aliceThere = try await g.session(with: worker)
        var changed = try worker.sealed(diary, .string("a"), version: now, signer: mine, authority: aliceThere)
        changed.value = .string("b")
        await refused(changed, "was not signed by its writer")
        var moved = try worker.sealed(diary, .string("x"), version: now, signer: mine, authority: aliceThere)
        moved.origin = peers[1].id
        await refused(moved, "not by its origin")
        await refused(try worker.sealed(diary, .string("x"), version: now, signer: PeerTrust.Signer(), authority: aliceThere), "was not signed by its writer")

        // Alice reads back what she wrote, through either peer.
        for peer in peers {
            let l = try await g.link(peer)
            defer { l.close() }
            guard case .memResult(let d) = try await l.request(.getMem(Msg.MemKey(key: "diary")), timeout: 30).message,
                case .memResult(let n) = try await l.request(.getMem(Msg.MemKey(key: "notice")), timeout: 30).message
            else { throw TestGridError("no MEM_RESULT") }
            #expect(d.value == .string("dear diary") && n.value == .string("alice's notice"), "\(d) \(n)")
        }
        // A session that gave its peer no write grant (a client that only reads or runs tasks) writes nothing.
        let reader = try await PeerLink.connect(
            host: "127.0.0.1", port: peers[0].port,
            grant: { worker in
                var pass = try await g.alice.grantSource(worker)
                pass.writeSeconds = nil
                return pass
            }, tls: g.peerTLS())
        defer { reader.close() }
        #expect(await code(reader, .setMem(Msg.SetMem(key: "diary", value: .string("x")))) == .forbidden)
        #expect(await code(reader, .delMem(Msg.MemKey(key: "diary"))) == .forbidden)
        guard case .memResult(let still) = try await reader.request(.getMem(Msg.MemKey(key: "diary")), timeout: 30).message else {
            throw TestGridError("no MEM_RESULT")
        }
        #expect(still.value == .string("dear diary"))
        // Mallory's own key, sealed for her: kept.
        let own = try worker.sealed(PeerNamespace.stored("m", user: "mallory", kind: .memory), .string("mine"), version: now, signer: mine, authority: hers)
        guard case .ok = try await link.request(.memSync(Msg.MemEntries(entries: [own])), timeout: 10).message else {
            throw TestGridError("a sealed entry of the writer's own person was not kept")
        }
    }

    /// With three peers, a public name has owners and a peer that is none: that peer reads the name from its owners
    /// (their answers pass the seal check), while a claim to another name pushed to it by a peer is refused (only a
    /// name's owners, or a peer already holding it, keep a claim).
    @Test func aPublicNameReadsThroughAPeerThatIsNoOwnerAndAClaimPushedThereIsRefused() async throws {
        let g = try await PeerGrid(label: "trust-public")
        defer { g.shutdown() }
        let peers = try await g.startPeers(3)
        let (mallory, mine, worker) = try await g.rogueMallory()
        defer { worker.stop() }
        let honest = peers.map(\.id)
        // Names peer 3 owns under neither view of the peers (with the raw worker listed, or not yet).
        func notOwnedByThird(_ prefix: String) throws -> String {
            try #require(
                (0..<1000).map { "\(prefix)-\($0)" }.first { n in
                    let k = PeerNamespace.stored(n, user: nil, kind: .memory)
                    return !Rendezvous.owners(of: k, among: honest, replicas: 2).contains(honest[2])
                        && !Rendezvous.owners(of: k, among: honest + [worker.id], replicas: 2).contains(honest[2])
                })
        }
        let name = try notOwnedByThird("notice")
        let alice = try await g.link(peers[0])
        defer { alice.close() }
        _ = try await alice.request(.setMem(Msg.SetMem(key: name, value: .string("for all"), isPublic: true)), timeout: 30)
        let third = try await g.link(peers[2])
        defer { third.close() }
        guard case .memResult(let r) = try await third.request(.getMem(Msg.MemKey(key: name)), timeout: 30).message else {
            throw TestGridError("no MEM_RESULT")
        }
        #expect(r.value == .string("for all"))

        let link = try await worker.link(to: peers[2].port, signer: mine, tls: g.peerTLS())
        defer { link.close() }
        let claim = PeerNamespace.stored(try notOwnedByThird("claim"), user: nil, kind: .memory)
        let entry = try worker.sealed(
            claim, PeerNamespace.wrap(.string("mine"), owner: "mallory"), version: Int64(Date().timeIntervalSince1970 * 1000), signer: mine,
            authority: try await g.session(with: worker, token: mallory.token))
        guard case .memEntries(let m) = try await link.request(.memSync(Msg.MemEntries(entries: [entry])), timeout: 10).message else {
            throw TestGridError("a claim pushed to a peer that is no owner was kept")
        }
        #expect(m.refused?[claim]?.contains("no owner") == true, "\(m)")
    }

    /// A member that answers every read `forbidden` (Mallory's: registered and proven, a listener of hers) hides
    /// nothing: an owner that answered without a key outweighs a refusal, and a refusal of a public key, read with no
    /// mandate, is none. (Before, any refusal met while a key was found nowhere was the answer, so every absent key
    /// read `forbidden`; a `GET_MEM` of a public name, which reads the person's own name first, failed; and no new
    /// public name could be published.)
    @Test func aMemberThatRefusesEveryReadHidesNoKeyAndBlocksNoPublicName() async throws {
        let g = try await PeerGrid(label: "trust-refuser")
        defer { g.shutdown() }
        let peers = try await g.startPeers(2)
        let mallory = try await g.grid.user("mallory")
        let signer = PeerTrust.Signer()
        let rogue = try RogueListener(answering: .forbidden, acceptingPeers: true)
        defer { rogue.stop() }
        let worker = try RawWorker(
            gridPort: g.grid.gridPort, token: try await mallory.createToken(kind: "worker").token, peerKey: signer.publicKey, host: "127.0.0.1",
            peerPort: rogue.port)
        defer { worker.stop() }
        rogue.pose(as: worker.id, credential: worker.credential, signer: signer)
        for p in peers {
            let listed = await eventually(timeout: 30) { (try? await g.status(p))?.peers.contains { $0.workerId == worker.id } == true }
            #expect(listed, "\(p.name) never listed Mallory's worker")
        }
        let alice = try await g.link(peers[0])
        defer { alice.close() }
        func code(_ m: GridMessage) async -> GridError.Code? {
            do {
                _ = try await alice.request(m, timeout: 60)
                return nil
            } catch let e as GridError { return e.code } catch { return .internal }
        }
        for i in 0..<4 { #expect(await code(.getMem(Msg.MemKey(key: "absent-\(i)"))) == .notFound, "absent-\(i)") }
        for i in 0..<4 {
            let name = "notice-\(i)"
            #expect(await code(.setMem(Msg.SetMem(key: name, value: .string("for all \(i)"), isPublic: true))) == nil, "publishing \(name)")
            for p in peers {
                let l = try await g.link(p)
                defer { l.close() }
                guard case .memResult(let r) = try await l.request(.getMem(Msg.MemKey(key: name)), timeout: 60).message else {
                    throw TestGridError("no MEM_RESULT")
                }
                #expect(r.value == .string("for all \(i)"), "\(name) through \(p.name)")
            }
        }
        #expect(rogue.received.contains("MEM_FETCH"), "the honest peers never asked Mallory's worker: the test proves nothing")
    }

    /// A public name's deletion names no owner, and an owner that held nothing of the name kept anyone's: Mallory's
    /// sealed deletion, as new as her clock likes, made Alice's claim lose by version on both owners (and, during churn,
    /// made the old owner drop Alice's good copy). A deletion now bars only its own person's copies: Alice publishes
    /// over Mallory's, and Mallory's is refused over Alice's value. Alice's own deletion still bars her stale copies,
    /// and Mallory's deletion cannot replace Alice's to let one back.
    @Test func aStrangersDeletionOfAPublicNameNeitherHidesNorBlocksItsOwnersCopy() async throws {
        let g = try await PeerGrid(label: "trust-public-deletion")
        defer { g.shutdown() }
        let peers = try await g.startPeers(2)
        let (mallory, mine, worker) = try await g.rogueMallory()
        defer { worker.stop() }
        let honest = peers.map(\.id)
        // A name both honest peers own, whether or not they count Mallory's raw worker among the peers.
        let name = try #require(
            (0..<1000).map { "notice-\($0)" }.first { n in
                !Rendezvous.owners(of: PeerNamespace.stored(n, user: nil, kind: .memory), among: honest + [worker.id], replicas: 2).contains(worker.id)
            })
        let key = PeerNamespace.stored(name, user: nil, kind: .memory)
        let hers = try await g.session(with: worker, token: mallory.token)
        var links: [PeerLink] = []
        for peer in peers { links.append(try await worker.link(to: peer.port, signer: mine, tls: g.peerTLS())) }
        defer { for l in links { l.close() } }
        let ahead = Int64(Date().timeIntervalSince1970 * 1000) + 60_000
        // Mallory's deletion reaches both owners before anyone published the name: kept (they held nothing of it).
        let deletion = try worker.sealed(key, nil, version: ahead, signer: mine, authority: hers)
        for l in links {
            guard case .ok = try await l.request(.memSync(Msg.MemEntries(entries: [deletion])), timeout: 10).message else {
                throw TestGridError("a deletion of a name held nowhere was not kept")
            }
        }
        // Alice publishes it anyway (before: `conflict`, her claim lost to the newer deletion on both owners).
        let alice = try await g.link(peers[0])
        defer { alice.close() }
        let published = try await alice.request(.setMem(Msg.SetMem(key: name, value: .string("alice's notice"), isPublic: true)), timeout: 30).message
        guard case .memResult = published else {
            Issue.record("Alice could not publish over a stranger's deletion: \(published)")
            return
        }
        for peer in peers {
            let l = try await g.link(peer)
            defer { l.close() }
            guard case .memResult(let r) = try await l.request(.getMem(Msg.MemKey(key: name)), timeout: 30).message else {
                throw TestGridError("no MEM_RESULT")
            }
            // Hers, so nothing to tell her of who published it.
            #expect(r.value == .string("alice's notice") && r.publishedBy == nil, "\(r)")
        }
        // Mallory's deletion, sent again, is refused over Alice's value.
        let again = try await links[0].request(.memSync(Msg.MemEntries(entries: [deletion])), timeout: 10).message
        guard case .memEntries(let refused) = again else { throw TestGridError("Mallory's deletion was kept over Alice's value: \(again)") }
        #expect(refused.refused?[key]?.contains("held by another") == true, "\(refused)")

        // Honest deletion: Mallory kept a copy of Alice's sealed value (public: anyone may fetch it).
        guard case .memEntries(let fetched) = try await links[0].request(.memFetch(Msg.MemFetch(keys: [key])), timeout: 10).message,
            let stale = fetched.entries.first(where: { $0.key == key && $0.value != nil })
        else { throw TestGridError("no copy of the public value was fetched") }
        _ = try await alice.request(.delMem(Msg.MemKey(key: name)), timeout: 30)
        // Her deletion cannot be covered by Mallory's (which would bar only Mallory's copies), nor her stale copy kept.
        let cover = try worker.sealed(key, nil, version: ahead + 1000, signer: mine, authority: hers)
        for l in links {
            let answer = try await l.request(.memSync(Msg.MemEntries(entries: [cover])), timeout: 10).message
            guard case .memEntries(let m) = answer else { throw TestGridError("Mallory's deletion replaced Alice's: \(answer)") }
            #expect(m.refused?[key]?.contains("deleted here by alice") == true, "\(m)")
            let replay = try await l.request(.memSync(Msg.MemEntries(entries: [stale])), timeout: 10).message
            guard case .memEntries(let r) = replay else { throw TestGridError("Alice's stale value was kept over her deletion: \(replay)") }
            #expect(r.entries.contains { $0.key == key && $0.value == nil }, "\(r)")
        }
        for peer in peers {
            let l = try await g.link(peer)
            defer { l.close() }
            #expect(await code(l, .getMem(Msg.MemKey(key: name))) == .notFound)
        }
    }

    /// A client whose clock runs two hours ahead gives a write grant that runs out two hours from now by the peer's
    /// clock, longer than a grant counts for: every replica would refuse what the peer sealed under it, so the peer
    /// says so at the first write, naming the clock, and keeps nothing.
    @Test func aClientWhoseClockRunsAheadIsToldSoAtItsFirstWrite() async throws {
        let g = try await PeerGrid(label: "trust-clock")
        defer { g.shutdown() }
        let peers = try await g.startPeers(1)
        let c = try RawConnection(port: peers[0].port)
        let nonce = PeerTrust.nonce()
        c.send(#"{"type":"HELLO","id":1,"version":2,"token":"","nonce":"\#(nonce)"}"# + "\n")
        guard let ok = c.next("HELLO_OK"), let workerId = ok["worker_id"] as? String, let theirs = ok["nonce"] as? String else {
            throw TestGridError("the peer did not answer HELLO {nonce}")
        }
        let pass = try await g.alice.grantSource(workerId)
        let ahead = Int64(Date().timeIntervalSince1970) + 7200
        var bytes = ByteBuffer()
        try GridFrame(id: 2, .session(pass.session(holder: workerId, nonce: theirs, now: ahead))).write(to: &bytes)
        c.send(Array(bytes.readableBytesView))
        #expect(c.next("HELLO_OK") != nil, "the session opens: reading needs no grant")
        c.send(#"{"type":"SET_MEM","id":3,"key":"k","value":1}"# + "\n")
        let answer = c.readMessage(timeout: 10)
        #expect(answer?["type"] as? String == "ERROR" && (answer?["message"] as? String)?.contains("clock") == true, "\(answer ?? [:])")
    }

    /// A write grant counts for its time only, but an upload begun under it may end after: its manifest is sealed with
    /// the version and grant of its start, and kept by every owner. A new write on that session is refused, and a file
    /// name too long for any other peer to keep is refused before a byte is stored.
    @Test func anUploadOutlastsItsGrantAndALaterWriteDoesNot() async throws {
        let g = try await PeerGrid(label: "trust-grant-time")
        defer { g.shutdown() }
        let peers = try await g.startPeers(2)
        let link = try await PeerLink.connect(
            host: "127.0.0.1", port: peers[0].port,
            grant: { worker in
                var pass = try await g.alice.grantSource(worker)
                pass.writeSeconds = 2
                return pass
            }, tls: g.peerTLS())
        defer { link.close() }
        let long = String(repeating: "n", count: 700)
        #expect(await code(link, .putFile(Msg.PutFile(filename: long, size: 3))) == .badRequest)
        guard case .upload(let up) = try await link.request(.putFile(Msg.PutFile(filename: "late.txt", size: 3)), timeout: 30).message else {
            throw TestGridError("no UPLOAD")
        }
        // Past the grant's end (it is time itself that is waited for).
        try await Task.sleep(for: .seconds(3))
        _ = try await link.request(.putFileChunk(Msg.PutFileChunk(uploadId: up.uploadId, index: 0)), payload: ByteBuffer(string: "abc"), timeout: 30)
        guard case .fileStored = try await link.request(.putFileEnd(Msg.PutFileEnd(uploadId: up.uploadId, sha256: nil)), timeout: 30).message else {
            throw TestGridError("the upload did not end")
        }
        #expect(await code(link, .setMem(Msg.SetMem(key: "k", value: .number(1)))) == .forbidden)
        // Both owners kept the manifest (an owner that refused it would have failed PUT_FILE_END), and it reads
        // through the other peer.
        let other = try await g.link(peers[1])
        defer { other.close() }
        guard case .fileInfo(let info) = try await other.request(.getFile(Msg.FileRef(filename: "late.txt")), timeout: 30).message else {
            throw TestGridError("no FILE_INFO")
        }
        #expect(info.size == 3)
    }

    /// A chunk is at most `PeerNames.chunkSize` bytes, as every file's are: a proven peer's larger "chunk" (each read
    /// of it hashed 64 MiB on the peer's actor) is refused; one of the full size is kept and read back whole.
    @Test func aChunkLargerThanAnyFilesIsRefused() async throws {
        let g = try await PeerGrid(label: "trust-chunk")
        defer { g.shutdown() }
        let peers = try await g.startPeers(1)
        let (_, mine, worker) = try await g.rogueMallory()
        defer { worker.stop() }
        let link = try await worker.link(to: peers[0].port, signer: mine, tls: g.peerTLS())
        defer { link.close() }
        func put(_ bytes: [UInt8]) async throws -> (GridMessage, String) {
            let hash = SHA256Digest.hex(of: bytes)
            return (try await link.request(.chunkPut(Msg.ChunkData(hash: hash)), payload: ByteBuffer(bytes: bytes), timeout: 60).message, hash)
        }
        do {
            let (over, _) = try await put([UInt8](repeating: 7, count: PeerNames.chunkSize + 1))
            Issue.record("an oversized chunk was answered \(over)")
        } catch let e as GridError {
            #expect(e.code == .badRequest && e.message.contains("at most \(PeerNames.chunkSize) bytes"), "\(e)")
        }
        let (full, hash) = try await put([UInt8](repeating: 8, count: PeerNames.chunkSize))
        guard case .ok = full else { throw TestGridError("a full-size chunk was answered \(full)") }
        let back = try await link.request(.chunkGet(Msg.ChunkData(hash: hash)), timeout: 60)
        guard case .chunkData = back.message else { throw TestGridError("CHUNK_GET was answered \(back.message)") }
        #expect(back.payload?.readableBytes == PeerNames.chunkSize)
        guard case .chunkHave(let have) = try await link.request(.chunkHas(Msg.ChunkHashes(hashes: [hash, String(repeating: "0", count: 64)])), timeout: 30).message
        else { throw TestGridError("no CHUNK_HAVE") }
        #expect(have.hashes == [hash])
    }

    /// A proven peer that floods `MEM_SYNC` with entries whose seals fail costs a signature check each: once those
    /// reach `SealStrikes.allowed` in a window, its batches are refused whole, unchecked, for the rest of the window,
    /// while honest peers' replication goes on.
    @Test func aPeerThatSendsForgedEntriesInBulkIsRefusedUncheckedForAWhile() async throws {
        let g = try await PeerGrid(label: "trust-strikes")
        defer { g.shutdown() }
        let peers = try await g.startPeers(2)
        let (mallory, mine, worker) = try await g.rogueMallory()
        defer { worker.stop() }
        let hers = try await g.session(with: worker, token: mallory.token)
        let link = try await worker.link(to: peers[0].port, signer: mine, tls: g.peerTLS())
        defer { link.close() }
        let now = Int64(Date().timeIntervalSince1970 * 1000) + 1000
        // Her own keys (so no cheap rule refuses them first), each signed with a key her credential does not name: one
        // wasted signature check an entry. 250 a batch keeps a batch under the line limit.
        let wrong = PeerTrust.Signer()
        let perBatch = 250
        let batches = SealStrikes.allowed / perBatch
        var checked = 0
        var unchecked = 0
        for b in 0..<batches {
            let entries = try (0..<perBatch).map { i in
                try worker.sealed(
                    PeerNamespace.stored("junk-\(b)-\(i)", user: "mallory", kind: .memory), .number(Double(i)), version: now, signer: wrong, authority: hers)
            }
            let answer = try await link.request(.memSync(Msg.MemEntries(entries: entries)), timeout: 30).message
            guard case .memEntries(let m) = answer else { throw TestGridError("batch \(b) was answered \(answer)") }
            #expect(m.forbidden?.count == perBatch, "batch \(b): every forged entry is refused")
            let reasons = Array((m.refused ?? [:]).values)
            checked += reasons.filter { $0.contains("was not signed by its writer") }.count
            unchecked += reasons.filter { $0.contains("not checked") }.count
            #expect(reasons.count == perBatch)
        }
        // Her credential, certificate and grant were checked once (with her first forged entry), then each entry's own
        // signature: the last few of the last batch were past her allowance, refused unchecked.
        #expect(checked + unchecked == SealStrikes.allowed && checked >= SealStrikes.allowed - 3 && checked < SealStrikes.allowed, "\(checked) checked")
        // Her allowance is spent: the next batch, even one good entry of her own, is refused whole and unchecked.
        let own = try worker.sealed(PeerNamespace.stored("fine", user: "mallory", kind: .memory), .string("ok"), version: now, signer: mine, authority: hers)
        #expect(await code(link, .memSync(Msg.MemEntries(entries: [own]))) == .rateLimited)

        // Alice's writes still replicate between the honest peers, both ways.
        for (i, peer) in peers.enumerated() {
            let alice = try await g.link(peer)
            defer { alice.close() }
            _ = try await alice.request(.setMem(Msg.SetMem(key: "k\(i)", value: .number(Double(i)))), timeout: 30)
        }
        for peer in peers {
            let alice = try await g.link(peer)
            defer { alice.close() }
            for i in peers.indices { #expect(try await value(alice, "k\(i)") == .number(Double(i)), "k\(i) through \(peer.name)") }
        }
    }

    /// A peer that holds Alice's forwarding ticket (she sent a plain task through it: the manager gives one for that
    /// peer) sends tasks as Alice to an honest peer. They run in interpreters of hers that serve only that peer's
    /// forwards: what her own tasks left in hers is out of its reach (before, they shared her interpreters, and it read
    /// her earlier programs and could leave code that answered her later tasks).
    @Test func tasksForwardedAsAUserRunApartFromTheUsersOwnInterpreters() async throws {
        let g = try await PeerGrid(label: "trust-forward")
        defer { g.shutdown() }
        // One slot: Alice's tasks there take turns, and the next finds the interpreter the last one used.
        let honest = try await g.startPeers(1, slots: 1)[0]
        let (_, signer, rogue) = try await g.rogueMallory()
        defer { rogue.stop() }
        let alice = try await g.link(honest)
        defer { alice.close() }
        // Her task leaves a secret in the interpreter it ran in, and her next task reads it there. She may have more
        // than one interpreter (one per slot; under load her next task may find the first not yet back): she leaves it
        // again until one of hers shows it (at most five times), so that each she ran in holds it.
        let peek = "import builtins\ndef main():\n    return getattr(builtins, 'alice_secret', None)"
        var own: Msg.CPUResult?
        for n in 1...5 where own?.result != .string("s3cret") {
            let leave = Msg.CPUTask(
                taskId: "a-\(n)", program: "import builtins\ndef main(x):\n    builtins.alice_secret = x\n    return 1", args: .array([.string("s3cret")]))
            guard case .cpuResult(let left) = try await alice.request(.cpuTask(leave), timeout: 90).message, left.ok else {
                throw TestGridError("Alice's task failed")
            }
            guard case .cpuResult(let read) = try await alice.request(.cpuTask(Msg.CPUTask(taskId: "p-\(n)", program: peek, args: .array([]))), timeout: 90).message
            else { throw TestGridError("no CPU_RESULT") }
            own = read
        }
        #expect(own?.result == .string("s3cret"), "the test needs Alice's interpreter to keep its state between her tasks: \(String(describing: own))")

        let ticket = try #require(try await g.alice.grantSource(rogue.id).grant.forward, "the manager gave no forwarding ticket for Mallory's peer")
        let link = try await rogue.link(to: honest.port, signer: signer, tls: nil)
        defer { link.close() }
        var task = Msg.CPUTask(taskId: "m-1", program: peek, args: .array([]))
        task.ticket = ticket
        task.signature = signer.sign(PeerTrust.requestBytes(ticket: ticket, requestJSON: try GridJSON.encode(task)))
        guard case .cpuResult(let forwarded) = try await link.request(.cpuTask(task), timeout: 90).message else {
            throw TestGridError("no CPU_RESULT for the forwarded task")
        }
        #expect(forwarded.ok, "the forwarded task runs, as Alice: \(forwarded)")
        #expect(forwarded.result == nil || forwarded.result == .null, "a forwarded task saw what Alice's own task left: \(forwarded)")
    }

    /// A worker whose interpreters have no sandbox runs its owner's tasks only, sent to it directly: a peer holding the
    /// owner's ticket forwarded tasks to it as the owner and they ran outside any sandbox on the owner's machine.
    @Test func aWorkerWithoutATaskSandboxRefusesTasksForwardedAsItsOwner() async throws {
        let g = try await PeerGrid(label: "trust-owner-only")
        defer { g.shutdown() }
        let laptop = try await g.startPeer("alice-laptop", extra: ["--sandbox", "none"], environment: ["CAMPUSGRID_ALLOW_UNSANDBOXED": "0"])
        let (_, signer, rogue) = try await g.rogueMallory()
        defer { rogue.stop() }
        let ticket = try #require(try await g.alice.grantSource(rogue.id).grant.forward)
        let link = try await rogue.link(to: laptop.port, signer: signer, tls: nil)
        defer { link.close() }
        var task = Msg.CPUTask(taskId: "m-1", program: "import os\ndef main():\n    return os.getcwd()", args: .array([]))
        task.ticket = ticket
        task.signature = signer.sign(PeerTrust.requestBytes(ticket: ticket, requestJSON: try GridJSON.encode(task)))
        #expect(await code(link, .cpuTask(task)) == .forbidden)
        // Alice's own task, sent to it directly, still runs there.
        let alice = try await g.link(laptop)
        defer { alice.close() }
        guard case .cpuResult(let own) = try await alice.request(.cpuTask(Msg.CPUTask(taskId: "a-1", program: "def main():\n    return 7", args: .array([]))), timeout: 90).message
        else { throw TestGridError("no CPU_RESULT") }
        #expect(own.ok && own.result == .number(7), "\(own)")
    }
}
