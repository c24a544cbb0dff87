import GridCore
import GridPeer
import Testing

@Suite struct StorageBudgetTests {
    let budget = StorageBudget(totalBytes: 1000, what: "memory values")

    @Test func whatFitsAndWhatIsRefusedWithAReason() {
        #expect(budget.perOwnerBytes == 250)
        #expect(budget.refusal(adding: 250, totalHeld: 0, owner: ("alice", 0)) == nil)
        let share = budget.refusal(adding: 1, totalHeld: 250, owner: ("alice", 250))
        #expect(share?.contains("alice would hold 251 bytes of memory values") == true, "\(share ?? "")")
        #expect(share?.contains("one person's share here is 250 bytes") == true)
        let full = budget.refusal(adding: 10, totalHeld: 995, owner: ("bob", 0))
        #expect(full?.contains("this peer's memory values are full") == true, "\(full ?? "")")
        // Without an owner only the total counts (file chunks).
        #expect(budget.refusal(adding: 1000, totalHeld: 0) == nil)
        #expect(budget.refusal(adding: 1001, totalHeld: 0) != nil)
    }

    @Test func shrinkingAndDeletingAlwaysFitEvenOverTheLimit() {
        #expect(budget.refusal(adding: 0, totalHeld: 5000, owner: ("alice", 5000)) == nil)
        #expect(budget.refusal(adding: -1, totalHeld: 5000, owner: ("alice", 5000)) == nil)
        #expect(budget.refusal(adding: .min, totalHeld: .max, owner: ("alice", .max)) == nil)
    }

    @Test func boundaryNumbersNeverTrap() {
        #expect(budget.refusal(adding: .max, totalHeld: .max, owner: ("alice", .max)) != nil)
        #expect(budget.refusal(adding: .max, totalHeld: 0, owner: ("alice", 0)) != nil)
        #expect(budget.refusal(adding: 1, totalHeld: .min, owner: ("alice", .min)) == nil)
        let zero = StorageBudget(totalBytes: 0, what: "file chunks")
        #expect(zero.refusal(adding: 1, totalHeld: 0) != nil)
        let negative = StorageBudget(totalBytes: -1, perOwnerBytes: -5, what: "file chunks")
        #expect(negative.totalBytes == 0 && negative.perOwnerBytes == 0)
        #expect(StorageBudget.unlimited(what: "x").refusal(adding: .max - 1, totalHeld: 1, owner: ("a", 1)) == nil)
        #expect(StorageBudget.sum(.max, 1) == .max && StorageBudget.sum(.min, -1) == 0 && StorageBudget.sum(2, 3) == 5)
        #expect(StorageBudget.describe(512 << 20) == "512 MiB" && StorageBudget.describe(1536) == "1.5 KiB" && StorageBudget.describe(.max) == "no limit")
    }
}

@Suite struct MemoryTableBudgetTests {
    func key(_ user: String, _ name: String) -> String { PeerNamespace.stored(name, user: user, kind: .memory) }
    func value(_ bytes: Int) -> JSONValue { .string(String(repeating: "v", count: bytes)) }
    func entry(_ v: JSONValue?, _ version: Int64) -> MemoryTable.Entry { .init(value: v, version: version, origin: "w-a") }

    /// Each entry counts its key, its value's JSON and 64 bytes.
    func size(_ user: String, _ name: String, _ bytes: Int) -> Int64 { Int64(key(user, name).utf8.count + bytes + 2 + 64) }

    @Test func onePersonsShareIsBoundedAndAnotherStillWrites() {
        var t = MemoryTable(budget: StorageBudget(totalBytes: 4000, what: "memory values"))
        #expect(t.store(key("alice", "a"), entry(value(800), 1)) == .kept)
        guard case .refused(let why) = t.store(key("alice", "b"), entry(value(200), 2)) else {
            Issue.record("alice went past her share of 1,000 bytes")
            return
        }
        #expect(why.contains("alice would hold") && why.contains("delete some first"), "\(why)")
        #expect(t.get(key("alice", "b")) == nil)
        #expect(t.store(key("bob", "b"), entry(value(800), 3)) == .kept)
        #expect(t.heldByOwner["alice"] == size("alice", "a", 800) && t.heldByOwner["bob"] == size("bob", "b", 800))
        #expect(t.heldBytes == size("alice", "a", 800) + size("bob", "b", 800))
    }

