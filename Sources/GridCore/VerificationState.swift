/// Where a job's result stands with verification (a second run on another owner's worker; see `Verification` in
/// GridScheduler). A job that was never selected for a check has no verification state.
public enum VerificationState: String, Hashable, Sendable, Codable, CaseIterable {
    /// The result is the first run's; a check run is queued or running.
    case unverified
    /// A check run on another owner's worker agreed with it.
    case verified
    /// The first run was contradicted by the majority of its check runs; the job's result is now the majority's.
    case contradicted
    /// The runs could not be compared to a decision (no majority of three, or a check run could not be completed).
    case inconclusive
}

extension API {
    /// A job's verification, as `status` and the job page show it.
    public struct Verification: Hashable, Sendable, Codable {
        public var state: VerificationState
        /// Why the job was checked: `probation`, `spot-check` or `requested`.
        public var reason: String?
        /// Workers whose runs agreed with the result (for `verified`).
        public var verifiedBy: [String]?
        /// The worker whose run replaced a contradicted result.
        public var rerunOn: String?
        /// In words: "verified by worker X", "unverified", "contradicted → rerun on Y".
        public var label: String
        /// While its check waits in the queue: why (its pending reason), so the submitter knows the result is not being
        /// checked yet and why not.
        public var checkWaiting: String?

        public init(state: VerificationState, reason: String?, verifiedBy: [String]?, rerunOn: String?) {
            self.state = state
            self.reason = reason
            self.verifiedBy = verifiedBy
            self.rerunOn = rerunOn
            switch state {
            case .unverified: label = "unverified"
            case .verified: label = "verified by worker " + (verifiedBy ?? []).joined(separator: ", ")
            case .contradicted: label = "contradicted → rerun on " + (rerunOn ?? "another worker")
            case .inconclusive: label = "inconclusive (the runs could not be compared to a decision)"
            }
        }

        /// The same, its check waiting in the queue for `reason`.
        public func waiting(_ reason: String) -> Verification {
            var v = self
            v.checkWaiting = reason
            if state == .unverified { v.label = "unverified (its check waits: \(reason))" }
            return v
        }
    }

    /// A worker's standing with verification, for the workers page and `campusgrid workers`.
    public struct Reputation: Hashable, Sendable, Codable {
        /// Results of this worker that a check run agreed with.
        public var verified: Int
        /// Results of this worker that the majority of a check contradicted.
        public var contradicted: Int
        /// Every result of a worker on probation is checked.
        public var probation: Bool
        /// A quarantined worker gets no jobs from other users until an admin lifts it.
        public var quarantined: Bool
        public var quarantineReason: String?
        public init(verified: Int, contradicted: Int, probation: Bool, quarantined: Bool, quarantineReason: String?) {
            self.verified = verified
            self.contradicted = contradicted
            self.probation = probation
            self.quarantined = quarantined
            self.quarantineReason = quarantineReason
        }
    }
}
