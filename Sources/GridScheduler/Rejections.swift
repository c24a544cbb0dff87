public import GridCore

/// The workers each queued job keeps away from because they could not start it (`JOB_DONE rejected`: their sandbox
/// failed, a damaged bundle), and for how long. Pure: the manager records refusals with the time, and each pass applies
/// the avoid sets to its copy of the queue.
///
/// A refusal is remembered for `forgetAfterSeconds`, not for the job's life: a worker that could not start a job may
/// be fixed meanwhile (its owner installed bubblewrap, freed its disk), and a job that only that worker fits would
/// otherwise wait for ever. Each refusal counts as an interruption of the job (`LossPolicy`), so a worker that keeps
/// refusing it ends it after `LossPolicy.Limits.maxLosses` tries, refunded, rather than holding it queued.
public struct Rejections: Sendable {
    /// How long a job keeps away from a worker that could not start it: seconds.
    public static let forgetAfterSeconds: Double = 600

    private var byJob: [JobID: [WorkerID: Double]] = [:]

    public init() {}

    /// Whether no refusal is remembered.
    public var isEmpty: Bool { byJob.isEmpty }

    /// `worker` could not start `job` at `now` (seconds on the manager's monotonic clock).
    public mutating func rejected(_ job: JobID, by worker: WorkerID, now: Double) {
        byJob[job, default: [:]][worker] = now
    }

    /// The job ended or left the queue for good: nothing is kept about it.
    public mutating func forget(_ job: JobID) {
        byJob[job] = nil
    }

    /// The workers `job` keeps away from at `now`.
    public func avoid(_ job: JobID, now: Double) -> Set<WorkerID> {
        guard let refusals = byJob[job] else { return [] }
        return Set(refusals.filter { Self.remembered(since: $0.value, now: now) }.map(\.key))
    }

    /// Every job's avoid set at `now`, for the pass to apply (the queue's copy of a job loses its set whenever the job
    /// is read again from the store): the jobs with refusals still remembered, and, once, each job whose refusals were
    /// all forgotten since the last call, with an empty set (it may go anywhere again).
    public mutating func avoidSets(now: Double) -> [JobID: Set<WorkerID>] {
        var out: [JobID: Set<WorkerID>] = [:]
        for (job, refusals) in byJob {
            let kept = refusals.filter { Self.remembered(since: $0.value, now: now) }
            if kept.count != refusals.count { byJob[job] = kept.isEmpty ? nil : kept }
            out[job] = Set(kept.keys)
        }
        return out
    }

    /// Whether a refusal at `at` is still remembered at `now`. Times that are not finite, or a refusal "in the future"
    /// by more than the interval (a clock that went back), are not remembered: nothing keeps a job away for ever.
    static func remembered(since at: Double, now: Double) -> Bool {
        let age = now - at
        return age.isFinite && age > -forgetAfterSeconds && age < forgetAfterSeconds
    }
}
