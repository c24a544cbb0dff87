public import GridCore

/// Range checks for every number a worker sends the manager. A worker is a stranger: each figure it reports is a claim,
/// checked before anything is computed from it, so that no arithmetic on it can trap. Pure.
///
/// `WorkerSession.StateMachine` runs these on `REGISTER`, `LOAD_UPDATE`, `JOB_LOG` and `JOB_DONE`; a message that
/// fails gets `ERROR bad_request` naming the field, the value and the range, and the connection stays up.
public enum WorkerClaims {
    /// The limits. Generous for any real machine; small enough that sums over thousands of workers cannot overflow.
    public static let cpus = 1...4096
    public static let ramGb = 0...(1 << 20)
    public static let gpus = 0...256
    public static let gpuMemoryGb = 0...(1 << 16)
    public static let slots = 1...4096
    public static let port = 0...65_535
    public static let hostLength = 0...255
    public static let names = 0...256
    public static let nameLength = 0...256
    public static let jobsListed = 0...10_000
    public static let load = 0.0...1_000_000.0
    public static let tasks = 0...1_000_000
    /// A run's log: offsets and lengths (the worker caps a log far below this).
    public static let logBytes: ClosedRange<Int64> = 0...(1 << 30)
    /// A week (the longest job) with room to spare.
    public static let runtimeMs: ClosedRange<Int64> = 0...(30 * 86_400_000)
    public static let peakMemoryKb: ClosedRange<Int64> = 0...(1 << 40)
    public static let cpuSeconds = 0.0...(30.0 * 86_400 * 4096)
    public static let files = 0...1_000
    public static let fileBytes = 0...(1 << 30)
    public static let reasonLength = 0...10_000
    /// The sandbox report: its label, and the reasons and notes it lists.
    public static let sandboxLines = 0...16
    public static let sandboxText = 0...1_000
    /// A P-256 public key in PEM is about 180 bytes.
    public static let tlsKeyLength = 0...1_024
    /// Cached environments reported, and the length of each digest. The manager keeps the first `envsKept` of them (a
    /// worker reports its most recent first); a longer list is no reason to refuse a worker (its cache evicts by size,
    /// not count, so a busy one may hold more).
    public static let envs = 0...100_000
    public static let envsKept = 4_096
    public static let envDigestLength = 1...128

    /// Checks a message from a registered (or registering) worker; nil when every figure is in range.
    public static func problem(_ message: GridMessage) -> GridError? {
        var c = Checker()
        switch message {
        case .register(let r):
            c.range("resources.cpus", r.resources.cpus, cpus)
            c.range("resources.ram_gb", r.resources.ramGb, ramGb)
            c.range("resources.gpus", r.resources.gpus, gpus)
            c.range("resources.gpu_memory_gb", r.resources.gpuMemoryGb, gpuMemoryGb)
            c.range("slots", r.slots, slots)
            if let p = r.port { c.range("port", p, port) }
            if let p = r.webPort { c.range("web_port", p, port) }
            c.range("host (length)", r.host?.utf8.count ?? 0, hostLength)
            if let h = r.host, !WorkerNaming.isWellFormed(host: h) {
                c.problems.append("host is not a host name or address (letters, digits, '.', '-', '_', ':', '%', '[', ']')")
            }
            c.range("gpu_names (count)", r.gpuNames.count, names)
            for n in r.gpuNames { c.range("gpu_names (length)", n.utf8.count, nameLength) }
            c.refs("running", r.running)
            c.refs("finished", r.finished ?? [])
            c.range("tls_key (length)", r.tlsKey?.utf8.count ?? 0, tlsKeyLength)
            c.envs(r.envs)
            c.range("python (length)", r.python?.utf8.count ?? 0, 0...32)
            if let s = r.sandbox {
                c.range("sandbox.label (length)", s.label.utf8.count, sandboxText)
                c.range("sandbox.skipped (count)", s.skipped.count, sandboxLines)
                c.range("sandbox.notes (count)", s.notes.count, sandboxLines)
                for t in s.skipped + s.notes { c.range("sandbox reasons (length)", t.utf8.count, sandboxText) }
                // A report that contradicts the tier claimed is refused: the tier is what placement trusts.
                c.range("sandbox.tier (same as tier)", s.tier == r.tier ? 0 : 1, 0...0)
            }
        case .loadUpdate(let u):
            c.range("load", u.load, load)
            if let t = u.tasks { c.range("tasks", t, tasks) }
            c.refs("running", u.running)
            c.envs(u.envs)
        case .jobStarted(let s):
            c.refs("job", [s.job])
        case .jobLog(let l):
            c.refs("job", [l.job])
            c.range("offset", l.offset, logBytes)
        case .jobDone(let d):
            c.refs("job", [d.job])
            c.range("runtime_ms", d.runtimeMs, runtimeMs)
            c.range("peak_memory_kb", d.peakMemoryKb, peakMemoryKb)
            c.range("cpu_seconds", d.cpuSeconds, cpuSeconds)
            if let b = d.logBytes { c.range("log_bytes", b, logBytes) }
            c.range("files (count)", d.files.count, files)
            for f in d.files { c.range("files.size", f.size, fileBytes) }
            c.range("reason (length)", d.reason?.utf8.count ?? 0, reasonLength)
            if let saved = d.saved {
                c.range("saved (count)", saved.count, 0...d.files.count)
                for s in saved {
                    c.range("saved.name (length)", s.name.utf8.count, 0...1024)
                    c.range("saved.error (length)", s.error?.utf8.count ?? 0, reasonLength)
                }
            }
            if let inputs = d.publicInputs {
                c.range("public_inputs (count)", inputs.count, 0...1024)
                for i in inputs {
                    c.range("public_inputs.name (length)", i.name.utf8.count, 1...1024)
                    c.range("public_inputs.published_by (length)", i.publishedBy.utf8.count, 1...64)
                }
            }
        default:
            break
        }
        return c.problems.isEmpty ? nil : GridError(.badRequest, "\(message.type) refused: " + c.problems.joined(separator: "; "))
    }

