public import GridCore

/// Where a function task runs (pure; issue 14). The peer that receives a task decides in two steps, with the manager's
/// answer (`GET_BEST_PEER`) in between, and `PeerService` carries the decisions out.
///
/// 1. `first`: a confidential task, or one another peer forwarded, runs here (the manager never hears of it); so does
///    any task when a slot is free here (a free slot is as good as the least-loaded peer's, without a round trip, as
///    Ray's local-first scheduling does) or when there is no manager to ask. Only a busy peer asks.
/// 2. `afterAsking`: the manager's best peer, unless it is this one or none, or not clearly less busy than this peer
///    is now (`TaskLoad.worthForwarding`; a peer that may not run the task itself counts as full); and only with the
///    user's ticket valid for the whole wait (the task's timeout and a minute), since the receiving peer checks it (a
///    peer without one does not ask, `ticketLasts`). Otherwise it runs here.
/// 3. `runsHereAfterForwardFailed`: a best peer that cannot be reached, does not trust this one, or has no room left
///    in its queue (`rateLimited`: its load report was old; it ran nothing) is passed over: the task runs here. Any
///    other failure is the task's answer (it was checked here before it went: a refusal there is of it).
///
/// A decision to keep a task here is reused for `answerReuseSeconds` (`reusable`, `keeps`), only by a peer that may run
/// the task itself: the manager knows
/// the peers' task load only from their `LOAD_UPDATE`s, which come at most every 50 ms, so asking again within that
/// time gets the same answer for one more round trip. A busy peer given thousands of tasks a second asks about once
/// per interval, not once per task, while no other peer is clearly less busy; an answer that sends a task elsewhere
/// stands for that task (the manager counts it on the peer it named), and a peer with no ticket that lasts a forward's
/// wait does not ask at all (`ticketLasts`).
public enum TaskRouting {
    public enum Reason: String, Hashable, Sendable {
        case confidential
        case forwardedByAPeer = "forwarded by a peer"
        case freeSlot = "a slot is free here"
        case noManager = "no manager to ask"
        case managerDidNotAnswer = "the manager did not answer"
        case noBetterPeer = "no better peer"
        case noTicket = "no ticket of the user's that lasts the wait"
        case bestPeerUnreachable = "the best peer is unreachable or does not trust this one"
    }

    public enum First: Hashable, Sendable {
        case runHere(Reason)
        case askManager
    }

    /// Whether a slot is free of jobs and tasks and nothing waits: a task given now would start at once. Counts are
    /// this peer's own; a negative one counts as none, and the sum never traps.
    public static func hasFreeSlot(jobsRunning: Int, tasksRunning: Int, queued: Int, slots: Int) -> Bool {
        let (a, o1) = max(0, jobsRunning).addingReportingOverflow(max(0, tasksRunning))
        let (busy, o2) = a.addingReportingOverflow(max(0, queued))
        return !o1 && !o2 && busy < slots
    }

    public static func first(confidential: Bool, forwardedByAPeer: Bool, freeSlot: Bool, hasManager: Bool) -> First {
        if confidential { return .runHere(.confidential) }
        if forwardedByAPeer { return .runHere(.forwardedByAPeer) }
        if freeSlot { return .runHere(.freeSlot) }
        if !hasManager { return .runHere(.noManager) }
        return .askManager
    }

    public enum Choice: Hashable, Sendable {
        case runHere(Reason)
        case forward(to: String)
    }

    /// The manager named `best` (nil: none, or it could not be asked: `asked` false). `ticketExpires`: the user's
    /// ticket held here (Unix seconds), if any; `waitSeconds`: how long the forward may take.
    ///
    /// `theirs`: the work per slot the manager counts on `best` (nil: not told); `mine`: this peer's own now. The
    /// manager knows this peer's load only from its last report, and a peer's load moves with every task: a task goes
    /// only where `TaskLoad.worthForwarding` holds by this peer's count too (before, a peer whose queue had grown since
    /// its report forwarded tasks to a peer as busy as itself).
    public static func afterAsking(
        asked: Bool, best: String?, selfId: String?, ticketExpires: Int64?, now: Int64, waitSeconds: Double, theirs: Double? = nil,
        mine: Double = .infinity
    ) -> Choice {
        guard asked else { return .runHere(.managerDidNotAnswer) }
        guard let best, !best.isEmpty, best != selfId else { return .runHere(.noBetterPeer) }
        if let theirs, !TaskLoad.worthForwarding(mine: mine, theirs: theirs) { return .runHere(.noBetterPeer) }
        guard ticketLasts(expires: ticketExpires, now: now, waitSeconds: waitSeconds) else { return .runHere(.noTicket) }
        return .forward(to: best)
    }

