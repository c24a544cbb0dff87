import Foundation
import GridClient
import GridCore
import GridPeer
import GridProtocol
import GridSandbox
import GridTestSupport
import Testing

@Suite(.serialized) struct MemoryTests {
    func get(_ link: PeerLink, _ key: String) async throws -> JSONValue? {
        guard case .memResult(let r) = try await link.request(.getMem(Msg.MemKey(key: key)), timeout: 30).message else { return nil }
        return r.value
    }

    /// `get`, tried again (at most three times in all) while the peer says "try again" (`unreachable`, `timeout`): on a
    /// loaded machine an owner may answer a peer's read too late, and the reader is then told so, never that the key
    /// does not exist (`aKeyWhoseOwnersDoNotAnswerIsNotSaidToBeAbsent`).
    func read(_ link: PeerLink, _ key: String) async throws -> JSONValue? {
        for attempt in 1...3 {
            do {
                return try await get(link, key)
            } catch let e as GridError where attempt < 3 && (e.code == .unreachable || e.code == .timeout) {
                print("read of \(key) said \(e.code.rawValue) (\(e.message)); trying again")
            }
        }
        return nil
    }

    /// Where alice's key is placed: keys are namespaced per user (issue 10), so placement hashes the stored key.
    func stored(_ key: String) -> String { PeerNamespace.stored(key, user: "alice", kind: .memory) }

    func localKeys(_ g: PeerGrid, _ peer: Peer) async throws -> Set<String> {
        let l = try await g.link(peer)
        defer { Task { await l.close() } }
        guard case .memKeys(let k) = try await l.request(.listMem(Msg.ListMem(prefix: "k", local: true))).message else { return [] }
        return Set(k.keys)
    }

    @Test func keysSurviveAPeerKillAndMoveToAJoiningPeer() async throws {
        let g = try await PeerGrid(label: "memory")
        defer { g.shutdown() }
        var peers = try await g.startPeers(3)
        var opened: [PeerLink] = []
        for p in peers { opened.append(try await g.link(p)) }
        let links = opened
        let keys = (0..<1000).map { "k\($0)" }

        // 1,000 keys set through different peers, a few at a time.
        for start in stride(from: 0, to: keys.count, by: 50) {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for i in start..<min(keys.count, start + 50) {
                    group.addTask {
                        _ = try await links[i % 3].request(.setMem(Msg.SetMem(key: keys[i], value: .number(Double(i)))), timeout: 30)
                    }
                }
                try await group.waitForAll()
            }
        }
        // Every key reads back through every peer.
        for (n, link) in links.enumerated() {
            for (i, key) in keys.enumerated() where (i + n) % 3 == 0 || n == 0 {
                #expect(try await read(link, key) == .number(Double(i)), "key \(key) through \(peers[n].name)")
            }
        }
        // Each key lives on its two owners. A peer that learned of the third late (a loaded machine) held more at
        // first and hands the rest over on its next sync, so this is waited for, bounded.
        let ids = peers.map(\.id)
        for (n, p) in peers.enumerated() {
            let expected = Set(keys.filter { Rendezvous.owners(of: stored($0), among: ids, replicas: 2).contains(ids[n]) })
            let settled = await eventually(timeout: 60, interval: 0.5) { (try? await localKeys(g, p)) == expected }
            let local = (try? await localKeys(g, p))?.count ?? -1
            #expect(settled, "\(p.name) holds \(local) keys, its share is \(expected.count)")
        }

        // SIGKILL one peer: every key still reads, through the others.
        peers[2].process.signal(SIGKILL)
        _ = await peers[2].process.waitForExit(timeout: 10)
        for link in links.prefix(2) {
            for (i, key) in keys.enumerated() where i % 2 == 0 || link === links[0] {
                #expect(try await read(link, key) == .number(Double(i)), "key \(key) after the kill")
            }
        }

        // A new peer joins and takes its share.
        let d = try await g.startPeer("peer-4")
        peers = [peers[0], peers[1], d]
        try await g.waitForMembership(peers)
        let newIds = peers.map(\.id)
        let share = Set(keys.filter { Rendezvous.owners(of: stored($0), among: newIds, replicas: 2).contains(d.id) })
        #expect(share.count > 300)
        let took = await eventually(timeout: 60, interval: 0.5) { (try? await localKeys(g, d)) == share }
        let held = (try? await localKeys(g, d))?.count ?? -1
        #expect(took, "the joining peer holds \(held) keys, its share is \(share.count)")
        // And the others let go of what is no longer theirs.
        for p in peers.prefix(2) {
            let mine = Set(keys.filter { Rendezvous.owners(of: stored($0), among: newIds, replicas: 2).contains(p.id) })
            let settled = await eventually(timeout: 60, interval: 0.5) { (try? await localKeys(g, p)) == mine }
            #expect(settled, "\(p.name) did not settle on its share")
        }
        let dl = try await g.link(d)
        for (i, key) in keys.enumerated() where i % 5 == 0 { #expect(try await read(dl, key) == .number(Double(i))) }
        for l in links { await l.close() }
        await dl.close()
    }

