import GridCore
import GridScheduler
import Testing

private let me = Leadership.Me(id: "me", workerAddress: "127.0.0.1:9001", apiURL: "http://127.0.0.1:5001")

private func row(_ holder: String = "other", epoch: Int64 = 1, expires: Double = 100) -> LeaderLease {
    LeaderLease(holder: holder, epoch: epoch, expiresAt: expires, workerAddress: "127.0.0.1:9002", apiURL: "http://127.0.0.1:5002")
}

/// A follower that just won `epoch` at time `at` (ttl 3).
private func leading(epoch: Int64 = 1, at: Double = 10) -> Leadership {
    var l = Leadership(me: me, ttl: 3)
    let observed: LeaderLease? = epoch == 1 ? nil : row(epoch: epoch - 1, expires: at - 1)
    _ = l.handle(.tick(now: at, observed: observed))
    #expect(l.handle(.swapped(true)) == .startLeading(epoch: epoch))
    return l
}

@Suite("Leadership")
struct LeadershipTests {
    // MARK: Winning the row

    @Test func theFirstManagerOnAnEmptyDatabaseAsksForEpochOne() {
        var l = Leadership(me: me, ttl: 3)
        let action = l.handle(.tick(now: 10, observed: nil))
        #expect(action == .trySwap(expecting: nil, to: LeaderLease(holder: "me", epoch: 1, expiresAt: 13, workerAddress: me.workerAddress, apiURL: me.apiURL)))
        #expect(!l.isLeading)
        #expect(l.handle(.swapped(true)) == .startLeading(epoch: 1))
        #expect(l.isLeading && l.epoch == 1)
    }

    @Test func aLostRaceLeavesAFollower() {
        var l = Leadership(me: me, ttl: 3)
        _ = l.handle(.tick(now: 10, observed: nil))
        #expect(l.handle(.swapped(false)) == .none)
        #expect(!l.isLeading)
    }

    @Test func aLiveLeaseOfAnotherManagerIsFollowedAndNamedAsLeader() {
        var l = Leadership(me: me, ttl: 3)
        #expect(l.handle(.tick(now: 10, observed: row(expires: 12))) == .none)
        #expect(l.leader == row(expires: 12))
        #expect(!l.isLeading)
    }

    @Test func anExpiredLeaseIsTakenWithTheNextEpoch() {
        var l = Leadership(me: me, ttl: 3)
        guard case .trySwap(let expecting, let lease) = l.handle(.tick(now: 12, observed: row(epoch: 7, expires: 12))) else {
            Issue.record("expected a swap")
            return
        }
        #expect(expecting == 7 && lease.epoch == 8 && lease.holder == "me" && lease.expiresAt == 15)
        #expect(l.leader == nil)
        #expect(l.handle(.swapped(true)) == .startLeading(epoch: 8))
    }

    @Test func aSwapAnswerWithNothingAskedDoesNothing() {
        var l = Leadership(me: me, ttl: 3)
        #expect(l.handle(.swapped(true)) == .none)
        #expect(!l.isLeading)
    }

    // MARK: Keeping and losing the row

    @Test func aLeaderRenewsExpectingItsOwnEpoch() {
        var l = leading(epoch: 1, at: 10)
        let action = l.handle(.tick(now: 11, observed: LeaderLease(holder: "me", epoch: 1, expiresAt: 13, workerAddress: "", apiURL: "")))
        #expect(action == .trySwap(expecting: 1, to: LeaderLease(holder: "me", epoch: 1, expiresAt: 14, workerAddress: me.workerAddress, apiURL: me.apiURL)))
        #expect(l.handle(.swapped(true)) == .none)
        #expect(l.isLeading && l.renewedAt == 11)
    }

    @Test func aFailedRenewalStepsDown() {
        var l = leading()
        _ = l.handle(.tick(now: 11, observed: row("me", epoch: 1, expires: 13)))
        #expect(l.handle(.swapped(false)) == .stepDown)
        #expect(!l.isLeading)
    }

