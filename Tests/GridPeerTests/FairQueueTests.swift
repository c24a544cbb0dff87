import GridPeer
import Testing

@Suite struct FairQueueTests {
    func drain(_ q: inout FairQueue<String>) -> [String] {
        var out: [String] = []
        while let n = q.next() { out.append(n.item) }
        return out
    }

    @Test func usersTakeTurnsWhateverTheArrivalOrder() {
        var q = FairQueue<String>()
        for i in 1...4 { q.enqueue("a\(i)", user: "alice") }
        for i in 1...4 { q.enqueue("b\(i)", user: "bob") }
        #expect(drain(&q) == ["a1", "b1", "a2", "b2", "a3", "b3", "a4", "b4"])
        #expect(q.isEmpty)
    }

    @Test func eachUsersItemsKeepTheirOrder() {
        var q = FairQueue<String>()
        q.enqueue("a1", user: "alice")
        q.enqueue("b1", user: "bob")
        q.enqueue("a2", user: "alice")
        q.enqueue("c1", user: "carol")
        q.enqueue("a3", user: "alice")
        #expect(drain(&q) == ["a1", "b1", "c1", "a2", "a3"])
    }

    @Test func priorityOrdersAUsersOwnItemsWithinTheirTurns() {
        var q = FairQueue<String>()
        q.enqueue("low-a", user: "alice", priority: 0)
        q.enqueue("high-b1", user: "bob", priority: 5)
        q.enqueue("high-b2", user: "bob", priority: 5)
        q.enqueue("high-a", user: "alice", priority: 5)
        #expect(drain(&q) == ["high-a", "high-b1", "low-a", "high-b2"])
    }

    /// Mallory asked for priority 10 on every task, and Alice's default-priority task waited behind all of hers.
    @Test func onesUsersHighPriorityFloodDoesNotStarveAnother() {
        var q = FairQueue<String>()
        for i in 1...1_000 { q.enqueue("m\(i)", user: "mallory", priority: 10) }
        q.enqueue("a1", user: "alice")
        #expect(q.next()?.item == "m1")
        #expect(q.next()?.item == "a1")
        #expect(q.count(of: "mallory") == 999 && q.count(of: "alice") == 0)
        for p in [Int.min, -1, 0, Int.max] { q.enqueue("x\(p)", user: "x", priority: p) }
        #expect(q.count == 1_003)
    }

    @Test func aUserWhoReturnsJoinsTheEndOfTheTurn() {
        var q = FairQueue<String>()
        q.enqueue("a1", user: "alice")
        q.enqueue("b1", user: "bob")
        #expect(q.next()?.item == "a1")
        q.enqueue("a2", user: "alice")
        q.enqueue("c1", user: "carol")
        #expect(drain(&q) == ["b1", "a2", "c1"])
    }

    @Test func countsAndRemoval() {
        var q = FairQueue<Int>()
        for i in 0..<10 { q.enqueue(i, user: i % 2 == 0 ? "even" : "odd") }
        #expect(q.count == 10)
        #expect(q.waitingByUser == ["even": 5, "odd": 5])
        let removed = q.remove { $0 % 2 == 0 }
        #expect(removed.count == 5)
        #expect(q.count == 5)
        var got: [Int] = []
        while let n = q.next() { got.append(n.item) }
        #expect(got == [1, 3, 5, 7, 9])
    }
}
