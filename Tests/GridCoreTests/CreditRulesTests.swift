import GridCore
import Testing

@Suite("CreditRules")
struct CreditRulesTests {
    /// 2 CPUs, 4 GB, 1 GPU, 10 minutes: base 5 + 4 + 4 + 10 = 23, hold 33.
    let spec = JobSpec(name: "train", cpus: 2, ramGb: 4, gpus: 1, minutes: 10)

    @Test func costIsFivePlusTwicePerCpuPlusRamPlusTenPerGpuPlusMinutes() {
        #expect(CreditRules.base(spec) == 23)
        #expect(CreditRules.hold(spec) == 33)
    }

    /// Fair share orders the queue by the CPU time a user's runs took, as their workers report it: one worker reported
    /// 10¹⁰ CPU-seconds on another user's job and sent them to the back of the queue for a day. What is recorded is at
    /// most the job's CPUs for the paid runtime.
    @Test func recordedCPUTimeIsAtMostTheCPUsForThePaidRuntime() {
        let spec = JobSpec(name: "j", cpus: 2, ramGb: 1, minutes: 10)
        #expect(CreditRules.creditedCPUSeconds(spec, reported: 1e10, paidRuntimeMs: 60_000) == 120)
        #expect(CreditRules.creditedCPUSeconds(spec, reported: 30, paidRuntimeMs: 60_000) == 30)
        for bad in [Double.nan, .infinity, -.infinity, -1, 0, -Double.greatestFiniteMagnitude] {
            #expect(CreditRules.creditedCPUSeconds(spec, reported: bad, paidRuntimeMs: 60_000) == 0)
        }
        #expect(CreditRules.creditedCPUSeconds(spec, reported: 5, paidRuntimeMs: Int64.min) == 0)
        #expect(CreditRules.creditedCPUSeconds(spec, reported: .greatestFiniteMagnitude, paidRuntimeMs: Int64.max).isFinite)
    }

    @Test func smallestJobCostsSevenPlusItsMinutes() {
        let tiny = JobSpec(name: "tiny", cpus: 1, ramGb: 0, gpus: 0, minutes: 1)
        #expect(CreditRules.hold(tiny) == 5 + 2 + 0 + 0 + 1)
    }

    @Test(arguments: [
        (Int64(0), 0), (1, 1), (59_999, 1), (60_000, 1), (60_001, 2), (90_000, 2), (599_999, 10), (600_000, 10),
    ])
    func chargedMinutesRoundUp(runtimeMilliseconds: Int64, minutes: Int) {
        #expect(CreditRules.chargedMinutes(spec, runtimeMilliseconds: runtimeMilliseconds) == minutes)
    }

    @Test func chargedMinutesAreCappedAtTheRequestedMinutes() {
        #expect(CreditRules.chargedMinutes(spec, runtimeMilliseconds: 600_001) == 10)
        #expect(CreditRules.chargedMinutes(spec, runtimeMilliseconds: 24 * 3_600_000) == 10)
    }

    @Test func negativeRuntimeIsChargedZeroMinutes() {
        #expect(CreditRules.chargedMinutes(spec, runtimeMilliseconds: -5_000) == 0)
    }

    @Test func settleAfterARunPaysBasePlusActualMinutesAndReleasesTheRest() {
        let s = CreditRules.settle(spec, ending: .ran(runtimeMilliseconds: 90_000))
        #expect(s.paid == 23 + 2)
        #expect(s.released == 33 - 25)
    }

    @Test func settleOfARunPastTheLimitPaysTheWholeHold() {
        let s = CreditRules.settle(spec, ending: .ran(runtimeMilliseconds: 3_600_000))
        #expect(s.paid == 33)
        #expect(s.released == 0)
    }

    @Test func settleOfAnInstantRunPaysOnlyTheBase() {
        let s = CreditRules.settle(spec, ending: .ran(runtimeMilliseconds: 0))
        #expect(s.paid == 23)
        #expect(s.released == 10)
    }

    @Test func refundPaysNothingAndReleasesTheWholeHold() {
        let s = CreditRules.settle(spec, ending: .refunded)
        #expect(s.paid == 0)
        #expect(s.released == 33)
    }

    @Test func settlementAlwaysSplitsExactlyTheHold() {
        for minutes in [1, 7, 60] {
            let spec = JobSpec(name: "j", cpus: 3, ramGb: 2, gpus: 0, minutes: minutes)
            for ms in stride(from: Int64(-1), through: Int64(minutes + 2) * 60_000, by: 7_919) {
                let s = CreditRules.settle(spec, ending: .ran(runtimeMilliseconds: ms))
                #expect(s.paid + s.released == CreditRules.hold(spec))
                #expect(s.paid >= CreditRules.base(spec))
                #expect(s.released >= 0)
            }
        }
    }

    @Test func startingCreditsDefaultToOneHundred() {
        #expect(CreditRules.defaultStartingCredits == 100)
    }
}

@Suite("CreditRules: paid by the manager's clock")
struct PaidRuntimeTests {
    let spec = JobSpec(name: "j", cpus: 1, ramGb: 1, minutes: 30)

