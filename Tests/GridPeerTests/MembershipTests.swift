import GridPeer
import Testing

/// A peer's members as the manager announces them, announcement by announcement.
@Suite struct MembershipTests {
    @Test func thisPeerCountsItselfOnceWhetherAnnouncedOrNot() {
        #expect(Membership.change(previous: [], announced: ["a", "b"], selfId: "me", linked: []).members == ["a", "b", "me"])
        #expect(Membership.change(previous: [], announced: ["me", "a"], selfId: "me", linked: []).members == ["me", "a"])
        #expect(Membership.change(previous: [], announced: ["a"], selfId: nil, linked: []).members == ["a"], "before it knows its id")
        #expect(Membership.change(previous: [], announced: ["a"], selfId: "", linked: []).members == ["a"])
    }

    @Test func repeatedAndEmptyIdsCountOnceOrNotAtAll() {
        let c = Membership.change(previous: [], announced: ["a", "", "a", "b", "b"], selfId: "me", linked: [])
        #expect(c.members == ["a", "b", "me"])
    }

    @Test func linksToPeersNoLongerAnnouncedAreClosed() {
        let c = Membership.change(previous: ["a", "b", "c"], announced: ["a", "c"], selfId: "me", linked: ["c", "b", "x"])
        #expect(c.departed == ["b", "x"])
        #expect(c.changed)
    }

    @Test func onlyAChangeOfTheSetStartsARepair() {
        #expect(!Membership.change(previous: ["a", "b"], announced: ["b", "a"], selfId: "me", linked: []).changed, "a new order is no change")
        #expect(!Membership.change(previous: ["a", "b"], announced: ["b", "a", "a"], selfId: "me", linked: []).changed)
        #expect(Membership.change(previous: ["a", "b"], announced: ["a"], selfId: "me", linked: []).changed)
        #expect(Membership.change(previous: [], announced: ["a"], selfId: "me", linked: []).changed)
        #expect(!Membership.change(previous: [], announced: [], selfId: "me", linked: []).changed)
    }
}