    /// A key whose owners all stopped answering (the manager not yet calling them offline) is not said to be absent:
    /// the peer read through, which never held it, lacking it proves nothing. The reader is told to try again, and
    /// reads it once the owners answer. (Said `not_found` before: the reading peer counted its own answer.)
    @Test func aKeyWhoseOwnersDoNotAnswerIsNotSaidToBeAbsent() async throws {
        // Stopped workers stay online for the whole test: offline only after two minutes of silence.
        let g = try await PeerGrid(label: "mem-owners-stopped", leaseSeconds: 120)
        defer { g.shutdown() }
        let peers = try await g.startPeers(3)
        let ids = peers.map(\.id)
        let key = try #require((0..<100).map { "s\($0)" }.first { !Rendezvous.owners(of: stored($0), among: ids, replicas: 2).contains(ids[0]) })
        let link = try await g.link(peers[0])
        _ = try await link.request(.setMem(Msg.SetMem(key: key, value: .string("kept"))), timeout: 30)
        for p in peers.dropFirst() { p.process.signal(SIGSTOP) }
        defer { for p in peers.dropFirst() { p.process.signal(SIGCONT) } }
        do {
            let value = try await get(link, key)
            Issue.record("read \(String(describing: value)) while the key's owners were stopped")
        } catch let e as GridError {
            #expect(e.code == .unreachable, "\(e.code.rawValue): \(e.message)")
        }
        for p in peers.dropFirst() { p.process.signal(SIGCONT) }
        #expect(try await read(link, key) == .string("kept"))
        await link.close()
    }

