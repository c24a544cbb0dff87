public import GridCore

/// Who holds each running job, until when. Pure: time comes in as `now` (seconds on any monotonic scale).
///
/// A running job belongs to a worker by a lease that the worker's heartbeats renew. When a lease expires the job goes
/// back to the queue; a worker that reports a job it does not hold is told to kill it.
public struct LeaseTable: Sendable {
    public struct Lease: Hashable, Sendable {
        public var job: JobRef
        public var worker: WorkerID
        public var expires: Double
    }

    /// How long a lease lasts without a heartbeat.
    public let ttl: Double
    public private(set) var leases: [JobID: Lease] = [:]
    /// Leases that heartbeats no longer renew (the job was cancelled or ran out of time): whatever the worker says,
    /// they run out within one lease period.
    public private(set) var revoked: Set<JobID> = []

    public init(ttl: Double) {
        self.ttl = ttl
    }

    /// Gives `job` to `worker` until `now + ttl` (replacing any older lease on the job).
    public mutating func grant(_ job: JobRef, to worker: WorkerID, now: Double, ttl: Double? = nil) {
        let old = leases[job.jobId]
        leases[job.jobId] = Lease(job: job, worker: worker, expires: now + (ttl ?? self.ttl))
        // A revoked lease is never extended, not even by a reconnect.
        if revoked.contains(job.jobId), let old, old.job == job { leases[job.jobId]!.expires = min(old.expires, now + self.ttl) }
    }

    /// Stops renewing the lease on `job`: it expires at most one lease period from `now`, even if the worker keeps
    /// reporting the job (the manager stops trusting it to obey a cancel).
    ///
    /// A job with no lease yet is remembered, and the lease `grant` gives it is never renewed: a cancel that came while
    /// the scheduler had started the job in the store but not yet leased it was lost, and the job ran to its end and
    /// was paid for.
    public mutating func revoke(_ job: JobID, now: Double) {
        revoked.insert(job)
        guard let lease = leases[job] else { return }
        leases[job]!.expires = min(lease.expires, now + ttl)
    }

    /// Whether `job`'s lease is revoked (or will be, once granted).
    public func isRevoked(_ job: JobID) -> Bool { revoked.contains(job) }

    /// The lease on `job`, if any.
    public func holder(of job: JobID) -> Lease? { leases[job] }

    /// Whether `worker` holds exactly this attempt of the job.
    public func holds(_ job: JobRef, worker: WorkerID) -> Bool {
        guard let lease = leases[job.jobId] else { return false }
        return lease.worker == worker && lease.job.attempt == job.attempt
    }

    /// A heartbeat: renews the leases `worker` holds among `running`, and returns the reported jobs it does not hold
    /// (they were given away or ended: the worker must kill them).
    public mutating func renew(worker: WorkerID, running: [JobRef], now: Double) -> [JobRef] {
        var stale: [JobRef] = []
        for job in running {
            if holds(job, worker: worker) {
                if revoked.contains(job.jobId) { continue }
                leases[job.jobId]!.expires = now + ttl
            } else {
                stale.append(job)
            }
        }
        return stale
    }

    /// The job ended or was cancelled: forget its lease.
    @discardableResult
    public mutating func release(_ job: JobID) -> Lease? {
        revoked.remove(job)
        return leases.removeValue(forKey: job)
    }

    /// Removes and returns every lease that ran out at `now`, oldest first.
    public mutating func expire(now: Double) -> [Lease] {
        let gone = leases.values.filter { $0.expires <= now }.sorted { ($0.expires, $0.job.jobId) < ($1.expires, $1.job.jobId) }
        for lease in gone {
            leases.removeValue(forKey: lease.job.jobId)
            revoked.remove(lease.job.jobId)
        }
        return gone
    }

    /// Jobs leased to `worker`.
    public func jobs(of worker: WorkerID) -> [JobRef] {
        leases.values.filter { $0.worker == worker }.map(\.job).sorted { $0.jobId < $1.jobId }
    }

    /// Jobs leased to each worker, in one pass over the leases (`jobs(of:)` for every worker walked every lease once
    /// per worker: a `GET_BEST_PEER`, which any worker may send as often as it likes, cost workers × leases).
    public func jobsByWorker() -> [WorkerID: [JobRef]] {
        var out: [WorkerID: [JobRef]] = [:]
        for lease in leases.values { out[lease.worker, default: []].append(lease.job) }
        return out.mapValues { $0.sorted { $0.jobId < $1.jobId } }
    }
}