    @Test func replacingCountsOnlyTheDifferenceAndDeletingAlwaysWorks() {
        var t = MemoryTable(budget: StorageBudget(totalBytes: 4000, what: "memory values"))
        #expect(t.store(key("alice", "a"), entry(value(800), 1)) == .kept)
        // A replacement of the same size fits though alice is near her share: only the difference counts.
        #expect(t.store(key("alice", "a"), entry(value(850), 2)) == .kept)
        #expect(t.heldByOwner["alice"] == size("alice", "a", 850))
        // Her share is full: a new key is refused, the deletion of a held one is not, and frees the room.
        #expect(t.store(key("alice", "c"), entry(value(200), 3)) != .kept)
        #expect(t.store(key("alice", "a"), entry(nil, 4)) == .kept)
        #expect(t.heldByOwner["alice"] == Int64(key("alice", "a").utf8.count + 64))
        #expect(t.store(key("alice", "c"), entry(value(200), 5)) == .kept)
        // Tombstones past their TTL, and dropped keys, stop counting.
        t.collectGarbage(now: 4 + t.tombstoneTTL + 1)
        t.drop(key("alice", "c"))
        #expect(t.heldBytes == 0 && t.heldByOwner.isEmpty)
    }

    @Test func aPublicValueCountsAgainstItsOwnerAndJunkSharesOneBudget() {
        var t = MemoryTable(budget: StorageBudget(totalBytes: 4000, what: "memory values"))
        let shared = PeerNamespace.stored("cfg", user: nil, kind: .memory)
        #expect(t.store(shared, entry(PeerNamespace.wrap(value(700), owner: "carol"), 1)) == .kept)
        #expect(t.heldByOwner["carol"] != nil)
        // Values no namespace owns (a peer sending junk) share one person's budget, not the whole peer.
        #expect(t.store("junk-1", entry(value(900), 2)) == .kept)
        #expect(t.store("junk-2", entry(value(900), 3)) != .kept)
        // A public name's deletion moves it to nobody, and is never refused.
        #expect(t.store(shared, entry(nil, 4)) == .kept)
        #expect(t.heldByOwner["carol"] == nil)
    }

    @Test func theWholePeerFillsUpAndSaysSo() {
        var t = MemoryTable(budget: StorageBudget(totalBytes: 2000, perOwnerBytes: 2000, what: "memory values"))
        #expect(t.store(key("alice", "a"), entry(value(1500), 1)) == .kept)
        guard case .refused(let why) = t.store(key("bob", "b"), entry(value(600), 2)) else {
            Issue.record("the peer went past its 2,000 bytes")
            return
        }
        #expect(why.contains("this peer's memory values are full"), "\(why)")
    }

    /// Whatever happens, the counts are the sum of what is held, and no person holds more than their share.
    @Test func theCountsAlwaysMatchWhatIsHeld() {
        var t = MemoryTable(budget: StorageBudget(totalBytes: 6000, what: "memory values"))
        var rng = SplitMix(seed: 17)
        let users = ["alice", "bob", "carol"]
        for step in 1...3000 {
            let user = users[Int(rng.next() % 3)]
            let k = key(user, "k\(rng.next() % 12)")
            switch rng.next() % 10 {
            case 0: t.drop(k)
            case 1, 2: _ = t.store(k, entry(nil, Int64(step)))
            case 3: t.collectGarbage(now: Int64(step) - 50 + t.tombstoneTTL)
            default: _ = t.store(k, entry(value(Int(rng.next() % 600)), Int64(step)))
            }
            var total: Int64 = 0
            var byOwner: [String: Int64] = [:]
            for (k, e) in t.entries {
                let s = MemoryTable.size(of: k, e.value)
                total += s
                byOwner[MemoryTable.owner(of: k, e.value), default: 0] += s
            }
            #expect(t.heldBytes == total, "step \(step)")
            #expect(t.heldByOwner == byOwner, "step \(step)")
            #expect(byOwner.values.allSatisfy { $0 <= t.budget.perOwnerBytes }, "step \(step)")
            if t.heldBytes != total { return }
        }
    }
}
