import GridCore
import GridPeer
import Testing

@Suite struct MemoryTableTests {
    @Test func newerVersionsWinAndOlderOnesAreIgnored() {
        var t = MemoryTable()
        let r1 = t.apply("k", .init(value: .number(1), version: 10, origin: "w-a"))
        #expect(r1)
        let r2 = t.apply("k", .init(value: .number(0), version: 9, origin: "w-b"))
        #expect(!r2)
        let r3 = t.apply("k", .init(value: .number(2), version: 11, origin: "w-a"))
        #expect(r3)
        // Same version: the origin breaks the tie, the same way on every peer.
        let r4 = t.apply("k", .init(value: .number(3), version: 11, origin: "w-b"))
        #expect(r4)
        let r5 = t.apply("k", .init(value: .number(4), version: 11, origin: "w-a"))
        #expect(!r5)
        #expect(t.get("k")?.value == .number(3))
    }

    @Test func tombstonesHideKeysAndStopStaleCopiesFromReturning() {
        var t = MemoryTable()
        t.apply("k", .init(value: .string("v"), version: 1, origin: "w-a"))
        t.apply("k", .init(value: nil, version: 2, origin: "w-a"))
        #expect(t.keys(prefix: "") == [])
        let r6 = t.apply("k", .init(value: .string("v"), version: 1, origin: "w-a"))
        #expect(!r6)
        t.collectGarbage(now: 2 + t.tombstoneTTL + 1)
        #expect(t.get("k") == nil)
    }

    /// A stranger's deletion of a public name, as new as its writer likes, held where nothing of the name was (an
    /// orphan): the owner's older value takes its place, and so does the owner's own older deletion (which then bars
    /// her stale copies). A deletion that deleted a value here bars every older copy: a replay of a deleted value
    /// stays out, even after the name passed to another person and was deleted again.
    @Test func aPublicValueTakesThePlaceOfAStrangersOrphanDeletion() {
        let key = PeerNamespace.stored("notice", user: nil, kind: .memory)
        let hers = PeerNamespace.wrap(.string("by alice"), owner: "alice")
        var t = MemoryTable()
        #expect(t.store(key, .init(value: nil, version: 500, origin: "w-m"), writer: "mallory") == .kept)
        #expect(t.heldDeletions[key] == MemoryTable.HeldDeletion(by: "mallory", orphan: true))
        #expect(t.store(key, .init(value: hers, version: 100, origin: "w-a"), writer: "alice") == .kept)
        #expect(t.get(key)?.value == hers && t.heldDeletions[key] == nil)
        #expect(t.heldByOwner["mallory"] == nil && (t.heldByOwner["alice"] ?? 0) > 0, "\(t.heldByOwner)")

        // Alice's own older deletion takes the place of Mallory's orphan one, and then bars her stale copy.
        var churn = MemoryTable()
        churn.store(key, .init(value: nil, version: 500, origin: "w-m"), writer: "mallory")
        #expect(churn.store(key, .init(value: nil, version: 200, origin: "w-a"), writer: "alice") == .kept)
        #expect(churn.heldDeletions[key] == MemoryTable.HeldDeletion(by: "alice", orphan: true))
        #expect(churn.store(key, .init(value: hers, version: 100, origin: "w-a"), writer: "alice") == .lost)

        // Honest: Alice's deletion of her value bars its replay, whoever deletes after her.
        var honest = MemoryTable()
        honest.store(key, .init(value: hers, version: 100, origin: "w-a"), writer: "alice")
        #expect(honest.store(key, .init(value: nil, version: 200, origin: "w-a"), writer: "alice") == .kept)
        #expect(honest.heldDeletions[key] == MemoryTable.HeldDeletion(by: "alice", orphan: false))
        #expect(honest.store(key, .init(value: hers, version: 100, origin: "w-a"), writer: "alice") == .lost)
        // Mallory's older deletion over it is moot (counted as kept; nothing changes), a newer one takes its place and
        // still bars Alice's replay (it deleted a value here in its turn, by inheritance).
        #expect(honest.store(key, .init(value: nil, version: 150, origin: "w-m"), writer: "mallory") == .kept)
        #expect(honest.get(key)?.version == 200 && honest.heldDeletions[key]?.by == "alice")
        #expect(honest.store(key, .init(value: nil, version: 300, origin: "w-m"), writer: "mallory") == .kept)
        #expect(honest.heldDeletions[key] == MemoryTable.HeldDeletion(by: "mallory", orphan: false))
        #expect(honest.store(key, .init(value: hers, version: 100, origin: "w-a"), writer: "alice") == .lost)
        // The name passed to Mallory (newer), and she deleted it: Alice's old value, replayed, stays out.
        let mine = PeerNamespace.wrap(.string("by mallory"), owner: "mallory")
        #expect(honest.store(key, .init(value: mine, version: 400, origin: "w-m"), writer: "mallory") == .kept)
        #expect(honest.store(key, .init(value: nil, version: 450, origin: "w-m"), writer: "mallory") == .kept)
        #expect(honest.store(key, .init(value: hers, version: 100, origin: "w-a"), writer: "alice") == .lost)
        #expect(honest.get(key)?.value == nil)

        // Private keys: versions alone.
        let diary = PeerNamespace.stored("diary", user: "alice", kind: .memory)
        var own = MemoryTable()
        own.store(diary, .init(value: nil, version: 500, origin: "w-m"), writer: "mallory")
        #expect(own.store(diary, .init(value: .string("x"), version: 100, origin: "w-a"), writer: "alice") == .lost)
        #expect(own.heldDeletions.isEmpty)
        // A deletion forgotten (the TTL) forgets its record too.
        t.store(key, .init(value: nil, version: 600, origin: "w-a"), writer: "alice")
        t.collectGarbage(now: 600 + t.tombstoneTTL + 1)
        #expect(t.get(key) == nil && t.heldDeletions[key] == nil)
    }