    @Test func aNewerEpochInTheRowStepsTheLeaderDown() {
        var l = leading()
        #expect(l.handle(.tick(now: 11, observed: row("other", epoch: 2, expires: 14))) == .stepDown)
        #expect(!l.isLeading && l.epoch == nil)
        // It names the new leader at once (the deposed manager answers as its follower before its next tick)…
        #expect(l.leader?.holder == "other" && l.leader?.epoch == 2)
        // …and from then on it follows the new leader.
        #expect(l.handle(.tick(now: 12, observed: row("other", epoch: 2, expires: 14))) == .none)
        #expect(l.leader?.epoch == 2)
    }

    @Test func aRefusedRenewalNamesNoLeaderUntilTheRowIsReadAgain() {
        // The renewal's read saw this manager's own row; another took it over before the swap: the refusal names no
        // one, and the row read right after names the manager that holds it.
        var l = leading()
        _ = l.handle(.tick(now: 11, observed: row("me", epoch: 1, expires: 13)))
        #expect(l.handle(.swapped(false)) == .stepDown)
        #expect(l.leader == nil)
        #expect(l.handle(.learned(now: 12, observed: row("other", epoch: 2, expires: 15))) == .none)
        #expect(l.leader?.holder == "other" && l.leader?.epoch == 2)
        #expect(!l.isLeading)
    }

    @Test func aLearnedRowNamesOnlyAnotherManagersLiveLeaseAndALeaderIgnoresIt() {
        var follower = leading()
        _ = follower.handle(.deposed(current: 2))
        // Expired, damaged, this manager's own, missing, or read at a time that says nothing: no leader named.
        for (now, observed) in [(20.0, row(expires: 14)), (12, row(expires: .nan)), (12, row(expires: .infinity)), (12, row("me", epoch: 2, expires: 15)),
                                (12, nil), (.nan, row(expires: 15)), (-.infinity, row(expires: 15))] as [(Double, LeaderLease?)] {
            #expect(follower.handle(.learned(now: now, observed: observed)) == .none)
            #expect(follower.leader == nil, "now \(now), row \(String(describing: observed))")
        }
        // A leader decides nothing on it: neither steps down nor names another.
        var l = leading()
        #expect(l.handle(.learned(now: 11, observed: row("other", epoch: 2, expires: 15))) == .none)
        #expect(l.isLeading && l.leader == nil)
    }

    @Test func aRowNamingMeWithAnotherEpochStepsTheLeaderDown() {
        var l = leading(epoch: 1)
        #expect(l.handle(.tick(now: 11, observed: row("me", epoch: 5, expires: 14))) == .stepDown)
        #expect(l.leader == nil, "a row naming me is never shown as another leader")
    }

    @Test func aDeposingRowWhoseLeaseIsOverOrDamagedNamesNoLeader() {
        var expired = leading()
        #expect(expired.handle(.tick(now: 20, observed: row("other", epoch: 2, expires: 14))) == .stepDown)
        #expect(expired.leader == nil)
        var damaged = leading()
        #expect(damaged.handle(.tick(now: 11, observed: row("other", epoch: 2, expires: .nan))) == .stepDown)
        #expect(damaged.leader == nil)
    }

    @Test func aVanishedRowStepsTheLeaderDown() {
        var l = leading()
        #expect(l.handle(.tick(now: 11, observed: nil)) == .stepDown)
    }

    @Test func aDeposedWriteStepsTheLeaderDownAndAFollowerIgnoresIt() {
        var l = leading()
        #expect(l.handle(.deposed(current: 2)) == .stepDown)
        #expect(l.handle(.deposed(current: nil)) == .none)
    }

    @Test func aLeaderThatCannotReachTheStoreForALeaseStepsDown() {
        var l = leading(at: 10)
        #expect(l.handle(.unreachable(now: 11)) == .none)
        #expect(l.isLeading)
        #expect(l.handle(.unreachable(now: 13)) == .stepDown)
        var f = Leadership(me: me, ttl: 3)
        #expect(f.handle(.unreachable(now: 13)) == .none)
    }

