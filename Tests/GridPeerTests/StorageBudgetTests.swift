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

    /// Each entry counts its key, its origin ("w-a"), its value (a string of `bytes`: in memory, a 24-byte value and a
    /// heap buffer with a 32-byte header) and 64 bytes.
    func size(_ user: String, _ name: String, _ bytes: Int) -> Int64 {
        Int64(key(user, name).utf8.count + 3 + max(bytes + 2, 24 + (bytes > 15 ? 32 + bytes : 0)) + 64)
    }

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
        #expect(t.heldByOwner["alice"] == Int64(key("alice", "a").utf8.count + 3 + 64))
        #expect(t.store(key("alice", "c"), entry(value(200), 5)) == .kept)
        // Tombstones past their TTL, and dropped keys, stop counting.
        t.collectGarbage(now: 4 + t.tombstoneTTL + 1)
        t.drop(key("alice", "c"))
        #expect(t.heldBytes == 0 && t.heldByOwner.isEmpty)
    }

    /// Deletions of keys a peer never held are entries too (kept until the TTL): a person's many sealed deletions of
    /// keys that never were stop at their share, and another person still writes (they filled the whole table).
    @Test func deletionsOfKeysNeverHeldStopAtThePersonsShare() {
        var t = MemoryTable(budget: StorageBudget(totalBytes: 4000, what: "memory values"))
        var kept = 0
        for i in 0..<100 where t.store(key("mallory", "k\(i)"), entry(nil, Int64(i + 1))) == .kept { kept += 1 }
        #expect(kept > 0 && kept < 100, "\(kept) deletions kept")
        #expect((t.heldByOwner["mallory"] ?? 0) <= t.budget.perOwnerBytes)
        #expect(t.store(key("alice", "a"), entry(value(600), 200)) == .kept, "mallory's deletions crowded alice out")
        // A deletion of a value held here still always fits, her share full or not.
        #expect(t.store(key("alice", "b"), entry(value(100), 201)) == .kept)
        #expect(t.store(key("alice", "c"), entry(value(200), 202)) != .kept)
        #expect(t.store(key("alice", "b"), entry(nil, 203)) == .kept)
    }

    /// A deletion of a public name not held here names no owner: it is charged to the person its seal was checked for,
    /// not to the share of values with no owner (which a person's deletions of made-up names filled for everyone).
    @Test func deletionsOfPublicNamesNeverHeldCountAgainstTheirWriter() {
        var t = MemoryTable(budget: StorageBudget(totalBytes: 4000, what: "memory values"))
        var kept = 0
        for i in 0..<100 where t.store(PeerNamespace.stored("made-up-\(i)", user: nil, kind: .memory), entry(nil, Int64(i + 1)), writer: "mallory") == .kept {
            kept += 1
        }
        #expect(kept > 0 && kept < 100)
        #expect((t.heldByOwner["mallory"] ?? 0) <= t.budget.perOwnerBytes && t.heldByOwner[""] == nil)
        // Values with no owner still have their share.
        #expect(t.store("junk-1", entry(value(600), 200)) == .kept)
    }

    @Test func aPublicValueCountsAgainstItsOwnerAndJunkSharesOneBudget() {
        var t = MemoryTable(budget: StorageBudget(totalBytes: 4000, what: "memory values"))
        let shared = PeerNamespace.stored("cfg", user: nil, kind: .memory)
        #expect(t.store(shared, entry(PeerNamespace.wrap(value(500), owner: "carol"), 1)) == .kept)
        #expect(t.heldByOwner["carol"] != nil)
        // Values no namespace owns (a peer sending junk) share one person's budget, not the whole peer.
        #expect(t.store("junk-1", entry(value(600), 2)) == .kept)
        #expect(t.store("junk-2", entry(value(600), 3)) != .kept)
        // A public name's deletion is never refused, and stays on its owner's account until it is forgotten.
        #expect(t.store(shared, entry(nil, 4)) == .kept)
        #expect(t.heldByOwner["carol"] == Int64(shared.utf8.count + 3 + 64))
        t.collectGarbage(now: 4 + t.tombstoneTTL + 1)
        #expect(t.heldByOwner["carol"] == nil)
        // A name in a public value that is no user's is nobody's: it joins the junk's full budget.
        let odd = t.store(PeerNamespace.stored("odd", user: nil, kind: .memory), entry(PeerNamespace.wrap(.number(1), owner: "a b\u{2}"), 5))
        guard case .refused(let why) = odd else {
            Issue.record("a value with a made-up owner was charged to \(t.heldByOwner.keys)")
            return
        }
        #expect(why.hasPrefix("values with no owner"), "\(why)")
    }

    /// Publishing and deleting over and over does not move a person's bytes off their share: the deletions stay on it
    /// until forgotten, so the cycle stops at the share, not at the whole peer.
    @Test func publishingAndDeletingInALoopStopsAtThePersonsShare() {
        var t = MemoryTable(budget: StorageBudget(totalBytes: 40_000, what: "memory values"))
        var refused = false
        for i in 0..<200 where !refused {
            let name = PeerNamespace.stored("n\(i)", user: nil, kind: .memory)
            if t.store(name, entry(PeerNamespace.wrap(value(900), owner: "carol"), Int64(2 * i + 1))) != .kept {
                refused = true
                break
            }
            #expect(t.store(name, entry(nil, Int64(2 * i + 2))) == .kept)
        }
        #expect(refused, "carol published and deleted 200 names past her share")
        #expect((t.heldByOwner["carol"] ?? 0) <= t.budget.perOwnerBytes)
        #expect(t.heldBytes <= t.budget.perOwnerBytes + 1000)
    }

    /// The origin a peer sends is counted too: a huge one does not make an entry cheap.
    @Test func aHugeOriginIsCountedAgainstTheShare() {
        var t = MemoryTable(budget: StorageBudget(totalBytes: 40_000, what: "memory values"))
        let huge = MemoryTable.Entry(value: .number(1), version: 1, origin: String(repeating: "o", count: 20_000))
        #expect(t.store(key("alice", "k"), huge) != .kept)
        // A deletion of a key not held here is checked against the whole table only (not the owner's share).
        #expect(t.store(key("alice", "gone"), entry(nil, 2)) == .kept)
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
            // Private keys of three users, and public names published by them.
            let k = rng.next() % 3 == 0 ? PeerNamespace.stored("p\(rng.next() % 6)", user: nil, kind: .memory) : key(user, "k\(rng.next() % 12)")
            let isPublic = PeerNamespace.owner(of: k) == nil
            let origin = ["w-a", "w-bb", String(repeating: "w", count: Int(rng.next() % 40))][Int(rng.next() % 3)]
            switch rng.next() % 10 {
            case 0: t.drop(k)
            case 1, 2: _ = t.store(k, .init(value: nil, version: Int64(step), origin: origin))
            case 3: t.collectGarbage(now: Int64(step) - 50 + t.tombstoneTTL)
            default:
                let v = value(Int(rng.next() % 600))
                _ = t.store(k, .init(value: isPublic ? PeerNamespace.wrap(v, owner: user) : v, version: Int64(step), origin: origin))
            }
            var total: Int64 = 0
            var byOwner: [String: Int64] = [:]
            var live: [String: Int64] = [:]
            #expect(Set(t.charges.keys) == Set(t.entries.keys), "step \(step)")
            for (k, e) in t.entries {
                guard let c = t.charges[k] else { continue }
                #expect(c.size == MemoryTable.size(of: k, e), "step \(step)")
                if e.value != nil { #expect(c.owner == MemoryTable.owner(of: k, e.value), "step \(step)") }
                total += c.size
                byOwner[c.owner, default: 0] += c.size
                if e.value != nil { live[c.owner, default: 0] += c.size }
            }
            #expect(t.heldBytes == total, "step \(step)")
            #expect(t.heldByOwner == byOwner, "step \(step)")
            // Values never take a person past their share (deletions of keys not held here may, a little: see `store`).
            #expect(live.values.allSatisfy { $0 <= t.budget.perOwnerBytes }, "step \(step): \(live)")
            if t.heldBytes != total { return }
        }
    }
}
