import GridProtocol
import Testing

/// The worker's rule for a silent manager, event by event.
@Suite struct ManagerSilenceTests {
    static func givesUp(_ action: ManagerSilence.Action) -> Bool {
        if case .giveUp = action { return true }
        return false
    }

    @Test func aManagerThatAnswersIsPingedAndNeverGivenUp() {
        var s = ManagerSilence(heartbeat: 1, now: 100)
        #expect(s.pingEvery == 5 && s.giveUpAfter == 15)
        #expect(s.tick(now: 101) == .none)
        #expect(s.tick(now: 105) == .ping)
        #expect(s.tick(now: 106) == .none, "one ping per period")
        s.heard(now: 106)
        #expect(s.tick(now: 110) == .ping)
        s.heard(now: 110.2)
        for t in stride(from: 111.0, through: 200, by: 1) {
            if s.tick(now: t) == .ping { s.heard(now: t + 0.1) }
            #expect(!Self.givesUp(s.tick(now: t + 0.2)), "never given up while it answers")
        }
    }

    @Test func aFrozenManagerIsGivenUpAfterTheBoundAndNotBefore() {
        var s = ManagerSilence(heartbeat: 1, now: 0)
        s.heard(now: 10)
        var actions: [ManagerSilence.Action] = []
        for t in stride(from: 11.0, to: 25, by: 1) { actions.append(s.tick(now: t)) }
        #expect(!actions.contains(where: Self.givesUp))
        #expect(s.tick(now: 25) == .giveUp(silentFor: 15))
    }

    /// A frame on its way in (a 48 MiB bundle on a slow link) is the manager speaking: it is heard, for as long as one
    /// frame may take, and again once the frame is in.
    @Test func aFrameOnItsWayInIsHeardForAsLongAsAFrameMayTake() {
        var s = ManagerSilence(heartbeat: 1, now: 0)
        for t in stride(from: 1.0, through: 60, by: 1) {
            #expect(!Self.givesUp(s.tick(now: t, busy: true)), "at \(t) s, the frame still coming")
        }
        #expect(s.lastHeard == 60)
        #expect(s.tick(now: 70) == .ping, "the frame is in: heard at its end, then pinged as ever")
        #expect(s.lastHeard == 70)
        #expect(!Self.givesUp(s.tick(now: 84.9)))
        #expect(s.tick(now: 85) == .giveUp(silentFor: 15), "silence after it counts as before")
    }

    @Test func framesOnTheirWayWithNoneHandledAreHeardNoLongerThanTheLargestFramesDeadline() {
        var s = ManagerSilence(heartbeat: 1, now: 0)
        #expect(ManagerSilence.busyMost == 60 + 1_024)
        var given: Double?
        for t in stride(from: 1.0, through: 1_200, by: 1) where given == nil {
            if Self.givesUp(s.tick(now: t, busy: true, progress: 3)) { given = t }
        }
        #expect(given == 1 + ManagerSilence.busyMost + 15, "heard up to its most, then silent for the bound")
        var odd = ManagerSilence(heartbeat: 1, now: 0)
        #expect(odd.tick(now: .nan, busy: true) == .none)
        #expect(odd.tick(now: .infinity, busy: true) == .none)
        #expect(odd.tick(now: 16, busy: false) == .giveUp(silentFor: 16), "a clock that read NaN began no spell")
    }

    /// Two 48 MiB bundles back to back on a slow link take longer together than one frame's deadline: each frame
    /// handled starts the spell again.
    @Test func framesThatKeepBeingHandledAreHeardForAsLongAsTheyCome() {
        var s = ManagerSilence(heartbeat: 1, now: 0)
        for t in stride(from: 1.0, through: 3_000, by: 1) {
            #expect(!Self.givesUp(s.tick(now: t, busy: true, progress: UInt64(t / 1_000))), "at \(t) s")
        }
    }

    @Test func aSlowHeartbeatStretchesTheBounds() {
        let s = ManagerSilence(heartbeat: 5, now: 0)
        #expect(s.pingEvery == 25 && s.giveUpAfter == 50)
        let capped = ManagerSilence(heartbeat: 1e9, now: 0)
        #expect(capped.pingEvery == 30 && capped.giveUpAfter == 300)
    }

    @Test(arguments: [0.0, -1.0, Double.nan, Double.infinity, -Double.infinity])
    func aNonsenseHeartbeatFromTheWireGivesSaneBounds(_ heartbeat: Double) {
        let s = ManagerSilence(heartbeat: heartbeat, now: 0)
        #expect(s.pingEvery >= 1 && s.pingEvery <= 30 && s.giveUpAfter >= 15 && s.giveUpAfter <= 300, "\(s)")
    }

    @Test func aClockGoneBackwardsOrNonFiniteNeverGivesUp() {
        var s = ManagerSilence(heartbeat: 1, now: 1000)
        #expect(s.tick(now: 10) == .none, "backwards: counts as fresh")
        #expect(s.tick(now: 24) == .ping)
        #expect(s.tick(now: .nan) == .none)
        #expect(s.tick(now: .infinity) == .none)
        s.heard(now: .nan)
        #expect(s.lastHeard == 10)
        #expect(s.tick(now: 25) == .giveUp(silentFor: 15))
    }
}
