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
