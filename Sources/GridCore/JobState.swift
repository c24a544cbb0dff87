/// Where a job is in its life: `submitted → pending → running → completed | failed | timed_out | cancelled`.
public enum JobState: String, Sendable, Codable, CaseIterable {
    case submitted
    case pending
    case running
    case completed
    case failed
    case timedOut = "timed_out"
    case cancelled

    /// Whether the job will never change state again.
    public var isFinal: Bool {
        switch self {
        case .completed, .failed, .timedOut, .cancelled: true
        case .submitted, .pending, .running: false
        }
    }
}
