/// The credit rules of the seed document, kept exactly (DESIGN §6).
///
/// `cost = 5 + 2×cpus + 1×ram_gb + 10×gpu + 1×minutes`. The full cost (with the requested minutes) is held at submission;
/// at the end the submitter pays the same formula with the actual minutes (rounded up, at most the requested minutes),
/// the worker's owner earns what was paid, and the rest of the hold is released.
public enum CreditRules {
    /// Credits a new account starts with, unless configured otherwise.
    public static let defaultStartingCredits = 100

    /// The fixed part of the cost: everything but the minutes.
    public static func base(_ spec: JobSpec) -> Int { 5 + 2 * spec.cpus + spec.ramGb + 10 * spec.gpus }

    /// The most one run of the job can cost (its requested minutes).
    public static func runCost(_ spec: JobSpec) -> Int { base(spec) + spec.minutes }

    /// The hold taken at submission: one run's cost, or two when the submitter asked for a verified result
    /// (`--verify`: they pay for the check run too).
    public static func hold(_ spec: JobSpec) -> Int { runCost(spec) * (spec.wantsVerification ? 2 : 1) }

    /// The verification fund's default share of every payment, in percent.
    public static let defaultFundSharePercent = 5

    /// The verification fund's share of a payment of `paid` credits at `percent`: rounded up (so small payments feed
    /// the fund too), never more than the payment, never negative, and never a trap whatever the inputs.
    public static func fundShare(of paid: Int, percent: Int) -> Int {
        let paid = max(0, paid)
        let percent = min(max(0, percent), 100)
        // paid = 100q + r, so paid × percent / 100 = q × percent + r × percent / 100: no product can overflow.
        let (q, r) = paid.quotientAndRemainder(dividingBy: 100)
        return min(paid, q * percent + (r * percent + 99) / 100)
    }

    /// Minutes charged for a run of `runtimeMilliseconds`: rounded up, at most the requested minutes.
    public static func chargedMinutes(_ spec: JobSpec, runtimeMilliseconds: Int64) -> Int {
        // Clamped first: a reported runtime is a claim, and no arithmetic on it may trap.
        let ms = min(max(0, runtimeMilliseconds), Int64(max(0, spec.minutes)) * 60_000)
        let minutes = Int((ms + 59_999) / 60_000)
        return min(minutes, spec.minutes)
    }

    /// The runtime a run is paid for: what its worker reported, but never more than the manager itself saw pass between
    /// the run's start and its end (`observedMilliseconds`), nor more than the requested minutes. A worker cannot be paid
    /// for time it claims but the manager did not see.
    public static func paidRuntime(_ spec: JobSpec, reportedMilliseconds: Int64, observedMilliseconds: Int64) -> Int64 {
        let limit = Int64(max(0, spec.minutes)) * 60_000
        return min(max(0, reportedMilliseconds), max(0, observedMilliseconds), limit)
    }

    /// The CPU time recorded for a run (fair share orders the queue by it; the leaderboard shows it): what the worker
    /// reported, but never more than the job's CPUs for the paid runtime. A worker reporting 10¹⁰ CPU-seconds on
    /// another user's job pushed that user to the back of the queue for a day.
    public static func creditedCPUSeconds(_ spec: JobSpec, reported: Double, paidRuntimeMs: Int64) -> Double {
        guard reported.isFinite, reported > 0 else { return 0 }
        let most = Double(max(0, spec.cpus)) * Double(max(0, paidRuntimeMs)) / 1000
        return min(reported, most)
    }

    /// The manager's own measure of a run, in milliseconds, from two wall-clock readings in seconds: 0 when either is
    /// not a number or the clock went backwards, and never a trap.
    public static func observedMilliseconds(from start: Double, to end: Double) -> Int64 {
        let seconds = end - start
        guard seconds.isFinite, seconds > 0 else { return 0 }
        return seconds >= 1e12 ? Int64(1e15) : Int64((seconds * 1000).rounded(.up))
    }

    /// Until when a run is billed (wall-clock seconds): until its report came (`received`), but for a run its submitter
    /// cancelled (`cancelledAt`) no later than `grace` seconds after the cancel (a lease period: the worker is told at
    /// once and need only stop). A report on its way when the cancel came is taken (the manager keeps the run while its
    /// frame arrives), but a worker that sent it slowly is not paid for the minutes it took. A cancel time or grace that
    /// is not a number caps nothing.
    public static func billedUntil(received: Double, cancelledAt: Double?, grace: Double) -> Double {
        guard let cancelledAt, cancelledAt.isFinite, grace.isFinite else { return received }
        return min(received, cancelledAt + max(0, grace))
    }

    /// How a job ended, as far as credits are concerned.
    public enum Ending: Sendable, Hashable {
        /// The job ran (completed, failed by its own error, timed out, or cancelled while running): the worker did the work.
        case ran(runtimeMilliseconds: Int64)
        /// Cancelled before it started, or lost through no fault of its own: refunded in full.
        case refunded
    }

    /// How a hold is split when a job ends.
    public struct Settlement: Hashable, Sendable {
        /// Paid by the submitter to the worker's owner.
        public var paid: Int
        /// Released back to the submitter.
        public var released: Int
    }

    public static func settle(_ spec: JobSpec, ending: Ending) -> Settlement {
        let held = hold(spec)
        switch ending {
        case .refunded:
            return Settlement(paid: 0, released: held)
        case .ran(let ms):
            let paid = base(spec) + chargedMinutes(spec, runtimeMilliseconds: ms)
            return Settlement(paid: paid, released: held - paid)
        }
    }
}
