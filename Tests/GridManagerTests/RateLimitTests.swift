import Testing

@testable import GridManager

/// The pure token bucket behind the login and sign-up limits; time is passed in.
@Suite struct RateLimitTests {
    /// Whether `decision` refuses with a wait of `seconds` (to within rounding).
    func refused(_ decision: RateLimit.Decision, wait seconds: Double) -> Bool {
        guard case .limited(let wait) = decision else { return false }
        return abs(wait - seconds) < 1e-6
    }

    @Test func aBurstIsAllowedAtOnceThenRefusedWithTheWaitForTheNextToken() {
        var limit = RateLimit(burst: 3, window: 60)  // 3 at once, then one every 20 s
        #expect((0..<3).map { _ in limit.admit("a", now: 100) } == [.allowed, .allowed, .allowed])
        #expect(refused(limit.admit("a", now: 100), wait: 20))
        #expect(refused(limit.admit("a", now: 105), wait: 15))
    }

    @Test func aCheckCountsNothing() {
        var limit = RateLimit(burst: 1, window: 60)
        #expect(limit.check("a", now: 0) == .allowed && limit.check("a", now: 0) == .allowed)
        #expect(limit.admit("a", now: 0) == .allowed)
        #expect(refused(limit.check("a", now: 0), wait: 60))
    }

    /// A client's address as the login limit keys it: IPv4 as it is, IPv6 by its /64 (a host has a whole /64).
    @Test func addressesAreKeyedByHostOrIPv6Network() {
        #expect(RateLimit.addressKey("10.1.2.3") == "10.1.2.3")
        #expect(RateLimit.addressKey("::ffff:10.1.2.3") == "10.1.2.3")
        let a = RateLimit.addressKey("2001:db8:1:2:aaaa::1")
        #expect(a == RateLimit.addressKey("2001:0db8:0001:0002:bbbb:cccc:dddd:9") && a == "2001:0db8:0001:0002::/64")
        #expect(a != RateLimit.addressKey("2001:db8:1:3::1"))
        #expect(RateLimit.addressKey("::1") == "0000:0000:0000:0000::/64")
        for odd in ["?", "", "not:an:address:::", "1:2:3:4:5:6:7:8:9"] { #expect(RateLimit.addressKey(odd) == odd) }
    }

    @Test func loginPlacesKeepTheNewestFewPerAccountAndABoundedNumberOfAccounts() {
        let places = LoginPlaces(maxAccounts: 10)
        for i in 0..<12 { places.remember("ann", "10.0.0.\(i)") }
        #expect(!places.knows("ann", "10.0.0.3") && places.knows("ann", "10.0.0.4") && places.knows("ann", "10.0.0.11"))
        for i in 0..<50 { places.remember("user\(i)", "10.1.0.1") }
        #expect(places.knows("user49", "10.1.0.1") && !places.knows("ann", "10.0.0.11"), "the oldest accounts went first")
        #expect(!places.knows("nobody", "10.1.0.1"))
        #expect(RateLimit.isLoopback("127.0.0.1") && RateLimit.isLoopback("::1") && RateLimit.isLoopback("::ffff:127.0.0.1"))
        #expect(!RateLimit.isLoopback("10.0.0.1") && !RateLimit.isLoopback("?") && !RateLimit.isLoopback("128.0.0.1"))
    }

    @Test func tokensComeBackAtTheSteadyRateAndNeverBeyondTheBurst() {
        var limit = RateLimit(burst: 2, window: 10)  // one back every 5 s
        #expect(limit.admit("a", now: 0) == .allowed)
        #expect(limit.admit("a", now: 0) == .allowed)
        #expect(limit.admit("a", now: 4.9) != .allowed)
        #expect(limit.admit("a", now: 5.01) == .allowed, "a refused request costs nothing")
        // A long quiet spell refills to the burst, not more.
        #expect(limit.admit("a", now: 1000) == .allowed)
        #expect(limit.admit("a", now: 1000) == .allowed)
        #expect(refused(limit.admit("a", now: 1000), wait: 5))
    }

    /// A flood of distinct keys, each spending a token, leaves no bucket full: before, every request then filtered the
    /// whole map under the lock and kept it all. Now the map stays within its bound, and the most limited keys stay.
    @Test func aFloodOfDistinctKeysStaysBoundedAndKeepsTheMostLimited() {
        var limit = RateLimit(burst: 5, window: 3600, maxKeys: 1_000)
        for _ in 0..<5 { _ = limit.admit("guessed", now: 0) }
        #expect(limit.admit("guessed", now: 0) != .allowed)
        for i in 0..<20_000 { _ = limit.admit("stranger-\(i)", now: 0) }
        #expect(limit.buckets.count <= 1_001, "\(limit.buckets.count) keys kept")
        #expect(limit.admit("guessed", now: 1) != .allowed, "the flood freed the guessed account's limit")
    }

    @Test func keysAreLimitedApart() {
        var limit = RateLimit(burst: 1, window: 60)
        #expect(limit.admit("10.0.0.66", now: 0) == .allowed)
        #expect(limit.admit("10.0.0.66", now: 0) != .allowed)
        #expect(limit.admit("10.0.0.7", now: 0) == .allowed, "one address's flood must not block another")
    }

    @Test func resetForgetsAKey() {
        var limit = RateLimit(burst: 1, window: 3600)
        _ = limit.admit("a", now: 0)
        #expect(limit.admit("a", now: 1) != .allowed)
        limit.reset("a")
        #expect(limit.admit("a", now: 1) == .allowed)
    }

    @Test func retryAfterIsWholeSecondsRoundedUpAndAtLeastOne() {
        #expect(RateLimit.Decision.allowed.retryAfterHeader == nil)
        #expect(RateLimit.Decision.limited(retryAfter: 0.01).retryAfterHeader == 1)
        #expect(RateLimit.Decision.limited(retryAfter: 5).retryAfterHeader == 5)
        #expect(RateLimit.Decision.limited(retryAfter: 5.2).retryAfterHeader == 6)
    }

    @Test func aClockThatStepsBackNeitherRefillsNorBreaks() {
        var limit = RateLimit(burst: 1, window: 60)
        #expect(limit.admit("a", now: 100) == .allowed)
        #expect(refused(limit.admit("a", now: 50), wait: 60))
    }

    @Test func fullBucketsAreForgottenWhenManyKeysPileUp() {
        var limit = RateLimit(burst: 1, window: 1, maxKeys: 100)
        for i in 0..<101 { _ = limit.admit("k\(i)", now: 0) }
        _ = limit.admit("late", now: 10)
        #expect(limit.buckets.count == 1, "every old bucket had refilled; only the new key is kept")
        #expect(limit.buckets["late"] != nil)
    }

    @Test func nonsenseSettingsStillLimit() {
        var limit = RateLimit(burst: 0, window: 0)
        #expect(limit.burst == 1)
        #expect(limit.admit("a", now: 0) == .allowed)
        #expect(limit.admit("a", now: 0) != .allowed)
    }
}
