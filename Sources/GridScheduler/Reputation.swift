import GridCore

/// What the manager knows of one worker's honesty: a pure record, changed one check outcome at a time.
///
/// A worker is on probation (every result checked) until `probationResults` of its results were verified. A worker
/// contradicted `quarantineAfter` times within its last `window` checks is quarantined: it gets no more jobs from other
/// users until an admin lifts the quarantine (which clears the recent window, so one more contradiction does not put
/// it straight back).
public struct Reputation: Hashable, Sendable {
    /// How one check of one of the worker's results came out.
    public enum Outcome: String, Hashable, Sendable, Codable {
        case agreed
        case contradicted
    }

    /// The thresholds (defaults from the issue: probation until 5 agreeing results; 2 contradictions in the last 20).
    public struct Rules: Hashable, Sendable {
        public var probationResults: Int
        public var window: Int
        public var quarantineAfter: Int
        public init(probationResults: Int = 5, window: Int = 20, quarantineAfter: Int = 2) {
            self.probationResults = max(0, probationResults)
            self.window = max(1, window)
            self.quarantineAfter = max(1, quarantineAfter)
        }
    }

    /// What recording an outcome calls for.
    public enum Action: Hashable, Sendable {
        /// The worker just passed its probation.
        case leftProbation
        /// The worker is now quarantined, for this reason (in words, for its owner).
        case quarantine(reason: String)
    }

    public private(set) var verified = 0
    public private(set) var contradicted = 0
    /// The latest outcomes, oldest first, at most `rules.window`.
    public private(set) var recent: [Outcome] = []
    public private(set) var quarantined = false
    public let rules: Rules

    public init(rules: Rules = Rules()) { self.rules = rules }

    /// Rebuilds a record from stored outcomes (oldest first) and the stored quarantine flag.
    public init(rules: Rules = Rules(), history: [Outcome], quarantined: Bool, window: [Outcome]? = nil) {
        self.rules = rules
        for outcome in history { _ = record(outcome) }
        self.quarantined = quarantined
        if let window { recent = Array(window.suffix(rules.window)) }
    }

    /// Every result of a worker on probation is checked.
    public var onProbation: Bool { verified < rules.probationResults }

    /// Contradictions within the recent window.
    public var recentContradictions: Int { recent.lazy.filter { $0 == .contradicted }.count }

    /// Records one check outcome and says what it calls for.
    public mutating func record(_ outcome: Outcome) -> [Action] {
        let wasOnProbation = onProbation
        switch outcome {
        case .agreed: verified = verified &+ 1 < 0 ? Int.max : verified + 1
        case .contradicted: contradicted = contradicted &+ 1 < 0 ? Int.max : contradicted + 1
        }
        recent.append(outcome)
        if recent.count > rules.window { recent.removeFirst(recent.count - rules.window) }
        var actions: [Action] = []
        if wasOnProbation, !onProbation { actions.append(.leftProbation) }
        if !quarantined, recentContradictions >= rules.quarantineAfter {
            quarantined = true
            actions.append(
                .quarantine(
                    reason: "contradicted \(recentContradictions) times in its last \(recent.count) checked results"
                        + " (the limit is \(rules.quarantineAfter) in \(rules.window))"))
        }
        return actions
    }

    /// An admin lifted the quarantine: the worker starts a fresh window (its totals stay).
    public mutating func lift() {
        quarantined = false
        recent = []
    }
}
