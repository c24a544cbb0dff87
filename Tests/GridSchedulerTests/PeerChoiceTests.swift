import GridCore
import GridScheduler
import Testing

private func peer(_ id: WorkerID, busy: Double = 0, load: Double = 0, stopping: Bool = false) -> PeerChoice.Candidate {
    PeerChoice.Candidate(id: id, busy: busy, load: load, stopping: stopping)
}

@Suite("PeerChoice")
struct PeerChoiceTests {
    @Test func theLeastWorkPerSlotWinsThenTheAskerThenTheLowestLoad() {
        #expect(PeerChoice.best([peer("a", busy: 0.5), peer("b", busy: 0)], prefer: "a")?.id == "b")
        #expect(PeerChoice.best([peer("a", busy: 0.5, load: 0.9), peer("b", busy: 0.5, load: 0.1)], prefer: "a")?.id == "a")
        #expect(PeerChoice.best([peer("a", busy: 0.5, load: 0.9), peer("b", busy: 0.5, load: 0.1)], prefer: nil)?.id == "b")
        #expect(PeerChoice.best([peer("b"), peer("a")], prefer: "c")?.id == "a")
    }

    /// Between saturated peers a forward only moves the queue: the asker keeps its task unless the other has a free
    /// slot or at least one task per slot less.
    @Test func aSaturatedAskerKeepsItsTaskUnlessAnotherPeerHasRoomOrClearlyLessWork() {
        #expect(PeerChoice.best([peer("a", busy: 16.5), peer("b", busy: 16)], prefer: "a")?.id == "a")
        #expect(PeerChoice.best([peer("a", busy: 17), peer("b", busy: 16.01)], prefer: "a")?.id == "a")
        #expect(PeerChoice.best([peer("a", busy: 17), peer("b", busy: 16)], prefer: "a")?.id == "b")
        #expect(PeerChoice.best([peer("a", busy: 30), peer("b", busy: 16), peer("c", busy: 20)], prefer: "a")?.id == "b")
        // A free slot elsewhere always wins over a queue here, however small.
        #expect(PeerChoice.best([peer("a", busy: 1), peer("b", busy: 0.5)], prefer: "a")?.id == "b")
        // Without an asker among the peers (a client asking), the least busy as before.
        #expect(PeerChoice.best([peer("a", busy: 16.5), peer("b", busy: 16)], prefer: nil)?.id == "b")
        // An asker whose counts are not finite ranks as infinitely busy: anything finite is worth it.
        #expect(PeerChoice.best([peer("a", busy: .infinity), peer("b", busy: 1e300)], prefer: "a")?.id == "b")
        #expect(PeerChoice.best([peer("a", busy: 3), peer("b", busy: .nan)], prefer: "a")?.id == "a")
    }

    @Test func aPeerThatIsStoppingIsNeverChosen() {
        // Idle, and the asker: still not chosen, since its peer services stop first.
        #expect(PeerChoice.best([peer("a", busy: 0, stopping: true), peer("b", busy: 1, load: 1)], prefer: "a")?.id == "b")
        #expect(PeerChoice.best([peer("a", stopping: true)], prefer: "a") == nil)
        #expect(PeerChoice.best([], prefer: nil) == nil)
    }

    @Test func numbersFromPeersThatAreNotFiniteRankLastAndCountsNeverTrap() {
        #expect(PeerChoice.best([peer("a", busy: .nan), peer("b", busy: 3)], prefer: "a")?.id == "b")
        #expect(PeerChoice.best([peer("a", load: .nan), peer("b", load: 2)], prefer: nil)?.id == "b")
        #expect(PeerChoice.best([peer("a", load: .infinity), peer("b", load: -.infinity)], prefer: nil)?.id == "a")
        #expect(PeerChoice.busy(jobs: Int.max, tasks: Int.max, slots: 0).isFinite)
        #expect(PeerChoice.busy(jobs: 1, tasks: 1, slots: -5) == 2)
        #expect(PeerChoice.busy(jobs: 1, tasks: 2, slots: 4) == 0.75)
    }
}
