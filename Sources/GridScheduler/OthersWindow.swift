public import GridCore

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

/// Every owner's `OthersWindow`, the owner of each worker seen, and the failed runs still keeping their places: the
/// manager's one record of how many other users' jobs each owner's workers may be given now. Pure: events in, rooms
/// out, with the caller's monotonic clock (`now:`, seconds).
///
/// What a run of a job counts for is decided here, once: a run of the worker's owner's own job counts for nothing, nor
/// does a run on a worker whose owner is not known (the manager knows every worker that registered since it started).
public struct OthersWindows: Sendable {
    private var windows: [UserID: OthersWindow] = [:]
    private var owners: [WorkerID: UserID] = [:]
    /// Failed and timed-out runs of others' jobs, by the owner of the worker they ran on: each keeps its place until the
    /// time here (`OthersWindow.coolingSeconds` after the run started).
    private var cooling: [UserID: [Double]] = [:]

    public init() {}

    /// The owner of `worker`, when it registered since this record began.
    public func owner(of worker: WorkerID) -> UserID? { owners[worker] }

    /// Whether `owner` has a window yet (a manager reads an unknown owner's latest checks before its first worker is
    /// `registered`).
    public func knows(_ owner: UserID) -> Bool { windows[owner] != nil }

    /// The window of `owner` (a new owner's when it has none yet).
    public func window(of owner: UserID) -> OthersWindow { windows[owner] ?? OthersWindow() }

    /// A worker of `owner` registered. An owner with no window yet starts from its workers' latest check outcomes
    /// (`recent`, oldest first); one that has a window keeps it (its workers come and go).
    public mutating func registered(_ worker: WorkerID, owner: UserID, recent: [Reputation.Outcome] = []) {
        owners[worker] = owner
        if windows[owner] == nil { windows[owner] = OthersWindow(recent: recent) }
    }

    /// A run of `jobOwner`'s job on `worker` completed (exit 0).
    public mutating func completed(on worker: WorkerID, jobOwner: UserID) {
        guard let owner = owners[worker], owner != jobOwner else { return }
        windows[owner]?.record(.completed)
    }

    /// A check agreed with, or contradicted, a run of `worker`'s, whose owner was `owner` when it ran (nil: its owner now).
    public mutating func checked(_ outcome: Reputation.Outcome, worker: WorkerID, owner: UserID? = nil) {
        guard let owner = owner ?? owners[worker] else { return }
        windows[owner]?.record(outcome == .agreed ? .agreed : .contradicted)
    }

    /// A run of `jobOwner`'s job on `worker` failed or timed out after `ranSeconds` (from when it started; not finite, or
    /// negative: none): it keeps its place in the window of the worker's owner until `OthersWindow.coolingSeconds`
    /// after it started.
    public mutating func ended(on worker: WorkerID, jobOwner: UserID, ranSeconds: Double, now: Double) {
        guard let owner = owners[worker], owner != jobOwner else { return }
        let ran = ranSeconds.isFinite ? max(0, ranSeconds) : 0
        let left = OthersWindow.coolingSeconds - ran
        guard left > 0 else { return }
        cooling[owner, default: []].append(now + left)
    }

    /// How many more other users' jobs the workers of each of `owners` may be given now: its window less what they hold
    /// (`held`: a worker and the owner of the job it holds, for each leased run, the runs of workers that are away too,
    /// and each report waiting for its logs) and its failed runs still cooling. Cooling runs whose time has passed are
    /// forgotten.
    public mutating func rooms(
        for owners: some Sequence<UserID>, held: some Sequence<(worker: WorkerID, jobOwner: UserID)>, now: Double
    ) -> [UserID: Int] {
        var holding: [UserID: Int] = [:]
        for h in held {
            guard let owner = self.owners[h.worker], owner != h.jobOwner else { continue }
            holding[owner, default: 0] += 1
        }
        for (owner, untils) in cooling {
            let still = untils.filter { $0 > now }
            cooling[owner] = still.isEmpty ? nil : still
            holding[owner, default: 0] += still.count
        }
        var rooms: [UserID: Int] = [:]
        for owner in owners { rooms[owner] = window(of: owner).room(holding: holding[owner] ?? 0) }
        return rooms
    }
}
