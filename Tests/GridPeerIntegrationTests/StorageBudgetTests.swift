import Foundation
import GridClient
import GridCore
import GridPeer
import GridProtocol
import GridSandbox
import GridTestSupport
import Testing

/// A contributor lends a share of their machine's memory and disk to the grid's shared storage, and no more: one
/// stranger cannot fill it, nor crowd the others out (`--share-memory-mb`, `--share-disk-mb`).
@Suite(.serialized) struct StorageBudgetIntegrationTests {
    func failure(_ body: () async throws -> Void) async -> GridError? {
        do {
            try await body()
            return nil
        } catch let e as GridError { return e } catch { return GridError(.internal, "\(error)") }
    }

    /// Two peers own every key (two copies). The second lends 1 MiB, a quarter of it per person: alice's fifth
    /// 60 KiB value does not fit there, and its `MEM_SYNC` answer says so, through the first peer, to alice. Bob still
    /// writes; alice may always delete, and then writes again.
    @Test func onePersonsShareOfAPeersMemoryIsBoundedAndTheRefusalCrossesThePeers() async throws {
        let g = try await PeerGrid(label: "membudget")
        defer { g.shutdown() }
        let roomy = try await g.startPeer("roomy")
        let small = try await g.startPeer("small", extra: ["--share-memory-mb", "1"])
        try await g.waitForMembership([roomy, small])
        let alice = try await g.link(roomy)
        defer { alice.close() }
        let big = JSONValue.string(String(repeating: "a", count: 60 << 10))
        for i in 0..<4 {
            guard case .memResult(let r) = try await alice.request(.setMem(Msg.SetMem(key: "big-\(i)", value: big)), timeout: 30).message else {
                throw TestGridError("no MEM_RESULT")
            }
            #expect(Set(r.owners) == [roomy.id, small.id], "big-\(i) went to \(r.owners)")
        }
        let refusal = await failure { _ = try await alice.request(.setMem(Msg.SetMem(key: "big-4", value: big)), timeout: 30) }
        #expect(refusal?.code == .insufficientStorage, "\(String(describing: refusal))")
        #expect(refusal?.message.contains("one person's share here is 256 KiB") == true, "\(String(describing: refusal))")
        #expect(refusal?.message.contains("peer \(small.id)") == true, "\(String(describing: refusal))")

        let bob = try await g.grid.user("bob")
        let bobLink = try await g.link(roomy, token: bob.token)
        defer { bobLink.close() }
        guard case .memResult(let b) = try await bobLink.request(.setMem(Msg.SetMem(key: "big-0", value: big)), timeout: 30).message else {
            throw TestGridError("bob's write failed")
        }
        #expect(Set(b.owners) == [roomy.id, small.id])

        _ = try await alice.request(.delMem(Msg.MemKey(key: "big-0")), timeout: 30)
        guard case .memResult(let again) = try await alice.request(.setMem(Msg.SetMem(key: "big-4", value: big)), timeout: 30).message else {
            throw TestGridError("alice could not write after deleting")
        }
        #expect(Set(again.owners) == [roomy.id, small.id])
    }

    /// Peers with little room join a peer that holds alice's keys alone: the keys they now own move to them as far as
    /// they fit, and the first peer keeps every key they refused rather than drop it. Nothing is lost.
    @Test func aKeyThatNewOwnersHaveNoRoomForIsKeptNotDropped() async throws {
        let g = try await PeerGrid(label: "membudget-move")
        defer { g.shutdown() }
        let first = try await g.startPeer("first")
        let alice = try await g.link(first)
        defer { alice.close() }
        let keys = (0..<12).map { "move-\($0)" }
        func value(_ i: Int) -> JSONValue { .string(String(repeating: "\(i % 10)", count: 60 << 10)) }
        for (i, key) in keys.enumerated() { _ = try await alice.request(.setMem(Msg.SetMem(key: key, value: value(i))), timeout: 30) }
        let small = [
            try await g.startPeer("small-1", extra: ["--share-memory-mb", "1"]), try await g.startPeer("small-2", extra: ["--share-memory-mb", "1"]),
        ]
        try await g.waitForMembership([first] + small)
        // Every key now has a small peer among its two owners (about eight each: 480 KiB, past their 256 KiB share), and
        // about a third have the two small peers alone: the first peer would drop those once they are copied.
        let moved = await eventually(timeout: 60, interval: 0.5) {
            var held: Int64 = 0
            for p in small { held += (try? await g.status(p).storage?.memoryBytes) ?? 0 }
            return held > 0
        }
        #expect(moved, "no key moved to the small peers")
        // Two more repair passes (one a second), then every key still reads back whole.
        try await Task.sleep(for: .seconds(3))
        for (i, key) in keys.enumerated() {
            guard case .memResult(let r) = try await alice.request(.getMem(Msg.MemKey(key: key)), timeout: 30).message else {
                Issue.record("\(key) is gone")
                continue
            }
            #expect(r.value == value(i), "\(key)")
        }
    }

