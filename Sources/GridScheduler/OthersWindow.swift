/// How many other users' jobs one worker may hold at once: a pure record, changed one run at a time (BOINC's "max jobs
/// in progress" per host).
///
/// A worker's claims are claims: one that said it had 4,096 CPUs won every placement, failed each run at once, and was
/// paid each run's base (`CreditRules.base`), many runs at a time. What it says it has no longer decides how many other
/// users' jobs it gets: the window does. It starts at `first` (a laptop's worth), grows by one with each run of another
/// user's job that completes and doubles with each check that agrees with it (so an honest machine opens up within a few
/// rounds of jobs, as TCP's slow start does), and halves with each such run that fails, times out, is lost or refused,
/// down to one. A contradicted result shuts it to one. Its owner's own jobs are never limited by it, nor counted in it.
///
/// The manager keeps one per worker in memory; a restarted manager starts each from the worker's agreed checks
/// (`init(agreedChecks:)`).
public struct OthersWindow: Hashable, Sendable {
    /// A new worker's window.
    public static let first = 4
    /// The largest window (as many as a worker may claim CPUs).
    public static let most = 4_096

    /// What happened to one run of another user's job on the worker, or to a check of one.
    public enum Event: Hashable, Sendable {
        /// It completed (exit 0).
        case completed
        /// It failed, timed out, was lost (the worker went silent, restarted without it, gave up its report) or
        /// refused (`JOB_DONE rejected`).
        case failed
        /// A check run agreed with the worker's result.
        case agreed
        /// A check run contradicted it.
        case contradicted
    }

    /// How many other users' jobs the worker may hold at once, `1...most`.
    public private(set) var size: Int

    public init() { size = Self.first }

    /// The window of a worker the manager has not seen since it started: `first`, doubled for each check that agreed
    /// with the worker's results (as many as were recorded; a quarantined worker gets no others' jobs anyway).
    public init(agreedChecks: Int) {
        let doublings = min(max(0, agreedChecks), 12)
        size = min(Self.most, Self.first << doublings)
    }

    /// Records one event.
    public mutating func record(_ event: Event) {
        switch event {
        case .completed: size = min(Self.most, size + 1)
        case .agreed: size = min(Self.most, size * 2)
        case .failed: size = max(1, size / 2)
        case .contradicted: size = 1
        }
    }

    /// How many more other users' jobs the worker may be given while it holds `holding` of them: never negative, and
    /// no arithmetic on a count can trap.
    public func room(holding: Int) -> Int { max(0, size - max(0, holding)) }
}
