/// When the manager may settle a run that its worker reported done. Pure.
///
/// A run's output is part of its result: `JOB_DONE` says how many log bytes the attempt produced, and the job is
/// settled (stored as ended, paid) only once the manager holds all of them. Missing bytes come from the worker, which
/// re-sends the tail of finished runs from the offset the manager reports in `REGISTERED`. The wait is bounded: a
/// report whose bytes never come is not settled at all (the run counts as interrupted and the job runs again).
public enum SettleRule {
    public enum Decision: Hashable, Sendable {
        /// Everything arrived: settle now.
        case settle
        /// Wait for `missing` more bytes of the log (until `waitingSince + bound`).
        case wait(missing: Int64)
        /// The bytes did not come in time: do not settle this report; interrupt the run, for this reason.
        case giveUp(String)
    }

    /// - Parameters:
    ///   - stored: bytes of this attempt's log the manager holds.
    ///   - reported: the log length `JOB_DONE` claims (nil from a worker that does not say).
    ///   - waitingSince: when the manager first held this report unsettled (nil: it just arrived).
    ///   - maxLogBytes: the most log a run may have; a claim beyond it is not believed.
    public static func decide(
        stored: Int64, reported: Int64?, waitingSince: Double?, now: Double, bound: Double, maxLogBytes: Int64
    ) -> Decision {
        guard let reported else { return .settle }
        guard reported >= 0, reported <= maxLogBytes else {
            return .giveUp("the worker reported an impossible log length (\(reported) bytes)")
        }
        if stored >= reported { return .settle }
        let missing = reported - stored
        let since = waitingSince ?? now
        let waited = now - since
        if waited.isFinite, waited < bound { return .wait(missing: missing) }
        return .giveUp("the worker reported \(reported) log bytes but only \(stored) arrived within \(Int(bound)) s")
    }
}