    /// A cancelled run's report that came slowly (its frame kept the run alive) is billed no later than a lease period
    /// after the cancel (the review: a worker could bill 18 minutes past it).
    @Test func aCancelledRunIsBilledNoLaterThanALeasePeriodAfterTheCancel() {
        #expect(CreditRules.billedUntil(received: 1_000, cancelledAt: nil, grace: 10) == 1_000)
        #expect(CreditRules.billedUntil(received: 1_000, cancelledAt: 100, grace: 10) == 110)
        #expect(CreditRules.billedUntil(received: 105, cancelledAt: 100, grace: 10) == 105, "a report within the grace is billed as it came")
        #expect(CreditRules.billedUntil(received: 1_000, cancelledAt: 100, grace: -5) == 100)
        for odd in [Double.nan, .infinity, -.infinity] {
            #expect(CreditRules.billedUntil(received: 1_000, cancelledAt: odd, grace: 10) == 1_000)
            #expect(CreditRules.billedUntil(received: 1_000, cancelledAt: 100, grace: odd) == 1_000)
        }
    }

    @Test func aRunIsPaidNoMoreThanTheManagerSaw() {
        #expect(CreditRules.paidRuntime(spec, reportedMilliseconds: 1_800_000, observedMilliseconds: 250) == 250)
        #expect(CreditRules.settle(spec, ending: .ran(runtimeMilliseconds: 250)).paid == CreditRules.base(spec) + 1)
    }

    @Test func aRunIsPaidNoMoreThanTheWorkerReportedNorTheRequestedMinutes() {
        #expect(CreditRules.paidRuntime(spec, reportedMilliseconds: 1000, observedMilliseconds: 5000) == 1000)
        #expect(CreditRules.paidRuntime(spec, reportedMilliseconds: Int64.max, observedMilliseconds: Int64.max) == 1_800_000)
    }

    @Test func boundaryFiguresNeverTrapNorPayNegative() {
        for (r, o): (Int64, Int64) in [(Int64.min, Int64.min), (-1, 10), (10, -1), (0, 0), (Int64.max, Int64.min)] {
            let paid = CreditRules.paidRuntime(spec, reportedMilliseconds: r, observedMilliseconds: o)
            #expect((0...1_800_000).contains(paid), "\(r), \(o)")
        }
        #expect(CreditRules.chargedMinutes(spec, runtimeMilliseconds: Int64.max) == 30)
        #expect(CreditRules.chargedMinutes(spec, runtimeMilliseconds: Int64.min) == 0)
    }

    @Test func theObservedTimeComesFromTwoClockReadingsSafely() {
        #expect(CreditRules.observedMilliseconds(from: 100, to: 100.2501) == 251)
        #expect(CreditRules.observedMilliseconds(from: 100, to: 99) == 0, "a clock that went back")
        #expect(CreditRules.observedMilliseconds(from: .nan, to: 1) == 0)
        #expect(CreditRules.observedMilliseconds(from: -.infinity, to: .infinity) == 0)
        #expect(CreditRules.observedMilliseconds(from: 0, to: 1e300) > 0)
    }

    @Test func aVerifiedJobHoldsTwoRuns() {
        var verified = spec
        verified.verify = true
        #expect(CreditRules.runCost(verified) == CreditRules.hold(spec))
        #expect(CreditRules.hold(verified) == 2 * CreditRules.hold(spec))
        #expect(CreditRules.settle(verified, ending: .refunded).released == 2 * CreditRules.hold(spec))
    }

    @Test func theFundsShareIsRoundedUpAndNeverMoreThanThePayment() {
        #expect(CreditRules.fundShare(of: 100, percent: 5) == 5)
        #expect(CreditRules.fundShare(of: 9, percent: 5) == 1)
        #expect(CreditRules.fundShare(of: 0, percent: 5) == 0)
        #expect(CreditRules.fundShare(of: 9, percent: 0) == 0)
        #expect(CreditRules.fundShare(of: 9, percent: 250) == 9)
        #expect(CreditRules.fundShare(of: -9, percent: 5) == 0)
        #expect(CreditRules.fundShare(of: .max, percent: 5) <= .max)
        #expect(CreditRules.fundShare(of: .max, percent: 100) == .max)
    }

    @Test func aJobCannotBeBothVerifiedAndNondeterministic() {
        #expect(throws: GridError.self) { try JobSpec(name: "x", verify: true, nondeterministic: true).validate() }
        #expect(throws: Never.self) { try JobSpec(name: "x", nondeterministic: true).validate() }
    }

    @Test func everyRunOfAJobGetsTheSameSeedInItsEnvironment() {
        var s = spec
        #expect(s.seedEnvironment.isEmpty)
        s.seed = 12_345
        #expect(s.seedEnvironment["CAMPUSGRID_SEED"] == String(s.seed!))
        // String hashing is fixed for every job by the worker (`PYTHONHASHSEED=0`), not per job.
        #expect(s.seedEnvironment["PYTHONHASHSEED"] == nil)
    }
}