    @Test func aRowNamingMeThatIDoNotLeadWithIsTakenOverAtOnce() {
        // A term this manager dropped (it stepped down) while the row still names it: take it with the next epoch.
        var l = Leadership(me: me, ttl: 3)
        #expect(l.handle(.tick(now: 10, observed: row("me", epoch: 4, expires: 50))) != .none)
        #expect(l.pending?.epoch == 5)
    }

    // MARK: Boundaries: never trap, never lead by accident

    @Test func nonFiniteExpiryCountsAsExpired() {
        for expires in [Double.nan, .infinity, -.infinity] {
            var l = Leadership(me: me, ttl: 3)
            guard case .trySwap(let expecting, let lease) = l.handle(.tick(now: 10, observed: row(epoch: 3, expires: expires))) else {
                Issue.record("a row expiring at \(expires) should be taken over")
                continue
            }
            #expect(expecting == 3 && lease.epoch == 4)
        }
    }

    @Test func aNonFiniteClockDecidesNothing() {
        for now in [Double.nan, .infinity, -.infinity] {
            var l = Leadership(me: me, ttl: 3)
            #expect(l.handle(.tick(now: now, observed: nil)) == .none)
            #expect(l.handle(.tick(now: now, observed: row(expires: 1))) == .none)
            var leader = leading()
            #expect(leader.handle(.tick(now: now, observed: row("me", epoch: 1))) == .none)
            #expect(leader.isLeading)
            #expect(leader.handle(.unreachable(now: now)) == .stepDown)
        }
    }

    @Test func theLastEpochIsNeverOverflowed() {
        var l = Leadership(me: me, ttl: 3)
        #expect(l.handle(.tick(now: 10, observed: row(epoch: .max, expires: 1))) == .none)
        #expect(!l.isLeading)
        #expect(l.handle(.tick(now: 10, observed: row(epoch: .min, expires: 1))) == .trySwap(
            expecting: .min, to: LeaderLease(holder: "me", epoch: 1, expiresAt: 13, workerAddress: me.workerAddress, apiURL: me.apiURL)))
        #expect(l.handle(.swapped(true)) == .startLeading(epoch: 1))
        var m = Leadership(me: me, ttl: 3)
        _ = m.handle(.tick(now: 10, observed: row(epoch: .max - 1, expires: 1)))
        #expect(m.handle(.swapped(true)) == .startLeading(epoch: .max))
        // Leading with the last epoch: renewals still work (they keep the epoch).
        #expect(m.handle(.tick(now: 11, observed: row("me", epoch: .max, expires: 13))) != .stepDown)
    }

    @Test func aClockGoneBackwardsKeepsTheLeaderAndTheRowDecides() {
        var l = leading(at: 100)
        // Wall clock stepped back 50 s: the leader renews (the row's epoch still says it leads).
        guard case .trySwap(let expecting, let lease) = l.handle(.tick(now: 50, observed: row("me", epoch: 1, expires: 103))) else {
            Issue.record("expected a renewal")
            return
        }
        #expect(expecting == 1 && lease.expiresAt == 53)
        #expect(l.handle(.unreachable(now: 51)) == .none)
        #expect(l.isLeading)
    }

    @Test func aFollowerWhoseClockWentBackwardsDoesNotTakeALiveLease() {
        var l = Leadership(me: me, ttl: 3)
        #expect(l.handle(.tick(now: 5, observed: row(expires: 100))) == .none)
    }

    @Test func absurdTTLsAreClamped() {
        #expect(Leadership(me: me, ttl: .nan).ttl == 3)
        #expect(Leadership(me: me, ttl: -1).ttl == 3)
        #expect(Leadership(me: me, ttl: 0).ttl == 3)
        #expect(Leadership(me: me, ttl: .infinity).ttl == 3)
        #expect(Leadership(me: me, ttl: 1e12).ttl == 3600)
    }
}
