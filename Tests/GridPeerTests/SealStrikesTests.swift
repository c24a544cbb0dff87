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

    @Test func boundaryCountsAndTimesNeverTrap() {
        var s = SealStrikes()
        s.record(Int.max, by: "w-1", now: 0)
        s.record(Int.max, by: "w-1", now: 1)
        #expect(s.allowance(of: "w-1", now: 1) == 0)
        s.record(5, by: "w-2", now: .nan)
        #expect(s.allowance(of: "w-2", now: .nan) == SealStrikes.allowed, "a NaN time is no window")
        s.record(5, by: "w-3", now: .infinity)
        #expect(s.allowance(of: "w-3", now: 0) == SealStrikes.allowed, "a clock that stepped back starts afresh")
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
