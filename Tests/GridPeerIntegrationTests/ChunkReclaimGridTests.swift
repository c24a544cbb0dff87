import Crypto
import Foundation
import GridClient
import GridCore
import GridPeer
import GridProtocol
import GridSandbox
import GridTestSupport
import NIOCore
import Testing

/// Deleting a file frees its chunks on every peer once no file names them (issue 17's storage, and trust: one
/// person's uploads and deletions no longer fill every contributor's lent disk for good), while a chunk another
/// user's file shares, or an upload in progress holds, stays.
@Suite(.serialized) struct ChunkReclaimGridTests {
    /// Real peers whose chunk leases last 2 s, not a week, and whose membership needs to have been still for 1 s.
    static let quick = ["CAMPUSGRID_PEER_CHUNK_LEASE_SECONDS": "2", "CAMPUSGRID_PEER_RECLAIM_STABLE_SECONDS": "1"]

    static func content(_ seed: UInt8, _ size: Int) -> Data { Data((0..<size).map { seed &+ UInt8(truncatingIfNeeded: $0 &* 7 / 5) }) }

    @Test func aDeletedFilesChunksGoFromEveryPeerWhileSharedAndUploadingOnesStay() async throws {
        let g = try await PeerGrid(label: "reclaim")
        defer { g.shutdown() }
        // Three peers, two copies of everything: a chunk's owners need not hold the manifests that name it, nor the
        // upload that stored it, so they must ask the others.
        var peers: [Peer] = []
        for i in 1...3 { peers.append(try await g.startPeer("peer-\(i)", environment: Self.quick)) }
        try await g.waitForMembership(peers)
        let ids = peers.map(\.id)
        let bob = try await g.grid.user("bob")
        let alice = try await g.link(peers[0])
        let bobs = try await g.link(peers[0], token: bob.token)
        defer {
            alice.close()
            bobs.close()
        }
        func write(_ name: String, _ data: Data) throws -> String {
            let path = g.grid.root + "/" + name
            try data.write(to: URL(fileURLWithPath: path))
            return path
        }
        func held() -> [String: Set<String>] { Dictionary(uniqueKeysWithValues: peers.map { ($0.id, Set(PeerGrid.chunkFiles($0).keys)) }) }
        /// Every peer that should hold `hash` holds it.
        func onEveryPeer(_ hash: String) -> Bool {
            let now = held()
            return Rendezvous.owners(of: hash, among: ids, replicas: 2).allSatisfy { now[$0]?.contains(hash) == true }
        }
        func onNoPeer(_ hash: String) -> Bool { held().values.allSatisfy { !$0.contains(hash) } }
        /// Each copy of `hash`, by peer, as its inode: a copy reclaimed and made again by the repair pass is a new file.
        func copies(_ hash: String) -> [String: UInt64] {
            var out: [String: UInt64] = [:]
            for p in peers {
                var st = stat()
                guard let path = PeerGrid.chunkFiles(p)[hash], stat(path, &st) == 0 else { continue }
                out[p.id] = UInt64(st.st_ino)
            }
            return out
        }
        /// `copies`, each held by a hard link of the test's own so that its inode number cannot be given to a new file.
        let links = g.grid.root + "/links"
        try FileManager.default.createDirectory(atPath: links, withIntermediateDirectories: true)
        func hold(_ hash: String) -> [String: UInt64] {
            for p in peers { if let path = PeerGrid.chunkFiles(p)[hash] { link(path, links + "/\(p.name)-\(hash)") } }
            return copies(hash)
        }
        /// When each copy of `hash` was last stored or renewed.
        func renewed(_ hash: String) -> [String: Int] {
            var out: [String: Int] = [:]
            for p in peers {
                var st = stat()
                guard let path = PeerGrid.chunkFiles(p)[hash], stat(path, &st) == 0 else { continue }
                out[p.id] = st.st_mtim.tv_sec
            }
            return out
        }

        // An upload in progress: its first chunk is stored, its last is not, so no manifest names the first yet.
        let chunk = PeerNames.chunkSize
        let slow = Self.content(9, chunk + 100)
        guard case .upload(let up) = try await alice.request(.putFile(Msg.PutFile(filename: "slow.bin", size: Int64(slow.count)))).message else {
            Issue.record("no upload")
            return
        }
        guard case .ok(let first)? = try? await alice.request(.putFileChunk(Msg.PutFileChunk(uploadId: up.uploadId, index: 0)), payload: ByteBuffer(bytes: slow.prefix(chunk))).message,
            let slowFirst = first.detail
        else {
            Issue.record("the first chunk was not stored")
            return
        }

        // Alice's two files, and Bob's with the same bytes as her second: one chunk each, shared by content.
        let gone = try await alice.upload(path: try write("gone.bin", Self.content(1, 300_000)), as: "gone.bin")
        let shared = try await alice.upload(path: try write("shared.bin", Self.content(2, 300_000)), as: "shared.bin")
        // Bob's file is named so that one of its chunk's owners holds no copy of its manifest.
        let bobsName = try #require(
            (0..<100).lazy.map { "bobs-\($0).bin" }.first { name in
                let manifestAt = Set(Rendezvous.owners(of: PeerNamespace.stored(name, user: "bob", kind: .file), among: ids, replicas: 2))
                return !Set(Rendezvous.owners(of: shared.chunks[0], among: ids, replicas: 2)).isSubset(of: manifestAt)
            })
        let bobsCopy = try await bobs.upload(path: try write("bobs.bin", Self.content(2, 300_000)), as: bobsName)
        #expect(shared.chunks == bobsCopy.chunks)
        let (goneChunk, sharedChunk) = (gone.chunks[0], shared.chunks[0])
        #expect(await eventually(timeout: 60) { onEveryPeer(goneChunk) && onEveryPeer(sharedChunk) && onEveryPeer(slowFirst) }, "\(held())")