    /// `done` as the manager will take it: itself when every figure is in range; else a report of a failed run that
    /// names the problem, with no files and its figures held to their ranges. A report the manager refuses is never
    /// acknowledged: the worker kept it, and its outputs, and sent it again on each reconnect, for good. The caller
    /// sends no outputs with a report whose files were dropped. Pure.
    public static func fitted(_ done: Msg.JobDone) -> Msg.JobDone {
        guard let problem = problem(.jobDone(done)) else { return done }
        var out = done
        out.outcome = .failed
        out.runtimeMs = min(max(done.runtimeMs, runtimeMs.lowerBound), runtimeMs.upperBound)
        out.peakMemoryKb = min(max(done.peakMemoryKb, peakMemoryKb.lowerBound), peakMemoryKb.upperBound)
        out.cpuSeconds = done.cpuSeconds.isFinite ? min(max(done.cpuSeconds, cpuSeconds.lowerBound), cpuSeconds.upperBound) : 0
        out.logBytes = done.logBytes.map { min(max($0, logBytes.lowerBound), logBytes.upperBound) }
        out.files = []
        out.saved = nil
        out.publicInputs = nil
        out.refund = nil
        out.reason = Msg.SavedOutput.oneLine("the worker's report was out of the manager's ranges, so its outputs were dropped: \(problem.message)", maxBytes: 1_000)
        return out
    }

    private struct Checker {
        var problems: [String] = []

        mutating func range<T: Comparable>(_ field: String, _ value: T, _ allowed: ClosedRange<T>) {
            if !allowed.contains(value) { problems.append("\(field) = \(value) is out of range \(allowed.lowerBound)…\(allowed.upperBound)") }
        }

        mutating func range(_ field: String, _ value: Double, _ allowed: ClosedRange<Double>) {
            // NaN is in no range (`contains` is false for it), and neither is infinity here.
            if !value.isFinite || !allowed.contains(value) {
                problems.append("\(field) = \(value) is out of range \(allowed.lowerBound)…\(allowed.upperBound)")
            }
        }

        mutating func envs(_ digests: [String]?) {
            guard let digests else { return }
            range("envs (count)", digests.count, WorkerClaims.envs)
            for d in digests { range("envs (length)", d.utf8.count, WorkerClaims.envDigestLength) }
        }

        mutating func refs(_ field: String, _ refs: [JobRef]) {
            range("\(field) (count)", refs.count, WorkerClaims.jobsListed)
            for r in refs where r.jobId < 1 || r.attempt < 1 || r.attempt > 1_000_000 {
                problems.append("\(field) names job \(r.jobId) attempt \(r.attempt), which cannot exist")
            }
        }
    }
}
