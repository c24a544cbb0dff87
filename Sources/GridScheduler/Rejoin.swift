public import GridCore

/// What the manager keeps of a worker's runs when it registers (first time or after a reconnect), pure (issue 14).
///
/// The worker claims runs it still has (`running`) and runs that ended while it could not report them (`finished`).
/// Each decision is made against the lease table as it is at that moment, in one step with no suspension in between:
/// a lease that expired while the store was read (the job already on its way back to the queue) is never granted again,
/// and a lease renewed here cannot be expired half-way through.
public enum Rejoin {
    /// A claimed job as the store has it.
    public struct StoredRun: Hashable, Sendable {
        public var state: JobState
        public var attempt: Int
        public var cancelRequested: Bool
        public init(state: JobState, attempt: Int, cancelRequested: Bool) {
            self.state = state
            self.attempt = attempt
            self.cancelRequested = cancelRequested
        }
    }

    /// A report the manager holds until the rest of its log arrives.
    public struct Settling: Hashable, Sendable {
        public var ref: JobRef
        public var worker: WorkerID
        public init(ref: JobRef, worker: WorkerID) {
            self.ref = ref
            self.worker = worker
        }
    }

    public struct Decision: Hashable, Sendable {
        /// Runs kept (their leases renewed, or their report awaited): the worker is told how much of each log is here.
        public var keep: [JobRef] = []
        /// Runs the worker must stop: given away, ended, or cancelled by their owners.
        public var cancel: [JobRef] = []
        /// Runs this worker held but no longer knows of (it restarted): their leases are released; each is lost now,
        /// not a lease period later.
        public var forgotten: [JobRef] = []
        public init(keep: [JobRef] = [], cancel: [JobRef] = [], forgotten: [JobRef] = []) {
            self.keep = keep
            self.cancel = cancel
            self.forgotten = forgotten
        }
    }

    /// Decides, and renews, revokes and releases leases in `leases` accordingly. `heldBefore`: the runs leased to the
    /// worker when its registration arrived; a run leased to it since (the scheduler may place a job on it as soon as it
    /// is online, while its registration is still being read) is new to it, not forgotten.
    public static func decide(
        worker: WorkerID, running: [JobRef], finished: [JobRef], stored: [JobID: StoredRun], settling: [JobID: Settling],
        heldBefore: Set<JobRef>, leases: inout LeaseTable, now: Double
    ) -> Decision {
        var decision = Decision()
        func current(_ ref: JobRef) -> StoredRun? {
            guard let run = stored[ref.jobId], run.state == .running, run.attempt == ref.attempt else { return nil }
            return run
        }
        for ref in unique(finished) {
            let leased = leases.holds(ref, worker: worker)
            let awaited = settling[ref.jobId] == Settling(ref: ref, worker: worker)
            guard leased || awaited, current(ref) != nil else { continue }
            if leased { leases.grant(ref, to: worker, now: now) }
            decision.keep.append(ref)
        }
        for ref in unique(running) where !decision.keep.contains(ref) {
            guard leases.holds(ref, worker: worker), let run = current(ref) else {
                decision.cancel.append(ref)
                continue
            }
            leases.grant(ref, to: worker, now: now)
            decision.keep.append(ref)
            if run.cancelRequested {
                decision.cancel.append(ref)
                leases.revoke(ref.jobId, now: now)
            }
        }
        // Claimed by attempt: a worker that claims only an older attempt of a job leased to it does not know the lease.
        let claimed = Set(running + finished)
        for ref in leases.jobs(of: worker) where heldBefore.contains(ref) && !claimed.contains(ref) && settling[ref.jobId] == nil {
            leases.release(ref.jobId)
            decision.forgotten.append(ref)
        }
        return decision
    }

    private static func unique(_ refs: [JobRef]) -> [JobRef] {
        var seen: Set<JobRef> = []
        return refs.filter { seen.insert($0).inserted }
    }
}
