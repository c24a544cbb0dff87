public import GridCore

/// The worker's side of the runs its manager gives it (pure; issue 14): which phase each run is in, whether it was
/// cancelled, and which ended runs wait for the manager's acknowledgement. `WorkerAgent` asks it on every event and
/// carries out the answer; the runs' data (executions, logs, scratch folders) stay with the agent.
///
/// The rules, in one place:
/// - a run is taken (`assign`) on the link's read loop, before anything is awaited, so that a `CANCEL` read right after
///   its `JOB_ASSIGN` finds it;
/// - a cancel, a `REGISTERED` that gives the run away, or the worker stopping, before the run started, stops it from
///   starting (`beginStart` answers `.reportCancelled`); during its start, it is stopped as soon as it has started
///   (`started` answers `.cancelAtOnce`); once running, its execution is cancelled;
/// - another attempt of a job that is still starting here is refused (the first one cannot be stopped halfway);
///   another attempt of one preparing or running here replaces it (the old one is cancelled);
/// - an ended run is kept (`Report`) until the manager acknowledges that very attempt; each new registration re-sends
///   every one still kept, in job order, whatever the connection it was first sent on.
public struct WorkerJobTable<Report: Sendable>: Sendable {
    public enum Phase: Hashable, Sendable {
        /// Its inputs are being fetched or its Python environment prepared: held (its lease is renewed), not started.
        case preparing
        /// Its sandbox is being started.
        case starting
        /// Started: its execution runs until it ends.
        case running
    }

    public struct Entry: Hashable, Sendable {
        public var ref: JobRef
        public var phase: Phase
        /// Cancelled (by the manager or the worker stopping) before it could be stopped.
        public var cancelled: Bool
    }

    public private(set) var entries: [JobRef: Entry] = [:]
    /// Ended runs the manager has not acknowledged yet.
    public private(set) var unacked: [JobRef: Report] = [:]
    public private(set) var stopping = false

    public init() {}

    // MARK: - Events

    public enum Assignment: Equatable, Sendable {
        /// Prepare and start it; first cancel the executions of these older attempts of the same job.
        case take(replacing: [JobRef])
        /// Already held here (the manager sent it twice): nothing to do.
        case duplicate
        /// Refuse it: report it `rejected` with this reason, so that the manager gives it to another worker.
        case refuse(String)
    }

    /// The manager assigned `ref`. `admitted`: the worker's admission rule lets it run this job's owner's code.
    public mutating func assign(_ ref: JobRef, admitted: Bool) -> Assignment {
        if entries[ref] != nil || unacked[ref] != nil { return .duplicate }
        let others = entries.values.filter { $0.ref.jobId == ref.jobId }
        if others.contains(where: { $0.phase == .starting }) {
            for other in others where other.phase == .starting { entries[other.ref]?.cancelled = true }
            return .refuse("an earlier attempt of this job is still starting on this worker")
        }
        if stopping { return .refuse("the worker is stopping") }
        guard admitted else {
            return .refuse("this worker has no real sandbox and runs only its owner's jobs (started without --allow-unsandboxed)")
        }
        var replaced: [JobRef] = []
        for other in others {
            entries[other.ref]?.cancelled = true
            if other.phase == .running { replaced.append(other.ref) }
        }
        entries[ref] = Entry(ref: ref, phase: .preparing, cancelled: false)
        return .take(replacing: replaced.sorted { $0.attempt < $1.attempt })
    }

    public enum Cancellation: Equatable, Sendable {
        /// It runs: cancel its execution (it ends and is reported `cancelled`).
        case cancelRun
        /// Not started yet: noted; it will not start (or is stopped the moment it has started).
        case noted
        /// Not held here (ended already, or never came): nothing to do.
        case unknown
    }

    /// The manager cancelled `ref` (its owner cancelled it, or its lease went to another worker).
    public mutating func cancel(_ ref: JobRef) -> Cancellation {
        guard let entry = entries[ref] else { return .unknown }
        if entry.phase == .running { return .cancelRun }
        entries[ref]?.cancelled = true
        return .noted
    }

