public import GridCore

/// What happens to a job whose run was interrupted: retried, or given up (and refunded). Pure.
///
/// On a campus, laptops close and lab machines reboot all day, so losing a worker does not count against the job that
/// ran on it, unless the evidence points at the job: it was lost on `blamedWorkers` different workers, each time the
/// only job its worker lost in that outage, within its own time limit, on workers that do not lose other jobs (a job
/// that crashes its hosts). Everything else is retried while it has time left under a generous bound: `maxLosses`
/// interruptions or `maxAgeSeconds` after submission, whichever comes first (jobs have no deadline of their own).
public enum LossPolicy {
    /// Why a run was interrupted.
    public enum Kind: String, Hashable, Sendable, Codable {
        /// The worker stopped responding (its lease expired) or came back without the job.
        case workerLost = "worker_lost"
        /// The worker could not start the job (its sandbox, a damaged bundle).
        case rejected
        /// The worker reported the end but the run's log never arrived whole.
        case incompleteReport = "incomplete_report"
        /// The worker reported the run cancelled though nobody cancelled the job (it was stopping, or a hostile one):
        /// the job is not over, it runs again.
        case stoppedByWorker = "stopped_by_worker"
        /// The worker said the job's Python environment could not be built, and that did not end the job yet
        /// (`EnvironmentFailure`): a worker of another owner tries.
        case environmentFailed = "environment_failed"
    }

    /// What the manager saw when a run was lost.
    public struct Evidence: Hashable, Sendable {
        /// No other job of the same worker was lost in the same outage (it ran nothing else, or its other jobs went on).
        public var alone: Bool
        /// The worker lost other jobs recently, without this one: it is a host that goes away by itself.
        public var hostFlaky: Bool
        /// How long the run had been going when it was lost, and the job's own time limit.
        public var ranSeconds: Double
        public var limitSeconds: Double
        public init(alone: Bool, hostFlaky: Bool, ranSeconds: Double, limitSeconds: Double) {
            self.alone = alone
            self.hostFlaky = hostFlaky
            self.ranSeconds = ranSeconds
            self.limitSeconds = limitSeconds
        }
    }

    /// One interruption of a job, as recorded.
    public struct Loss: Hashable, Sendable {
        public var worker: WorkerID
        public var at: Double
        public var kind: Kind
        /// Whether this loss points at the job (see `blames`).
        public var blamed: Bool
        public init(worker: WorkerID, at: Double, kind: Kind, blamed: Bool) {
            self.worker = worker
            self.at = at
            self.kind = kind
            self.blamed = blamed
        }
    }

    public struct Limits: Hashable, Sendable {
        /// Interruptions of any kind after which a job is given up.
        public var maxLosses: Int = 10
        /// Seconds after submission after which an interrupted job is given up.
        public var maxAgeSeconds: Double = 86_400
        /// Different workers a job must be blamed on before it is taken for a job that crashes its hosts.
        public var blamedWorkers: Int = 3
        public init(maxLosses: Int = 10, maxAgeSeconds: Double = 86_400, blamedWorkers: Int = 3) {
            self.maxLosses = maxLosses
            self.maxAgeSeconds = maxAgeSeconds
            self.blamedWorkers = blamedWorkers
        }
    }

    public enum Decision: Hashable, Sendable {
        case retry
        /// End the job as failed, refunded, for this reason.
        case giveUp(String)
    }

    /// Whether a loss points at the job: its worker went away while running it, and nothing else explains it (the
    /// worker lost nothing else in that outage, is not a host that keeps losing jobs, and the job was within its time).
    public static func blames(_ kind: Kind, _ evidence: Evidence) -> Bool {
        guard kind == .workerLost else { return false }
        let ran = evidence.ranSeconds.isFinite ? evidence.ranSeconds : .infinity
        return evidence.alone && !evidence.hostFlaky && ran <= evidence.limitSeconds
    }

    /// The decision after `history` (every interruption of the job so far, the latest included).
    public static func decide(history: [Loss], submittedAt: Double, now: Double, limits: Limits = Limits()) -> Decision {
        var blamedOn: [WorkerID] = []
        for loss in history where loss.blamed && !blamedOn.contains(loss.worker) { blamedOn.append(loss.worker) }
        if blamedOn.count >= max(1, limits.blamedWorkers) {
            return .giveUp(
                "it was lost on \(blamedOn.count) different workers (\(blamedOn.joined(separator: ", "))), each time the only job its "
                    + "worker lost, on workers that keep other jobs: it appears to crash the machines it runs on; refunded")
        }
        if history.count >= max(1, limits.maxLosses) {
            return .giveUp("interrupted \(history.count) times, the most a job is retried; refunded")
        }
        let age = now - submittedAt
        if !age.isFinite || age >= limits.maxAgeSeconds {
            return .giveUp(
                "interrupted \(history.count) times and still not done \(Int(limits.maxAgeSeconds / 3600)) h after it was submitted; refunded")
        }
        return .retry
    }
}
