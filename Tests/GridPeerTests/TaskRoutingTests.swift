import GridCore
import GridPeer
import Testing

/// Where a function task runs, decision by decision, with boundary counts and forged or stale answers.
@Suite struct TaskRoutingTests {
    @Test func confidentialAndForwardedTasksRunHereWhateverTheLoad() {
        #expect(TaskRouting.first(confidential: true, forwardedByAPeer: false, freeSlot: false, hasManager: true) == .runHere(.confidential))
        #expect(TaskRouting.first(confidential: false, forwardedByAPeer: true, freeSlot: false, hasManager: true) == .runHere(.forwardedByAPeer))
        #expect(TaskRouting.first(confidential: true, forwardedByAPeer: true, freeSlot: true, hasManager: true) == .runHere(.confidential))
    }

    @Test func aFreeSlotRunsHereWithoutAskingAndOnlyABusyPeerAsks() {
        #expect(TaskRouting.first(confidential: false, forwardedByAPeer: false, freeSlot: true, hasManager: true) == .runHere(.freeSlot))
        #expect(TaskRouting.first(confidential: false, forwardedByAPeer: false, freeSlot: false, hasManager: true) == .askManager)
        #expect(TaskRouting.first(confidential: false, forwardedByAPeer: false, freeSlot: false, hasManager: false) == .runHere(.noManager))
    }

    @Test func aSlotIsFreeOnlyWhenJobsTasksAndTheQueueLeaveOne() {
        #expect(TaskRouting.hasFreeSlot(jobsRunning: 0, tasksRunning: 0, queued: 0, slots: 2))
        #expect(TaskRouting.hasFreeSlot(jobsRunning: 1, tasksRunning: 0, queued: 0, slots: 2))
        #expect(!TaskRouting.hasFreeSlot(jobsRunning: 1, tasksRunning: 1, queued: 0, slots: 2))
        #expect(!TaskRouting.hasFreeSlot(jobsRunning: 0, tasksRunning: 1, queued: 1, slots: 2), "a waiting task goes first")
        #expect(!TaskRouting.hasFreeSlot(jobsRunning: 0, tasksRunning: 0, queued: 0, slots: 0))
        #expect(!TaskRouting.hasFreeSlot(jobsRunning: .max, tasksRunning: .max, queued: .max, slots: .max), "no trap, and no slot")
        #expect(TaskRouting.hasFreeSlot(jobsRunning: -5, tasksRunning: .min, queued: -1, slots: 1), "negative counts count as none")
    }

    /// The manager knows the asker's load only from its last report: the asker checks the answer against its own
    /// load now, by the same rule (`TaskLoad.worthForwarding`), and keeps a task the other peer would only queue.
    @Test func anAnswerIsCheckedAgainstTheAskersOwnLoadNow() {
        let now: Int64 = 1_000_000
        func choice(theirs: Double?, mine: Double) -> TaskRouting.Choice {
            TaskRouting.afterAsking(asked: true, best: "w-2", selfId: "w-1", ticketExpires: now + 400, now: now, waitSeconds: 60, theirs: theirs, mine: mine)
        }
        #expect(choice(theirs: 24, mine: 26) == .runHere(.noBetterPeer), "as busy as this peer is now")
        #expect(choice(theirs: 0, mine: 26) == .forward(to: "w-2"), "a free slot there")
        #expect(choice(theirs: 0.5, mine: 1) == .forward(to: "w-2"))
        #expect(choice(theirs: 12, mine: 16) == .forward(to: "w-2"), "a quarter less")
        #expect(choice(theirs: 1, mine: 1) == .runHere(.noBetterPeer))
        #expect(choice(theirs: nil, mine: 0) == .forward(to: "w-2"), "not told: the manager's word")
        #expect(choice(theirs: .nan, mine: 30) == .runHere(.noBetterPeer), "a number that is not finite is infinitely busy")
        #expect(choice(theirs: .infinity, mine: 30) == .runHere(.noBetterPeer))
        #expect(choice(theirs: -.infinity, mine: 30) == .runHere(.noBetterPeer))
        #expect(choice(theirs: 3, mine: .nan) == .forward(to: "w-2"), "this peer's own count never traps")
        #expect(choice(theirs: -5, mine: 0) == .forward(to: "w-2"))
    }