    /// An answer of the manager's to `GET_BEST_PEER`: the peer it named (nil: none), when it came (`at`) and when its
    /// question was sent (`askedAt`; `at` unless given), in seconds on a monotonic clock.
    public struct Answer: Hashable, Sendable {
        public var best: String?
        public var at: Double
        public var askedAt: Double
        public init(best: String?, at: Double, askedAt: Double? = nil) {
            self.best = best
            self.at = at
            self.askedAt = askedAt ?? at
        }
    }

    /// What this peer keeps after asking (`last`: what it kept before): a decision to keep the task here, reused from
    /// when its answer came (`answeredAt`) for `answerReuseSeconds`; nothing after a forward, or for a task this peer
    /// may not run (`keeps`); and `last` unchanged when its question was sent later than this one's (`replaces`).
    public static func remember(_ last: Answer?, choice: Choice, askedAt: Double, answeredAt: Double, mayRunHere: Bool) -> Answer? {
        guard replaces(last, askedAt: askedAt) else { return last }
        return keeps(choice, mayRunHere: mayRunHere) ? Answer(best: nil, at: answeredAt, askedAt: askedAt) : nil
    }

    /// How long an answer is reused: the shortest interval of the peers' load reports to the manager.
    public static let answerReuseSeconds = 0.05

    /// Whether the manager's answer, as this peer took it (`choice`), is kept for the next tasks (`reusable`): only
    /// when it kept the task here. One that sent it to another peer stands for that task: the manager counts each task
    /// it sends a peer's way (`PeerChoice.reserved`), so the next busy task asks again. Before, every task of the next
    /// 50 ms followed it, to a peer that had looked idle in a report already old.
    /// `mayRunHere`: this peer may run the task itself; a peer that may not (no task sandbox, not the owner's) keeps
    /// nothing, since another user's task it could not run would find a kept answer and be refused (a review).
    public static func keeps(_ choice: Choice, mayRunHere: Bool) -> Bool {
        guard mayRunHere else { return false }
        if case .forward = choice { return false }
        return true
    }

    /// Whether the user's ticket held here (`expires`, Unix seconds) lasts a forward's whole wait: the receiving peer
    /// checks it. A wait beyond a day is no wait a ticket covers; the sum never traps.
    public static func ticketLasts(expires: Int64?, now: Int64, waitSeconds: Double) -> Bool {
        guard let expires, waitSeconds.isFinite, waitSeconds >= 0 else { return false }
        let (until, overflow) = now.addingReportingOverflow(Int64(min(waitSeconds, 86_400).rounded(.up)))
        return !overflow && expires > until
    }

    /// `last` when it is recent enough at `now` to stand for the manager's answer; nil: ask. A time that is not finite,
    /// or a clock that went back, asks.
    public static func reusable(_ last: Answer?, now: Double) -> Answer? {
        guard let last, now.isFinite, last.at.isFinite, now >= last.at, now - last.at < answerReuseSeconds else { return nil }
        return last
    }

    /// `reusable`, for a task this peer may run itself (`mayRunHere`) only: one it may not run always asks.
    public static func reusable(_ last: Answer?, now: Double, mayRunHere: Bool) -> Answer? {
        mayRunHere ? reusable(last, now: now) : nil
    }

    /// Whether a decision of an ask that began at `askedAt` replaces `last`: only one that began later (answers come
    /// back out of order when many tasks wait on the manager at once; a late one must not overwrite a fresher one).
    public static func replaces(_ last: Answer?, askedAt: Double) -> Bool {
        guard let last else { return true }
        guard askedAt.isFinite else { return false }
        return !last.askedAt.isFinite || askedAt >= last.askedAt
    }

    /// Whether a forward that failed with `code` falls back to running here: the failure was the peer's (it could not
    /// be reached, did not trust this one, or had no room in its queue), not the task's. A peer that ran out of time on
    /// the task (`timeout`) or found it malformed did run it, or would refuse it anywhere.
    public static func runsHereAfterForwardFailed(_ code: GridError.Code) -> Bool {
        code == .unreachable || code == .unauthorized || code == .rateLimited
    }
}