    /// A client that asks for a large value a thousand times and reads none of the answers had every answer queued
    /// on the peer (the fast path's too): a quarter of a gigabyte a thousand reads. While its answers wait unread past
    /// a mark, what it sent waits too; once it reads, every answer comes, in order.
    @Test func aClientThatReadsNoAnswerHoldsLittleOfThePeersMemory() async throws {
        let g = try await PeerGrid(label: "mem-unread")
        defer { g.shutdown() }
        let peers = try await g.startPeers(1)
        let link = try await g.link(peers[0])
        let big = String(repeating: "x", count: PeerNames.maxValueBytes - 1_024)
        _ = try await link.request(.setMem(Msg.SetMem(key: "big", value: .string(big))), timeout: 30)
        let raw = try await g.rawSession(peers[0])
        let pid = peers[0].process.pid
        let before = PeerGrid.peakRSSKb(pid)
        let asks = 1_000
        #expect(raw.send((0..<asks).map { #"{"type":"GET_MEM","id":\#(100 + $0),"key":"big"}"# + "\n" }.joined()))
        // Watched for a while (bounded): without the bound the peer grew by the whole of it within a second or two.
        let grew = await eventually(timeout: 5) { PeerGrid.peakRSSKb(pid) - before > 96 << 10 }
        #expect(!grew, "the peer grew by \((PeerGrid.peakRSSKb(pid) - before) >> 10) MiB for answers nobody read")
        // The peer still serves others meanwhile.
        #expect(try await get(link, "big") == .string(big))
        // Read now: every ask is answered once.
        var ids: Set<Int> = []
        for i in 0..<asks {
            guard let line = raw.readLine(timeout: 30) else {
                Issue.record("answer \(i) never came")
                break
            }
            let id = (try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])?["id"] as? Int
            #expect(id.map { (100..<(100 + asks)).contains($0) } == true && line.contains(#""type":"MEM_RESULT""#), "\(line.prefix(80))")
            ids.insert(id ?? -1)
        }
        #expect(ids.count == asks)
        #expect(PeerGrid.peakRSSKb(pid) - before < 96 << 10, "the peer grew by \((PeerGrid.peakRSSKb(pid) - before) >> 10) MiB")
        await link.close()
    }

    @Test func badMemoryRequestsGetClearErrors() async throws {
        let g = try await PeerGrid(label: "memory-bad")
        defer { g.shutdown() }
        let peers = try await g.startPeers(2)
        let link = try await g.link(peers[0])
        func code(_ m: GridMessage) async -> GridError.Code? {
            do {
                _ = try await link.request(m)
                return nil
            } catch let e as GridError { return e.code } catch { return nil }
        }
        #expect(await code(.getMem(Msg.MemKey(key: "no-such-key"))) == .notFound)
        #expect(await code(.setMem(Msg.SetMem(key: "big", value: .string(String(repeating: "x", count: PeerNames.maxValueBytes + 10))))) == .badRequest)
        #expect(await code(.setMem(Msg.SetMem(key: "a\u{0}b", value: .number(1)))) == .badRequest)
        #expect(await code(.setMem(Msg.SetMem(key: "", value: .number(1)))) == .badRequest)
        #expect(await code(.delMem(Msg.MemKey(key: "no-such-key"))) == .notFound)
        // A null value would be a value here and a deletion on the wire: refused.
        #expect(await code(.setMem(Msg.SetMem(key: "nothing", value: .null))) == .badRequest)
        // Values the cheap size bound over-counts (24 bytes a number, 2 a slash) but whose text is within the limit: kept
        // by every owner, not only by the peer written to (the other measured them by the bound, and refused them).
        let numbers = JSONValue.array(Array(repeating: .number(1), count: 100_000))
        let slashes = JSONValue.string(String(repeating: "/", count: 200_000))
        let second = try await g.link(peers[1])
        for (key, value) in [("numbers", numbers), ("slashes", slashes)] {
            _ = try await link.request(.setMem(Msg.SetMem(key: key, value: value)), timeout: 30)
            guard case .memKeys(let held) = try await second.request(.listMem(Msg.ListMem(prefix: key, local: true))).message else {
                throw TestGridError("no MEM_KEYS")
            }
            #expect(held.keys == [key], "\(key) is not held by the second owner")
        }
        await second.close()
        // Peer-only messages are refused to a person's token.
        #expect(await code(.memSync(Msg.MemEntries(entries: []))) == .forbidden)
        #expect(await code(.chunkGet(Msg.ChunkData(hash: String(repeating: "a", count: 64)))) == .forbidden)
        // Set, delete, then it is gone everywhere.
        _ = try await link.request(.setMem(Msg.SetMem(key: "temp", value: .string("v"))))
        _ = try await link.request(.delMem(Msg.MemKey(key: "temp")))
        let other = try await g.link(peers[1])
        do {
            _ = try await other.request(.getMem(Msg.MemKey(key: "temp")))
            Issue.record("a deleted key still reads")
        } catch let e as GridError { #expect(e.code == .notFound) }
        // The CLI says it in words, with a non-zero status.
        let r = try await g.cli(["--port", "\(peers[0].port)", "get-mem", "--key", "missing"])
        #expect(r.status != 0 && r.stderr.contains("no value for key"))
        let unknown = try await g.cli(["--port", "1", "get-mem", "--key", "x"])
        #expect(unknown.status != 0 && unknown.stderr.contains("cannot reach the peer"))
        await link.close()
        await other.close()
    }

    @Test func malformedAndUnauthenticatedInputIsRefusedWithoutACrash() async throws {
        let g = try await PeerGrid(label: "peer-malformed")
        defer { g.shutdown() }
        let peers = try await g.startPeers(1)
        let port = peers[0].port
        // Not JSON before HELLO: an ERROR, and the connection closes.
        for (line, code) in [("this is not json", "malformed_message"), (#"{"type":"GET_MEM","id":7,"key":"x"}"#, "not_authenticated")] {
            let c = try RawConnection(port: port)
            c.send(line + "\n")
            let reply = c.readLine(timeout: 10) ?? ""
            #expect(reply.contains(code), "\(line): \(reply)")
            #expect(c.isClosed(timeout: 10), "\(line): the connection stayed open")
        }
        // A token (a peer takes none).
        let b = rawExchange(port: port, send: "{\"type\":\"HELLO\",\"id\":1,\"version\":2,\"token\":\"nope\"}\n", lines: 1)
        #expect(b.first?.contains("unauthorized") == true, "\(b)")
        // A session open, then garbage: unknown type, missing fields, an oversized bulk announcement.
        let session = try await g.rawSession(peers[0])
        session.send("{\"type\":\"FROBNICATE\",\"id\":3}\n{\"type\":\"SET_MEM\",\"id\":4}\n{\"type\":\"PUT_FILE_CHUNK\",\"id\":5,\"bytes\":999999999999}\n")
        let c = (0..<3).compactMap { _ in session.readLine(timeout: 10) }
        #expect(c.count == 3, "\(c)")
        #expect(c.first?.contains("unknown_message") == true, "\(c)")
        #expect(c.dropFirst().first?.contains("malformed_message") == true, "\(c)")
        #expect(c.dropFirst(2).first?.contains("bulk_too_large") == true, "\(c)")
        // The peer is still alive and answering.
        let l = try await g.link(peers[0])
        _ = try await l.request(.setMem(Msg.SetMem(key: "still", value: .bool(true))))
        #expect(peers[0].process.isRunning)
        await l.close()
    }
}