    @Test func underDeletionIsDecidedByWhoseAndWhetherItDeletedAnything() {
        let key = PeerNamespace.stored("n", user: nil, kind: .file)
        let hers = PeerNamespace.wrap(.string("x"), owner: "alice")
        let orphanOfMallory = MemoryTable.HeldDeletion(by: "mallory", orphan: true)
        let mallorysOverValue = MemoryTable.HeldDeletion(by: "mallory", orphan: false)
        #expect(MemoryTable.underDeletion(key, value: hers, writer: "alice", held: orphanOfMallory) == .replaces)
        #expect(MemoryTable.underDeletion(key, value: hers, writer: "alice", held: mallorysOverValue) == .loses)
        #expect(MemoryTable.underDeletion(key, value: hers, writer: "alice", held: .init(by: "alice", orphan: true)) == .loses)
        #expect(MemoryTable.underDeletion(key, value: hers, writer: "alice", held: .init(by: nil, orphan: true)) == .loses)
        #expect(MemoryTable.underDeletion(key, value: hers, writer: "alice", held: nil) == .loses)
        #expect(MemoryTable.underDeletion(key, value: nil, writer: "alice", held: orphanOfMallory) == .replaces)
        #expect(MemoryTable.underDeletion(key, value: nil, writer: "alice", held: mallorysOverValue) == .isMoot)
        #expect(MemoryTable.underDeletion(key, value: nil, writer: "mallory", held: mallorysOverValue) == .loses)
        #expect(MemoryTable.underDeletion(key, value: nil, writer: nil, held: orphanOfMallory) == .loses)
        #expect(MemoryTable.underDeletion(PeerNamespace.stored("n", user: "alice", kind: .file), value: hers, writer: "alice", held: orphanOfMallory) == .loses)
    }

    @Test func rebalanceSendsKeysToNewOwnersAndDropsKeysNoLongerOwned() {
        var t = MemoryTable()
        for i in 0..<300 { t.apply("k\(i)", .init(value: .number(Double(i)), version: 1, origin: "w-a")) }
        let peers = ["w-a", "w-b", "w-c", "w-d"]
        let moves = t.rebalance(selfId: "w-a", peers: peers, replicas: 2)
        for m in moves {
            let owners = Rendezvous.owners(of: m.key, among: peers, replicas: 2)
            #expect(Set(m.sendTo) == Set(owners.filter { $0 != "w-a" }))
            #expect(m.dropAfter == !owners.contains("w-a"))
        }
        #expect(moves.contains { $0.dropAfter })
        #expect(t.rebalance(selfId: "w-a", peers: ["w-a"], replicas: 2).isEmpty)
    }

    @Test func versionsAlwaysIncrease() {
        var c = VersionClock()
        #expect(c.next(nowMs: 100) == 100)
        #expect(c.next(nowMs: 100) == 101)
        #expect(c.next(nowMs: 50) == 102)
        #expect(c.next(nowMs: 500) == 500)
    }

    /// A seal is kept with its entry, a deletion's too (kept a day): both are counted, so deletions of made-up keys
    /// cannot hold more than the budget says.
    @Test func aSealIsCountedWithItsEntryDeletionsToo() {
        let seal = String(repeating: "s", count: 1200)
        let bare = MemoryTable.size(of: "k", MemoryTable.Entry(value: nil, version: 1, origin: "w"))
        #expect(MemoryTable.size(of: "k", MemoryTable.Entry(value: nil, version: 1, origin: "w", seal: seal)) == bare + 1200)
        let value = MemoryTable.size(of: "k", MemoryTable.Entry(value: .number(1), version: 1, origin: "w"))
        #expect(MemoryTable.size(of: "k", MemoryTable.Entry(value: .number(1), version: 1, origin: "w", seal: seal)) == value + 1200)
        #expect(MemoryTable().tombstoneTTL == 24 * 3600 * 1000)
    }
}
