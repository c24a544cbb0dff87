import GridCore
import Testing

/// The worker's load reports wait on a doorbell instead of polling a flag every 50 ms.
@Suite struct DoorbellTests {
    @Test func aRingWakesTheWaiter() async {
        let bell = Doorbell()
        async let woken = bell.wait(upTo: 600)
        // Rung until the wait has taken it (a ring before the wait began is kept for it too).
        bell.ring()
        #expect(await woken == .rung)
    }

    @Test func aRingWithNobodyWaitingWakesTheNextWaitOnceOnly() async {
        let bell = Doorbell()
        bell.ring()
        bell.ring()
        #expect(await bell.wait(upTo: 600) == .rung)
        #expect(await bell.wait(upTo: 0.01) == .timedOut, "rings do not add up")
        // Many rung waits leave nothing behind that could end a later one early.
        for _ in 0..<100 {
            bell.ring()
            #expect(await bell.wait(upTo: 600) == .rung)
        }
        #expect(await bell.wait(upTo: 0.01) == .timedOut)
    }

    @Test func aWaitEndsAfterItsTime() async {
        let bell = Doorbell()
        #expect(await bell.wait(upTo: 0.01) == .timedOut)
        for bad in [0, -1, Double.nan, -Double.infinity] {
            #expect(await bell.wait(upTo: bad) == .timedOut, "\(bad)")
        }
    }

    @Test func cancellingTheWaitingTaskEndsTheWait() async {
        let bell = Doorbell()
        let waiting = Task { await bell.wait(upTo: 600) }
        waiting.cancel()
        #expect(await waiting.value == .cancelled)
    }

    @Test func aRingWakesEveryWaitInProgressAndATimerEndsOnlyItsOwn() async {
        let bell = Doorbell()
        // An old loop's wait (ending) and a new one's overlap: neither is lost.
        let short = Task { await bell.wait(upTo: 0.05) }
        let long = Task { await bell.wait(upTo: 600) }
        #expect(await short.value == .timedOut)
        let old = Task { await bell.wait(upTo: 600) }
        old.cancel()
        #expect(await old.value == .cancelled)
        try? await Task.sleep(nanoseconds: 50_000_000)
        bell.ring()
        #expect(await long.value == .rung)
    }

    @Test func anEndedWaitsTimerDoesNotEndTheNextWait() async {
        let bell = Doorbell()
        // The first wait is rung long before its timer would fire; the second must not be ended by that timer.
        bell.ring()
        #expect(await bell.wait(upTo: 0.05) == .rung)
        async let second = bell.wait(upTo: 600)
        try? await Task.sleep(nanoseconds: 150_000_000)
        bell.ring()
        #expect(await second == .rung)
    }
}
