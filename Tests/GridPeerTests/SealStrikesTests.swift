import GridPeer
import Testing

/// `SealStrikes`: the signature checks a peer's failed entries may cost this peer in a window.
@Suite struct SealStrikesTests {
    @Test func aPeerHasTheWholeAllowanceUntilItsEntriesFail() {
        var s = SealStrikes()
        #expect(s.allowance(of: "w-1", now: 100) == SealStrikes.allowed)
        s.record(0, by: "w-1", now: 100)
        s.record(-5, by: "w-1", now: 100)
        #expect(s.allowance(of: "w-1", now: 100) == SealStrikes.allowed && s.count == 0, "nothing wasted, nothing counted")
        s.record(400, by: "w-1", now: 100)
        #expect(s.allowance(of: "w-1", now: 130) == SealStrikes.allowed - 400)
        #expect(s.allowance(of: "w-2", now: 130) == SealStrikes.allowed, "one peer's failures never cost another's allowance")
    }

    @Test func aSpentAllowanceRefusesUntilTheWindowEndsThenStartsAfresh() {
        var s = SealStrikes()
        s.record(SealStrikes.allowed, by: "w-1", now: 100)
        #expect(s.allowance(of: "w-1", now: 100) == 0)
        #expect(s.allowance(of: "w-1", now: 100 + SealStrikes.window - 0.001) == 0)
        #expect(s.windowEnds(for: "w-1", now: 120) == 100 + SealStrikes.window)
        #expect(s.allowance(of: "w-1", now: 100 + SealStrikes.window) == SealStrikes.allowed)
        #expect(s.windowEnds(for: "w-1", now: 100 + SealStrikes.window) == nil)
        // Failures after the window count in a new one.
        s.record(10, by: "w-1", now: 200)
        #expect(s.allowance(of: "w-1", now: 201) == SealStrikes.allowed - 10)
    }

    /// One account may run hundreds of workers: all peers together waste at most `allowedInAll` a window. Past it a
    /// peer that wasted any is refused, and one that wasted none still gets `grace` (an honest peer is never refused).
    @Test func allPeersTogetherHaveABudgetAndAPeerThatWastedNothingKeepsItsGrace() {
        var s = SealStrikes()
        let peers = SealStrikes.allowedInAll / SealStrikes.allowed
        for i in 0..<peers { s.record(SealStrikes.allowed - 1, by: "w-\(i)", now: 10) }
        s.record(peers, by: "w-last", now: 10)
        #expect(s.allowance(of: "w-0", now: 20) == 0, "the whole budget is spent")
        #expect(s.allowance(of: "w-last", now: 20) == 0)
        #expect(s.allowance(of: "honest", now: 20) == SealStrikes.grace)
        #expect(s.windowEnds(for: "w-last", now: 20) == 10 + SealStrikes.window)
        #expect(s.allowance(of: "w-0", now: 10 + SealStrikes.window) == SealStrikes.allowed)
    }

    /// Overlapping batches of one peer share its allowance: each reserves before its checks and settles after; what
    /// was reserved and not wasted goes back.
    @Test func overlappingBatchesShareOneAllowance() {
        var s = SealStrikes()
        s.record(1, by: "w-1", now: 0)
        let first = s.reserve(4_000, by: "w-1", now: 1)
        let second = s.reserve(4_000, by: "w-1", now: 1)
        #expect(first == SealStrikes.allowed - 1 && second == 0, "\(first), \(second)")
        s.settle(reserved: first, spent: 10, by: "w-1", now: 2)
        s.settle(reserved: second, spent: 0, by: "w-1", now: 2)
        #expect(s.allowance(of: "w-1", now: 3) == SealStrikes.allowed - 11)
        // An honest peer's batches reserve too, and waste nothing: its allowance is whole after them.
        let a = s.reserve(4_000, by: "honest", now: 3)
        let b = s.reserve(4_000, by: "honest", now: 3)
        #expect(a == SealStrikes.allowed && b == SealStrikes.grace)
        s.settle(reserved: a, spent: 0, by: "honest", now: 4)
        s.settle(reserved: b, spent: 0, by: "honest", now: 4)
        #expect(s.allowance(of: "honest", now: 5) == SealStrikes.allowed)
        // A settle of more than was reserved (or of nothing) gives back only what is held.
        s.settle(reserved: 500, spent: 0, by: "nobody", now: 5)
        #expect(s.allowance(of: "nobody", now: 5) == SealStrikes.allowed)
    }

    @Test func boundaryCountsAndTimesNeverTrap() {
        var s = SealStrikes()
        s.record(Int.max, by: "w-1", now: 0)
        s.record(Int.max, by: "w-1", now: 1)
        #expect(s.allowance(of: "w-1", now: 1) == 0)
        #expect(s.reserve(Int.max, by: "w-1", now: 1) == 0)
        s.settle(reserved: Int.min, spent: Int.min, by: "w-1", now: 1)
        s.settle(reserved: Int.max, spent: Int.max, by: "w-1", now: 1)
        s.record(5, by: "w-2", now: .nan)
        #expect(s.allowance(of: "w-2", now: .nan) == SealStrikes.allowed, "a NaN time is no window")
        s.record(5, by: "w-3", now: .infinity)
        #expect(s.allowance(of: "w-3", now: 1_000) == SealStrikes.allowed, "a clock that stepped back starts afresh")
    }

    @Test func theTrackedPeersAreBounded() {
        var s = SealStrikes()
        for i in 0..<(SealStrikes.tracked + 10) { s.record(1, by: "w-\(i)", now: Double(i) / 1000) }
        #expect(s.count <= SealStrikes.tracked)
        // The newest is kept.
        #expect(s.allowance(of: "w-\(SealStrikes.tracked + 9)", now: 10) == SealStrikes.allowed - 1)
        // Past the window, the ended ones are dropped first.
        s.record(1, by: "late", now: 1_000)
        #expect(s.count == 1)
    }
}
