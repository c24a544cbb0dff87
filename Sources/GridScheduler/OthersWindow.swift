/// How many other users' jobs one owner's workers may hold at once: a pure record, changed one run at a time (BOINC's
/// "max jobs in progress", kept per owner here, so that many worker ids of one owner share one).
///
/// A worker's claims are claims: one that said it had 4,096 CPUs won every placement, failed each run at once, and was
/// paid each run's base (`CreditRules.base`), many runs at a time. What an owner's workers say they have no longer
/// decides how many other users' jobs they get: the window does. It starts at `first` (a laptop's worth), grows by one
/// with each run of another user's job that completes and doubles with each check that agrees with one of its workers
/// (so an honest owner's machines open up within a few rounds of jobs, as TCP's slow start does), and shuts to one
/// after a contradicted result. A run that failed or timed out changes nothing (it may be the job's own doing, and any
/// user could otherwise shrink honest workers' windows with failing jobs), but keeps its place in the window until
/// `coolingSeconds` after it started (the minute it is paid at least): failing others' jobs at once takes at most a
/// window's worth a minute. A run its worker lost or refused changes nothing either: it is not paid (a laptop that
/// closes its lid is no cheat), and `Rejections` and `LossPolicy` keep such jobs away from such workers. The owner's own
/// jobs are never limited by the window, nor counted in it.
///
/// The manager keeps one per owner in memory; a restarted manager starts each from the owner's latest check outcomes
/// (`init(recent:)`).
public struct OthersWindow: Hashable, Sendable {
    /// A new owner's window.
    public static let first = 4
    /// The largest window (as many as a worker may claim CPUs).
    public static let most = 4_096
    /// How long a failed or timed-out run of another user's job keeps its place, from when it was given.
    public static let coolingSeconds: Double = 60

    /// What happened to one run of another user's job on one of the owner's workers, or to a check of one.
    public enum Event: Hashable, Sendable {
        /// It completed (exit 0).
        case completed
        /// A check run agreed with the worker's result.
        case agreed
        /// A check run contradicted it.
        case contradicted
    }

    /// How many other users' jobs the owner's workers may hold at once, `1...most`.
    public private(set) var size: Int

    public init() { size = Self.first }

    /// The window of an owner this manager has not seen since it started, from the latest check outcomes of its workers
    /// (oldest first, as `Reputation.recent` keeps them), replayed from `first` as they would have been recorded: one
    /// after a contradiction, doubled by each agreement since.
    public init(recent: [Reputation.Outcome]) {
        size = Self.first
        for outcome in recent { record(outcome == .agreed ? .agreed : .contradicted) }
    }

    /// Records one event.
    public mutating func record(_ event: Event) {
        switch event {
        case .completed: size = min(Self.most, size + 1)
        case .agreed: size = min(Self.most, size * 2)
        case .contradicted: size = 1
        }
    }

    /// How many more other users' jobs the owner's workers may be given while they hold `holding` of them (runs, reports
    /// waiting for their logs, and failed runs still cooling): never negative, and no arithmetic on a count can trap.
    public func room(holding: Int) -> Int { max(0, size - max(0, holding)) }
}