    public enum StartDecision: Equatable, Sendable {
        /// Start its sandbox now.
        case start
        /// It was cancelled before it started: report it cancelled (its hold refunded), never start it.
        case reportCancelled
        /// It is no longer held here (replaced, or already reported): drop it silently.
        case drop
    }

    /// The run's inputs and environment are ready: may its sandbox start?
    public mutating func beginStart(_ ref: JobRef) -> StartDecision {
        guard let entry = entries[ref], entry.phase == .preparing else { return .drop }
        if entry.cancelled || stopping { return .reportCancelled }
        entries[ref]?.phase = .starting
        return .start
    }

    public enum StartedDecision: Equatable, Sendable {
        /// Let it run.
        case run
        /// Cancelled (or the worker began stopping) while it started: cancel it now; it is reported like any cancelled run.
        case cancelAtOnce
    }

    /// Its sandbox started.
    public mutating func started(_ ref: JobRef) -> StartedDecision {
        guard let entry = entries[ref] else { return .cancelAtOnce }
        entries[ref]?.phase = .running
        return entry.cancelled || stopping ? .cancelAtOnce : .run
    }

    /// The run ended, or could not start, or was refused: it is reported, and kept until acknowledged.
    public mutating func reported(_ ref: JobRef, _ report: Report) {
        entries[ref] = nil
        unacked[ref] = report
    }

    /// The manager acknowledged the report of `ref`; an acknowledgement of another attempt changes nothing.
    public mutating func acknowledged(_ ref: JobRef) {
        unacked[ref] = nil
    }

    public struct Registration: Sendable {
        /// Runs to cancel now (their executions run).
        public var cancelRuns: [JobRef]
        /// Reports to send again, in job order.
        public var resend: [(ref: JobRef, report: Report)]
    }

    /// A connection registered; the manager gave away the runs in `cancel` (it keeps the others).
    public mutating func registered(cancel: [JobRef]) -> Registration {
        var runs: [JobRef] = []
        for ref in cancel {
            guard let entry = entries[ref] else { continue }
            if entry.phase == .running { runs.append(ref) } else { entries[ref]?.cancelled = true }
        }
        let resend = unacked.sorted { ($0.key.jobId, $0.key.attempt) < ($1.key.jobId, $1.key.attempt) }.map { (ref: $0.key, report: $0.value) }
        return Registration(cancelRuns: runs.sorted { ($0.jobId, $0.attempt) < ($1.jobId, $1.attempt) }, resend: resend)
    }

    /// The worker is stopping: every running execution is cancelled; nothing else starts.
    public mutating func shutdown() -> [JobRef] {
        stopping = true
        for ref in entries.keys { entries[ref]?.cancelled = true }
        return entries.values.filter { $0.phase == .running }.map(\.ref).sorted { ($0.jobId, $0.attempt) < ($1.jobId, $1.attempt) }
    }

    /// Where to resume sending a run's log after `REGISTERED`: the offset the manager says it holds, within what this
    /// worker holds (0…`held`). The number comes from the wire: a negative one (or none) resumes from the start, and
    /// one past the end sends nothing; neither may index outside the log.
    public static func resumeOffset(claimed: Int64?, held: Int) -> Int64 {
        min(max(0, claimed ?? 0), Int64(max(0, held)))
    }

    // MARK: - Reading

    /// Every run held here, in any phase: what `REGISTER` and `LOAD_UPDATE` claim (the manager renews their leases).
    public var held: [JobRef] { entries.keys.sorted { ($0.jobId, $0.attempt) < ($1.jobId, $1.attempt) } }
    /// Runs reported and not acknowledged: what `REGISTER` lists as finished.
    public var finished: [JobRef] { unacked.keys.sorted { ($0.jobId, $0.attempt) < ($1.jobId, $1.attempt) } }
    public func phase(of ref: JobRef) -> Phase? { entries[ref]?.phase }
    public func isCancelled(_ ref: JobRef) -> Bool { entries[ref]?.cancelled ?? false }
    public var runningCount: Int { entries.values.count { $0.phase == .running } }
}
