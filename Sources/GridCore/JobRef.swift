/// A job and the attempt at it: messages about an old attempt (a job given away after its lease expired) are ignored.
public struct JobRef: Hashable, Sendable, Codable, CustomStringConvertible {
    public var jobId: JobID
    public var attempt: Int
    public init(jobId: JobID, attempt: Int) {
        self.jobId = jobId
        self.attempt = attempt
    }
    public var description: String { "\(jobId)#\(attempt)" }
}
