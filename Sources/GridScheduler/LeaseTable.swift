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
        held.remove(job.jobId)
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
                held.remove(job.jobId)
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
        held.remove(job)
        return leases.removeValue(forKey: job)
    }

    /// Leases kept past their end because their worker's connection was busy (`expire(now:busy:revokedHold:)`), until
    /// it is heard from again (`heard(worker:now:)`).
    public private(set) var held: Set<JobID> = []

    /// Removes and returns every lease that ran out at `now`, oldest first.
    ///
    /// `busy`: workers whose connection is reading a frame from them, or holds frames read and not yet handled. Their
    /// heartbeats wait behind that frame (a run's outputs, up to 64 MiB, on a slow link), so their leases that ran out
    /// are kept (`held`) rather than taken away with the frame half read. A revoked one (a cancel, a time limit) is
    /// kept at most `revokedHold` seconds past its end: a worker that kept its connection busy for ever could otherwise
    /// hold a cancelled run for ever. A `revokedHold` that is not a finite positive number keeps none.
    public mutating func expire(now: Double, busy: Set<WorkerID> = [], revokedHold: Double = 0) -> [Lease] {
        let hold = revokedHold.isFinite ? max(0, revokedHold) : 0
        var gone: [Lease] = []
        for lease in leases.values where lease.expires <= now {
            let kept = busy.contains(lease.worker) && (!revoked.contains(lease.job.jobId) || now < lease.expires + hold)
            if kept { held.insert(lease.job.jobId) } else { gone.append(lease) }
        }
        gone.sort { ($0.expires, $0.job.jobId) < ($1.expires, $1.job.jobId) }
        for lease in gone {
            leases.removeValue(forKey: lease.job.jobId)
            revoked.remove(lease.job.jobId)
            held.remove(lease.job.jobId)
        }
        return gone
    }

    /// `worker`'s busy connection went quiet (`expire(now:busy:revokedHold:)`): the leases kept meanwhile that are not
    /// revoked last one lease period from `now`, for the heartbeat that waited behind the frame to name them. A revoked
    /// one keeps the end it had: unless the frame settled its run, it expires at once.
    public mutating func heard(worker: WorkerID, now: Double) {
        for id in held {
            guard let lease = leases[id], lease.worker == worker else { continue }
            held.remove(id)
            if !revoked.contains(id) { leases[id]!.expires = max(lease.expires, now + ttl) }
        }
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

/// Which workers' connections count as busy for their leases and liveness (`LeaseTable.expire(now:busy:revokedHold:)`):
/// a frame from them being read with its bytes still coming, or read and not yet handled (`InboundFlow`). A spell
/// counts for at most `most` seconds without progress (no frame handled meanwhile): past that, a connection kept busy
/// with nothing handled (a manager loop stalled on a worker that does not read its answers) counts as silent again, and
/// the worker must be heard by its heartbeats as any other. A spell that keeps handling frames (two 40 MiB reports back
/// to back on a slow link, longer together than one frame's deadline) starts again at each. Pure: the manager looks at
/// its connections at each lease tick and passes what it saw.
public struct BusySpells: Sendable {
    /// The longest spell without progress that counts: the deadline of the largest frame (`FrameLimits.frameDeadline`).
    public let most: Double
    private var since: [WorkerID: (start: Double, progress: UInt64)] = [:]

    /// `most`: not a finite number, or negative: no spell counts.
    public init(most: Double) { self.most = most.isFinite ? max(0, most) : 0 }

    /// The workers whose connections are busy at `now` (`busyNow`, with how many frames each has handled so far).
    /// Returns those that count as busy, and those whose spell ended since the last look: the manager has heard from
    /// them now (the frame they were sending is in).
    public mutating func look(busyNow: [WorkerID: UInt64], now: Double) -> (busy: Set<WorkerID>, ended: Set<WorkerID>) {
        guard now.isFinite else { return ([], []) }
        var ended: Set<WorkerID> = []
        for (worker, _) in since where busyNow[worker] == nil {
            since[worker] = nil
            ended.insert(worker)
        }
        var busy: Set<WorkerID> = []
        for (worker, progress) in busyNow {
            let start = since[worker].flatMap { $0.progress == progress ? $0.start : nil } ?? now
            since[worker] = (start, progress)
            if now - start <= most { busy.insert(worker) }
        }
        return (busy, ended)
    }
}
