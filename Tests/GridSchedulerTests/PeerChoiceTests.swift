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
    /// slot, or at least one task per slot less and at most three quarters of the asker's work.
    @Test func aSaturatedAskerKeepsItsTaskUnlessAnotherPeerHasRoomOrClearlyLessWork() {
        #expect(PeerChoice.best([peer("a", busy: 16.5), peer("b", busy: 16)], prefer: "a")?.id == "a")
        #expect(PeerChoice.best([peer("a", busy: 17), peer("b", busy: 16.01)], prefer: "a")?.id == "a")
        // Two peers given tasks at the same pace (32 in flight each) differ by a task or two: no forward either way.
        #expect(PeerChoice.best([peer("a", busy: 32), peer("b", busy: 30)], prefer: "a")?.id == "a")
        #expect(PeerChoice.best([peer("a", busy: 17), peer("b", busy: 16)], prefer: "a")?.id == "a")
        #expect(PeerChoice.best([peer("a", busy: 32), peer("b", busy: 24.01)], prefer: "a")?.id == "a")
        // A quarter less, and at least a task per slot less: worth the hop.
        #expect(PeerChoice.best([peer("a", busy: 32), peer("b", busy: 24)], prefer: "a")?.id == "b")
        #expect(PeerChoice.best([peer("a", busy: 2), peer("b", busy: 1)], prefer: "a")?.id == "b")
        #expect(PeerChoice.best([peer("a", busy: 4), peer("b", busy: 3)], prefer: "a")?.id == "b")
        #expect(PeerChoice.best([peer("a", busy: 4), peer("b", busy: 3.5)], prefer: "a")?.id == "a")
        #expect(PeerChoice.best([peer("a", busy: 30), peer("b", busy: 16), peer("c", busy: 20)], prefer: "a")?.id == "b")
        // A free slot elsewhere always wins over a queue here, however small.
        #expect(PeerChoice.best([peer("a", busy: 1), peer("b", busy: 0.5)], prefer: "a")?.id == "b")
        // Without an asker among the peers (a client asking), the least busy as before.
        #expect(PeerChoice.best([peer("a", busy: 16.5), peer("b", busy: 16)], prefer: nil)?.id == "b")
        // An asker whose counts are not finite ranks as infinitely busy: anything finite is worth it.
        #expect(PeerChoice.best([peer("a", busy: .infinity), peer("b", busy: 1e300)], prefer: "a")?.id == "b")
        #expect(PeerChoice.best([peer("a", busy: 3), peer("b", busy: .nan)], prefer: "a")?.id == "a")
    }

    /// Tasks sent a peer's way count on it until its next report, for a quarter of a second at most: the next asker
    /// within a report's interval sees them (before, every asker was sent to the same idle-looking peer).
    @Test func tasksSentAPeersWayCountOnItBrieflyAndNeverTrap() {
        #expect(PeerChoice.reserved(count: 3, at: 10, now: 10) == 3)
        #expect(PeerChoice.reserved(count: 3, at: 10, now: 10.249) == 3)
        #expect(PeerChoice.reserved(count: 3, at: 10, now: 10.25) == 0, "expired")
        #expect(PeerChoice.reserved(count: 3, at: 10, now: 9) == 0, "a clock that went back counts none")
        #expect(PeerChoice.reserved(count: 0, at: 10, now: 10) == 0)
        #expect(PeerChoice.reserved(count: -1, at: 10, now: 10) == 0)
        #expect(PeerChoice.reserved(count: .min, at: 10, now: 10) == 0)
        #expect(PeerChoice.reserved(count: .max, at: 10, now: 10) == PeerChoice.maxReserved, "a flood of asks only makes a peer look busy")
        for bad in [Double.nan, .infinity, -.infinity] {
            #expect(PeerChoice.reserved(count: 3, at: bad, now: 10) == 0)
            #expect(PeerChoice.reserved(count: 3, at: 10, now: bad) == 0)
        }
        // Counted as work: an idle peer sent one task for its only slot no longer has room for the next asker.
        let idle = PeerChoice.busy(jobs: 0, tasks: 0 + PeerChoice.reserved(count: 1, at: 0, now: 0.01), slots: 1)
        #expect(PeerChoice.best([peer("a", busy: 1.5), peer("b", busy: 0)], prefer: "a")?.id == "b", "before the task was sent")
        #expect(PeerChoice.best([peer("a", busy: 1.5), peer("b", busy: idle)], prefer: "a")?.id == "a")
        #expect(PeerChoice.best([peer("a", busy: 4), peer("b", busy: idle)], prefer: "a")?.id == "b", "still clearly less work")
    }

    /// Only an online peer asking for its own task counts one on another peer; the window starts with the first and
    /// does not slide, and the count stops at its cap.
    @Test func onlyAPeersOwnAskCountsAndTheWindowNeverSlides() {
        #expect(PeerChoice.counts(taskId: "t", prefer: "a", sender: "a", senderIsPeer: true, best: "b"))
        #expect(!PeerChoice.counts(taskId: nil, prefer: "a", sender: "a", senderIsPeer: true, best: "b"), "a user's question relayed")
        #expect(!PeerChoice.counts(taskId: "t", prefer: "c", sender: "a", senderIsPeer: true, best: "b"), "in another peer's name")
        #expect(!PeerChoice.counts(taskId: "t", prefer: nil, sender: "a", senderIsPeer: true, best: "b"))
        #expect(!PeerChoice.counts(taskId: "t", prefer: "a", sender: "a", senderIsPeer: false, best: "b"), "no peer (quarantined, no port)")
        #expect(!PeerChoice.counts(taskId: "t", prefer: "a", sender: "a", senderIsPeer: true, best: "a"), "kept at home")
        #expect(PeerChoice.reserve(count: 0, at: 0, now: 10) == (1, 10))
        #expect(PeerChoice.reserve(count: 1, at: 10, now: 10.2) == (2, 10), "the window keeps its start")
        #expect(PeerChoice.reserve(count: 2, at: 10, now: 10.25) == (1, 10.25), "an expired window starts again")
        #expect(PeerChoice.reserve(count: PeerChoice.maxReserved, at: 10, now: 10.1) == (PeerChoice.maxReserved, 10))
        #expect(PeerChoice.reserve(count: .max, at: 10, now: 10.1) == (PeerChoice.maxReserved, 10), "no trap")
        #expect(PeerChoice.reserve(count: 5, at: .nan, now: 10) == (1, 10))
        // A peer counts no more of its tasks in a window than it reported holding (at least one).
        #expect(PeerChoice.mayCount(spent: 0, at: 0, now: 10, reported: 0))
        #expect(!PeerChoice.mayCount(spent: 1, at: 10, now: 10.1, reported: 0))
        #expect(PeerChoice.mayCount(spent: 4, at: 10, now: 10.1, reported: 5))
        #expect(!PeerChoice.mayCount(spent: 5, at: 10, now: 10.1, reported: 5))
        #expect(PeerChoice.mayCount(spent: 5, at: 10, now: 10.25, reported: 5), "a new window")
        #expect(!PeerChoice.mayCount(spent: PeerChoice.maxReserved, at: 10, now: 10.1, reported: .max), "no trap, the cap")
        #expect(PeerChoice.mayCount(spent: .max, at: .nan, now: 10, reported: .min))
        // A loop of asks a tenth of a second apart: the count ends a quarter of a second after the first.
        var held = (count: 0, at: 0.0)
        for k in 0..<3 { held = PeerChoice.reserve(count: held.count, at: held.at, now: 100 + Double(k) * 0.1) }
        #expect(held == (3, 100))
        #expect(PeerChoice.reserved(count: held.count, at: held.at, now: 100.3) == 0)
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