        let (sharedCopies, slowCopies) = (hold(sharedChunk), hold(slowFirst))
        let sharedStored = renewed(sharedChunk)
        // A person can neither ask what the peers use nor renew chunks (only peers reclaim and renew).
        for request in [GridMessage.chunkRefs(Msg.ChunkRefs(hashes: [goneChunk], members: "")), .chunkKeep(Msg.ChunkHashes(hashes: [goneChunk]))] {
            do {
                _ = try await alice.request(request)
                Issue.record("a person's \(request.type) was answered")
            } catch let e as GridError {
                #expect(e.code == .forbidden, "\(e)")
            }
        }

        // Alice deletes both of hers. The chunk no file names goes from both peers; Bob's keeps the shared one.
        _ = try await alice.request(.deleteFile(Msg.FileRef(filename: "gone.bin")))
        _ = try await alice.request(.deleteFile(Msg.FileRef(filename: "shared.bin")))
        #expect(await eventually(timeout: 90) { onNoPeer(goneChunk) }, "the deleted file's chunk stayed: \(held())")
        // Each peer reclaimed `gone`'s chunk in a round where it was past its lease; the upload's first chunk, stored
        // before it, was too (nothing renews it but the upload), and was kept.
        #expect(copies(sharedChunk) == sharedCopies, "Bob's file lost its chunk: \(held())")
        #expect(copies(slowFirst) == slowCopies, "the upload in progress lost its first chunk: \(held())")
        let back = g.grid.root + "/bobs-back.bin"
        _ = try await bobs.download(bobsName, to: back)
        #expect(try Data(contentsOf: URL(fileURLWithPath: back)) == Self.content(2, 300_000))
        // The count of held bytes follows the disk (what `--share-disk-mb` is checked against).
        for p in peers {
            let files = PeerGrid.chunkFiles(p).values.map { path -> Int64 in
                let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
                let blocks = (Int64(size) + 4095) / 4096
                return blocks * 4096 + 4096
            }
            #expect(try await g.status(p).storage?.diskBytes == files.reduce(0, +), "\(p.name)")
        }

        // The upload ends, long after its first chunk's lease, and reads back whole.
        _ = try await alice.request(.putFileChunk(Msg.PutFileChunk(uploadId: up.uploadId, index: 1)), payload: ByteBuffer(bytes: slow.suffix(100)))
        guard case .fileStored = try await alice.request(.putFileEnd(Msg.PutFileEnd(uploadId: up.uploadId, sha256: nil))).message else {
            Issue.record("the upload did not end")
            return
        }
        _ = try await alice.download("slow.bin", to: g.grid.root + "/slow-back.bin")
        #expect(try Data(contentsOf: URL(fileURLWithPath: g.grid.root + "/slow-back.bin")) == slow)

        // The deleted bytes stored again (a new file, after their chunk went) stay through later rounds: a file names
        // them now. Another deleted file going proves the rounds ran past this one's lease.
        let again = try await alice.upload(path: try write("again.bin", Self.content(1, 300_000)), as: "again.bin")
        #expect(again.chunks == gone.chunks)
        let later = try await alice.upload(path: try write("later.bin", Self.content(3, 300_000)), as: "later.bin")
        #expect(await eventually(timeout: 60) { onEveryPeer(later.chunks[0]) && onEveryPeer(goneChunk) })
        let againCopies = hold(goneChunk)
        _ = try await alice.request(.deleteFile(Msg.FileRef(filename: "later.bin")))
        #expect(await eventually(timeout: 90) { onNoPeer(later.chunks[0]) }, "\(held())")
        #expect(copies(goneChunk) == againCopies, "a stored file's chunk was reclaimed: \(held())")
        // Bob's chunk, stored once, lived through every round since, its copies renewed by the peers holding his
        // manifest (leases of 2 s: they would have gone long ago).
        #expect(copies(sharedChunk) == sharedCopies, "Bob's file lost its chunk: \(held())")
        let now = renewed(sharedChunk)
        #expect(now.keys.sorted() == sharedStored.keys.sorted() && now.allSatisfy { $0.value > sharedStored[$0.key] ?? .max }, "\(sharedStored) → \(now)")
        _ = try await alice.download("again.bin", to: g.grid.root + "/again-back.bin")
        #expect(try Data(contentsOf: URL(fileURLWithPath: g.grid.root + "/again-back.bin")) == Self.content(1, 300_000))
        #expect(peers.allSatisfy { $0.process.isRunning })
    }
}
