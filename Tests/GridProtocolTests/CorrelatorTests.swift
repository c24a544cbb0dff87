import GridProtocol
import Testing

/// The one request/reply correlator, event by event: replies before and after their asker waits, forged and late
/// replies, timeouts, a lost connection and a closed one. Waiters are plain strings here.
@Suite struct CorrelatorTests {
    typealias C = Correlator<String, String>

    func id(_ r: Result<Int, C.ClosedError>) -> Int? { if case .success(let i) = r { return i } else { return nil } }

    @Test func aReplyAfterTheAskerWaitsGoesToItsWaiterOnce() {
        var c = C()
        let a = id(c.begin(deadline: 10, label: "A"))!
        let b = id(c.begin(deadline: 10, label: "B"))!
        #expect(a != b)
        #expect(c.wait(a, "waiter-a", missing: "missing") == nil)
        #expect(c.resolve(a, "reply") == "waiter-a")
        #expect(c.resolve(a, "again") == nil, "only the first outcome counts")
        #expect(!c.isInFlight(a) && c.isInFlight(b))
    }

    @Test func aReplyBeforeTheAskerWaitsIsKeptForIt() {
        var c = C()
        let a = id(c.begin(deadline: 10, label: "A"))!
        #expect(c.resolve(a, "early") == nil)
        #expect(c.resolve(a, "second") == nil)
        #expect(c.wait(a, "waiter", missing: "missing") == "early")
        #expect(c.inFlight == 0)
    }

    @Test func forgedAndLateRepliesAreIgnored() {
        var c = C()
        let a = id(c.begin(deadline: 10, label: "A"))!
        #expect(c.resolve(a + 1000, "forged") == nil)
        #expect(c.resolve(0, "zero") == nil && c.resolve(-1, "minus") == nil && c.resolve(.max, "max") == nil && c.resolve(.min, "min") == nil)
        c.finish(a)
        #expect(c.resolve(a, "late") == nil)
        #expect(!c.isInFlight(a))
        #expect(c.wait(a, "w", missing: "missing") == "missing", "an asker whose request is gone is told so, never left waiting")
    }

    @Test func overdueRequestsAreThoseNotAnsweredByTheirDeadline() {
        var c = C()
        let a = id(c.begin(deadline: 5, label: "A"))!
        let b = id(c.begin(deadline: 20, label: "B"))!
        let d = id(c.begin(deadline: 5, label: "D"))!
        _ = c.resolve(d, "answered in time")
        let nan = id(c.begin(deadline: .nan, label: "NaN"))!
        let never = id(c.begin(deadline: .infinity, label: "never"))!
        #expect(c.overdue(now: 4).map(\.id) == [nan], "a NaN deadline is already due")
        #expect(c.overdue(now: 5).map(\.id) == [a, nan])
        #expect(c.overdue(now: 1e300).map(\.id) == [a, b, nan])
        #expect(!c.overdue(now: .infinity).map(\.id).contains(d))
        _ = never
    }

    @Test func aLostConnectionFailsWhatIsInFlightAndTheNextTakesNewRequests() {
        var c = C()
        let a = id(c.begin(deadline: 10, label: "A"))!
        let b = id(c.begin(deadline: 10, label: "B"))!
        #expect(c.wait(a, "waiter-a", missing: "m") == nil)
        #expect(c.failAll("lost") == ["waiter-a"])
        #expect(c.wait(b, "waiter-b", missing: "m") == "lost", "an asker still writing learns it when it waits")
        #expect(id(c.begin(deadline: 10, label: "C")) != nil)
    }

    @Test func aClosedConnectionFailsEverythingAndRefusesNewRequests() {
        var c = C()
        let a = id(c.begin(deadline: 10, label: "A"))!
        #expect(c.wait(a, "waiter-a", missing: "m") == nil)
        #expect(c.close("closed: reset") == ["waiter-a"])
        #expect(c.close("closed again").isEmpty)
        #expect(c.closed == "closed: reset", "the first close counts")
        guard case .failure(let e) = c.begin(deadline: 10, label: "B") else {
            Issue.record("a closed connection took a request")
            return
        }
        #expect(e.outcome == "closed: reset")
    }

    @Test func idsNeverRepeatWhileInFlightAndAReservedIdIsNoRequests() {
        var c = C(firstId: .max - 1)
        let a = id(c.begin(deadline: 1, label: "A"))!
        let ping = c.reserveId()
        let b = id(c.begin(deadline: 1, label: "B"))!
        #expect(a == .max - 1 && ping == .max && b == 1, "wraps past Int.max without trapping, and never to 0")
        #expect(!c.isInFlight(ping))
        #expect(C(firstId: -5).reserveIdCopy() == 1)
    }
}

extension Correlator {
    fileprivate func reserveIdCopy() -> Int {
        var copy = self
        return copy.reserveId()
    }
}
