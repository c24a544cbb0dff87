public import GridCore

/// The manager's rules for a worker's report that a run ended (`JOB_DONE`), pure (issue 14).
///
/// A report is settled only once the run's whole log is stored (`SettleRule`): until then it is held, its lease
/// released, the worker not answered (so it keeps the report too), and the missing bytes are taken as they come. The
/// manager's actor reads the store (the job as it is now, the log bytes it holds), then asks this machine, in one step
/// with no suspension, what to do: acknowledge a stale report, wait, give up on the run, or settle it.
///
/// `Report` is what the actor keeps of a held report (the message, its output files).
public struct RunReports<Report: Sendable>: Sendable {
    /// A report held until the rest of its log arrives.
    public struct Held: Sendable {
        public var worker: WorkerID
        public var ref: JobRef
        public var report: Report
        /// The log length the report claims (nil: a worker that does not say).
        public var reportedLogBytes: Int64?
        /// When the manager began to wait (monotonic clock).
        public var since: Double
        /// When the report first arrived (wall clock): the end of the run as the manager saw it.
        public var receivedAt: Double
        /// The report says the run was cancelled.
        public var cancelled: Bool
    }

    /// The job as the store has it when the report is decided.
    public struct CurrentRun: Hashable, Sendable {
        public var state: JobState
        public var attempt: Int
        public var worker: WorkerID?
        /// The job's owner asked to cancel it.
        public var cancelRequested: Bool
        public init(state: JobState, attempt: Int, worker: WorkerID?, cancelRequested: Bool = false) {
            self.state = state
            self.attempt = attempt
            self.worker = worker
            self.cancelRequested = cancelRequested
        }
    }

    public enum Decision: Hashable, Sendable {
        /// Not this worker's current run (any more): acknowledge it and store nothing (the worker may forget it).
        case stale
        /// `missing` bytes of the log have not arrived: release the run's lease, answer nothing, keep the report.
        case wait(missing: Int64)
        /// The bytes did not come in time, or the claim is impossible: release the lease, interrupt the run for this
        /// reason, and acknowledge the report (it is not settled).
        case giveUp(String)
        /// Record the end, as of `receivedAt` (wall clock: when the report first came), and acknowledge it.
        case settle(receivedAt: Double)
        /// The report says the run was cancelled, but nobody cancelled the job: only its owner ends a job that way. The
        /// run is interrupted (the job runs again, nothing is paid for this run) and the report acknowledged.
        case notCancelled
    }

    /// How long a report may wait for its log (seconds).
    public let bound: Double
    /// The most log a run may have: a claim beyond it is not believed.
    public let maxLogBytes: Int64
    public private(set) var held: [JobID: Held] = [:]

    public init(bound: Double, maxLogBytes: Int64) {
        self.bound = bound
        self.maxLogBytes = maxLogBytes
    }

    /// A report of `ref` from `worker` arrived (`now`: monotonic, `wall`: wall clock); `cancelled`: it says the run was
    /// cancelled. A report this machine already holds for the same run and worker (sent again after a reconnect) keeps
    /// when it first came and since when it waits.
    public mutating func reported(
        _ report: Report, ref: JobRef, worker: WorkerID, reportedLogBytes: Int64?, cancelled: Bool = false, current: CurrentRun?,
        storedLogBytes: Int64, now: Double, wall: Double
    ) -> Decision {
        let earlier = held[ref.jobId].flatMap { $0.ref == ref && $0.worker == worker ? $0 : nil }
        let entry = Held(
            worker: worker, ref: ref, report: report, reportedLogBytes: reportedLogBytes, since: earlier?.since ?? now,
            receivedAt: earlier?.receivedAt ?? wall, cancelled: cancelled)
        return decide(entry, current: current, storedLogBytes: storedLogBytes, now: now, waitingSince: earlier?.since)
    }

    /// Decides the held report of job `id` again (more of its log arrived, or its wait ran out); nil if none is held.
    public mutating func recheck(_ id: JobID, current: CurrentRun?, storedLogBytes: Int64, now: Double) -> (held: Held, decision: Decision)? {
        guard let entry = held[id] else { return nil }
        return (entry, decide(entry, current: current, storedLogBytes: storedLogBytes, now: now, waitingSince: entry.since))
    }

    /// Whether log bytes of `ref` from `worker` are awaited by a held report (its lease is released, but its log is not
    /// refused).
    public func awaitsLog(_ ref: JobRef, from worker: WorkerID) -> Bool {
        held[ref.jobId].map { $0.ref == ref && $0.worker == worker } ?? false
    }

    /// The jobs whose held report has waited its bound at `now`, in job order.
    public func due(now: Double) -> [JobID] {
        held.filter { !(now - $0.value.since < bound) }.keys.sorted()
    }

    /// The held reports, as `Rejoin` takes them.
    public var settling: [JobID: Rejoin.Settling] {
        held.mapValues { Rejoin.Settling(ref: $0.ref, worker: $0.worker) }
    }

    private mutating func decide(_ entry: Held, current: CurrentRun?, storedLogBytes: Int64, now: Double, waitingSince: Double?) -> Decision {
        guard let current, current.state == .running, current.attempt == entry.ref.attempt, current.worker == entry.worker else {
            // Only this run's own held report is dropped: a stale report of another attempt or worker must not take
            // away the report the current run is waiting with.
            if held[entry.ref.jobId].map({ $0.ref == entry.ref && $0.worker == entry.worker }) == true { held[entry.ref.jobId] = nil }
            return .stale
        }
        // A worker cannot end someone's job by saying it was cancelled (a worker that stops cancels its runs; a hostile
        // one may claim anything): without the owner's request the run is only interrupted.
        if entry.cancelled && !current.cancelRequested {
            if held[entry.ref.jobId].map({ $0.ref == entry.ref && $0.worker == entry.worker }) == true { held[entry.ref.jobId] = nil }
            return .notCancelled
        }
        switch SettleRule.decide(
            stored: storedLogBytes, reported: entry.reportedLogBytes, waitingSince: waitingSince, now: now, bound: bound, maxLogBytes: maxLogBytes)
        {
        case .settle:
            held[entry.ref.jobId] = nil
            return .settle(receivedAt: entry.receivedAt)
        case .wait(let missing):
            held[entry.ref.jobId] = entry
            return .wait(missing: missing)
        case .giveUp(let why):
            held[entry.ref.jobId] = nil
            return .giveUp(why)
        }
    }
}