    /// Only an answer that kept the task here is reused for the next 50 ms; one that sent it to another peer stands for
    /// that task (before, every task of the next 50 ms followed it to a peer that had looked idle in an old report).
    @Test func onlyAnAnswerThatKeptTheTaskHereIsReused() {
        #expect(TaskRouting.keeps(.runHere(.noBetterPeer), mayRunHere: true))
        #expect(TaskRouting.keeps(.runHere(.noTicket), mayRunHere: true))
        #expect(!TaskRouting.keeps(.forward(to: "w-2"), mayRunHere: true))
        // A peer that may not run the task itself counts as full: any peer named is better, however busy.
        #expect(
            TaskRouting.afterAsking(
                asked: true, best: "w-2", selfId: "w-1", ticketExpires: 1_000_400, now: 1_000_000, waitSeconds: 60, theirs: 40, mine: .infinity)
                == .forward(to: "w-2"))
    }

    /// No ask without a ticket that lasts a forward's wait (the manager would count a task that never comes), at the
    /// boundaries of the wait and of the clock.
    @Test func aTicketMustLastTheWholeWaitAndNoSumTraps() {
        #expect(TaskRouting.ticketLasts(expires: 1_000_061, now: 1_000_000, waitSeconds: 60))
        #expect(!TaskRouting.ticketLasts(expires: 1_000_060, now: 1_000_000, waitSeconds: 60))
        #expect(!TaskRouting.ticketLasts(expires: 1_000_060, now: 1_000_000, waitSeconds: 59.1), "a part second counts whole")
        #expect(!TaskRouting.ticketLasts(expires: nil, now: 0, waitSeconds: 1))
        #expect(!TaskRouting.ticketLasts(expires: .max, now: .max, waitSeconds: 1), "no trap")
        #expect(!TaskRouting.ticketLasts(expires: .max, now: 0, waitSeconds: .nan))
        #expect(!TaskRouting.ticketLasts(expires: .max, now: 0, waitSeconds: -1))
        #expect(!TaskRouting.ticketLasts(expires: .max, now: 0, waitSeconds: .infinity))
        #expect(TaskRouting.ticketLasts(expires: 100_000, now: 0, waitSeconds: 1e300), "a wait beyond a day is a day")
        #expect(TaskRouting.ticketLasts(expires: 0, now: .min, waitSeconds: 1), "a clock far back still sums")
    }

    @Test func theManagersBestPeerIsUsedOnlyWithATicketThatLastsTheWait() {
        let now: Int64 = 1_000_000
        #expect(
            TaskRouting.afterAsking(asked: true, best: "w-2", selfId: "w-1", ticketExpires: now + 400, now: now, waitSeconds: 360)
                == .forward(to: "w-2"))
        #expect(
            TaskRouting.afterAsking(asked: true, best: "w-2", selfId: "w-1", ticketExpires: now + 360, now: now, waitSeconds: 360)
                == .runHere(.noTicket), "a ticket that ends as the wait does is not enough")
        #expect(
            TaskRouting.afterAsking(asked: true, best: "w-2", selfId: "w-1", ticketExpires: nil, now: now, waitSeconds: 60) == .runHere(.noTicket))
    }

    @Test func noAnswerNoPeerOrThisPeerMeansRunningHere() {
        let now: Int64 = 5
        #expect(TaskRouting.afterAsking(asked: false, best: "w-2", selfId: "w-1", ticketExpires: 1000, now: now, waitSeconds: 1) == .runHere(.managerDidNotAnswer))
        #expect(TaskRouting.afterAsking(asked: true, best: nil, selfId: "w-1", ticketExpires: 1000, now: now, waitSeconds: 1) == .runHere(.noBetterPeer))
        #expect(TaskRouting.afterAsking(asked: true, best: "w-1", selfId: "w-1", ticketExpires: 1000, now: now, waitSeconds: 1) == .runHere(.noBetterPeer))
        #expect(TaskRouting.afterAsking(asked: true, best: "", selfId: nil, ticketExpires: 1000, now: now, waitSeconds: 1) == .runHere(.noBetterPeer))
    }

    @Test func boundaryWaitsAndTimesNeverTrap() {
        for wait in [Double.nan, .infinity, -.infinity, -1] {
            #expect(TaskRouting.afterAsking(asked: true, best: "w-2", selfId: "w-1", ticketExpires: .max, now: 0, waitSeconds: wait) == .runHere(.noTicket))
        }
        #expect(TaskRouting.afterAsking(asked: true, best: "w-2", selfId: "w-1", ticketExpires: .max, now: .max, waitSeconds: 10) == .runHere(.noTicket))
        #expect(TaskRouting.afterAsking(asked: true, best: "w-2", selfId: "w-1", ticketExpires: .max, now: .min, waitSeconds: 1e300) == .forward(to: "w-2"))
        #expect(TaskRouting.afterAsking(asked: true, best: "w-2", selfId: "w-1", ticketExpires: .min, now: 0, waitSeconds: 0) == .runHere(.noTicket))
    }

    @Test func onlyAPeerThatCouldNotTakeTheTaskFallsBackToRunningHere() {
        #expect(TaskRouting.runsHereAfterForwardFailed(.unreachable))
        #expect(TaskRouting.runsHereAfterForwardFailed(.unauthorized))
        #expect(TaskRouting.runsHereAfterForwardFailed(.rateLimited), "its queue was full: its load report was old; the task was not the user's fault")
        #expect(!TaskRouting.runsHereAfterForwardFailed(.internal), "it may have run the task")
        #expect(!TaskRouting.runsHereAfterForwardFailed(.badRequest), "the task's own mistake is its answer")
        #expect(!TaskRouting.runsHereAfterForwardFailed(.forbidden))
        #expect(!TaskRouting.runsHereAfterForwardFailed(.timeout), "a task that ran out of time there is not run again here")
    }

    @Test func theManagersAnswerIsReusedOnlyWithinTheInterval() {
        let answer = TaskRouting.Answer(best: "w-2", at: 100)
        let reuse = TaskRouting.answerReuseSeconds
        #expect(TaskRouting.reusable(nil, now: 100) == nil, "no answer yet: ask")
        #expect(TaskRouting.reusable(answer, now: 100) == answer)
        #expect(TaskRouting.reusable(answer, now: 100 + reuse / 2) == answer)
        let atZero = TaskRouting.Answer(best: "w-2", at: 0)
        #expect(TaskRouting.reusable(atZero, now: reuse) == nil, "at the end of the interval: ask again")
        #expect(TaskRouting.reusable(answer, now: 100 + reuse * 1.01) == nil)
        #expect(TaskRouting.reusable(answer, now: 101) == nil)
        // "None" is an answer too, reused alike.
        let none = TaskRouting.Answer(best: nil, at: 100)
        #expect(TaskRouting.reusable(none, now: 100.01) == none)
    }

    /// A late decision never overwrites a fresher one; a peer that may not run a task itself never reuses or keeps one
    /// (a review: another user's task found the owner's kept answer and was refused).
    @Test func aLateOrForeignDecisionIsNeitherKeptNorReused() {
        let kept = TaskRouting.Answer(best: "w-1", at: 100.2, askedAt: 100)
        #expect(TaskRouting.replaces(nil, askedAt: 5))
        #expect(TaskRouting.replaces(kept, askedAt: 100.01))
        #expect(!TaskRouting.replaces(kept, askedAt: 99.9), "an ask that began before the kept one came back later")
        #expect(!TaskRouting.replaces(kept, askedAt: .nan))
        #expect(TaskRouting.replaces(TaskRouting.Answer(best: "w-1", at: .nan), askedAt: 1))
        // Remembered from when the answer came, not when it was asked: a slow manager's answers are still reused.
        let slow = TaskRouting.remember(nil, choice: .runHere(.noBetterPeer), askedAt: 10, answeredAt: 10.2, mayRunHere: true)
        #expect(slow == TaskRouting.Answer(best: nil, at: 10.2, askedAt: 10))
        #expect(TaskRouting.reusable(slow, now: 10.22, mayRunHere: true) == slow)
        #expect(TaskRouting.remember(slow, choice: .runHere(.noBetterPeer), askedAt: 9, answeredAt: 10.3, mayRunHere: true) == slow, "late")
        #expect(TaskRouting.remember(slow, choice: .forward(to: "w-2"), askedAt: 10.1, answeredAt: 10.3, mayRunHere: true) == nil)
        #expect(TaskRouting.remember(slow, choice: .runHere(.noBetterPeer), askedAt: 10.1, answeredAt: 10.3, mayRunHere: false) == nil)
        #expect(TaskRouting.reusable(kept, now: 100.21, mayRunHere: true) == kept)
        #expect(TaskRouting.reusable(kept, now: 100.21, mayRunHere: false) == nil)
        #expect(!TaskRouting.keeps(.runHere(.noBetterPeer), mayRunHere: false))
    }

    @Test func aClockThatWentBackOrIsNotFiniteAsksTheManager() {
        let answer = TaskRouting.Answer(best: "w-2", at: 100)
        #expect(TaskRouting.reusable(answer, now: 99.99) == nil, "the clock went back")
        for now in [Double.nan, .infinity, -.infinity, -.greatestFiniteMagnitude, .greatestFiniteMagnitude] {
            #expect(TaskRouting.reusable(answer, now: now) == nil, "now \(now)")
        }
        for at in [Double.nan, .infinity, -.infinity] {
            #expect(TaskRouting.reusable(TaskRouting.Answer(best: "w-2", at: at), now: 100) == nil, "at \(at)")
        }
        #expect(TaskRouting.reusable(TaskRouting.Answer(best: "w-2", at: -.greatestFiniteMagnitude), now: .greatestFiniteMagnitude) == nil)
    }
}