    /// A peer lending 10 MiB of disk holds two 4 MiB chunks and refuses a third with a reason; after a restart it
    /// counts what its disk already holds, so the limit holds across restarts too.
    @Test func aPeersDiskForFileChunksIsBoundedAndCountedAgainAfterARestart() async throws {
        let g = try await PeerGrid(label: "diskbudget")
        defer { g.shutdown() }
        var peer = try await g.startPeer("lender", extra: ["--share-disk-mb", "10"])
        /// A file whose every 4 MiB chunk differs (chunks are stored once by content).
        func content(_ byte: UInt8, _ size: Int) -> Data {
            Data((0..<size).map { byte &+ UInt8(truncatingIfNeeded: $0 / PeerNames.chunkSize) })
        }
        func file(_ name: String, _ byte: UInt8, _ size: Int) throws -> String {
            let path = g.grid.root + "/" + name
            try content(byte, size).write(to: URL(fileURLWithPath: path))
            return path
        }
        var link = try await g.link(peer)
        let first = try await link.upload(path: try file("first.bin", 0x31, 8 << 20), as: "first.bin")
        #expect(first.size == 8 << 20)
        let second = try file("second.bin", 0x41, 8 << 20)
        let refusal = await failure { _ = try await link.upload(path: second, as: "second.bin") }
        #expect(refusal?.code == .insufficientStorage, "\(String(describing: refusal))")
        #expect(refusal?.message.contains("file chunks are full") == true && refusal?.message.contains("10 MiB") == true, "\(String(describing: refusal))")
        // The refusal damaged nothing: the first file reads back whole.
        let back = g.grid.root + "/first-back.bin"
        _ = try await link.download("first.bin", to: back)
        #expect(try Data(contentsOf: URL(fileURLWithPath: back)) == content(0x31, 8 << 20))
        link.close()

        peer.process.stop()
        peer = try await g.startPeer("lender", extra: ["--share-disk-mb", "10"])
        link = try await g.link(peer)
        defer { link.close() }
        let counted = try await g.status(peer).storage
        // Two 4 MiB chunks, each counted with a block for its inode and directory entry.
        #expect(counted?.diskBytes == 2 * ((4 << 20) + 4096) && counted?.diskLimit == 10 << 20, "\(String(describing: counted))")
        let after = await failure { _ = try await link.upload(path: second, as: "second.bin") }
        #expect(after?.code == .insufficientStorage, "after a restart: \(String(describing: after))")
        // What fits still goes in.
        let small = try await link.upload(path: try file("small.bin", 0x51, 1 << 20), as: "small.bin")
        #expect(small.size == 1 << 20)
    }

    @Test func sharesOutsideTheirRangeAreRefusedAtStart() async throws {
        let grid = try TestGrid(label: "sharerange")
        defer { grid.shutdown() }
        for args in [["--share-memory-mb", "0"], ["--share-disk-mb=-1"], ["--share-disk-mb", "99999999999"]] {
            let r = try await grid.cli(["worker", "-m", "127.0.0.1:1"] + args, timeout: 60)
            #expect(r.status != 0, "\(args)")
            #expect(r.stderr.contains("must be 1–16777216 MiB") || r.stderr.contains("not a valid"), "\(args): \(r.stderr)")
        }
    }
}
